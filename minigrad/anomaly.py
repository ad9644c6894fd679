"""Anomaly mode: stop at the first op whose forward or backward makes a NaN or an Inf.

    with minigrad.detect_anomaly():
        loss = model.loss(x, stream).total
        loss.backward()          # raises AnomalyError at the op that made the first non-finite

The rule: an op is blamed when it *produces* a non-finite value from finite ones.
  forward:  the output holds a NaN or Inf while every float input is finite;
  backward: a gradient sent to a parent that requires grad holds a NaN or Inf while the incoming
            gradient is finite.
An op whose inputs (or incoming gradient) are already non-finite only passes the values on and is
not blamed, so the error names where they first appeared; a leaf that holds NaN from the start is
not an op and is never reported (check your data).

The message names the op, forward or backward, which output or which parent's gradient, how many
values are non-finite, and the line of user code that created the op: the first frame on the stack
outside the ``minigrad`` and ``kernels`` packages.  Frames are looked up only while anomaly mode is
on (for backward, the forward observer stores each node's creating line), so normal use pays
nothing but the empty observer lists.  Anomaly mode watches the thread that entered it.
"""
import contextlib
import linecache
import os
import sys
import weakref

import kernels
import minigrad
from minigrad import grad_mode
from minigrad.backend import is_float_dtype, namespace

_ENGINE_DIRS = tuple(os.path.dirname(os.path.abspath(package.__file__)) + os.sep
                     for package in (minigrad, kernels))


class AnomalyError(FloatingPointError):
    """An op produced NaN or Inf from finite values.

    Attributes: ``op``, ``phase`` ("forward" or "backward"), ``where`` ("output" or
    "gradient for parent 1 of 2", ...), ``count`` (non-finite values), ``size`` (values in that
    array) and ``origin`` ("file:line" of the user code that created the op, or None).
    """

    def __init__(self, op, phase, where, count, size, origin, source):
        self.op, self.phase, self.where = op, phase, where
        self.count, self.size, self.origin = count, size, origin
        created = "created at an unknown line"
        if origin is not None:
            created = f"created at {origin}" + (f"\n    {source}" if source else "")
        source_of = "finite inputs" if phase == "forward" else "a finite incoming gradient"
        super().__init__(f"detect_anomaly: op '{op}' produced non-finite values in its {phase} "
                         f"pass: {where} has {count} of {size} values NaN or Inf, from "
                         f"{source_of}; the op was {created}")


@contextlib.contextmanager
def detect_anomaly():
    """Raise AnomalyError at the first op that produces NaN or Inf; see the module docstring."""
    origins = {}  # id(node) -> (file, line) where it was created

    def forget(key):
        return lambda _: origins.pop(key, None)

    def on_forward(out, op, parents):
        floats = [p.data for p in parents if is_float_dtype(p.dtype)]
        count = _non_finite(out.data) if is_float_dtype(out.dtype) else 0
        if count and all(_non_finite(a) == 0 for a in floats):
            raise AnomalyError(op, "forward", "the output", count, out.size, *_located(_caller()))
        if out.node is not None and id(out.node) not in origins:
            key = id(out.node)
            # NOTE: the weak reference's callback drops the entry when the tensor dies, before
            # its id can be reused by another tensor
            origins[key] = (_caller(), weakref.ref(out.node, forget(key)))

    def on_vjp(node, grads, input_grads, seconds):
        if any(g is not None and _non_finite(g) for g in grads):
            return
        for i, pg in enumerate(input_grads):
            if pg is None:
                continue
            count = _non_finite(pg)
            if count:
                where = (f"the gradient for parent {i + 1} of {len(input_grads)} "
                         f"(shape {pg.shape})")
                frame = origins.get(id(node), (None, None))[0]
                raise AnomalyError(node.op, "backward", where, count, pg.size, *_located(frame))

    forward_observers, vjp_observers = grad_mode.observers()  # this thread's
    forward_observers.append(on_forward)
    vjp_observers.append(on_vjp)
    try:
        yield
    finally:
        forward_observers.remove(on_forward)
        vjp_observers.remove(on_vjp)


def _non_finite(array):
    """How many elements of ``array`` are NaN or +-Inf."""
    xp = namespace(array)
    return int(array.size - xp.count_nonzero(xp.isfinite(array)))


def _caller():
    """(file, line) of the innermost frame outside minigrad and kernels, or None."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_ENGINE_DIRS):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


def _located(frame):
    """("file:line", the source line) for AnomalyError."""
    if frame is None:
        return None, None
    filename, line = frame
    return f"{filename}:{line}", linecache.getline(filename, line).strip()
