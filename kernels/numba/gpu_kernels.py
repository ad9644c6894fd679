"""The numba_cuda backend's @cuda.jit kernels, every specialisation it launches, and how they are
compiled: importable wherever numba-cuda is installed, GPU or not (kernels.numba.gpu launches
them; benchmarks/compile_report.py compiles them without a GPU).

Each kernel is a grid-stride loop in which a thread turns one Philox block into 4 normals and those
into 4 outputs per step; eps never touches memory unless save_noise asks for it. The arithmetic
is kernels.numba.shared's, the functions the CPU backend runs:
    bytes per element (itemsize b): forward 3b, backward 4b, +b with saved noise, +b for mu in
    backward_kl; the KL adds one float64 per thread block, summed on the device by a second
    one-block kernel (no atomics: the same inputs give the same bits).

Contraction: NVVM fuses a * b + c into one FMA unless told -fma=0 (66 FMAs in the float32 forward
kernel, none in the source), so a GPU would round differently from numba_cpu. Every launch and
every compile of these kernels runs inside no_contraction(), so numba_cuda rounds where numba_cpu
does and the only FMAs are kernels.numba.libm.fma_f64's; compiling_for(cc) compiles them without a
driver. Both are hooks into numba-cuda's internals, installed (and checked) when this module is
imported: kernels.numba.patches, with every other patch of Numba.

Under NUMBA_ENABLE_CUDASIM=1 nothing is compiled: the simulator runs kernels as Python threads on
fake arrays, so kernels.numba.shared's functions that take arrays run as Python there, while the
scalar ones (Philox, the normals, exp) run compiled for the CPU.
"""
import types

import numpy as np
from numba import cuda, float64
from numba import types as nb
from numba.core import config
from numba.np.numpy_support import from_dtype

from kernels.numba import shared as numba_shared
from kernels.numba.patches import compiling_for, install_contraction_hook, no_contraction
from kernels.numba.shared import block_lanes, philox4x32_10

SIMULATED = bool(config.ENABLE_CUDASIM)
# NOTE: a power of two (the KL tree reduction), a multiple of the 32-thread warp; 8 warps a block
# keep the occupancy granularity fine (kernels.occupancy): the grid, not the block, is sized from
# what the compiled kernel lets an SM hold. The KL's shared array is THREADS float64 (2 KiB).
THREADS = 256


# ---------------------------------------------------------------------------------------------
# the kernels
def _device_functions(names):
    """kernels.numba.shared's functions `names`, compiled as device functions from their source.

    The functions that take arrays are device functions here (the simulator runs them as Python
    over its fake arrays); each one's globals are kernels.numba.shared's with these substituted,
    so when forward_block calls forward_lane it calls the device function. The scalar functions stay
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
def _block_sum(total, out, index):
    """out[index] = the sum of `total` over the threads of this thread block, in tree order
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
        out[index] = shared[0]


@cuda.jit
def forward_kernel(mu, logvar, z, eps_out, kl, partials, key0, key1, first_block, s, n,
                   num_blocks):
    """forward_block over blocks cuda.grid(1), + gridsize, ...; KL partials per thread block."""
    total = 0.0  # this thread's KL terms, in float64
    for j in range(cuda.grid(1), num_blocks, cuda.gridsize(1)):
        base, lo, hi = block_lanes(j, s, n)
        total += _forward_block(mu, logvar, z, eps_out, kl, key0, key1,
                                first_block + np.uint64(j), base, lo, hi)
    if kl is not None:
        _block_sum(total, partials, cuda.blockIdx.x)


@cuda.jit
def sum_kernel(partials, count, out):
    """out[0] = the float64 sum of partials[:count], rounded once to out's dtype: one thread
    block, each thread summing a stride of the partials, then the tree of _block_sum."""
    total = 0.0
    for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        total += partials[k]
    _block_sum(total, out, 0)


@cuda.jit
def backward_kernel(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                    first_block, s, n, num_blocks):
    """backward_block over blocks cuda.grid(1), + gridsize, ..."""
    for j in range(cuda.grid(1), num_blocks, cuda.gridsize(1)):
        base, lo, hi = block_lanes(j, s, n)
        _backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                        first_block + np.uint64(j), base, lo, hi)


@cuda.jit
def philox_kernel(counters, key0, key1, out):
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
# every specialisation the backend launches: (name, kernel, argument types)
def launch_signature(args):
    """The numba argument types of a launch's arguments, as the dispatcher types them: every
    array argument is a C-contiguous device array (the backend makes them so)."""
    def typed(value):
        if value is None:
            return nb.none
        if isinstance(value, bool):
            return nb.boolean
        if hasattr(value, "shape") and hasattr(value, "dtype") and len(value.shape):
            return nb.Array(from_dtype(np.dtype(value.dtype)), len(value.shape), "C")
        return from_dtype(np.asarray(value).dtype)
    return tuple(typed(a) for a in args)


def _specialisations():
    rows = []
    u64, i64 = nb.uint64, nb.int64
    partials = nb.Array(nb.float64, 1, "C")
    for dtype, suffix in ((nb.float32, "f32"), (nb.float64, "f64")):
        array = nb.Array(dtype, 1, "C")
        for kl in (False, True):
            for save_noise in (False, True):
                name = f"forward{'_kl' if kl else ''}{'_save_noise' if save_noise else ''}"
                rows.append((f"{name}_{suffix}", forward_kernel, (
                    array, array, array, array if save_noise else nb.none,
                    nb.boolean if kl else nb.none, partials if kl else nb.none,
                    u64, u64, u64, u64, u64, i64)))
        for kl in (False, True):
            for noise in (False, True):
                name = f"backward{'_kl' if kl else ''}{'_from_noise' if noise else ''}"
                rows.append((f"{name}_{suffix}", backward_kernel, (
                    array, array if kl else nb.none, array, dtype if kl else nb.none, array,
                    array, array if noise else nb.none, u64, u64, u64, u64, u64, i64)))
        rows.append((f"kl_sum_{suffix}", sum_kernel, (partials, i64, array)))
    words = nb.Array(nb.uint32, 2, "C")
    rows.append(("philox4x32_rows", philox_kernel, (words, u64, u64, words)))
    return rows


SPECIALISATIONS = _specialisations()


# ---------------------------------------------------------------------------------------------
# compiling: contraction off (kernels.numba.patches), for a compute capability without a driver
if not SIMULATED:
    install_contraction_hook()


def compile_ptx(kernel, argtypes, cc):
    """PTX of `kernel` for `argtypes` and compute capability `cc`, as the backend compiles it
    (the dispatcher's options, contraction off), without a GPU."""
    options = kernel.targetoptions
    with no_contraction(), compiling_for(cc):
        ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=tuple(cc),
                                  fastmath=options.get("fastmath", False),
                                  opt=options.get("opt", True))
    return ptx
