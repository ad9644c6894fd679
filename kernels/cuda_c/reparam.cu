// The reparameterisation kernels (see kernels/contract.py), for kernels/cuda_c/cupy_reparam.py.
//
// Each kernel is a grid-stride loop over Philox blocks (reparam_math.cuh): one Philox call per step
// gives the normals of 4 consecutive elements, and eps never touches memory unless a _save_noise
// kernel is asked to store it. All the arithmetic is in reparam_math.cuh, which CI also compiles
// for the host and checks against kernels/reference.py; what is left here is the launch.
//
// Launch: a 1-D grid of 1-D blocks of MG_THREADS threads (cupy_reparam.py, launch_config).
// Arguments: n elements; the stream position as first_block = offset / 4 (64-bit) and
// start_lane = offset % 4; the key (seed mod 2^32, seed / 2^32).
// Every kernel exists for float (_f32) and double (_f64) as extern "C" names, so NVRTC, nvcc and
// the ptxas report all see the same unmangled names.
//
// Bytes per element, S = sizeof(T) (4 or 8); the Philox words are computed, never loaded:
//   forward                       read mu, logvar                    write z             3 S
//   forward_save_noise            read mu, logvar                    write z, eps        4 S
//   forward_kl                    read mu, logvar                    write z             3 S
//   forward_kl_save_noise         read mu, logvar                    write z, eps        4 S
//   backward                      read grad_z, logvar                write both grads    4 S
//   backward_from_noise           read grad_z, logvar, noise         write both grads    5 S
//   backward_kl                   read grad_z, mu, logvar            write both grads    5 S
//   backward_kl_from_noise        read grad_z, mu, logvar, noise     write both grads    6 S
// (forward_kl also adds one double per thread block to kl; philox4x32 reads and writes 16 bytes
// per counter row.)
#include "reparam_math.cuh"

#define MG_THREADS 256  // the block cupy_reparam.py launches; the KL reduction's shared array size
// NOTE: asking for 5 resident blocks per SM caps ptxas at 48 registers a thread (65536 / (5 * 256),
// rounded down to its allocation unit of 8): 1280 of the 2048 threads an sm_80 / sm_90 SM holds,
// 62.5% occupancy, with each thread keeping the loads of 4 elements in flight. Without a minimum,
// ptxas 13.0 picked 48 registers for some f64 kernels and still spilled; capped at 40 (6 blocks)
// NVRTC 13.0 spilled in forward_kl_f64 where nvcc did not. tests/test_cuda_c.py fails on any spill.
#define MG_MIN_BLOCKS_PER_SM 5
#define MG_LAUNCH_BOUNDS __launch_bounds__(MG_THREADS, MG_MIN_BLOCKS_PER_SM)

// This thread's first step and the loop's stride, from the launch.
#define MG_GRID_LOOP                                                                               \
    mg_grid_first_step(blockIdx.x, blockDim.x, threadIdx.x),                                       \
    mg_grid_stride(gridDim.x, blockDim.x)

// The per-block KL sum: a tree over the block's threads in shared memory (blockDim.x a power of
// two <= MG_THREADS), then one atomicAdd on double (sm_60+) into the float64 accumulator.
// NOTE: the order of the atomicAdds varies from launch to launch, so kl can differ between two
// identical calls in its last bits; z and the gradients never do.
__device__ __forceinline__ void mg_block_sum_into(double partial, double* kl) {
    __shared__ double sums[MG_THREADS];
    sums[threadIdx.x] = partial;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(kl, sums[0]);
}

#define MG_STREAM mg_stream{n, first_block, start_lane, key0, key1}
#define MG_STREAM_ARGS long long n, mg_u64 first_block, mg_u32 start_lane, mg_u32 key0, mg_u32 key1
#define MG_NOISE_STREAM mg_stream{n, 0ull, 0u, 0u, 0u}  // saved noise: only n matters

// The eight kernels for one dtype T, named <kernel>_<SUFFIX>.
#define MG_REPARAM_KERNELS(T, SUFFIX)                                                              \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_forward_##SUFFIX(                              \
        const T* __restrict__ mu, const T* __restrict__ logvar, T* __restrict__ z,                 \
        MG_STREAM_ARGS) {                                                                          \
    mg_forward_thread<T, false>(mu, logvar, z, nullptr, MG_STREAM, MG_GRID_LOOP);                  \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_forward_save_noise_##SUFFIX(                   \
        const T* __restrict__ mu, const T* __restrict__ logvar, T* __restrict__ z,                 \
        T* __restrict__ eps, MG_STREAM_ARGS) {                                                     \
    mg_forward_thread<T, true>(mu, logvar, z, eps, MG_STREAM, MG_GRID_LOOP);                       \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_forward_kl_##SUFFIX(                           \
        const T* __restrict__ mu, const T* __restrict__ logvar, T* __restrict__ z,                 \
        double* __restrict__ kl, MG_STREAM_ARGS) {                                                 \
    mg_block_sum_into(                                                                             \
        mg_forward_kl_thread<T, false>(mu, logvar, z, nullptr, MG_STREAM, MG_GRID_LOOP), kl);      \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_forward_kl_save_noise_##SUFFIX(                \
        const T* __restrict__ mu, const T* __restrict__ logvar, T* __restrict__ z,                 \
        T* __restrict__ eps, double* __restrict__ kl, MG_STREAM_ARGS) {                            \
    mg_block_sum_into(                                                                             \
        mg_forward_kl_thread<T, true>(mu, logvar, z, eps, MG_STREAM, MG_GRID_LOOP), kl);           \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_backward_##SUFFIX(                             \
        const T* __restrict__ grad_z, const T* __restrict__ logvar,                                \
        T* __restrict__ grad_mu, T* __restrict__ grad_logvar, MG_STREAM_ARGS) {                    \
    mg_backward_thread<T, false, false>(grad_z, nullptr, logvar, nullptr, grad_mu, grad_logvar,    \
                                        T(0), MG_STREAM, MG_GRID_LOOP);                            \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_backward_from_noise_##SUFFIX(                  \
        const T* __restrict__ grad_z, const T* __restrict__ logvar, const T* __restrict__ noise,   \
        T* __restrict__ grad_mu, T* __restrict__ grad_logvar, long long n) {                       \
    mg_backward_thread<T, false, true>(grad_z, nullptr, logvar, noise, grad_mu, grad_logvar,       \
                                       T(0), MG_NOISE_STREAM, MG_GRID_LOOP);                       \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_backward_kl_##SUFFIX(                          \
        const T* __restrict__ grad_z, const T* __restrict__ mu, const T* __restrict__ logvar,      \
        T* __restrict__ grad_mu, T* __restrict__ grad_logvar, T kl_weight, MG_STREAM_ARGS) {       \
    mg_backward_thread<T, true, false>(grad_z, mu, logvar, nullptr, grad_mu, grad_logvar,          \
                                       kl_weight, MG_STREAM, MG_GRID_LOOP);                        \
}                                                                                                  \
extern "C" __global__ void MG_LAUNCH_BOUNDS reparam_backward_kl_from_noise_##SUFFIX(               \
        const T* __restrict__ grad_z, const T* __restrict__ mu, const T* __restrict__ logvar,      \
        const T* __restrict__ noise, T* __restrict__ grad_mu, T* __restrict__ grad_logvar,         \
        T kl_weight, long long n) {                                                                \
    mg_backward_thread<T, true, true>(grad_z, mu, logvar, noise, grad_mu, grad_logvar, kl_weight,  \
                                      MG_NOISE_STREAM, MG_GRID_LOOP);                              \
}

MG_REPARAM_KERNELS(float, f32)
MG_REPARAM_KERNELS(double, f64)

// Philox4x32-10 of each counter row under one key: the uint32 bit-identity test's kernel.
extern "C" __global__ void MG_LAUNCH_BOUNDS philox4x32_rows(
        const mg_u32* __restrict__ counters, mg_u32* __restrict__ out, long long rows,
        mg_u32 key0, mg_u32 key1) {
    mg_philox_thread(counters, out, rows, key0, key1, MG_GRID_LOOP);
}
