"""Writing a benchmark's results: where they go, what run made them, JSON and Markdown on disk.

Where: a run writes into the folder its ``--out`` names, by default runs/benchmarks/, which git
ignores, so running a documented command never changes the committed figures. Only
``--update-results`` writes into benchmarks/results/, the committed ones (``add_out_arguments``,
``out_folder``).

Every path a report records is relative to the repository (``relative``), so a committed result
names no folder of the machine that made it.
"""
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")   # the committed results
SCRATCH = os.path.join(ROOT, "runs", "benchmarks")      # a run's own, by default (runs/ is ignored)
BUSY_LOAD = 0.5  # 1-minute load average above which timings get a warning


def add_out_arguments(parser, what):
    """--out DIR and --update-results: where ``what`` (the files a run writes) go."""
    parser.add_argument("--out", metavar="DIR",
                        help=f"folder for {what} (default: runs/benchmarks/, which git ignores)")
    parser.add_argument("--update-results", action="store_true",
                        help=f"write {what} into benchmarks/results/, replacing the committed ones")


def out_folder(args, parser):
    """The folder a run writes into: benchmarks/results/ with --update-results, else --out, else
    runs/benchmarks/."""
    if args.update_results and args.out is not None:
        parser.error(f"--out {args.out} and --update-results name two folders; give one")
    if args.update_results:
        return RESULTS
    return SCRATCH if args.out is None else args.out


def relative(path):
    """``path`` relative to the repository root (a path outside it starts with ``..``)."""
    return os.path.relpath(os.path.abspath(path), ROOT)


def shown(path):
    """``path`` for a message: relative when inside the repository, else as it is."""
    rel = relative(path)
    return path if rel.startswith(os.pardir) else rel


def command_line(argv=None):
    """The command that made the report, every absolute path in it made ``relative``."""
    argv = sys.argv if argv is None else argv

    def clean(arg):
        flag, equals, value = arg.rpartition("=")  # --out=/x as well as /x
        return flag + equals + relative(value) if os.path.isabs(value) else arg
    return [clean(arg) for arg in argv]


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit():
    """The checked-out commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def load_at_start(log):
    """The 1-minute load average now; warns through ``log`` when the machine is busy."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        log(f"warning: the 1-minute load average is {load:.2f} before starting; other work on "
            "this machine will distort the timings")
    return load


def load_sentence(load_average):
    """``{"start": ..., "end": ...}`` as a sentence of a Markdown report."""
    return (f"1-minute load average {load_average['start']:.2f} at the start, "
            f"{load_average['end']:.2f} at the end.")


def provenance(benchmark, **fields):
    """The fields every report starts with: which benchmark, the command, date and commit."""
    return {"benchmark": benchmark, "command": command_line(), "date": utc_now(),
            "git_commit": git_commit(), **fields}


def save_report(report, text, out_dir, stem):
    """Write ``stem``.json (the report) and ``stem``.md (its text); a crash never leaves half
    of either.  Returns the two paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = (os.path.join(out_dir, stem + ".json"), os.path.join(out_dir, stem + ".md"))
    for path, content in zip(paths, (json.dumps(report, indent=2) + "\n", text)):
        with open(path + ".tmp", "w") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    return paths


def publish(report, text, out_dir, stem, log=print):
    """save_report, then the text and the two paths through ``log``."""
    paths = save_report(report, text, out_dir, stem)
    log("\n" + text.rstrip("\n"))
    log(f"wrote {shown(paths[0])} and {shown(paths[1])}")
    return paths


def gpu_name(properties):
    """The device name of cupy.cuda.runtime.getDeviceProperties(...): bytes in CuPy 13, str in
    CuPy 14."""
    name = properties["name"]
    return name.decode() if isinstance(name, bytes) else str(name)
