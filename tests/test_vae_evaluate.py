"""vae.evaluate against NumPy written out by hand on a tiny float64 model: the one-sample ELBO
with the stream's eps, the importance weights, the IWAE bound (K = 1 is the ELBO, larger K is
tighter, chunking changes nothing, no underflow at log w ~ -1e4), active units, conventions."""
import math

import numpy as np
import pytest

from minigrad.random import Stream, normal
from vae import evaluate as ev
from vae_fixtures import tiny_vae

SEED = 5


def sigmoid_log_probs(logits):
    """(log s(l), log(1 - s(l))), written independently of minigrad's BCE."""
    return -np.logaddexp(0, -logits), -np.logaddexp(0, logits)


def numpy_forward(model, x):
    """mu, logvar and a decoder, all in NumPy from the model's parameters."""
    p = model.state_dict()
    hidden = np.maximum(x @ p["encoder_hidden.weight"] + p["encoder_hidden.bias"], 0)
    heads = hidden @ p["encoder_heads.weight"] + p["encoder_heads.bias"]
    latent = model.latent_dim

    def decode(z):
        h = np.maximum(z @ p["decoder_hidden.weight"] + p["decoder_hidden.bias"], 0)
        return h @ p["decoder_out.weight"] + p["decoder_out.bias"]
    return heads[:, :latent], heads[:, latent:], decode


def numpy_log_px_given_z(logits, x):
    log_s, log_one_minus_s = sigmoid_log_probs(logits)
    return (x * log_s + (1 - x) * log_one_minus_s).sum(axis=-1)


def numpy_neg_elbo(model, x, eps):
    """Per example: -log p(x | z) + KL(q || N(0, I)) with z = mu + e^{logvar/2} eps."""
    mu, logvar, decode = numpy_forward(model, x)
    z = mu + np.exp(logvar / 2) * eps
    reconstruction = -numpy_log_px_given_z(decode(z), x)
    kl = 0.5 * (np.exp(logvar) - 1 - logvar + mu ** 2).sum(axis=1)
    return reconstruction, kl


def images(count, dim=4, seed=0):
    return np.random.default_rng(seed).random((count, dim))


@pytest.fixture
def model():
    return tiny_vae()


# --- one-sample ELBO --------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1000, 3])
def test_evaluate_matches_numpy_elbo_with_the_streams_eps(model, batch_size):
    x = images(7)
    eps = normal(7 * 2, SEED, 0).reshape(7, 2)       # C order: batches take consecutive normals
    reconstruction, kl = numpy_neg_elbo(model, x, eps)
    result = ev.evaluate(model, x, SEED, batch_size=batch_size)
    assert result["reconstruction"] == pytest.approx(reconstruction.mean(), rel=1e-12)
    assert result["kl"] == pytest.approx(kl.mean(), rel=1e-12)
    assert result["neg_elbo"] == pytest.approx((reconstruction + kl).mean(), rel=1e-12)
    assert ev.evaluate(model, x, SEED, batch_size=batch_size) == result   # seeded: repeatable


def test_model_loss_weights_the_kl_by_beta(model):
    x = images(5)
    eps = normal(5 * 2, SEED, 0).reshape(5, 2)
    reconstruction, kl = numpy_neg_elbo(model, x, eps)
    loss = model.loss(x, Stream(SEED), beta=0.25)
    assert float(loss.total.data) == pytest.approx((reconstruction + 0.25 * kl).mean(), rel=1e-12)


def test_evaluate_reports_active_units_of_the_posterior_means(model):
    x = images(50)
    mu, _, _ = numpy_forward(model, x)
    assert ev.evaluate(model, x, SEED)["active_units"] == ev.active_units(mu)


# --- importance weights and the IWAE bound ----------------------------------------------------
def test_log_importance_weights_match_numpy(model):
    x = images(3)
    eps = np.random.default_rng(1).standard_normal((5, 3, 2))                  # (K, B, L)
    mu, logvar, decode = numpy_forward(model, x)
    z = mu + np.exp(logvar / 2) * eps
    log_p_x_z = numpy_log_px_given_z(decode(z), x)
    log_p_z = (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(axis=-1)
    log_q_z = (-0.5 * (math.log(2 * math.pi) + logvar + eps ** 2)).sum(axis=-1)  # (z-mu)/sigma = eps
    log_w = ev.log_importance_weights(model, x, eps)
    assert log_w.shape == (5, 3) and log_w.dtype == np.float64
    np.testing.assert_allclose(log_w, log_p_x_z + log_p_z - log_q_z, rtol=1e-12)


def test_one_sample_bound_is_minus_the_mean_log_weight(model):
    x = images(6)
    eps = Stream(SEED).normal((1, 6, 2))
    expected = -ev.log_importance_weights(model, x, eps).mean()
    assert ev.importance_weighted_bound(model, x, 1, SEED) == pytest.approx(expected, rel=1e-12)


def test_one_sample_bound_estimates_the_elbo(model):
    x = np.repeat(images(4), 1000, axis=0)                       # many draws per example
    log_w = ev.log_importance_weights(model, x, Stream(SEED).normal((1, len(x), 2)))[0]
    bound = ev.importance_weighted_bound(model, x, 1, SEED)
    # the same z per example: the two differ only by log q - log p against the closed-form KL
    elbo = ev.evaluate(model, x, SEED)["neg_elbo"]
    standard_error = log_w.std() / math.sqrt(len(x))
    assert bound != elbo
    assert abs(bound - elbo) < 5 * standard_error


def test_more_samples_give_a_tighter_bound(model):
    x = np.repeat(images(4), 100, axis=0)
    bounds = [ev.importance_weighted_bound(model, x, k, SEED) for k in (1, 5, 50)]
    assert bounds[0] > bounds[1] > bounds[2]


def test_chunking_does_not_change_the_bound(model):
    x = images(13)
    one_chunk = ev.importance_weighted_bound(model, x, 10, SEED, batch_size=5, chunk=100)
    chunked = ev.importance_weighted_bound(model, x, 10, SEED, batch_size=5, chunk=3)
    assert chunked == pytest.approx(one_chunk, rel=1e-13)


def test_running_logsumexp_survives_log_weights_near_minus_1e4(model):
    model.decoder_out.bias.data[...] = -2500.0       # log p(x = 1 | z) about -2500 per pixel
    x = np.ones((3, 4))
    samples, chunk = 10, 3
    eps = Stream(SEED).normal((samples, 3, 2))
    log_w = ev.log_importance_weights(model, x, eps)                           # (K, B)
    assert np.all(log_w < -9000)
    assert np.all(np.exp(log_w) == 0)                # the naive mean of w underflows
    peak = log_w.max(axis=0)
    expected = -(peak + np.log(np.exp(log_w - peak).mean(axis=0))).mean()
    bound = ev.importance_weighted_bound(model, x, samples, SEED, chunk=chunk)
    assert math.isfinite(bound)
    assert bound == pytest.approx(expected, rel=1e-12)


# --- active units and conventions -------------------------------------------------------------
def test_active_units_counts_dims_with_variance_above_the_threshold():
    signs = np.tile([1.0, -1.0], 50)                                           # (100,)
    means = np.stack([0.2 * signs,          # variance 0.04: active
                      0.05 * signs,         # 0.0025: inactive
                      np.full(100, 3.0),    # 0: inactive, however far from 0
                      2.0 * signs], axis=1)  # 4: active
    assert ev.active_units(means) == 2
    assert ev.active_units(means.astype(np.float32)) == 2
    assert ev.active_units(means, threshold=0.001) == 3
    assert ev.ACTIVE_UNIT_THRESHOLD == 0.01


def test_conventions_say_what_a_figure_measures():
    assert ev.convention("none") == "continuous-pixel BCE; one-sample ELBO"
    assert ev.convention("dynamic") == "dynamically binarized Bernoulli; one-sample ELBO"
    assert ev.convention("none", 5000) == "continuous-pixel BCE; importance-weighted bound, K=5000"
    assert len({ev.convention(b, k) for b in ("none", "dynamic") for k in (None, 1, 5)}) == 6
