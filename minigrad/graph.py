"""The recorded graph and reverse mode over it.

Every differentiable op returns ``make_node(value, parents, vjp, op)``.  ``vjp(g)`` maps the
gradient of the output, ``g``, to one gradient per parent (``None`` where a parent needs none),
each in the broadcast shape of the op; ``unbroadcast`` alone sums it back to the parent's shape.

``backward`` walks the graph in reverse topological order, found iteratively so that a chain of
any length never touches Python's recursion limit.
"""
import contextlib
import time

import numpy as np

from minigrad.backend import namespace

_grad_enabled = True

# Observers for the study instruments (minigrad.trace, minigrad.detect_anomaly); empty in normal
# use, where each costs one truth test per op.
#   forward_observers: fn(out, op, parents) after an op has made its output tensor
#   vjp_observers:     fn(tensor, g, parent_grads, seconds) after the VJP of tensor's node ran
forward_observers = []
vjp_observers = []


def is_grad_enabled():
    """Whether ops currently record the graph."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad():
    """Context in which ops compute values only: nothing is recorded, nothing requires grad."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Node:
    """How a tensor was made: the op's name, its input tensors and its VJP closure.

    ``vjp`` is dropped once backward has used it (unless ``retain_graph``), releasing the arrays
    it saved; ``saved`` names those arrays so views of the graph can show and count them.
    """

    __slots__ = ("op", "parents", "vjp", "freed")

    def __init__(self, op, parents, vjp):
        self.op = op
        self.parents = parents
        self.vjp = vjp
        self.freed = False

    def saved_arrays(self):
        """Arrays the VJP closure keeps alive for the backward pass: arrays it holds itself and
        the data of tensors it reads (a mul's VJP reads both inputs); each array once."""
        if self.vjp is None or self.vjp.__closure__ is None:
            return []
        found = {}
        for cell in self.vjp.__closure__:
            value = cell.cell_contents
            value = getattr(value, "data", None) if hasattr(value, "_node") else value
            if hasattr(value, "nbytes") and hasattr(value, "shape"):
                found[id(value)] = value
        return list(found.values())


def make_node(value, parents, vjp, op):
    """Wrap an op's output array; record (parents, vjp) when any parent requires grad."""
    from minigrad.tensor import Tensor

    if isinstance(value, np.generic):  # NumPy reductions return scalars, not 0-d arrays
        value = np.asarray(value)
    out = Tensor._wrap(value)
    if _grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._node = Node(op, parents, vjp)
    for observe in forward_observers:
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
        grad = _array(grad)
        if tuple(grad.shape) != root.shape:
            raise ValueError(f"backward: grad has shape {tuple(grad.shape)}, "
                             f"the output has shape {root.shape}")
        grad = grad.astype(root.dtype, copy=False)  # gradients keep their tensor's dtype

    grads = {id(root): grad}
    handed_out = {id(grad)}  # arrays stored as some .grad (or the caller's) in this pass
    for tensor in reversed(topological_order(root)):
        g = grads.pop(id(tensor), None)
        if g is None:
            continue
        for hook in tensor._hooks.values():
            replaced = hook(g)
            if replaced is not None:
                g = _checked_hook_result(replaced, tensor)
        node = tensor._node
        if node is None or tensor._retains_grad:
            tensor.grad = _owned(g, handed_out) if tensor.grad is None else tensor.grad + g
        if node is None:
            continue
        if node.freed:
            raise RuntimeError(f"backward: the graph through '{node.op}' was already freed by an "
                               "earlier backward(); pass retain_graph=True to that call to "
                               "backward through it again")
        if vjp_observers:
            started = time.perf_counter()
            parent_grads = node.vjp(g)
            for observe in vjp_observers:
                observe(tensor, g, parent_grads, time.perf_counter() - started)
        else:
            parent_grads = node.vjp(g)
        for parent, pg in zip(node.parents, parent_grads):
            if pg is None or not parent.requires_grad:
                continue
            pg = unbroadcast(pg, parent.shape)
            if pg.dtype != parent.dtype:
                pg = pg.astype(parent.dtype)
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg
        if not retain_graph:
            node.vjp, node.freed = None, True


def _checked_hook_result(replaced, tensor):
    replaced = _array(replaced)
    if tuple(replaced.shape) != tensor.shape:
        raise ValueError(f"register_hook: a hook returned a gradient of shape "
                         f"{tuple(replaced.shape)} for a tensor of shape {tensor.shape}")
    return replaced


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
