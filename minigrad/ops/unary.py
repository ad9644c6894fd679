"""Elementwise functions: exp, expm1, log, sqrt, tanh, sigmoid, relu, softplus.

VJPs that are cheapest in terms of the output read it (``vjp(g, z)``): exp, expm1, sqrt, tanh,
sigmoid.  Second derivatives follow from the VJPs being minigrad ops; at relu's kink the mask
[x > 0] is a constant, so relu'' = 0 everywhere (PyTorch's convention).
"""
from minigrad.backend import namespace
from minigrad.tensor import as_tensor, make_node


def exp(x):
    """z = e^x.  VJP: gx = g * z."""
    x = as_tensor(x)
    return make_node(namespace(x.data).exp(x.data), (x,), lambda g, z: (g * z,), "exp")


def expm1(x):
    """z = e^x - 1, exact for small x.  VJP: gx = g * (z + 1)."""
    x = as_tensor(x)
    return make_node(namespace(x.data).expm1(x.data), (x,), lambda g, z: (g * (z + 1),), "expm1")


def log(x):
    """z = ln x.  VJP: gx = g / x."""
    x = as_tensor(x)
    return make_node(namespace(x.data).log(x.data), (x,), lambda g: (g / x,), "log")


def sqrt(x):
    """z = sqrt(x).  VJP: gx = g / (2 z) (infinite at x = 0)."""
    x = as_tensor(x)
    return make_node(namespace(x.data).sqrt(x.data), (x,), lambda g, z: (g / (z * 2),), "sqrt")


def tanh(x):
    """z = tanh x.  VJP: gx = g * (1 - z^2)."""
    x = as_tensor(x)
    return make_node(namespace(x.data).tanh(x.data), (x,), lambda g, z: (g * (1 - z * z),), "tanh")


def _sigmoid(xp, x):
    # NOTE: sigmoid(x) = exp(min(x, 0) - ln(1 + e^-|x|)): e^-|x| never overflows, and
    # min(x, 0) = (x - |x|) / 2 exactly.  Branch-free on purpose: a select over random signs
    # (np.where) runs about 8x slower than this whole expression.
    magnitude = xp.abs(x)
    return xp.exp((x - magnitude) * 0.5 - xp.log1p(xp.exp(-magnitude)))


def sigmoid(x):
    """z = 1 / (1 + e^-x), computed without overflow.  VJP: gx = g * z * (1 - z)."""
    x = as_tensor(x)
    return sigmoid_node(x, _sigmoid(namespace(x.data), x.data))


def sigmoid_node(x, z):
    """The sigmoid of tensor x as a node whose value z (an array) is known already: a loss that
    computed ln(1 + e^-|x|) for its forward gets the sigmoid for one more exp."""
    return make_node(z, (x,), lambda g, z: (g * z * (1 - z),), "sigmoid")


def relu(x):
    """z = max(x, 0).  VJP: gx = g * [x > 0]; at the kink relu'(0) = 0 (the subgradient chosen),
    and the mask is a constant, so relu'' = 0."""
    x = as_tensor(x)
    z = namespace(x.data).maximum(x.data, 0)
    return make_node(z, (x,), lambda g: (g * (x.data > 0),), "relu")


def softplus(x):
    """z = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), stable for large |x|.
    VJP: gx = g * sigmoid(x)."""
    x = as_tensor(x)
    xp = namespace(x.data)
    z = xp.maximum(x.data, 0) + xp.log1p(xp.exp(-xp.abs(x.data)))
    return make_node(z, (x,), lambda g: (g * sigmoid(x),), "softplus")
