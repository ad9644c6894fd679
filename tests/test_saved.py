"""In-place edits between a forward and its backward never give a silently wrong gradient: arrays a
live graph saved are read-only until backward frees the node (or the graph is dropped), an
optimizer step marks the nodes that held a parameter, and backward refuses saved arrays that were
made writeable again or tensors whose data was rebound.  Legitimate use keeps working."""
import gc
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor, saved


def leaf(*values, name=None):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True, name=name)


# --- the two reproductions --------------------------------------------------------------
def test_editing_a_saved_input_is_refused_and_the_gradient_is_the_forwards():
    x = leaf(1.0, 2.0, 3.0)
    y = (x * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        x.data[:] = 10.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    x.data[:] = 10.0  # free again once backward has freed the node


def test_editing_a_saved_output_is_refused():
    a = leaf(1.0, 2.0)
    b = mg.exp(a)
    c = (b * b).sum()
    with pytest.raises(ValueError, match="read-only"):
        b.data *= 0
    assert saved.holders(b.data) == ["exp", "mul"]
    c.backward()
    np.testing.assert_allclose(a.grad, 2 * np.exp(2 * a.data), rtol=1e-15)


def test_a_users_own_array_is_protected_too():
    values = np.array([1.0, 2.0])
    x = Tensor(values, requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        values[0] = 5.0
    y.backward()
    assert values.flags.writeable


# --- what the node saves is what is held --------------------------------------------------------
def test_getitem_index_is_frozen_and_where_condition_held():
    x = leaf(1.0, 2.0, 3.0)
    index = np.array([0, 2, 2])
    condition = np.array([True, False, True])
    y = x[index].sum() + mg.where(condition, x, 0.0).sum()
    index[0] = 1    # getitem copied its index at forward: the caller's array stays theirs
    with pytest.raises(ValueError, match="read-only"):
        condition[1] = True
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 3.0])
    assert condition.flags.writeable


@pytest.mark.parametrize("make_index", [lambda: [0, 2, 2], lambda: ([0, 2, 2],),
                                        lambda: np.array([0, 2, 2])])
def test_an_index_changed_after_the_forward_does_not_move_the_gradient(make_index):
    x = leaf(1.0, 2.0, 3.0)
    index = make_index()
    y = x[index].sum()
    (index[0] if isinstance(index, tuple) else index)[0] = 1
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 2.0])


def test_an_op_that_reads_no_input_holds_nothing():
    x = leaf(1.0, 2.0)
    y = (x + 1.0).sum()
    x.data[:] = 5.0  # add's VJP never reads x: PyTorch allows this too
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_no_grad_saves_and_holds_nothing():
    x = leaf(1.0, 2.0)
    with mg.no_grad():
        y = x * x
    x.data[:] = 3.0
    assert y.op is None and saved.holders(x.data) == []


# --- legitimate use ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda p: mg.optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: mg.optim.Adam(p, lr=0.1)])
def test_optimizer_steps_after_backward(make):
    w = leaf(1.0, -2.0)
    optimizer = make([w])
    for _ in range(3):
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        optimizer.step()
    assert np.all(np.abs(w.data) < [1.0, 2.0])


def test_no_grad_update_after_backward():
    w = leaf(1.0, 2.0)
    (w * w).sum().backward()
    with mg.no_grad():
        w.data -= 0.5 * w.grad
    np.testing.assert_array_equal(w.data, [0.0, 0.0])


def test_retain_graph_backward_twice_holds_until_the_graph_is_dropped():
    x = leaf(1.0, 2.0)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    assert not x.data.flags.writeable
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])
    assert x.data.flags.writeable


def test_a_graph_dropped_without_backward_lets_go():
    x = leaf(1.0, 2.0)
    y = mg.tanh(x * x).sum()
    assert not x.data.flags.writeable
    del y
    gc.collect()
    assert x.data.flags.writeable and saved.holders(x.data) == []


def test_two_graphs_on_one_array_hold_it_until_the_last_is_freed():
    x = leaf(1.0, 2.0)
    first, second = (x * x).sum(), mg.log(x).sum()
    first.backward()
    assert not x.data.flags.writeable and saved.holders(x.data) == ["log"]
    second.backward()
    assert x.data.flags.writeable


def test_an_array_read_only_from_the_start_stays_read_only():
    values = np.array([1.0, 2.0])
    values.flags.writeable = False
    x = Tensor(values, requires_grad=True)
    (x * x).sum().backward()
    assert not values.flags.writeable
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_a_view_held_with_its_base_is_writeable_after_both_are_freed():
    x = leaf(1.0, 2.0, 3.0)
    head = x[:2]                   # a view of x.data
    y = (head * head).sum() + (x * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0, 6.0])
    assert x.data.flags.writeable and head.data.flags.writeable


# --- what backward refuses -----------------------------------------------------------------------
def test_backward_after_an_optimizer_step_on_a_retained_graph_names_op_and_optimizer():
    w = leaf(1.0, 2.0)
    optimizer = mg.optim.Adam([w], lr=0.1)
    loss = mg.tanh(w).sum() + (w * w).sum()
    loss.backward(retain_graph=True)
    optimizer.step()               # allowed: PyTorch allows it too, and only a backward is wrong
    with pytest.raises(RuntimeError, match=r"'(tanh|mul)' saved .* modified in place by "
                                           r"Adam\.step"):
        loss.backward()


def test_a_flag_set_back_by_hand_is_caught_at_backward():
    x = leaf(1.0, 2.0, name="x")
    y = (x * x).sum()
    x.data.flags.writeable = True
    x.data[:] = 7.0
    with pytest.raises(RuntimeError, match=r"'mul' saved the data of tensor 'x' .* made "
                                           "writeable again"):
        y.backward()


def test_rebinding_data_is_caught_at_backward():
    x = leaf(1.0, 2.0, name="x")
    y = mg.sigmoid(x * 2.0).sum()
    x.data = np.zeros(2)
    with pytest.raises(RuntimeError, match=r"'mul' saved the data of tensor 'x' .* rebound"):
        y.backward()


def test_graphs_in_two_threads_share_a_parameter():
    w = leaf(*np.linspace(-1.0, 1.0, 8))
    start = threading.Barrier(2)
    errors = []

    def train():
        try:
            start.wait()
            for _ in range(200):
                loss = (w * w).sum()
                loss.backward()
        except Exception as error:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(error)

    threads = [threading.Thread(target=train) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert w.data.flags.writeable and saved.holders(w.data) == []


def test_load_state_dict_writes_parameters_a_live_graph_holds_and_marks_that_graph():
    layer = mg.nn.Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    state = {name: value + 1.0 for name, value in layer.state_dict().items()}
    loss = layer(Tensor(np.ones((4, 3)), requires_grad=True)).sum()   # gx reads the weight
    layer.load_state_dict(state)          # refused by NumPy before: the graph holds the weight
    np.testing.assert_array_equal(layer.weight.data, state["weight"])
    with pytest.raises(RuntimeError, match=r"modified in place by Linear\.load_state_dict"):
        loss.backward()
