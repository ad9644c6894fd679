"""The files of benchmarks/gpu_suite.sh: its three outputs from a run's work folder, and the
committed benchmarks/results/gpu_* figures from those outputs.

    python benchmarks/gpu_suite.py collect WORK OUT --mode gpu --budget 480 --seconds 455
    python benchmarks/gpu_suite.py unpack OUT            # OUT: what a lent GPU sent back

collect (gpu_suite.sh runs it last) writes OUT/gpu_suite.json (the device, every step's status
and time, and every figure of every benchmark JSON the steps wrote), OUT/gpu_suite.md (the
summary) and OUT/gpu_logs.tar.gz (WORK's logs and results folders), and nothing else: OUT holds
at most MAX_FILES files. unpack puts them into benchmarks/results/ as the committed figures:
gpu_suite.json, gpu_suite.md, and each benchmark's files from the archive renamed gpu_<file>
(reparam_gpu.png becomes gpu_reparam_gpu.png), ready for git add.
"""
import argparse
import csv
import json
import os
import sys
import tarfile

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import RESULTS, git_commit, shown, utc_now  # noqa: E402

OUTPUTS = ("gpu_suite.json", "gpu_suite.md", "gpu_logs.tar.gz")
MAX_FILES = 8  # what a lent GPU machine returns from its output folder
STEPS = ("device", "kernel_tests", "kernel_report", "reparam", "vae", "rest")


def read_steps(work):
    """The steps.tsv gpu_suite.sh wrote, as dicts in run order (skipped steps included)."""
    steps = []
    path = os.path.join(work, "steps.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for name, status, code, seconds, limit in csv.reader(f, delimiter="\t"):
                steps.append({"step": name, "status": status,
                              "exit": int(code) if code else None, "seconds": int(seconds),
                              "limit_s": int(limit)})
    return steps


def read_device(work):
    """The device as nvidia-smi's CSV query describes it ({} when the query failed)."""
    path = os.path.join(work, "device.csv")
    try:
        with open(path) as f:
            rows = list(csv.reader(f))
    except OSError:
        return {}
    if len(rows) < 2:
        return {"note": " ".join(" ".join(r) for r in rows) or "no device query output"}
    keys = [k.strip().split(" [")[0] for k in rows[0]]
    return {k: v.strip() for k, v in zip(keys, rows[1])}


def read_figures(work):
    """{file name: its JSON} of every benchmark JSON under WORK/results."""
    figures = {}
    folder = os.path.join(work, "results")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                figures[name] = json.load(f)
    return figures


def log_tail(work, step, lines=3):
    """The last lines of a step's log (what the summary quotes for a step that did not pass)."""
    try:
        with open(os.path.join(work, "logs", f"{step}.log")) as f:
            return [line.rstrip() for line in f.readlines()[-lines:]]
    except OSError:
        return []


def headlines(figures):
    """A few lines of the figures a reader wants first (what exists of them)."""
    lines = []
    for name, report in figures.items():
        for dtype, ratios in report.get("speedups_forward_backward", {}).items():
            best = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items() if k != "n")
            lines.append(f"- {name}: {dtype} at N = {ratios.get('n')}: {best}")
        for batch, part in report.get("batches", {}).items():
            summary = part.get("summary", {})
            if "ratio_torch_mean_epoch" in summary:
                lines.append(f"- {name}: batch {batch}: minigrad / PyTorch epoch time "
                             f"{summary['ratio_torch_mean_epoch']:.2f}")
        for row in report.get("numba_cuda", []) + report.get("cuda_c", []):
            if row.get("occupancy", 1) < 0.5:
                lines.append(f"- {name}: {row['kernel']} {row['registers']} registers, "
                             f"{row['occupancy']:.1%} occupancy")
    return lines


def summary_markdown(suite, work):
    device = suite["device"]
    lines = [f"# GPU suite ({suite['mode']}), {suite['date']}", "",
             f"Device: {device.get('name', '?')}, driver {device.get('driver_version', '?')}, "
             f"SM clock {device.get('clocks.sm', '?')} (max {device.get('clocks.max.sm', '?')}), "
             f"memory clock {device.get('clocks.mem', '?')}; commit {suite['git_commit']}.",
             f"Budget {suite['budget_s']} s, used {suite['seconds']} s.", "",
             "| step | status | exit | seconds | limit s |", "|---|---|---|---|---|"]
    for s in suite["steps"]:
        lines.append(f"| {s['step']} | {s['status']} | {'' if s['exit'] is None else s['exit']} "
                     f"| {s['seconds']} | {s['limit_s']} |")
    skipped = [s["step"] for s in suite["steps"] if s["status"] == "skipped"]
    missing = [name for name in STEPS if name not in {s["step"] for s in suite["steps"]}]
    if skipped:
        lines += ["", f"The budget of {suite['budget_s']} s was spent before: "
                      f"{', '.join(skipped)} (skipped; rerun with a larger --budget)."]
    if missing:
        lines += ["", f"Not run at all: {', '.join(missing)}."]
    for s in suite["steps"]:
        if s["status"] in ("failed", "timed_out"):
            lines += ["", f"{s['step']} {s['status'].replace('_', ' ')}; its log ends:", "```",
                      *log_tail(work, s["step"]), "```"]
    found = headlines(suite["figures"])
    lines += ["", "Figures (every one is in gpu_suite.json; logs and the benchmarks' own files "
                  "in gpu_logs.tar.gz):", *(found or ["- none"])]
    return "\n".join(lines) + "\n"


def collect(work, out, mode, budget, seconds):
    suite = {"suite": "benchmarks/gpu_suite.sh", "mode": mode, "date": utc_now(),
             "git_commit": git_commit(), "budget_s": budget, "seconds": seconds,
             "device": read_device(work), "steps": read_steps(work),
             "figures": read_figures(work)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpu_suite.json"), "w") as f:
        json.dump(suite, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "gpu_suite.md"), "w") as f:
        f.write(summary_markdown(suite, work))
    with tarfile.open(os.path.join(out, "gpu_logs.tar.gz"), "w:gz") as archive:
        for folder in ("logs", "results"):
            if os.path.isdir(os.path.join(work, folder)):
                archive.add(os.path.join(work, folder), arcname=folder)
    files = [name for _, _, names in os.walk(out) for name in names]
    if len(files) > MAX_FILES:
        raise SystemExit(f"gpu_suite.py: {shown(out)} holds {len(files)} files; a lent GPU "
                         f"returns at most {MAX_FILES}")
    print(f"gpu_suite: wrote {', '.join(OUTPUTS)} to {shown(out)}")


def unpack(out, results):
    """OUT's files as the committed figures in `results`; returns the paths written."""
    written = []
    os.makedirs(results, exist_ok=True)
    for name in OUTPUTS[:2]:
        with open(os.path.join(out, name)) as f:
            text = f.read()
        written.append(os.path.join(results, name))
        with open(written[-1], "w") as f:
            f.write(text)
    with tarfile.open(os.path.join(out, "gpu_logs.tar.gz")) as archive:
        for member in archive.getmembers():
            folder, _, name = member.name.partition("/")
            if folder == "results" and member.isfile() and "/" not in name:
                data = archive.extractfile(member).read()
                written.append(os.path.join(results, f"gpu_{name}"))
                with open(written[-1], "wb") as f:
                    f.write(data)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("collect", help="write OUT's three files from a run's WORK folder")
    c.add_argument("work")
    c.add_argument("out")
    c.add_argument("--mode", choices=("gpu", "dry-run"), required=True)
    c.add_argument("--budget", type=int, required=True)
    c.add_argument("--seconds", type=int, required=True)
    u = commands.add_parser("unpack", help="OUT's files as benchmarks/results/gpu_*")
    u.add_argument("out")
    u.add_argument("--results", default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.work, args.out, args.mode, args.budget, args.seconds)
    else:
        for path in unpack(args.out, args.results):
            print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
