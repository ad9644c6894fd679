"""Binary arithmetic with NumPy broadcasting: add, sub, mul, div, neg, pow.

Each VJP returns gradients in the broadcast shape; ``graph.unbroadcast`` reduces them.
"""
import operator

import numpy as np

from minigrad.backend import check_same_device
from minigrad.ops.shape import where
from minigrad.ops.unary import log
from minigrad.tensor import Tensor, as_tensor, make_node


def _operands(op, x, y, compute):
    """Lift scalars to tensors of the other operand's dtype (and device), check that both live
    on one device, and return them with ``compute(x_array, y_array)``."""
    if type(x) is not Tensor:
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    if type(y) is not Tensor:
        y = as_tensor(y, like=x)
    if type(x.data) is not type(y.data):  # NOTE: settles the common case without a call
        check_same_device(op, x.data, y.data)
    try:
        return x, y, compute(x.data, y.data)
    except ValueError:  # NOTE: NumPy's own check, so a call that broadcasts pays nothing for it
        raise ValueError(f"{op}: shapes {x.shape} and {y.shape} do not broadcast") from None


def add(x, y):
    """z = x + y.  VJP: gx = g, gy = g."""
    x, y, z = _operands("add", x, y, operator.add)
    return make_node(z, (x, y), lambda g: (g, g), "add")


def sub(x, y):
    """z = x - y.  VJP: gx = g, gy = -g."""
    x, y, z = _operands("sub", x, y, operator.sub)
    return make_node(z, (x, y), lambda g: (g, -g), "sub")


def mul(x, y):
    """z = x * y.  VJP: gx = g * y, gy = g * x."""
    x, y, z = _operands("mul", x, y, operator.mul)

    def vjp(g):
        return g * y if x.requires_grad else None, g * x if y.requires_grad else None
    return make_node(z, (x, y), vjp, "mul")


def div(x, y):
    """z = x / y.  VJP: gx = g / y, gy = -gx * z (= -g x / y^2)."""
    x, y, z = _operands("div", x, y, operator.truediv)
    need_x, need_y = x.requires_grad, y.requires_grad

    def vjp(g, z):
        gx = g / y
        return gx if need_x else None, -gx * z if need_y else None
    return make_node(z, (x, y), vjp, "div")


def neg(x):
    """z = -x.  VJP: gx = -g."""
    x = as_tensor(x)
    return make_node(-x.data, (x,), lambda g: (-g,), "neg")


def pow(x, exponent):
    """z = x ** p.

    Scalar p: gx = g * p * x ** (p - 1) (itself a pow, so any order works).
    Tensor p: additionally gp = g * z * log(x), defined for x > 0, with PyTorch's values
    elsewhere: 0 where x == 0 and p >= 0 (the limit from p > 0, where z is 0; at p = 0 too),
    -inf where x == 0 and p < 0 (z * log(x) = inf * -inf) and NaN where x < 0 (no real
    derivative in p).  Where p == 0, gx = 0: x^0 is constant (0 * x^-1 would be NaN at 0).
    The masked places compute with harmless stand-ins (p = 1, x = 1), so that no NaN or Inf
    hides in an unselected branch, where a second derivative would pick it up.
    """
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        x = as_tensor(x)
        p = exponent

        def vjp_scalar(g):
            return (g * 0.0 if p == 0 else g * p * x ** (p - 1),)
        return make_node(x.data ** p, (x,), vjp_scalar, "pow")

    x, p, z = _operands("pow", x, exponent, operator.pow)

    def vjp(g, z):
        gx = gp = None
        if x.requires_grad:
            constant = p.data == 0
            gx = g * where(constant, 0.0, p * x ** where(constant, 1.0, p - 1))
        if p.requires_grad:
            limit = (x.data == 0) & (p.data >= 0)
            with np.errstate(divide="ignore", invalid="ignore"):  # log(x <= 0) is deliberate
                gp = g * where(limit, 0.0, z * log(where(limit, 1.0, x)))
        return gx, gp
    return make_node(z, (x, p), vjp, "pow")
