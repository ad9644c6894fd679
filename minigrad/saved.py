"""The arrays an op saved for its backward pass are read-only until its node lets them go.

A backward reads what its op declared with ``ctx.save_for_backward``: a mul's inputs, exp's
output, where's condition.  Editing one of them in place between the forward and the backward
would make the backward compute the gradient at a point the forward never saw, silently.  So each
node ``hold``s the NumPy arrays it saved, which clears their WRITEABLE flag, and ``release``s them
when backward frees it or the graph is dropped.  An edit in between fails at the write itself:

    x.data[:] = 10.0    # ValueError: assignment destination is read-only

A saved array may be a view (``W.T``, ``W[0:2]``, a reshape): its memory belongs to the array at
the end of its ``.base`` chain, the root, which is where a write would come from (``W.data *= 3``).
So a hold covers the whole chain, root included: every array in it is read-only until the last
node holding that memory lets go.  ``holders(array)`` names the ops that hold an array's memory.

Optimizers update parameters in place through ``modify(array, who)``: the nodes holding that
memory let it go at once and remember who changed it, so that a later backward through them
(after ``retain_graph=True``) raises, naming the op, instead of using the new values, as PyTorch's
version counters do.  Each node's backward also checks that its arrays are still read-only and
that the tensors it read still hold them (``changed``), which catches a WRITEABLE flag set back by
hand and a ``.data`` rebound to another array.

Threads and the collector: one lock guards the table of holds.  A node collected by the garbage
collector releases from ``__del__``, which may run at any allocation, even inside this module
while the lock is taken: so ``release_soon`` never waits for the lock.  It queues the release and
carries it out at once if the lock is free, else the thread holding the lock does on its way out.

NOTE: NumPy arrays only.  CuPy arrays have no WRITEABLE flag, so in-place edits of GPU arrays are
not caught.  A view of the saved memory made before the forward keeps its own WRITEABLE flag
(NumPy keeps no list of an array's views), so a write through it goes unnoticed.
"""
import collections
import threading

import numpy as np

_lock = threading.Lock()
_held = {}                           # id(root array) -> its Hold, while some live node holds it
_queued = collections.deque()        # (holds, op) released by the collector, not yet carried out


class Hold:
    """The memory of one root array, held read-only for the live nodes whose ops ``ops`` lists
    (one entry per node).  ``arrays`` are the root and the views of it that were saved, with
    their base chains, each with the WRITEABLE flag it had, root first."""

    __slots__ = ("root", "arrays", "ops", "modified_by")

    def __init__(self, root, op):
        self.root = root
        self.arrays = {}          # id -> (array, writeable before the hold), root first
        self.ops = [op]
        self.modified_by = None   # set by modify(): who wrote into it


def root_of(array):
    """The array that owns ``array``'s memory: the end of its chain of NumPy bases."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def viewed_upstream(array, inputs):
    """The arrays of the tensors on the graph's way to ``array`` (from a node's ``inputs`` up)
    that share its memory: a saved ``w.T`` is held with ``w.data``, since a write to either
    changes what backward reads, and NumPy records only the memory's owner as a view's base, not
    the array (``w.data``, itself perhaps a view) it was taken from."""
    found, stack, seen = [], list(inputs), set()
    while stack:
        t = stack.pop()
        if t is None or id(t) in seen or type(t.data) is not np.ndarray \
                or not np.may_share_memory(t.data, array):
            continue
        seen.add(id(t))
        if t.data is not array:
            found.append(t.data)
        if t.node is not None:
            stack.extend(t.node.inputs)
    return found


def hold(arrays, op):
    """Hold the NumPy arrays among ``arrays`` read-only, with the arrays they are views of, for
    a node of ``op``.  Returns the node's holds: (array, Hold) for each NumPy array, once each
    (``x * x`` saves x twice)."""
    holds = []
    with _lock:
        for array in arrays:
            if type(array) is not np.ndarray or _among(array, holds):
                continue
            root = array if array.base is None else root_of(array)
            entry = _held.get(id(root))
            if entry is None:
                entry = _held[id(root)] = Hold(root, op)
            else:
                entry.ops.append(op)
            if id(array) not in entry.arrays:
                if array is root:   # NOTE: the common case, without building a chain
                    entry.arrays[id(array)] = (array, array.flags.writeable)
                    array.setflags(write=False)
                else:
                    _make_read_only(entry, array)
            holds.append((array, entry))
    if _queued:
        _carry_out_queued()
    return holds


def _among(array, holds):
    """Whether ``array`` is held in ``holds`` already (a node that saves x twice, as x * x)."""
    for held, _ in holds:
        if held is array:
            return True
    return False


def _make_read_only(entry, array):
    """Clear the WRITEABLE flag of ``array`` and of each array on its way to the root."""
    chain = [array]
    while chain[-1] is not entry.root:
        chain.append(chain[-1].base)
    for link in reversed(chain):   # root first: the order in which flags are set back
        if id(link) not in entry.arrays:
            entry.arrays[id(link)] = (link, link.flags.writeable)
            link.setflags(write=False)   # NOTE: faster than flags.writeable = False


def _let_go(entry):
    """Set back the WRITEABLE flags of an entry's arrays, root first (NumPy refuses a writeable
    view of a read-only base)."""
    for array, writeable in entry.arrays.values():
        if writeable:
            array.setflags(write=True)


def release(nodes):
    """Let go of the holds of freed nodes, ``nodes`` a list of (holds, op): memory that no node
    holds any more becomes writeable again."""
    with _lock:
        for holds, op in nodes:
            _release_node(holds, op)
    if _queued:
        _carry_out_queued()


def _release_node(holds, op):
    for _, entry in holds:
        if op in entry.ops:   # each node's op appears once per array it holds
            entry.ops.remove(op)
        if not entry.ops and _held.get(id(entry.root)) is entry:   # modify() let go already
            del _held[id(entry.root)]
            _let_go(entry)


def release_soon(holds, op):
    """Release from a collected node's ``__del__``: never waits for the lock (see the module
    docstring)."""
    if _lock.acquire(blocking=False):
        try:
            _release_node(holds, op)
        finally:
            _lock.release()
    else:
        _queued.append((holds, op))
    if _queued:
        _carry_out_queued()


def _carry_out_queued():
    """Carry out queued releases if the lock is free; otherwise its holder will."""
    while _queued and _lock.acquire(blocking=False):
        try:
            while _queued:
                _release_node(*_queued.popleft())
        finally:
            _lock.release()


def holders(array):
    """The ops of the live nodes that hold ``array``'s memory read-only (empty if none)."""
    with _lock:
        entry = _held.get(id(root_of(array)))
        return [] if entry is None else list(entry.ops)


def modify(array, who):
    """Let ``who`` (e.g. "Adam.step") write into ``array`` in place now.

    Every node holding its memory lets it go and records ``who``, so its backward raises instead
    of reading the new values."""
    root = root_of(array)
    if id(root) not in _held:  # NOTE: the common case (no live graph holds it), lock-free
        return
    with _lock:
        entry = _held.pop(id(root), None)
        if entry is not None:
            entry.modified_by = who  # its nodes still release it, but it is no longer theirs
            _let_go(entry)
    _carry_out_queued()


def changed(array, entry):
    """Why the saved ``array`` (held by ``entry``) may no longer hold what the forward saw, or
    None.  (A tensor whose ``.data`` was rebound is the node's to check: it knows its inputs.)"""
    if entry.modified_by is not None:
        return f"modified in place by {entry.modified_by}"
    if any(a.flags.writeable for a, _ in entry.arrays.values()):
        return "made writeable again (array.flags.writeable = True) and may have been modified"
    return None
