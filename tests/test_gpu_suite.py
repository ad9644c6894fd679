"""benchmarks/gpu_suite.sh --dry-run: the lent-GPU suite's plumbing, run on the CPU.

The same steps, budget and files as on a GPU, with each step's CPU stand-in (Numba's simulator,
tiny sizes): at most 8 files under OUT (a lent machine returns no more), the JSON of every
figure, the summary, the archive of logs; a spent budget skips the rest and says so; unpack makes
the committed benchmarks/results/gpu_* files.
"""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
sys.path.insert(0, str(ROOT))
from benchmarks import gpu_suite  # noqa: E402


def _run(*args):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SUITE), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def _files(folder):
    return sorted(str(Path(d, n).relative_to(folder)) for d, _, names in os.walk(folder)
                  for n in names)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_out")
    result = _run("--dry-run", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_dry_run_writes_three_files_and_no_more_than_eight(dry_run):
    assert _files(dry_run) == sorted(gpu_suite.OUTPUTS)
    assert len(_files(dry_run)) <= gpu_suite.MAX_FILES


def test_the_json_holds_every_step_and_figure(dry_run):
    suite = json.loads((dry_run / "gpu_suite.json").read_text())
    assert suite["mode"] == "dry-run" and suite["budget_s"] == 480
    assert [s["step"] for s in suite["steps"]] == list(gpu_suite.STEPS)
    assert all(s["status"] == "ok" and s["exit"] == 0 for s in suite["steps"]), suite["steps"]
    assert "name" in suite["device"] and "driver_version" in suite["device"]
    assert {"reparam_cpu.json", "vae_cpu.json"} <= set(suite["figures"])
    rows = suite["figures"]["reparam_cpu.json"]["results"]
    assert rows and all(r["seconds"] > 0 for r in rows)


def test_the_summary_and_the_archive(dry_run):
    summary = (dry_run / "gpu_suite.md").read_text()
    assert summary.startswith("# GPU suite (dry-run)")
    for step in gpu_suite.STEPS:
        assert f"| {step} | ok | 0 |" in summary
    with tarfile.open(dry_run / "gpu_logs.tar.gz") as archive:
        names = set(archive.getnames())
    assert {f"logs/{step}.log" for step in gpu_suite.STEPS} <= names
    assert "results/reparam_cpu.png" in names


def test_unpack_makes_the_committed_gpu_files(dry_run, tmp_path):
    written = gpu_suite.unpack(dry_run, tmp_path)
    assert sorted(Path(p).name for p in written) == [
        "gpu_reparam_cpu.json", "gpu_reparam_cpu.md", "gpu_reparam_cpu.png", "gpu_suite.json",
        "gpu_suite.md", "gpu_vae_cpu.json", "gpu_vae_cpu.md"]
    assert _files(tmp_path) == sorted(Path(p).name for p in written)


def test_a_spent_budget_skips_the_rest_and_says_so(tmp_path):
    result = _run("--dry-run", "--budget", "26", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    suite = json.loads((tmp_path / "gpu_suite.json").read_text())
    statuses = {s["step"]: s["status"] for s in suite["steps"]}
    assert statuses["rest"] == "skipped" and list(statuses) == list(gpu_suite.STEPS)
    assert "skipped, the budget of 26 s is spent" in result.stdout
    assert "The budget of 26 s was spent before:" in (tmp_path / "gpu_suite.md").read_text()


@pytest.mark.parametrize("args, message", [
    ((), "expected one output folder"),
    (("--budget", "soon", "out"), "--budget must be a whole number of seconds"),
    (("--fast", "out"), "unknown option --fast"),
])
def test_bad_arguments_are_named(args, message):
    result = _run(*args)
    assert result.returncode == 2 and message in result.stderr
