"""Location-scale families beside the Gaussian: kernels.families against scipy.stats (quantiles,
moments, KS, log-densities), the node minigrad.reparameterize_family against finite differences,
the backward's regenerated noise, the stream layout, edge uniforms and the error for a bad family."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import minigrad as mg
from kernels import contract, families, reference
from kernels.philox import normal_words, uint32_to_uniform
from minigrad.gradcheck import gradcheck
from minigrad.ops.families import log_prob, noise
from minigrad.random import Stream

SCIPY = {"gaussian": stats.norm, "laplace": stats.laplace, "logistic": stats.logistic,
         "gumbel": stats.gumbel_r}
QUANTILE_FAMILIES = ("laplace", "logistic", "gumbel")
EXCESS_KURTOSIS = {"gaussian": 0.0, "laplace": 3.0, "logistic": 1.2, "gumbel": 2.4}
DRAWS = 10**6


def test_families_are_the_four_known_ones():
    assert families.FAMILIES == ("gaussian", "laplace", "logistic", "gumbel")


# --- forward against scipy ----------------------------------------------------------------------
@pytest.mark.parametrize("family", QUANTILE_FAMILIES)
@pytest.mark.parametrize("seed, offset", [(0, 0), (2**40 + 3, 7), (99, 2**34 - 6)])
def test_noise_is_scipy_ppf_of_the_streams_uniforms(family, seed, offset):
    u = uint32_to_uniform(normal_words(4096, seed, offset))
    expected = SCIPY[family].ppf(u)
    got = families.noise((4096,), np.float64, family, seed, offset)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_gaussian_noise_is_the_gaussian_nodes_noise():
    eps = families.noise((3, 5), np.float64, "gaussian", 11, 3)
    assert np.array_equal(eps, reference.noise((3, 5), np.float64, 11, 3))


@pytest.mark.parametrize("family", families.FAMILIES)
def test_forward_is_loc_plus_scale_times_noise(family):
    rng = np.random.default_rng(0)
    loc, log_scale = rng.standard_normal((2, 3, 4))
    z = families.forward(loc, log_scale, family, 5, 9)
    eps = families.noise((3, 4), np.float64, family, 5, 9)
    assert np.array_equal(z, loc + np.exp(log_scale) * eps)


def test_gaussian_family_matches_the_gaussian_kernel_with_logvar_twice_log_scale():
    rng = np.random.default_rng(1)
    loc, log_scale = rng.standard_normal((2, 4, 3))
    z = families.forward(loc, log_scale, "gaussian", 3, 1)
    assert np.array_equal(z, contract.forward(reference, loc, 2 * log_scale, 3, 1))


@pytest.mark.parametrize("family", families.FAMILIES)
def test_float32_noise_is_float64_noise_rounded_once(family):
    eps32 = families.noise((257,), np.float32, family, 4, 1)
    eps64 = families.noise((257,), np.float64, family, 4, 1)
    assert eps32.dtype == np.float32 and np.array_equal(eps32, eps64.astype(np.float32))
    z = families.forward(np.zeros(257, np.float32), np.zeros(257, np.float32), family, 4, 1)
    assert z.dtype == np.float32 and np.array_equal(z, eps32)


# --- sample statistics ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", families.FAMILIES)
def test_sample_mean_and_variance_match_the_closed_form(family):
    x = families.noise((DRAWS,), np.float64, family, 2024, 5)
    mean, variance = families.mean_variance(family)
    assert (mean, variance) == pytest.approx((SCIPY[family].mean(), SCIPY[family].var()))
    # standard errors: sigma / sqrt(n) for the mean, sigma^2 sqrt((kurtosis_excess + 2) / n)
    # for the variance; 5 of them is a one-in-a-million miss under the normal approximation
    mean_se = math.sqrt(variance / DRAWS)
    variance_se = variance * math.sqrt((EXCESS_KURTOSIS[family] + 2) / DRAWS)
    assert abs(x.mean() - mean) < 5 * mean_se
    assert abs(x.var() - variance) < 5 * variance_se


@pytest.mark.parametrize("family", families.FAMILIES)
def test_kolmogorov_smirnov_statistic_is_small(family):
    x = families.noise((DRAWS,), np.float64, family, 77, 1)
    result = stats.kstest(x, SCIPY[family].cdf)
    # 1.95 / sqrt(n) is the 0.1% critical value of the KS statistic
    assert result.statistic < 1.95 / math.sqrt(DRAWS), result


# --- log-densities --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", families.FAMILIES)
def test_kernel_log_density_matches_scipy_logpdf(family):
    x = np.linspace(-30, 30, 601)
    if family == "gumbel":
        x = np.linspace(-3, 30, 601)  # e^-x overflows far left; the stream never goes below -3.2
    np.testing.assert_allclose(families.log_density(x, family), SCIPY[family].logpdf(x),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_log_prob_matches_scipy_logpdf_with_loc_and_scale(family):
    rng = np.random.default_rng(3)
    z, loc = rng.standard_normal((2, 4, 5)) * 3
    log_scale = rng.uniform(-2, 2, (4, 5))
    got = log_prob(z, loc, log_scale, family).numpy()
    expected = SCIPY[family].logpdf(z, loc=loc, scale=np.exp(log_scale))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_log_prob_broadcasts_scalars_in_the_dtype_of_z():
    z = np.linspace(-2, 2, 6, dtype=np.float32)
    got = log_prob(z, 0.0, 0.0, "gaussian")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.numpy(), stats.norm.logpdf(z), rtol=1e-6)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_log_prob_gradients_match_finite_differences(family):
    rng = np.random.default_rng(4)
    z, loc = rng.standard_normal((2, 2, 3))
    z = loc + np.where(np.abs(z - loc) < 0.1, 0.5, z - loc)  # away from the Laplace kink
    report = gradcheck(lambda z, loc, s: log_prob(z, loc, s, family),
                       [z, loc, rng.uniform(-1, 1, (2, 3))])
    assert report.ok, report.failure_message()


# --- the node -------------------------------------------------------------------------------------
SHAPES = [  # (label, shape, seed, offset): no offset is a multiple of 4
    ("scalar", (), 0, 1),
    ("vector", (5,), 2**40 + 1, 7),
    ("matrix", (2, 3), 1234, 3),
    ("across block 2^32", (3, 4), 99, 2**34 - 6),
]


@pytest.mark.parametrize("family", families.FAMILIES)
@pytest.mark.parametrize("label, shape, seed, offset", SHAPES, ids=[s[0] for s in SHAPES])
def test_node_gradients_match_finite_differences(family, label, shape, seed, offset):
    rng = np.random.default_rng(5)
    loc, log_scale = rng.standard_normal((2, *shape))
    report = gradcheck(lambda m, s: mg.reparameterize_family(m, s, family, seed=seed,
                                                             offset=offset),
                       [loc, log_scale])
    assert report.ok, report.failure_message()


@pytest.mark.parametrize("family", QUANTILE_FAMILIES)
def test_node_gradients_with_a_constant_loc(family):
    rng = np.random.default_rng(6)
    loc = mg.Tensor(rng.standard_normal((2, 3)))
    report = gradcheck(lambda s: mg.reparameterize_family(loc, s, family, seed=8, offset=2),
                       [rng.standard_normal((2, 3))])
    assert report.ok, report.failure_message()


@pytest.mark.parametrize("family", families.FAMILIES)
def test_node_vjp_is_g_and_g_times_scale_times_noise(family):
    rng = np.random.default_rng(7)
    loc = mg.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    log_scale = mg.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    g = rng.standard_normal((3, 4))
    z = mg.reparameterize_family(loc, log_scale, family, seed=6, offset=10)
    (z * g).sum().backward()
    eps = families.noise((3, 4), np.float64, family, 6, 10)
    assert np.array_equal(loc.grad, g)
    assert np.array_equal(log_scale.grad, g * np.exp(log_scale.data) * eps)


@settings(max_examples=40, deadline=None)
@given(family=st.sampled_from(families.FAMILIES), seed=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**40), size=st.integers(1, 13),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_backward_regenerates_exactly_the_forwards_noise(family, seed, offset, size, dtype):
    log_scale = np.linspace(-2, 2, size).astype(dtype)
    z = families.forward(np.zeros(size, dtype), log_scale, family, seed, offset)  # b * eps exactly
    grad_loc, grad_log_scale = families.backward(np.ones(size, dtype), log_scale, family, seed,
                                                 offset)
    assert np.array_equal(grad_log_scale, z) and grad_log_scale.dtype == dtype
    assert np.array_equal(grad_loc, np.ones(size, dtype))


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(families.FAMILIES), offset=st.integers(0, 2**20),
       size=st.integers(1, 40), data=st.data())
def test_a_draw_does_not_depend_on_how_it_is_split(family, offset, size, data):
    cut = data.draw(st.integers(0, size))
    whole = families.noise((size,), np.float64, family, 31, offset)
    parts = [families.noise((cut,), np.float64, family, 31, offset),
             families.noise((size - cut,), np.float64, family, 31, offset + cut)]
    assert np.array_equal(whole, np.concatenate(parts))


def test_stream_hands_out_the_same_draws_and_advances():
    loc, log_scale = np.zeros((2, 3)), np.zeros((2, 3))
    stream = Stream(12, offset=5)
    first = mg.reparameterize_family(loc, log_scale, "laplace", stream=stream)
    second = mg.reparameterize_family(loc, log_scale, "laplace", stream=stream)
    assert stream.offset == 17
    assert np.array_equal(first.data, families.forward(loc, log_scale, "laplace", 12, 5))
    assert np.array_equal(second.data, families.forward(loc, log_scale, "laplace", 12, 11))
    assert np.array_equal(noise((2, 3), "laplace", seed=12, offset=11), second.data)


def test_gaussian_node_matches_reparameterize_with_logvar_twice_log_scale():
    rng = np.random.default_rng(8)
    loc, log_scale = rng.standard_normal((2, 4, 5))
    z = mg.reparameterize_family(loc, log_scale, "gaussian", seed=2, offset=3)
    np.testing.assert_allclose(z.data, mg.reparameterize(loc, 2 * log_scale, seed=2,
                                                         offset=3).data, rtol=1e-14, atol=1e-15)


# --- edges and errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", QUANTILE_FAMILIES)
def test_edge_uniforms_give_finite_noise_and_log_density(family):
    u = uint32_to_uniform(np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1],
                                   dtype=np.uint32))
    eps = families.quantile(u, family)
    assert np.all(np.isfinite(eps)) and np.all(np.diff(eps) > 0)  # finite and increasing in u
    np.testing.assert_allclose(eps, SCIPY[family].ppf(u), rtol=1e-12)
    assert np.all(np.isfinite(families.log_density(eps, family)))


def test_laplace_and_logistic_are_antisymmetric_at_the_extreme_words():
    u = uint32_to_uniform(np.array([0, 2**32 - 1], dtype=np.uint32))
    # u = 2^-33 and 1 - 2^-33: Laplace -ln(2 u) = 32 ln 2; logistic ln(1 - u) - ln u, whose
    # ln(1 - u) = -2^-33 to first order
    expected = {"laplace": 32 * math.log(2), "logistic": 33 * math.log(2) - 2.0**-33}
    for family, value in expected.items():
        low, high = families.quantile(u, family)
        assert low == -high and high == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("call", [
    lambda: mg.reparameterize_family(np.zeros(3), np.zeros(3), "student_t", seed=0, offset=0),
    lambda: log_prob(np.zeros(3), 0.0, 0.0, "cauchy"),
    lambda: families.noise((3,), np.float64, "Gaussian", 0, 0),
    lambda: families.forward(np.zeros(3), np.zeros(3), "normal", 0, 0),
])
def test_unknown_family_is_refused_with_the_known_ones_listed(call):
    with pytest.raises(ValueError, match="known families are gaussian, laplace, logistic, gumbel"):
        call()


def test_a_refused_call_does_not_advance_the_stream():
    stream = Stream(1)
    with pytest.raises(ValueError, match="unknown family"):
        mg.reparameterize_family(np.zeros(3), np.zeros(3), "t", stream=stream)
    with pytest.raises(ValueError, match="loc has shape"):
        mg.reparameterize_family(np.zeros(3), np.zeros(4), "gumbel", stream=stream)
    assert stream.offset == 0


@pytest.mark.parametrize("shape, dtype, error, message", [
    ((2, 3), "float16", TypeError, "noise: dtype is float16"),
    ((2, -3, -1), "float64", ValueError, r"noise: shape\[1\] is -3"),
    ((2, 1.5), "float64", TypeError, r"noise: shape\[1\] is float"),
    ((2, 3), "float64", ValueError, r"Stream.take: offset .* is past 2\*\*66"),
], ids=["dtype", "negative sides", "float side", "past the end"])
def test_a_refused_noise_does_not_advance_the_stream(shape, dtype, error, message):
    stream = Stream(1, offset=2**66 - 5)
    with pytest.raises(error, match=message):
        noise(shape, "logistic", stream=stream, dtype=dtype)
    assert stream.offset == 2**66 - 5
    with pytest.raises(ValueError, match=r"Stream.take: offset .* \+ size 6 is past 2\*\*66"):
        mg.reparameterize_family(np.zeros(6), np.zeros(6), "gumbel", stream=stream)
    assert stream.offset == 2**66 - 5
    assert noise(5, "gumbel", stream=stream).shape == (5,)  # up to the end is fine
    assert stream.offset == 2**66


def test_quantile_of_the_gaussian_points_to_noise():
    with pytest.raises(ValueError, match="Box-Muller"):
        families.quantile(np.array([0.5]), "gaussian")


def test_node_needs_a_position():
    with pytest.raises(ValueError, match="needs seed= and offset="):
        mg.reparameterize_family(np.zeros(3), np.zeros(3), "laplace")
