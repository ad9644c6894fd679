"""Reparameterized location-scale families beside the Gaussian: z = loc + e^{log_scale} * eps.

eps is the standard family's quantile of the Philox stream's uniforms (Laplace, logistic, Gumbel)
or the stream's normals (gaussian), element i of the flattened loc using stream element
offset + i, as in ``reparameterize``.  The parameter is log_scale = ln b, NOT the Gaussian node's
logvar = 2 ln sigma: for the gaussian family, reparameterize_family(mu, s, "gaussian") draws what
reparameterize(mu, 2 s) draws.  The arithmetic is kernels.families; this file connects it to the
graph and writes the log-densities as minigrad expressions, for Monte-Carlo KL estimates.
"""
import math

from kernels import families as kernel
from kernels.contract import check_float_dtype, check_shape
from minigrad.ops.reparam import _position
from minigrad.function import Function
from minigrad.ops.unary import exp, relu, softplus
from minigrad.tensor import as_tensor

FAMILIES = kernel.FAMILIES
MOMENTS = kernel.MOMENTS  # family -> (mean, variance) of the standard family


class ReparameterizeFamily(Function):
    """z = loc + b * eps with b = e^{log_scale}, eps drawn from the standard ``family``.
    Backward: gloc = g, glog_scale = g * b * eps (``ScaleTerm``), eps regenerated."""
    name = "reparameterize_family"

    @staticmethod
    def forward(ctx, loc, log_scale, *, family, seed, offset):
        ctx.family, ctx.seed, ctx.offset = family, seed, offset
        ctx.save_for_backward(log_scale)
        return kernel.forward(loc, log_scale, family, seed, offset)

    @staticmethod
    def backward(ctx, g):
        (log_scale,) = ctx.saved_tensors
        return g, ScaleTerm.apply(g, log_scale, family=ctx.family, seed=ctx.seed,
                                  offset=ctx.offset)


class ScaleTerm(Function):
    """h = g * b * eps, b = e^{log_scale}: the gradient for log_scale as a node of (g, log_scale),
    eps regenerated from (seed, offset).  Backward, with dh/dg = b eps and dh/dlog_scale = h:
    gg = h(u), glog_scale = h(u * g), the same node again, so every order works."""
    name = "reparameterize_family_grad_log_scale"

    @staticmethod
    def forward(ctx, g, log_scale, *, family, seed, offset):
        ctx.family, ctx.seed, ctx.offset = family, seed, offset
        ctx.save_for_backward(g, log_scale)
        return kernel.backward(g, log_scale, family, seed, offset)[1]

    @staticmethod
    def backward(ctx, u):
        g, log_scale = ctx.saved_tensors
        draw = {"family": ctx.family, "seed": ctx.seed, "offset": ctx.offset}
        return ScaleTerm.apply(u, log_scale, **draw), ScaleTerm.apply(u * g, log_scale, **draw)


def reparameterize_family(loc, log_scale, family, *, seed=None, offset=None, stream=None):
    """z = loc + b * eps with b = e^{log_scale}, eps drawn from the standard ``family``
    (``ReparameterizeFamily``).  Give either ``seed`` and ``offset`` or a ``Stream`` (which
    advances by loc.size)."""
    loc, log_scale = as_tensor(loc), as_tensor(log_scale)
    kernel.check_family("reparameterize_family", family)
    # the kernel checks shapes and dtypes; checked here too so a bad call never advances a stream
    kernel.check_inputs("reparameterize_family", loc.data, log_scale.data)
    seed, offset = _position("reparameterize_family", loc.size, seed, offset, stream)
    return ReparameterizeFamily.apply(loc, log_scale, family=family, seed=seed, offset=offset)


def log_prob(z, loc, log_scale, family):
    """log q(z) = log f((z - loc) / b) - log_scale per element (broadcasting), b = e^{log_scale},
    f the standard ``family``'s density; built from minigrad ops, so it is differentiable.

    |x| for the Laplace is relu(x) + relu(-x): its derivative at the kink x = 0 is 0.
    """
    kernel.check_family("log_prob", family)
    z = as_tensor(z)
    loc, log_scale = as_tensor(loc, like=z), as_tensor(log_scale, like=z)  # scalars take z's dtype
    x = (z - loc) * exp(-log_scale)                       # the standardized value
    if family == "gaussian":
        log_f = x * x * -0.5 - 0.5 * kernel.LOG_2PI
    elif family == "laplace":
        log_f = -(relu(x) + relu(-x)) - kernel.LOG_2
    elif family == "logistic":
        log_f = -x - softplus(-x) * 2.0                   # softplus is stable for any x
    else:                                                  # gumbel
        log_f = -x - exp(-x)
    return log_f - log_scale


def noise(shape, family, *, seed=None, offset=None, stream=None, dtype="float64"):
    """The standard draws eps (an array, not a Tensor) that reparameterize_family would use at
    this stream position: for drawing many samples at once, as importance weighting does."""
    kernel.check_family("noise", family)
    # checked before the stream hands out its position: a call that raises must not advance it
    shape = check_shape("noise", shape)
    check_float_dtype("noise", "dtype", dtype)
    seed, offset = _position("noise", math.prod(shape), seed, offset, stream)
    return kernel.noise(shape, dtype, family, seed, offset)
