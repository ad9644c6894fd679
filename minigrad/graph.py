"""The recorded graph and reverse mode over it, to any order.

Every differentiable op returns ``make_node(value, parents, vjp, op)`` (minigrad.tensor), which
records a ``Node``: the op, its parent tensors and its VJP.  ``vjp(g)`` maps the gradient of the
output, ``g``, to one gradient per parent (``None`` where a parent needs none), each in the
parent's shape or, for a parent the op broadcast, the output's (``unbroadcast`` sums it back).
A VJP that reads the op's output takes it as a second argument, ``vjp(g, z)``.

VJPs compute with operators and minigrad's own ops, so a gradient can itself be part of a
graph: with ``create_graph=True`` ``backward`` runs them recording, on Tensors, when the gradients
are to be differentiated again; otherwise it runs them in values mode, where g is an array, a
Tensor's operators act on its data and ops return their forward's arrays, so that a first-order
pass costs what hand-written NumPy would.  One formula per op serves every order.

``backward`` walks the graph in reverse topological order, found iteratively so that a chain of
any length never touches Python's recursion limit.  It refuses what would make a gradient silently
wrong: a VJP returning the wrong number of gradients or a gradient of a shape its parent cannot
have, a complex or non-numeric gradient, an array gradient where a differentiable one is needed,
and an array saved for the backward pass that changed since the forward (``minigrad.saved``).

This module knows tensors only as the objects it is given (it never imports minigrad.tensor):
Tensor depends on the graph, not the other way round.
"""
import contextlib
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
                           g and parent_grads are arrays, one per parent in that parent's shape
                           (None where it needs none)
    """

    def __init__(self):
        self.grad_enabled = True
        self.values_only = False  # a first-order backward's VJPs run: ops compute arrays
        self.forward_observers = []
        self.vjp_observers = []


_state = _ThreadState()


def is_grad_enabled():
    """Whether ops record the graph in this thread."""
    return _state.grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Context in which this thread's ops record the graph (``mode`` true) or compute values
    only; the previous mode comes back on exit.  Other threads are not affected."""
    state = _state
    previous, state.grad_enabled = state.grad_enabled, bool(mode)
    try:
        yield
    finally:
        state.grad_enabled = previous


def no_grad():
    """Context in which this thread's ops compute values only: nothing is recorded, nothing
    requires grad.  Other threads keep recording."""
    return set_grad_enabled(False)


def enable_grad():
    """Context in which this thread's ops record the graph again (inside ``no_grad``)."""
    return set_grad_enabled(True)


def observers():
    """This thread's (forward_observers, vjp_observers) lists; see ``_ThreadState``."""
    return _state.forward_observers, _state.vjp_observers


class Node:
    """How a tensor was made: the op's name, its input tensors and its VJP.

    ``saved`` lists (owner, array) for each array the VJP reads: ``owner`` is the tensor it is
    read from (the parent, or OUTPUT for the op's own output).  ``holds`` pairs the owners of the
    NumPy ones with their read-only holds (``minigrad.saved``), which keep in-place edits from
    changing the gradient.  ``free`` drops the VJP once backward has used it (unless
    ``retain_graph``), and backward releases those arrays; a graph dropped without a backward
    releases them when its nodes are collected.
    """

    __slots__ = ("op", "parents", "vjp", "reads_output", "freed", "saved", "holds")

    def __init__(self, op, parents, vjp, reads_output, captured):
        self.op = op
        self.parents = parents
        self.vjp = vjp
        self.reads_output = reads_output
        self.freed = False
        self.saved = captured
        self.holds = saved.hold(captured, op) if captured else ()

    def saved_arrays(self):
        """Arrays the VJP keeps alive for the backward pass, each once."""
        return [array for _, array in self.saved]

    def call_vjp(self, g, out, output):
        """The VJP's gradients for g, after checking that what it saved is unchanged; ``out``
        is the node's tensor and ``output`` what a ``vjp(g, z)`` receives as z (the tensor, or
        its array in values mode)."""
        for owner, entry in self.holds:
            owner = out if owner is OUTPUT else owner
            array = entry.array
            if entry.modified_by is None and not array.flags.writeable and (
                    owner is None or owner.data is array):
                continue  # unchanged: the common case, settled without a call
            reason = saved.changed(entry, owner)
            if reason is not None:
                what = (f"the data of {_describe(owner)}" if owner is not None
                        else f"an array of shape {array.shape}")
                raise RuntimeError(
                    f"backward: '{self.op}' saved {what} for its backward pass, and it was "
                    f"{reason} after the forward; the gradient would be computed at values the "
                    "forward never saw. Run the forward again after changing it (or call "
                    "backward before changing it)")
        return self.vjp(g, output) if self.reads_output else self.vjp(g)

    def free(self):
        """Drop the VJP (backward without retain_graph); returns (holds, op) for the caller to
        release with ``saved.release``, so that one backward releases all of its nodes at once."""
        released = (self.holds, self.op)
        self.vjp, self.freed, self.saved, self.holds = None, True, (), ()
        return released

    def __del__(self):
        if self.holds:  # a graph dropped without a backward
            saved.release([(self.holds, self.op)])


OUTPUT = "output"  # the owner of a saved array that is the op's own output


def _describe(tensor):
    name = f"tensor {tensor.name!r}" if tensor.name else "a tensor"
    made = f"made by '{tensor.op}'" if tensor.op is not None else "a leaf"
    return f"{name} of shape {tensor.shape} ({made})"


def unbroadcast(grad, shape):
    """Sum ``grad`` (an array or a Tensor) over the axes that broadcasting added or stretched,
    giving ``shape``.  The one place where a broadcast gradient is reduced to its operand's."""
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


def topological_order(roots):
    """Tensors that require grad and lead to ``roots`` (a tensor or a sequence), each after all
    of its parents: a depth-first post-order, kept on an explicit stack of (tensor, iterator over
    its parents) so that a chain of any length never recurses."""
    roots = roots if isinstance(roots, (list, tuple)) else (roots,)
    order, visited = [], set()
    for root in roots:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack = [(root, _parents(root))]
        while stack:
            tensor, parents = stack[-1]
            for parent in parents:
                if parent.requires_grad and id(parent) not in visited:
                    visited.add(id(parent))
                    stack.append((parent, _parents(parent)))
                    break
            else:  # every parent is placed: the tensor goes after them
                stack.pop()
                order.append(tensor)
    return order


def _parents(tensor):
    """A tensor's parents, last first (the order format_graph's numbering has always had)."""
    return reversed(tensor._node.parents) if tensor._node is not None else ()


def backward(roots, grads, retain_graph=False, create_graph=False, inputs=None):
    """Reverse mode from ``roots`` (tensors that require grad) with cotangents ``grads`` (one per
    root: None for a one-element root, else an array, Tensor, number or list of its shape).

    ``inputs`` None: accumulate d(roots)/d(leaf) into every leaf's ``.grad`` (and that of tensors
    with ``retain_grad``).  ``inputs`` a list of tensors: return their gradients (a Tensor, or
    None where no path leads there), touching no ``.grad``, and run only the VJPs on the way.

    ``create_graph``: the VJPs record their ops, so the gradients are Tensors of a new graph
    (``.grad`` holds Tensors then).  Without it, the VJPs run in values mode: their operators
    and ops compute plain arrays, and ``.grad`` holds arrays.  ``retain_graph``: keep the VJPs
    for another backward; without it each node is freed once its VJP has run.
    """
    tensor_type = type(roots[0])
    lift = tensor_type._wrap if create_graph else _same  # an array as this pass's gradient
    pending = {}  # id(tensor) -> its gradient so far (a Tensor, or an array in values mode)
    for root, grad in zip(roots, grads):
        if not root.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input had "
                               "requires_grad=True, or it was made under no_grad())")
        if grad is None:
            if root.data.size != 1:
                raise RuntimeError(f"backward: grad can be omitted only for a one-element output;"
                                   f" this output has shape {root.shape}")
            grad = lift(namespace(root.data).ones_like(root.data))
        else:
            grad = _checked_gradient(grad, root, "backward: grad", "the output", lift,
                                     create_graph)
        key = id(root)
        pending[key] = grad if key not in pending else pending[key] + grad

    order = topological_order(roots)
    wanted = None if inputs is None else {id(t) for t in inputs}
    if wanted is not None:  # only tensors with a path to an input need their VJP
        leads = set(wanted)
        for tensor in order:
            if tensor._node is not None and any(id(p) in leads for p in tensor._node.parents):
                leads.add(id(tensor))
    found = {}
    released = []       # (holds, op) of the nodes freed: let go in one call at the end
    handed_out = {id(_data(grad)) for grad in pending.values()}  # arrays stored as a .grad
    kind = tensor_type if create_graph else np.ndarray  # what a VJP's gradients should be
    state = _state
    forward_observers, vjp_observers = state.forward_observers, state.vjp_observers
    state.forward_observers = []  # the VJPs' own ops are not the forward's: observers skip them
    state.values_only = not create_graph
    try:
        with set_grad_enabled(create_graph):
            for tensor in reversed(order):
                key = id(tensor)
                g = pending.pop(key, None)
                if g is None:
                    continue
                if tensor._hooks:
                    g = _hooked(tensor, g, lift, create_graph)
                node = tensor._node
                if wanted is not None:
                    if key in wanted:
                        found[key] = g
                    if node is None or key not in leads:
                        continue
                elif node is None or tensor._retains_grad:
                    _accumulate(tensor, g, create_graph, handed_out)
                if node is None:
                    continue
                if node.freed:
                    raise RuntimeError(f"backward: the graph through '{node.op}' was already "
                                       "freed by an earlier backward(); pass retain_graph=True "
                                       "to that call to backward through it again")
                started = time.perf_counter() if vjp_observers else None
                parent_grads = _checked_count(node, node.call_vjp(
                    g, tensor, tensor if create_graph else tensor.data))
                for i, parent in enumerate(node.parents):
                    pg = parent_grads[i]
                    if pg is None or not parent.requires_grad:
                        parent_grads[i] = None
                        continue
                    if not (type(pg) is kind and pg.shape == parent.shape
                            and pg.dtype == parent.dtype):  # else: taken as it is
                        pg = parent_grads[i] = _parent_gradient(node, i, pg, tensor.shape, lift,
                                                                create_graph)
                    key = id(parent)
                    earlier = pending.get(key)
                    pending[key] = pg if earlier is None else earlier + pg
                for observe in vjp_observers:
                    observe(tensor, _data(g), [None if pg is None else _data(pg)
                                               for pg in parent_grads],
                            time.perf_counter() - started)
                if not retain_graph:
                    released.append(node.free())
    finally:
        state.forward_observers = forward_observers
        state.values_only = False
        saved.release(released)
    if inputs is None:
        return None
    return [None if g is None else g if create_graph else tensor_type._wrap(_asarray(g))
            for g in (found.get(id(t)) for t in inputs)]


def _same(value):
    return value


def _data(value):
    """The array of a gradient: a Tensor's data, or the array itself (values mode)."""
    return value.data if hasattr(value, "_node") else value


def _asarray(value):
    """A NumPy scalar as the 0-d array it stands for (arithmetic on 0-d arrays gives scalars)."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def _hooked(tensor, g, lift, create_graph):
    """g after the tensor's hooks, which see the gradient as this pass carries it (an array, or
    a Tensor with create_graph) and run with their ops recording as usual."""
    state = _state
    values_only, state.values_only = state.values_only, False
    try:
        for hook in tensor._hooks.values():
            replaced = hook(g)
            if replaced is not None:
                g = _checked_gradient(replaced, tensor, "register_hook: a hook returned a "
                                      "gradient", "a tensor", lift, create_graph)
    finally:
        state.values_only = values_only
    return g


def _accumulate(tensor, g, create_graph, handed_out):
    """Add ``g`` to ``tensor.grad``: a Tensor under create_graph, else an array of its own: copied
    if it is a view, read-only (a graph holds it) or stored already (a VJP may send one array to
    several parents), so that in-place edits of one ``.grad`` never touch another."""
    if create_graph:
        tensor.grad = g if tensor.grad is None else g + tensor.grad
        return
    grad = _asarray(g)
    if tensor.grad is None:
        if id(grad) in handed_out or grad.base is not None \
                or not getattr(grad.flags, "writeable", True):
            grad = grad.copy()
        handed_out.add(id(grad))
        tensor.grad = grad
    else:
        tensor.grad = _asarray(_data(tensor.grad) + grad)


def _checked_gradient(value, tensor, what, whose, lift, create_graph):
    """``value`` (a Tensor, array, number or list) as ``tensor``'s gradient: real numbers of its
    shape and device, in its dtype, as this pass carries gradients (``lift`` of an array, or a
    Tensor with create_graph); anything else is an error naming ``what`` arrived."""
    if hasattr(value, "_node"):  # a Tensor
        array = value.data
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
    if create_graph and hasattr(value, "_node"):  # keep its graph; cast by a differentiable op
        return value if value.dtype == tensor.dtype else value.astype(tensor.dtype)
    return lift(array.astype(tensor.dtype, copy=False))  # gradients keep their tensor's dtype


def _checked_count(node, parent_grads):
    """The VJP's result as a list, refused unless it is one gradient (or None) per parent."""
    if not isinstance(parent_grads, (tuple, list)) or len(parent_grads) != len(node.parents):
        got = (f"{len(parent_grads)} gradient{'s' if len(parent_grads) != 1 else ''}"
               if isinstance(parent_grads, (tuple, list))
               else f"an object of type {type(parent_grads).__name__}")
        raise TypeError(f"backward: vjp of '{node.op}' returned {got} for {len(node.parents)} "
                        f"parent{'s' if len(node.parents) != 1 else ''}; it must return a tuple "
                        "with one gradient (or None) per parent")
    return list(parent_grads)


def _parent_gradient(node, i, pg, out_shape, lift, create_graph):
    """Gradient ``pg`` that the VJP of ``node`` sent to parent i, in that parent's shape and
    dtype, as this pass carries gradients.

    A VJP returns either the parent's shape or, for a parent that the op broadcast, the op's
    output shape; ``unbroadcast`` reduces the latter.  Any other shape means a wrong VJP.  An
    array (a VJP written with NumPy) is taken in values mode only: it has no graph to
    differentiate, so under create_graph it would make the second derivative silently 0."""
    parent = node.parents[i]
    if hasattr(pg, "_node"):
        if not create_graph:
            pg = pg.data  # a VJP that made a Tensor anyway (a custom op)
    elif create_graph:
        raise TypeError(f"backward: vjp of '{node.op}' returned a {type(pg).__name__} for "
                        f"parent {i + 1}, which cannot be differentiated; with "
                        "create_graph=True a VJP must compute with minigrad ops and return "
                        "Tensors")
    else:
        pg = _asarray(pg) if isinstance(pg, (np.generic, int, float)) else pg
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
    return _asarray(pg) if not create_graph else pg
