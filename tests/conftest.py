"""Test-session setup that must happen before any test module imports Numba.

Numba reads NUMBA_ENABLE_CUDASIM once, at import, so the CUDA simulator is chosen here: the
numba_cuda backend's kernels then run on the CPU as Python threads (small sizes only) and CI needs
no GPU. On a machine with one, MINIGRAD_REAL_GPU=1 runs the same suite on the real device. An
explicit NUMBA_ENABLE_CUDASIM in the environment is left as it is.
"""
import os

REAL_GPU = os.environ.get("MINIGRAD_REAL_GPU") == "1"
if not REAL_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
