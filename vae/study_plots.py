"""Figures that study a VAE as it trains: gradient norms per parameter, frames of the decoded
2-D manifold (and an animated GIF of them), and latent traversals of one test image.

As in ``vae.plots``, every figure function takes arrays (or the model) and a path, draws with the
Agg backend, saves the image, closes the figure and returns the path.  Images are Bernoulli means
sigmoid(decode(z)); the z of a test image is its posterior mean.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from vae.plots import (_dtype, _save, _side, _tile, decode_means, draw_manifold,  # noqa: E402
                       posterior_means)

FRAME_INCHES = (6.0, 6.4)  # fixed figure size (no tight bbox): every GIF frame has one size
FRAME_DPI = 100


def grad_norms(metrics, path):
    """Per-parameter gradient L2 norms per epoch on a log axis, one line per parameter.

    ``metrics`` are the records of ``train.read_metrics``; records with a "grad_norms" dict
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=FRAME_DPI)
    plt.close(fig)
    return path


def frames_to_gif(frame_paths, path, seconds_per_frame=0.5):
    """An animated GIF of the image files ``frame_paths``, in order, looping forever.

    Frames of different sizes are centred on a white canvas of the largest width and height.
    """
    if not frame_paths:
        raise ValueError("frames_to_gif: frame_paths is empty; need at least one frame")
    if seconds_per_frame <= 0:
        raise ValueError(f"frames_to_gif: seconds_per_frame must be > 0, got {seconds_per_frame}")
    frames = []
    for frame_path in frame_paths:
        with Image.open(frame_path) as image:
            frames.append(image.convert("RGB"))
    width = max(frame.width for frame in frames)
    height = max(frame.height for frame in frames)
    canvases = []
    for frame in frames:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(frame, ((width - frame.width) // 2, (height - frame.height) // 2))
        canvases.append(canvas)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # NOTE: GIF durations are in milliseconds; loop=0 repeats forever
    canvases[0].save(path, format="GIF", save_all=True, append_images=canvases[1:],
                     duration=round(1000 * seconds_per_frame), loop=0)
    return path


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
    fig, ax = plt.subplots(figsize=(max(4.0, width * 0.04 + 1.0), max(2.5, height * 0.04 + 0.8)))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    centres = 2 + step * np.arange(max(latent, steps)) + side / 2 - 0.5
    ax.set_yticks(centres[:latent], [f"z[{i}]" for i in range(latent)], fontsize=6)
    ax.set_xticks(centres[:steps], [f"{o:+.1f}" for o in offsets], fontsize=6)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("offset from the posterior mean", fontsize=8)
    ax.set_title(f"Latent traversals: one row per dimension, mean {-span:+.1f} .. {span:+.1f}",
                 fontsize=9)
    return _save(fig, path)
