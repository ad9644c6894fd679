"""The reparameterisation arithmetic written once, as @numba.jit functions: the CPU prange loop
(kernels.numba.cpu) and the CUDA kernels (kernels.numba.gpu_kernels) both call these.

Layers, bottom up:
    philox4x32_10          the ten Philox rounds on words held in uint64, masked to 32 bits
    box_muller_f32/_f64    two words -> two normals, by kernels.numba.libm's log, sin/cos, sqrt
    normals4               one Philox block -> its 4 normals (the stream of kernels.philox)
    *_element              one element's formulas, in kernels.reference's order
    block_lanes            which lanes of Philox block j hold elements of this draw
    forward_block          one block of forward, and of forward_kl (its KL terms' sum returned)
    backward_block         one block of backward, and of backward_kl (given mu and kl_weight)

Element i of a draw at stream offset o is lane (o + i) % 4 of Philox block (o + i) // 4, so the
draw covers blocks j = 0 .. J-1 counted from first_block = o // 4; with s = o % 4, block j holds
elements 4j - s + lane for the lanes that fall in 0 .. n-1 (the first and last block may be
ragged). A *_block function takes `base`, the element index of its first lane `lo`, and lanes
lo <= lane < hi; full blocks pass lo = 0, hi = 4, which the compiler folds away.

float64 follows kernels.philox.box_muller (the same rounded angle fl(2 pi u)) and float32 never
touches float64 (kernels.numba.libm says how, and which rules keep the loop vectorised).

Rules these functions keep, beside kernels.numba.libm's:
- Every index is uint64: a signed index makes Numba emit a wrap check and the loop stays scalar.
- They take and return scalars, except the *_lane and *_block functions, which also take
  arrays: the CUDA simulator runs those as Python (see numba_cuda) and the scalar ones compiled.
- Options that are None (eps_out, noise, kl, mu and weight) are pruned at compile time: each
  combination is its own specialisation, with no run-time test in the loop.
"""
import numpy as np

from kernels.contract import stream_position
from kernels.numba.jit import jit, jit_ieee
from kernels.numba.libm import (F32_HALF, MASK32, two_product_f64, exp_f32, exp_f64, expm1_f32,
                                expm1_f64, fma_f64, minus_two_log_uniform_f32,
                                minus_two_log_uniform_f64, sincos_turn_f32, sincos_turn_f64,
                                sqrt_f32, sqrt_f64)

# ---------------------------------------------------------------------------------------------
# Philox4x32-10 (constants and round as in kernels.philox)
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
# words -> normals: Box-Muller on the libm's log of a uniform and sine/cosine of a turn
@jit
def box_muller_f32(x_radius, x_angle):
    """box_muller_f64 in float32: (r sin t, r cos t)."""
    radius = sqrt_f32(minus_two_log_uniform_f32(x_radius))
    sin_t, cos_t = sincos_turn_f32(x_angle)
    return radius * sin_t, radius * cos_t


@jit_ieee
def box_muller_f64(x_radius, x_angle):
    """(r sin t, r cos t): r = sqrt(-2 ln u(x_radius)), t = fl(2 pi u(x_angle)),
    u = (x + 0.5) / 2^32, as kernels.philox.box_muller, by the branch-free polynomials.

    r, sin t and cos t are carried as (value, tail) pairs and the products formed exactly
    (FMA), so the normals are within about 0.6 ulp of exact (NumPy's own within about 2).
    """
    log_hi, log_lo = minus_two_log_uniform_f64(x_radius)
    radius = sqrt_f64(log_hi)
    radius_lo = (fma_f64(-radius, radius, log_hi) + log_lo) / (2.0 * radius)
    sin_t, sin_lo, cos_t, cos_lo = sincos_turn_f64(x_angle)
    p_sin, e_sin = two_product_f64(radius, sin_t)
    p_cos, e_cos = two_product_f64(radius, cos_t)
    return (p_sin + (e_sin + (radius * sin_lo + radius_lo * sin_t)),
            p_cos + (e_cos + (radius * cos_lo + radius_lo * cos_t)))

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
# one element: the formulas and their order are kernels.reference's (x * 0.5 is x / 2 exactly).
# The dtype is logvar's: eps may arrive as a Python float (the simulator boxes compiled results),
# and is cast back exactly.
@jit
def forward_element(mu, logvar, eps):
    """z = mu + exp(logvar / 2) eps."""
    if isinstance(logvar, np.float32):
        return mu + exp_f32(logvar * F32_HALF) * np.float32(eps)
    return mu + exp_f64(logvar * 0.5) * eps


@jit
def backward_element(grad_z, logvar, eps):
    """grad_logvar = grad_z exp(logvar / 2) eps / 2."""
    if isinstance(logvar, np.float32):
        return grad_z * exp_f32(logvar * F32_HALF) * np.float32(eps) * F32_HALF
    return grad_z * exp_f64(logvar * 0.5) * eps * 0.5


@jit
def kl_element(mu, logvar):
    """(expm1(logvar) - logvar + mu^2) / 2 in the dtype, returned as float64 for the sum."""
    if isinstance(logvar, np.float32):
        return np.float64((expm1_f32(logvar) - logvar + mu * mu) * F32_HALF)
    return (expm1_f64(logvar) - logvar + mu * mu) * 0.5


@jit
def backward_kl_element(grad_z, mu, logvar, eps, weight):
    """(grad_z + weight mu, grad_z exp(logvar / 2) eps / 2 + weight expm1(logvar) / 2)."""
    if isinstance(logvar, np.float32):
        weight = np.float32(weight)
        return (grad_z + weight * mu,
                grad_z * exp_f32(logvar * F32_HALF) * np.float32(eps) * F32_HALF
                + weight * expm1_f32(logvar) * F32_HALF)
    return (grad_z + weight * mu,
            grad_z * exp_f64(logvar * 0.5) * eps * 0.5 + weight * expm1_f64(logvar) * 0.5)


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
    weight (kl_weight) times the KL's gradient unless weight is None (then mu is unused, may be
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
