"""Ops that move elements without arithmetic: reshape, transpose, broadcast_to, getitem (and its
transpose, scatter_add), concatenate, stack, and the selection ``where``.

Their VJPs move the gradient back with the same ops, so every order works: reshape and transpose
undo themselves, broadcast_to sums (``unbroadcast``), getitem and scatter_add are each other's
VJP.  Indices and where's condition are constants, not differentiated.
"""
from minigrad.backend import check_same_device, namespace
from minigrad.graph import unbroadcast
from minigrad.tensor import Tensor, as_tensor, make_node


def reshape(x, shape):
    """z = x with a new shape (same elements, C order).  VJP: gx = g reshaped to x's shape."""
    x = as_tensor(x)
    try:
        z = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {shape}") from None
    shape = x.shape  # the VJP needs only the shape, so the node keeps no array
    return make_node(z, (x,), lambda g: (g.reshape(shape),), "reshape")


def transpose(x, axes=None):
    """z = x with permuted axes (reversed by default).  VJP: gx = g permuted by the inverse."""
    x = as_tensor(x)
    xp = namespace(x.data)
    if axes is None:  # the reversal, its own inverse
        return make_node(xp.transpose(x.data), (x,), lambda g: (transpose(g),), "transpose")
    if any(not -x.ndim <= a < x.ndim for a in axes):
        raise ValueError(f"transpose: axes {tuple(axes)} out of range for {x.ndim} dimensions")
    axes = tuple(a % x.ndim for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dimensions")
    inverse = tuple(sorted(range(x.ndim), key=axes.__getitem__))
    return make_node(xp.transpose(x.data, axes), (x,), lambda g: (transpose(g, inverse),),
                     "transpose")


def broadcast_to(x, shape):
    """z = x broadcast to ``shape`` (NumPy's rules; a read-only view).
    VJP: gx = g summed back to x's shape (``unbroadcast``)."""
    x = as_tensor(x)
    shape = tuple(shape)
    try:
        z = namespace(x.data).broadcast_to(x.data, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: shape {x.shape} does not broadcast to {shape}") from None
    source = x.shape
    return make_node(z, (x,), lambda g: (unbroadcast(g, source),), "broadcast_to")


def _index_data(index):
    """Replace tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic(index):
    """True when the index only slices (ints, slices, None, ...): no element is read twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in parts)


def getitem(x, index):
    """z = x[index] with NumPy's basic and advanced indexing.

    VJP: gx = scatter_add(g, x's shape, index): zeros with g added into the indexed places.
    """
    x = as_tensor(x)
    index = _index_data(index)
    shape = x.shape
    return make_node(x.data[index], (x,), lambda g: (scatter_add(g, shape, index),), "getitem")


def scatter_add(values, shape, index):
    """z = zeros of ``shape`` with ``values`` added at ``index`` (the transpose of getitem).

    Integer-array indices may repeat an element; its values are then summed (NumPy's add.at),
    not overwritten.  VJP: gvalues = g[index].
    """
    values = as_tensor(values)
    index = _index_data(index)
    xp = namespace(values.data)
    z = xp.zeros(shape, values.dtype)
    if _is_basic(index):
        z[index] = values.data
    else:
        xp.add.at(z, index, values.data)
    return make_node(z, (values,), lambda g: (getitem(g, index),), "scatter_add")


def concatenate(tensors, axis=0):
    """z = the tensors joined along ``axis``.  VJP: g split back into pieces of the input sizes."""
    tensors = tuple(as_tensor(t) for t in tensors)
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    for t in tensors[1:]:
        check_same_device("concatenate", tensors[0].data, t.data)
    xp = namespace(tensors[0].data)
    try:
        z = xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError:
        raise ValueError(f"concatenate: shapes {[t.shape for t in tensors]} do not fit "
                         f"along axis {axis}") from None
    ends = []
    for t in tensors:
        ends.append((ends[-1] if ends else 0) + t.shape[axis])

    starts = [0, *ends[:-1]]
    axis = axis % z.ndim

    def vjp(g):
        before = (slice(None),) * axis
        return tuple(g[(*before, slice(start, end))] for start, end in zip(starts, ends))
    return make_node(z, tensors, vjp, "concatenate")


def stack(tensors, axis=0):
    """z = the tensors (all one shape) stacked along a new ``axis``.
    VJP: gx_i = g taken at position i of that axis."""
    tensors = tuple(as_tensor(t) for t in tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got {[t.shape for t in tensors]}")
    for t in tensors[1:]:
        check_same_device("stack", tensors[0].data, t.data)
    xp = namespace(tensors[0].data)
    z = xp.stack([t.data for t in tensors], axis=axis)
    new_axis = axis % z.ndim

    def vjp(g):
        before = (slice(None),) * new_axis
        return tuple(g[(*before, i)] for i in range(len(tensors)))
    return make_node(z, tensors, vjp, "stack")


def where(condition, x, y):
    """z = x where condition else y, broadcasting all three.  ``condition`` is not
    differentiated.  VJP: gx = g where condition else 0, gy = g where not condition else 0."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(x, Tensor):
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    y = as_tensor(y, like=x)
    check_same_device("where", x.data, y.data)
    if not isinstance(condition, (bool, list, tuple)):  # arrays: on x's device, never copied
        check_same_device("where", x.data, condition)
    xp = namespace(x.data)
    condition = xp.asarray(condition)
    if condition.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {condition.dtype}")
    try:
        z = xp.where(condition, x.data, y.data)
    except ValueError:
        raise ValueError(f"where: shapes {condition.shape}, {x.shape} and {y.shape} "
                         "do not broadcast") from None

    def vjp(g):
        return where(condition, g, 0.0), where(condition, 0.0, g)
    return make_node(z, (x, y), vjp, "where")
