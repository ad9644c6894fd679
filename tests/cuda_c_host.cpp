// kernels/cuda_c/reparam_math.cuh compiled for the CPU, behind extern "C" entry points for ctypes
// (tests/cuda_c_host.py builds and loads this file).
//
// Each mg_host_* pass emulates one launch of the matching kernel of kernels/cuda_c/reparam.cu with
// `grid` blocks of `block` threads: it runs the kernel's per-thread function for every
// (blockIdx, threadIdx) in turn, with the first step and stride that thread would get, so the
// grid-stride indexing is the device's. The KL passes also repeat the kernel's reduction: a
// tree over each block's threads, then the blocks added in order (the device's atomicAdds come
// in any order).
#include <vector>

#include "adam_math.cuh"
#include "reparam_math.cuh"

namespace {

// Run thread_fn(first_step, stride) for every thread of a grid x block launch.
template <typename F> void for_each_thread(mg_u32 grid, mg_u32 block, F thread_fn) {
    const long long stride = mg_grid_stride(grid, block);
    for (mg_u32 b = 0; b < grid; ++b)
        for (mg_u32 t = 0; t < block; ++t) thread_fn(mg_grid_first_step(b, block, t), stride);
}

// The KL kernels' sum: per block, the shared-memory tree of mg_block_sum_into (block a power of
// two), then one add per block into the accumulator.
template <typename F> double block_tree_sum(mg_u32 grid, mg_u32 block, F thread_partial) {
    const long long stride = mg_grid_stride(grid, block);
    std::vector<double> sums(block);
    double total = 0.0;
    for (mg_u32 b = 0; b < grid; ++b) {
        for (mg_u32 t = 0; t < block; ++t)
            sums[t] = thread_partial(mg_grid_first_step(b, block, t), stride);
        for (mg_u32 half = block / 2; half > 0; half /= 2)
            for (mg_u32 t = 0; t < half; ++t) sums[t] += sums[t + half];
        total += sums[0];
    }
    return total;
}

template <typename T>
void forward(const T* mu, const T* logvar, T* z, T* eps, mg_stream st, mg_u32 grid,
             mg_u32 block) {
    for_each_thread(grid, block, [&](long long first, long long stride) {
        if (eps) mg_forward_thread<T, true>(mu, logvar, z, eps, st, first, stride);
        else mg_forward_thread<T, false>(mu, logvar, z, nullptr, st, first, stride);
    });
}

template <typename T>
double forward_kl(const T* mu, const T* logvar, T* z, T* eps, mg_stream st, mg_u32 grid,
                  mg_u32 block) {
    return block_tree_sum(grid, block, [&](long long first, long long stride) {
        return eps ? mg_forward_kl_thread<T, true>(mu, logvar, z, eps, st, first, stride)
                   : mg_forward_kl_thread<T, false>(mu, logvar, z, nullptr, st, first, stride);
    });
}

// backward (mu == nullptr) or backward_kl, eps regenerated (noise == nullptr) or read.
template <typename T>
void backward(const T* grad_z, const T* mu, const T* logvar, const T* noise, T* grad_mu,
              T* grad_logvar, T kl_weight, mg_stream st, mg_u32 grid, mg_u32 block) {
    for_each_thread(grid, block, [&](long long first, long long stride) {
        if (mu && noise)
            mg_backward_thread<T, true, true>(grad_z, mu, logvar, noise, grad_mu, grad_logvar,
                                              kl_weight, st, first, stride);
        else if (mu)
            mg_backward_thread<T, true, false>(grad_z, mu, logvar, nullptr, grad_mu, grad_logvar,
                                               kl_weight, st, first, stride);
        else if (noise)
            mg_backward_thread<T, false, true>(grad_z, nullptr, logvar, noise, grad_mu,
                                               grad_logvar, kl_weight, st, first, stride);
        else
            mg_backward_thread<T, false, false>(grad_z, nullptr, logvar, nullptr, grad_mu,
                                                grad_logvar, kl_weight, st, first, stride);
    });
}

}  // namespace

#define MG_STREAM_ARGS long long n, mg_u64 first_block, mg_u32 start_lane, mg_u32 key0, mg_u32 key1
#define MG_STREAM mg_stream{n, first_block, start_lane, key0, key1}

extern "C" {

// Philox4x32-10 of `rows` counter rows (rows x 4 words) under one key, as philox4x32_rows.
void mg_host_philox4x32(const mg_u32* counters, mg_u32* out, long long rows, mg_u32 key0,
                        mg_u32 key1, mg_u32 grid, mg_u32 block) {
    for_each_thread(grid, block, [&](long long first, long long stride) {
        mg_philox_thread(counters, out, rows, key0, key1, first, stride);
    });
}

// Box-Muller of `rows` rows of 4 words: the normals of one Philox block per row.
void mg_host_box_muller_f32(const mg_u32* words, float* out, long long rows) {
    for (long long r = 0; r < rows; ++r)
        mg_box_muller(mg_words{words[4 * r], words[4 * r + 1], words[4 * r + 2], words[4 * r + 3]},
                      out + 4 * r);
}
void mg_host_box_muller_f64(const mg_u32* words, double* out, long long rows) {
    for (long long r = 0; r < rows; ++r)
        mg_box_muller(mg_words{words[4 * r], words[4 * r + 1], words[4 * r + 2], words[4 * r + 3]},
                      out + 4 * r);
}

// How many times a grid x block launch visits each of `steps` steps (counts: steps entries).
void mg_host_grid_visits(long long steps, mg_u32 grid, mg_u32 block, unsigned* counts) {
    for_each_thread(grid, block, [&](long long first, long long stride) {
        for (long long j = first; j < steps; j += stride) ++counts[j];
    });
}

// The passes; eps / noise may be NULL (no saved noise), mu NULL selects backward over backward_kl.
#define MG_HOST_PASSES(T, SUFFIX)                                                                  \
void mg_host_forward_##SUFFIX(const T* mu, const T* logvar, T* z, T* eps, MG_STREAM_ARGS,          \
                              mg_u32 grid, mg_u32 block) {                                         \
    forward<T>(mu, logvar, z, eps, MG_STREAM, grid, block);                                        \
}                                                                                                  \
double mg_host_forward_kl_##SUFFIX(const T* mu, const T* logvar, T* z, T* eps, MG_STREAM_ARGS,     \
                                   mg_u32 grid, mg_u32 block) {                                    \
    return forward_kl<T>(mu, logvar, z, eps, MG_STREAM, grid, block);                              \
}                                                                                                  \
void mg_host_backward_##SUFFIX(const T* grad_z, const T* mu, const T* logvar, const T* noise,      \
                               T* grad_mu, T* grad_logvar, T kl_weight, MG_STREAM_ARGS,            \
                               mg_u32 grid, mg_u32 block) {                                        \
    backward<T>(grad_z, mu, logvar, noise, grad_mu, grad_logvar, kl_weight, MG_STREAM, grid,       \
                block);                                                                            \
}

MG_HOST_PASSES(float, f32)
MG_HOST_PASSES(double, f64)

// Adam's update of n elements in place, as adam.cu's kernel (one element per step).
#define MG_HOST_ADAM(T, SUFFIX)                                                                    \
void mg_host_adam_##SUFFIX(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, long long n,        \
                           T one_minus_beta1, T beta2, T one_minus_beta2, T step_size,             \
                           T bias_correction2_sqrt, T eps, T weight_decay, T flush_below) {        \
    for (long long i = 0; i < n; ++i)                                                              \
        mg_adam_element(param, grad, exp_avg, exp_avg_sq, i, one_minus_beta1, beta2,               \
                        one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay,      \
                        flush_below);                                                              \
}

MG_HOST_ADAM(float, f32)
MG_HOST_ADAM(double, f64)

}  // extern "C"
