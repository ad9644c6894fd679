"""The kernels compiled by Numba: the arithmetic once as scalar functions (shared.py, on libm.py's
branch-free libm; jit.py: how they are compiled and cached), run by the CPU backend's prange loop
(cpu.py) and the CUDA backend's grid-stride kernels (gpu.py launching gpu_kernels.py), and
Adam's update as one loop (adam.py).  patches.py holds every change made to Numba's internals.

NOTE: no module here is named cuda*: numba-cuda's import redirector claims every module whose
dotted name contains "numba.cuda" (kernels.numba.cuda would recurse in its finder).
"""
