"""Elementwise functions: exp, expm1, log, sqrt, tanh, sigmoid, relu, softplus.

Ops whose derivative is cheapest in terms of their output save the output (exp, expm1, sqrt,
tanh, sigmoid); second derivatives follow from the backward formulas being minigrad ops.  At
relu's kink the mask [x > 0] is a constant, so relu'' = 0 everywhere (PyTorch's convention).
"""
from minigrad.backend import namespace
from minigrad.function import Function
from minigrad.tensor import as_tensor


class Exp(Function):
    """z = e^x.  Backward: gx = g * z."""
    name = "exp"

    @staticmethod
    def forward(ctx, x):
        z = namespace(x).exp(x)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g * z,)


class Expm1(Function):
    """z = e^x - 1, exact for small x.  Backward: gx = g * (z + 1)."""
    name = "expm1"

    @staticmethod
    def forward(ctx, x):
        z = namespace(x).expm1(x)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g * (z + 1),)


class Log(Function):
    """z = ln x.  Backward: gx = g / x."""
    name = "log"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return namespace(x).log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g / x,)


class Sqrt(Function):
    """z = sqrt(x).  Backward: gx = g / (2 z) (infinite at x = 0)."""
    name = "sqrt"

    @staticmethod
    def forward(ctx, x):
        z = namespace(x).sqrt(x)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g / (z * 2),)


class Tanh(Function):
    """z = tanh x.  Backward: gx = g * (1 - z^2)."""
    name = "tanh"

    @staticmethod
    def forward(ctx, x):
        z = namespace(x).tanh(x)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g * (1 - z * z),)


def sigmoid_array(xp, x):
    """1 / (1 + e^-x) of an array, without overflow."""
    # NOTE: sigmoid(x) = exp(min(x, 0) - ln(1 + e^-|x|)): e^-|x| never overflows, and
    # min(x, 0) = (x - |x|) / 2 exactly.  Branch-free on purpose: a select over random signs
    # (np.where) runs about 8x slower than this whole expression.
    magnitude = xp.abs(x)
    return xp.exp((x - magnitude) * 0.5 - xp.log1p(xp.exp(-magnitude)))


class Sigmoid(Function):
    """z = 1 / (1 + e^-x), computed without overflow.  Backward: gx = g * z * (1 - z).

    ``value``: the sigmoid of x when the caller has it already (a loss that computed
    ln(1 + e^-|x|) for its forward gets it for one more exp); it becomes the output."""
    name = "sigmoid"

    @staticmethod
    def forward(ctx, x, *, value=None):
        z = sigmoid_array(namespace(x), x) if value is None else value
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g * z * (1 - z),)


class Relu(Function):
    """z = max(x, 0).  Backward: gx = g * [x > 0]; at the kink relu'(0) = 0 (the subgradient
    chosen), and the mask is a constant, so relu'' = 0."""
    name = "relu"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return namespace(x).maximum(x, 0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * (x.data > 0),)


class Softplus(Function):
    """z = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), stable for large |x|.
    Backward: gx = g * sigmoid(x)."""
    name = "softplus"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        xp = namespace(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * sigmoid(x),)


def _elementwise(function):
    """The op function of an elementwise Function: ``function.apply`` of its input as a Tensor,
    with the Function's name and docstring (``help(mg.exp)`` shows the math)."""
    def op(x):
        return function.apply(as_tensor(x))
    op.__name__ = op.__qualname__ = function.name
    op.__doc__ = function.__doc__
    return op


exp = _elementwise(Exp)
expm1 = _elementwise(Expm1)
log = _elementwise(Log)
sqrt = _elementwise(Sqrt)
tanh = _elementwise(Tanh)
sigmoid = _elementwise(Sigmoid)
relu = _elementwise(Relu)
softplus = _elementwise(Softplus)
