"""Evaluation: the one-sample ELBO with its two parts, active units, and the importance-weighted
bound (IWAE, Burda et al. 2016) as an estimate of -log p(x).

Every figure carries its ``convention``: pixels as continuous BCE targets or dynamically
binarized Bernoulli data, one-sample ELBO or importance-weighted with K samples, and for a
non-Gaussian posterior its family (its ELBO's KL is a one-sample Monte-Carlo estimate).  Figures of
different conventions are not comparable.
"""
import math

import numpy as np

import minigrad as mg
from minigrad.ops import families
from minigrad.random import Stream

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: Cov_x(E_q[z_d]) above this marks unit d active


def convention(binarize, samples=None, posterior="gaussian"):
    """A short, printable statement of what a likelihood figure measures."""
    pixels = ("dynamically binarized Bernoulli" if binarize == "dynamic"
              else "continuous-pixel BCE")
    bound = "one-sample ELBO" if samples is None else f"importance-weighted bound, K={samples}"
    if posterior == "gaussian":  # closed-form KL: the figures this project has always reported
        return f"{pixels}; {bound}"
    if samples is None:
        bound += ", KL by one-sample Monte Carlo"
    return f"{pixels}; {bound}; {posterior} posterior"


def _batches(count, batch_size):
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def evaluate(model, images, seed, batch_size=1000):
    """Test -ELBO (and reconstruction, KL) averaged per example, plus the active units.

    One sample of z per example from the stream keyed by ``seed``, so repeated evaluations
    of the same model give the same figures.
    """
    stream = Stream(seed)
    totals = {"reconstruction": 0.0, "kl": 0.0}
    means = []
    with mg.no_grad():
        for rows in _batches(len(images), batch_size):
            x = images[rows]
            loss = model.loss(x, stream)
            totals["reconstruction"] += float(loss.reconstruction.data) * len(x)
            totals["kl"] += float(loss.kl.data) * len(x)
            means.append(model.posterior_mean(x).numpy())
    reconstruction = totals["reconstruction"] / len(images)
    kl = totals["kl"] / len(images)
    return {"neg_elbo": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
            "active_units": active_units(np.concatenate(means))}


def active_units(posterior_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Number of latent dimensions whose posterior mean varies over the data by more than
    ``threshold`` (variance over examples of E_q[z_d | x])."""
    return int((np.var(posterior_means.astype(np.float64), axis=0) > threshold).sum())


def log_importance_weights(model, x, eps):
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x) with z_k = loc + scale eps_k.

    ``x`` is (B, D), ``eps`` (K, B, L) standard draws of the model's posterior family
    (``posterior_noise``); returns (K, B) in float64.  For the gaussian posterior the second head
    is logvar (scale e^{logvar / 2}), for the others log_scale (scale e^{log_scale}).
    """
    with mg.no_grad():
        loc, second = (t.numpy().astype(np.float64) for t in model.encode(x))
        log_scale = second / 2 if model.posterior == "gaussian" else second
        z = loc + np.exp(log_scale) * eps                                    # (K, B, L)
        k, b, latent = z.shape
        logits = model.decode(z.reshape(k * b, latent).astype(x.dtype)).numpy()
        targets = np.broadcast_to(x, (k, b, x.shape[1])).reshape(k * b, -1)
        bce = mg.binary_cross_entropy_with_logits(logits.astype(np.float64),
                                                  targets.astype(np.float64), reduction="none")
        log_pz = families.log_prob(z, 0.0, 0.0, "gaussian").numpy().sum(axis=-1)
        log_qz = families.log_prob(z, loc, log_scale, model.posterior).numpy().sum(axis=-1)
    log_px_z = -bce.numpy().sum(axis=1).reshape(k, b)
    return log_px_z + log_pz - log_qz


def posterior_noise(model, shape, stream):
    """Standard draws of the model's posterior family, float64 of ``shape``, from ``stream``."""
    if model.posterior == "gaussian":
        return stream.normal(shape, np.float64)
    return families.noise(shape, model.posterior, stream=stream)


def importance_weighted_bound(model, images, samples, seed, batch_size=100, chunk=100):
    """Mean over ``images`` of -log (1/K) sum_k w_k, an upper bound on -log p(x) that tightens
    as K grows (K = 1 is the ELBO).  The samples come from the model's posterior family and
    are weighted by its density, so every posterior gets the same bound on -log p(x).

    Memory stays bounded: examples go ``batch_size`` at a time and their K samples ``chunk`` at
    a time, combined by a running log-sum-exp (shift by the running maximum, so no exp
    overflows or underflows to a useless 0).
    """
    if samples < 1 or len(images) == 0:
        raise ValueError(f"importance_weighted_bound: needs K >= 1 samples and at least one "
                         f"image, got K={samples} and {len(images)} images")
    stream = Stream(seed)
    total = 0.0
    for rows in _batches(len(images), batch_size):
        x = images[rows]
        running_max = np.full(len(x), -np.inf)
        running_sum = np.zeros(len(x))
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = posterior_noise(model, (k, len(x), model.latent_dim), stream)
            log_w = log_importance_weights(model, x, eps)                    # (k, B)
            new_max = np.maximum(running_max, log_w.max(axis=0))
            running_sum = (running_sum * np.exp(running_max - new_max)
                           + np.exp(log_w - new_max).sum(axis=0))
            running_max = new_max
        log_px = running_max + np.log(running_sum) - math.log(samples)
        total -= log_px.sum()
    return total / len(images)
