"""Every change this package makes to Numba's internals, in one place.

NOTE: why patch at all.  Numba offers no public switch for three things the kernels need:
(1) an on-disk cache that goes stale when an inlined callee in another file changes (Numba
stamps an entry with its own function's file only); (2) NVVM compiles without contraction, so
numba_cuda rounds where numba_cpu does (numba-cuda 0.30 has no option for -fma=0,
NVIDIA/numba-cuda#118); (3) compiling device code for a given compute capability without a
driver (numba-cuda 0.30 asks the driver even when cc is given).  Each patch changes one internal
as little as it can: (1) puts SourcesLocator first in numba.core.caching.CacheImpl's list of
locators (numba 0.59 to 0.68), installed when this module is imported; (2) wraps
numba.cuda.cudadrv.nvvm.compile_ir once (install_contraction_hook) and adds -fma=0 inside
no_contraction(); (3) swaps numba.cuda.dispatcher.get_current_device inside compiling_for(cc).
The numba-cuda hooks are checked against its source when installed (HOOKS_CHECKED: the versions
they were read in); tests/test_numba_cache.py and tests/test_gpu_compile.py prove all three
effects, so a Numba that changes any of these internals is noticed.

    SourcesLocator   the cache stamp: one hash of every file of SOURCES
    no_contraction   NVVM compiles in its scope get -fma=0 (after install_contraction_hook)
    compiling_for    numba-cuda's compiles in its scope take cc as the current device's
"""
import contextlib
import contextvars
import functools
import hashlib
import inspect
import types
from pathlib import Path

from numba.core import caching

HOOKS_CHECKED = ("0.30.4",)
KERNELS = Path(__file__).resolve().parent
# every file of kernels/numba/ whose Numba functions are cached or inlined into cached ones
SOURCES = ("jit.py", "libm.py", "shared.py", "cpu.py", "adam.py")


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


# --- numba-cuda: contraction off, and a compute capability without a driver ------------------
_NO_CONTRACTION = contextvars.ContextVar("minigrad_no_contraction", default=False)


def _hook_problems():
    """What no_contraction() and compiling_for() rely on in numba-cuda, where it is missing."""
    from numba.cuda import codegen, dispatcher
    from numba.cuda.cudadrv import nvvm
    problems = []
    if not callable(getattr(nvvm, "compile_ir", None)) or \
            "nvvm.compile_ir(" not in inspect.getsource(codegen.CUDACodeLibrary.get_asm_strs):
        problems.append("CUDACodeLibrary.get_asm_strs no longer calls nvvm.compile_ir")
    if "get_current_device()" not in inspect.getsource(dispatcher.CUDADispatcher.compile_device):
        problems.append("CUDADispatcher.compile_device no longer asks get_current_device()")
    return problems


def install_contraction_hook():
    """Wrap numba-cuda's NVVM entry point once: inside no_contraction(), -fma=0."""
    from numba.cuda.cudadrv import nvvm
    problems = _hook_problems()
    if problems:
        raise ImportError("kernels.numba.patches: numba-cuda changed (" + "; ".join(problems)
                          + f"); its hooks were read in numba-cuda {', '.join(HOOKS_CHECKED)}")
    compile_ir = nvvm.compile_ir
    if getattr(compile_ir, "minigrad_hook", False):
        return

    def compile_ir_with_contraction_choice(llvmir, **options):
        if _NO_CONTRACTION.get():
            options.setdefault("fma", False)
        return compile_ir(llvmir, **options)
    compile_ir_with_contraction_choice.minigrad_hook = True
    nvvm.compile_ir = compile_ir_with_contraction_choice


@contextlib.contextmanager
def no_contraction():
    """NVVM compiles made in this scope get -fma=0: no a * b + c fused unless written as fma."""
    token = _NO_CONTRACTION.set(True)
    try:
        yield
    finally:
        _NO_CONTRACTION.reset(token)


@contextlib.contextmanager
def compiling_for(cc):
    """numba-cuda's compiles in this scope take `cc` as the current device's compute capability
    instead of asking a driver (for compiling device functions where there is none)."""
    from numba.cuda import dispatcher
    ask_driver = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=tuple(cc))
    try:
        yield
    finally:
        dispatcher.get_current_device = ask_driver
