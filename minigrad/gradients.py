"""What a gradient must be, checked where one enters a backward pass: a cotangent handed to
``backward``, a hook's replacement, each gradient a node's backward returns.  Each is made a
Tensor of its tensor's shape, dtype and device, or refused with an error naming what arrived, so
that no gradient is silently truncated, reduced, cast from complex or cut from its graph; and
``unbroadcast``, the one place where a broadcast gradient is summed back to its input's shape.
"""
import numpy as np

from minigrad.backend import check_same_device, namespace
from minigrad.tensor import Tensor


def as_gradient(value, tensor, what, whose, arrays_allowed):
    """``value`` (a Tensor, array, number or list) as ``tensor``'s gradient, a Tensor of its
    shape, dtype and device.  Where a differentiable gradient is needed (a hook's, under
    create_graph) only a Tensor will do; a cotangent handed to backward is a constant, so an
    array is fine there."""
    if isinstance(value, Tensor):
        array = value.data
    elif not arrays_allowed and hasattr(value, "shape"):
        raise TypeError(f"{what} as a {type(value).__name__}; with create_graph=True it must be "
                        "a Tensor computed with minigrad ops, so that it can be differentiated")
    elif hasattr(value, "shape") and not isinstance(value, np.generic):
        array = value
    else:  # a number or a list: made where the tensor lives
        array = namespace(tensor.data).asarray(value)
    check_same_device(what, tensor.data, array)
    if array.dtype.kind not in "fiu":
        dropped = "; its imaginary part would be dropped" if array.dtype.kind == "c" else ""
        raise TypeError(f"{what} of dtype {array.dtype}: gradients are real numbers{dropped}")
    if tuple(array.shape) != tensor.shape:
        raise ValueError(f"{what} of shape {tuple(array.shape)} for {whose} of shape "
                         f"{tensor.shape}")
    if isinstance(value, Tensor):  # keeps its graph; cast by a differentiable op
        return value if value.dtype == tensor.dtype else value.astype(tensor.dtype)
    return Tensor(array.astype(tensor.dtype, copy=False))


def checked_result(node, inputs, result):
    """A node's backward result as a list of Tensors (or None), one per input, each in its
    input's shape and dtype; anything else is an error naming the op."""
    if type(result) is not tuple or len(result) != len(inputs):
        got = (f"{len(result)} gradient{'s' if len(result) != 1 else ''}"
               if isinstance(result, (tuple, list)) else f"a {type(result).__name__}")
        raise TypeError(f"backward: backward of '{node.op}' returned {got} for {len(inputs)} "
                        f"input{'s' if len(inputs) != 1 else ''}; it must return a tuple with "
                        "one gradient (or None) per input")
    grads = list(result)
    for i, (t, g) in enumerate(zip(inputs, grads)):
        if g is None or not node.needs_input_grad[i]:
            grads[i] = None
        elif not (type(g) is Tensor and t is not None and g.shape == t.shape
                  and g.dtype == t.dtype):
            grads[i] = _input_gradient(node, i, t, g)
    return grads


def _input_gradient(node, i, t, g):
    """Gradient ``g`` from the backward of ``node`` for input i, as a Tensor of that input's
    shape and dtype (None for a leaf nobody holds any more): a gradient of the output's shape,
    for an input the op broadcast, is reduced by ``unbroadcast``; an array is taken only from a
    once_differentiable op."""
    where = f"backward of '{node.op}' returned"
    if not isinstance(g, Tensor):
        if not node.function.once_differentiable or not hasattr(g, "shape"):
            raise TypeError(f"backward: {where} a {type(g).__name__} for input {i + 1}; a "
                            "backward computes with minigrad ops on Tensors and returns Tensors "
                            "(so that it can be differentiated again), or its Function says "
                            "once_differentiable = True")
        g = Tensor(g)
    if t is None:
        return None
    check_same_device(f"backward: {where} a gradient for input {i + 1}", t.data, g.data)
    if g.shape != t.shape:
        out_shapes = [tuple(o.shape) for o in node.outputs if o is not None]
        if g.shape not in out_shapes:
            raise ValueError(f"backward: {where} a gradient of shape {g.shape} for input {i + 1} "
                             f"of shape {t.shape}; expected {t.shape}, or the output's shape "
                             "where the op broadcast that input")
        g = unbroadcast(g, t.shape)
    if g.dtype != t.dtype:
        if g.dtype.kind not in "fiu":
            raise TypeError(f"backward: {where} a gradient of dtype {g.dtype} for input {i + 1}; "
                            "gradients are real numbers")
        g = g.astype(t.dtype)
    return g


def unbroadcast(grad, shape):
    """Sum ``grad`` (a Tensor) over the axes that broadcasting added or stretched, giving
    ``shape``.  The one place where a broadcast gradient is reduced to its operand's."""
    if tuple(grad.shape) == shape:
        return grad
    leading = grad.ndim - len(shape)
    if leading > 0:
        grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if tuple(grad.shape) != shape:
        raise ValueError(f"unbroadcast: gradient of shape {tuple(grad.shape)} cannot be reduced "
                         f"to {shape}")
    return grad
