"""CPU benchmark: the minigrad VAE's training loop against the same recipe in PyTorch.

    python benchmarks/vae_cpu.py --epochs 10      # the full run (several minutes)
    python benchmarks/vae_cpu.py --quick          # smoke run: 1 epoch on 5000 training images

Epoch time and test -ELBO per epoch of three trainers, all in one process with the same data
(``vae.data.load()``), interleaved epoch by epoch so machine noise hits each alike: minigrad
(``vae.train.Trainer``, the product's own loop), PyTorch eager (the pytorch/examples VAE of
benchmarks/vae_runs.py, seed 1) and PyTorch with ``Adam(fused=True)``.  Test -ELBO: mean over the
whole test set of BCE-sum + KL, one sample.  The step itself is measured by engine_overhead.py
and step_profile.py, memory by vae_memory.py.

PyTorch is never a dependency: without it, minigrad is measured alone and the report says so.
Results go to vae_cpu.{json,md} (``--quick``: vae_cpu_quick.{json,md}) in
runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones).
"""
import argparse
import os
import sys
import time

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import cpu_info, describe, software_info  # noqa: E402
from benchmarks.report import load_at_start, load_sentence, provenance, publish  # noqa: E402
from benchmarks.vae_runs import (MinigradRun, add_cpu_arguments, fused_adam_error,  # noqa: E402
                                 import_torch, interleaved_epochs, make_config, mean_and_final,
                                 resolve_cpu_arguments, torch_run_class, warm_up)
from vae import data  # noqa: E402

TARGET_ELBO_GAP = 0.5       # nats: final test -ELBO of minigrad vs PyTorch eager
TARGET_EPOCH_RATIO = 1.0    # minigrad mean epoch / PyTorch eager mean epoch


def summarize(rows, names):
    """Mean epoch times, their ratios, final test -ELBO and the targets."""
    summary = mean_and_final(rows, names)
    for other in names[1:]:
        summary[f"ratio_{other}_mean_epoch"] = (summary["minigrad_mean_epoch_s"]
                                                / summary[f"{other}_mean_epoch_s"])
        summary[f"neg_elbo_minus_{other}"] = (summary["minigrad_final_test_neg_elbo"]
                                              - summary[f"{other}_final_test_neg_elbo"])
    if "torch" in names:
        summary["target_elbo_gap_met"] = abs(summary["neg_elbo_minus_torch"]) <= TARGET_ELBO_GAP
        summary["target_epoch_ratio_met"] = (summary["ratio_torch_mean_epoch"]
                                             <= TARGET_EPOCH_RATIO)
    return summary


def _cell(value, form):
    return "n/a" if value is None else format(value, form)


def markdown(report):
    """The short human-readable report: the epoch table and the targets."""
    names, cfg = report["frameworks"], report["config"]
    machine = describe(report["device"], report["software"])
    lines = [f"# VAE training on CPU: minigrad vs PyTorch{' (quick)' if report['quick'] else ''}",
             "",
             machine + ("" if report["software"]["torch"] else f"; {report['torch_absent']}")
             + f"; {report['date']}.",
             f"{cfg['train_images']} training / {cfg['test_images']} test images, batch "
             f"{cfg['batch_size']}, Adam lr {cfg['lr']}, float32, seed {cfg['seed']}; epochs "
             f"interleaved ({', '.join(names)}), {cfg['pause_s']} s pause between blocks. "
             "Test -ELBO: one sample, mean over the test set, nats. "
             + load_sentence(report["load_average_1min"]), ""]
    header = ["epoch"] + [f"{n} s" for n in names] + [f"minigrad/{n}" for n in names[1:]] \
        + [f"-ELBO {n}" for n in names]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in report["epochs"]:
        cells = [str(row["epoch"])] + [_cell(row[f"{n}_s"], ".2f") for n in names] \
            + [_cell(row[f"ratio_{n}"], ".3f") for n in names[1:]] \
            + [_cell(row[f"{n}_test_neg_elbo"], ".2f") for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    s = report["summary"]
    cells = ["mean"] + [_cell(s[f"{n}_mean_epoch_s"], ".2f") for n in names] \
        + [_cell(s[f"ratio_{n}_mean_epoch"], ".3f") for n in names[1:]] + [""] * len(names)
    lines += ["| " + " | ".join(cells) + " |", ""]

    if "torch" in names:
        met = {True: "met", False: "NOT met"}
        lines.append(f"- final test -ELBO: minigrad {s['minigrad_final_test_neg_elbo']:.2f}, "
                     + ", ".join(f"{n} {s[f'{n}_final_test_neg_elbo']:.2f} (minigrad - {n}: "
                                 f"{s[f'neg_elbo_minus_{n}']:+.2f})" for n in names[1:])
                     + f"; target |minigrad - torch| <= {TARGET_ELBO_GAP}: "
                     + met[s["target_elbo_gap_met"]])
        lines.append(f"- mean epoch minigrad/torch {s['ratio_torch_mean_epoch']:.3f}; target <= "
                     f"{TARGET_EPOCH_RATIO}: {met[s['target_epoch_ratio_met']]}")
    else:
        lines.append(f"- final test -ELBO: minigrad {s['minigrad_final_test_neg_elbo']:.2f}")
    if report.get("torch_fused_note"):
        lines.append(f"- {report['torch_fused_note']}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help="epochs per trainer (default 10; --quick: 1)")
    add_cpu_arguments(parser, "smoke run: 1 epoch on 5000 images; writes vae_cpu_quick.*")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of sleep between framework blocks")
    parser.add_argument("--no-torch", action="store_true", help="measure minigrad alone")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (1 if args.quick else 10)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    resolve_cpu_arguments(args, parser)
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    load_start = load_at_start(log)
    torch, torch_absent = import_torch(args.no_torch, args.threads, log)
    dataset = data.load(args.data)
    config = make_config(args, args.epochs)
    runs = [MinigradRun(config, dataset)]
    trainer = runs[0].trainer
    fused_note = None
    if torch is not None:
        TorchRun = torch_run_class(torch)
        runs.append(TorchRun(config, trainer.train_images, trainer.test_images))
        error = fused_adam_error(torch)
        if error is None:
            runs.append(TorchRun(config, trainer.train_images, trainer.test_images, fused=True))
        else:
            fused_note = (f"torch {torch.__version__}: Adam(fused=True) is unsupported on "
                          f"CPU ({error})")
            log(fused_note)
    names = [run.name for run in runs]
    log(f"{len(trainer.train_images)} training / {len(trainer.test_images)} test images, batch "
        f"{config.batch_size}, {args.epochs} epoch(s), interleaved: {', '.join(names)}")
    warm_up(runs, dataset)
    time.sleep(args.pause)
    rows = interleaved_epochs(runs, args.epochs, log, args.pause)

    report = provenance(
        "vae_cpu", quick=args.quick, device=cpu_info(), software=software_info(torch),
        load_average_1min={"start": load_start, "end": os.getloadavg()[0]},
        frameworks=names, torch_absent=torch_absent, torch_fused_note=fused_note,
        config={"epochs": args.epochs, "train_images": len(trainer.train_images),
                "test_images": len(trainer.test_images), "batch_size": config.batch_size,
                "lr": config.lr, "hidden_dim": config.hidden_dim,
                "latent_dim": config.latent_dim, "seed": config.seed, "dtype": "float32",
                "pause_s": args.pause, "torch_threads": args.threads},
        epochs=rows, summary=summarize(rows, names),
        notes=["epoch seconds cover the training loop only (shuffle, batches, forward, "
               "backward, optimizer, reading the loss), not the evaluation",
               "both frameworks minimise the batch mean of -ELBO (the PyTorch example sums "
               "over the batch; Adam is invariant to that scale up to eps)",
               "minigrad draws its noise from its Philox stream, PyTorch from torch.randn"])
    publish(report, markdown(report), args.out, "vae_cpu_quick" if args.quick else "vae_cpu", log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
