"""The numba_cuda backend: @cuda.jit kernels (numba-cuda's numba.cuda) over Philox blocks.

Each kernel is a grid-stride loop in which a thread turns one Philox block into 4 normals and those
into 4 outputs per step; eps never touches memory unless save_noise asks for it. The arithmetic
is kernels.numba_shared's, the functions the CPU backend runs:
    bytes per element (itemsize b): forward 3b, backward 4b, +b with saved noise, +b for mu in
    backward_kl; the KL adds one float64 per thread block.

Arrays: CuPy arrays and anything with __cuda_array_interface__ are used in place and the outputs
come back as the same kind (CuPy, or Numba device arrays); NumPy arrays are copied to the device
and the outputs back to the host. Inputs that are not C-contiguous are copied to C order first
(NumPy, CuPy); other device arrays must be C-contiguous.

Importing this module raises ImportError, saying what is missing, unless numba-cuda is installed
and a CUDA GPU is visible, or NUMBA_ENABLE_CUDASIM=1 selects Numba's CUDA simulator (set before
Numba is imported). The simulator runs kernels as Python threads; it hands kernels fake arrays that
only Python code can index, so numba_shared's functions that take arrays run as Python there,
while the scalar ones (Philox, the normals, exp) run compiled.
"""
import math
import types

import numpy as np
from numba import cuda, float64
from numba.core import config

from kernels import contract, numba_shared
from kernels.numba_shared import block_lanes, draw_position, philox4x32_10

NAME = "numba_cuda"
SIMULATED = bool(config.ENABLE_CUDASIM)

if getattr(cuda, "implementation", "Built-in") != "NVIDIA":
    raise ImportError("numba_cuda needs the numba-cuda package (pip install numba-cuda); "
                      "numba's built-in CUDA target is deprecated and not supported")
if not SIMULATED and not cuda.is_available():
    raise ImportError("numba_cuda found no CUDA GPU (numba.cuda.is_available() is False); set "
                      "NUMBA_ENABLE_CUDASIM=1 before importing numba to use the CUDA simulator")

# NOTE: 256 threads = 8 warps per block: a multiple of the warp size, small enough that 8 blocks
# (2048 threads, the maximum an SM holds on Ampere and Hopper) fit one SM at <= 32 registers per
# thread, and the KL reduction's shared array stays 2 KiB. Each thread keeps its own loop state, so
# more blocks than BLOCKS_PER_SM per SM would only queue up: the grid-stride loop covers the rest.
THREADS = 256
BLOCKS_PER_SM = 8
# The simulator runs every thread as a Python thread and has no SM count: one warp per block and
# 2 "SMs" keep it fast while still running several blocks (and so the cross-block KL sum).
SIMULATED_THREADS = 32
SIMULATED_SMS = 2


def launch_config(num_items):
    """(blocks, threads) for a grid-stride loop over num_items items: enough blocks to give every
    item a thread, at most BLOCKS_PER_SM per SM of the current device."""
    threads = SIMULATED_THREADS if SIMULATED else THREADS
    sms = SIMULATED_SMS if SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT
    blocks = min((num_items + threads - 1) // threads, sms * BLOCKS_PER_SM)
    return max(blocks, 1), threads


def _device_functions(names):
    """numba_shared's functions `names`, compiled as device functions from their Python source.

    The functions that take arrays are device functions here (the simulator runs them as Python
    over its fake arrays); each one's globals are numba_shared's with these substituted, so when
    forward_block calls forward_lane it calls the device function. The scalar functions stay
    @numba.jit: numba-cuda compiles them for the device, and the simulator calls them compiled.
    """
    namespace = dict(vars(numba_shared))
    for name in names:
        python = types.FunctionType(namespace[name].py_func.__code__, namespace, name)
        namespace[name] = cuda.jit(device=True)(python)
    return [namespace[name] for name in names]


_forward_block, _backward_block = _device_functions(
    ["forward_lane", "backward_lane", "forward_block", "backward_block"])[2:]


@cuda.jit(device=True)
def _sum_into(total, partials):
    """partials[block] = the sum of `total` over the threads of this thread block, in tree order
    (the block's thread count is a power of two, at most THREADS)."""
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    shared[t] = total
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            shared[t] += shared[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partials[cuda.blockIdx.x] = shared[0]


@cuda.jit
def _forward_kernel(mu, logvar, z, eps_out, kl, partials, key0, key1, first_block, s, n,
                    num_blocks):
    """forward_block over blocks cuda.grid(1), + gridsize, ...; KL partials per thread block."""
    total = 0.0  # this thread's KL terms, in float64
    for j in range(cuda.grid(1), num_blocks, cuda.gridsize(1)):
        base, lo, hi = block_lanes(j, s, n)
        total += _forward_block(mu, logvar, z, eps_out, kl, key0, key1,
                                first_block + np.uint64(j), base, lo, hi)
    if kl is not None:
        _sum_into(total, partials)


@cuda.jit
def _backward_kernel(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                     first_block, s, n, num_blocks):
    """backward_block over blocks cuda.grid(1), + gridsize, ..."""
    for j in range(cuda.grid(1), num_blocks, cuda.gridsize(1)):
        base, lo, hi = block_lanes(j, s, n)
        _backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                        first_block + np.uint64(j), base, lo, hi)


@cuda.jit
def _philox_kernel(counters, key0, key1, out):
    """out[r] = Philox4x32-10 of counters[r] under (key0, key1), grid-stride over rows."""
    for r in range(cuda.grid(1), counters.shape[0], cuda.gridsize(1)):
        x0, x1, x2, x3 = philox4x32_10(np.uint64(counters[r, 0]), np.uint64(counters[r, 1]),
                                       np.uint64(counters[r, 2]), np.uint64(counters[r, 3]),
                                       key0, key1)
        out[r, 0] = np.uint32(x0)
        out[r, 1] = np.uint32(x1)
        out[r, 2] = np.uint32(x2)
        out[r, 3] = np.uint32(x3)


# ---------------------------------------------------------------------------------------------
# arrays in and out
class _Arrays:
    """Moves one call's arrays: NumPy to the device and back, device arrays in place."""

    def __init__(self, name, first):
        self.name = name
        module = type(first).__module__.split(".")[0]
        self.kind = ("numpy" if isinstance(first, np.ndarray)
                     else "cupy" if module == "cupy" else "device")
        if self.kind == "cupy":
            import cupy
            self.cupy = cupy

    def to_device(self, what, x):
        """x (or None) as a C-contiguous 1-D array the kernels can take."""
        if x is None:
            return None
        if self.kind == "numpy":
            return cuda.to_device(np.ascontiguousarray(x).reshape(-1))
        if self.kind == "cupy":
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

    def result(self, array):
        """An output as the caller's kind of array."""
        return array.copy_to_host() if self.kind == "numpy" and array is not None else array

    def scalar(self, value, dtype):
        """A 0-d array of dtype holding value, of the caller's kind."""
        host = np.asarray(value, dtype=dtype)
        if self.kind == "numpy":
            return host
        return self.cupy.asarray(host) if self.kind == "cupy" else cuda.to_device(host)

    def total(self, partials):
        """The float64 sum of the per-block partial sums."""
        if self.kind == "cupy":
            return float(partials.sum())
        return float(partials.copy_to_host().sum())


def _forward(name, mu, logvar, seed, offset, save_noise, kl):
    """(z, kl sum, eps or None), arrays of the caller's kind."""
    contract.check_reparam_inputs(name, mu, logvar)
    shape, dtype, size = tuple(mu.shape), np.dtype(mu.dtype), math.prod(mu.shape)
    key0, key1, first, s = draw_position(name, size, seed, offset)
    arrays = _Arrays(name, mu)
    z = arrays.empty(shape, dtype)
    eps = arrays.empty(shape, dtype) if save_noise else None
    total = 0.0
    if size:
        num_blocks = (int(s) + size + 3) // 4
        blocks, threads = launch_config(num_blocks)
        partials = None if kl is None else arrays.empty(blocks, np.float64)
        _forward_kernel[blocks, threads](
            arrays.to_device("mu", mu), arrays.to_device("logvar", logvar), arrays.flat(z),
            arrays.flat(eps), kl, partials, key0, key1, first, s, np.uint64(size),
            np.int64(num_blocks))
        if kl is not None:
            total = arrays.total(partials)
    return arrays.result(z), arrays.scalar(total, dtype), arrays.result(eps)


def _backward(name, grad_z, mu, logvar, seed, offset, kl_grad, noise):
    """(grad_mu, grad_logvar) of the caller's kind; mu and kl_grad None for the plain backward."""
    contract.check_backward_inputs(name, grad_z, logvar, mu=mu, noise=noise)
    shape, dtype, size = tuple(grad_z.shape), np.dtype(grad_z.dtype), math.prod(grad_z.shape)
    key0, key1, first, s = draw_position(name, size, seed, offset)
    arrays = _Arrays(name, grad_z)
    grad_mu, grad_logvar = arrays.empty(shape, dtype), arrays.empty(shape, dtype)
    if size:
        num_blocks = (int(s) + size + 3) // 4
        blocks, threads = launch_config(num_blocks)
        weight = None if kl_grad is None else dtype.type(kl_grad)
        _backward_kernel[blocks, threads](
            arrays.to_device("grad_z", grad_z), arrays.to_device("mu", mu),
            arrays.to_device("logvar", logvar), weight, arrays.flat(grad_mu),
            arrays.flat(grad_logvar), arrays.to_device("noise", noise), key0, key1, first, s,
            np.uint64(size), np.int64(num_blocks))
    return arrays.result(grad_mu), arrays.result(grad_logvar)


def _as_array(x):
    """NumPy for anything that is neither an ndarray nor a device array (lists, scalars)."""
    if x is None or isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__"):
        return x
    return np.asarray(x)


def forward(mu, logvar, seed, offset, save_noise=False):
    """z = mu + exp(logvar / 2) * eps; (z, eps) with save_noise. See kernels.contract."""
    z, _, eps = _forward(f"{NAME}.forward", _as_array(mu), _as_array(logvar), seed, offset,
                         save_noise, None)
    return (z, eps) if save_noise else z


def forward_kl(mu, logvar, seed, offset, save_noise=False):
    """(z, kl), or (z, kl, eps) with save_noise; kl a 0-d array, summed in float64."""
    z, kl, eps = _forward(f"{NAME}.forward_kl", _as_array(mu), _as_array(logvar), seed, offset,
                          save_noise, True)
    return (z, kl, eps) if save_noise else (z, kl)


def backward(grad_z, logvar, seed, offset, noise=None):
    """(grad_mu, grad_logvar); eps regenerated from (seed, offset) unless noise is given."""
    return _backward(f"{NAME}.backward", _as_array(grad_z), None, _as_array(logvar), seed,
                     offset, None, _as_array(noise))


def backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, noise=None):
    """The backward plus kl_grad times the KL's gradient, in one pass."""
    name = f"{NAME}.backward_kl"
    # checked here: _backward reads kl_grad None as the plain backward's "no KL"
    kl_grad = contract.check_kl_grad(name, "kl_grad", kl_grad, grad_z)
    return _backward(name, _as_array(grad_z), _as_array(mu), _as_array(logvar), seed, offset,
                     kl_grad, _as_array(noise))


def philox4x32(counters, key):
    """kernels.philox.philox4x32 computed on the device by numba_shared's rounds (NumPy in/out)."""
    counters, key = contract.check_philox_inputs(f"{NAME}.philox4x32", counters, key)
    out = cuda.device_array(counters.shape, np.uint32)
    if len(counters):
        blocks, threads = launch_config(len(counters))
        _philox_kernel[blocks, threads](cuda.to_device(np.ascontiguousarray(counters)),
                                        np.uint64(key[0]), np.uint64(key[1]), out)
    return out.copy_to_host()
