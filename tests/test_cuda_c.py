"""The CUDA C of kernels/cuda_c/reparam_math.cuh and reparam.cu, checked without a GPU.

1. The header built for the CPU (tests/cuda_c_host.py) against kernels.reference: Philox words bit
   for bit, floats within the ulp bounds below, the grid-stride loop under several launch shapes,
   and the edge cases (empty and one-element draws, ragged first and last blocks, a block counter
   that carries into its second word, NaN and Inf).
2. kernels/cuda_c/adam_math.cuh built for the CPU against kernels.numba.adam, bit for bit (the same
   arithmetic, no contraction, subnormals kept), and float32 subnormal inputs through every pass.
3. On a machine with a GPU and CuPy, kernels.cuda_c.cupy_reparam against the host build (skipped
   elsewhere).
The GPU compile of the same sources (NVRTC, ptxas) is tests/test_gpu_compile.py's.

Ulps: |actual - expected| over the spacing of the dtype at |expected|. Where a result is a sum
whose terms may cancel (z = mu + sigma eps), the spacing is taken at the sum of the terms'
magnitudes instead, since an ulp of a term's rounding is then many ulps of the result.
"""
import csv
from pathlib import Path

import numpy as np
import pytest

from kernels import contract, philox, reference

ROOT = Path(__file__).resolve().parent.parent
KAT_PATH = Path(__file__).parent / "data" / "philox4x32_10_kat.csv"
DTYPES = [np.float32, np.float64]
MASK32 = 0xFFFFFFFF

# Ulp bounds of the host build against kernels.reference (g++ 12, glibc 2.36, NumPy 2.4 with its
# AVX-512 float32 and float64 loops; the measured maxima are in the comments).
# Normals, float64: the reference's formula, max 3 over 2^24 random normals, 2 at the edge words.
# Normals, float32: float arithmetic, max 3 over 2^24 random normals, but 12 at the edge words
# (u just inside 1/2 or 1) because there the *reference* is 12 ulps from the exact value: its angle
# fl(2 pi u) next to pi or 2 pi has lost those bits. Against exact values (float64 with the angle
# reduced in integers) the float32 normals are within 3 ulps (1 at the edge words); over all 2^32
# words, -log(u) is within 1.58 ulps and sin / cos(2 pi u) within 1.29 ulps of exact
# (real-valued ulps, measured once by an exhaustive loop, too slow for CI).
NORMAL_ULPS = {np.float32: 12, np.float64: 3}
NORMAL_F32_EXACT_ULPS = 3
# z, grad_logvar, backward_kl's grad_logvar: eps's ulps plus sigma's (libm exp vs NumPy's) and the
# roundings. Over 2^20 elements, logvar in +-8 and +-80 (float32) / +-700 (float64), max
# float32: z 6, grad_logvar 6, backward_kl 6; float64: z 4, grad_logvar 6, backward_kl 4.
Z_ULPS = {np.float32: 8, np.float64: 6}
GRAD_LOGVAR_ULPS = {np.float32: 8, np.float64: 8}
# KL terms use expm1 (libm vs NumPy: 1 ulp); the sum then differs by its order, float64 throughout.
# Measured: float32 kl equal; float64 kl within 3.3e-16 of the sum of |terms|.
KL_TERM_ULPS = 2


def ulps(actual, expected, scale=None):
    """Elementwise |actual - expected| in ulps of expected's dtype at max(|expected|, scale)."""
    expected = np.asarray(expected)
    magnitude = np.abs(expected.astype(np.float64))
    if scale is not None:
        magnitude = np.maximum(magnitude, scale)
    spacing = np.spacing(magnitude.astype(expected.dtype)).astype(np.float64)
    return np.abs(np.asarray(actual, dtype=np.float64) - expected.astype(np.float64)) / spacing


def assert_ulps(what, actual, expected, bound, scale=None, inputs=None):
    """actual within `bound` ulps of expected; NaN and +-Inf exactly where expected has them."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, \
        f"{what}: got {actual.dtype}{actual.shape}, expected {expected.dtype}{expected.shape}"
    for test in (np.isnan, np.isposinf, np.isneginf):
        mismatch = np.flatnonzero(test(actual) != test(expected))
        assert mismatch.size == 0, (
            f"{what}: {test.__name__} differs at flat index {mismatch[0]}: got "
            f"{actual.ravel()[mismatch[0]]!r}, expected {expected.ravel()[mismatch[0]]!r}")
    finite = np.isfinite(expected)
    if scale is not None:
        scale = np.asarray(scale, dtype=np.float64)[finite]
    distance = ulps(actual[finite], expected[finite], scale)
    if distance.size and distance.max() > bound:
        worst = int(np.argmax(distance))
        index = np.flatnonzero(finite.ravel())[worst]
        context = "" if inputs is None else ", inputs " + ", ".join(
            f"{name}={np.asarray(value).ravel()[index]!r}" for name, value in inputs.items())
        raise AssertionError(
            f"{what}: {distance[worst]:.0f} ulps > {bound} at flat index {index}: got "
            f"{actual.ravel()[index]!r}, expected {expected.ravel()[index]!r}{context}")


@pytest.fixture(scope="module")
def host():
    """tests/cuda_c_host.py: the header built for the CPU (skips where no compiler exists)."""
    try:
        import cuda_c_host
    except ImportError as err:  # no compiler; a compile error is a RuntimeError and fails
        pytest.skip(str(err))
    return cuda_c_host


def random_inputs(shape, dtype, seed, logvar_range=8.0):
    """mu ~ N(0, 2^2), logvar ~ U(-r, r), grad_z ~ N(0, 1), from NumPy's generator."""
    rng = np.random.default_rng(seed)
    mu = (2.0 * rng.standard_normal(shape)).astype(dtype)
    logvar = rng.uniform(-logvar_range, logvar_range, shape).astype(dtype)
    grad_z = rng.standard_normal(shape).astype(dtype)
    return mu, logvar, grad_z


def edge_words():
    """uint32 words next to every eighth of a turn (where sin, cos or log(u) change regime)."""
    near = {(m * 2**29 + k) % 2**32 for m in range(9) for k in range(-3, 4)}
    return np.array(sorted(near), dtype=np.uint32)


def edge_blocks():
    """Philox-word rows pairing every edge word with every other in both Box-Muller pairs."""
    first, second = np.meshgrid(edge_words(), edge_words())
    first, second = first.ravel(), second.ravel()
    return np.stack([first, second, second, first], axis=1)


def exact_normals(words):
    """Box-Muller of (n, 4) words in float64 with the angle reduced in integers: within an ulp
    or so of the exact values, unlike the reference's fl(2 pi u) next to the zeros of sin / cos."""
    u = philox.uint32_to_uniform(words)
    radius = np.sqrt(-2.0 * np.log(u[:, 0::2]))
    x = words[:, 1::2].astype(np.int64)
    turns = (x + 2**29) >> 30  # the nearest quarter turn, 0..4
    a = np.pi * (2 * (x - turns * 2**30) + 1) * 2.0**-32  # |a| <= pi/4, relative error 2^-53
    quarter = turns % 4
    sin_a, cos_a = np.sin(a), np.cos(a)
    sine = np.choose(quarter, [sin_a, cos_a, -sin_a, -cos_a])
    cosine = np.choose(quarter, [cos_a, -sin_a, -cos_a, sin_a])
    normals = np.empty(words.shape)
    normals[:, 0::2], normals[:, 1::2] = radius * sine, radius * cosine
    return normals


def z_scale(mu, logvar, eps):
    """|mu| + |sigma eps|: the size of z's terms, in float64."""
    mu, logvar, eps = (np.asarray(a, dtype=np.float64) for a in (mu, logvar, eps))
    return np.abs(mu) + np.abs(np.exp(logvar / 2) * eps)


def kl_terms(mu, logvar):
    """The reference's KL terms (expm1(logvar) - logvar + mu^2) / 2 in the inputs' dtype."""
    return (np.expm1(logvar) - logvar + mu * mu) / 2


def assert_kl_close(what, kl, mu, logvar):
    """kl within KL_TERM_ULPS per term plus float64 reordering of the reference's sum."""
    expected = contract.forward_kl(reference, mu, logvar, 0, 0)[1]
    assert kl.shape == () and kl.dtype == expected.dtype, f"{what}: kl is {kl.dtype}{kl.shape}"
    if not np.isfinite(expected):
        assert np.array_equal(kl, expected, equal_nan=True), f"{what}: kl {kl}, expected {expected}"
        return
    magnitude = float(np.abs(kl_terms(mu, logvar).astype(np.float64)).sum())
    tolerance = (KL_TERM_ULPS * np.finfo(mu.dtype).eps + mu.size * 2.0**-52) * magnitude
    tolerance += float(np.spacing(np.abs(expected)))  # the final rounding to the dtype
    error = abs(float(kl) - float(expected))
    assert error <= tolerance, f"{what}: kl {kl!r}, expected {expected!r}, |error| {error:.3g} " \
                               f"> {tolerance:.3g}"


def check_against_reference(host, mu, logvar, grad_z, seed, offset, kl_weight=0.25):
    """Every pass of the host build, with and without saved noise, against the reference."""
    dtype = mu.dtype.type
    inputs = {"mu": mu, "logvar": logvar}
    z_ref, eps_ref = contract.forward(reference, mu, logvar, seed, offset, save_noise=True)
    z, eps = contract.forward(host, mu, logvar, seed, offset, save_noise=True)
    assert_ulps("eps", eps, eps_ref, NORMAL_ULPS[dtype])
    scale = z_scale(mu, logvar, eps_ref)
    assert_ulps("z", z, z_ref, Z_ULPS[dtype], scale, inputs)
    np.testing.assert_array_equal(contract.forward(host, mu, logvar, seed, offset), z)

    z_kl, kl, eps_kl = contract.forward_kl(host, mu, logvar, seed, offset, save_noise=True)
    np.testing.assert_array_equal(z_kl, z)
    np.testing.assert_array_equal(eps_kl, eps)
    assert_kl_close("forward_kl", kl, mu, logvar)

    # the backward regenerates the forward's eps bit for bit: equal to the saved-noise backward
    grad_mu, grad_logvar = contract.backward(host, grad_z, logvar, seed, offset)
    np.testing.assert_array_equal(grad_mu, grad_z)
    assert not np.shares_memory(grad_mu, grad_z)
    from_noise = contract.backward(host, grad_z, logvar, 0, 0, noise=eps)
    for got, saved in zip((grad_mu, grad_logvar), from_noise):
        np.testing.assert_array_equal(got, saved)
    expected = contract.backward(reference, grad_z, logvar, seed, offset)[1]
    assert_ulps("grad_logvar", grad_logvar, expected, GRAD_LOGVAR_ULPS[dtype], None, inputs)

    grads = contract.backward_kl(host, grad_z, mu, logvar, seed, offset, kl_weight)
    from_noise = contract.backward_kl(host, grad_z, mu, logvar, 0, 0, kl_weight, noise=eps)
    for got, saved in zip(grads, from_noise):
        np.testing.assert_array_equal(got, saved)
    expected_mu, expected_logvar = contract.backward_kl(reference, grad_z, mu, logvar, seed, offset,
                                                         kl_weight)
    np.testing.assert_array_equal(grads[0], expected_mu)  # no transcendental: the same roundings
    assert_ulps("backward_kl grad_logvar", grads[1], expected_logvar, GRAD_LOGVAR_ULPS[dtype],
                backward_kl_scale(grad_z, logvar, eps_ref, kl_weight), inputs)


def backward_kl_scale(grad_z, logvar, eps, kl_weight):
    """|grad_z sigma eps / 2| + |kl_weight expm1(logvar) / 2|: the size of grad_logvar's terms."""
    grad_z, logvar, eps = (np.asarray(a, dtype=np.float64) for a in (grad_z, logvar, eps))
    return np.abs(grad_z * np.exp(logvar / 2) * eps / 2) + np.abs(kl_weight * np.expm1(logvar) / 2)


# --- Philox: bit for bit --------------------------------------------------------------------------
def test_known_answers_bit_for_bit(host):
    with KAT_PATH.open() as f:
        rows = [[int(value, 16) for value in row] for row in list(csv.reader(f))[1:]]
    assert len(rows) == 55
    for row in rows:
        counter, key, expected = row[:4], row[4:6], row[6:]
        out = host.philox4x32(np.array([counter], dtype=np.uint32), np.array(key, dtype=np.uint32))
        assert out.tolist() == [expected], f"counter {counter} key {key}: got {out.tolist()}"


@pytest.mark.parametrize("grid", [(1, 1), (3, 64), (2, 256)])
def test_philox_matches_reference_on_random_and_extreme_counters(host, grid):
    rng = np.random.default_rng(7)
    counters = rng.integers(0, 2**32, size=(1000, 4), dtype=np.uint32)
    counters[:4] = [[0, 0, 0, 0], [MASK32] * 4, [MASK32, 0, 0, 0], [0, MASK32, MASK32, 0]]
    for key in ([0, 0], [MASK32, MASK32], [0x89ABCDEF, 0x01234567]):
        key = np.array(key, dtype=np.uint32)
        np.testing.assert_array_equal(host.philox4x32(counters, key, grid=grid),
                                      philox.philox4x32(counters, key))


def test_draw_words_cross_block_2_to_the_32(host):
    # blocks 2^32 - 1 and 2^32 (counter (0, 1, 0, 0): the carry into word 1), ragged at both ends
    offset, size = 4 * (2**32 - 1) + 2, 5
    z, eps = contract.forward(host, np.zeros(size), np.zeros(size), 0xDEADBEEF12345678, offset,
                              True)
    np.testing.assert_array_equal(z, eps)  # mu = 0, logvar = 0: z is eps
    assert_ulps("eps", eps, philox.normal(size, 0xDEADBEEF12345678, offset),
                NORMAL_ULPS[np.float64])
    words = philox.normal_words(size, 0xDEADBEEF12345678, offset)
    blocks = philox.block_counters(2**32 - 1, 2)
    assert blocks[1].tolist() == [0, 1, 0, 0]
    key = philox.seed_to_key(0xDEADBEEF12345678)
    np.testing.assert_array_equal(host.philox4x32(blocks, key).ravel()[2:7], words)


# --- uint32 -> uniform -> normal ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_box_muller_within_bound_of_reference(host, dtype):
    rng = np.random.default_rng(11)
    words = np.concatenate([edge_blocks(), rng.integers(0, 2**32, (1 << 18, 4), dtype=np.uint32)])
    expected = philox.box_muller(words).astype(dtype)
    assert_ulps("normals", host.box_muller(words, dtype), expected, NORMAL_ULPS[dtype],
                inputs={"word": np.repeat(words[:, 0::2], 2, axis=1)})


def test_float32_box_muller_within_an_ulp_or_two_of_exact(host):
    rng = np.random.default_rng(12)
    words = np.concatenate([edge_blocks(), rng.integers(0, 2**32, (1 << 18, 4), dtype=np.uint32)])
    assert_ulps("float32 normals", host.box_muller(words, np.float32),
                exact_normals(words).astype(np.float32), NORMAL_F32_EXACT_ULPS)


def test_float32_normals_stay_nonzero_at_the_ends_of_the_unit_interval(host):
    # u next to 1 must not round to a zero radius, nor sin 2 pi u next to 1/2 to zero
    words = np.array([[MASK32, 2**31 - 1, MASK32 - 1, 2**31]], dtype=np.uint32)
    normals = host.box_muller(words, np.float32)
    assert np.all(normals != 0) and np.all(np.isfinite(normals)), normals


# --- the grid-stride loop -------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(1, 1), (1, 32), (3, 64), (7, 256), (1000, 256)])
@pytest.mark.parametrize("steps", [0, 1, 5, 193, 1000, 4097])
def test_every_step_is_visited_exactly_once(host, steps, grid):
    counts = host.grid_visits(steps, grid)
    np.testing.assert_array_equal(counts, np.ones(steps, dtype=np.uint32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_the_launch(host, dtype):
    mu, logvar, grad_z = random_inputs((1001,), dtype, seed=3)  # 252 Philox blocks at offset 6
    args = (mu, logvar, 99, 6)
    z0, eps0 = host.forward_launch(*args, save_noise=True, grid=(1, 1))
    kl0 = host.forward_kl_launch(*args, grid=(1, 1))[1]
    grads0 = host.backward_kl_launch(grad_z, mu, logvar, 99, 6, 0.5, grid=(1, 1))
    # fewer threads than steps (each loops), about one step each, and many idle threads
    for grid in [(1, 32), (2, 64), (4, 64), (1000, 256)]:
        z, eps = host.forward_launch(*args, save_noise=True, grid=grid)
        np.testing.assert_array_equal(z, z0)
        np.testing.assert_array_equal(eps, eps0)
        # kl: the same float64 terms summed in another order
        kl = host.forward_kl_launch(*args, grid=grid)[1]
        assert_kl_close(f"kl at grid {grid}", kl, mu, logvar)
        assert abs(float(kl) - float(kl0)) <= 4 * np.spacing(np.abs(kl0)), (grid, kl, kl0)
        for got, want in zip(host.backward_kl_launch(grad_z, mu, logvar, 99, 6, 0.5, grid=grid),
                             grads0):
            np.testing.assert_array_equal(got, want)


# --- edge cases against the reference -------------------------------------------------------------
EDGE_CASES = {
    "empty": ((0,), 0),
    "empty-2d": ((2, 0, 3), 5),
    "scalar": ((), 0),
    "one": ((1,), 3),
    "seven": ((7,), 0),          # a ragged last block
    "ragged-both": ((2, 3), 1),  # a ragged first block (offset % 4 = 1) and a ragged last one
    "offset-2": ((9,), 2),
    "offset-3": ((4,), 3),
    "carry-into-word-1": ((3, 5), 4 * (2**32 - 2) + 3),
    "last-blocks": ((11,), 2**66 - 11),  # the last element is normal 2^66 - 1: block 2^64 - 1
    "batch": ((64, 20), 123456789),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EDGE_CASES)
def test_every_pass_matches_the_reference(host, case, dtype):
    shape, offset = EDGE_CASES[case]
    mu, logvar, grad_z = random_inputs(shape, dtype, seed=len(case))
    for seed in (0, 2**64 - 1, 0x0123456789ABCDEF):
        check_against_reference(host, mu, logvar, grad_z, seed, offset)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_bounds_over_the_range_of_exp(host, dtype):
    # logvar up to +-80 (float32) / +-700 (float64): sigma and expm1 over most of their range
    mu, logvar, grad_z = random_inputs((1 << 17,), dtype, seed=5,
                                       logvar_range=80.0 if dtype == np.float32 else 700.0)
    check_against_reference(host, mu, logvar, grad_z, 2024, 77)
    mu, logvar, grad_z = random_inputs((1 << 17,), dtype, seed=6)
    check_against_reference(host, mu, logvar, grad_z, 31337, 2**40 + 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_as_in_the_reference(host, dtype):
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 200.0, -200.0]
    values = np.array(special, dtype=dtype)
    mu, logvar = (a.ravel() for a in np.meshgrid(values, values))  # every pair
    grad_z = np.resize(np.array(special[::-1], dtype=dtype), mu.shape)
    with np.errstate(all="ignore"):  # the reference's NumPy warns on overflow and inf - inf
        z_ref, eps_ref = contract.forward(reference, mu, logvar, 5, 1, save_noise=True)
        z, kl = contract.forward_kl(host, mu, logvar, 5, 1)
        assert_ulps("z", z, z_ref, Z_ULPS[dtype], z_scale(mu, logvar, eps_ref))
        assert_kl_close("kl", kl, mu, logvar)
        grad_mu, grad_logvar = contract.backward_kl(host, grad_z, mu, logvar, 5, 1, 0.5)
        want_mu, want_logvar = contract.backward_kl(reference, grad_z, mu, logvar, 5, 1, 0.5)
        np.testing.assert_array_equal(grad_mu, want_mu)  # equal_nan: NaN where the reference's
        assert_ulps("backward_kl grad_logvar", grad_logvar, want_logvar, GRAD_LOGVAR_ULPS[dtype],
                    backward_kl_scale(grad_z, logvar, eps_ref, 0.5))
        grad_mu, grad_logvar = contract.backward(host, grad_z, logvar, 5, 1)
        np.testing.assert_array_equal(grad_mu, grad_z)
        assert_ulps("backward grad_logvar", grad_logvar,
                    contract.backward(reference, grad_z, logvar, 5, 1)[1], GRAD_LOGVAR_ULPS[dtype])


def test_non_contiguous_inputs_are_read_in_c_order(host):
    mu, logvar, _ = random_inputs((6, 8), np.float64, seed=9)
    z = contract.forward(host, mu.T, logvar.T, 1, 2)  # Fortran-ordered views
    np.testing.assert_array_equal(z, contract.forward(host, mu.T.copy(), logvar.T.copy(), 1, 2))


def test_mismatched_inputs_raise_before_the_library_runs(host):
    with pytest.raises(ValueError, match="shape"):
        contract.forward(host, np.zeros(3), np.zeros(4), 0, 0)
    with pytest.raises(TypeError, match="float32"):
        contract.backward(host, np.zeros(3), np.zeros(3, dtype=np.float32), 0, 0)
    with pytest.raises(ValueError, match="2\\*\\*66"):
        contract.forward(host, np.zeros(3), np.zeros(3), 0, 2**66 - 2)


# --- Adam: kernels/cuda_c/adam_math.cuh is kernels.numba.adam, bit for bit --------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay, flush", [(0.0, True), (0.01, False)])
def test_adam_math_gives_the_numba_loops_bits(host, dtype, weight_decay, flush):
    from kernels.numba.adam import adam_update
    rng = np.random.default_rng(22)
    tiny = np.finfo(dtype).tiny
    param, grad = (rng.standard_normal(4099).astype(dtype) for _ in range(2))
    exp_avg = (rng.standard_normal(4099) * 1e-3).astype(dtype)
    exp_avg_sq = np.abs(rng.standard_normal(4099) * 1e-6).astype(dtype)
    grad[:64] *= tiny  # subnormal gradients, moments about to underflow, NaN and Inf
    exp_avg[64:128] *= tiny
    grad[200:203] = [np.nan, np.inf, -np.inf]
    t = 7
    scalars = [dtype(s) for s in (1 - 0.9, 0.999, 1 - 0.999, 1e-3 / (1 - 0.9**t),
                                  (1 - 0.999**t) ** 0.5, 1e-8, weight_decay,
                                  tiny if flush else 0.0)]
    cpu = [a.copy() for a in (param, grad, exp_avg, exp_avg_sq)]
    adam_update(*cpu, *scalars)
    cuda_c = [a.copy() for a in (param, grad, exp_avg, exp_avg_sq)]
    host.adam_update(*cuda_c, *scalars)
    for name, got, want in zip(("param", "grad", "exp_avg", "exp_avg_sq"), cuda_c, cpu):
        assert got.tobytes() == want.tobytes(), f"{name}: first difference at " \
            f"{np.flatnonzero(got.view(np.uint8) != want.view(np.uint8))[0] // got.itemsize}"


# --- on a GPU: the cupy backend against the host build --------------------------------------------
# NOTE: the device's CUDA logf / log1pf / sincospif / sincospi / exp are each documented within 1-2
# ulps, where the host build's stand-ins are within half an ulp; a GPU run prints the measured
# distances so the slack below can be replaced by them.
DEVICE_SLACK_ULPS = 2


@pytest.fixture(scope="module")
def gpu():
    """kernels.cuda_c.cupy_reparam, or a skip naming why it is unavailable (no CuPy, no GPU)."""
    try:
        import kernels.cuda_c.cupy_reparam as cupy_raw
    except ImportError as err:
        pytest.skip(str(err))
    return cupy_raw


def test_gpu_philox_words_bit_for_bit(gpu):
    import cupy
    rng = np.random.default_rng(21)
    counters = rng.integers(0, 2**32, size=(100_003, 4), dtype=np.uint32)
    key = np.array([0x89ABCDEF, 0x01234567], dtype=np.uint32)
    np.testing.assert_array_equal(cupy.asnumpy(gpu.philox4x32(cupy.asarray(counters), key)),
                                  philox.philox4x32(counters, key))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["one", "ragged-both", "carry-into-word-1", "last-blocks",
                                  "batch"])
def test_gpu_passes_match_the_host_build(host, gpu, case, dtype):
    import cupy
    shape, offset = EDGE_CASES[case]
    mu, logvar, grad_z = random_inputs(shape, dtype, seed=4)
    d_mu, d_logvar, d_grad = (cupy.asarray(a) for a in (mu, logvar, grad_z))
    seed = 0x0123456789ABCDEF
    z, eps = (cupy.asnumpy(a) for a in gpu.forward(d_mu, d_logvar, seed, offset, save_noise=True))
    host_z, host_eps = contract.forward(host, mu, logvar, seed, offset, save_noise=True)
    print(f"{case} {np.dtype(dtype)}: eps {ulps(eps, host_eps).max(initial=0):.0f} ulps, "
          f"z {ulps(z, host_z, z_scale(mu, logvar, host_eps)).max(initial=0):.0f} ulps "
          "from the host build")
    assert_ulps("gpu eps", eps, host_eps, NORMAL_ULPS[dtype] + DEVICE_SLACK_ULPS)
    check = contract.forward(reference, mu, logvar, seed, offset)
    assert_ulps("gpu z", z, check, Z_ULPS[dtype] + DEVICE_SLACK_ULPS, z_scale(mu, logvar, host_eps))
    z_kl, kl = gpu.forward_kl(d_mu, d_logvar, seed, offset)
    np.testing.assert_array_equal(cupy.asnumpy(z_kl), z)
    assert_kl_close("gpu kl", cupy.asnumpy(kl), mu, logvar)
    regenerated = [cupy.asnumpy(a) for a in gpu.backward_kl(d_grad, d_mu, d_logvar, seed, offset,
                                                             0.5)]
    saved = [cupy.asnumpy(a) for a in gpu.backward_kl(d_grad, d_mu, d_logvar, 0, 0, 0.5,
                                                       noise=cupy.asarray(eps))]
    for got, want in zip(regenerated, saved):  # the backward regenerates the forward's eps exactly
        np.testing.assert_array_equal(got, want)
    want_mu, want_logvar = contract.backward_kl(reference, grad_z, mu, logvar, seed, offset, 0.5)
    np.testing.assert_array_equal(regenerated[0], want_mu)
    assert_ulps("gpu backward_kl grad_logvar", regenerated[1], want_logvar,
                GRAD_LOGVAR_ULPS[dtype] + DEVICE_SLACK_ULPS,
                backward_kl_scale(grad_z, logvar, host_eps, 0.5))


def test_gpu_backend_refuses_numpy_arrays(gpu):
    with pytest.raises(TypeError, match="NumPy array in host memory"):
        gpu.forward(np.zeros(3), np.zeros(3), 0, 0)
