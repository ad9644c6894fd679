"""How the kernels' Numba functions are compiled and cached on disk.

    jit        nopython, cached, force-inlined: the scalar functions both targets call
    jit_ieee   the same with IEEE division (error_model="numpy"), for the functions that divide

Their on-disk cache is stamped with one hash of every file of kernels.numba.patches.SOURCES
(installed by importing that module), so an edit to a callee in another file (cpu.py's loops
inline shared.py's arithmetic, which calls libm.py's polynomials) makes every cached kernel stale
and Numba recompiles it.
"""
import numba

from kernels.numba import patches  # noqa: F401  (installs the cache stamp, SourcesLocator)

# Numba-compiled, cached on disk; no parallel or fastmath option (the CUDA target reuses them)
jit = numba.jit(nopython=True, cache=True, forceinline=True)
# for the float64 functions that divide (never by 0): IEEE division, as in a prange body
jit_ieee = numba.jit(nopython=True, cache=True, forceinline=True, error_model="numpy")
