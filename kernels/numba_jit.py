"""How the kernels' Numba functions are compiled and cached on disk.

    jit        nopython, cached, force-inlined: the scalar functions both targets call
    jit_ieee   the same with IEEE division (error_model="numpy"), for the functions that divide

Numba's on-disk cache (cache=True) keys each entry on a hash of the cached function's own source
file, so a function that inlines functions of another file keeps its old machine code after that
file changes (numba_cpu's loops inline numba_shared's arithmetic, which calls numba_libm's
polynomials). Importing this module puts SourcesLocator first in Numba's list of cache locators:
for the functions of the files in SOURCES it keeps Numba's choice of cache folder and replaces the
stamp by one hash of all of SOURCES, so an edit to any of them makes every cached kernel stale
and Numba recompiles it. Functions of other files are left to Numba's own locators.

NOTE: CacheImpl._locator_classes is Numba's list (numba/core/caching.py, numba 0.59 to 0.68);
tests/test_numba_cache.py edits a callee in a copy of kernels/ and fails if the cache goes
stale again, so a Numba that changes this list is noticed.
"""
import functools
import hashlib
from pathlib import Path

import numba
from numba.core import caching

KERNELS = Path(__file__).resolve().parent
# every file of kernels/ whose Numba functions are cached or inlined into cached ones
SOURCES = ("numba_jit.py", "numba_libm.py", "numba_shared.py", "numba_cpu.py", "adam_cpu.py")


@functools.lru_cache(maxsize=None)
def sources_digest():
    """sha256 over SOURCES' bytes (read once per process, as Numba hashes a file once)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (KERNELS / name).read_bytes())
    return digest.hexdigest()


class SourcesLocator(caching._CacheLocator):
    """Numba's own cache locator for a function of SOURCES, with sources_digest() as its stamp."""

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return sources_digest()

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        path = Path(py_file).resolve()
        if path.parent != KERNELS or path.name not in SOURCES:
            return None
        for locator in caching.CacheImpl._locator_classes:  # Numba's, in Numba's order
            if locator is not cls:
                inner = locator.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


if SourcesLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, SourcesLocator)

# Numba-compiled, cached on disk; no parallel or fastmath option (the CUDA target reuses them)
jit = numba.jit(nopython=True, cache=True, forceinline=True)
# for the float64 functions that divide (never by 0): IEEE division, as in a prange body
jit_ieee = numba.jit(nopython=True, cache=True, forceinline=True, error_model="numpy")
