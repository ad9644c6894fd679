"""Reverse mode over the recorded graph, to any order.

Every op is a ``minigrad.function.Function``; applying one records a node (its inputs, what its
backward reads) on the Tensors it returns.  ``backward`` visits the nodes that lead to the roots
in reverse topological order, so that a node's gradients are complete before its backward runs,
and hands each input its share: leaves receive theirs in ``.grad``.

The backward formulas compute with minigrad ops on Tensors.  In a first-order pass grad mode is
off while they run, so they record nothing; with ``create_graph=True`` it is on, so the gradients
are Tensors of a new graph that can be differentiated again.  One formula per op serves every
order.  The order is found iteratively, so a chain of any length never touches Python's recursion
limit.  Whatever would make a gradient silently wrong is refused, naming the op: a backward
returning the wrong number of gradients, a gradient of a shape, dtype or device its input cannot
have, an array where a differentiable gradient is needed, and an array saved for the backward
pass that changed since the forward (``minigrad.saved``).
"""
import threading
import time

from minigrad import saved
from minigrad.backend import namespace
from minigrad.grad_mode import set_grad_enabled, state
from minigrad.gradients import as_gradient, checked_result
from minigrad.tensor import Tensor

_accumulating = threading.Lock()   # threads adding into one leaf's .grad take turns


def backward(roots, grads, retain_graph=False, create_graph=False, inputs=None):
    """Reverse mode from ``roots`` (tensors that require grad) with cotangents ``grads`` (one per
    root: None for a one-element root, else a Tensor, array, number or list of its shape).

    ``inputs`` None: accumulate d(roots)/d(leaf) into every leaf's ``.grad`` (and that of tensors
    with ``retain_grad``): arrays, or Tensors of a new graph with ``create_graph``.  ``inputs`` a
    list of tensors: return their gradients (Tensors, None where no path leads there), touching
    no ``.grad``.  ``retain_graph``: keep the nodes for another backward; without it each node is
    freed once its backward has run.
    """
    seeds = [_seed(root, grad) for root, grad in zip(roots, grads)]
    pending = _Pending()
    for root, seed in zip(roots, seeds):
        pending.add(root, seed)
    order = topological_order(roots)
    if inputs is not None:
        order = _leading_to(order, inputs)
    arrival = _Arrival(inputs, create_graph, seeds)
    released, observers = [], state.backward_observers
    forward_observers, state.forward_observers = state.forward_observers, []  # not the forward's
    try:
        with set_grad_enabled(create_graph):
            for node in reversed(order):
                grads_out = pending.take(node)
                if grads_out is None:
                    continue
                for out in node.outputs:   # their gradients are complete now
                    if out is not None and grads_out[out.output_index] is not None:
                        grads_out[out.output_index] = arrival.arrive(
                            out, grads_out[out.output_index])
                started = time.perf_counter()
                node_inputs = node.inputs
                input_grads = checked_result(node, node_inputs,
                                             node.run_backward(grads_out, create_graph))
                for t, g in zip(node_inputs, input_grads):
                    if g is not None and t is not None:
                        pending.add(t, g)
                if observers:
                    _observe(observers, node, grads_out, input_grads, started)
                if not retain_graph:
                    released.append(node.free())
            for leaf, g in pending.leaves():
                arrival.arrive(leaf, g)
    finally:
        state.forward_observers = forward_observers
        saved.release(released)
    return None if inputs is None else [arrival.found.get(id(t)) for t in inputs]


class _Arrival:
    """Where a tensor's complete gradient goes, after its hooks: returned by ``grad`` (``inputs``
    given and the tensor among them), or else into ``.grad`` (a leaf, or ``retain_grad``)."""

    def __init__(self, inputs, create_graph, seeds):
        self.wanted = None if inputs is None else {id(t) for t in inputs}
        self.create_graph = create_graph
        self.found = {}
        self.handed_out = {id(g.data) for g in seeds}  # the caller's cotangents: never a .grad

    def arrive(self, tensor, g):
        """``g`` after ``tensor``'s hooks, delivered where it goes; the gradient to pass on."""
        if self.wanted is None and tensor.node is not None and not tensor.hooks \
                and not tensor.retains_grad:
            return g   # NOTE: most tensors of a graph, settled without a call
        g = _hooked(tensor, g, self.create_graph)
        if self.wanted is not None:
            if id(tensor) in self.wanted:
                self.found[id(tensor)] = g
        elif tensor.node is None or tensor.retains_grad:
            _accumulate(tensor, g, self.create_graph, self.handed_out)
        return g


class _Pending:
    """Gradients on their way: per node, one slot per output; per leaf, the sum so far."""

    def __init__(self):
        self.nodes = {}    # id(node) -> [gradient or None per output]
        self.leaf = {}     # id(leaf) -> [leaf, gradient]

    def add(self, tensor, g):
        node = tensor.node
        if node is None:
            entry = self.leaf.get(id(tensor))
            if entry is None:
                self.leaf[id(tensor)] = [tensor, g]
            else:
                entry[1] = entry[1] + g
            return
        slots = self.nodes.get(id(node))
        if slots is None:
            slots = self.nodes[id(node)] = [None] * node.output_count
        i = tensor.output_index
        slots[i] = g if slots[i] is None else slots[i] + g

    def take(self, node):
        return self.nodes.pop(id(node), None)

    def leaves(self):
        return list(self.leaf.values())


def topological_order(roots):
    """The nodes that lead to ``roots`` (tensors), each after the nodes of its inputs: a
    depth-first post-order, kept on an explicit stack of (node, iterator over its input nodes)
    so that a chain of any length never recurses."""
    roots = roots if isinstance(roots, (list, tuple)) else (roots,)
    order, visited = [], set()
    for root in roots:
        if root.node is None or id(root.node) in visited:
            continue
        visited.add(id(root.node))
        stack = [(root.node, _input_nodes(root.node))]
        while stack:
            node, inputs = stack[-1]
            for parent in inputs:
                if id(parent) not in visited:
                    visited.add(id(parent))
                    stack.append((parent, _input_nodes(parent)))
                    break
            else:  # every input node is placed: this one goes after them
                stack.pop()
                order.append(node)
    return order


def _input_nodes(node):
    """The nodes that made ``node``'s inputs which require grad, last input first."""
    return iter([t.node for t in reversed(node.inputs)
                 if t is not None and t.node is not None and t.requires_grad])


def _leading_to(order, inputs):
    """The nodes of ``order`` with a path to one of ``inputs``: only their backward is needed."""
    leads = {id(t.node) for t in inputs if t.node is not None}
    wanted = {id(t) for t in inputs}
    kept = []
    for node in order:
        if id(node) in leads or any(t is not None and (id(t) in wanted or id(t.node) in leads)
                                    for t in node.inputs):
            leads.add(id(node))
            kept.append(node)
    return kept


def _seed(root, grad):
    """The cotangent a root starts with: ones for a one-element root, else ``grad`` checked."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no input had "
                           "requires_grad=True, or it was made under no_grad())")
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward: grad can be omitted only for a one-element output; "
                               f"this output has shape {root.shape}")
        return Tensor(namespace(root.data).ones_like(root.data))
    return as_gradient(grad, root, "backward: grad", "the output", arrays_allowed=True)


def _hooked(tensor, g, create_graph):
    """``g`` after the tensor's hooks, which run with grad mode as the pass has it."""
    if tensor.hooks:
        for hook in list(tensor.hooks.values()):
            replaced = hook(g)
            if replaced is not None:
                made = f"made by '{tensor.op}'" if tensor.op is not None else "a leaf"
                g = as_gradient(replaced, tensor, f"register_hook: a hook of a tensor ({made}) "
                                "returned a gradient",
                                "a tensor", arrays_allowed=not create_graph)
    return g


def _accumulate(tensor, g, create_graph, handed_out):
    """Add ``g`` to ``tensor.grad``, as one step even when threads race (a lock): an array of its
    own in first order, a Tensor of the new graph with create_graph.  A first store is a copy, as
    in PyTorch, wherever ``.grad`` could share memory with another tensor's gradient or with a
    cotangent passed in (in-place edits of one would touch the other): always with create_graph;
    in first order unless the array is one a backward has just made for this tensor alone."""
    with _accumulating:
        if tensor.grad is None:
            if create_graph:
                tensor.grad = ops.clone(g)
                return
            array = g.data
            if id(array) in handed_out or array.base is not None \
                    or not getattr(array.flags, "writeable", True):
                array = array.copy()
            handed_out.add(id(array))
            tensor.grad = array
        elif create_graph:
            tensor.grad = g + tensor.grad
        else:
            tensor.grad = _data(tensor.grad) + g.data


def _data(grad):
    """A ``.grad`` as an array: first order stores arrays, create_graph Tensors."""
    return grad.data if isinstance(grad, Tensor) else grad


def _observe(observers, node, grads_out, input_grads, started):
    seconds = time.perf_counter() - started
    out_arrays = [None if g is None else g.data for g in grads_out]
    in_arrays = [None if g is None else g.data for g in input_grads]
    for observe in observers:
        observe(node, out_arrays, in_arrays, seconds)


from minigrad import ops  # noqa: E402  (ops import Tensor, which imports this module)
