"""Posterior families compared: the MNIST VAE trained with each q(z | x) on the same data.

    python benchmarks/posteriors.py                                  # 3 epochs on 20000 images
    python benchmarks/posteriors.py --epochs 20 --train-subset 0     # the full comparison

Every posterior (gaussian, laplace, logistic, gumbel) trains through the product's own loop
(``vae.train.Trainer``) with the same settings, seed, data and shuffling; the trainers take turns
epoch by epoch after a few warm-up steps each, so machine noise hits each alike.
Reported per posterior:

- test -ELBO: one sample of z per test image (``vae.evaluate.evaluate``).  The gaussian's KL is
  the closed form; the others' is a one-sample Monte-Carlo estimate, unbiased but noisier, so
  compare these within a few tenths of a nat only.
- IWAE: the importance-weighted bound on -log p(x) with K samples (default 100) on the first
  1000 test images, each posterior weighting its own draws by its own log q: the figure that is
  comparable across families.
- active units (Burda et al.: Cov_x(E_q[z_d]) > 0.01), mean training seconds per epoch.

Results go to posteriors.{json,md} (``--stem`` changes the name) in
runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import cpu_info  # noqa: E402
from benchmarks.report import (add_out_arguments, git_commit, out_folder, publish,  # noqa: E402
                               relative, utc_now)
from vae import data  # noqa: E402
from vae.evaluate import convention, importance_weighted_bound  # noqa: E402
from vae.model import POSTERIORS  # noqa: E402
from vae.train import Config, Trainer  # noqa: E402

IW_SEED_OFFSET = 104729  # the seed offset `python -m vae train --iw` uses
BUSY_LOAD = 0.5          # load average per usable CPU above which timings get a warning


def make_config(posterior, args, **overrides):
    settings = dict(data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    hidden_dim=args.hidden_dim, latent_dim=args.latent_dim, seed=args.seed,
                    binarize=args.binarize, train_subset=args.train_subset,
                    test_subset=args.test_subset, posterior=posterior, quiet=True)
    return Config(**settings | overrides)


def warm_up(args, dataset):
    """Three throwaway steps per posterior, so no timed epoch pays first-call costs (the
    kernels' compiled-code load, BLAS thread start-up)."""
    for posterior in args.posteriors:
        Trainer(make_config(posterior, args, train_subset=3 * args.batch_size),
                dataset).train_epoch()


def train_interleaved(args, dataset, log):
    """Every posterior's Trainer, advanced one epoch each in turn (so machine noise hits each
    alike), evaluated after every epoch; returns {posterior: (trainer, per-epoch records)}."""
    runs = {p: (Trainer(make_config(p, args), dataset), []) for p in args.posteriors}
    for _ in range(args.epochs):
        for posterior, (trainer, epochs) in runs.items():
            started = time.perf_counter()
            train_loss = trainer.train_epoch()
            seconds = time.perf_counter() - started
            test = trainer.evaluate()  # the same evaluation stream every epoch, as train.run
            epochs.append(dict(epoch=trainer.epoch, train_loss=train_loss, seconds=seconds, **test))
            log(f"{posterior:>8}  epoch {trainer.epoch}/{args.epochs}  train -ELBO "
                f"{train_loss:.2f}  test -ELBO {test['neg_elbo']:.2f}  {seconds:.1f}s")
    return runs


def summarize(posterior, trainer, epochs, args, log):
    """The report's row of one trained posterior, with its IWAE bound."""
    started = time.perf_counter()
    iw_images = trainer.test_images[:args.iw_subset]
    iwae = importance_weighted_bound(trainer.model, iw_images, args.iw_samples,
                                     seed=args.seed + IW_SEED_OFFSET)
    log(f"{posterior:>8}  IWAE K={args.iw_samples} on {len(iw_images)} images {iwae:.2f}  "
        f"({time.perf_counter() - started:.1f}s)")
    last = epochs[-1]
    return {"posterior": posterior, "epochs": args.epochs,
            "test_neg_elbo": last["neg_elbo"], "test_reconstruction": last["reconstruction"],
            "test_kl": last["kl"], "iwae": iwae, "iw_samples": args.iw_samples,
            "iw_images": len(iw_images), "active_units": last["active_units"],
            "latent_dim": args.latent_dim,
            "seconds_per_epoch": statistics.mean(e["seconds"] for e in epochs),
            "convention": convention(args.binarize, posterior=posterior),
            "iw_convention": convention(args.binarize, args.iw_samples, posterior),
            "per_epoch": epochs}


def markdown(report):
    s = report["settings"]
    lines = [
        "# VAE posterior families on MNIST (minigrad, CPU)", "",
        f"{report['machine']['model']}, {report['machine']['usable_cpus']} usable CPUs; Python "
        f"{report['python']}, NumPy {report['numpy']}; {report['date']}; commit "
        f"{report['commit'] or 'unknown'}.",
        f"{s['train_images']} training / {s['test_images']} test images, {s['epochs']} epochs, "
        f"batch {s['batch_size']}, Adam lr {s['lr']}, hidden {s['hidden_dim']}, latent "
        f"{s['latent_dim']}, float32, seed {s['seed']}, pixels '{s['binarize']}'. "
        f"1-minute load average {report['load_average'][0]:.2f} at the start, "
        f"{report['load_average'][1]:.2f} at the end.", "",
        "| posterior | epochs | test -ELBO | IWAE | active units | s/epoch | convention |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['posterior']} | {r['epochs']} | {r['test_neg_elbo']:.2f} | "
                     f"{r['iwae']:.2f} | {r['active_units']}/{r['latent_dim']} | "
                     f"{r['seconds_per_epoch']:.2f} | {r['convention']} |")
    first = report["results"][0]
    lines += [
        "",
        f"- test -ELBO: nats per test image, mean over all {s['test_images']} test images, one "
        "sample of z each; the gaussian's KL in closed form, the others' by one-sample Monte "
        "Carlo (an unbiased but noisier estimate).",
        f"- IWAE: importance-weighted bound on -log p(x), K={first['iw_samples']}, on the first "
        f"{first['iw_images']} test images, each posterior weighting by its own log q "
        f"({first['iw_convention'].split('; ')[0]}); comparable across families.",
        "- s/epoch: training loop only (shuffle, batches, forward, backward, Adam), mean over "
        "epochs; the posteriors take turns epoch by epoch after warm-up steps. The Monte-Carlo "
        "KL adds a few elementwise ops on (batch, latent) arrays.",
    ]
    busiest = max(report["load_average"])
    if busiest > BUSY_LOAD * report["machine"]["usable_cpus"]:
        fastest = ", ".join(f"{r['posterior']} {min(e['seconds'] for e in r['per_epoch']):.2f} s"
                            for r in report["results"])
        lines.append(f"- warning: the machine was busy (1-minute load average up to {busiest:.2f} "
                     f"on {report['machine']['usable_cpus']} CPUs), so s/epoch is no speed "
                     f"comparison; the fastest epoch of each: {fastest}.")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--posteriors", nargs="+", choices=POSTERIORS, default=list(POSTERIORS),
        help="families to compare (default: all)")
    add("--epochs", type=int, default=3, help="epochs per posterior (default: %(default)s)")
    add("--train-subset", type=int, default=20000,
        help="first N training images, 0 for all 60000 (default: %(default)s)")
    add("--test-subset", type=int, default=0, help="first N test images, 0 for all (default)")
    add("--iw-samples", type=int, default=100, help="K of the IWAE bound (default: %(default)s)")
    add("--iw-subset", type=int, default=1000, help="test images for IWAE (default: %(default)s)")
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr)
    add("--hidden-dim", type=int, default=defaults.hidden_dim)
    add("--latent-dim", type=int, default=defaults.latent_dim)
    add("--binarize", choices=("none", "dynamic"), default=defaults.binarize)
    add("--seed", type=int, default=defaults.seed)
    add("--data", default=data.DEFAULT_DIR, help="MNIST folder")
    add_out_arguments(parser, "the .json and .md")
    add("--stem", default="posteriors", help="file name of the results (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    if args.epochs < 1 or args.iw_samples < 1 or args.iw_subset < 1:
        parser.error("--epochs, --iw-samples and --iw-subset must be >= 1")
    if args.train_subset < 0 or args.test_subset < 0:
        parser.error("--train-subset and --test-subset must be >= 0 (0: all)")
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    load_at_start = os.getloadavg()[0]
    dataset = data.load(args.data)
    warm_up(args, dataset)
    runs = train_interleaved(args, dataset, log)
    results = [summarize(posterior, trainer, epochs, args, log)
               for posterior, (trainer, epochs) in runs.items()]
    report = {
        "benchmark": "posteriors",
        "date": utc_now(), "commit": git_commit(), "machine": cpu_info(),
        "python": platform.python_version(), "numpy": np.__version__,
        "load_average": [load_at_start, os.getloadavg()[0]],
        "settings": dict(vars(args), data=relative(args.data), out=relative(args.out),
                         train_images=args.train_subset or len(dataset.train_images),
                         test_images=args.test_subset or len(dataset.test_images)),
        "results": results,
    }
    publish(report, markdown(report), args.out, args.stem, log)
    return report


if __name__ == "__main__":
    main()
