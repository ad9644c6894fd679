"""The numba_cuda backend: kernels.numba.gpu_kernels launched on the caller's arrays.

Arrays: CuPy arrays and anything with __cuda_array_interface__ are used in place and the outputs
come back as the same kind (CuPy, or Numba device arrays; kl is a 0-d device array, never read
back to the host); NumPy arrays are copied to the device and the outputs back to the host. Inputs
that are not C-contiguous are copied to C order first (NumPy, CuPy); other device arrays must be
C-contiguous.

Where the kernels run: CuPy arrays on CuPy's current stream (cuda.external_stream of its pointer)
and on the arrays' device, so the launches queue behind and before the CuPy work around them and
a CUDA graph capture records them; CuPy arguments reach the kernels through DLPack, which orders
streams without a host synchronisation (numba-cuda 0.30 reads __cuda_array_interface__ arrays
after synchronising their stream). Other arrays: Numba's default stream, current device.
Launches: THREADS threads a block and as many blocks as steps need, at most what the compiled
kernel lets all SMs hold at once (its occupancy, from the driver; kernels.occupancy).

Importing this module raises ImportError, saying what is missing, unless numba-cuda is installed
and a CUDA GPU is visible, or NUMBA_ENABLE_CUDASIM=1 selects Numba's CUDA simulator (set before
Numba is imported).
"""
import math

import numpy as np
from numba import cuda
from numba.core import config

from kernels import contract, occupancy
from kernels.numba.gpu_kernels import (SIMULATED, THREADS, backward_kernel, forward_kernel,
                                        philox_kernel, sum_kernel)
from kernels.numba.patches import no_contraction
from kernels.numba.shared import draw_position

NAME = "numba_cuda"

if getattr(cuda, "implementation", "Built-in") != "NVIDIA":
    raise ImportError("numba_cuda needs the numba-cuda package (pip install numba-cuda); "
                      "numba's built-in CUDA target is deprecated and not supported")
if not config.ENABLE_CUDASIM and not cuda.is_available():
    raise ImportError("numba_cuda found no CUDA GPU (numba.cuda.is_available() is False); set "
                      "NUMBA_ENABLE_CUDASIM=1 before importing numba to use the CUDA simulator")

# The simulator runs every thread as a Python thread and has no SMs or registers: one warp per
# block, 2 "SMs" of 2 resident blocks keep it fast while still running several blocks (and so
# the cross-block KL sum) and looping threads.
SIMULATED_THREADS = 32
SIMULATED_RESIDENT = 4
_resident = {}  # (kernel, argument types, device id) -> blocks all SMs hold at once


def resident_blocks(kernel, args):
    """Blocks of THREADS threads of `kernel`, compiled for these arguments, that all SMs of the
    current device hold at once: the driver's occupancy of the compiled kernel (its registers and
    shared memory) times the SM count."""
    if SIMULATED:
        return SIMULATED_RESIDENT
    argtypes = tuple(kernel.typeof_pyval(a) for a in args)
    key = (kernel, argtypes, cuda.get_current_device().id)
    if key not in _resident:
        with no_contraction():
            compiled = kernel.compile(argtypes)
        _resident[key] = compiled.max_cooperative_grid_blocks(THREADS)
    return _resident[key]


def launch_config(kernel, args, steps):
    """(blocks, threads) for `kernel`'s grid-stride loop over `steps` steps on these arguments."""
    threads = SIMULATED_THREADS if SIMULATED else THREADS
    return occupancy.grid_blocks(steps, threads, resident_blocks(kernel, args)), threads


def _launch(kernel, steps, args, arrays, config=None):
    """kernel over `steps` grid-stride steps, on the arrays' stream and device, compiled (on
    first use) without contraction; `config` (blocks, threads) when the caller sized it."""
    blocks, threads = config or launch_config(kernel, args, steps)
    with arrays.device(), no_contraction():
        kernel[blocks, threads, arrays.stream()](*args)


# ---------------------------------------------------------------------------------------------
# arrays in and out
class _Arrays:
    """Moves one call's arrays: NumPy to the device and back, device arrays in place."""

    def __init__(self, name, first):
        self.name = name
        module = type(first).__module__.split(".")[0]
        self.kind = ("numpy" if isinstance(first, np.ndarray)
                     else "cupy" if module == "cupy" else "device")
        self.first = first
        if self.kind == "cupy":
            import cupy
            self.cupy = cupy

    def stream(self):
        """CuPy's current stream for CuPy arrays (as a Numba external stream), else Numba's
        default stream."""
        if self.kind == "cupy":
            return cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)
        return cuda.default_stream()

    def device(self):
        """A context making the CuPy arrays' device current for Numba too (else: as it is)."""
        if self.kind == "cupy":
            return cuda.gpus[self.first.device.id]
        return _nothing()

    def to_device(self, what, x):
        """x (or None) as a C-contiguous 1-D array the kernels can take."""
        if x is None:
            return None
        if self.kind == "numpy":
            return cuda.to_device(np.ascontiguousarray(x).reshape(-1))
        if self.kind == "cupy":
            # NOTE: passed to the kernel as a CuPy array: numba-cuda imports it by DLPack
            return self.cupy.ascontiguousarray(x).reshape(-1)
        array = cuda.as_cuda_array(x)
        if not array.is_c_contiguous():
            raise ValueError(f"{self.name}: {what} is a non-contiguous device array with strides "
                             f"{array.strides}; pass a C-contiguous one (or a CuPy array)")
        return array.reshape(array.size)

    def empty(self, shape, dtype):
        """A new device array of the caller's kind (NumPy callers: a Numba device array)."""
        if self.kind == "cupy":
            return self.cupy.empty(shape, dtype)
        return cuda.device_array(shape, dtype)

    @staticmethod
    def flat(array):
        """A 1-D view of a new C-contiguous device array, for the kernels."""
        return None if array is None else array.reshape(math.prod(array.shape))

    def zero(self, dtype):
        """A 0-d zero of dtype on the device, of the caller's kind (the KL of an empty draw)."""
        if self.kind == "cupy":
            return self.cupy.zeros((), dtype)
        return cuda.to_device(np.zeros((), dtype))

    def result(self, array):
        """An output as the caller's kind of array."""
        return array.copy_to_host() if self.kind == "numpy" and array is not None else array


class _nothing:
    """A context manager that does nothing (Numba's current device stays current)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _num_blocks(size, s):
    """Philox blocks (grid-stride steps) of a draw of `size` normals starting at lane s."""
    return (int(s) + size + 3) // 4


def _forward(name, mu, logvar, seed, offset, save_noise, kl):
    """(z, kl or None, eps or None), arrays of the caller's kind; kl a 0-d array of the dtype."""
    shape, dtype, size = tuple(mu.shape), np.dtype(mu.dtype), math.prod(mu.shape)
    key0, key1, first, s = draw_position(name, size, seed, offset)
    arrays = _Arrays(name, mu)
    z = arrays.empty(shape, dtype)
    eps = arrays.empty(shape, dtype) if save_noise else None
    total = None
    if size:
        num_blocks = _num_blocks(size, s)
        args = [arrays.to_device("mu", mu), arrays.to_device("logvar", logvar), arrays.flat(z),
                arrays.flat(eps), True if kl else None, None, key0, key1, first, s,
                np.uint64(size), np.int64(num_blocks)]
        config = None
        if kl:  # one float64 partial sum per thread block, then their sum on the device
            # NOTE: sized for the specialisation that runs: the grid is typed with an array here
            args[5] = arrays.empty(1, np.float64)
            config = launch_config(forward_kernel, args, num_blocks)
            args[5] = arrays.empty(config[0], np.float64)
        _launch(forward_kernel, num_blocks, args, arrays, config)
        if kl:
            total = arrays.empty((1,), dtype)
            _launch(sum_kernel, 1, (args[5], np.int64(config[0]), total), arrays)
            total = total.reshape(())
    elif kl:
        total = arrays.zero(dtype)
    return arrays.result(z), arrays.result(total), arrays.result(eps)


def _backward(name, grad_z, mu, logvar, seed, offset, kl_weight, noise):
    """(grad_mu, grad_logvar) of the caller's kind; mu and kl_weight None for the plain backward."""
    shape, dtype, size = tuple(grad_z.shape), np.dtype(grad_z.dtype), math.prod(grad_z.shape)
    key0, key1, first, s = draw_position(name, size, seed, offset)
    arrays = _Arrays(name, grad_z)
    grad_mu, grad_logvar = arrays.empty(shape, dtype), arrays.empty(shape, dtype)
    if size:
        num_blocks = _num_blocks(size, s)
        weight = None if kl_weight is None else dtype.type(kl_weight)
        args = (arrays.to_device("grad_z", grad_z), arrays.to_device("mu", mu),
                arrays.to_device("logvar", logvar), weight, arrays.flat(grad_mu),
                arrays.flat(grad_logvar), arrays.to_device("noise", noise), key0, key1, first, s,
                np.uint64(size), np.int64(num_blocks))
        _launch(backward_kernel, num_blocks, args, arrays)
    return arrays.result(grad_mu), arrays.result(grad_logvar)


# ---------------------------------------------------------------------------------------------
# the contract: run_* trust their arguments (checked by kernels' dispatch, or below)
def _as_array(x):
    """NumPy for anything that is neither an ndarray nor a device array (lists, scalars)."""
    if x is None or isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__"):
        return x
    return np.asarray(x)


def run_forward(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward"):
    z, _, eps = _forward(name, _as_array(mu), _as_array(logvar), seed, offset, save_noise, False)
    return (z, eps) if save_noise else z


def run_forward_kl(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward_kl"):
    z, kl, eps = _forward(name, _as_array(mu), _as_array(logvar), seed, offset, save_noise, True)
    return (z, kl, eps) if save_noise else (z, kl)


def run_backward(grad_z, logvar, seed, offset, noise=None, name=f"{NAME}.backward"):
    return _backward(name, _as_array(grad_z), None, _as_array(logvar), seed, offset, None,
                     _as_array(noise))


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None,
                    name=f"{NAME}.backward_kl"):
    return _backward(name, _as_array(grad_z), _as_array(mu), _as_array(logvar), seed, offset,
                     kl_weight, _as_array(noise))


def philox4x32(counters, key):
    """kernels.philox.philox4x32 computed on the device by kernels.numba.shared's rounds (NumPy
    in and out)."""
    counters, key = contract.check_philox_inputs(f"{NAME}.philox4x32", counters, key)
    arrays = _Arrays(f"{NAME}.philox4x32", counters)
    out = cuda.device_array(counters.shape, np.uint32)
    if len(counters):
        _launch(philox_kernel, len(counters), (cuda.to_device(np.ascontiguousarray(counters)),
                np.uint64(key[0]), np.uint64(key[1]), out), arrays)
    return out.copy_to_host()
