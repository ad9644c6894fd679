"""Grad mode and the study instruments are per thread: a no_grad, a trace or anomaly mode entered
in one thread does not change what another thread records, and interleaved exits restore each
thread's own state."""
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor


def in_thread(target):
    """Run ``target`` in a new thread and return what it returned (re-raising its exception)."""
    result = {}

    def run():
        try:
            result["value"] = target()
        except BaseException as error:  # noqa: BLE001  (re-raised below)
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_no_grad_in_one_thread_leaves_another_recording():
    x = Tensor(np.ones(3), requires_grad=True)
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = in_thread(lambda: x * 2.0)
    assert y.requires_grad and y.op == "mul"


def test_no_grad_entered_in_another_thread_does_not_reach_this_one():
    x = Tensor(np.ones(3), requires_grad=True)
    entered, done = threading.Event(), threading.Event()

    def hold_no_grad():
        with mg.no_grad():
            entered.set()
            done.wait(5)

    thread = threading.Thread(target=hold_no_grad)
    thread.start()
    entered.wait(5)
    try:
        assert mg.is_grad_enabled() and (x * x).requires_grad
    finally:
        done.set()
        thread.join()


def test_interleaved_exits_restore_each_threads_state():
    """A enters, B enters, A exits, B exits: with one global flag this left recording off."""
    steps = [threading.Event() for _ in range(4)]
    seen = {}

    def thread_a():
        with mg.no_grad():
            steps[0].set()          # A entered
            steps[1].wait(5)        # B entered
        seen["a"] = mg.is_grad_enabled()
        steps[2].set()              # A exited

    def thread_b():
        steps[0].wait(5)
        with mg.no_grad():
            steps[1].set()
            steps[2].wait(5)
        seen["b"] = mg.is_grad_enabled()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": True, "b": True}
    assert mg.is_grad_enabled()
    assert (Tensor(np.ones(2), requires_grad=True) * 3.0).requires_grad


def test_a_trace_records_only_its_own_threads_backward():
    x = Tensor(np.ones(3), requires_grad=True)
    with mg.trace() as t:
        in_thread(lambda: mg.exp(x).sum().backward())
        (x * x).sum().backward()
    assert [r["op"] for r in t.records] == ["sum", "mul"]
    assert set(t.forward_ops) == {"mul", "sum"}


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")
def test_anomaly_mode_watches_only_its_own_thread():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with mg.detect_anomaly():
        in_thread(lambda: mg.log(x))             # log(0) = -inf: not this thread's business
        with pytest.raises(FloatingPointError, match="'log'"):
            mg.log(x)


def test_backward_runs_hooks_in_the_thread_that_calls_it():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    seen = []
    x.register_hook(lambda g: seen.append(threading.get_ident()))
    in_thread(lambda: y.backward())
    assert len(seen) == 1 and seen[0] != threading.get_ident()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
