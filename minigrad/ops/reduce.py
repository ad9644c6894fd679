"""Reductions: sum, mean, max, logsumexp, log_softmax (``axis`` int, tuple or None; ``keepdims``).

Each VJP broadcasts the reduced gradient back with the differentiable ``broadcast_to`` (whose own
VJP sums again), so every order works.

Over an empty axis, sum is 0 (its identity); max, logsumexp and log_softmax have no identity and
mean divides by 0, so they raise a ValueError naming the axis instead of NumPy's error or NaN.
"""
import numpy as np

from minigrad.backend import namespace
from minigrad.ops.shape import broadcast_to
from minigrad.ops.unary import exp
from minigrad.tensor import as_tensor, make_node


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


def sum(x, axis=None, keepdims=False):
    """z = sum of x over ``axis``.  VJP: gx = g broadcast back over the summed axes."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    z = x.data.sum(axis=axes, keepdims=keepdims)
    shape = x.shape  # the VJP needs only the shape, so the node keeps no array
    return make_node(z, (x,), lambda g: (_expand(g, shape, axes, keepdims),), "sum")


def mean(x, axis=None, keepdims=False):
    """z = sum(x) / m over ``axis``, m the number of elements reduced.  VJP: gx = g / m broadcast."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("mean", x.shape, axes, "the mean of no elements is 0 / 0")
    count = 1
    for a in axes:
        count *= x.shape[a]
    z = x.data.mean(axis=axes, keepdims=keepdims)
    shape = x.shape
    return make_node(z, (x,), lambda g: (_expand(g / count, shape, axes, keepdims),), "mean")


def max(x, axis=None, keepdims=False):
    """z = max of x over ``axis``.

    VJP: g flows to the maximal elements; k tied maxima each get g / k (the subgradient
    chosen at ties, as JAX does), so the gradient sums to g whatever the ties.  The shares are
    constants, so the second derivative is 0 (PyTorch's convention for max).
    """
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    _nonempty("max", x.shape, axes)
    z = x.data.max(axis=axes, keepdims=True)

    def vjp(g):
        is_max = x.data == z
        share = is_max / is_max.sum(axis=axes, keepdims=True)   # a constant: max'' = 0
        return (_expand(g, x.shape, axes, keepdims) * share.astype(x.dtype),)
    return make_node(z if keepdims else z.squeeze(axes), (x,), vjp, "max")


def _logsumexp(xp, x, axes):
    """ln sum e^x over ``axes`` with keepdims, shifted by the maximum so nothing overflows."""
    m = x.max(axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # NOTE: an all -inf slice gives -inf, not NaN
    with np.errstate(divide="ignore"):  # log(0) = -inf is that all -inf slice's right answer
        return m + xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True))


def logsumexp(x, axis=None, keepdims=False):
    """z = ln sum_i e^{x_i} over ``axis``.  VJP: gx = g * softmax(x) = g * e^{x - z}."""
    x = as_tensor(x)
    xp = namespace(x.data)
    axes = _axes(axis, x.ndim)
    _nonempty("logsumexp", x.shape, axes)
    z = _logsumexp(xp, x.data, axes)

    def vjp(g, z):
        z = z if keepdims else z.reshape(_kept(x.shape, axes))
        return (_expand(g, x.shape, axes, keepdims) * exp(x - z),)
    return make_node(z if keepdims else z.squeeze(axes), (x,), vjp, "logsumexp")


def log_softmax(x, axis=-1):
    """z = x - logsumexp(x, axis).  VJP: gx = g - softmax(x) * sum(g, axis)."""
    x = as_tensor(x)
    xp = namespace(x.data)
    axes = _axes(axis, x.ndim)
    _nonempty("log_softmax", x.shape, axes, "its logsumexp has no identity")
    z = x.data - _logsumexp(xp, x.data, axes)

    def vjp(g, z):
        return (g - exp(z) * g.sum(axis=axes, keepdims=True),)
    return make_node(z, (x,), vjp, "log_softmax")
