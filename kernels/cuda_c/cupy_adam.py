"""Adam's update as one CUDA kernel over a CuPy parameter (kernels/cuda_c/adam.cu): read p, g, m, v
once, write p, m, v once, in one launch instead of the array expression's dozen-odd (at a VAE's
batch sizes a GPU step is bound by launches, not bytes).

The arithmetic is adam_math.cuh's, ``kernels.numba.adam.adam_update``'s in the same order,
built by kernels.cuda_c.nvrtc without contraction and with subnormals kept, so it gives the CPU
loop's bits (tests/test_cuda_c.py holds the host build of the same header to it). A float16
parameter arrives as its float32 copy, as on the CPU; scalars arrive already rounded to the dtype.
Importing this module needs CuPy and a GPU.
"""
import numpy as np

from kernels.cuda_c.cupy_reparam import cupy, launch

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def adam_update(param, grad, exp_avg, exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                step_size, bias_correction2_sqrt, eps, weight_decay, flush_below):
    """One Adam step over C-contiguous CuPy arrays of one shape and dtype, in place (as the CPU
    loop), on the arrays' device and CuPy's current stream."""
    dtype = param.dtype.type
    scalars = [dtype(s) for s in (one_minus_beta1, beta2, one_minus_beta2, step_size,
                                  bias_correction2_sqrt, eps, weight_decay, flush_below)]
    launch(f"adam_update_{_SUFFIX[param.dtype]}", param.size,
           (param, grad, exp_avg, exp_avg_sq, np.int64(param.size), *scalars),
           cupy.cuda.Device(param.device.id), module_name="adam")
