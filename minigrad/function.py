"""The op contract: every differentiable op, built in or your own, is a ``Function`` whose
forward and backward stand side by side (docs/custom-ops.md writes one from scratch).

    class Mul(Function):                     # z = x * y;  gx = g * y, gy = g * x
        name = "mul"

        @staticmethod
        def forward(ctx, x, y):              # arrays in, an array out
            ctx.save_for_backward(x, y)      # what backward will read, declared
            return x * y

        @staticmethod
        def backward(ctx, g):                # Tensors in, a gradient per input out
            x, y = ctx.saved_tensors
            return g * y, g * x

    z = Mul.apply(x, y)    # inputs are Tensors; constants (an axis, a seed) go by keyword

- ``ctx`` is the op's ``Node`` in the graph.  ``ctx.save_for_backward(*arrays)`` declares what
  backward reads; ``ctx.saved_tensors`` gives back the input or output Tensor an array came from
  (a second derivative flows through it), or a constant Tensor for any other array (None for
  None).  Declared arrays are read-only until backward has run (``minigrad.saved``); an array
  put on ctx as an attribute is refused, since it would escape that.
- ``backward(ctx, *grads)`` gets one gradient per output (None for an output that got none) and
  returns a tuple with one gradient per input (None where none is needed), in the input's shape
  or, for an input the op broadcast, the output's.  It computes with minigrad ops on Tensors:
  grad mode is off in a first-order backward, on with ``create_graph``, so one formula serves
  every order.  A backward on arrays says ``once_differentiable = True``, and ``create_graph``
  through it is refused, never a silent zero.
- A node keeps alive the inputs other ops made and the constants, but not the leaves that
  require grad (parameters): the caller keeps those.  So ``.grad`` never holds its own leaf
  alive, no reference cycle forms (not even with ``create_graph``), and a dropped graph lets go
  of its arrays at once.

A forward-mode rule will stand beside ``backward`` in the same class.
"""
import weakref

import numpy as np

from minigrad import saved
from minigrad.grad_mode import state
from minigrad.tensor import Tensor


class Function:
    """Base class of an op; subclasses define ``forward`` and ``backward`` (module docstring).

    ``name`` (default: the class name) labels the op in errors, traces and graphs.
    """

    name = None
    once_differentiable = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") is None:
            cls.name = cls.__name__

    @staticmethod
    def forward(ctx, *arrays, **constants):
        raise NotImplementedError("a Function defines forward(ctx, *arrays, **constants)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("a Function defines backward(ctx, *grads)")

    @classmethod
    def apply(cls, *inputs, **constants):
        """Run forward on the inputs' arrays; wrap its output(s) in Tensors and, when this thread
        records and an input requires grad, record the node that made them."""
        wants_grad = False
        for t in inputs:
            if type(t) is not Tensor and not isinstance(t, Tensor):
                raise TypeError(f"{cls.name}: input {inputs.index(t) + 1} is "
                                f"{type(t).__name__}; the inputs of apply are Tensors (use "
                                "minigrad.as_tensor), constants go by keyword")
            wants_grad = wants_grad or t.requires_grad
        recording = wants_grad and state.grad_enabled
        ctx = Node(cls, inputs) if recording else Unrecorded(len(inputs))
        result = cls.forward(ctx, *[t.data for t in inputs], **constants)
        if type(result) is tuple:
            outputs = tuple(Tensor._wrap(_array(cls, value)) for value in result)
        else:
            outputs = (Tensor._wrap(result if type(result) is np.ndarray
                                    else _array(cls, result)),)
        if recording:
            ctx.record(outputs, result if type(result) is tuple else (result,))
        if state.forward_observers:
            for out in outputs:
                for observe in state.forward_observers:
                    observe(out, cls.name, inputs)
        return outputs if type(result) is tuple else outputs[0]


def _array(cls, value):
    """A forward's output as an array: NumPy reductions return scalars, not 0-d arrays."""
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):   # a CuPy array
        return value
    raise TypeError(f"{cls.name}: forward returned {type(value).__name__}; it returns an array, "
                    "or a tuple of arrays for several outputs")


class Unrecorded:
    """The ctx of a forward that records no node (grad mode is off, or no input requires grad):
    it takes what forward saves or sets, and is dropped with it."""

    __slots__ = ("needs_input_grad", "__dict__")

    def __init__(self, count):
        self.needs_input_grad = (False,) * count

    def save_for_backward(self, *arrays):
        """Nothing to keep: no backward will run."""


class Node:
    """An op's record in the graph, and the ``ctx`` its forward and backward receive.

    Engine fields: ``function`` (the Function class), ``op`` (its name), ``needs_input_grad``,
    ``output_count``, ``freed`` (backward ran without retain_graph); ``inputs`` and ``outputs``
    (properties) give the Tensors.  Anything else set on it is the op's own constants.
    """

    __slots__ = ("function", "op", "needs_input_grad", "output_count", "freed", "_inputs",
                 "_output_refs", "_declared", "_saved", "_holds", "__dict__", "__weakref__")

    def __init__(self, function, inputs):
        self.function = function
        self.op = function.name
        self.needs_input_grad = tuple([t.requires_grad for t in inputs])
        self.freed = False
        self._inputs = inputs    # leaves that require grad by weak reference, once recorded
        self._output_refs = self._declared = self._saved = self._holds = ()

    # --- what an op's forward and backward use ---------------------------------------------
    def save_for_backward(self, *arrays):
        """Declare the arrays backward reads (module docstring); call once, in forward.  Save
        only what a wanted gradient reads (``ctx.needs_input_grad``): a first layer never needs
        to keep its weight."""
        self._declared = arrays

    @property
    def saved_tensors(self):
        """The declared arrays as Tensors: an input's or output's own Tensor, else a constant."""
        tensors = []
        for source, index, array in self._saved:
            if source == "input":
                t = self.input(index)
                tensors.append(t if t is not None else Tensor._wrap(array))  # a leaf gone
            elif source == "output":
                tensors.append(self._output(index))
            elif source == "none":
                tensors.append(None)
            else:
                tensors.append(Tensor._wrap(array))
        return tuple(tensors)

    # --- the graph's view of the node --------------------------------------------------------
    @property
    def inputs(self):
        """The input Tensors (None for a leaf the caller has dropped)."""
        return tuple([t() if type(t) is weakref.ReferenceType else t for t in self._inputs])

    def input(self, index):
        """Input ``index`` (None for a leaf the caller has dropped)."""
        t = self._inputs[index]
        return t() if type(t) is weakref.ReferenceType else t

    @property
    def outputs(self):
        """The output Tensors (None for one that has been dropped)."""
        return tuple(ref() for ref in self._output_refs)

    def saved_arrays(self):
        """The arrays kept for the backward pass, each once."""
        unique = {id(array): array for _, _, array in self._saved if array is not None}
        return list(unique.values())

    def record(self, outputs, values):
        """Connect the node to its outputs and inputs, and hold what forward saved; ``values``
        are the outputs as forward returned them (a NumPy scalar, where the Tensor holds a 0-d
        array)."""
        if self.__dict__:   # the op's own constants
            check_constants(self)
        inputs = self._inputs
        self._inputs = tuple([weakref.ref(t) if t.node is None and t.requires_grad else t
                              for t in inputs])
        self._output_refs = tuple([weakref.ref(t) for t in outputs])
        self.output_count = len(outputs)
        for index, out in enumerate(outputs):
            if out.dtype.kind == "f":
                out.node, out.output_index, out.requires_grad = self, index, True
        if self._declared:   # resolved to ("input" | "output" | ..., position, array)
            self._saved = tuple([_source(self.op, a, inputs, outputs, values)
                                 for a in self._declared])
            self._declared = ()
            arrays = [a for _, _, a in self._saved]
            for a in tuple(arrays):
                if getattr(a, "base", None) is not None:   # a view: hold what it views too
                    arrays.extend(saved.viewed_upstream(a, inputs))
            self._holds = saved.hold(arrays, self.op)

    def _output(self, index):
        """Output ``index`` as a Tensor: the one forward returned, or a new Tensor standing for
        it (same node) if that one has been dropped."""
        out = self._output_refs[index]()
        if out is None:
            _, _, array = next(s for s in self._saved if s[0] == "output" and s[1] == index)
            out = Tensor._wrap(array)
            out.node, out.output_index, out.requires_grad = self, index, True
        return out

    def run_backward(self, grads, create_graph):
        """The op's backward for ``grads`` (Tensors, one per output), after checking that what it
        saved is unchanged and that it can serve this order.  Returns its raw result."""
        if self.freed:
            raise RuntimeError(f"backward: the graph through '{self.op}' was already freed by an "
                               "earlier backward(); pass retain_graph=True to that call to "
                               "backward through it again")
        if create_graph and self.function.once_differentiable:
            raise RuntimeError(f"backward: '{self.op}' is once_differentiable (its backward "
                               "computes on arrays), so its gradient cannot be differentiated; "
                               "create_graph=True through it is refused")
        for array, entry in self._holds:
            if entry.modified_by is None and not array.flags.writeable:
                continue  # unchanged, the common case; a rebound .data is checked below
            self._refuse_changed(array, saved.changed(array, entry))
        for source, index, array in self._saved:
            if source == "input":
                owner = self._inputs[index]
                owner = owner() if type(owner) is weakref.ReferenceType else owner
                if owner is not None and owner.data is not array:
                    self._refuse_changed(array, "replaced: the tensor's .data was rebound to "
                                                "another array")
        return self.function.backward(self, *grads)

    def _refuse_changed(self, array, reason):
        owner = next((self.input(i) for source, i, a in self._saved
                      if a is array and source == "input"), None)
        what = f"an array of shape {array.shape}" if owner is None else describe(owner)
        raise RuntimeError(
            f"backward: '{self.op}' saved {what} for its backward pass, and it was {reason} after "
            "the forward; the gradient would be computed at values the forward never saw. Run "
            "the forward again after changing it (or call backward before changing it)")

    def free(self):
        """Drop what backward needed (backward without retain_graph); returns (holds, op) for
        the caller to release with ``saved.release``, one call for a whole backward pass."""
        released = (self._holds, self.op)
        self.freed, self._saved, self._holds = True, (), ()
        self.__dict__.clear()
        return released

    def __del__(self):
        if self._holds:  # a graph dropped without a backward
            saved.release_soon(self._holds, self.op)


def _source(op, array, inputs, outputs, values):
    """("input" | "output" | "constant", position, array) for a declared array; ("none", None,
    None) for None."""
    if array is None:   # a value this call does not need (see Linear)
        return "none", None, None
    if not hasattr(array, "shape") or isinstance(array, Tensor):
        raise TypeError(f"{op}: save_for_backward takes arrays (those forward received or "
                        f"returned, or constants), got {type(array).__name__}")
    for i, t in enumerate(inputs):
        if t.data is array:
            return "input", i, array
    for j, (out, value) in enumerate(zip(outputs, values)):
        if out.data is array or value is array:
            return "output", j, out.data
    return "constant", None, array


def check_constants(ctx):
    """Refuse arrays and Tensors among an op's own ctx attributes: backward reads arrays only
    through save_for_backward, which protects them from in-place edits."""
    for key, value in ctx.__dict__.items():
        if isinstance(value, (Tensor, np.ndarray)) or hasattr(value, "__cuda_array_interface__"):
            raise TypeError(f"{ctx.op}: ctx.{key} holds a {type(value).__name__}; declare the "
                            "arrays backward reads with ctx.save_for_backward (they are then "
                            "protected from in-place edits), and keep only constants on ctx")


def describe(tensor):
    """"tensor 'name' of shape (..) (made by 'op')" or "... (a leaf)", for error messages."""
    name = f"tensor {tensor.name!r}" if tensor.name else "a tensor"
    made = f"made by '{tensor.op}'" if tensor.op is not None else "a leaf"
    return f"the data of {name} of shape {tensor.shape} ({made})"
