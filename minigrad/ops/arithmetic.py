"""Binary arithmetic with NumPy broadcasting: add, sub, mul, div, neg, pow.

Each op is a Function: forward on arrays, backward on Tensors, side by side.  A backward returns
gradients in the broadcast (output) shape; ``gradients.unbroadcast`` reduces them to each input's.
"""
import numpy as np

from minigrad.backend import check_same_device
from minigrad.function import Function
from minigrad.ops.shape import where
from minigrad.ops.unary import log
from minigrad.tensor import Tensor, as_tensor


class Add(Function):
    """z = x + y.  Backward: gx = g, gy = g."""
    name = "add"

    @staticmethod
    def forward(ctx, x, y):
        return x + y

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """z = x - y.  Backward: gx = g, gy = -g."""
    name = "sub"

    @staticmethod
    def forward(ctx, x, y):
        return x - y

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    """z = x * y.  Backward: gx = g * y, gy = g * x."""
    name = "mul"

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad
        return g * y if need_x else None, g * x if need_y else None


class Div(Function):
    """z = x / y.  Backward: gx = g / y, gy = -gx * z (= -g x / y^2)."""
    name = "div"

    @staticmethod
    def forward(ctx, x, y):
        z = x / y
        ctx.save_for_backward(y, z)
        return z

    @staticmethod
    def backward(ctx, g):
        y, z = ctx.saved_tensors
        gx = g / y
        return gx, -gx * z if ctx.needs_input_grad[1] else None


class Neg(Function):
    """z = -x.  Backward: gx = -g."""
    name = "neg"

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class PowScalar(Function):
    """z = x ** p for a number p.  Backward: gx = g * p * x ** (p - 1), itself a pow, so any
    order works; for p = 0, gx = 0 (x^0 is constant)."""
    name = "pow"

    @staticmethod
    def forward(ctx, x, *, exponent):
        ctx.exponent = exponent
        ctx.save_for_backward(x)
        return x ** exponent

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        p = ctx.exponent
        return (g * 0.0 if p == 0 else g * p * x ** (p - 1),)


class Pow(Function):
    """z = x ** p for a tensor p.

    gx = g * p * x ** (p - 1), and gp = g * z * log(x), defined for x > 0, with PyTorch's values
    elsewhere: 0 where x == 0 and p >= 0 (the limit from p > 0, where z is 0; at p = 0 too),
    -inf where x == 0 and p < 0 (z * log(x) = inf * -inf) and NaN where x < 0 (no real
    derivative in p).  Where p == 0, gx = 0: x^0 is constant (0 * x^-1 would be NaN at 0).
    The masked places compute with harmless stand-ins (p = 1, x = 1), so that no NaN or Inf
    hides in an unselected branch, where a second derivative would pick it up.
    """
    name = "pow"

    @staticmethod
    def forward(ctx, x, p):
        z = x ** p
        ctx.save_for_backward(x, p, z)
        return z

    @staticmethod
    def backward(ctx, g):
        x, p, z = ctx.saved_tensors
        gx = gp = None
        if ctx.needs_input_grad[0]:
            constant = p.data == 0
            gx = g * where(constant, 0.0, p * x ** where(constant, 1.0, p - 1))
        if ctx.needs_input_grad[1]:
            limit = (x.data == 0) & (p.data >= 0)
            with np.errstate(divide="ignore", invalid="ignore"):  # log(x <= 0) is deliberate
                gp = g * where(limit, 0.0, z * log(where(limit, 1.0, x)))
        return gx, gp


def _binary(function, x, y):
    """``function`` applied to x and y, scalars lifted to tensors of the other operand's dtype
    (and device); both must live on one device and broadcast together."""
    if type(x) is not Tensor:
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    if type(y) is not Tensor:
        y = as_tensor(y, like=x)
    if type(x.data) is not type(y.data):  # NOTE: settles the common case without a call
        check_same_device(function.name, x.data, y.data)
    try:
        return function.apply(x, y)
    except ValueError:  # NOTE: NumPy's own check, so a call that broadcasts pays nothing for it
        try:
            np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            raise ValueError(f"{function.name}: shapes {x.shape} and {y.shape} do not "
                             "broadcast") from None
        raise


def add(x, y):
    """z = x + y (``Add``)."""
    return _binary(Add, x, y)


def sub(x, y):
    """z = x - y (``Sub``)."""
    return _binary(Sub, x, y)


def mul(x, y):
    """z = x * y (``Mul``)."""
    return _binary(Mul, x, y)


def div(x, y):
    """z = x / y (``Div``)."""
    return _binary(Div, x, y)


def neg(x):
    """z = -x (``Neg``)."""
    return Neg.apply(as_tensor(x))


def pow(x, exponent):
    """z = x ** exponent: ``PowScalar`` for a Python number, else ``Pow``."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        return PowScalar.apply(as_tensor(x), exponent=exponent)
    return _binary(Pow, x, exponent)
