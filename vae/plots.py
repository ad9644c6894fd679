"""Figures of a VAE run, each one image file: loss curves, reconstructions, prior samples, the
latent space coloured by digit, the decoded 2-D manifold, an interpolation between two digits;
and the figures that study a run as it trains: gradient norms per parameter, frames of the
decoded 2-D manifold (and an animated GIF of them), and latent traversals of one test image.

Every figure function takes arrays (or the model) and a path, saves the image, closes the figure
and returns the path.  It never chooses matplotlib's backend (a notebook keeps its own; the
command line chooses Agg) and writes through ``run_folder.replace_atomically``: a link at the
path is refused, and a crash leaves the old image or the new one.  Images are decoded as
sigmoid(decode(z)), the Bernoulli means; z of a test image is its posterior mean, not a draw.
"""
import glob
import math
import os
import statistics

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image

import minigrad as mg
from vae import run_folder

ENCODE_BATCH = 1000  # examples per encoder pass: bounds memory on the full test set
GAP_SHADE = 0.2      # pixel value of the gaps between tiles: light grey, drawn as ink on paper
FRAME_INCHES = (6.0, 6.4)  # fixed figure size (no tight bbox): every GIF frame has one size
FRAME_DPI = 100
LABEL_POINTS = 10    # tick and axis labels of the traversal grid: legible at a page's width
FRAME_PIXELS = round(FRAME_INCHES[0] * FRAME_DPI) * round(FRAME_INCHES[1] * FRAME_DPI)
# NOTE: a frame read back for the GIF may declare at most 16 times a drawn frame's pixels: a
# PNG's header states its size, and a 100-byte file may declare gigabytes of pixels
MAX_FRAME_PIXELS = 16 * FRAME_PIXELS


def _side(model, caller):
    """Rows (= cols) of the model's square images."""
    side = math.isqrt(model.input_dim)
    if side * side != model.input_dim:
        raise ValueError(f"{caller}: input_dim {model.input_dim} is not a square number of "
                         "pixels; the figures draw square images")
    return side


def _dtype(model):
    """The parameters' dtype: latents are cast to it so the decoder computes in it."""
    return model.decoder_hidden.weight.dtype


def posterior_means(model, images):
    """E_q[z | x] for each row of ``images`` (N, input_dim) -> (N, latent_dim) NumPy array."""
    means = []
    with mg.no_grad():
        for start in range(0, len(images), ENCODE_BATCH):
            means.append(model.posterior_mean(images[start:start + ENCODE_BATCH]).numpy())
    return np.concatenate(means) if means else np.zeros((0, model.latent_dim))


def decode_means(model, z):
    """sigmoid(decode(z)): Bernoulli means in [0, 1] for latents ``z`` (N, latent_dim)."""
    with mg.no_grad():
        logits = model.decode(mg.Tensor(np.asarray(z, dtype=_dtype(model))))
        return mg.sigmoid(logits).numpy()                                   # (N, input_dim)


def _tile(images, side, cols, pad=2):
    """One image of ``images`` (N, side * side) in rows of ``cols``, light grey gaps between."""
    rows = math.ceil(len(images) / cols)
    step = side + pad
    canvas = np.full((rows * step + pad, cols * step + pad), GAP_SHADE)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * step: pad + r * step + side,
               pad + c * step: pad + c * step + side] = image.reshape(side, side)
    return canvas


def _save(fig, path, **options):
    """Save ``fig`` as the PNG ``path`` (tight bounding box at 100 dpi unless ``options`` say
    otherwise), close it and return the path."""
    options = dict(dict(dpi=100, bbox_inches="tight"), **options)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        run_folder.replace_atomically(path, lambda f: fig.savefig(f, format="png", **options))
    finally:
        plt.close(fig)
    return path


def _show_grid(canvas, title, path, inches_per_pixel=0.05):
    height, width = canvas.shape
    fig, ax = plt.subplots(figsize=(max(3.0, width * inches_per_pixel),
                                    max(2.0, height * inches_per_pixel + 0.5)))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def loss_curves(metrics, path):
    """Training loss and test -ELBO per epoch, from the records of ``run_folder.read_metrics``."""
    if not metrics:
        raise ValueError("loss_curves: metrics is empty; the run has no finished epoch")
    epochs = [record["epoch"] for record in metrics]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [record["train_loss"] for record in metrics], "o-", label="train loss")
    ax.plot(epochs, [record["test_neg_elbo"] for record in metrics], "s-", label="test -ELBO")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.set_title(f"Loss per epoch\n({metrics[0]['convention']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def reconstructions(model, images, path, count=8, seed=0):
    """Top row: ``count`` test images picked at random by ``seed``; bottom row: their
    reconstructions, decoded from the posterior means."""
    side = _side(model, "reconstructions")
    count = min(count, len(images))
    if count < 1:
        raise ValueError("reconstructions: needs at least one image")
    rows = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    originals = images[rows]                                                # (count, D)
    decoded = decode_means(model, posterior_means(model, originals))       # (count, D)
    canvas = _tile(np.concatenate([originals, decoded]), side, cols=count)
    return _show_grid(canvas, "Test images (top) and reconstructions from the posterior mean "
                              "(bottom)", path, inches_per_pixel=0.04)


def prior_samples(model, path, count=64, seed=0):
    """A grid of sigmoid(decode(z)) for ``count`` draws z ~ N(0, I) from default_rng(seed)."""
    side = _side(model, "prior_samples")
    if count < 1:
        raise ValueError(f"prior_samples: count must be at least 1, got {count}")
    z = np.random.default_rng(seed).standard_normal((count, model.latent_dim))  # (count, L)
    canvas = _tile(decode_means(model, z), side, cols=math.ceil(math.sqrt(count)))
    return _show_grid(canvas, f"{count} samples from the prior N(0, I) (seed {seed})", path)


def pca_2d(points):
    """Project rows of ``points`` (N, D) onto their top two principal components (NumPy SVD).

    Returns the (N, 2) coordinates, centred, and the fraction of the variance they keep.
    """
    centred = points - points.mean(axis=0)                                 # (N, D)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    total = (singular ** 2).sum()
    explained = (singular[:2] ** 2).sum() / total if total > 0 else 1.0
    return centred @ vt[:2].T, float(explained)                            # (N, 2)


def latent_scatter(model, images, labels, path):
    """Posterior means coloured by digit; above 2 latent dimensions, their PCA projection."""
    if len(images) != len(labels):
        raise ValueError(f"latent_scatter: {len(images)} images but {len(labels)} labels")
    means = posterior_means(model, images).astype(np.float64)              # (N, L)
    latent = model.latent_dim
    if latent > 2:
        points, explained = pca_2d(means)
        title = (f"Posterior means of {latent} latent dims, PCA to 2-D "
                 f"({explained:.0%} of the variance)")
        axis_labels = ("principal component 1", "principal component 2")
    elif latent == 2:
        points = means
        title = "Posterior means (the 2 latent dims directly)"
        axis_labels = ("z[0]", "z[1]")
    else:
        # NOTE: one dimension: spread the points vertically by digit so the classes stay visible
        points = np.stack([means[:, 0], np.asarray(labels, dtype=np.float64)], axis=1)
        title = "Posterior means (1 latent dim) by digit"
        axis_labels = ("z[0]", "digit")
    fig, ax = plt.subplots(figsize=(6, 5))
    dots = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5,
                      s=4, alpha=0.7, linewidths=0)
    fig.colorbar(dots, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def manifold_latents(grid):
    """The (grid * grid, 2) latents of the manifold, row-major from the top-left: z[0] grows
    along a row, z[1] falls down the rows; both at normal quantiles of 0.05 .. 0.95."""
    normal = statistics.NormalDist()
    values = np.array([normal.inv_cdf(p) for p in np.linspace(0.05, 0.95, grid)])
    z0, z1 = np.meshgrid(values, values[::-1])                             # (grid, grid) each
    return np.stack([z0.ravel(), z1.ravel()], axis=1)


def manifold(model, path, grid=20):
    """Decoded images over a grid x grid of latent values at the normal quantiles of evenly
    spaced probabilities in [0.05, 0.95] (Kingma & Welling 2014, figure 4); latent_dim 2 only."""
    if model.latent_dim != 2:
        raise ValueError(f"manifold: needs a model with latent_dim == 2, this one has "
                         f"latent_dim={model.latent_dim}; use latent_scatter instead")
    if grid < 2:
        raise ValueError(f"manifold: grid must be at least 2, got {grid}")
    fig, ax = plt.subplots(figsize=(7, 7))
    draw_manifold(ax, model, grid, "manifold")
    ax.set_title(f"Decoded manifold: z at normal quantiles of 0.05 .. 0.95 ({grid} x {grid})",
                 fontsize=9)
    return _save(fig, path)


def draw_manifold(ax, model, grid, caller):
    """Decode the grid x grid latents of ``manifold_latents`` and draw them on ``ax``, the
    axes ticked with the first and last latent values."""
    side = _side(model, caller)
    z = manifold_latents(grid)                                             # (grid^2, 2)
    low, high = z[0, 0], z[-1, 0]
    canvas = _tile(decode_means(model, z), side, cols=grid, pad=0)
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ticks = [side / 2 - 0.5, side * (grid - 1) + side / 2 - 0.5]           # first, last tile
    ax.set_xticks(ticks, [f"{low:.2f}", f"{high:.2f}"])
    ax.set_yticks(ticks, [f"{high:.2f}", f"{low:.2f}"])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")


def interpolation(model, image_a, image_b, path, steps=10):
    """``steps`` decodings along the line between the posterior means of two images, with the
    two images themselves at the ends."""
    side = _side(model, "interpolation")
    if steps < 2:
        raise ValueError(f"interpolation: steps must be at least 2, got {steps}")
    pair = np.stack([np.ravel(image_a), np.ravel(image_b)]).astype(_dtype(model))  # (2, D)
    mu_a, mu_b = posterior_means(model, pair).astype(np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]                              # (steps, 1)
    decoded = decode_means(model, (1 - t) * mu_a + t * mu_b)               # (steps, D)
    canvas = _tile(np.concatenate([pair[:1], decoded, pair[1:]]), side, cols=steps + 2)
    return _show_grid(canvas, f"Image a, {steps} decodings from mu(a) to mu(b), image b", path,
                      inches_per_pixel=0.04)


def _distinct_pair(labels):
    """Indices of the first test image and the first one with another label (or the second)."""
    others = np.flatnonzero(np.asarray(labels) != labels[0])
    return 0, int(others[0]) if len(others) else min(1, len(labels) - 1)


def plot_run(folder, trainer):
    """Every figure of the run in ``folder`` (``trainer``: its model, test images and labels, and
    the checkpoint's epoch): losses, reconstructions, prior samples, latent scatter,
    interpolation, latent traversals, and for a 2-D latent space the manifold (and the GIF of
    its per-epoch frames when the run kept them); returns the paths."""
    model, images, labels = trainer.model, trainer.test_images, trainer.test_labels
    a, b = _distinct_pair(labels)
    metrics = run_folder.read_metrics(folder, through_epoch=trainer.epoch)
    # the file names are run_folder.FIGURES (--overwrite removes them with the old run)
    paths = [
        loss_curves(metrics, os.path.join(folder, "loss_curves.png")),
        reconstructions(model, images, os.path.join(folder, "reconstructions.png")),
        prior_samples(model, os.path.join(folder, "samples.png")),
        latent_scatter(model, images, labels, os.path.join(folder, "latent.png")),
        interpolation(model, images[a], images[b], os.path.join(folder, "interpolation.png")),
        latent_traversals(model, images[a], os.path.join(folder, "traversals.png")),
    ]
    if any("grad_norms" in record for record in metrics):  # the run had --log-grads
        paths.append(grad_norms(metrics, os.path.join(folder, "grad_norms.png")))
    if model.latent_dim == 2:
        paths.append(manifold(model, os.path.join(folder, "manifold.png")))
    frames = sorted(glob.glob(os.path.join(glob.escape(folder), run_folder.FRAMES, "epoch_*.png")))
    if frames:  # --manifold-frames: the manifold as it was made, epoch by epoch
        paths.append(frames_to_gif(frames, os.path.join(folder, "manifold.gif")))
    return paths


# --- figures that study a run as it trains ----------------------------------------------------
def grad_norms(metrics, path):
    """Per-parameter gradient L2 norms per epoch on a log axis, one line per parameter.

    ``metrics`` are the records of ``run_folder.read_metrics``; records with a "grad_norms" dict
    {parameter name: norm} are drawn, others (epochs trained without the flag) are skipped.
    """
    logged = [record for record in metrics if "grad_norms" in record]
    if not logged:
        raise ValueError(f"grad_norms: none of the {len(metrics)} metrics records has a "
                         "'grad_norms' entry; train with gradient logging on")
    names = list(dict.fromkeys(name for record in logged for name in record["grad_norms"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        points = [(record["epoch"], record["grad_norms"][name]) for record in logged
                  if name in record["grad_norms"]]
        epochs, norms = zip(*points)
        ax.plot(epochs, norms, "o-", markersize=3, label=name)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title("Gradient norm per parameter", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    # NOTE: a VAE has 8 parameters; beside the axes the legend never hides a line
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def manifold_frame(model, path, epoch, grid=15):
    """One frame of the decoded 2-D manifold, titled with ``epoch``: latents at the normal
    quantiles of ``grid`` evenly spaced probabilities in [0.05, 0.95] per axis.

    Every frame is saved at one fixed pixel size so that ``frames_to_gif`` can stack them.
    """
    if model.latent_dim != 2:
        raise ValueError(f"manifold_frame: needs a model with latent_dim == 2, this one has "
                         f"latent_dim={model.latent_dim}")
    if grid < 2:
        raise ValueError(f"manifold_frame: grid must be at least 2, got {grid}")
    fig, ax = plt.subplots(figsize=FRAME_INCHES)
    draw_manifold(ax, model, grid, "manifold_frame")
    ax.set_title(f"Decoded manifold after epoch {epoch}", fontsize=11)
    return _save(fig, path, dpi=FRAME_DPI, bbox_inches=None)


def frames_to_gif(frame_paths, path, seconds_per_frame=0.5):
    """An animated GIF of the image files ``frame_paths``, in order, looping forever.

    Frames of different sizes are centred on a white canvas of the largest width and height.
    Each frame's size is read from its header before it is decoded: a frame, or the canvas,
    of more than MAX_FRAME_PIXELS is refused unread.
    """
    if not frame_paths:
        raise ValueError("frames_to_gif: frame_paths is empty; need at least one frame")
    if seconds_per_frame <= 0:
        raise ValueError(f"frames_to_gif: seconds_per_frame must be > 0, got {seconds_per_frame}")
    frames, width, height = [], 0, 0
    for frame_path in frame_paths:
        with run_folder.open_binary(frame_path) as f, Image.open(f) as image:
            width, height = max(width, image.width), max(height, image.height)
            if width * height > MAX_FRAME_PIXELS:
                raise ValueError(f"frames_to_gif: {frame_path} declares {image.width} x "
                                 f"{image.height} pixels, which makes a frame of {width} x "
                                 f"{height}, more than the {MAX_FRAME_PIXELS} a frame may have; "
                                 "not a frame this program drew")
            frames.append(image.convert("RGB"))
    canvases = []
    for frame in frames:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(frame, ((width - frame.width) // 2, (height - frame.height) // 2))
        canvases.append(canvas)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # NOTE: GIF durations are in milliseconds; loop=0 repeats forever
    return run_folder.replace_atomically(path, lambda f: canvases[0].save(
        f, format="GIF", save_all=True, append_images=canvases[1:],
        duration=round(1000 * seconds_per_frame), loop=0))


def traversal_offsets(steps, span):
    """The ``steps`` offsets -span .. span added to one latent dimension (0 in the middle when
    ``steps`` is odd)."""
    if steps < 2:
        raise ValueError(f"traversal: steps must be at least 2, got {steps}")
    if span <= 0:
        raise ValueError(f"traversal: span must be > 0, got {span}")
    return np.linspace(-span, span, steps)


def traversal_images(model, image, steps, span):
    """(latent_dim, steps, side, side) decodings: row i is the posterior mean of ``image`` with
    dimension i moved by each of ``traversal_offsets(steps, span)``, the others fixed."""
    side = _side(model, "traversal_images")
    image = np.ravel(image).astype(_dtype(model))
    if image.size != model.input_dim:
        raise ValueError(f"traversal_images: image has {image.size} pixels, the model's "
                         f"input_dim is {model.input_dim}")
    mean = posterior_means(model, image[None, :])[0].astype(np.float64)    # (L,)
    offsets = traversal_offsets(steps, span)                               # (steps,)
    latent = model.latent_dim
    z = np.tile(mean, (latent, steps, 1))                                  # (L, steps, L)
    z[np.arange(latent), :, np.arange(latent)] += offsets                  # row i moves dim i
    decoded = decode_means(model, z.reshape(latent * steps, latent))       # (L * steps, D)
    return decoded.reshape(latent, steps, side, side)


def latent_traversals(model, image, path, steps=9, span=3.0):
    """A grid with one row per latent dimension: the decoded posterior mean of ``image`` with
    that dimension swept over mean - span .. mean + span (columns), the others fixed."""
    images = traversal_images(model, image, steps, span)                   # (L, steps, s, s)
    latent, _, side, _ = images.shape
    canvas = _tile(images.reshape(latent * steps, side * side), side, cols=steps)
    step = side + 2                                                        # tile plus gap (pad 2)
    offsets = traversal_offsets(steps, span)
    height, width = canvas.shape
    # 0.028 inch a pixel: 9 steps of 28 pixels make a figure of about 8.5 inches, shown near
    # its own size on a page, so LABEL_POINTS stays what it says
    fig, ax = plt.subplots(figsize=(max(4.0, width * 0.028 + 1.0), max(2.5, height * 0.028 + 0.8)))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    centres = 2 + step * np.arange(max(latent, steps)) + side / 2 - 0.5
    # NOTE: sizes for a page that shows the figure about 800 px wide: 10 pt stays legible
    ax.set_yticks(centres[:latent], [f"z[{i}]" for i in range(latent)], fontsize=LABEL_POINTS)
    ax.set_xticks(centres[:steps], [f"{o:+.1f}" for o in offsets], fontsize=LABEL_POINTS)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("offset from the posterior mean", fontsize=LABEL_POINTS)
    ax.set_title(f"Latent traversals: one row per dimension, mean {-span:+.1f} .. {span:+.1f}",
                 fontsize=LABEL_POINTS + 1)
    return _save(fig, path)
