"""The CUDA C arithmetic of kernels/cuda_c/reparam_math.cuh, built for the CPU: a backend without
a GPU.

    forward(mu, logvar, seed, offset, save_noise=False)
    backward(grad_z, logvar, seed, offset, noise=None)
    forward_kl(mu, logvar, seed, offset, save_noise=False)
    backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None)
    philox4x32(counters, key)

the API of kernels.reference (see kernels/contract.py), NumPy in and NumPy out. Importing this
module compiles tests/cuda_c_host.cpp, which includes the header, into a shared library (g++, or
nvcc -x cu where g++ is missing), cached under the temp directory by a hash of the sources and the
command, and loads it with ctypes. Where neither compiler exists the import raises ImportError
saying so; a source that does not compile raises RuntimeError with the compiler's output.

Each pass emulates one kernel launch of `grid` blocks of `block` threads (HOST_GRID unless the
*_launch functions are given another), so the kernels' grid-stride indexing runs here too. The
math functions come from libm, which is where the host and the device differ: see the NOTEs in
reparam_math.cuh.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kernels import contract

NAME = "cuda_c_host"
ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "kernels" / "cuda_c" / "reparam_math.cuh",
           ROOT / "kernels" / "cuda_c" / "adam_math.cuh",
           Path(__file__).resolve().with_suffix(".cpp"))
# NOTE: -ffp-contract=off: no a * b + c fused into an FMA the reference does not do (the device
# code gets the same from the _rn intrinsics).
GXX_FLAGS = ("-O2", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared")
NVCC_FLAGS = ("-x", "cu", "-O2", "-std=c++17", "--compiler-options", "-fPIC,-ffp-contract=off",
              "-shared")
# An emulated launch: 3 blocks of 64 threads, so arrays past 192 Philox blocks make threads loop
# and small ones leave threads idle; a power of two per block, as the KL reduction needs.
HOST_GRID = (3, 64)


def _compile_command(output):
    """The first available compiler's command building the library into output, else None."""
    include = ("-I", str(ROOT / "kernels" / "cuda_c"))
    if shutil.which("g++"):
        return ["g++", *GXX_FLAGS, *include, str(SOURCES[-1]), "-o", str(output)]
    if shutil.which("nvcc"):
        return ["nvcc", *NVCC_FLAGS, *include, str(SOURCES[-1]), "-o", str(output)]
    return None


def build():
    """Path of the shared library, compiled unless the cache already holds this source's build."""
    probe = _compile_command("LIB")
    if probe is None:
        raise ImportError("cuda_c_host needs a C++ compiler to build "
                          "kernels/cuda_c/reparam_math.cuh for the CPU: neither g++ nor nvcc is "
                          "on PATH")
    digest = hashlib.sha256(" ".join(probe).encode())
    for source in SOURCES:
        digest.update(source.read_bytes())
    cache = Path(os.environ.get("MINIGRAD_CACHE_DIR", tempfile.gettempdir())) / "minigrad-cuda-c"
    library = cache / f"cuda_c_host-{digest.hexdigest()[:16]}.so"
    if library.exists():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    # build under a name of our own, then rename: concurrent test processes never see half a file
    partial = cache / f"{library.stem}.{os.getpid()}.tmp.so"
    command = _compile_command(partial)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"cuda_c_host: `{' '.join(command)}` failed "
                           f"(exit {result.returncode}):\n{result.stderr}")
    os.replace(partial, library)
    return library


_lib = ctypes.CDLL(str(build()))

_P, _I64, _U64, _U32 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_ulonglong, ctypes.c_uint32
_STREAM = (_I64, _U64, _U32, _U32, _U32)  # n, first_block, start_lane, key0, key1
_GRID = (_U32, _U32)
_lib.mg_host_philox4x32.argtypes = (_P, _P, _I64, _U32, _U32, *_GRID)
_lib.mg_host_grid_visits.argtypes = (_I64, *_GRID, _P)
_SCALAR = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}
for _suffix, _scalar in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
    getattr(_lib, f"mg_host_box_muller_{_suffix}").argtypes = (_P, _P, _I64)
    getattr(_lib, f"mg_host_forward_{_suffix}").argtypes = (_P, _P, _P, _P, *_STREAM, *_GRID)
    getattr(_lib, f"mg_host_forward_kl_{_suffix}").argtypes = (_P, _P, _P, _P, *_STREAM, *_GRID)
    getattr(_lib, f"mg_host_forward_kl_{_suffix}").restype = ctypes.c_double
    getattr(_lib, f"mg_host_backward_{_suffix}").argtypes = (_P, _P, _P, _P, _P, _P, _scalar,
                                                             *_STREAM, *_GRID)
    getattr(_lib, f"mg_host_adam_{_suffix}").argtypes = (_P, _P, _P, _P, _I64, *[_scalar] * 8)


def _entry(name, dtype):
    """The library function name_f32 or name_f64."""
    return getattr(_lib, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")


def _pointer(array):
    """The data pointer of a C-contiguous ndarray, or None (NULL) for None."""
    return None if array is None else array.ctypes.data


def _stream(name, size, seed, offset):
    """(n, first_block, start_lane, key0, key1): the draw's place in the stream, checked."""
    return (size, *contract.stream_position(name, size, seed, offset))


def _arrays(*arrays):
    """C-contiguous ndarrays of the arguments (non-contiguous ones copied, never misread)."""
    arrays = [None if a is None else np.asarray(a) for a in arrays]
    # NOTE: not np.ascontiguousarray, which turns a 0-d array into shape (1,)
    return [a if a is None or a.flags.c_contiguous else a.copy(order="C") for a in arrays]


def forward_launch(mu, logvar, seed, offset, save_noise=False, grid=HOST_GRID,
                   name=f"{NAME}.forward"):
    """forward, emulating a launch of grid = (blocks, threads per block)."""
    mu, logvar = _arrays(mu, logvar)
    z, eps = np.empty_like(mu), np.empty_like(mu) if save_noise else None
    _entry("mg_host_forward", mu.dtype)(
        _pointer(mu), _pointer(logvar), _pointer(z), _pointer(eps),
        *_stream(name, mu.size, seed, offset), *grid)
    return (z, eps) if save_noise else z


def forward_kl_launch(mu, logvar, seed, offset, save_noise=False, grid=HOST_GRID,
                      name=f"{NAME}.forward_kl"):
    """forward_kl, emulating a launch of grid = (blocks, threads per block)."""
    mu, logvar = _arrays(mu, logvar)
    z, eps = np.empty_like(mu), np.empty_like(mu) if save_noise else None
    total = _entry("mg_host_forward_kl", mu.dtype)(
        _pointer(mu), _pointer(logvar), _pointer(z), _pointer(eps),
        *_stream(name, mu.size, seed, offset), *grid)
    kl = np.asarray(total, dtype=mu.dtype)  # float64 accumulator, rounded once to the dtype
    return (z, kl, eps) if save_noise else (z, kl)


def backward_kl_launch(grad_z, mu, logvar, seed, offset, kl_weight, noise=None, grid=HOST_GRID,
                       name=f"{NAME}.backward_kl"):
    """backward_kl (backward where mu is None), emulating a launch of grid; kl_weight checked."""
    grad_z, mu, logvar, noise = _arrays(grad_z, mu, logvar, noise)
    grad_mu, grad_logvar = np.empty_like(grad_z), np.empty_like(grad_z)
    weight = grad_z.dtype.type(kl_weight)  # as the reference: kl_weight rounded to the dtype
    _entry("mg_host_backward", grad_z.dtype)(
        _pointer(grad_z), _pointer(mu), _pointer(logvar), _pointer(noise), _pointer(grad_mu),
        _pointer(grad_logvar), _SCALAR[grad_z.dtype](weight),
        *_stream(name, grad_z.size, seed, offset), *grid)
    return grad_mu, grad_logvar


# the contract's unchecked passes (kernels.contract's entry points check, then these run)
def run_forward(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward"):
    return forward_launch(mu, logvar, seed, offset, save_noise, name=name)


def run_forward_kl(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward_kl"):
    return forward_kl_launch(mu, logvar, seed, offset, save_noise, name=name)


def run_backward(grad_z, logvar, seed, offset, noise=None, name=f"{NAME}.backward"):
    return backward_kl_launch(grad_z, None, logvar, seed, offset, 0.0, noise, name=name)


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None,
                    name=f"{NAME}.backward_kl"):
    return backward_kl_launch(grad_z, mu, logvar, seed, offset, kl_weight, noise, name=name)


def adam_update(param, grad, exp_avg, exp_avg_sq, *scalars):
    """kernels/cuda_c/adam_math.cuh's Adam step over flat C-contiguous arrays, in place: the
    arguments of kernels.numba.adam.adam_update (scalars already rounded to the dtype)."""
    _entry("mg_host_adam", param.dtype)(_pointer(param), _pointer(grad), _pointer(exp_avg),
                                        _pointer(exp_avg_sq), param.size, *scalars)


def philox4x32(counters, key, grid=HOST_GRID):
    """Philox4x32-10 of each counter row under one key: (n, 4), (2,) uint32 -> (n, 4) uint32."""
    counters, key = contract.check_philox_inputs("cuda_c_host.philox4x32", counters, key)
    counters = np.ascontiguousarray(counters)
    out = np.empty_like(counters)
    _lib.mg_host_philox4x32(_pointer(counters), _pointer(out), counters.shape[0], int(key[0]),
                            int(key[1]), *grid)
    return out


def box_muller(words, dtype):
    """The normals of each row of Philox words, (n, 4) uint32 -> (n, 4) dtype, as the kernels."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    out = np.empty(words.shape, dtype=dtype)
    _entry("mg_host_box_muller", out.dtype)(_pointer(words), _pointer(out), words.shape[0])
    return out


def grid_visits(steps, grid):
    """How often a launch of grid = (blocks, threads) visits each of `steps` grid-stride steps."""
    counts = np.zeros(steps, dtype=np.uint32)
    _lib.mg_host_grid_visits(steps, *grid, _pointer(counts))
    return counts


def num_steps(size, offset):
    """Grid-stride steps (Philox blocks) of a draw of `size` normals at `offset`."""
    return 0 if size == 0 else (offset % 4 + size + 3) // 4
