"""Adam's update as one fused Numba loop over a NumPy parameter: read p, g, m, v once, write p,
m, v once (28 B per float32 element instead of about 80 B over the NumPy expression's passes).

The arithmetic is exactly ``minigrad.optim.Adam``'s, in the same order and in the arrays' one
dtype, the moments' (no fastmath), so both give the same bits; the optimizer uses this loop for
NumPy arrays and its array-namespace expression elsewhere.  A float16 parameter arrives as its
float32 copy (Adam keeps float32 moments for it and rounds the result to float16 itself).
Scalars arrive already rounded to the dtype, as NumPy rounds a Python float that meets a float32
array.
"""
import numba
import numpy as np

from kernels.numba import patches  # noqa: F401  (the cache's stamp, installed first)


# NOTE: serial on purpose.  A parallel loop's worker threads keep spinning after it returns and
# fight OpenBLAS's spinning threads over the cores during the next step's matrix products:
# measured on 2 cores, a whole VAE step went from about 6 ms to 20 ms with parallel=True.
# error_model="numpy": Python's ZeroDivisionError check on m / denom keeps the loop scalar;
# without it the loop vectorises (1.0 ms -> 0.12 ms for a 784 x 400 weight).
@numba.njit(cache=True, error_model="numpy")
def adam_update(param, grad, exp_avg, exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                step_size, bias_correction2_sqrt, eps, weight_decay, flush_below):
    """One Adam step over flat arrays, in place; moments below ``flush_below`` become 0
    (pass 0 to flush nothing)."""
    zero = param.dtype.type(0)
    for i in range(param.size):
        g = grad[i]
        if weight_decay != zero:
            g = param[i] * weight_decay + g
        m = exp_avg[i]
        m = m + (g - m) * one_minus_beta1                    # PyTorch's lerp form
        v = exp_avg_sq[i] * beta2 + (g * g) * one_minus_beta2
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = param[i] - (m / denom) * step_size
        # NOTE: subnormal moments make float arithmetic many times slower on x86
        exp_avg[i] = zero if abs(m) < flush_below else m   # NaN stays NaN, as in NumPy
        exp_avg_sq[i] = zero if abs(v) < flush_below else v
