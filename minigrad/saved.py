"""Arrays a live graph saved for its backward pass are read-only until the graph lets them go.

A VJP reads arrays captured at forward time: a mul's VJP reads both inputs, exp's its output,
getitem's its index.  Editing one of them in place between the forward and the backward would
make the backward compute the gradient at a point the forward never saw, silently.  So each node
``hold``s the NumPy arrays its VJP closure captures, which clears their WRITEABLE flag, and
``release``s them when backward frees it (or when the graph is dropped unused).  An edit in
between fails at the write itself:

    x.data[:] = 10.0    # ValueError: assignment destination is read-only

``holders(array)`` names the ops that keep an array.  An array is held once per node that saves
it and is writeable again when the last one lets go; an array that was read-only already (a
broadcast view, a read-only memmap) stays read-only.

Optimizers update parameters in place through ``modify(array, who)``: the nodes holding that
array let it go at once and remember who changed it, so that a later backward through them
(after ``retain_graph=True``) raises, naming the op, instead of using the new values, as
PyTorch's version counters do.  Each node's backward also checks that its arrays are still
read-only and that the tensors it read still hold them (``changed``), which catches a WRITEABLE
flag set back by hand and a ``.data`` rebound to another array.

NOTE: NumPy arrays only.  CuPy arrays have no WRITEABLE flag, so in-place edits of GPU arrays
are not caught.  A view made before the forward keeps its own flag, so writes through it go
unnoticed; views made while the array is held are read-only too.
"""
import threading

import numpy as np

_lock = threading.Lock()   # graphs in several threads may hold the same array
_held = {}                 # id(array) -> its Hold, while some live node holds it
_pending = []              # released arrays whose base was still read-only: retried later


class Hold:
    """One array held read-only for the live nodes whose op names ``ops`` lists, one each."""

    __slots__ = ("array", "restore", "ops", "modified_by")

    def __init__(self, array, op):
        self.array = array
        self.restore = array.flags.writeable   # make it writeable again when the last node goes
        self.ops = [op]
        self.modified_by = None                # set by modify(): who wrote into it


def hold(captured, op):
    """Hold the NumPy arrays among ``captured`` ((owner, array) pairs) read-only for a node of
    ``op``.  Returns the node's holds: (owner, Hold) for each array held."""
    holds = []
    with _lock:
        for owner, array in captured:
            if isinstance(array, np.ndarray):
                entry = _held.get(id(array))
                if entry is None:
                    entry = _held[id(array)] = Hold(array, op)
                    array.setflags(write=False)  # NOTE: faster than flags.writeable = ...
                else:
                    entry.ops.append(op)
                holds.append((owner, entry))
    return holds


def release(nodes):
    """Let go of the holds of freed nodes, ``nodes`` a list of (holds, op): arrays no node holds
    any more become writeable again."""
    with _lock:
        for holds, op in nodes:
            for _, entry in holds:
                ops = entry.ops
                ops.remove(op)
                if not ops and entry.modified_by is None:  # else modify() let it go already
                    del _held[id(entry.array)]
                    if entry.restore:
                        _make_writeable(entry.array)
        if _pending:
            for array in _pending[:]:
                _pending.remove(array)
                if id(array) not in _held:
                    _make_writeable(array)


def _make_writeable(array):
    """Set WRITEABLE back.  NumPy refuses it for a view whose base is read-only: if a node still
    holds that base, retry at the next release; otherwise the view stays read-only."""
    try:
        array.setflags(write=True)
    except ValueError:
        base = array.base
        while isinstance(base, np.ndarray) and id(base) not in _held:
            base = base.base
        if isinstance(base, np.ndarray):
            _pending.append(array)


def holders(array):
    """The ops of the live nodes that hold ``array`` read-only (empty if none)."""
    with _lock:
        entry = _held.get(id(array))
        return [] if entry is None else list(entry.ops)


def modify(array, who):
    """Let ``who`` (e.g. "Adam.step") write into ``array`` in place now.

    Every node holding it lets it go and records ``who``, so its backward raises instead of
    reading the new values."""
    if id(array) not in _held:  # NOTE: the common case (no live graph holds it), lock-free
        return
    with _lock:
        entry = _held.pop(id(array), None)
        if entry is None:
            return
        entry.modified_by = who  # its nodes still release it, but it is no longer theirs
        if entry.restore:
            _make_writeable(array)


def changed(entry, owner):
    """Why the saved array of ``entry`` no longer holds what the forward saw, or None.

    ``owner`` is the tensor the VJP reads it from (None for an array captured directly)."""
    if entry.modified_by is not None:
        return f"modified in place by {entry.modified_by}"
    if entry.array.flags.writeable:
        return "made writeable again (array.flags.writeable = True) and may have been modified"
    if owner is not None and owner.data is not entry.array:
        return "replaced: the tensor's .data was rebound to another array"
    return None
