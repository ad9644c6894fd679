"""Binary arithmetic with NumPy broadcasting: add, sub, mul, div, neg, pow.

Each VJP returns gradients in the broadcast shape; ``graph.unbroadcast`` reduces them.
"""
import numpy as np

from minigrad.backend import check_same_device, namespace
from minigrad.graph import make_node
from minigrad.tensor import Tensor, as_tensor


def _operands(op, x, y):
    """Lift scalars to tensors of the other operand's dtype (and device), check that both live
    on one device and that their shapes broadcast."""
    if not isinstance(x, Tensor):
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    y = as_tensor(y, like=x)
    check_same_device(op, x.data, y.data)
    try:
        namespace(x.data).broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {x.shape} and {y.shape} do not broadcast") from None
    return x, y


def add(x, y):
    """z = x + y.  VJP: gx = g, gy = g."""
    x, y = _operands("add", x, y)

    def vjp(g):
        return g, g
    return make_node(x.data + y.data, (x, y), vjp, "add")


def sub(x, y):
    """z = x - y.  VJP: gx = g, gy = -g."""
    x, y = _operands("sub", x, y)

    def vjp(g):
        return g, -g
    return make_node(x.data - y.data, (x, y), vjp, "sub")


def mul(x, y):
    """z = x * y.  VJP: gx = g * y, gy = g * x."""
    x, y = _operands("mul", x, y)

    def vjp(g):
        return (g * y.data if x.requires_grad else None,
                g * x.data if y.requires_grad else None)
    return make_node(x.data * y.data, (x, y), vjp, "mul")


def div(x, y):
    """z = x / y.  VJP: gx = g / y, gy = -g * z / y."""
    x, y = _operands("div", x, y)
    z = x.data / y.data
    divisor, need_x, need_y = y.data, x.requires_grad, y.requires_grad

    def vjp(g):
        gx = g / divisor
        return gx if need_x else None, -gx * z if need_y else None
    return make_node(z, (x, y), vjp, "div")


def neg(x):
    """z = -x.  VJP: gx = -g."""
    x = as_tensor(x)

    def vjp(g):
        return (-g,)
    return make_node(-x.data, (x,), vjp, "neg")


def pow(x, exponent):
    """z = x ** p.

    Scalar p: gx = g * p * x ** (p - 1).
    Tensor p: additionally gp = g * z * log(x), defined for x > 0, with PyTorch's values
    elsewhere: 0 where x == 0 and p >= 0 (the limit from p > 0, where z is 0; at p = 0 too),
    -inf where x == 0 and p < 0 (z * log(x) = inf * -inf) and NaN where x < 0 (no real
    derivative in p).
    """
    if isinstance(exponent, (int, float)):
        x = as_tensor(x)
        p = exponent
        xp = namespace(x.data)

        def vjp_scalar(g):
            # NOTE: p = 0 gives 0 * 0^-1 = NaN at x = 0; the derivative of x^0 is 0 everywhere
            return (g * p * x.data ** (p - 1) if p != 0 else xp.zeros_like(g),)
        return make_node(x.data ** p, (x,), vjp_scalar, "pow")

    x, p = _operands("pow", x, exponent)
    z = x.data ** p.data

    def vjp(g):
        xp = namespace(z)
        gx = None
        if x.requires_grad:
            # NOTE: where p = 0, x^0 is constant: its derivative is 0, not 0 * x^-1 (NaN at 0)
            gx = g * xp.where(p.data == 0, 0, p.data * x.data ** (p.data - 1))
        gp = None
        if p.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):  # log(x <= 0) is deliberate
                gp = g * xp.where((x.data == 0) & (p.data >= 0), 0, z * xp.log(x.data))
        return gx, gp
    return make_node(z, (x, p), vjp, "pow")
