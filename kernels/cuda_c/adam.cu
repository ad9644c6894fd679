// Adam's update as one CUDA kernel per dtype, for cupy_adam.py: read p, g, m, v once,
// write p, m, v once (28 B per float32 element), in one launch instead of the array
// expression's dozen-odd (at a VAE's batch sizes a GPU step is bound by launches, not bytes).
// The arithmetic is kernels/cuda_c/adam_math.cuh's, the same bits as kernels/numba/adam.py.
//
// Launch: a 1-D grid-stride loop with 64-bit indices (a parameter may pass 2^31 elements); any
// grid covers any n. Arguments: the four arrays (C-contiguous, one dtype), n, then the scalars
// already rounded to the dtype.
#include "adam_math.cuh"

#define MG_ADAM_KERNEL(T, SUFFIX)                                                                 \
extern "C" __global__ void adam_update_##SUFFIX(                                                  \
        T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ exp_avg,               \
        T* __restrict__ exp_avg_sq, long long n, T one_minus_beta1, T beta2, T one_minus_beta2,   \
        T step_size, T bias_correction2_sqrt, T eps, T weight_decay, T flush_below) {             \
    const long long stride = (long long)gridDim.x * blockDim.x;                                   \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)      \
        mg_adam_element(param, grad, exp_avg, exp_avg_sq, i, one_minus_beta1, beta2,              \
                        one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay,     \
                        flush_below);                                                             \
}

MG_ADAM_KERNEL(float, f32)
MG_ADAM_KERNEL(double, f64)
