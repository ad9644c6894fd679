"""Adam's update as one CuPy elementwise kernel over a CuPy parameter: read p, g, m, v once,
write p, m, v once, in one launch instead of the array expression's dozen-odd (at a VAE's batch
sizes a GPU step is bound by launches, not bytes).

The arithmetic is ``kernels.adam_cpu.adam_update``'s, in the same order and in the arrays' one
dtype (a float16 parameter arrives as its float32 copy, as on the CPU); NVRTC may contract
a * b + c into one FMA, so the bits can differ from the CPU's in the last place.  Scalars
arrive already rounded to the dtype.  Importing this module needs CuPy.
"""
import cupy

# NOTE: |x| < flush_below is written as a comparison pair, so NaN compares false and stays NaN,
# as in the CPU loop; the moments are outputs that the kernel also reads (in place).
_ADAM = cupy.ElementwiseKernel(
    "T grad, T one_minus_beta1, T beta2, T one_minus_beta2, T step_size, "
    "T bias_correction2_sqrt, T eps, T weight_decay, T flush_below",
    "T param, T exp_avg, T exp_avg_sq",
    """
    T g = grad;
    if (weight_decay != (T)0) g = param * weight_decay + g;
    T m = exp_avg;
    m = m + (g - m) * one_minus_beta1;                   // PyTorch's lerp form
    T v = exp_avg_sq * beta2 + (g * g) * one_minus_beta2;
    T denom = sqrt(v) / bias_correction2_sqrt + eps;
    param = param - (m / denom) * step_size;
    exp_avg = (m < flush_below && m > -flush_below) ? (T)0 : m;
    exp_avg_sq = (v < flush_below && v > -flush_below) ? (T)0 : v;
    """,
    "minigrad_adam_update")


def adam_update(param, grad, exp_avg, exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                step_size, bias_correction2_sqrt, eps, weight_decay, flush_below):
    """One Adam step over CuPy arrays of one shape and dtype, in place (as the CPU loop)."""
    _ADAM(grad, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps,
          weight_decay, flush_below, param, exp_avg, exp_avg_sq)
