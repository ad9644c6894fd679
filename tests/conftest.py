"""Test-session setup that must happen before any test module imports Numba.

Numba reads NUMBA_ENABLE_CUDASIM once, at import, so the CUDA simulator is chosen here: the
numba_cuda backend's kernels then run on the CPU as Python threads (small sizes only) and CI needs
no GPU. On a machine with one, MINIGRAD_REAL_GPU=1 runs the same suite on the real device. An
explicit NUMBA_ENABLE_CUDASIM in the environment is left as it is.
"""
import collections
import os
import re

REAL_GPU = os.environ.get("MINIGRAD_REAL_GPU") == "1"
if not REAL_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def skip_reason(report):
    """The reason of a skipped test's report, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter):
    """The skipped tests as one line per reason, with their count (pytest.ini drops -ra, which
    prints one line per test: a wall of the same few reasons)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = collections.Counter(skip_reason(report) for report in skipped)
    noun = "reason" if len(reasons) == 1 else "reasons"
    terminalreporter.section(f"{len(skipped)} skipped, {len(reasons)} {noun}", sep="-")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:4d}  {reason}")
    if all(GPU_REASON.search(reason) for reason in reasons):
        terminalreporter.write_line("all of them need a GPU, CuPy, the CUDA compilers or the "
                                    "optional PyTorch: expected on a machine without them")


# a skip for want of a GPU, its software, or PyTorch (optional: the benchmarks' comparison)
GPU_REASON = re.compile(r"GPU|CuPy|cupy|CUDA|simulator|torch")
