"""The cupy backend: kernels/reparam.cu compiled by NVRTC through cupy.RawModule.

    forward(mu, logvar, seed, offset, save_noise=False)
    backward(grad_z, logvar, seed, offset, noise=None)
    forward_kl(mu, logvar, seed, offset, save_noise=False)
    backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, noise=None)
    philox4x32(counters, key)

the API of kernels.reference (see kernels/contract.py) on CuPy arrays: inputs are cupy.ndarray on
the current GPU and so are the outputs (kl is a 0-d cupy array). NumPy inputs raise TypeError
rather than being copied to the GPU and back behind the caller's back. Non-contiguous inputs are
copied to C order first.

Importing this module without CuPy, or without a GPU CuPy can see, raises ImportError saying
which. The arithmetic lives in kernels/reparam_math.cuh, which CI checks on the CPU
(tests/test_cuda_c.py); only the launches here need a GPU.
"""
import functools
from pathlib import Path

import numpy as np

from kernels import contract
from kernels.gpu import require_cupy

cupy = require_cupy("the cupy backend needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU")

SOURCE = Path(__file__).with_name("reparam.cu")
HEADER = Path(__file__).with_name("reparam_math.cuh")
OPTIONS = ("-std=c++17",)
# NOTE: 256 threads a block: a multiple of the 32-thread warp, and few enough that at least 5 blocks
# fit an SM with the 48 registers the kernels' __launch_bounds__(256, 5) allow (62.5% occupancy or
# more on sm_80 / sm_90); it is also MG_THREADS in reparam.cu, the KL reduction's shared array size.
THREADS = 256
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def kernel_names():
    """Every __global__ function of reparam.cu, in the order of the kernel report."""
    passes = ("forward", "forward_save_noise", "forward_kl", "forward_kl_save_noise", "backward",
              "backward_from_noise", "backward_kl", "backward_kl_from_noise")
    return [f"reparam_{p}_{s}" for s in ("f32", "f64") for p in passes] + ["philox4x32_rows"]


@functools.lru_cache(maxsize=None)
def module():
    """The RawModule of reparam.cu with its header inlined (compiled on first use, then cached).

    NOTE: inlined rather than found through -I: CuPy's compile cache is keyed by the source text,
    so an edit to the header alone must change that text.
    """
    include = '#include "reparam_math.cuh"'
    source = SOURCE.read_text()
    if include not in source:
        raise RuntimeError(f"cupy_raw: {SOURCE} no longer has the line {include!r} to inline")
    return cupy.RawModule(code=source.replace(include, HEADER.read_text()), options=OPTIONS)


def kernel(name):
    """The RawKernel `name` of reparam.cu."""
    return module().get_function(name)


@functools.lru_cache(maxsize=None)
def resident_blocks(name, device_id):
    """Blocks of THREADS threads of kernel `name` that all SMs of the device hold at once."""
    per_sm = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
        kernel(name).kernel.ptr, THREADS, 0)
    return per_sm * cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def launch_config(name, steps):
    """(blocks, THREADS) for kernel `name`'s grid-stride loop over `steps` steps.

    One step per thread while that takes no more blocks than the SMs hold at once (SM count times
    the occupancy API's blocks per SM); past that the resident blocks loop, since a second wave of
    blocks would only repeat their setup.
    """
    return min(-(-steps // THREADS), resident_blocks(name, cupy.cuda.Device().id)), THREADS


def _launch(name, steps, args):
    """Run kernel `name` over `steps` grid-stride steps; nothing to launch for zero steps."""
    if steps > 0:
        blocks, threads = launch_config(name, steps)
        kernel(name)((blocks,), (threads,), args)


def _on_gpu(name, **arrays):
    """The arrays as C-contiguous cupy arrays; TypeError naming any that is not a cupy array."""
    out = []
    for what, array in arrays.items():
        if not isinstance(array, cupy.ndarray):
            where = "a NumPy array in host memory" if isinstance(array, np.ndarray) else \
                type(array).__name__
            raise TypeError(f"{name}: {what} is {where}; the cupy backend takes cupy.ndarray on "
                            f"the GPU (cupy.asarray({what}) copies it there)")
        # NOTE: not cupy.ascontiguousarray, which turns a 0-d array into shape (1,)
        out.append(array if array.flags.c_contiguous else array.copy(order="C"))
    return out


def _stream(name, size, seed, offset):
    """(n, first_block, start_lane, key0, key1) typed as the kernels take them, after the checks."""
    first, lane, key0, key1 = contract.stream_position(name, size, seed, offset)
    return np.int64(size), np.uint64(first), np.uint32(lane), np.uint32(key0), np.uint32(key1)


def _steps(size, offset):
    """Grid-stride steps (Philox blocks) of a draw of `size` normals at `offset`."""
    return 0 if size == 0 else (int(offset) % 4 + size + 3) // 4


def forward(mu, logvar, seed, offset, save_noise=False):
    """z = mu + exp(logvar / 2) * eps; (z, eps) with save_noise."""
    contract.check_reparam_inputs("cupy_raw.forward", mu, logvar)
    mu, logvar = _on_gpu("cupy_raw.forward", mu=mu, logvar=logvar)
    stream = _stream("cupy_raw.forward", mu.size, seed, offset)
    z = cupy.empty_like(mu)
    suffix = _SUFFIX[mu.dtype]
    if save_noise:
        eps = cupy.empty_like(mu)
        _launch(f"reparam_forward_save_noise_{suffix}", _steps(mu.size, offset),
                (mu, logvar, z, eps, *stream))
        return z, eps
    _launch(f"reparam_forward_{suffix}", _steps(mu.size, offset), (mu, logvar, z, *stream))
    return z


def forward_kl(mu, logvar, seed, offset, save_noise=False):
    """(z, kl), or (z, kl, eps) with save_noise; kl summed in float64, a 0-d array of mu's dtype."""
    contract.check_reparam_inputs("cupy_raw.forward_kl", mu, logvar)
    mu, logvar = _on_gpu("cupy_raw.forward_kl", mu=mu, logvar=logvar)
    stream = _stream("cupy_raw.forward_kl", mu.size, seed, offset)
    z, total = cupy.empty_like(mu), cupy.zeros((), dtype=cupy.float64)
    suffix = _SUFFIX[mu.dtype]
    eps = cupy.empty_like(mu) if save_noise else None
    if save_noise:
        _launch(f"reparam_forward_kl_save_noise_{suffix}", _steps(mu.size, offset),
                (mu, logvar, z, eps, total, *stream))
    else:
        _launch(f"reparam_forward_kl_{suffix}", _steps(mu.size, offset),
                (mu, logvar, z, total, *stream))
    kl = total.astype(mu.dtype)  # the float64 sum rounded once, as the reference
    return (z, kl, eps) if save_noise else (z, kl)


def backward(grad_z, logvar, seed, offset, noise=None):
    """(grad_z, grad_z * exp(logvar / 2) * eps / 2), eps regenerated unless noise is given."""
    name = "cupy_raw.backward"
    contract.check_backward_inputs(name, grad_z, logvar, noise=noise)
    grad_z, logvar = _on_gpu(name, grad_z=grad_z, logvar=logvar)
    stream = _stream(name, grad_z.size, seed, offset)
    grad_mu, grad_logvar = cupy.empty_like(grad_z), cupy.empty_like(grad_z)
    suffix = _SUFFIX[grad_z.dtype]
    if noise is not None:
        (noise,) = _on_gpu(name, noise=noise)
        _launch(f"reparam_backward_from_noise_{suffix}", _steps(grad_z.size, 0),
                (grad_z, logvar, noise, grad_mu, grad_logvar, stream[0]))
    else:
        _launch(f"reparam_backward_{suffix}", _steps(grad_z.size, offset),
                (grad_z, logvar, grad_mu, grad_logvar, *stream))
    return grad_mu, grad_logvar


def backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, noise=None):
    """(grad_z + kl_grad mu, grad_z sigma eps / 2 + kl_grad expm1(logvar) / 2)."""
    name = "cupy_raw.backward_kl"
    contract.check_backward_inputs(name, grad_z, logvar, mu=mu, noise=noise)
    grad_z, mu, logvar = _on_gpu(name, grad_z=grad_z, mu=mu, logvar=logvar)
    stream = _stream(name, grad_z.size, seed, offset)
    kl_grad = contract.check_kl_grad(name, "kl_grad", kl_grad, grad_z)
    grad_mu, grad_logvar = cupy.empty_like(grad_z), cupy.empty_like(grad_z)
    weight = grad_z.dtype.type(kl_grad)  # as the reference: kl_grad rounded to the dtype
    suffix = _SUFFIX[grad_z.dtype]
    if noise is not None:
        (noise,) = _on_gpu(name, noise=noise)
        _launch(f"reparam_backward_kl_from_noise_{suffix}", _steps(grad_z.size, 0),
                (grad_z, mu, logvar, noise, grad_mu, grad_logvar, weight, stream[0]))
    else:
        _launch(f"reparam_backward_kl_{suffix}", _steps(grad_z.size, offset),
                (grad_z, mu, logvar, grad_mu, grad_logvar, weight, *stream))
    return grad_mu, grad_logvar


def philox4x32(counters, key):
    """Philox4x32-10 of each counter row under one key: (n, 4) uint32 cupy array, (2,) uint32
    key (NumPy or CuPy; it is read on the host) -> (n, 4) uint32 cupy array."""
    (counters,) = _on_gpu("cupy_raw.philox4x32", counters=counters)
    counters, key = contract.check_philox_inputs("cupy_raw.philox4x32", counters,
                                                 cupy.asnumpy(key))
    out = cupy.empty_like(counters)
    rows = counters.shape[0]
    _launch("philox4x32_rows", rows, (counters, out, np.int64(rows), key[0], key[1]))
    return out
