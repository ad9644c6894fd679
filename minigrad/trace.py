"""A record of one or more backward passes: every VJP call, in the order it ran.

    >>> import minigrad as mg
    >>> x = mg.Tensor([1.0, 2.0], requires_grad=True)
    >>> with mg.trace() as t:
    ...     (x * x).sum().backward()
    >>> [r["op"] for r in t.records]
    ['sum', 'mul']

For a node z = op(x_1, ..., x_k) each record holds the op, the shapes of z and of the x_i, the norm
of the incoming gradient ||dL/dz||, the norms ||dL/dx_i|| of the gradient the VJP sends to each
parent (after ``unbroadcast``, i.e. what backward adds to that parent; None for a parent that needs
none), and the seconds the VJP took.  Norms are Euclidean (Frobenius), computed in float64.

The trace listens to the VJP calls (and counts the forward ops) of the thread that enters it, only
inside its ``with`` block (``grad_mode.observers``); both observers are removed on exit, exceptions
included, so traces may nest or overlap, and traces in other threads record their own.
"""
import collections
import json
import weakref

from minigrad import grad_mode
from minigrad.backend import namespace
from minigrad.text_table import format_shape, format_table


def trace():
    """A Trace to use as ``with minigrad.trace() as t:``."""
    return Trace()


class Trace:
    """VJP calls (``records``, plain dicts) and forward op counts (``forward_ops``) seen in the
    ``with`` block."""

    def __init__(self):
        self.records = []
        self.forward_ops = collections.Counter()
        self._nodes = []  # weak reference to each record's node, for minigrad.viz
        self._recording = False

    def __enter__(self):
        if self._recording:
            raise RuntimeError("trace: this Trace is already recording; "
                               "start a new minigrad.trace()")
        self._observers = grad_mode.observers()  # this thread's lists
        self._observers[0].append(self._on_forward)
        self._observers[1].append(self._on_vjp)
        self._recording = True
        return self

    def __exit__(self, *exc_info):
        # NOTE: bound methods are equal only when bound to this very Trace, so another trace's
        # observers stay wherever they stand in the lists
        self._observers[0].remove(self._on_forward)
        self._observers[1].remove(self._on_vjp)
        self._recording = False
        return False

    def _on_forward(self, out, op, parents):
        self.forward_ops[op] += 1

    def _on_vjp(self, node, grads, input_grads, seconds):
        g = next(g for g in grads if g is not None)   # an op with several outputs: the first
        norms = [None if pg is None else _norm(pg) for pg in input_grads]
        self.records.append({
            "index": len(self.records),
            "op": node.op,
            "output_shape": list(g.shape),
            "input_shapes": [list(pg.shape) if pg is not None else
                             (list(t.shape) if t is not None else None)   # None: a leaf gone
                             for t, pg in zip(node.inputs, input_grads)],
            "dtype": str(g.dtype),
            "grad_norm": _norm(g),
            "parent_grad_norms": norms,
            "seconds": seconds,
        })
        self._nodes.append(weakref.ref(node))

    def edge_norms(self, tensor):
        """{input position: norm} of the latest record of the backward of the node that made
        ``tensor`` (empty if none)."""
        for ref, record in zip(reversed(self._nodes), reversed(self.records)):
            if tensor.node is not None and ref() is tensor.node:
                return {i: n for i, n in enumerate(record["parent_grad_norms"]) if n is not None}
        return {}

    def to_json(self, path):
        """Write ``{"records": [...], "forward_ops": {...}}`` to ``path``; returns path.

        A non-finite norm is written as NaN or Infinity, which Python's json reads back."""
        with open(path, "w") as f:
            json.dump({"records": self.records, "forward_ops": dict(self.forward_ops)}, f, indent=1)
        return path

    def table(self):
        """One row per VJP call, then a line of totals."""
        rows = [(r["index"], r["op"], format_shape(r["output_shape"]),
                 " ".join("-" if s is None else format_shape(s) for s in r["input_shapes"]),
                 r["dtype"],
                 f"{r['grad_norm']:.3e}",
                 " ".join("-" if n is None else f"{n:.3e}" for n in r["parent_grad_norms"]),
                 f"{r['seconds'] * 1e6:.1f}")
                for r in self.records]
        table = format_table(("#", "op", "output", "inputs", "dtype", "|grad out|",
                              "|grad to each input|", "us"), rows)
        total = sum(r["seconds"] for r in self.records)
        forward = sum(self.forward_ops.values())
        return (f"{table}\n{len(self.records)} VJP calls in {total * 1e3:.3f} ms; "
                f"{forward} forward ops recorded")

    def __str__(self):
        return self.table()

    def __repr__(self):
        forward = sum(self.forward_ops.values())
        return f"<Trace: {len(self.records)} VJP calls, {forward} forward ops>"


def _norm(array):
    """Euclidean norm of all elements as a Python float, summed in float64 (no float32 overflow)."""
    xp = namespace(array)
    flat = xp.asarray(array, dtype=xp.float64).reshape(-1)
    return float(xp.sqrt(xp.dot(flat, flat)))

