"""The cupy backend: reparam.cu compiled by NVRTC (kernels.cuda_c.nvrtc), run by cupy.RawModule.

    forward(mu, logvar, seed, offset, save_noise=False)
    backward(grad_z, logvar, seed, offset, noise=None)
    forward_kl(mu, logvar, seed, offset, save_noise=False)
    backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None)
    philox4x32(counters, key)

the API of kernels.reference (see kernels/contract.py) on CuPy arrays: inputs are cupy.ndarray on
the current GPU and so are the outputs (kl is a 0-d cupy array). NumPy inputs raise TypeError
rather than being copied to the GPU and back behind the caller's back. Non-contiguous inputs are
copied to C order first. Every launch runs on the arrays' device and CuPy's current stream, with
64-bit element indices.

The module is built by kernels.cuda_c.nvrtc with its own NVRTC options (subnormals kept, no
contraction the source does not write; CuPy's own compile would append -ftz=true) for the device's
architecture, cached on disk as a cubin and loaded with cupy.RawModule(path=...).

Importing this module without CuPy, or without a GPU CuPy can see, raises ImportError saying
which. The arithmetic lives in kernels/cuda_c/reparam_math.cuh, which CI checks on the CPU
(tests/test_cuda_c.py); only the launches here need a GPU.
"""
import functools

import numpy as np

from kernels import contract, cuda_c, occupancy
from kernels.cuda_c.gpu import require_cupy

cupy = require_cupy("the cupy backend needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU")

# NOTE: 256 threads a block (cuda_c.THREADS): a multiple of the 32-thread warp, and few enough
# that at least 5 blocks fit an SM with the 48 registers the kernels' __launch_bounds__(256, 5)
# allow (62.5% occupancy or more on sm_80 / sm_90); it is also MG_THREADS in reparam.cu.
NAME = "cupy"
THREADS = cuda_c.THREADS
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def kernel_names():
    """Every __global__ function of reparam.cu, in the order of the kernel report."""
    return list(cuda_c.KERNEL_NAMES["reparam"])


@functools.lru_cache(maxsize=None)
def module(name, device_id):
    """The RawModule of kernels.cuda_c.nvrtc's module `name` for device `device_id`, built for its
    architecture on first use (then cached in memory and, as a cubin, on disk)."""
    device = cupy.cuda.Device(device_id)
    path = cuda_c.cubin_path(name, f"sm_{device.compute_capability}", cuda_c.CupyNvrtc())
    with device:
        return cupy.RawModule(path=str(path))


def kernel(name, module_name="reparam"):
    """The RawKernel `name` of a kernels.cuda_c.nvrtc module, for the current device."""
    return module(module_name, cupy.cuda.Device().id).get_function(name)


@functools.lru_cache(maxsize=None)
def resident_blocks(name, device_id, module_name="reparam"):
    """Blocks of THREADS threads of kernel `name` that all SMs of the device hold at once."""
    with cupy.cuda.Device(device_id) as device:
        per_sm = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
            kernel(name, module_name).kernel.ptr, THREADS, 0)
        return per_sm * device.attributes["MultiProcessorCount"]


def launch_config(name, steps, module_name="reparam"):
    """(blocks, THREADS) for kernel `name`'s grid-stride loop over `steps` steps on the current
    device (kernels.occupancy.grid_blocks: one step per thread, at most the resident blocks)."""
    resident = resident_blocks(name, cupy.cuda.Device().id, module_name)
    return occupancy.grid_blocks(steps, THREADS, resident), THREADS


def launch(name, steps, args, device, module_name="reparam"):
    """Run kernel `name` over `steps` grid-stride steps on `device` (the arrays') and CuPy's
    current stream; nothing to launch for zero steps."""
    if steps > 0:
        with device:
            blocks, threads = launch_config(name, steps, module_name)
            kernel(name, module_name)((blocks,), (threads,), args)


def _on_gpu(name, **arrays):
    """(arrays as C-contiguous cupy arrays, their device); TypeError naming any that is not a
    cupy array, ValueError naming two that live on different GPUs."""
    out, device = [], None
    for what, array in arrays.items():
        if array is None:
            out.append(None)
            continue
        if not isinstance(array, cupy.ndarray):
            where = "a NumPy array in host memory" if isinstance(array, np.ndarray) else \
                type(array).__name__
            raise TypeError(f"{name}: {what} is {where}; the cupy backend takes cupy.ndarray on "
                            f"the GPU (cupy.asarray({what}) copies it there)")
        if device is None:
            device, first = array.device, what
        elif array.device != device:
            raise ValueError(f"{name}: {first} is on GPU {device.id}, {what} on GPU "
                             f"{array.device.id}; they must share one")
        # NOTE: not cupy.ascontiguousarray, which turns a 0-d array into shape (1,)
        out.append(array if array.flags.c_contiguous else array.copy(order="C"))
    return out, device


def _stream(name, size, seed, offset):
    """(n, first_block, start_lane, key0, key1) typed as the kernels take them, after the checks."""
    first, lane, key0, key1 = contract.stream_position(name, size, seed, offset)
    return np.int64(size), np.uint64(first), np.uint32(lane), np.uint32(key0), np.uint32(key1)


def _steps(size, offset):
    """Grid-stride steps (Philox blocks) of a draw of `size` normals at `offset`."""
    return 0 if size == 0 else (int(offset) % 4 + size + 3) // 4


# the contract: run_* trust their arrays' shapes and dtypes (checked by kernels' dispatch, or by
# the checked functions below)
def _forward(name, mu, logvar, seed, offset, save_noise, kl):
    """(z, kl or None, eps or None) by the forward kernels of the dtype."""
    (mu, logvar), device = _on_gpu(name, mu=mu, logvar=logvar)
    stream = _stream(name, mu.size, seed, offset)
    with device:
        z = cupy.empty_like(mu)
        eps = cupy.empty_like(mu) if save_noise else None
        total = cupy.zeros((), dtype=cupy.float64) if kl else None
    kernel_name = f"reparam_forward{'_kl' if kl else ''}{'_save_noise' if save_noise else ''}"
    outputs = tuple(a for a in (z, eps, total) if a is not None)
    launch(f"{kernel_name}_{_SUFFIX[mu.dtype]}", _steps(mu.size, offset),
           (mu, logvar, *outputs, *stream), device)
    with device:  # the float64 sum rounded once, as the reference
        return z, None if total is None else total.astype(mu.dtype), eps


def run_forward(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward"):
    z, _, eps = _forward(name, mu, logvar, seed, offset, save_noise, False)
    return (z, eps) if save_noise else z


def run_forward_kl(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward_kl"):
    z, kl, eps = _forward(name, mu, logvar, seed, offset, save_noise, True)
    return (z, kl, eps) if save_noise else (z, kl)


def _backward(name, grad_z, mu, logvar, seed, offset, kl_weight, noise):
    """(grad_mu, grad_logvar) by the backward kernels; mu and kl_weight None without the KL."""
    (grad_z, mu, logvar, noise), device = _on_gpu(name, grad_z=grad_z, mu=mu, logvar=logvar,
                                                  noise=noise)
    stream = _stream(name, grad_z.size, seed, offset)
    with device:
        grad_mu, grad_logvar = cupy.empty_like(grad_z), cupy.empty_like(grad_z)
    kl = kl_weight is not None
    kernel_name = f"reparam_backward{'_kl' if kl else ''}" \
                  f"{'_from_noise' if noise is not None else ''}_{_SUFFIX[grad_z.dtype]}"
    inputs = tuple(a for a in (grad_z, mu, logvar, noise) if a is not None)
    # as the reference: kl_weight rounded to the dtype; a saved noise needs only n of the stream
    weight = (grad_z.dtype.type(kl_weight),) if kl else ()
    position = stream[:1] if noise is not None else stream
    launch(kernel_name, _steps(grad_z.size, 0 if noise is not None else offset),
           (*inputs, grad_mu, grad_logvar, *weight, *position), device)
    return grad_mu, grad_logvar


def run_backward(grad_z, logvar, seed, offset, noise=None, name=f"{NAME}.backward"):
    return _backward(name, grad_z, None, logvar, seed, offset, None, noise)


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None,
                    name=f"{NAME}.backward_kl"):
    return _backward(name, grad_z, mu, logvar, seed, offset, kl_weight, noise)


def philox4x32(counters, key):
    """Philox4x32-10 of each counter row under one key: (n, 4) uint32 cupy array, (2,) uint32
    key (NumPy or CuPy; it is read on the host) -> (n, 4) uint32 cupy array."""
    (counters,), device = _on_gpu(f"{NAME}.philox4x32", counters=counters)
    counters, key = contract.check_philox_inputs(f"{NAME}.philox4x32", counters,
                                                 cupy.asnumpy(key))
    with device:
        out = cupy.empty_like(counters)
    rows = counters.shape[0]
    launch("philox4x32_rows", rows, (counters, out, np.int64(rows), key[0], key[1]), device)
    return out
