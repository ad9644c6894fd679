"""A branch-free libm for the reparameterisation kernels, as Numba scalar functions that
vectorise in the CPU loop and compile for CUDA alike (kernels.numba.shared calls them).

    minus_two_log_uniform_f32/_f64   -2 ln u of a uniform u = (x + 0.5) 2^-32 given by its word
    sincos_turn_f32/_f64             (sin, cos) of the turn 2 pi u
    exp_f32, expm1_f32, exp_f64, expm1_f64
    sqrt_f32, sqrt_f64, fma_f64      one implementation per target (CPU: LLVM intrinsics)

float32: Cephes logf, sinf/cosf, expf coefficients. float64: FreeBSD msun's e_log.c,
k_sin.c/k_cos.c after a two-step Cody-Waite reduction of fl(2 pi u) by pi/2, and e_exp.c, with
the last additions and the products kept exact (TwoSum, FMA), so that the normals are within
about 1 ulp of exact and exp within 0.7 (NumPy's own are within 2 and 0.7). Range reduction is by
bit manipulation and there are no branches, because libm calls stay scalar in a vectorised loop
(see docs/kernels.md, "What makes the CPU loop vectorise"). The float64 functions that divide are
compiled with IEEE division (jit_ieee): the default zero test raises, and that branch would keep
the loop scalar.

Rules these functions keep (each one measured to matter):
- No builtin min/max (out-of-line calls block vectorisation): conditional expressions instead.
- uint64 and int64 never meet in one operation (Numba types the result float64), so integer
  constants are np.uint64 and words are masked after every add and multiply.
- float32 constants are np.float32, or the float32 path silently runs in float64.
- No a * b + c is meant to be fused: the CPU target never contracts, and kernels.numba.gpu
  compiles with contraction off (kernels.numba.gpu_kernels), so both run these operations as
  written; the only FMAs are fma_f64's.
"""
import math

import numba
import numba.extending
import numpy as np

from kernels.numba.jit import jit, jit_ieee

MASK32 = np.uint64(0xFFFFFFFF)  # a uint32 word held in uint64

# ---------------------------------------------------------------------------------------------
# words -> uniforms, float64: exact, as kernels.philox.uint32_to_uniform
TWO_POW_M32 = 2.0**-32
TWO_PI = 2.0 * math.pi


# ---------------------------------------------------------------------------------------------
# words -> normals, float32: polynomials, range reduction on the integer bits
F32_ONE = np.float32(1.0)
F32_HALF = np.float32(0.5)
F32_TWO_POW_M33 = np.float32(2.0**-33)
# log: Cephes logf, log(1 + f) = f - f^2/2 + f^3 P(f) on sqrt(1/2) - 1 <= f < sqrt(2) - 1
LOG_P = (np.float32(7.0376836292e-2), np.float32(-1.1514610310e-1), np.float32(1.1676998740e-1),
         np.float32(-1.2420140846e-1), np.float32(1.4249322787e-1), np.float32(-1.6668057665e-1),
         np.float32(2.0000714765e-1), np.float32(-2.4999993993e-1), np.float32(3.3333331174e-1))
LN2_HI = np.float32(0.693359375)  # 355/512: n * LN2_HI is exact for |n| < 2^15
LN2_LO = np.float32(-2.12194440e-4)  # ln 2 - LN2_HI
MANTISSA_SQRT2 = np.int64(0x3504F3)  # the mantissa bits of sqrt(2)
# the smallest word whose uniform is above sqrt(1/2): from there log takes the complement route
WORD_SQRT_HALF = np.uint64(0xB504F334)
# sin/cos: Cephes sinf/cosf on |a| <= pi/4
SIN_P = (np.float32(-1.9515295891e-4), np.float32(8.3321608736e-3), np.float32(-1.6666654611e-1))
COS_P = (np.float32(2.443315711809948e-5), np.float32(-1.388731625493765e-3),
         np.float32(4.166664568298827e-2))
PI_OVER_2_POW_32 = np.float32(math.pi / 2.0**32)
QUARTER_TURN = np.uint64(1 << 30)
QUADRANT_SHIFT = np.uint64(30)
EIGHTH_TURN = np.uint64(1 << 29)
# exp: Cephes expf, e^r = 1 + r + r^2 E(r) on |r| <= ln(2)/2
EXP_P = (np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3),
         np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1))
LOG2E = np.float32(1.44269504088896341)
ROUND_MAGIC = np.float32(1.5 * 2.0**23)  # v + ROUND_MAGIC rounds v to an integer, |v| < 2^22
ROUND_MAGIC_BITS = np.int64(0x4B400000)  # ... whose low bits then hold it
EXP_HI = np.float32(89.0)  # e^89 overflows float32 (e^88.73 is the largest finite)
EXP_LO = np.float32(-104.0)  # e^-104 rounds to 0 (the smallest subnormal is e^-103.3)
EXPM1_LO = np.float32(-30.0)  # expm1(x) rounds to -1 for x below -17.4


@jit
def f32_from_bits(bits):
    """The float32 whose bit pattern is the low 32 bits of the int64 `bits`."""
    return np.int32(bits).view(np.float32)


@jit
def minus_two_log_uniform_f32(x):
    """-2 ln u for u = (x + 0.5) 2^-32, in float32, within a few ulp of the exact value.

    u < sqrt(1/2): u rounded to float32 (relative error 2^-24) splits as 2^e m, m in
    [sqrt(1/2), sqrt(2)), and log u = e ln 2 + log1p(m - 1). u >= sqrt(1/2): log u =
    log1p(-v) with v = 1 - u = (~x + 0.5) 2^-32 formed from the complement word, so that u close
    to 1 keeps its relative accuracy (u itself would round to 1 and log u to 0).
    """
    # route 1: u = (2x + 1) 2^-33, one rounding (2x + 1 < 2^33 fits int64 exactly)
    u = np.float32(np.int64(x) * 2 + 1) * F32_TWO_POW_M33
    bits = np.int64(np.float32(u).view(np.int32))
    mantissa = bits & 0x7FFFFF
    above = mantissa > MANTISSA_SQRT2  # m in [sqrt 2, 2): halve it, bump the exponent
    m = f32_from_bits(mantissa | (0x3F000000 if above else 0x3F800000))
    exponent = (bits >> 23) - (126 if above else 127)
    # route 2: v = 1 - u from the complement word, also one rounding
    v = np.float32(np.int64(MASK32 - x) * 2 + 1) * F32_TWO_POW_M33
    near_one = x >= WORD_SQRT_HALF
    f = -v if near_one else m - F32_ONE
    e = np.float32(0 if near_one else exponent)
    # Cephes logf: log1p(f) = f - f^2/2 + f^3 P(f), e ln 2 added in two parts
    z = f * f
    p = LOG_P[0]
    for c in LOG_P[1:]:
        p = p * f + c
    y = f * z * p + e * LN2_LO - F32_HALF * z
    log_u = (f + y) + e * LN2_HI
    return np.float32(-2.0) * log_u


@jit
def sincos_turn_f32(x):
    """(sin t, cos t) for t = 2 pi u, u = (x + 0.5) 2^-32, in float32.

    The quadrant comes from the word's top bits, so no angle is ever rounded near a multiple of
    pi/2: t = q pi/2 + a with a = k pi/2^32, k odd and |k| < 2^30, |a| <= pi/4.
    """
    shifted = (x + EIGHTH_TURN) & MASK32  # quarter turns centred on the multiples of pi/2
    quadrant = shifted >> QUADRANT_SHIFT
    # k = 2 (x + 0.5 - quadrant 2^30) mod 2^33, odd, in (-2^30, 2^30): a is exact to one rounding
    k = np.int64(shifted & (QUARTER_TURN - np.uint64(1))) * 2 + 1 - (1 << 30)
    a = np.float32(k) * PI_OVER_2_POW_32
    z = a * a
    s = ((SIN_P[0] * z + SIN_P[1]) * z + SIN_P[2]) * z * a + a
    c = ((COS_P[0] * z + COS_P[1]) * z + COS_P[2]) * z * z - F32_HALF * z + F32_ONE
    odd = (quadrant & np.uint64(1)) != np.uint64(0)  # quadrants 1, 3 swap sine and cosine
    sin_t = c if odd else s
    cos_t = s if odd else c
    sin_t = -sin_t if (quadrant & np.uint64(2)) != np.uint64(0) else sin_t  # quadrants 2, 3
    cos_t = -cos_t if ((quadrant + np.uint64(1)) & np.uint64(2)) != np.uint64(0) else cos_t
    return sin_t, cos_t


def sqrt_f32(x):
    """The correctly rounded square root of a float32 x > 0 (Python, for the CUDA simulator).

    Compiled code gets one implementation per target, both IEEE sqrt: on the CPU x ** 0.5, which
    LLVM turns into its sqrt intrinsic, which vectorises (math.sqrt and np.sqrt become calls to
    libm's sqrtf, which do not); on CUDA math.sqrt, i.e. sqrt.rn.f32 (x ** 0.5 would be powf).
    """
    return np.float32(math.sqrt(x))


@numba.extending.overload(sqrt_f32, target="cpu")
def _sqrt_f32_cpu(x):
    return lambda x: x ** F32_HALF


try:  # numba-cuda's registry, where it is installed (kernels.numba.gpu requires it)
    from numba.cuda.extending import overload as _cuda_overload
except ImportError:
    _cuda_overload = None
if _cuda_overload is not None:
    @_cuda_overload(sqrt_f32, target="cuda")
    def _sqrt_f32_cuda(x):
        return lambda x: math.sqrt(x)


# ---------------------------------------------------------------------------------------------
# words -> normals and exp, float64: FreeBSD msun's log, __kernel_sin/__kernel_cos,
# __rem_pio2 (two Cody-Waite steps) and exp, written branch-free, range reduction on the bits
F64_ONE = 1.0
F64_HALF = 0.5
MANTISSA_MASK_F64 = np.int64(0x000FFFFFFFFFFFFF)
MANTISSA_SQRT2_F64 = np.int64(0x6A09E667F3BCD)  # the mantissa bits of sqrt(2)
ONE_BITS_F64 = np.int64(0x3FF0000000000000)
HALF_BITS_F64 = np.int64(0x3FE0000000000000)
# log: e_log.c, log(1 + f) = f - hfsq + s (hfsq + R(s^2)), s = f / (2 + f)
LOG_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
          2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
          1.479819860511658591e-01)
LN2_HI_F64 = 6.93147180369123816490e-01  # 0x3FE62E42FEE00000: k LN2_HI_F64 exact for |k| < 2^11
LN2_LO_F64 = 1.90821492927058770002e-10
# sin/cos: k_sin.c, k_cos.c on |x| <= pi/4 with the tail y of the reduced argument
SIN_S = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
         2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
COS_C = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
         -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)
# e_rem_pio2.c: pi/2 = PIO2_1 + PIO2_2 + PIO2_2T, PIO2_1 and PIO2_2 of 33 bits (n PIO2_i exact)
INV_PIO2 = 6.36619772367581382433e-01
PIO2_1 = 1.57079632673412561417e+00
PIO2_1T = 6.07710050650619224932e-11
PIO2_2 = 6.07710050630396597660e-11
PIO2_2T = 2.02226624879595063154e-21
ROUND_MAGIC_F64 = 1.5 * 2.0**52  # v + ROUND_MAGIC_F64 rounds v to an integer, |v| < 2^51
ROUND_MAGIC_BITS_F64 = np.int64(0x4338000000000000)  # ... whose low bits then hold it
# exp: e_exp.c, e^r = 1 + r + r c / (2 - c), c = r - r^2 P(r^2), |r| <= ln(2)/2
EXP_P_F64 = (4.13813679705723846039e-08, -1.65339022054652515390e-06,
             6.61375632143793436117e-05, -2.77777777770155933842e-03,
             1.66666666666666019037e-01)
LOG2E_F64 = 1.44269504088896338700e+00
EXP_HI_F64 = 710.0  # e^710 overflows (e^709.78 is the largest finite)
EXP_LO_F64 = -746.0  # e^-746 rounds to 0 (the smallest subnormal is e^-744.4)
EXPM1_LO_F64 = -60.0  # expm1(x) rounds to -1 for x below -37.5


@jit
def f64_from_bits(bits):
    """The float64 whose bit pattern is the int64 `bits`."""
    return np.int64(bits).view(np.float64)


@jit
def f64_bits(x):
    """The bit pattern of the float64 x, as int64."""
    return np.float64(x).view(np.int64)


@jit
def _round_f64(v):
    """(n, float n) for v rounded to the nearest integer (ties to even), |v| < 2^51."""
    k = v + ROUND_MAGIC_F64
    return f64_bits(k) - ROUND_MAGIC_BITS_F64, k - ROUND_MAGIC_F64


def fma_f64(a, b, c):
    """a b + c rounded once (Python, for the CUDA simulator: exact only where a b is).

    Compiled, LLVM's fma intrinsic on the CPU (one instruction with FMA hardware, which
    vectorises) and cuda.fma on CUDA: what makes the products below error-free.
    """
    return a * b + c


@numba.extending.intrinsic
def _fma_intrinsic(typingctx, a, b, c):
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return numba.types.float64(numba.types.float64, numba.types.float64,
                               numba.types.float64), codegen


@numba.extending.overload(fma_f64, target="cpu")
def _fma_f64_cpu(a, b, c):
    return lambda a, b, c: _fma_intrinsic(a, b, c)


if _cuda_overload is not None:
    from numba import cuda as _cuda

    @_cuda_overload(fma_f64, target="cuda")
    def _fma_f64_cuda(a, b, c):
        return lambda a, b, c: _cuda.fma(a, b, c)


@jit
def two_product_f64(a, b):
    """(p, e): p = fl(a b) and a b = p + e exactly."""
    p = a * b
    return p, fma_f64(a, b, -p)


@jit_ieee
def minus_two_log_uniform_f64(x):
    """-2 ln u as (hi, lo) for u = (x + 0.5) 2^-32 (exact in float64): u = 2^e m with m in
    [sqrt(1/2), sqrt(2)) split on the bits, f = m - 1 exact, log u = e ln 2 + log1p(f) as e_log.c,
    its last two additions kept exact (the sum's rounding errors go into lo)."""
    u = (np.float64(x) + 0.5) * TWO_POW_M32
    bits = f64_bits(u)
    mantissa = bits & MANTISSA_MASK_F64
    above = mantissa > MANTISSA_SQRT2_F64  # m in [sqrt 2, 2): halve it, bump the exponent
    f = f64_from_bits(mantissa | (HALF_BITS_F64 if above else ONE_BITS_F64)) - F64_ONE
    e = np.float64((bits >> np.int64(52)) - (np.int64(1022) if above else np.int64(1023)))
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LOG_LG[1] + w * (LOG_LG[3] + w * LOG_LG[5]))
    t2 = z * (LOG_LG[0] + w * (LOG_LG[2] + w * (LOG_LG[4] + w * LOG_LG[6])))
    r = t2 + t1
    hfsq = F64_HALF * f * f
    d = hfsq - (s * (hfsq + r) + e * LN2_LO_F64)
    low = f - d  # |f| >= |d|: Fast2Sum
    low_err = (f - low) - d
    high = e * LN2_HI_F64  # exact
    log_u = high + low  # TwoSum
    high_v = log_u - low
    log_err = (high - high_v) + (low - (log_u - high_v)) + low_err
    return -2.0 * log_u, -2.0 * log_err


@jit
def sincos_turn_f64(x):
    """(sin t, its tail, cos t, its tail) for t = fl(2 pi u), u = (x + 0.5) 2^-32: the
    reference's rounded angle, reduced by t = n pi/2 + (y0 + y1) in two Cody-Waite steps (good
    to 118 bits, where t is never closer than 2^-31 to a multiple of pi/2), then k_sin.c and
    k_cos.c on (y0, y1) with their last addition kept exact."""
    t = TWO_PI * ((np.float64(x) + 0.5) * TWO_POW_M32)
    n, fn = _round_f64(t * INV_PIO2)  # 0 .. 4
    r = t - fn * PIO2_1  # exact
    t2 = r
    w = fn * PIO2_2
    r = t2 - w
    w = fn * PIO2_2T - ((t2 - r) - w)
    y0 = r - w
    y1 = (r - y0) - w
    z, z_err = two_product_f64(y0, y0)
    w = z * z
    # sine: x - ((z (y/2 - v r) - y) - v S1)
    rs = SIN_S[1] + z * (SIN_S[2] + z * SIN_S[3]) + z * w * (SIN_S[4] + z * SIN_S[5])
    v = z * y0
    q = (z * (F64_HALF * y1 - v * rs) - y1) - v * SIN_S[0]
    s = y0 - q  # |y0| >= |q|: Fast2Sum
    s_lo = (y0 - s) - q
    # cosine: w + (((1 - w) - hz) + (z r - x y)), w = 1 - hz, hz = z / 2 with z's error
    rc = z * (COS_C[0] + z * (COS_C[1] + z * COS_C[2])) + w * w * (COS_C[3] + z * (COS_C[4]
                                                                             + z * COS_C[5]))
    hz = F64_HALF * z
    one_hz = F64_ONE - hz
    k = ((F64_ONE - one_hz) - hz) + (z * rc - (y0 * y1 + F64_HALF * z_err))
    c = one_hz + k  # |one_hz| >= |k|: Fast2Sum
    c_lo = (one_hz - c) + k
    odd = (n & np.int64(1)) != np.int64(0)  # quadrants 1, 3 swap sine and cosine
    sin_t, sin_lo = (c, c_lo) if odd else (s, s_lo)
    cos_t, cos_lo = (-s, -s_lo) if odd else (c, c_lo)
    if (n & np.int64(2)) != np.int64(0):  # quadrants 2, 3 (and 4 = 0) negate both
        return -sin_t, -sin_lo, -cos_t, -cos_lo
    return sin_t, sin_lo, cos_t, cos_lo


def sqrt_f64(x):
    """The correctly rounded square root of a float64 x >= 0 (Python, for the CUDA simulator);
    compiled, x ** 0.5 on the CPU (LLVM's sqrt intrinsic, which vectorises) and math.sqrt on
    CUDA, as sqrt_f32."""
    return math.sqrt(x)


@numba.extending.overload(sqrt_f64, target="cpu")
def _sqrt_f64_cpu(x):
    return lambda x: x ** F64_HALF


if _cuda_overload is not None:
    @_cuda_overload(sqrt_f64, target="cuda")
    def _sqrt_f64_cuda(x):
        return lambda x: math.sqrt(x)



@jit
def _exp_reduce_f64(x, lo):
    """(n, hi, lo, r) with x = n ln 2 + r, r = hi - lo, |r| <= ln(2)/2, after clamping x to
    [lo, 710]; NaN passes the clamps and stays in r (n is then garbage from the bits)."""
    x = EXP_HI_F64 if x > EXP_HI_F64 else x
    x = lo if x < lo else x
    n, fn = _round_f64(x * LOG2E_F64)
    hi = x - fn * LN2_HI_F64  # exact
    lo = fn * LN2_LO_F64
    return n, hi, lo, hi - lo


@jit
def _exp_c_f64(r):
    """c = r - r^2 P(r^2) of e_exp.c: e^r = 1 + r + r c / (2 - c)."""
    t = r * r
    p = EXP_P_F64[0]
    for coefficient in EXP_P_F64[1:]:
        p = p * t + coefficient
    return r - t * p


@jit
def _pow2_f64(n):
    """2^n as float64 for -1022 <= n <= 1023, from its exponent bits."""
    return f64_from_bits((n + np.int64(1023)) << np.int64(52))


@jit_ieee
def exp_f64(x):
    """e^x in float64, branch-free; overflow to inf, subnormals and NaN as IEEE exp.

    e_exp.c's e^r - 1 = hi - (lo - r c / (2 - c)), with that subtraction and the 1 + added
    exactly (TwoSum) and rounded once at the end: within about 0.6 ulp of exact, so that it
    agrees with NumPy's exp (within 0.7) nearly everywhere.
    """
    n, hi, lo, r = _exp_reduce_f64(x, EXP_LO_F64)
    c = _exp_c_f64(r)
    m = lo - (r * c) / (2.0 - c)
    q = hi - m  # TwoSum: q + q_err = hi - m
    hi_v = q + m
    q_err = (hi - hi_v) - (m - (hi_v - q))
    y = F64_ONE + q  # |q| <= 0.42 < 1: Fast2Sum
    y = y + (((F64_ONE - y) + q) + q_err)
    half = n >> np.int64(1)  # 2^n in two factors keeps each normal for n in [-1076, 1024]
    return y * _pow2_f64(half) * _pow2_f64(n - half)


@jit_ieee
def expm1_f64(x):
    """e^x - 1 in float64, relatively accurate near 0: e^r - 1 = hi - (lo - r c / (2 - c)),
    then 2^n (e^r - 1) + (2^n - 1)."""
    n, hi, lo, r = _exp_reduce_f64(x, EXPM1_LO_F64)
    c = _exp_c_f64(r)
    p = hi - (lo - (r * c) / (2.0 - c))
    top = n > np.int64(1023)  # only n = 1024: form 2 (2^1023 p + 2^1023) instead
    scale = _pow2_f64(np.int64(1023) if top else n)
    return (scale * p + scale) * 2.0 if top else scale * p + (scale - F64_ONE)


# ---------------------------------------------------------------------------------------------
# exp and expm1 of the input dtype
@jit
def _exp_reduce_f32(x, lo):
    """(n, r) with x = n ln 2 + r, |r| <= ln(2)/2 (to rounding), after clamping x to [lo, 89].

    NaN passes the clamps (comparisons with NaN are false) and stays in r; n is then garbage
    from the bits, never an undefined float-to-int conversion.
    """
    x = EXP_HI if x > EXP_HI else x
    x = lo if x < lo else x
    k = x * LOG2E + ROUND_MAGIC
    n = np.int64(np.float32(k).view(np.int32)) - ROUND_MAGIC_BITS
    n_float = k - ROUND_MAGIC
    return n, (x - n_float * LN2_HI) - n_float * LN2_LO


@jit
def _expm1_reduced_f32(r):
    """e^r - 1 = r + r^2 E(r) for |r| <= ln(2)/2 (Cephes expf's polynomial)."""
    p = EXP_P[0]
    for c in EXP_P[1:]:
        p = p * r + c
    return p * (r * r) + r


@jit
def _pow2_f32(n):
    """2^n as float32 for -126 <= n <= 127, from its exponent bits."""
    return f32_from_bits((n + 127) << 23)


@jit
def exp_f32(x):
    """e^x in float32, branch-free; overflow to inf, subnormal results and NaN as IEEE exp."""
    n, r = _exp_reduce_f32(x, EXP_LO)
    half = n >> 1  # 2^n in two factors keeps each normal for n in [-150, 128]
    return (_expm1_reduced_f32(r) + F32_ONE) * _pow2_f32(half) * _pow2_f32(n - half)


@jit
def expm1_f32(x):
    """e^x - 1 in float32, relatively accurate near 0: 2^n (1 + p) - 1 = 2^n p + (2^n - 1)."""
    n, r = _exp_reduce_f32(x, EXPM1_LO)
    p = _expm1_reduced_f32(r)
    top = n > 127  # only n = 128: 2^128 overflows, so form 2 (2^127 p + 2^127) instead
    scale = _pow2_f32(127 if top else n)
    return (scale * p + scale) * np.float32(2.0) if top else scale * p + (scale - F32_ONE)
