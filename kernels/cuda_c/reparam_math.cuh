// The reparameterisation arithmetic of kernels/cuda_c/reparam.cu, as __host__ __device__ functions.
//
// Everything but the launch lives here: Philox4x32-10, uint32 -> uniform, Box-Muller, the
// per-Philox-block forward / backward / KL arithmetic and the grid-stride loop over blocks.
// reparam.cu compiles it for the GPU (nvcc, or NVRTC through kernels/cuda_c/cupy_reparam.py);
// tests/cuda_c_host.cpp compiles the same text for the CPU with g++ (or nvcc -x cu), so CI
// holds it to kernels/reference.py without a GPU.
//
// The stream (kernels/philox.py is its definition): element i of the C-order flattening uses
// normal p = offset + i, which is lane p % 4 of Philox block b = p / 4, counter
// (b mod 2^32, b / 2^32, 0, 0) and key (seed mod 2^32, seed / 2^32). offset may pass 2^64 (the
// contract allows offset + n <= 2^66), so callers pass first_block = offset / 4 (64-bit) and
// start_lane = offset % 4 instead of offset itself.
//
// Grid-stride step j (0 <= j < mg_num_steps) is Philox block first_block + j: one Philox call
// gives the 4 normals of up to 4 consecutive elements, 4 j - start_lane .. 4 j + 3 - start_lane,
// clipped to [0, n) (the first block is ragged when offset % 4 != 0, the last when the draw ends
// mid-block).
//
// No standard headers on the device side: NVRTC has none, and CUDA's math functions are
// built in. The host build includes <math.h> and maps the CUDA intrinsics to plain C.
#ifndef MINIGRAD_REPARAM_MATH_CUH
#define MINIGRAD_REPARAM_MATH_CUH

#if !defined(__CUDACC__)
#include <math.h>
#define __host__
#define __device__
#define __forceinline__ inline __attribute__((always_inline))
#endif

#if defined(__CUDACC__)
#define MG_UNROLL _Pragma("unroll")
#else
#define MG_UNROLL
#endif

#define MG_HD __host__ __device__ __forceinline__

typedef unsigned int mg_u32;
typedef unsigned long long mg_u64;
static_assert(sizeof(mg_u32) == 4 && sizeof(mg_u64) == 8, "mg_u32 / mg_u64 must be 32 / 64 bits");

// ---- IEEE arithmetic that is never contracted -------------------------------------------------
// NOTE: nvcc fuses a * b + c into one FMA by default (-fmad=true), which rounds once where the
// reference (NumPy) rounds twice. The _rn intrinsics are never fused, so the device rounds
// exactly where the reference does; the host build passes -ffp-contract=off for the same reason.
MG_HD float mg_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
MG_HD double mg_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
MG_HD float mg_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
MG_HD double mg_add(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
MG_HD float mg_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
MG_HD double mg_sub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}

// NOTE: the accurate CUDA functions (expf <= 2 ulp, expm1f <= 1 ulp, exp / expm1 <= 1 ulp in the
// CUDA C Programming Guide's tables), never the __expf-style intrinsics: those are faster but
// their error grows with |x|, and these kernels are memory-bound, so the accurate ones cost
// nothing measurable. The host build calls libm's functions of the same names.
MG_HD float mg_exp(float x) { return expf(x); }
MG_HD double mg_exp(double x) { return exp(x); }
MG_HD float mg_expm1(float x) { return expm1f(x); }
MG_HD double mg_expm1(double x) { return expm1(x); }

// ---- Philox4x32-10 ------------------------------------------------------------------------------
struct mg_words { mg_u32 x, y, z, w; };  // one Philox block, Random123 word order

#define MG_PHILOX_M0 0xD2511F53u
#define MG_PHILOX_M1 0xCD9E8D57u
#define MG_PHILOX_W0 0x9E3779B9u  // key bumps: golden ratio, sqrt(3) - 1
#define MG_PHILOX_W1 0xBB67AE85u

// The top word of the 64-bit product a * b (the bottom word is plain a * b mod 2^32).
MG_HD mg_u32 mg_mulhi(mg_u32 a, mg_u32 b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);  // one IMAD.HI
#else
    return (mg_u32)(((mg_u64)a * b) >> 32);
#endif
}

// Philox4x32-10 of one counter under key (k0, k1): 10 rounds, the key bumped after each.
MG_HD mg_words mg_philox4x32_10(mg_words c, mg_u32 k0, mg_u32 k1) {
    MG_UNROLL
    for (int round = 0; round < 10; ++round) {
        const mg_u32 hi0 = mg_mulhi(MG_PHILOX_M0, c.x), lo0 = MG_PHILOX_M0 * c.x;
        const mg_u32 hi1 = mg_mulhi(MG_PHILOX_M1, c.z), lo1 = MG_PHILOX_M1 * c.z;
        c = mg_words{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
        k0 += MG_PHILOX_W0;  // unsigned: wraps mod 2^32 as the key schedule says
        k1 += MG_PHILOX_W1;
    }
    return c;
}

// The 4 words of Philox block `block`: the 64-bit index split into counter words (lo, hi, 0, 0),
// so a block index past 2^32 carries into the second word.
MG_HD mg_words mg_philox_block(mg_u64 block, mg_u32 k0, mg_u32 k1) {
    return mg_philox4x32_10(mg_words{(mg_u32)block, (mg_u32)(block >> 32), 0u, 0u}, k0, k1);
}

// ---- sin and cos of pi t ------------------------------------------------------------------------
// sin(q pi/2 + a) = sin a, cos a, -sin a, -cos a and cos(q pi/2 + a) = cos a, -sin a, -cos a, sin a
// for q = 0..3: (sa, ca) = (sin a, cos a) -> (sin, cos) of the angle q pi/2 + a.
template <typename T> MG_HD void mg_quarter_turns(mg_u32 q, T sa, T ca, T* s, T* c) {
    const T sq = (q & 1u) ? ca : sa;
    const T cq = (q & 1u) ? sa : ca;
    *s = (q & 2u) ? -sq : sq;
    *c = ((q + 1u) & 2u) ? -cq : cq;
}

// (sin pi t, cos pi t). On the device CUDA's sincospif / sincospi (<= 1 ulp each, CUDA C
// Programming Guide); their reduction is exact (t minus a multiple of 1/2), so unlike sin / cos
// they have no slow path for huge arguments, which is an ABI call that makes ptxas spill.
// glibc has neither, so the host build stands in for them: the same exact reduction, then sin / cos
// of pi r from libm. Both stand-ins are within about half an ulp (float: double arithmetic rounded
// once; double: pi r carried as a double-double), so the host build is the ideal sincospi and the
// device may sit up to an ulp further from the reference than the host build does.
MG_HD void mg_sincospi(float t, float* s, float* c) {
#if defined(__CUDA_ARCH__)
    sincospif(t, s, c);
#else
    const double a = 3.141592653589793 * (double)t;  // here |t| <= 1/4
    *s = (float)sin(a);
    *c = (float)cos(a);
#endif
}
MG_HD void mg_sincospi(double t, double* s, double* c) {
#if defined(__CUDA_ARCH__)
    sincospi(t, s, c);
#else
    const double pi_hi = 3.141592653589793, pi_lo = 1.2246467991473532e-16;  // pi - pi_hi
    const double k = rint(2.0 * t);  // the nearest quarter turn; here 0 <= t <= 2
    const double r = t - 0.5 * k;    // exact (Sterbenz), |r| <= 1/4
    const double a = pi_hi * r, a_lo = fma(pi_hi, r, -a) + pi_lo * r;  // pi r = a + a_lo
    const double sa = sin(a), ca = cos(a);
    mg_quarter_turns((mg_u32)(long long)k & 3u, fma(a_lo, ca, sa), fma(-a_lo, sa, ca), s, c);
#endif
}

// ---- uint32 -> uniform -> normal, float64: the reference's arithmetic, operation for operation --
// u = (x + 0.5) 2^-32 is exact in double (33 significant bits), and in (0, 1).
MG_HD double mg_uniform_f64(mg_u32 x) { return ((double)x + 0.5) * 0x1p-32; }

// (sin a, cos a) for the double a in (0, 2 pi]: the sin and cos of a itself, as NumPy computes
// them, within about an ulp, and with relative accuracy next to their zeros.
// a / pi = h + l in double-double (1/pi = ip_hi + ip_lo; the fma gives the exact error of a ip_hi),
// and sin(pi (h + l)) = sinpi(h) + pi l cospi(h) up to (pi l)^2 ~ 2^-100: the l term is what
// carries sin a where a sits next to pi or 2 pi, where sinpi(h) alone loses up to all its digits.
// NOTE: not CUDA's sin / cos of a: their slow path for huge arguments is an ABI call, and around
// it ptxas spilled registers (tests/test_cuda_c.py fails on spills).
MG_HD void mg_sincos_f64(double a, double* s, double* c) {
    const double ip_hi = 0x1.45f306dc9c883p-2;   // 1/pi rounded to double
    const double ip_lo = -0x1.6b01ec5417056p-56; // 1/pi - ip_hi rounded to double
    const double pi = 3.141592653589793;
    const double h = mg_mul(a, ip_hi);
    const double l = mg_add(fma(a, ip_hi, -h), mg_mul(a, ip_lo));
    double sh, ch;
    mg_sincospi(h, &sh, &ch);
    const double pl = mg_mul(pi, l);
    *s = fma(pl, ch, sh);
    *c = fma(-pl, sh, ch);
}

// Box-Muller, cuRAND's curand_normal4 layout: lanes (0, 1) from words (x, y), lanes (2, 3) from
// (z, w); radius from the first word of a pair, angle from the second; sine first.
MG_HD void mg_box_muller(mg_words w, double out[4]) {
    const double two_pi = 6.283185307179586;  // 2 * (pi rounded to double), exactly; as NumPy's
    const double r0 = sqrt(mg_mul(-2.0, log(mg_uniform_f64(w.x))));
    const double r2 = sqrt(mg_mul(-2.0, log(mg_uniform_f64(w.z))));
    double s1, c1, s3, c3;
    mg_sincos_f64(mg_mul(two_pi, mg_uniform_f64(w.y)), &s1, &c1);  // the reference's angle, bit
    mg_sincos_f64(mg_mul(two_pi, mg_uniform_f64(w.w)), &s3, &c3);  // for bit
    out[0] = mg_mul(r0, s1); out[1] = mg_mul(r0, c1);
    out[2] = mg_mul(r2, s3); out[3] = mg_mul(r2, c3);
}

// ---- uint32 -> uniform -> normal, float32: float arithmetic, a few ulps from the reference ------
// The reference computes in double and rounds once. In float, u = (x + 0.5) 2^-32 itself does not
// fit (33 bits), and the naive forms lose all relative accuracy where the results are tiny:
// log(u) for u near 1 (fl32(u) = 1 gives a zero radius), and sin / cos of 2 pi u near their zeros.
// So each is formed from the integer x where it is still exact.

// -log(u), with a relative error of a few ulps for every uint32 x.
MG_HD float mg_neg_log_uniform_f32(mg_u32 x) {
    if (x < 0x80000000u) {
        // u < 1/2: 2x + 1 < 2^32 rounds once to float; the 2^-33 scaling is exact
        return -logf((float)(2u * x + 1u) * 0x1p-33f);
    }
    // u >= 1/2: log1p of -(1 - u), and 1 - u = (~x + 0.5) 2^-32, formed like u above
    // NOTE: a warp whose lanes take both sides runs logf and log1pf; both are short and the
    // kernels are memory-bound.
    return -log1pf(-((float)(2u * ~x + 1u) * 0x1p-33f));
}

// (sin 2 pi u, cos 2 pi u) for u = (x + 0.5) 2^-32, with a relative error of about an ulp each.
MG_HD void mg_sincos_uniform_f32(mg_u32 x, float* s, float* c) {
    // 2 pi u = q pi/2 + pi t: q = the nearest quarter turn, t = (2d + 1) 2^-32, |t| <= 1/4, with
    // d = x - q 2^30 in [-2^29, 2^29). All integer and exact; t rounds once (2d + 1 has 31 bits).
    const mg_u32 q = (x + 0x20000000u) >> 30;  // 0..3; wraps to 0 just below a full turn
    const int d = (int)(x - (q << 30));         // two's complement: the signed distance
    float sa, ca;
    mg_sincospi((float)(2 * d + 1) * 0x1p-32f, &sa, &ca);
    mg_quarter_turns(q, sa, ca, s, c);
}

// Box-Muller in float: the float64 overload's layout, with the careful forms above.
MG_HD void mg_box_muller(mg_words w, float out[4]) {
    const float r0 = sqrtf(2.0f * mg_neg_log_uniform_f32(w.x));  // sqrtf: correctly rounded
    const float r2 = sqrtf(2.0f * mg_neg_log_uniform_f32(w.z));
    float s1, c1, s3, c3;
    mg_sincos_uniform_f32(w.y, &s1, &c1);
    mg_sincos_uniform_f32(w.w, &s3, &c3);
    out[0] = mg_mul(r0, s1); out[1] = mg_mul(r0, c1);
    out[2] = mg_mul(r2, s3); out[3] = mg_mul(r2, c3);
}

// ---- the per-element arithmetic: the reference's operations in the reference's order -----------
// sigma = exp(logvar / 2); halving is exact (below the normal range * 0.5 and / 2 round alike).
template <typename T> MG_HD T mg_sigma(T logvar) { return mg_exp(mg_mul(logvar, T(0.5))); }

// z = mu + exp(logvar / 2) * eps
template <typename T> MG_HD T mg_z(T mu, T logvar, T eps) {
    return mg_add(mu, mg_mul(mg_sigma(logvar), eps));
}

// grad_logvar = grad_z * exp(logvar / 2) * eps / 2, left to right
template <typename T> MG_HD T mg_grad_logvar(T grad_z, T logvar, T eps) {
    return mg_mul(mg_mul(mg_mul(grad_z, mg_sigma(logvar)), eps), T(0.5));
}

// One KL term, (expm1(logvar) - logvar + mu^2) / 2, in T (the reference sums T terms in double).
template <typename T> MG_HD T mg_kl_term(T mu, T logvar) {
    return mg_mul(mg_add(mg_sub(mg_expm1(logvar), logvar), mg_mul(mu, mu)), T(0.5));
}

// ---- grid-stride steps over Philox blocks -------------------------------------------------------
// Number of steps (Philox blocks) a draw of n normals starting at lane start_lane touches.
MG_HD long long mg_num_steps(long long n, mg_u32 start_lane) {
    return n == 0 ? 0 : ((long long)start_lane + n + 3) / 4;
}

// The first step of thread thread_idx of block block_idx, and the stride of the loop.
MG_HD long long mg_grid_first_step(mg_u32 block_idx, mg_u32 block_dim, mg_u32 thread_idx) {
    return (long long)block_idx * block_dim + thread_idx;  // 64-bit before it can overflow
}
MG_HD long long mg_grid_stride(mg_u32 grid_dim, mg_u32 block_dim) {
    return (long long)grid_dim * block_dim;
}

// Step j covers elements base + lane for lane in [begin, end): base = 4 j - start_lane.
struct mg_step { long long base; int begin, end; };
MG_HD mg_step mg_step_lanes(long long j, mg_u32 start_lane, long long n) {
    mg_step s;
    s.base = 4 * j - (long long)start_lane;
    s.begin = s.base < 0 ? (int)-s.base : 0;           // ragged first block: offset % 4 != 0
    s.end = n - s.base < 4 ? (int)(n - s.base) : 4;    // ragged last block
    return s;
}

// The arguments every regenerating pass shares: where the draw sits in the stream.
struct mg_stream { long long n; mg_u64 first_block; mg_u32 start_lane, key0, key1; };

// The normals of step j (lanes outside [begin, end) are computed and never stored).
template <typename T> MG_HD void mg_step_normals(const mg_stream& st, long long j, T eps[4]) {
    mg_box_muller(mg_philox_block(st.first_block + (mg_u64)j, st.key0, st.key1), eps);
}

// NOTE: every per-lane loop below runs lane = 0..3 with a guard rather than begin..end, so that
// after unrolling eps[lane] is a register, not a dynamically indexed local array.

// ---- one thread's share of each pass (the kernels of reparam.cu are these, plus the launch) -----
// forward: z = mu + sigma eps; with kSaveNoise also eps_out = eps.
template <typename T, bool kSaveNoise>
MG_HD void mg_forward_thread(const T* mu, const T* logvar, T* z, T* eps_out, mg_stream st,
                             long long first, long long stride) {
    const long long steps = mg_num_steps(st.n, st.start_lane);
    for (long long j = first; j < steps; j += stride) {
        T eps[4];
        mg_step_normals(st, j, eps);
        const mg_step s = mg_step_lanes(j, st.start_lane, st.n);
        MG_UNROLL
        for (int lane = 0; lane < 4; ++lane) {
            if (lane < s.begin || lane >= s.end) continue;
            const long long i = s.base + lane;
            z[i] = mg_z(mu[i], logvar[i], eps[lane]);
            if (kSaveNoise) eps_out[i] = eps[lane];
        }
    }
}

// forward_kl: the forward, and this thread's float64 partial sum of the KL terms.
template <typename T, bool kSaveNoise>
MG_HD double mg_forward_kl_thread(const T* mu, const T* logvar, T* z, T* eps_out, mg_stream st,
                                  long long first, long long stride) {
    const long long steps = mg_num_steps(st.n, st.start_lane);
    double partial = 0.0;
    for (long long j = first; j < steps; j += stride) {
        T eps[4];
        mg_step_normals(st, j, eps);
        const mg_step s = mg_step_lanes(j, st.start_lane, st.n);
        MG_UNROLL
        for (int lane = 0; lane < 4; ++lane) {
            if (lane < s.begin || lane >= s.end) continue;
            const long long i = s.base + lane;
            z[i] = mg_z(mu[i], logvar[i], eps[lane]);
            if (kSaveNoise) eps_out[i] = eps[lane];
            partial = mg_add(partial, (double)mg_kl_term(mu[i], logvar[i]));
        }
    }
    return partial;
}

// backward (kKL false) and backward_kl (kKL true); eps regenerated, or read from noise (kNoise).
//   grad_mu     = grad_z                      [+ w mu]
//   grad_logvar = grad_z sigma eps / 2        [+ w expm1(logvar) / 2]     w = kl_weight
template <typename T, bool kKL, bool kNoise>
MG_HD void mg_backward_thread(const T* grad_z, const T* mu, const T* logvar, const T* noise,
                              T* grad_mu, T* grad_logvar, T kl_weight, mg_stream st,
                              long long first, long long stride) {
    // with saved noise there is no stream: plain steps of 4 elements (start_lane 0)
    const mg_u32 start_lane = kNoise ? 0u : st.start_lane;
    const long long steps = mg_num_steps(st.n, start_lane);
    for (long long j = first; j < steps; j += stride) {
        T eps[4] = {T(0), T(0), T(0), T(0)};
        if (!kNoise) mg_step_normals(st, j, eps);
        const mg_step s = mg_step_lanes(j, start_lane, st.n);
        MG_UNROLL
        for (int lane = 0; lane < 4; ++lane) {
            if (lane < s.begin || lane >= s.end) continue;
            const long long i = s.base + lane;
            const T g = grad_z[i], lv = logvar[i];
            T gmu = g, glv = mg_grad_logvar(g, lv, kNoise ? noise[i] : eps[lane]);
            if (kKL) {
                gmu = mg_add(g, mg_mul(kl_weight, mu[i]));
                glv = mg_add(glv, mg_mul(mg_mul(kl_weight, mg_expm1(lv)), T(0.5)));
            }
            grad_mu[i] = gmu;
            grad_logvar[i] = glv;
        }
    }
}

// philox4x32: one counter row per step (the bit-identity kernel).
MG_HD void mg_philox_thread(const mg_u32* counters, mg_u32* out, long long rows, mg_u32 key0,
                            mg_u32 key1, long long first, long long stride) {
    for (long long j = first; j < rows; j += stride) {
        const mg_u32* c = counters + 4 * j;
        const mg_words w = mg_philox4x32_10(mg_words{c[0], c[1], c[2], c[3]}, key0, key1);
        mg_u32* o = out + 4 * j;
        o[0] = w.x; o[1] = w.y; o[2] = w.z; o[3] = w.w;
    }
}

#endif  // MINIGRAD_REPARAM_MATH_CUH
