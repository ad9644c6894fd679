"""Peak resident memory of the VAE trainers: minigrad and the PyTorch recipe, each alone.

    python benchmarks/vae_memory.py           # one epoch on all 60000 images per trainer
    python benchmarks/vae_memory.py --quick   # one epoch on 5000 images

Each trainer (minigrad, PyTorch eager, PyTorch with ``Adam(fused=True)``; see
benchmarks/vae_runs.py) runs in a fresh subprocess of its own, minigrad without torch imported:
it loads the data, trains one epoch and evaluates.  Reported, from /proc/self/status: RSS after
loading the data, the peak during training (high-water mark reset after loading) and the peak of
the whole process.  Linux only.

Results go to vae_memory.{json,md} (``--quick``: vae_memory_quick.*) in
runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones).
"""
import argparse
import json
import os
import subprocess
import sys

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import cpu_info, software_info  # noqa: E402
from benchmarks.report import provenance, publish, relative  # noqa: E402
from benchmarks.vae_runs import (MinigradRun, add_cpu_arguments, fused_adam_error,  # noqa: E402
                                 import_torch, make_config, resolve_cpu_arguments,
                                 torch_run_class)
from vae import data  # noqa: E402
from vae.train import Trainer  # noqa: E402

FRAMEWORKS = ("minigrad", "torch", "torch_fused")
KIB_TO_MIB = 1 / 1024  # /proc/self/status counts KiB
NOTE = ("each trainer in a fresh process (minigrad without torch imported), 1 epoch + "
        "evaluation, peaks read from VmHWM (ru_maxrss of a child inherits its parent's peak "
        "across fork+exec); peak_during_training: VmHWM reset once the data was loaded")


def _status_kib(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"vae_memory: /proc/self/status has no {field} (Linux only)")


def _reset_peak():
    """Reset the process's peak RSS (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(framework, args):
    """Train one epoch and evaluate in this (fresh) process; print its memory as JSON.

    NOTE: ru_maxrss is useless here: Linux carries the peak of the process image that exec
    replaced (the forked copy of the parent benchmark) into the child's ru_maxrss.  VmHWM of
    /proc/self/status is this process image's own peak, and clear_refs can reset it.
    """
    torch = None
    if framework != "minigrad":
        import torch
        torch.set_num_threads(args.threads)
    dataset = data.load(args.data)
    config = make_config(args)
    load_peak = _status_kib("VmHWM")
    after_load = _status_kib("VmRSS")
    reset = _reset_peak()
    if torch is None:
        run = MinigradRun(config, dataset)
    else:
        subset = Trainer(config, dataset)  # the same subsets as the minigrad run
        run = torch_run_class(torch)(config, subset.train_images, subset.test_images,
                                     fused=framework == "torch_fused")
        del subset
    run.train_epoch()
    run.evaluate()
    training_peak = _status_kib("VmHWM")
    print(json.dumps({
        "framework": framework, "torch_imported": "torch" in sys.modules,
        "rss_after_data_load_mib": after_load * KIB_TO_MIB,
        "peak_during_training_mib": training_peak * KIB_TO_MIB if reset else None,
        "peak_whole_process_mib": max(load_peak, training_peak) * KIB_TO_MIB,
    }))


def measure(args, names, log):
    """Run probe for each trainer in a subprocess of its own: {name: its JSON or the error}."""
    results = {}
    for name in names:
        log(f"{name}: one epoch on {args.train_subset or 'all'} images in a fresh process")
        command = [sys.executable, os.path.abspath(__file__), "--probe", name,
                   "--data", args.data, "--train-subset", str(args.train_subset),
                   "--seed", str(args.seed), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def markdown(report):
    cfg = report["config"]
    lines = [f"# Peak resident memory of the VAE trainers{' (quick)' if report['quick'] else ''}",
             "", f"{report['device']['model']}, {report['device']['memory_gib']} GiB; "
             f"{cfg['train_images'] or 'all'} training images, one epoch + evaluation, each "
             f"trainer alone in a fresh process; {report['date']}.", "",
             "| trainer | RSS after data load MiB | peak during training MiB | peak of the whole "
             "process MiB |", "|---|---:|---:|---:|"]
    for name, m in report["per_trainer"].items():
        if "error" in m:
            lines.append(f"| {name} | error: {m['error']} | | |")
            continue
        peak = m["peak_during_training_mib"]
        lines.append(f"| {name} | {m['rss_after_data_load_mib']:.0f} | "
                     f"{'n/a' if peak is None else format(peak, '.0f')} | "
                     f"{m['peak_whole_process_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cpu_arguments(parser, "one epoch on 5000 images; writes vae_memory_quick.*")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--no-torch", action="store_true", help="measure minigrad alone")
    parser.add_argument("--probe", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    resolve_cpu_arguments(args, parser)
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    if args.probe:
        probe(args.probe, args)
        return 0
    torch, torch_absent = import_torch(args.no_torch, args.threads, log)
    names = ["minigrad"]
    if torch is not None:
        names += ["torch"] + ([] if fused_adam_error(torch) else ["torch_fused"])
    report = provenance("vae_memory", quick=args.quick, device=cpu_info(),
                        software=software_info(torch), torch_absent=torch_absent,
                        config={"train_images": args.train_subset, "seed": args.seed,
                                "torch_threads": args.threads, "data": relative(args.data)},
                        per_trainer=measure(args, names, log), note=NOTE)
    publish(report, markdown(report), args.out,
            "vae_memory_quick" if args.quick else "vae_memory", log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
