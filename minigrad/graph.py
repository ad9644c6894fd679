"""The recorded graph and reverse mode over it.

Every differentiable op returns ``make_node(value, parents, vjp, op)``.  ``vjp(g)`` maps the
gradient of the output, ``g``, to one gradient per parent (``None`` where a parent needs none),
each in the broadcast shape of the op; ``unbroadcast`` alone sums it back to the parent's shape.

``backward`` walks the graph in reverse topological order, found iteratively so that a chain of
any length never touches Python's recursion limit.  It refuses what would make a gradient silently
wrong: a VJP returning the wrong number of gradients or a gradient of a shape its parent cannot
have, a complex or non-numeric gradient, and an array saved for the backward pass that changed
since the forward (``minigrad.saved``).
"""
import contextlib
import sys
import threading
import time

import numpy as np

from minigrad import saved
from minigrad.backend import check_same_device, namespace


class _ThreadState(threading.local):
    """What is per thread, as in PyTorch: whether ops record the graph, and the study
    instruments' observers (minigrad.trace, minigrad.detect_anomaly), which see only the ops
    and backward passes of the thread that entered them.  Empty observer lists cost one truth
    test per op.
        forward_observers: fn(out, op, parents) after an op has made its output tensor
        vjp_observers:     fn(tensor, g, parent_grads, seconds) after the VJP of tensor's node ran;
                           parent_grads holds one array per parent, in that parent's shape (None
                           where it needs none)
    """

    def __init__(self):
        self.grad_enabled = True
        self.forward_observers = []
        self.vjp_observers = []


_state = _ThreadState()


def is_grad_enabled():
    """Whether ops record the graph in this thread."""
    return _state.grad_enabled


@contextlib.contextmanager
def no_grad():
    """Context in which this thread's ops compute values only: nothing is recorded, nothing
    requires grad.  Other threads keep recording."""
    state = _state
    previous, state.grad_enabled = state.grad_enabled, False
    try:
        yield
    finally:
        state.grad_enabled = previous


def observers():
    """This thread's (forward_observers, vjp_observers) lists; see ``_ThreadState``."""
    return _state.forward_observers, _state.vjp_observers


class Node:
    """How a tensor was made: the op's name, its input tensors and its VJP closure.

    ``saved`` lists (owner, array, hold) for each array the VJP closure captures: NumPy arrays
    are held read-only until the node is freed (``minigrad.saved``), so that an in-place edit
    cannot silently change the gradient.  ``free`` drops the VJP once backward has used it
    (unless ``retain_graph``), releasing those arrays; a graph dropped without a backward
    releases them when its nodes are collected.
    """

    __slots__ = ("op", "parents", "vjp", "freed", "saved")

    def __init__(self, op, parents, vjp):
        self.op = op
        self.parents = parents
        self.vjp = vjp
        self.freed = False
        self.saved = _hold_captured(vjp, op)

    def saved_arrays(self):
        """Arrays the VJP closure keeps alive for the backward pass, each once."""
        return [array for _, array, _ in self.saved]

    def check_saved(self):
        """Raise if an array saved for this node's VJP changed since the forward."""
        for owner, array, entry in self.saved:
            reason = saved.changed(entry, owner) if entry is not None else None
            if reason is not None:
                what = (f"the data of {_describe(owner)}" if owner is not None
                        else f"an array of shape {array.shape}")
                raise RuntimeError(
                    f"backward: '{self.op}' saved {what} for its backward pass, and it was "
                    f"{reason} after the forward; the gradient would be computed at values the "
                    "forward never saw. Run the forward again after changing it (or call "
                    "backward before changing it)")

    def free(self):
        """Drop the VJP and let the saved arrays go (backward without retain_graph)."""
        self._release()
        self.vjp, self.freed = None, True

    def _release(self):
        if self.saved:
            saved.release([entry for _, _, entry in self.saved if entry is not None], self.op)
            self.saved = ()

    def __del__(self):
        self._release()


def _hold_captured(vjp, op):
    """(owner, array, hold) for each array a VJP closure captures, once each: arrays it holds
    itself (owner None), arrays inside tuples or lists (an index), and the data of the tensors it
    reads (owner that tensor).  NumPy arrays are held read-only (hold None for the others)."""
    closure = vjp.__closure__
    if not closure:
        return ()
    from minigrad.tensor import Tensor

    array_types = _array_types()
    found = {}
    for cell in closure:
        value = cell.cell_contents
        for item in value if type(value) in (tuple, list) else (value,):
            owner = item if isinstance(item, Tensor) else None
            array = item.data if owner is not None else item
            if isinstance(array, array_types) and id(array) not in found:
                found[id(array)] = (owner, array)
    if not found:
        return ()
    host = [a for _, a in found.values() if isinstance(a, np.ndarray)]
    holds = dict(zip(map(id, host), saved.hold(host, op)))
    return tuple((owner, a, holds.get(id(a))) for owner, a in found.values())


def _array_types():
    """NumPy arrays and scalars, and CuPy arrays once CuPy is imported."""
    cupy = sys.modules.get("cupy")
    return _HOST_ARRAYS if cupy is None else (*_HOST_ARRAYS, cupy.ndarray)


_HOST_ARRAYS = (np.ndarray, np.generic)


def _describe(tensor):
    name = f"tensor {tensor.name!r}" if tensor.name else "a tensor"
    made = f"made by '{tensor.op}'" if tensor.op is not None else "a leaf"
    return f"{name} of shape {tensor.shape} ({made})"


def make_node(value, parents, vjp, op):
    """Wrap an op's output array; record (parents, vjp) when grad mode is on in this thread
    and any parent requires grad."""
    from minigrad.tensor import Tensor

    if isinstance(value, np.generic):  # NumPy reductions return scalars, not 0-d arrays
        value = np.asarray(value)
    out = Tensor._wrap(value)
    state = _state
    if state.grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._node = Node(op, parents, vjp)
    for observe in state.forward_observers:
        observe(out, op, parents)
    return out


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``.

    The one place where a broadcast gradient is reduced back to its operand's shape.
    """
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    if leading > 0:
        grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if grad.shape != shape:
        raise ValueError(f"unbroadcast: gradient of shape {grad.shape} cannot be reduced to {shape}")
    return grad


def topological_order(root):
    """Tensors that require grad and lead to ``root``, each after all of its parents."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            stack.extend((p, False) for p in tensor._node.parents
                         if p.requires_grad and id(p) not in visited)
    return order


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf), contracted with ``grad``, into every leaf's ``.grad``."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad "
                           "(no input had requires_grad=True, or it was made under no_grad())")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: grad can be omitted only for a one-element output; "
                               f"this output has shape {root.shape}")
        grad = namespace(root.data).ones_like(root.data)
    else:
        grad = _checked_gradient(grad, root, "backward: grad", "the output")

    vjp_observers = _state.vjp_observers
    grads = {id(root): grad}
    handed_out = {id(grad)}  # arrays stored as some .grad (or the caller's) in this pass
    for tensor in reversed(topological_order(root)):
        g = grads.pop(id(tensor), None)
        if g is None:
            continue
        for hook in tensor._hooks.values():
            replaced = hook(g)
            if replaced is not None:
                g = _checked_gradient(replaced, tensor, "register_hook: a hook returned a gradient",
                                      "a tensor")
        node = tensor._node
        if node is None or tensor._retains_grad:
            tensor.grad = _owned(g, handed_out) if tensor.grad is None else _sum(tensor.grad, g)
        if node is None:
            continue
        if node.freed:
            raise RuntimeError(f"backward: the graph through '{node.op}' was already freed by an "
                               "earlier backward(); pass retain_graph=True to that call to "
                               "backward through it again")
        node.check_saved()
        started = time.perf_counter() if vjp_observers else None
        parent_grads = [None if pg is None or not parent.requires_grad
                        else _parent_gradient(node, i, pg, tensor.shape)
                        for i, (parent, pg) in enumerate(zip(node.parents,
                                                             _checked_count(node, node.vjp(g))))]
        for observe in vjp_observers:
            observe(tensor, g, parent_grads, time.perf_counter() - started)
        for parent, pg in zip(node.parents, parent_grads):
            if pg is not None:
                key = id(parent)
                grads[key] = pg if key not in grads else _sum(grads[key], pg)
        if not retain_graph:
            node.free()


def _checked_gradient(value, tensor, what, whose):
    """``value`` (an array, Tensor, number or list) as ``tensor``'s gradient: real numbers of its
    shape and device, in its dtype; anything else is an error naming ``what`` arrived."""
    value = _array(value)
    if not hasattr(value, "shape") or isinstance(value, np.generic):  # a number or a list:
        value = namespace(tensor.data).asarray(value)                  # made where tensor lives
    check_same_device(what, tensor.data, value)
    if value.dtype.kind not in "fiu":
        dropped = "; its imaginary part would be dropped" if value.dtype.kind == "c" else ""
        raise TypeError(f"{what} of dtype {value.dtype}: gradients are real numbers{dropped}")
    if tuple(value.shape) != tensor.shape:
        raise ValueError(f"{what} of shape {tuple(value.shape)} for {whose} of shape "
                         f"{tensor.shape}")
    return value.astype(tensor.dtype, copy=False)  # gradients keep their tensor's dtype


def _checked_count(node, parent_grads):
    """The VJP's result, refused unless it is one gradient (or None) per parent."""
    if not isinstance(parent_grads, (tuple, list)) or len(parent_grads) != len(node.parents):
        got = (f"{len(parent_grads)} gradient{'s' if len(parent_grads) != 1 else ''}"
               if isinstance(parent_grads, (tuple, list))
               else f"an object of type {type(parent_grads).__name__}")
        raise TypeError(f"backward: vjp of '{node.op}' returned {got} for {len(node.parents)} "
                        f"parent{'s' if len(node.parents) != 1 else ''}; it must return a tuple "
                        "with one gradient (or None) per parent")
    return parent_grads


def _parent_gradient(node, i, pg, out_shape):
    """Gradient ``pg`` that the VJP of ``node`` sent to parent i, in that parent's shape and dtype.

    A VJP returns either the parent's shape or, for a parent that the op broadcast, the op's
    output shape; ``unbroadcast`` reduces the latter.  Any other shape means a wrong VJP."""
    parent = node.parents[i]
    if isinstance(pg, np.generic):  # arithmetic on 0-d arrays gives NumPy scalars
        pg = np.asarray(pg)
    if tuple(pg.shape) != parent.shape:
        if tuple(pg.shape) != out_shape:
            raise ValueError(f"backward: vjp of '{node.op}' returned a gradient of shape "
                             f"{tuple(pg.shape)} for parent {i + 1} of shape {parent.shape}; "
                             f"expected {parent.shape}, or the output's shape {out_shape} where "
                             "the op broadcast that parent")
        pg = unbroadcast(pg, parent.shape)
    if pg.dtype != parent.dtype:
        if pg.dtype.kind not in "fiu":
            raise TypeError(f"backward: vjp of '{node.op}' returned a gradient of dtype "
                            f"{pg.dtype} for parent {i + 1}; gradients are real numbers")
        pg = pg.astype(parent.dtype)
    return pg


def _sum(a, b):
    """a + b, kept an array (0-d arrays add up to a NumPy scalar)."""
    total = a + b
    return np.asarray(total) if isinstance(total, np.generic) else total


def _array(value):
    """The array inside a Tensor, or the value itself (an ndarray's ``.data`` is a buffer)."""
    from minigrad.tensor import Tensor

    return value.data if isinstance(value, Tensor) else value


def _owned(grad, handed_out):
    """``grad`` to store as a ``.grad``: copied if it is a view, read-only, or already stored
    elsewhere (VJPs may pass one array to several inputs), so that no two ``.grad`` share memory
    and in-place edits of one (clipping, scaling) never touch another."""
    if id(grad) in handed_out or grad.base is not None or not getattr(grad.flags, "writeable", True):
        grad = grad.copy()
    handed_out.add(id(grad))
    return grad
