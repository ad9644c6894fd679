// Adam's update of one element, the arithmetic of kernels/numba/adam.py in its order, as a
// __host__ __device__ function: adam.cu runs it on the GPU, tests/cuda_c_host.cpp on the
// CPU, where the suite holds it to kernels.numba.adam bit for bit.
//
// Bit for bit on the GPU too: nvrtc.py compiles with --fmad=false (no a * b + c fused),
// --ftz=false (subnormals kept, as on the CPU) and IEEE division and square root, so every
// operation below rounds once, as the Numba loop's do; the host build has -ffp-contract=off.
#ifndef MINIGRAD_ADAM_MATH_CUH
#define MINIGRAD_ADAM_MATH_CUH

#include "reparam_math.cuh"  // MG_HD, and the host build's stand-ins for CUDA's qualifiers

// One Adam step of element i, in place; moments below flush_below become 0 (NaN stays NaN).
template <typename T>
MG_HD void mg_adam_element(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, long long i,
                           T one_minus_beta1, T beta2, T one_minus_beta2, T step_size,
                           T bias_correction2_sqrt, T eps, T weight_decay, T flush_below) {
    T g = grad[i];
    if (weight_decay != T(0)) g = param[i] * weight_decay + g;
    T m = exp_avg[i];
    m = m + (g - m) * one_minus_beta1;                       // PyTorch's lerp form
    const T v = exp_avg_sq[i] * beta2 + (g * g) * one_minus_beta2;
    const T denom = sqrt(v) / bias_correction2_sqrt + eps;
    param[i] = param[i] - (m / denom) * step_size;
    // NOTE: a comparison pair, not fabs: false for NaN, so NaN is kept as the CPU loop keeps it
    exp_avg[i] = (m < flush_below && m > -flush_below) ? T(0) : m;
    exp_avg_sq[i] = (v < flush_below && v > -flush_below) ? T(0) : v;
}

#endif  // MINIGRAD_ADAM_MATH_CUH
