"""Elementwise functions: exp, log, sqrt, tanh, sigmoid, relu, softplus.

Outputs are saved when they make the VJP cheaper (exp, sqrt, tanh, sigmoid).
"""
from minigrad.backend import namespace
from minigrad.graph import make_node
from minigrad.tensor import as_tensor


def exp(x):
    """z = e^x.  VJP: gx = g * z."""
    x = as_tensor(x)
    z = namespace(x.data).exp(x.data)
    return make_node(z, (x,), lambda g: (g * z,), "exp")


def log(x):
    """z = ln x.  VJP: gx = g / x."""
    x = as_tensor(x)
    return make_node(namespace(x.data).log(x.data), (x,), lambda g: (g / x.data,), "log")


def sqrt(x):
    """z = sqrt(x).  VJP: gx = g / (2 z) (infinite at x = 0)."""
    x = as_tensor(x)
    z = namespace(x.data).sqrt(x.data)
    return make_node(z, (x,), lambda g: (g / (2 * z),), "sqrt")


def tanh(x):
    """z = tanh x.  VJP: gx = g * (1 - z^2)."""
    x = as_tensor(x)
    z = namespace(x.data).tanh(x.data)
    return make_node(z, (x,), lambda g: (g * (1 - z * z),), "tanh")


def _sigmoid(xp, x):
    # NOTE: sigmoid(x) = exp(min(x, 0) - ln(1 + e^-|x|)): e^-|x| never overflows, and
    # min(x, 0) = (x - |x|) / 2 exactly.  Branch-free on purpose: a select over random signs
    # (np.where) runs about 8x slower than this whole expression.
    magnitude = xp.abs(x)
    return xp.exp((x - magnitude) * 0.5 - xp.log1p(xp.exp(-magnitude)))


def sigmoid(x):
    """z = 1 / (1 + e^-x), computed without overflow.  VJP: gx = g * z * (1 - z)."""
    x = as_tensor(x)
    z = _sigmoid(namespace(x.data), x.data)
    return make_node(z, (x,), lambda g: (g * z * (1 - z),), "sigmoid")


def relu(x):
    """z = max(x, 0).  VJP: gx = g * [x > 0]; at the kink relu'(0) = 0 (the subgradient chosen)."""
    x = as_tensor(x)
    z = namespace(x.data).maximum(x.data, 0)
    return make_node(z, (x,), lambda g: (g * (x.data > 0),), "relu")


def softplus(x):
    """z = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), stable for large |x|.
    VJP: gx = g * sigmoid(x)."""
    x = as_tensor(x)
    xp = namespace(x.data)
    z = xp.maximum(x.data, 0) + xp.log1p(xp.exp(-xp.abs(x.data)))
    return make_node(z, (x,), lambda g: (g * _sigmoid(xp, x.data),), "softplus")
