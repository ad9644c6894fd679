"""Command line: ``python -m vae train|eval|sample|plot``.

    python -m vae train --epochs 10 --out runs/mnist     # trains, evaluates, plots
    python -m vae train --posterior laplace --log-grads   # another posterior; gradient norms
    python -m vae train --device cuda                     # on a GPU (CuPy); plots on the CPU
    python -m vae eval runs/mnist --iw 1000               # test -ELBO and -log p(x) by IWAE
    python -m vae sample runs/mnist --count 64            # a grid of digits from the prior
    python -m vae plot runs/mnist                          # every figure of a run again
"""
import argparse
import dataclasses
import json
import os
import sys


from minigrad.backend import DEVICES, DeviceUnavailableError
from vae import data, train
from vae.checkpoint import CheckpointError
from vae.data import DataError
from vae.evaluate import convention, evaluate, importance_weighted_bound
from vae.model import POSTERIORS

DEFAULTS = train.Config()


def _add_train_flags(parser):
    add = parser.add_argument
    add("--data", default=None, help=f"folder of the four IDX files, gzipped or not "
                                     f"(default: the carried MNIST, {DEFAULTS.data})")
    add("--out", default=DEFAULTS.out, help="run folder for config, metrics, checkpoint, plots "
                                            "(default: %(default)s)")
    add("--epochs", type=int, default=None, help=f"epochs to train in all (default: {DEFAULTS.epochs})")
    add("--batch-size", type=int, default=None, help=f"examples per step (default: {DEFAULTS.batch_size})")
    add("--lr", type=float, default=None, help=f"Adam learning rate (default: {DEFAULTS.lr})")
    add("--hidden-dim", type=int, default=None,
        help=f"hidden units of encoder and decoder (default: {DEFAULTS.hidden_dim})")
    add("--latent-dim", type=int, default=None,
        help=f"latent dimensions; 2 also draws the decoded manifold (default: {DEFAULTS.latent_dim})")
    add("--beta", type=float, default=None, help=f"weight of the KL term (default: {DEFAULTS.beta})")
    add("--warmup-epochs", type=float, default=None,
        help="ramp the KL weight linearly from 0 to beta over this many epochs (default: 0, off)")
    add("--seed", type=int, default=None, help=f"seed of init, shuffling and sampling "
                                              f"(default: {DEFAULTS.seed})")
    add("--binarize", choices=("none", "dynamic"), default=None,
        help="'none': pixels in [0, 1] as BCE targets (the PyTorch example); 'dynamic': a fresh "
             "Bernoulli draw per batch, the convention of published likelihoods (default: none)")
    add("--train-subset", type=int, default=None, help="use only the first N training images (0: all)")
    add("--test-subset", type=int, default=None, help="use only the first N test images (0: all)")
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
    add("--kernel-backend", choices=train.KERNEL_BACKENDS, default=None,
        help="with --device cuda: the fused sampling+KL kernel, CuPy's NVRTC build or Numba "
             "CUDA (default: by array type, cupy)")
    add("--iw", type=int, default=0, help="after training, estimate -log p(x) with the "
                                          "importance-weighted bound with K samples (0: skip)")
    add("--iw-subset", type=int, default=1000, help="test images for --iw (default: %(default)s)")
    add("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add("--no-plots", action="store_true", help="skip the PNGs at the end")
    add("--quiet", action="store_true", help="no progress bar and no per-epoch lines")


def _config_from_file(path, f):
    """The run's Config from its config.json, or a CheckpointError naming the file."""
    try:
        return train.Config(**json.load(f))
    except (json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path}: not a run's config.json ({err})") from None


def _config_from(args):
    """Config from flags; on --resume, unset flags take the saved run's values."""
    base = DEFAULTS
    if args.resume:
        path = os.path.join(args.out, "config.json")
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: no such file; --resume needs an earlier run in --out")
        with open(path) as f:
            base = _config_from_file(path, f)
    values = dataclasses.asdict(base)
    for field in values:
        given = getattr(args, field, None)
        if given is not None:
            values[field] = given
    values["out"] = args.out
    values["quiet"] = args.quiet
    if args.device == "cpu" and args.kernel_backend is None:
        values["kernel_backend"] = None  # a GPU run resumed on the CPU drops its GPU kernel
    return train.Config(**values)


def cmd_train(args):
    config = _config_from(args)
    trainer = train.run(config, resume=args.resume)
    trainer.model.to("cpu")  # the bound and the figures below read the model on the host
    if args.iw:
        _report_iw(trainer.model, trainer.test_images[:args.iw_subset], args.iw, config)
    if not args.no_plots:
        from vae import plots
        for path in plots.plot_run(config.out, trainer=trainer):
            print(f"wrote {path}")


def _report_iw(model, images, samples, config):
    value = importance_weighted_bound(model, images, samples, seed=config.seed + 104729)
    print(f"-log p(x) <= {value:.2f} nats on {len(images)} test images "
          f"({convention(config.binarize, samples, config.posterior)})")
    return value


def _load_run(folder):
    """A Trainer restored from a run folder's config and checkpoint."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{config_path}: no such file; is {folder} a run folder?")
    with open(config_path) as f:
        config = _config_from_file(config_path, f)
    # eval, sample and plot run on the CPU, whatever device trained the run
    config = dataclasses.replace(config, device="cpu", kernel_backend=None)
    trainer = train.Trainer(config, data.load(config.data))
    trainer.restore(os.path.join(folder, train.CHECKPOINT))
    return trainer


def cmd_eval(args):
    trainer = _load_run(args.run)
    result = evaluate(trainer.model, trainer.test_images, trainer.config.seed + train.EVAL_SEED_OFFSET)
    print(f"epoch {trainer.epoch}: test -ELBO {result['neg_elbo']:.2f} "
          f"(reconstruction {result['reconstruction']:.2f}, KL {result['kl']:.2f}), "
          f"active units {result['active_units']}/{trainer.config.latent_dim} "
          f"({convention(trainer.config.binarize, posterior=trainer.config.posterior)})")
    if args.iw:
        _report_iw(trainer.model, trainer.test_images[:args.iw_subset], args.iw, trainer.config)


def cmd_sample(args):
    from vae import plots
    trainer = _load_run(args.run)
    out = args.output or os.path.join(args.run, "samples.png")
    print(f"wrote {plots.prior_samples(trainer.model, out, count=args.count, seed=args.seed)}")


def cmd_plot(args):
    from vae import plots
    trainer = _load_run(args.run)
    for path in plots.plot_run(args.run, trainer=trainer):
        print(f"wrote {path}")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m vae", description=
                                     "A VAE on MNIST trained with minigrad, on the CPU or a GPU.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="train (or --resume) a VAE into a run folder")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = commands.add_parser("eval", help="test -ELBO of a saved run (and IWAE with --iw K)")
    p.add_argument("run", help="run folder (holds config.json and checkpoint.npz)")
    p.add_argument("--iw", type=int, default=0, help="importance samples K for -log p(x) (0: skip)")
    p.add_argument("--iw-subset", type=int, default=1000, help="test images for --iw (default: %(default)s)")
    p.set_defaults(func=cmd_eval)
    p = commands.add_parser("sample", help="decode draws from the prior N(0, I) into a PNG grid")
    p.add_argument("run", help="run folder")
    p.add_argument("--count", type=int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior draws (default: %(default)s)")
    p.add_argument("--output", default=None, help="PNG path (default: RUN/samples.png)")
    p.set_defaults(func=cmd_sample)
    p = commands.add_parser("plot", help="draw every figure of a saved run into its folder")
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
