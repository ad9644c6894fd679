"""Command line: ``python -m vae train|eval|sample|plot``.

    python -m vae train --epochs 10 --out runs/mnist     # trains, evaluates, plots
    python -m vae train --posterior laplace --log-grads   # another posterior; gradient norms
    python -m vae train --device cuda                     # on a GPU (CuPy); plots on the CPU
    python -m vae train --out runs/mnist --epochs 20 --resume   # continue the run
    python -m vae eval runs/mnist --iw 1000               # test -ELBO and -log p(x) by IWAE
    python -m vae sample runs/mnist --count 64            # a grid of digits from the prior
    python -m vae plot runs/mnist                          # every figure of a run again

Every number a flag takes is checked when the command line is parsed (finite, in range, an
integer where it must be), so a bad value is refused naming its flag before anything runs.
The commands that draw choose matplotlib's Agg backend (files, no display); the library
modules never choose one.
"""
import argparse
import dataclasses
import os
import sys
import textwrap

from minigrad.backend import DEVICES, DeviceUnavailableError
from vae import checkpoint, config, run_folder, train
from vae.checkpoint import CheckpointError
from vae.data import DataError
from vae.evaluate import convention, evaluate, importance_weighted_bound
from vae.model import POSTERIORS

DEFAULTS = config.Config()
MAX_IW_SAMPLES = 1_000_000
MAX_IW_IMAGES = 1_000_000
DEFAULT_IW_IMAGES = 1000
MAX_SAMPLES = 10_000


def setting(name):
    """An argparse type for the Config field ``name``: the flag's text parsed as the field's
    type and checked against its range by ``config.problem``."""
    kind = config.FIELD_TYPES[name]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        found = config.problem(name, value)
        if found:
            raise argparse.ArgumentTypeError(found)
        return value
    return parse


def count(low, high):
    """An argparse type: an integer in [low, high]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {value}")
        return value
    return parse


def _add_train_flags(parser):
    add = parser.add_argument
    add("--data", default=None, help=f"folder of the four IDX files, gzipped or not "
                                     f"(default: the carried MNIST, {DEFAULTS.data})")
    add("--out", default=DEFAULTS.out, help="run folder for config, metrics, checkpoint, plots "
                                            "(default: %(default)s)")
    add("--epochs", type=setting("epochs"), default=None,
        help=f"epochs to train in all; may grow on --resume (default: {DEFAULTS.epochs})")
    add("--batch-size", type=setting("batch_size"), default=None,
        help=f"examples per step (default: {DEFAULTS.batch_size})")
    add("--lr", type=setting("lr"), default=None, help=f"Adam learning rate (default: {DEFAULTS.lr})")
    add("--hidden-dim", type=setting("hidden_dim"), default=None,
        help=f"hidden units of encoder and decoder (default: {DEFAULTS.hidden_dim})")
    add("--latent-dim", type=setting("latent_dim"), default=None,
        help=f"latent dimensions; 2 also draws the decoded manifold (default: {DEFAULTS.latent_dim})")
    add("--beta", type=setting("beta"), default=None,
        help=f"weight of the KL term (default: {DEFAULTS.beta})")
    add("--warmup-epochs", type=setting("warmup_epochs"), default=None,
        help="ramp the KL weight linearly from 0 to beta over this many epochs (default: 0, off)")
    add("--seed", type=setting("seed"), default=None,
        help=f"seed of init, shuffling and sampling, 0 .. 2^32 - 1 (default: {DEFAULTS.seed})")
    add("--binarize", choices=("none", "dynamic"), default=None,
        help="'none': pixels in [0, 1] as BCE targets (the PyTorch example); 'dynamic': a fresh "
             "Bernoulli draw per batch, the convention of published likelihoods (default: none)")
    add("--train-subset", type=setting("train_subset"), default=None,
        help="use only the first N training images (0: all)")
    add("--test-subset", type=setting("test_subset"), default=None,
        help="use only the first N test images (0: all)")
    add("--posterior", choices=POSTERIORS, default=None,
        help="family of q(z | x): 'gaussian' has a closed-form KL (the fused node); the others "
             "are location-scale families with a one-sample Monte-Carlo KL (default: gaussian)")
    # store_true with default None: on --resume an absent flag keeps the saved run's value
    add("--log-grads", action="store_true", default=None,
        help="record each parameter's gradient L2 norm, averaged per epoch, in metrics.jsonl "
             "and plot them at the end (unless --no-plots)")
    add("--manifold-frames", action="store_true", default=None,
        help="after every epoch draw the decoded manifold into frames/epoch_XXX.png "
             "(latent_dim 2 only)")
    add("--device", choices=DEVICES, default=None,
        help="where the model, the data and every training step live; 'cuda' needs CuPy and an "
             "NVIDIA GPU, and reads the loss back every "
             f"{train.LOSS_READ_EVERY} steps (default: {DEFAULTS.device})")
    add("--kernel-backend", choices=config.KERNEL_BACKENDS, default=None,
        help="with --device cuda: the fused sampling+KL kernel, CuPy's NVRTC build or Numba "
             "CUDA (default: by array type, cupy)")
    _add_iw_flags(parser, "after training, ")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint")
    start.add_argument("--overwrite", action="store_true",
                       help="delete the run already in --out (config, metrics, checkpoint, "
                            "figures) and start over; without it (or --resume) such a folder "
                            "is refused")
    add("--allow-changed-settings", action="store_true",
        help="with --resume: accept settings that differ from the checkpoint's (lr, seed, batch "
             "size, beta, warm-up, binarization, data, subsets), apply them from the next epoch "
             "and record the change in metrics.jsonl; the run is then not bit-identical")
    add("--no-plots", action="store_true", help="skip the PNGs at the end")
    add("--quiet", action="store_true", help="no progress bar and no per-epoch lines")


def _add_iw_flags(parser, when=""):
    parser.add_argument("--iw", type=count(0, MAX_IW_SAMPLES), default=0,
                        help=f"{when}estimate -log p(x) with the importance-weighted bound with "
                             "K samples (0: skip)")
    parser.add_argument("--iw-subset", type=count(1, MAX_IW_IMAGES), default=None,
                        help=f"test images for --iw (default: {DEFAULT_IW_IMAGES}, or all if "
                             "there are fewer)")


def _config_from(args):
    """Config from flags; on --resume, unset flags take the values the checkpoint was trained
    with (train.run then refuses those that differ, unless --allow-changed-settings)."""
    base = DEFAULTS
    if args.resume:
        path = os.path.join(args.out, train.CHECKPOINT)
        if not os.path.lexists(path):
            raise CheckpointError(f"{path}: no such checkpoint; --resume needs an earlier run "
                                  "in --out that finished an epoch")
        base = checkpoint.checked_metadata(path, checkpoint.read_metadata(path))
    values = dataclasses.asdict(base)
    for field in values:
        given = getattr(args, field, None)
        if given is not None:
            values[field] = given
    values["out"] = args.out
    values["quiet"] = args.quiet
    if args.device == "cpu" and args.kernel_backend is None:
        values["kernel_backend"] = None  # a GPU run resumed on the CPU drops its GPU kernel
    return config.Config(**values)


def _choose_agg():
    """Draw into files with matplotlib's Agg backend (no display): the CLI's choice alone."""
    import matplotlib
    matplotlib.use("Agg")


def cmd_train(args):
    if args.allow_changed_settings and not args.resume:
        raise ValueError("--allow-changed-settings applies to --resume only; a new run takes "
                         "any settings")
    settings = _config_from(args)
    if not args.no_plots or settings.manifold_frames:
        _choose_agg()
    trainer = train.run(settings, resume=args.resume, overwrite=args.overwrite,
                        allow_changed_settings=args.allow_changed_settings)
    trainer.model.to("cpu")  # the bound and the figures below read the model on the host
    if args.iw:
        _report_iw(trainer, args)
    if not args.no_plots:
        from vae import plots
        for path in plots.plot_run(settings.out, trainer=trainer):
            print(f"wrote {path}")


def _report_iw(trainer, args):
    """Print the importance-weighted bound of --iw samples on --iw-subset test images."""
    images = trainer.test_images
    if args.iw_subset is not None and args.iw_subset > len(images):
        raise ValueError(f"--iw-subset {args.iw_subset}: the run has only {len(images)} test "
                         "images")
    images = images[:args.iw_subset or DEFAULT_IW_IMAGES]
    value = importance_weighted_bound(trainer.model, images, args.iw,
                                      seed=trainer.config.seed + 104729)
    print(f"-log p(x) <= {value:.2f} nats on {len(images)} test images "
          f"({convention(trainer.config.binarize, args.iw, trainer.config.posterior)})")
    return value


def cmd_eval(args):
    trainer = train.load_run(args.run)
    result = evaluate(trainer.model, trainer.test_images, trainer.config.seed + train.EVAL_SEED_OFFSET)
    print(f"epoch {trainer.epoch}: test -ELBO {result['neg_elbo']:.2f} "
          f"(reconstruction {result['reconstruction']:.2f}, KL {result['kl']:.2f}), "
          f"active units {result['active_units']}/{trainer.config.latent_dim} "
          f"({convention(trainer.config.binarize, posterior=trainer.config.posterior)})")
    if args.iw:
        _report_iw(trainer, args)


def cmd_sample(args):
    _choose_agg()
    from vae import plots
    trainer = train.load_run(args.run)
    out = args.output or os.path.join(args.run, "samples.png")
    print(f"wrote {plots.prior_samples(trainer.model, out, count=args.count, seed=args.seed)}")


def cmd_plot(args):
    _choose_agg()
    from vae import plots
    trainer = train.load_run(args.run)
    for path in plots.plot_run(args.run, trainer=trainer):
        print(f"wrote {path}")


# the examples of this module's docstring, shown by --help
EXAMPLES = "examples:\n" + textwrap.indent(textwrap.dedent(__doc__.split("\n\n")[1]), "  ")
# what `plot` draws: the figures of vae.plots.plot_run, by their file names in the run folder
PLOT_FIGURES = ("writes into RUN/: " + ", ".join(name for name in run_folder.FIGURES
                                                 if name not in ("grad_norms.png", "manifold.png",
                                                                 "manifold.gif"))
                + "; grad_norms.png when the run had --log-grads; manifold.png for a 2-D "
                "latent space; manifold.gif when the run kept --manifold-frames")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m vae", description=
                                     "A VAE on MNIST trained with minigrad, on the CPU or a GPU.",
                                     epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="train (or --resume) a VAE into a run folder")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = commands.add_parser("eval", help="test -ELBO of a saved run (and IWAE with --iw K)")
    p.add_argument("run", help="run folder (holds config.json and checkpoint.npz)")
    _add_iw_flags(p)
    p.set_defaults(func=cmd_eval)
    p = commands.add_parser("sample", help="decode draws from the prior N(0, I) into a PNG grid")
    p.add_argument("run", help="run folder")
    p.add_argument("--count", type=count(1, MAX_SAMPLES), default=64,
                   help="number of samples (default: %(default)s)")
    p.add_argument("--seed", type=count(0, 2**32 - 1), default=0,
                   help="seed of the prior draws (default: %(default)s)")
    p.add_argument("--output", default=None, help="PNG path (default: RUN/samples.png)")
    p.set_defaults(func=cmd_sample)
    p = commands.add_parser("plot", help="draw every figure of a saved run into its folder",
                            description=PLOT_FIGURES)
    p.add_argument("run", help="run folder")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, CheckpointError, train.TrainingError, DeviceUnavailableError, ValueError,
            OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
