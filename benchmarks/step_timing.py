"""What the benchmarks that time single training steps share: their arguments, the training
before the measurement, the run, and the report's settings.

    python benchmarks/engine_overhead.py   # the engine against the same step in NumPy
    python benchmarks/step_profile.py      # the step phase by phase and op by op

Each first trains ``--train-epochs`` epochs through the product's loop, so that a step is
measured on the weights of a model in training, then times ``--steps`` steps after
WARMUP_STEPS untimed ones and reports medians.
"""
import argparse
import os
import statistics

from benchmarks.machine import cpu_info, software_info
from benchmarks.report import load_at_start, provenance, publish
from benchmarks.vae_runs import (QUICK_TRAIN_SUBSET, add_cpu_arguments, make_config,
                                 resolve_cpu_arguments)
from vae import data
from vae.train import Trainer

WARMUP_STEPS = 10  # untimed steps before the timed ones


def parse_step_args(description, stem, argv=None):
    """The arguments of a benchmark that times single steps: add_cpu_arguments, --train-epochs
    and --steps (100; --quick: 30).  ``stem`` names its results."""
    parser = argparse.ArgumentParser(description=description)
    add_cpu_arguments(parser, f"1 epoch on {QUICK_TRAIN_SUBSET} images, 30 timed steps; writes "
                              f"{stem}_quick.*")
    parser.add_argument("--train-epochs", type=int, default=1,
                        help="epochs of training before the measurement (default 1)")
    parser.add_argument("--steps", type=int, help="timed steps (default 100; --quick: 30)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (30 if args.quick else 100)
    if args.steps < 1 or args.train_epochs < 0:
        parser.error("--steps must be >= 1, --train-epochs >= 0")
    resolve_cpu_arguments(args, parser)
    args.stem = stem + "_quick" if args.quick else stem
    return args


def trained_trainer(args, log):
    """A Trainer on the benchmark's data after ``args.train_epochs`` epochs of its own loop, so
    that a step is measured on the weights of a model in training, not of its initialisation."""
    trainer = Trainer(make_config(args), data.load(args.data))
    for epoch in range(args.train_epochs):
        loss = trainer.train_epoch()
        log(f"training before the measurement: epoch {epoch + 1}/{args.train_epochs}  "
            f"train -ELBO {loss:.2f}")
    return trainer


def step_config(args, trainer):
    """The settings a step benchmark's report records."""
    return {"train_images": len(trainer.train_images), "train_epochs": args.train_epochs,
            "batch_size": trainer.config.batch_size, "seed": args.seed, "dtype": "float32",
            "steps": args.steps, "warmup_steps": WARMUP_STEPS}


def step_setting(config):
    """The step benchmarks' settings as a sentence of their Markdown report."""
    return (f"Batch {config['batch_size']} from {config['train_images']} training images, after "
            f"{config['train_epochs']} epoch(s) of training; medians over {config['steps']} "
            f"steps after {config['warmup_steps']} untimed ones.")


def median_ms(samples):
    """The median of ``samples`` (seconds), in milliseconds."""
    return statistics.median(samples) * 1e3


def run_step_benchmark(name, description, measure, markdown, argv=None, log=print):
    """A step benchmark from its parts: parse the arguments, train, ``measure(trainer, args,
    log)`` (a dict of the report's fields), then write the report ``markdown`` renders as
    ``name``.{json,md} (``name``_quick with --quick).  Returns the report."""
    args = parse_step_args(description, name, argv)
    load_start = load_at_start(log)
    trainer = trained_trainer(args, log)
    fields = measure(trainer, args, log)
    report = provenance(
        name, quick=args.quick, device=cpu_info(), software=software_info(None),
        load_average_1min={"start": load_start, "end": os.getloadavg()[0]},
        config=step_config(args, trainer), **fields)
    publish(report, markdown(report), args.out, args.stem, log)
    return report
