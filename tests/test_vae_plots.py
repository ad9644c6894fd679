"""The study figures: gradient norms, manifold frames and their GIF, latent traversals."""
import numpy as np
import pytest
from PIL import Image, ImageFile

import minigrad as mg
from vae import plots
from vae_fixtures import tiny_vae


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _decode(model, z):
    """sigmoid(decode(z)) written out here, independent of the plots' helpers."""
    with mg.no_grad():
        return mg.sigmoid(model.decode(mg.Tensor(np.asarray(z, dtype=np.float64)))).numpy()


def test_grad_norms_draws_the_logged_epochs_and_skips_the_others(tmp_path):
    metrics = [{"epoch": 1, "grad_norms": {"encoder_hidden.weight": 2.0, "decoder_out.bias": 0.1}},
               {"epoch": 2},
               {"epoch": 3, "grad_norms": {"encoder_hidden.weight": 1.5, "decoder_out.bias": 0.05}}]
    path = plots.grad_norms(metrics, str(tmp_path / "grads.png"))
    assert path == str(tmp_path / "grads.png")
    assert min(_png_size(path)) > 100


def test_grad_norms_without_any_logged_norms_says_so(tmp_path):
    with pytest.raises(ValueError, match="grad_norms"):
        plots.grad_norms([{"epoch": 1, "train_loss": 3.0}], str(tmp_path / "g.png"))


def test_manifold_frames_share_one_size_and_become_a_gif(tmp_path):
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=2)
    frames = [plots.manifold_frame(model, str(tmp_path / f"frame_{epoch}.png"), epoch,
                                         grid=4) for epoch in (1, 10, 100)]
    assert len({_png_size(frame) for frame in frames}) == 1
    gif = plots.frames_to_gif(frames, str(tmp_path / "manifold.gif"), seconds_per_frame=0.25)
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.n_frames == 3
        assert image.info["duration"] == 250
        assert image.size == _png_size(frames[0])


def test_frames_of_different_sizes_are_padded_to_the_largest(tmp_path):
    paths = []
    for i, size in enumerate([(30, 20), (40, 10)]):
        paths.append(str(tmp_path / f"f{i}.png"))
        Image.new("RGB", size, "black").save(paths[-1])
    with Image.open(plots.frames_to_gif(paths, str(tmp_path / "a.gif"))) as image:
        assert image.size == (40, 20)
        assert image.n_frames == 2


@pytest.mark.parametrize("sizes", [[(4000, 4000)], [(600, 640), (20000, 10)],
                                   [(10, 20000), (20000, 10)]])
def test_a_frame_declaring_too_many_pixels_is_refused_before_it_is_decoded(tmp_path,
                                                                          monkeypatch, sizes):
    paths = []
    for i, size in enumerate(sizes):
        paths.append(str(tmp_path / f"epoch_{i:03d}.png"))
        Image.new("1", size).save(paths[-1])                 # a few kB on disk
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda image: decoded.append(image.size) or real_load(image))
    with pytest.raises(ValueError, match=f"{paths[-1]} declares .* more than the "
                                         f"{plots.MAX_FRAME_PIXELS}"):
        plots.frames_to_gif(paths, str(tmp_path / "manifold.gif"))
    assert all(width * height <= plots.MAX_FRAME_PIXELS for width, height in decoded)
    assert not (tmp_path / "manifold.gif").exists()


def test_frames_to_gif_needs_frames(tmp_path):
    with pytest.raises(ValueError, match="frame_paths is empty"):
        plots.frames_to_gif([], str(tmp_path / "a.gif"))


@pytest.mark.parametrize("latent_dim", [1, 3])
def test_manifold_frame_refuses_a_latent_dim_other_than_2(tmp_path, latent_dim):
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=latent_dim)
    with pytest.raises(ValueError, match=f"latent_dim={latent_dim}"):
        plots.manifold_frame(model, str(tmp_path / "frame.png"), epoch=1)
    assert not (tmp_path / "frame.png").exists()


def test_traversal_images_move_one_dimension_per_row():
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=3)
    image = np.random.default_rng(0).random(16)
    images = plots.traversal_images(model, image, steps=5, span=2.0)
    assert images.shape == (3, 5, 4, 4)
    with mg.no_grad():
        mean = model.encode(image[None, :])[0].numpy()[0]                  # (3,)
    decoded_mean = _decode(model, mean[None, :]).reshape(4, 4)
    for row in range(3):
        np.testing.assert_allclose(images[row, 2], decoded_mean, rtol=1e-12)  # offset 0
        low = mean.copy()
        low[row] -= 2.0
        np.testing.assert_allclose(images[row, 0], _decode(model, low[None, :]).reshape(4, 4),
                                   rtol=1e-12)
    # different dimensions moved by the same offset decode differently
    assert not np.allclose(images[0, 0], images[1, 0])


def test_latent_traversals_writes_a_png(tmp_path):
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=3)
    path = plots.latent_traversals(model, np.full(16, 0.5), str(tmp_path / "t.png"),
                                         steps=7, span=3.0)
    assert min(_png_size(path)) > 100


@pytest.mark.parametrize("steps, span, message", [(1, 3.0, "steps"), (9, 0.0, "span")])
def test_traversals_refuse_bad_steps_and_span(steps, span, message):
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=3)
    with pytest.raises(ValueError, match=message):
        plots.traversal_images(model, np.zeros(16), steps, span)


def test_traversal_images_check_the_image_size():
    model = tiny_vae(input_dim=16, hidden_dim=5, latent_dim=3)
    with pytest.raises(ValueError, match="9 pixels"):
        plots.traversal_images(model, np.zeros(9), 5, 1.0)


def test_traversal_labels_are_legible_at_page_width(tmp_path, monkeypatch):
    """Every text of the grid is at least 9 pt once the figure is scaled to 800 px wide."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, **options: figures.append(fig) or path)
    model = tiny_vae(input_dim=784, hidden_dim=5, latent_dim=2)
    plots.latent_traversals(model, np.full(784, 0.5), str(tmp_path / "t.png"), steps=9, span=2.0)
    (fig,) = figures
    ax = fig.axes[0]
    texts = [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.title]
    scale = 800 / (fig.get_figwidth() * 100)   # saved at 100 dpi, shown 800 px wide
    smallest = min(text.get_fontsize() for text in texts) * min(scale, 1.0)
    assert smallest >= 9, f"the smallest label is {smallest:.1f} pt at page width"
