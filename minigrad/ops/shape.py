"""Ops that move elements without arithmetic: reshape, transpose, broadcast_to, getitem (and its
transpose, scatter_add), concatenate, stack, the selection ``where``, and clone, to_device,
astype.

Their backward formulas move the gradient back with the same ops, so every order works: reshape
and transpose undo themselves, broadcast_to sums (``unbroadcast``), getitem and scatter_add are
each other's backward.  Indices and where's condition are constants, not differentiated; an
index is frozen at forward (its lists and arrays copied, read-only), so that changing the
caller's index afterwards cannot move the gradient.
"""
import numpy as np

from minigrad.backend import check_device, check_same_device, is_float_dtype, namespace
from minigrad.backend import to_device as move_array
from minigrad.function import Function
from minigrad.gradients import unbroadcast
from minigrad.tensor import Tensor, as_tensor


class Reshape(Function):
    """z = x with a new shape (same elements, C order).  Backward: gx = g reshaped back."""
    name = "reshape"

    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.shape = x.shape   # the backward needs only the shape: the node keeps no array
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)


def reshape(x, shape):
    """z = x with a new ``shape`` (``Reshape``)."""
    x = as_tensor(x)
    try:
        return Reshape.apply(x, shape=shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to "
                         f"{shape}") from None


class Transpose(Function):
    """z = x with its axes permuted by ``axes``.  Backward: gx = g permuted by the inverse."""
    name = "transpose"

    @staticmethod
    def forward(ctx, x, *, axes):
        ctx.axes = axes
        return namespace(x).transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        inverse = tuple(sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__))
        return (transpose(g, inverse),)


def transpose(x, axes=None):
    """z = x with permuted axes, reversed by default (``Transpose``)."""
    x = as_tensor(x)
    if axes is None:   # the reversal, a permutation by construction
        return Transpose.apply(x, axes=tuple(range(x.ndim - 1, -1, -1)))
    if any(not -x.ndim <= a < x.ndim for a in axes):
        raise ValueError(f"transpose: axes {tuple(axes)} out of range for {x.ndim} dimensions")
    axes = tuple(a % x.ndim for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dimensions")
    return Transpose.apply(x, axes=axes)


class BroadcastTo(Function):
    """z = x broadcast to ``shape`` (NumPy's rules; a read-only view).
    Backward: gx = g summed back to x's shape (``unbroadcast``)."""
    name = "broadcast_to"

    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.shape = x.shape
        return namespace(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return (unbroadcast(g, ctx.shape),)


def broadcast_to(x, shape):
    """z = x broadcast to ``shape`` (``BroadcastTo``)."""
    x = as_tensor(x)
    shape = tuple(shape)
    try:
        return BroadcastTo.apply(x, shape=shape)
    except ValueError:
        raise ValueError(f"broadcast_to: shape {x.shape} does not broadcast to {shape}") from None


def frozen_index(index):
    """``index`` as a constant tuple (``x[i]`` is ``x[(i,)]``): tensors replaced by their arrays,
    lists and arrays copied and made read-only, so that nothing the caller holds can change it
    afterwards."""
    def freeze(part):
        if isinstance(part, Tensor):
            part = part.data
        if isinstance(part, list):
            part = np.array(part)
        elif isinstance(part, np.ndarray) or hasattr(part, "__cuda_array_interface__"):
            part = part.copy()
        else:
            return part   # ints, slices, None, Ellipsis: immutable already
        if isinstance(part, np.ndarray):
            part.setflags(write=False)
        return part
    return tuple(freeze(i) for i in (index if isinstance(index, tuple) else (index,)))


def _is_basic(index):
    """True when the index only slices (ints, slices, None, ...): no element is read twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in parts)


class GetItem(Function):
    """z = x[index] with NumPy's basic and advanced indexing.
    Backward: gx = scatter_add(g, x's shape, index): zeros with g added at the indexed places."""
    name = "getitem"

    @staticmethod
    def forward(ctx, x, *, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        return (scatter_add(g, ctx.shape, ctx.index),)


def getitem(x, index):
    """z = x[index] (``GetItem``); the index is frozen (module docstring)."""
    return GetItem.apply(as_tensor(x), index=frozen_index(index))


class ScatterAdd(Function):
    """z = zeros of ``shape`` with ``values`` added at ``index`` (the transpose of getitem).

    Integer-array indices may repeat an element; its values are then summed (NumPy's add.at),
    not overwritten.  Backward: gvalues = g[index]."""
    name = "scatter_add"

    @staticmethod
    def forward(ctx, values, *, shape, index):
        ctx.index = index
        xp = namespace(values)
        z = xp.zeros(shape, values.dtype)
        if _is_basic(index):
            z[index] = values
        else:
            xp.add.at(z, index, values)
        return z

    @staticmethod
    def backward(ctx, g):
        return (getitem(g, ctx.index),)


def scatter_add(values, shape, index):
    """z = zeros of ``shape`` with ``values`` added at ``index`` (``ScatterAdd``)."""
    return ScatterAdd.apply(as_tensor(values), shape=tuple(shape), index=frozen_index(index))


class Concatenate(Function):
    """z = the inputs joined along ``axis``.  Backward: g split back into pieces of the inputs'
    sizes."""
    name = "concatenate"

    @staticmethod
    def forward(ctx, *arrays, axis):
        z = namespace(arrays[0]).concatenate(arrays, axis=axis)
        ctx.axis = axis % z.ndim
        ctx.ends = tuple(int(e) for e in np.cumsum([a.shape[ctx.axis] for a in arrays]))
        return z

    @staticmethod
    def backward(ctx, g):
        before = (slice(None),) * ctx.axis
        starts = (0,) + ctx.ends[:-1]
        return tuple(g[(*before, slice(start, end))] for start, end in zip(starts, ctx.ends))


def concatenate(tensors, axis=0):
    """z = the tensors joined along ``axis`` (``Concatenate``)."""
    tensors = _same_device("concatenate", tensors)
    try:
        return Concatenate.apply(*tensors, axis=axis)
    except ValueError:
        raise ValueError(f"concatenate: shapes {[t.shape for t in tensors]} do not fit "
                         f"along axis {axis}") from None


class Stack(Function):
    """z = the inputs (all one shape) stacked along a new ``axis``.
    Backward: gx_i = g taken at position i of that axis."""
    name = "stack"

    @staticmethod
    def forward(ctx, *arrays, axis):
        z = namespace(arrays[0]).stack(arrays, axis=axis)
        ctx.axis = axis % z.ndim
        return z

    @staticmethod
    def backward(ctx, g):
        before = (slice(None),) * ctx.axis
        return tuple(g[(*before, i)] for i in range(len(ctx.needs_input_grad)))


def stack(tensors, axis=0):
    """z = the tensors (all one shape) stacked along a new ``axis`` (``Stack``)."""
    tensors = _same_device("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got "
                         f"{[t.shape for t in tensors]}")
    return Stack.apply(*tensors, axis=axis)


def _same_device(op, tensors):
    """``tensors`` as a non-empty tuple of Tensors on one device."""
    tensors = tuple(as_tensor(t) for t in tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    for t in tensors[1:]:
        check_same_device(op, tensors[0].data, t.data)
    return tensors


class Where(Function):
    """z = x where condition else y, broadcasting all three.  ``condition`` is a constant, not
    differentiated.  Backward: gx = g where condition else 0, gy = g where not condition else 0."""
    name = "where"

    @staticmethod
    def forward(ctx, x, y, *, condition):
        ctx.save_for_backward(condition)
        return namespace(x).where(condition, x, y)

    @staticmethod
    def backward(ctx, g):
        (condition,) = ctx.saved_tensors
        return where(condition.data, g, 0.0), where(condition.data, 0.0, g)


def where(condition, x, y):
    """z = x where ``condition`` (boolean) else y (``Where``)."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(x, Tensor):
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    y = as_tensor(y, like=x)
    check_same_device("where", x.data, y.data)
    if not isinstance(condition, (bool, list, tuple)):  # arrays: on x's device, never copied
        check_same_device("where", x.data, condition)
    condition = namespace(x.data).asarray(condition)
    if condition.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {condition.dtype}")
    try:
        return Where.apply(x, y, condition=condition)
    except ValueError:
        raise ValueError(f"where: shapes {condition.shape}, {x.shape} and {y.shape} "
                         "do not broadcast") from None


class Clone(Function):
    """z = a copy of x, in memory of its own.  Backward: gx = g."""
    name = "clone"

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return (g,)


def clone(x):
    """z = a copy of x (``Clone``)."""
    return Clone.apply(as_tensor(x))


class ToDevice(Function):
    """z = x on ``device`` ("cpu" or "cuda"); on the same device the data is shared, not copied.
    Backward: the gradient moved back to x's device."""
    name = "to"

    @staticmethod
    def forward(ctx, x, *, device):
        ctx.source = "cpu" if namespace(x) is np else "cuda"
        return move_array(x, device)

    @staticmethod
    def backward(ctx, g):
        return (to_device(g, ctx.source),)


def to_device(x, device):
    """z = x on ``device`` (``ToDevice``).  A leaf that requires grad stays where it is, so to
    move a model's parameters in place use ``nn.Module.to``."""
    return ToDevice.apply(as_tensor(x), device=check_device(device))


class AsType(Function):
    """z = x's values in another float ``dtype``.  Backward: the gradient cast back."""
    name = "astype"

    @staticmethod
    def forward(ctx, x, *, dtype):
        ctx.source = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return (astype(g, ctx.source),)


def astype(x, dtype):
    """z = x in float ``dtype`` (``AsType``)."""
    dtype = np.dtype(dtype)
    if not is_float_dtype(dtype):
        raise TypeError(f"astype: {dtype} is not a float dtype")
    return AsType.apply(as_tensor(x), dtype=dtype)
