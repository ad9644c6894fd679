"""Tensor: an array, its gradient, and the node of the graph that made it."""
import itertools

import numpy as np

from minigrad.backend import device_of, is_float_dtype, namespace

_hook_ids = itertools.count()


class HookHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook off again."""

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


def _operator(name, reflected=False):
    """Tensor's operator for the op ``name`` of minigrad.ops (``x * y`` is ``ops.mul(x, y)``)."""
    def method(self, other):
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
    # NOTE: slots make a Tensor cheap to create, which every op (and every op in a backward) does
    __slots__ = ("data", "grad", "requires_grad", "name", "node", "output_index", "hooks",
                 "retains_grad", "__weakref__")

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
        self.node = None
        self.output_index = 0
        self.hooks = None
        self.retains_grad = False

    @classmethod
    def _wrap(cls, data):
        """Fast constructor for op outputs: no checks, no conversion."""
        out = cls.__new__(cls)
        out.data, out.grad, out.requires_grad, out.name = data, None, False, None
        out.node, out.output_index, out.hooks, out.retains_grad = None, 0, None, False
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
        return None if self.node is None else self.node.op

    @property
    def is_leaf(self):
        return self.node is None

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
        """This tensor on ``device`` ("cpu" or "cuda"), a node of the graph
        (``minigrad.ops.shape.to_device``); to move a model's parameters use ``nn.Module.to``."""
        return ops.shape.to_device(self, device)

    def astype(self, dtype):
        """This tensor's values in another float ``dtype``: ``minigrad.ops.shape.astype``."""
        return ops.shape.astype(self, dtype)

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
        self.retains_grad = True
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's total gradient is known.

        The hook receives the gradient as a Tensor and may return a replacement of the same
        shape (a Tensor, or with a first-order backward also an array), or None to keep it; the
        result is what flows on to the inputs and into ``.grad``.  Under ``create_graph`` the
        replacement must be a Tensor computed with minigrad ops, so that it can be
        differentiated.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        key = next(_hook_ids)
        if self.hooks is None:
            self.hooks = {}
        self.hooks[key] = hook
        return HookHandle(self.hooks, key)

    def zero_grad(self):
        self.grad = None

    # --- operators (the ops live in minigrad.ops) --------------------------------------------
    __add__ = _operator("add")
    __radd__ = _operator("add", reflected=True)
    __sub__ = _operator("sub")
    __rsub__ = _operator("sub", reflected=True)
    __mul__ = _operator("mul")
    __rmul__ = _operator("mul", reflected=True)
    __truediv__ = _operator("div")
    __rtruediv__ = _operator("div", reflected=True)
    __pow__ = _operator("pow")
    __rpow__ = _operator("pow", reflected=True)
    __matmul__ = _operator("matmul")
    __rmatmul__ = _operator("matmul", reflected=True)

    def __neg__(self):
        return ops.neg(self)

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
        return ops.transpose(self)


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
        return Tensor._wrap(value)  # the common case inside backwards: a mask or a constant
    if xp is np or isinstance(value, xp.ndarray):
        return Tensor(value)
    if isinstance(value, np.ndarray):
        return Tensor(value)  # a host array next to a device tensor: the op's device check names it
    if isinstance(value, np.generic):
        return Tensor._wrap(xp.full((), value, dtype=value.dtype))
    return Tensor._wrap(xp.asarray(value))  # a Python list or bool, made on like's device


from minigrad import graph, ops  # noqa: E402  (both import Tensor; its methods need them)
