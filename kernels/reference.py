"""The NumPy reference backend: the definition of right for every other backend.

    forward:     z = mu + exp(logvar / 2) * eps
    backward:    grad_mu = grad_z,  grad_logvar = grad_z * exp(logvar / 2) * eps / 2
    forward_kl:  also kl = sum((expm1(logvar) - logvar + mu^2) / 2), accumulated in float64
    backward_kl: adds kl_weight * mu to grad_mu and kl_weight * expm1(logvar) / 2 to grad_logvar

eps = noise(mu.shape, mu.dtype, seed, offset): normals offset .. offset+size-1 of the Philox
stream in C order, rounded once to the input dtype; all other arithmetic happens in that dtype,
in the order written above. Inputs of any strides are read as NumPy reads them. The run_*
functions trust their arrays: kernels.contract's entry points (kernels.forward, or
contract.forward(reference, ...)) check them first, kl_weight included: rounding None to the
dtype would give NaN, not an error.
"""
import math

import numpy as np

from kernels import contract
from kernels.philox import normal

NAME = "reference"


def noise(shape, dtype, seed, offset):
    """eps of the given shape and dtype: normals offset .. offset+size-1, in C order."""
    shape = tuple(shape)
    return normal(math.prod(shape), seed, offset, dtype).reshape(shape)


def run_forward(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward"):
    """z = mu + exp(logvar / 2) * eps, with eps = noise(mu.shape, mu.dtype, seed, offset)."""
    mu, logvar = np.asarray(mu), np.asarray(logvar)
    contract.stream_position(name, mu.size, seed, offset)  # seed and offset, named as called
    eps = noise(mu.shape, mu.dtype, seed, offset)
    # np.asarray: ufuncs turn 0-d results into scalars, and the contract promises arrays
    z = np.asarray(mu + np.exp(logvar / 2) * eps)
    return (z, eps) if save_noise else z


def run_backward(grad_z, logvar, seed, offset, noise=None, name=f"{NAME}.backward"):
    """(grad_mu, grad_logvar) = (grad_z, grad_z * exp(logvar / 2) * eps / 2).

    eps is ``noise`` when the forward saved it, else regenerated: the forward's eps, bit for bit.
    """
    grad_z, logvar = np.asarray(grad_z), np.asarray(logvar)
    eps = noise_or_regenerated(name, noise, grad_z, seed, offset)
    grad_logvar = np.asarray(grad_z * np.exp(logvar / 2) * eps / 2)
    # a copy: callers may accumulate into grad_mu in place, which must not touch grad_z
    return grad_z.copy(), grad_logvar


def run_forward_kl(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward_kl"):
    """(z, kl): the forward, and the KL divergence to N(0, 1) summed over every element."""
    mu, logvar = np.asarray(mu), np.asarray(logvar)
    z, eps = run_forward(mu, logvar, seed, offset, save_noise=True, name=name)
    terms = (np.expm1(logvar) - logvar + mu * mu) / 2
    kl = np.asarray(terms.sum(dtype=np.float64), dtype=mu.dtype)
    return (z, kl, eps) if save_noise else (z, kl)


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None,
                    name=f"{NAME}.backward_kl"):
    """The backward plus the KL's gradient scaled by ``kl_weight`` (a checked float):
    grad_mu = grad_z + kl_weight * mu, grad_logvar += kl_weight * expm1(logvar) / 2."""
    grad_z, mu, logvar = np.asarray(grad_z), np.asarray(mu), np.asarray(logvar)
    eps = noise_or_regenerated(name, noise, grad_z, seed, offset)
    weight = grad_z.dtype.type(kl_weight)
    grad_mu = np.asarray(grad_z + weight * mu)
    grad_logvar = np.asarray(grad_z * np.exp(logvar / 2) * eps / 2 + weight * np.expm1(logvar) / 2)
    return grad_mu, grad_logvar


def noise_or_regenerated(name, saved, like, seed, offset):
    """The saved eps if there is one, else eps regenerated from (seed, offset)."""
    if saved is not None:
        return np.asarray(saved)
    contract.stream_position(name, like.size, seed, offset)
    return noise(like.shape, like.dtype, seed, offset)
