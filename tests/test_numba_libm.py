"""kernels.numba.libm's float32 polynomials on chosen inputs, against exact values and the
reference.

tests/test_kernels.py meets them only through the stream, whose words are random; here the words
and arguments are picked where such code breaks: u next to 0 and 1, the quadrant boundaries of
the angle, the switch between the two log routes, exp's overflow and subnormal range, NaN, Inf.
"Exact" is 80-bit long double (NumPy's longdouble on x86-64), rounded once to float32.
"""
import numba
import numpy as np
import pytest

from kernels import contract
from kernels.numba import cpu as numba_cpu, libm as numba_libm, shared as numba_shared
from kernels.philox import box_muller

if np.finfo(np.longdouble).nmant < 63:
    pytest.skip("exact values need 80-bit long double", allow_module_level=True)

# Measured: the float32 normals are within 4 ulps of exact over 2^24 random words and within 3 at
# the edge words below; the reference's normals (float64, rounded once) are exact for random
# words but up to 9 ulps off at the edge words next to the angles pi and 2 pi, where fl(2 pi u)
# has lost the bits that sin needs; there numba_shared is the more accurate of the two.
NORMAL_ULPS_EXACT = 4
NORMAL_ULPS_REFERENCE_AT_EDGES = 9
# exp_f32 within 1 ulp and expm1_f32 within 2 of exact over every 97th float32 in their range
# (NumPy's own float32 exp and expm1 are within 2 and 3).
EXP_ULPS, EXPM1_ULPS = 1, 2


@numba.njit
def _normals_f32(words):
    out = np.empty(words.shape, np.float32)
    for row in range(words.shape[0]):
        for pair in range(2):
            out[row, 2 * pair], out[row, 2 * pair + 1] = numba_shared.box_muller_f32(
                np.uint64(words[row, 2 * pair]), np.uint64(words[row, 2 * pair + 1]))
    return out


@numba.njit
def _exp_expm1_f32(x):
    exp, expm1 = np.empty_like(x), np.empty_like(x)
    for i in range(x.size):
        exp[i], expm1[i] = numba_libm.exp_f32(x[i]), numba_libm.expm1_f32(x[i])
    return exp, expm1


def ulps32(a, b):
    """|a - b| in float32 ulps: the count of float32 values between them (0 for +0 and -0)."""
    def ordered(x):
        bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


def exact_normals(words):
    """Box-Muller in long double, the angle reduced with integers, rounded once to float32."""
    u = (words.astype(np.longdouble) + np.longdouble(0.5)) * np.longdouble(2.0) ** -32
    radius = np.sqrt(-2 * np.log(u[:, 0::2]))
    pi = np.longdouble("3.14159265358979323846264338327950288")
    angle = 2 * pi * u[:, 1::2]
    normals = np.empty(words.shape, np.longdouble)
    normals[:, 0::2], normals[:, 1::2] = radius * np.sin(angle), radius * np.cos(angle)
    return normals.astype(np.float32)


def edge_words():
    """Words next to 0, 2^32, the quarter turns, and the log's switch at u = sqrt(1/2)."""
    near = np.arange(-64, 64)
    centres = [2**30, 2**31, 3 * 2**30, int(numba_libm.WORD_SQRT_HALF)]
    words = np.concatenate([np.arange(0, 128), 2**32 - 1 - np.arange(128)]
                           + [c + near for c in centres]).astype(np.uint32)
    # every edge word in both roles: radius (lanes 0, 2) and angle (lanes 1, 3)
    return np.stack([words, words, words[::-1], words[::-1]], axis=1)


def test_normals_at_the_edge_words():
    words = edge_words()
    normals = _normals_f32(words)
    assert ulps32(normals, exact_normals(words)).max() <= NORMAL_ULPS_EXACT
    reference = box_muller(words).astype(np.float32)
    assert ulps32(normals, reference).max() <= NORMAL_ULPS_REFERENCE_AT_EDGES


def test_normals_at_random_words():
    words = np.random.default_rng(0).integers(0, 2**32, (1 << 16, 4), dtype=np.uint64)
    words = words.astype(np.uint32)
    normals = _normals_f32(words)
    assert ulps32(normals, exact_normals(words)).max() <= NORMAL_ULPS_EXACT
    assert ulps32(normals, box_muller(words).astype(np.float32)).max() <= NORMAL_ULPS_EXACT


def test_exp_and_expm1_over_their_range():
    bits = np.arange(0, 2**32, 9973, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x) & (x > -110) & (x < 90)]
    exp, expm1 = _exp_expm1_f32(x)
    with np.errstate(over="ignore"):  # past 88.72 the exact values round to inf
        exact = np.exp(x.astype(np.longdouble)).astype(np.float32)
        exact_m1 = np.expm1(x.astype(np.longdouble)).astype(np.float32)
    assert ulps32(exp, exact).max() <= EXP_ULPS
    assert ulps32(expm1, exact_m1).max() <= EXPM1_ULPS


def test_exp_and_expm1_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 88.72, 88.73, 200.0, -87.4, -103.0, -104.5, -1e30,
                  0.0, 1e-30, -1e-30], np.float32)
    exp, expm1 = _exp_expm1_f32(x)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.longdouble)).astype(np.float32)
        exact_m1 = np.expm1(x.astype(np.longdouble)).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(exp), np.isnan(x))
    np.testing.assert_array_equal(np.isnan(expm1), np.isnan(x))
    finite = ~np.isnan(x)
    assert ulps32(exp[finite], exact[finite]).max() <= EXP_ULPS  # inf, subnormals and 0 included
    assert ulps32(expm1[finite], exact_m1[finite]).max() <= EXPM1_ULPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_threaded_and_parallel_loops_give_the_same_bits(monkeypatch, dtype):
    rng = np.random.default_rng(5)
    mu, logvar, grad_z = (rng.standard_normal(1003).astype(dtype) for _ in range(3))

    def run():
        z, kl = contract.forward_kl(numba_cpu, mu, logvar, 11, 6)
        return (z, kl, *contract.backward_kl(numba_cpu, grad_z, mu, logvar, 11, 6, 0.5))
    single = run()                                    # 1003 elements: below the threshold
    monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_ELEMENTS", 0)
    for a, b in zip(single, run()):
        np.testing.assert_array_equal(a, b)
