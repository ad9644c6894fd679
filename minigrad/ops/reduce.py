"""Reductions: sum, mean, max, logsumexp, log_softmax (``axis`` int, tuple or None; ``keepdims``).

Each backward broadcasts the reduced gradient back with the differentiable ``broadcast_to``
(whose own backward sums again), so every order works.

Over an empty axis, sum is 0 (its identity); max, logsumexp and log_softmax have no identity and
mean divides by 0, so they raise a ValueError naming the axis instead of NumPy's error or NaN.
"""
import math

import numpy as np

from minigrad.backend import namespace
from minigrad.function import Function
from minigrad.ops.shape import broadcast_to
from minigrad.ops.unary import exp
from minigrad.tensor import as_tensor


def _axes(axis, ndim):
    """``axis`` as a sorted tuple of non-negative ints (None means every axis)."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, settled at once
        return (axis % ndim,)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    normalised = tuple(sorted(int(a) % ndim for a in axes))
    if len(set(normalised)) != len(normalised):
        raise ValueError(f"axis {axis} names a dimension twice")
    return normalised


def _nonempty(op, shape, axes, reason="the reduction has no identity"):
    """Raise unless every reduced axis of ``shape`` has elements."""
    for a in axes:
        if shape[a] == 0:
            raise ValueError(f"{op}: axis {a} of shape {shape} is empty; {reason}")


def _expand(g, shape, axes, keepdims):
    """Broadcast a reduced gradient (a Tensor) back over the reduced ``axes`` of ``shape``."""
    if not keepdims:
        g = g.reshape(_kept(shape, axes))
    return broadcast_to(g, shape)


def _kept(shape, axes):
    """``shape`` with the reduced ``axes`` kept as 1s."""
    return tuple(1 if a in axes else n for a, n in enumerate(shape))


def check_numpy_keywords(method, x, dtype, out):
    """Refuse what NumPy's reductions may pass to Tensor.sum/mean/max but a Tensor cannot honour:
    an ``out`` array, or a ``dtype`` (the result keeps x's dtype)."""
    if out is not None:
        raise TypeError(f"{method}: out= is not supported (got {type(out).__name__}); the "
                        "reduction returns a new Tensor, so leave out=None")
    if dtype is not None:
        raise TypeError(f"{method}: dtype= is not supported (got {dtype!r}); the result keeps "
                        f"the tensor's dtype {x.dtype}, so leave dtype=None")


class Sum(Function):
    """z = sum of x over ``axes``.  Backward: gx = g broadcast back over the summed axes."""
    name = "sum"

    @staticmethod
    def forward(ctx, x, *, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, axes, keepdims  # no array is read back
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (_expand(g, ctx.shape, ctx.axes, ctx.keepdims),)


class Mean(Function):
    """z = sum(x) / m over ``axes``, m the number of elements reduced.
    Backward: gx = g / m broadcast back."""
    name = "mean"

    @staticmethod
    def forward(ctx, x, *, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, axes, keepdims
        ctx.count = math.prod(x.shape[a] for a in axes)
        return x.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (_expand(g / ctx.count, ctx.shape, ctx.axes, ctx.keepdims),)


class Max(Function):
    """z = max of x over ``axes``.

    Backward: g flows to the maximal elements; k tied maxima each get g / k (the subgradient
    chosen at ties, as JAX does), so the gradient sums to g whatever the ties.  The shares are
    constants, so the second derivative is 0 (PyTorch's convention for max).
    """
    name = "max"

    @staticmethod
    def forward(ctx, x, *, axes, keepdims):
        z = x.max(axis=axes, keepdims=True)
        ctx.axes, ctx.keepdims = axes, keepdims
        ctx.save_for_backward(x, z)
        return z if keepdims else z.squeeze(axes)

    @staticmethod
    def backward(ctx, g):
        x, z = ctx.saved_tensors
        is_max = x.data == z.data
        share = is_max / is_max.sum(axis=ctx.axes, keepdims=True)   # a constant: max'' = 0
        return (_expand(g, x.shape, ctx.axes, ctx.keepdims) * share.astype(x.dtype),)


def _logsumexp(xp, x, axes):
    """ln sum e^x over ``axes`` with keepdims, shifted by the maximum so nothing overflows."""
    m = x.max(axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # NOTE: an all -inf slice gives -inf, not NaN
    with np.errstate(divide="ignore"):  # log(0) = -inf is that all -inf slice's right answer
        return m + xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True))


class LogSumExp(Function):
    """z = ln sum_i e^{x_i} over ``axes``.  Backward: gx = g * softmax(x) = g * e^{x - z}."""
    name = "logsumexp"

    @staticmethod
    def forward(ctx, x, *, axes, keepdims):
        z = _logsumexp(namespace(x), x, axes)
        z = z if keepdims else z.squeeze(axes)
        ctx.axes, ctx.keepdims = axes, keepdims
        ctx.save_for_backward(x, z)
        return z

    @staticmethod
    def backward(ctx, g):
        x, z = ctx.saved_tensors
        kept = _kept(x.shape, ctx.axes)
        z = z if ctx.keepdims else z.reshape(kept)
        return (_expand(g, x.shape, ctx.axes, ctx.keepdims) * exp(x - z),)


class LogSoftmax(Function):
    """z = x - logsumexp(x, axes).  Backward: gx = g - softmax(x) * sum(g, axes)."""
    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, *, axes):
        z = x - _logsumexp(namespace(x), x, axes)
        ctx.axes = axes
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g - exp(z) * g.sum(axis=ctx.axes, keepdims=True),)


def sum(x, axis=None, keepdims=False):
    """z = sum of x over ``axis`` (int, tuple or None for all) (``Sum``)."""
    x = as_tensor(x)
    return Sum.apply(x, axes=_axes(axis, x.ndim), keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """z = the mean of x over ``axis`` (``Mean``)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("mean", x.shape, axes, "the mean of no elements is 0 / 0")
    return Mean.apply(x, axes=axes, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    """z = the largest element of x over ``axis`` (``Max``)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("max", x.shape, axes)
    return Max.apply(x, axes=axes, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """z = ln sum e^x over ``axis`` (``LogSumExp``)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("logsumexp", x.shape, axes)
    return LogSumExp.apply(x, axes=axes, keepdims=keepdims)


def log_softmax(x, axis=-1):
    """z = x - logsumexp(x, axis) (``LogSoftmax``)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("log_softmax", x.shape, axes, "its logsumexp has no identity")
    return LogSoftmax.apply(x, axes=axes)
