"""The reparameterisation arithmetic written once, as @numba.jit functions: the CPU prange loop
(kernels.numba_cpu) and the CUDA kernel (kernels.numba_cuda) both call these.

Layers, bottom up:
    philox4x32_10          the ten Philox rounds on words held in uint64, masked to 32 bits
    normals4               one Philox block -> its 4 normals (the stream of kernels.philox)
    exp_f32, expm1_f32     float32 exp and expm1 (float64 uses math.exp, math.expm1)
    *_element              one element's formulas, in kernels.reference's order
    block_lanes            which lanes of Philox block j hold elements of this draw
    forward_block          one block of forward, and of forward_kl (its KL terms' sum returned)
    backward_block         one block of backward, and of backward_kl (given mu and kl_grad)

Element i of a draw at stream offset o is lane (o + i) % 4 of Philox block (o + i) // 4, so the
draw covers blocks j = 0 .. J-1 counted from first_block = o // 4; with s = o % 4, block j holds
elements 4j - s + lane for the lanes that fall in 0 .. n-1 (the first and last block may be
ragged). A *_block function takes `base`, the element index of its first lane `lo`, and lanes
lo <= lane < hi; full blocks pass lo = 0, hi = 4, which the compiler folds away.

float64 follows kernels.philox.box_muller operation for operation with math.log/sin/cos/exp
(libm or libdevice), so it differs from the reference only where those differ from NumPy's.
float32 never touches float64: log, sin/cos and exp are branch-free polynomials (Cephes logf,
sinf/cosf, expf coefficients) with range reduction by bit manipulation, because libm calls stay
scalar in a vectorised loop (see /work/shared/notes/cpu-kernel-vectorisation.md).

Rules these functions keep (each one measured to matter):
- Every index is uint64: a signed index makes Numba emit a wrap check and the loop stays scalar.
- No builtin min/max (out-of-line calls block vectorisation): conditional expressions instead.
- uint64 and int64 never meet in one operation (Numba types the result float64), so integer
  constants are np.uint64 and words are masked after every add and multiply.
- float32 constants are np.float32, or the float32 path silently runs in float64.
- They take and return scalars, except the *_lane and *_block functions, which also take
  arrays: the CUDA simulator runs those as Python (see numba_cuda) and the scalar ones compiled.
- Options that are None (eps_out, noise, kl, mu and weight) are pruned at compile time: each
  combination is its own specialisation, with no run-time test in the loop.
"""
import math

import numba
import numba.extending
import numpy as np

from kernels.contract import stream_position

# Numba-compiled, cached on disk; no parallel or fastmath option (the CUDA target reuses them)
jit = numba.jit(nopython=True, cache=True, forceinline=True)

# ---------------------------------------------------------------------------------------------
# Philox4x32-10 (constants and round as in kernels.philox)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)


@jit
def philox4x32_10(x0, x1, x2, x3, k0, k1):
    """Philox4x32-10 of counter (x0, x1, x2, x3) under key (k0, k1): uint32 words held in uint64.

    NOTE: a 32x32-bit product fits uint64 exactly, so p >> 32 is the exact high word; sums are
    masked back to 32 bits because Numba's uint64 does not wrap at 2^32.
    """
    for _ in range(10):  # a constant trip count: LLVM unrolls it
        p0 = PHILOX_M0 * x0
        p1 = PHILOX_M1 * x2
        x0, x1, x2, x3 = ((p1 >> SHIFT32) ^ x1 ^ k0, p1 & MASK32,
                          (p0 >> SHIFT32) ^ x3 ^ k1, p0 & MASK32)
        k0 = (k0 + PHILOX_W0) & MASK32  # the key bump of the next round
        k1 = (k1 + PHILOX_W1) & MASK32
    return x0, x1, x2, x3


@jit
def block_words(key0, key1, block):
    """The 4 words of Philox block `block` (uint64 < 2^64): counter (block mod 2^32, block >> 32,
    0, 0), so a block index crossing 2^32 carries into the counter's second word."""
    key0, key1, block = np.uint64(key0), np.uint64(key1), np.uint64(block)
    zero = np.uint64(0)
    return philox4x32_10(block & MASK32, block >> SHIFT32, zero, zero, key0, key1)


# ---------------------------------------------------------------------------------------------
# words -> normals, float64: kernels.philox.box_muller, operation for operation
TWO_POW_M32 = 2.0**-32
TWO_PI = 2.0 * math.pi


@jit
def box_muller_f64(x_radius, x_angle):
    """(r sin t, r cos t): r = sqrt(-2 ln u(x_radius)), t = 2 pi u(x_angle), u = (x+0.5)/2^32."""
    u_radius = (np.float64(x_radius) + 0.5) * TWO_POW_M32  # exact (33 significant bits)
    u_angle = (np.float64(x_angle) + 0.5) * TWO_POW_M32
    radius = math.sqrt(-2.0 * math.log(u_radius))
    angle = TWO_PI * u_angle
    return radius * math.sin(angle), radius * math.cos(angle)


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


try:  # numba-cuda's registry, where it is installed (kernels.numba_cuda requires it)
    from numba.cuda.extending import overload as _cuda_overload
except ImportError:
    _cuda_overload = None
if _cuda_overload is not None:
    @_cuda_overload(sqrt_f32, target="cuda")
    def _sqrt_f32_cuda(x):
        return lambda x: math.sqrt(x)


@jit
def box_muller_f32(x_radius, x_angle):
    """box_muller_f64 in float32: (r sin t, r cos t)."""
    radius = sqrt_f32(minus_two_log_uniform_f32(x_radius))
    sin_t, cos_t = sincos_turn_f32(x_angle)
    return radius * sin_t, radius * cos_t


@jit
def normals4(key0, key1, block, like):
    """The 4 normals of Philox block `block`, in the dtype of the scalar `like` (sine first, as
    curand_normal4); float64 per kernels.philox.box_muller, float32 by the polynomials."""
    x0, x1, x2, x3 = block_words(key0, key1, block)
    if isinstance(like, np.float32):  # resolved at compile time: one branch is compiled
        n0, n1 = box_muller_f32(x0, x1)
        n2, n3 = box_muller_f32(x2, x3)
    else:
        n0, n1 = box_muller_f64(x0, x1)
        n2, n3 = box_muller_f64(x2, x3)
    return n0, n1, n2, n3


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


# ---------------------------------------------------------------------------------------------
# one element: the formulas and their order are kernels.reference's (x * 0.5 is x / 2 exactly).
# The dtype is logvar's: eps may arrive as a Python float (the simulator boxes compiled results),
# and is cast back exactly.
@jit
def forward_element(mu, logvar, eps):
    """z = mu + exp(logvar / 2) eps."""
    if isinstance(logvar, np.float32):
        return mu + exp_f32(logvar * F32_HALF) * np.float32(eps)
    return mu + math.exp(logvar * 0.5) * eps


@jit
def backward_element(grad_z, logvar, eps):
    """grad_logvar = grad_z exp(logvar / 2) eps / 2."""
    if isinstance(logvar, np.float32):
        return grad_z * exp_f32(logvar * F32_HALF) * np.float32(eps) * F32_HALF
    return grad_z * math.exp(logvar * 0.5) * eps * 0.5


@jit
def kl_element(mu, logvar):
    """(expm1(logvar) - logvar + mu^2) / 2 in the dtype, returned as float64 for the sum."""
    if isinstance(logvar, np.float32):
        return np.float64((expm1_f32(logvar) - logvar + mu * mu) * F32_HALF)
    return (math.expm1(logvar) - logvar + mu * mu) * 0.5


@jit
def backward_kl_element(grad_z, mu, logvar, eps, weight):
    """(grad_z + weight mu, grad_z exp(logvar / 2) eps / 2 + weight expm1(logvar) / 2)."""
    if isinstance(logvar, np.float32):
        weight = np.float32(weight)
        return (grad_z + weight * mu,
                grad_z * exp_f32(logvar * F32_HALF) * np.float32(eps) * F32_HALF
                + weight * expm1_f32(logvar) * F32_HALF)
    return (grad_z + weight * mu,
            grad_z * math.exp(logvar * 0.5) * eps * 0.5 + weight * math.expm1(logvar) * 0.5)


# ---------------------------------------------------------------------------------------------
# one Philox block of one pass
LANES = (np.uint64(0), np.uint64(1), np.uint64(2), np.uint64(3))


@jit
def block_lanes(j, s, n):
    """(base, lo, hi) of block j of a draw of n >= 1 elements whose element 0 is lane s: lanes
    lo <= lane < hi hold elements base .. base + hi - lo - 1.  All uint64."""
    j, s, n = np.uint64(j), np.uint64(s), np.uint64(n)
    four = np.uint64(4)
    lo = s if j == np.uint64(0) else np.uint64(0)
    end = s + n - four * j  # one past the block's last lane, when that is < 4
    hi = end if end < four else four
    return four * j + lo - s, lo, hi


@jit
def forward_lane(mu, logvar, z, eps_out, kl, base, lo, hi, lane, eps):
    """One lane of forward_block; returns its KL term (0 when kl is None or the lane is off)."""
    if lane < lo or lane >= hi:
        return 0.0
    i = base + (lane - lo)
    z[i] = forward_element(mu[i], logvar[i], eps)
    if eps_out is not None:
        eps_out[i] = eps
    if kl is None:
        return 0.0
    return kl_element(mu[i], logvar[i])


@jit
def forward_block(mu, logvar, z, eps_out, kl, key0, key1, block, base, lo, hi):
    """z = mu + exp(logvar / 2) eps for lanes lo..hi-1 of Philox block `block`; eps also into
    eps_out unless it is None; returns the float64 sum of the lanes' KL terms when kl is not
    None (else 0).  Reads mu, logvar and writes z: 3 itemsizes per element (4 with eps_out).

    NOTE: the four lanes are four calls, not a loop: LLVM would vectorise a 4-trip lane loop on
    its own, which stops it from vectorising the loop over blocks around it.
    """
    n0, n1, n2, n3 = normals4(key0, key1, block, logvar[base])
    return ((forward_lane(mu, logvar, z, eps_out, kl, base, lo, hi, LANES[0], n0)
             + forward_lane(mu, logvar, z, eps_out, kl, base, lo, hi, LANES[1], n1))
            + (forward_lane(mu, logvar, z, eps_out, kl, base, lo, hi, LANES[2], n2)
               + forward_lane(mu, logvar, z, eps_out, kl, base, lo, hi, LANES[3], n3)))


@jit
def backward_lane(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, base, lo, hi, lane,
                  eps):
    """One lane of backward_block."""
    if lane < lo or lane >= hi:
        return
    i = base + (lane - lo)
    if noise is not None:
        eps = noise[i]
    if weight is None:
        grad_mu[i] = grad_z[i]
        grad_logvar[i] = backward_element(grad_z[i], logvar[i], eps)
    else:
        grad_mu[i], grad_logvar[i] = backward_kl_element(grad_z[i], mu[i], logvar[i], eps,
                                                         weight)


@jit
def backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1, block,
                   base, lo, hi):
    """grad_mu = grad_z and grad_logvar = grad_z exp(logvar / 2) eps / 2 for lanes lo..hi-1, plus
    weight (kl_grad) times the KL's gradient unless weight is None (then mu is unused, may be
    None).  eps is read from noise, or regenerated when noise is None.  Reads grad_z, logvar
    (mu, noise) and writes both gradients: 4 itemsizes per element (5 or 6 with mu, noise)."""
    if noise is None:
        n0, n1, n2, n3 = normals4(key0, key1, block, logvar[base])
    else:  # placeholders of the dtype: every lane reads its own noise
        n0 = n1 = n2 = n3 = noise[base]
    for_lanes = (grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, base, lo, hi)
    backward_lane(*for_lanes, LANES[0], n0)
    backward_lane(*for_lanes, LANES[1], n1)
    backward_lane(*for_lanes, LANES[2], n2)
    backward_lane(*for_lanes, LANES[3], n3)


# ---------------------------------------------------------------------------------------------
# host side, for both backends
def draw_position(name, n, seed, offset):
    """(key0, key1, first_block, lane) as np.uint64 for a draw of n normals at `offset`
    (kernels.contract.stream_position, which checks the arguments)."""
    first, lane, key0, key1 = stream_position(name, n, seed, offset)
    return np.uint64(key0), np.uint64(key1), np.uint64(first), np.uint64(lane)