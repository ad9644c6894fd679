"""Grad mode and the study instruments' observers, per thread as in PyTorch.

Grad mode says whether ops record the graph.  It is on by default; ``no_grad()`` turns it off
(an optimizer step, an evaluation); a first-order backward turns it off while it runs the ops'
backward formulas, a ``create_graph`` backward leaves it on so that they record.  It changes
whether a node is recorded, never what an op returns: an op always returns Tensors.
"""
import contextlib
import threading


class _ThreadState(threading.local):
    """What is per thread: whether ops record the graph, and the observers of the study
    instruments (minigrad.trace, minigrad.detect_anomaly), which see only the ops and backward
    passes of the thread that entered them.  Empty observer lists cost one truth test per op.
        forward_observers: fn(out, op, inputs) after an op has made an output tensor
        backward_observers: fn(node, grads, input_grads, seconds) after a node's backward ran;
                            grads (one per output) and input_grads (one per input, in that
                            input's shape) are arrays, None where there is none
    """

    def __init__(self):
        self.grad_enabled = True
        self.forward_observers = []
        self.backward_observers = []


state = _ThreadState()


def is_grad_enabled():
    """Whether ops record the graph in this thread."""
    return state.grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Context in which this thread's ops record the graph (``mode`` true) or compute values
    only; the previous mode comes back on exit.  Other threads are not affected."""
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
    """Context in which this thread's ops record the graph again (inside ``no_grad``, or inside
    a first-order backward)."""
    return set_grad_enabled(True)


def observers():
    """This thread's (forward_observers, backward_observers) lists; see ``_ThreadState``."""
    return state.forward_observers, state.backward_observers
