"""Location-scale noise families beside the Gaussian, on the same counter-based Philox stream.

    forward:   z = loc + b * eps,   b = exp(log_scale),   eps = F^-1(u)
    backward:  grad_loc = grad_z,   grad_log_scale = grad_z * b * eps

F^-1 is the quantile function of the standard family, applied to the uniforms of the stream:
element i of the C-order flattening of loc uses u = uint32_to_uniform(word offset + i), the word
that the Gaussian's normal offset + i is made from (same layout, same (seed, offset) bookkeeping).
The backward regenerates eps from (seed, offset); nothing but the inputs is kept.

    family     F^-1(u)                           log f(x)                      mean     variance
    laplace    -sign(u - 1/2) ln(1 - 2|u - 1/2|)  -|x| - ln 2                   0        2
    logistic   ln u - ln(1 - u)                  -x - 2 ln(1 + e^-x)           0        pi^2 / 3
    gumbel     -ln(-ln u)                        -x - e^-x                     gamma    pi^2 / 6
    gaussian   Box-Muller normals of the stream  -x^2 / 2 - ln(2 pi) / 2       0        1

The Gaussian is here so one code path can run every family (its eps is kernels.philox.normal,
the Gaussian node's own noise; F^-1 of one uniform is not how it is drawn).  Student-t is left
out: its quantile needs the inverse incomplete beta function.

eps is computed in float64 and rounded once to the input dtype; all other arithmetic happens in
that dtype.  Inputs are checked by kernels.contract; this module never imports minigrad.
"""
import math

import numpy as np

from kernels.contract import _check_pair, check_float_dtype, check_seed_offset
from kernels.philox import normal, normal_words, uint32_to_uniform

EULER_GAMMA = 0.5772156649015329
LOG_2 = math.log(2.0)
LOG_2PI = math.log(2.0 * math.pi)


def _laplace_quantile(u):
    # NOTE: u - 1/2 and 1 - 2|u - 1/2| are exact for every stream uniform (multiples of 2^-33
    # in (0, 1)), so the only rounding is the log's own; u is never exactly 1/2.
    centred = u - 0.5
    return -np.sign(centred) * np.log(1.0 - 2.0 * np.abs(centred))


def _logistic_quantile(u):
    # NOTE: 1 - u is exact for stream uniforms, so ln(1 - u) keeps every digit near u = 1.
    return np.log(u) - np.log(1.0 - u)


def _gumbel_quantile(u):
    # NOTE: u is exact, so ln u is accurate to its last digit even as u -> 1 (ln u -> 0-).
    return -np.log(-np.log(u))


QUANTILES = {"laplace": _laplace_quantile, "logistic": _logistic_quantile,
             "gumbel": _gumbel_quantile}
FAMILIES = ("gaussian", *QUANTILES)
MOMENTS = {  # (mean, variance) of the standard family
    "gaussian": (0.0, 1.0),
    "laplace": (0.0, 2.0),
    "logistic": (0.0, math.pi ** 2 / 3),
    "gumbel": (EULER_GAMMA, math.pi ** 2 / 6),
}


def check_inputs(name, loc, log_scale):
    """Raise unless loc and log_scale share one shape and one float32/float64 dtype."""
    _check_pair(name, "loc", loc, "log_scale", log_scale)


def check_family(name, family):
    """Return family after checking it is one of FAMILIES, else a ValueError listing them."""
    if family not in FAMILIES:
        raise ValueError(f"{name}: unknown family {family!r}; known families are "
                         f"{', '.join(FAMILIES)}")
    return family


def quantile(u, family):
    """F^-1(u) of the standard family, elementwise on float64 uniforms in (0, 1)."""
    if check_family("quantile", family) == "gaussian":
        raise ValueError("quantile: the gaussian family's noise is the stream's Box-Muller "
                         "normals, not a quantile of one uniform; use noise()")
    return QUANTILES[family](np.asarray(u, dtype=np.float64))


def uniforms(n, seed, offset):
    """u of stream elements offset .. offset+n-1, float64 (n,) in (0, 1)."""
    return uint32_to_uniform(normal_words(n, seed, offset))


def noise(shape, dtype, family, seed, offset):
    """eps of the standard family, of the given shape and dtype, from stream elements
    offset .. offset+size-1 in C order; computed in float64 and rounded once to dtype."""
    shape = tuple(shape)
    size = math.prod(shape)
    if check_family("noise", family) == "gaussian":
        eps = normal(size, seed, offset, np.float64)
    else:
        eps = QUANTILES[family](uniforms(size, seed, offset))
    return eps.astype(check_float_dtype("noise", "dtype", dtype)).reshape(shape)


def log_density(x, family):
    """log f(x) of the standard family, elementwise, in the dtype of x."""
    x = np.asarray(x)
    family = check_family("log_density", family)
    if family == "gaussian":
        return -0.5 * x * x - 0.5 * LOG_2PI
    if family == "laplace":
        return -np.abs(x) - LOG_2
    if family == "logistic":
        # NOTE: symmetric in x, so -|x| - 2 ln(1 + e^-|x|) never exponentiates a positive number
        magnitude = np.abs(x)
        return -magnitude - 2.0 * np.log1p(np.exp(-magnitude))
    return -x - np.exp(-x)                                   # gumbel


def mean_variance(family):
    """(mean, variance) of the standard family, for tests."""
    return MOMENTS[check_family("mean_variance", family)]


def forward(loc, log_scale, family, seed, offset):
    """z = loc + exp(log_scale) * eps with eps = noise(loc.shape, loc.dtype, family, seed, offset)."""
    check_inputs("families.forward", loc, log_scale)
    check_seed_offset("families.forward", seed, offset)
    loc, log_scale = np.asarray(loc), np.asarray(log_scale)
    eps = noise(loc.shape, loc.dtype, family, seed, offset)
    return np.asarray(loc + np.exp(log_scale) * eps)         # 0-d results stay arrays


def backward(grad_z, log_scale, family, seed, offset):
    """(grad_loc, grad_log_scale) = (grad_z, grad_z * exp(log_scale) * eps), eps regenerated:
    the forward's, bit for bit."""
    _check_pair("families.backward", "grad_z", grad_z, "log_scale", log_scale)
    check_seed_offset("families.backward", seed, offset)
    grad_z, log_scale = np.asarray(grad_z), np.asarray(log_scale)
    eps = noise(grad_z.shape, grad_z.dtype, family, seed, offset)
    # a copy: callers may accumulate into grad_loc in place, which must not touch grad_z
    return grad_z.copy(), np.asarray(grad_z * np.exp(log_scale) * eps)
