"""Numba's on-disk cache of the kernels goes stale when any function it inlined changes.

Numba stamps a cache entry with a hash of its own function's file only; kernels.numba.jit stamps
every kernel function with one hash of all of kernels.numba.patches.SOURCES. Checked on a copy of
kernels/ in a temporary folder, in fresh processes (the cache is what a new process loads).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kernels.numba import patches

NUMBA = Path(patches.__file__).parent          # kernels/numba/, whose files SOURCES names
PACKAGE = NUMBA.parent                         # kernels/, copied whole
# kernels.numba.shared.forward_element inlines kernels.numba.libm.exp_f32: z = 0 + exp(1/2) * 1
PROBE = ("import numpy as np; from kernels.numba import shared as numba_shared; "
         "print(repr(float(numba_shared.forward_element(np.float32(0), np.float32(1), "
         "np.float32(1)))))")


def _run(root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=root, capture_output=True,
                            text=True, env={**env, "PYTHONPATH": str(root)}, timeout=300)
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


def test_an_edit_to_a_callee_in_another_file_recompiles_the_cached_caller(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    before = _run(tmp_path)
    assert before == float(__import__("numpy").float32(1.6487212707))  # e^(1/2) in float32
    cache = tmp_path / "kernels" / "numba" / "__pycache__"
    cached = list(cache.glob("shared.forward_element*.nbi"))
    assert cached, "forward_element was not cached on disk"
    assert _run(tmp_path) == before  # the cache, loaded again

    libm = tmp_path / "kernels" / "numba" / "libm.py"
    text, count = re.subn(r"^F32_ONE = np\.float32\(1\.0\)$", "F32_ONE = np.float32(2.0)",
                          libm.read_text(), flags=re.M)
    assert count == 1, "kernels/numba/libm.py no longer defines F32_ONE as the test expects"
    libm.write_text(text)
    # exp_f32 now adds 2 where it added 1: a stale cache would still print e^(1/2)
    assert _run(tmp_path) != before


def test_every_cached_kernel_file_is_in_the_stamp():
    cached = {path.name for path in NUMBA.glob("*.py") if "cache=True" in path.read_text()
              or "from kernels.numba.jit import" in path.read_text()}
    assert cached <= set(patches.SOURCES), sorted(cached - set(patches.SOURCES))
