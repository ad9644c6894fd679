"""Matrix products: matmul (NumPy's 1-D, 2-D and batched rules) and the fused affine map."""
import numpy as np

from minigrad.backend import check_same_device, namespace
from minigrad.function import Function
from minigrad.gradients import unbroadcast
from minigrad.tensor import as_tensor


class Matmul(Function):
    """z = x @ y with NumPy's rules: a 1-D x is a row, a 1-D y a column (then dropped),
    leading dimensions broadcast as batches.

    Backward, on the 2-D-or-more forms X, Y: gX = G @ Y^T, gY = X^T @ G, each summed over
    broadcast batch dimensions and reshaped back to its operand's shape.
    """
    name = "matmul"

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x @ y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        x2 = x.reshape((1,) + x.shape) if x.ndim == 1 else x       # (..., m, k)
        y2 = y.reshape(y.shape + (1,)) if y.ndim == 1 else y       # (..., k, n)
        batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
        g2 = g.reshape(batch + (x2.shape[-2], y2.shape[-1]))       # (..., m, n)
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = unbroadcast(g2 @ _swap_last(y2), x2.shape).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            gy = unbroadcast(_swap_last(x2) @ g2, y2.shape).reshape(y.shape)
        return gx, gy


def matmul(x, y):
    """z = x @ y (``Matmul``)."""
    x = as_tensor(x)
    y = as_tensor(y, like=x)
    check_same_device("matmul", x.data, y.data)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {x.shape} "
                         f"and {y.shape}")
    inner_y = y.shape[0] if y.ndim == 1 else y.shape[-2]
    if x.shape[-1] != inner_y:
        raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not align "
                         f"({x.shape[-1]} != {inner_y})")
    return Matmul.apply(x, y)


def _swap_last(t):
    """t with its last two axes swapped (a Tensor of at least 2 dimensions)."""
    axes = list(range(t.ndim))
    axes[-2:] = axes[-1], axes[-2]
    return t.transpose(tuple(axes))


class Linear(Function):
    """z = x @ W + b for x (B, in), W (in, out), b (out,): one node for the affine map.

    Backward: gx = G @ W^T, gW = x^T @ G, gb = sum_B G.  One node instead of two saves a
    temporary and a graph step per layer.  It saves W only when x wants a gradient and x only
    when W does: a first layer (x constant) never holds W.
    """
    name = "linear"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        need_x, need_weight = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if need_weight else None, weight if need_x else None)
        z = x @ weight
        if bias is None:
            return z
        # in place into the product's buffer when no dtype promotion is involved
        return z + bias if bias.dtype != z.dtype else namespace(z).add(z, bias, out=z)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        gx = g @ weight.T if weight is not None else None
        gw = x.T @ g if x is not None else None
        if len(ctx.needs_input_grad) == 2:
            return gx, gw
        return gx, gw, g.sum(axis=0) if ctx.needs_input_grad[2] else None


def linear(x, weight, bias=None):
    """z = x @ W + b (``Linear``); ``bias`` may be None."""
    x = as_tensor(x)
    weight = as_tensor(weight, like=x)
    bias = None if bias is None else as_tensor(bias, like=x)
    check_same_device("linear", x.data, weight.data)
    if bias is not None:
        check_same_device("linear", x.data, bias.data)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"linear: input {x.shape} and weight {weight.shape} do not fit: "
                         "expected (batch, in) and (in, out)")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[1]},)")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)
