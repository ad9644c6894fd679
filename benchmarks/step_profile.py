"""Where the minigrad VAE's training step spends its time: phase by phase, and op by op.

    python benchmarks/step_profile.py          # 1 epoch of training, then 100 profiled steps
    python benchmarks/step_profile.py --quick  # 1 epoch on 5000 images, then 30 steps

The model first trains ``--train-epochs`` epochs through the product's loop.  Then, medians over
``--steps`` steps (after 10 untimed ones):
1. the step's phases in train_epoch's order, on its shuffled batches: batch gather,
   forward+loss (with the read of the loss), backward, Adam step;
2. on one batch, the backward time of each op's backward formula, from ``minigrad.trace``'s
   record of each node's backward (nothing in minigrad is patched), and the graph walk around
   them.
The engine against the same step written in NumPy is engine_overhead.py.

Results go to runs/benchmarks/step_profile.{json,md} (``--quick``: step_profile_quick.*), or
``--out DIR``; ``--update-results`` replaces the committed benchmarks/results/ ones.
"""
import os
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import describe  # noqa: E402
from benchmarks.report import load_sentence  # noqa: E402
from benchmarks.step_timing import (WARMUP_STEPS, median_ms, run_step_benchmark,  # noqa: E402
                                    step_setting)
import minigrad as mg  # noqa: E402

PHASES = ("batch_gather", "forward_loss", "backward", "optimizer_step")


def profile_phases(trainer, steps, warmup):
    """Median times of the training step's phases, in train_epoch's order, on its data."""
    config, model, optimizer = trainer.config, trainer.model, trainer.optimizer
    order = np.random.default_rng(config.seed).permutation(len(trainer.train_images))
    batches = len(order) // config.batch_size
    clock = time.perf_counter
    phases = {name: [] for name in PHASES}
    for step in range(warmup + steps):
        t0 = clock()
        x = trainer.train_images[order[(step % batches) * config.batch_size:
                                       (step % batches + 1) * config.batch_size]]
        t1 = clock()
        loss = model.loss(x, trainer.stream, config.beta).total
        float(loss.data)  # the loop reads the loss every step
        t2 = clock()
        optimizer.zero_grad()
        loss.backward()
        t3 = clock()
        optimizer.step()
        t4 = clock()
        if step >= warmup:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(seconds)
    result = {f"{name}_ms": median_ms(samples) for name, samples in phases.items()}
    result["step_ms"] = median_ms([sum(parts) for parts in zip(*phases.values())])
    result["steps"] = steps
    return result


def backward_by_op(trainer, steps, warmup):
    """Median per-step backward time of each op's backward formula, and of the graph walk
    around them, from ``minigrad.trace``'s records (its gradient norms cost a little more walk).
    """
    model, stream, batch = trainer.model, trainer.stream, trainer.config.batch_size
    x = trainer.train_images[:batch]
    clock = time.perf_counter
    per_step, walks = [], []
    for step in range(warmup + steps):
        loss = model.loss(x, stream).total
        model.zero_grad()
        with mg.trace() as trace:
            started = clock()
            loss.backward()
            total = clock() - started
        spent = {}
        for record in trace.records:
            spent[record["op"]] = spent.get(record["op"], 0.0) + record["seconds"]
        if step >= warmup:
            per_step.append(spent)
            walks.append(total - sum(spent.values()))
    model.zero_grad()
    ops = sorted({op for spent in per_step for op in spent})
    result = {op: median_ms([spent.get(op, 0.0) for spent in per_step]) for op in ops}
    result["graph_walk_and_accumulation"] = median_ms(walks)
    return dict(sorted(result.items(), key=lambda item: -item[1]))


def markdown(report):
    lines = [f"# minigrad VAE step profile{' (quick)' if report['quick'] else ''}", "",
             describe(report["device"], report["software"]) + f"; {report['date']}.",
             step_setting(report["config"]) + " " + load_sentence(report["load_average_1min"]),
             "", "| phase | ms |", "|---|---:|"]
    lines += [f"| {name} | {report['phases'][name + '_ms']:.3f} |" for name in PHASES + ("step",)]
    lines += ["", "Backward time per op (median ms per step, one batch):", "",
              "| op | ms |", "|---|---:|"]
    lines += [f"| {op} | {ms:.3f} |" for op, ms in report["backward_by_op_ms"].items()]
    return "\n".join(lines) + "\n"


def measure(trainer, args, log):
    log(f"profiling the minigrad step ({args.steps} steps per measurement)")
    return {"phases": profile_phases(trainer, args.steps, WARMUP_STEPS),
            "backward_by_op_ms": backward_by_op(trainer, args.steps, WARMUP_STEPS)}


def main(argv=None, log=print):
    run_step_benchmark("step_profile", __doc__.split("\n\n")[0], measure, markdown, argv, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
