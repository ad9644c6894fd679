"""Tensor: an array, its gradient, and the node of the graph that made it; ``make_node``, which
every op calls to wrap its output and record how it was made."""
import itertools
import operator
import sys

import numpy as np

from minigrad import graph
from minigrad.backend import check_device, device_of, is_float_dtype, namespace, to_device

_hook_ids = itertools.count()


class HookHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook off again."""

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


def _operator(name, forward, reflected=False):
    """Tensor's operator for the op ``name``: the op, or ``forward`` on the arrays in values
    mode (see the operators below)."""
    def method(self, other):
        if _state.values_only:
            other = other.data if isinstance(other, Tensor) else other
            return forward(other, self.data) if reflected else forward(self.data, other)
        op = getattr(ops, name)
        return op(other, self) if reflected else op(self, other)
    method.__name__ = f"__{'r' if reflected else ''}{name}__"
    return method


class Tensor:
    """An n-dimensional array that records how it was computed.

    ``data`` is a NumPy (or CuPy) array, kept as given: float32 stays float32.  Python scalars and
    lists become NumPy arrays with NumPy's default dtype (float64 for floats).  Leaves with
    ``requires_grad=True`` receive ``.grad`` (same shape and dtype as ``data``) from ``backward``.
    """

    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operator
    # NOTE: slots make a Tensor cheap to create, which every op (and every op in a VJP) does
    __slots__ = ("data", "grad", "requires_grad", "name", "_node", "_hooks", "_retains_grad",
                 "__weakref__")

    def __init__(self, data, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if namespace(data) is np:
            data = np.asarray(data)
        if requires_grad and not is_float_dtype(data.dtype):
            raise TypeError(f"Tensor: requires_grad=True needs a floating dtype, got {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._node = None
        self._hooks = None   # {id: hook}, made by the first register_hook
        self._retains_grad = False

    @classmethod
    def _wrap(cls, data):
        """Fast constructor for op outputs: no checks, no conversion."""
        out = cls.__new__(cls)
        out.data, out.grad, out.requires_grad, out.name = data, None, False, None
        out._node, out._hooks, out._retains_grad = None, None, False
        return out

    # --- array facts -------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        """Where the data lives: "cpu" (NumPy) or "cuda" (CuPy)."""
        return device_of(self.data)

    @property
    def op(self):
        """Name of the op that made this tensor, or None for a leaf."""
        return None if self._node is None else self._node.op

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The data as a NumPy array (copied to the host if it lives on a GPU)."""
        xp = namespace(self.data)
        return self.data if xp is np else xp.asnumpy(self.data)

    def item(self):
        return self.data.item()

    def __repr__(self):
        parts = [f"shape={self.shape}", f"dtype={self.dtype}"]
        if self.op is not None:
            parts.append(f"op={self.op}")
        if self.requires_grad:
            parts.append("requires_grad=True")
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        if self.size <= 8:
            values = np.array2string(self.numpy(), separator=", ", precision=4)
            parts.insert(0, values.replace("\n", ""))
        return f"Tensor({', '.join(parts)})"

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Accumulate the gradient of this tensor (contracted with ``grad``, which may be
        omitted for one element) into the ``.grad`` of every leaf it depends on.

        ``create_graph=True`` makes those gradients Tensors of a new graph, to differentiate
        again; ``retain_graph`` (default: ``create_graph``) keeps this graph for another backward.
        See ``minigrad.graph.backward``."""
        retain_graph = create_graph if retain_graph is None else retain_graph
        graph.backward([self], [grad], retain_graph, create_graph)

    def to(self, device):
        """This tensor on ``device`` ("cpu" or "cuda"), as a new tensor of the graph.

        Differentiable: the VJP moves the gradient back to this tensor's device.  On the same
        device the data is shared, not copied.  A leaf that requires grad stays where it is, so
        to move a model's parameters in place use ``nn.Module.to``.
        """
        check_device(device)
        source = self.device
        moved = to_device(self.data, device)
        return make_node(moved, (self,), lambda g: (moved_to(g, source),), "to")

    def astype(self, dtype):
        """This tensor's values in another float ``dtype``.  VJP: the gradient cast back."""
        dtype = np.dtype(dtype)
        if not is_float_dtype(dtype):
            raise TypeError(f"astype: {dtype} is not a float dtype")
        source = self.dtype
        return make_node(self.data.astype(dtype), (self,), lambda g: (g.astype(source),),
                         "astype")

    def detach(self):
        """The same data, cut from the graph (shares memory)."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, flag=True):
        if flag and not is_float_dtype(self.dtype):
            raise TypeError(f"requires_grad_: needs a floating dtype, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor too."""
        self._retains_grad = True
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's total gradient is known.

        The hook may return a replacement array of the same shape (or None to keep the
        gradient); the result is what flows on to the parents and into ``.grad``.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        key = next(_hook_ids)
        if self._hooks is None:
            self._hooks = {}
        self._hooks[key] = hook
        return HookHandle(self._hooks, key)

    def zero_grad(self):
        self.grad = None

    # --- operators (the ops live in minigrad.ops) --------------------------------------------
    # NOTE: while a first-order backward runs its VJPs (graph's values mode), no graph is
    # recorded and the VJPs compute with arrays: each operator is then its NumPy operator on
    # the data (which is what the op's forward computes), at NumPy's speed.
    __add__ = _operator("add", operator.add)
    __radd__ = _operator("add", operator.add, reflected=True)
    __sub__ = _operator("sub", operator.sub)
    __rsub__ = _operator("sub", operator.sub, reflected=True)
    __mul__ = _operator("mul", operator.mul)
    __rmul__ = _operator("mul", operator.mul, reflected=True)
    __truediv__ = _operator("div", operator.truediv)
    __rtruediv__ = _operator("div", operator.truediv, reflected=True)
    __pow__ = _operator("pow", operator.pow)
    __rpow__ = _operator("pow", operator.pow, reflected=True)
    __matmul__ = _operator("matmul", operator.matmul)
    __rmatmul__ = _operator("matmul", operator.matmul, reflected=True)

    def __neg__(self):
        return -self.data if _state.values_only else ops.neg(self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    # dtype and out exist for numpy.sum(t) & co., which call t.sum(axis=..., dtype=..., out=...)
    def sum(self, axis=None, keepdims=False, *, dtype=None, out=None):
        if dtype is not None or out is not None:
            ops.reduce.check_numpy_keywords("Tensor.sum", self, dtype, out)
        return ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False, *, dtype=None, out=None):
        if dtype is not None or out is not None:
            ops.reduce.check_numpy_keywords("Tensor.mean", self, dtype, out)
        return ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False, *, dtype=None, out=None):
        if dtype is not None or out is not None:
            ops.reduce.check_numpy_keywords("Tensor.max", self, dtype, out)
        return ops.max(self, axis, keepdims)

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def sqrt(self):
        return ops.sqrt(self)

    def tanh(self):
        return ops.tanh(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    def relu(self):
        return ops.relu(self)

    def reshape(self, *shape):
        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    @property
    def T(self):
        return self.data.T if _state.values_only else ops.transpose(self)


def array_of(value):
    """A Tensor's data, or the value itself: what a VJP reads from its g, which is an array in
    values mode (a first-order backward) and a Tensor under create_graph."""
    return value.data if isinstance(value, Tensor) else value


def moved_to(value, device):
    """``value`` (a Tensor or an array) on ``device``: Tensor.to, or to_device for an array."""
    return value.to(device) if isinstance(value, Tensor) else to_device(value, device)


def make_node(value, parents, vjp, op):
    """Wrap an op's output array in a Tensor; record (parents, vjp) as its node when this thread
    records and any parent requires grad.

    ``vjp(g)`` returns one gradient per parent (None where a parent needs none), in the parent's
    shape or, for a parent the op broadcast, the output's.  The VJP computes with operators and
    minigrad's ops on g and on the tensors it closes over, so the one formula serves every order:
    with ``create_graph`` g is a Tensor and the ops record the gradient's graph; in a first-order
    backward (values mode) g is an array, Tensor operators act on their data and ops return
    arrays, at NumPy's speed (``array_of(g)`` gives the array in both).  A VJP that reads the
    op's output is written ``vjp(g, z)`` and receives it then (closing over the output tensor
    would make it hold its own node: a reference cycle).  The arrays a VJP reads (its closure's,
    and the output's with ``vjp(g, z)``) are held read-only until the node is freed.

    In values mode (graph's thread state) make_node returns the value itself: an op called
    inside a first-order VJP is its forward on arrays.
    """
    if type(value) is not np.ndarray and isinstance(value, np.generic):
        value = np.asarray(value)  # NumPy reductions return scalars, not 0-d arrays
    state = _state
    if state.values_only:  # a first-order VJP: the value is all that is wanted
        return value
    out = Tensor._wrap(value)
    if state.grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        reads_output = getattr(getattr(vjp, "__code__", None), "co_argcount", 1) == 2
        out._node = graph.Node(op, parents, vjp, reads_output,
                               _captured(vjp, value if reads_output else None))
    if state.forward_observers:
        for observe in state.forward_observers:
            observe(out, op, parents)
    return out


_state = graph._state


def _captured(vjp, output):
    """(owner, array) for each array the VJP reads, once each: arrays its closure holds (owner
    None), also inside tuples and lists (an index), the data of the tensors it closes over
    (owner that tensor), and ``output`` (owner graph.OUTPUT) unless it is None."""
    found = [] if output is None else [(graph.OUTPUT, output)]
    for cell in vjp.__closure__ or ():
        value = cell.cell_contents
        if type(value) in _NOT_ARRAYS:          # flags, sizes, shapes of ints: the common cases
            continue
        items = value if type(value) is tuple or type(value) is list else (value,)
        for item in items:
            if isinstance(item, Tensor):
                found.append((item, item.data))
            elif type(item) is np.ndarray or (type(item) not in _NOT_ARRAYS
                                               and isinstance(item, _array_types())):
                found.append((None, item))
    if len(found) > 1:  # each array once (x * x reads x twice)
        unique = {}
        for owner, array in found:
            unique.setdefault(id(array), (owner, array))
        found = list(unique.values())
    return found


_NOT_ARRAYS = frozenset({bool, int, float, str, slice, type(None), type(Ellipsis)})


def _array_types():
    """NumPy arrays and scalars, and CuPy arrays once CuPy is imported."""
    cupy = sys.modules.get("cupy")
    return (np.ndarray, np.generic) if cupy is None else (np.ndarray, np.generic, cupy.ndarray)


def as_tensor(value, like=None):
    """``value`` as a Tensor; a Python scalar takes the float dtype of ``like`` (NumPy's rule
    for weak scalars), so ``0.5 * x`` stays float32 when x is.

    Scalars and lists are made on ``like``'s device; an array stays where it is (an op given
    arrays on two devices raises, it never copies one of them over).
    """
    if isinstance(value, Tensor):
        return value
    if like is None:
        return Tensor(value)
    xp = namespace(like.data)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = like.dtype if is_float_dtype(like.dtype) else None
        if xp is np:
            return Tensor._wrap(np.asarray(value, dtype=dtype))
        # NOTE: a fill kernel, not a host-to-device copy: it may run inside a CUDA graph capture
        return Tensor._wrap(xp.full((), value, dtype=dtype))
    if type(value) is np.ndarray and xp is np:
        return Tensor._wrap(value)  # the common case inside VJPs: a mask or a constant array
    if xp is np or isinstance(value, xp.ndarray):
        return Tensor(value)
    if isinstance(value, np.ndarray):
        return Tensor(value)  # a host array next to a device tensor: the op's device check names it
    if isinstance(value, np.generic):
        return Tensor._wrap(xp.full((), value, dtype=value.dtype))
    return Tensor._wrap(xp.asarray(value))  # a Python list or bool, made on like's device


from minigrad import ops  # noqa: E402  (ops import Tensor; the operators need ops)
