"""minigrad.trace: every VJP call recorded in order, with shapes and gradient norms checked by
hand; JSON round trip; the table; observers removed after the block, exceptions included."""
import json

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor, grad_mode, graph
from vae.model import VAE

rng = np.random.default_rng(0)


def test_records_of_x_times_w_summed():
    # y = sum(x * w): sum's VJP gets g = 1 and sends ones (3,); mul's sends g*w to x, g*x to w
    x = Tensor(rng.normal(size=3), requires_grad=True)
    w = Tensor(rng.normal(size=3), requires_grad=True)
    with mg.trace() as t:
        (x * w).sum().backward()
    assert [r["op"] for r in t.records] == ["sum", "mul"]
    total, product = t.records
    assert total["output_shape"] == [] and total["input_shapes"] == [[3]]
    assert product["output_shape"] == [3] and product["input_shapes"] == [[3], [3]]
    assert total["grad_norm"] == 1.0
    assert total["parent_grad_norms"] == pytest.approx([np.sqrt(3)], rel=1e-15)
    assert product["grad_norm"] == pytest.approx(np.sqrt(3), rel=1e-15)
    assert product["parent_grad_norms"] == pytest.approx(
        [np.linalg.norm(w.data), np.linalg.norm(x.data)], rel=1e-15)
    assert all(r["seconds"] >= 0 for r in t.records)
    assert t.forward_ops == {"mul": 1, "sum": 1}


def test_norms_are_of_the_unbroadcast_gradient():
    # b (3,) is broadcast over 4 rows: its gradient is the column sum, not the (4, 3) array
    a = Tensor(rng.normal(size=(4, 3)), requires_grad=True)
    b = Tensor(rng.normal(size=3), requires_grad=True)
    with mg.trace() as t:
        (a + b).sum().backward()
    assert t.records[1]["parent_grad_norms"] == pytest.approx([np.sqrt(12), np.sqrt(3) * 4])


def test_constant_parent_has_no_norm():
    x = Tensor(rng.normal(size=3), requires_grad=True)
    with mg.trace() as t:
        (x * Tensor(rng.normal(size=3))).sum().backward()
    assert t.records[1]["parent_grad_norms"][1] is None


def test_vae_records_every_vjp_in_reverse_topological_order():
    model = VAE(16, 8, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).random((4, 16))
    with mg.trace() as t:
        loss = model.loss(x, mg.random.Stream(0)).total
        expected = [node.op for node in reversed(graph.topological_order(loss))]
        loss.backward()
    assert [r["op"] for r in t.records] == expected
    assert "reparameterize_kl" in expected and "linear" in expected
    assert t.records[0]["grad_norm"] == 1.0
    assert all(np.isfinite(r["grad_norm"]) for r in t.records)


def test_json_round_trip(tmp_path):
    x = Tensor(rng.normal(size=(2, 3)), requires_grad=True)
    with mg.trace() as t:
        mg.tanh(x @ Tensor(rng.normal(size=(3, 2)))).mean().backward()
    path = t.to_json(tmp_path / "trace.json")
    with open(path) as f:
        saved = json.load(f)
    assert saved["records"] == t.records
    assert saved["forward_ops"] == dict(t.forward_ops)


def test_table_has_one_row_per_vjp():
    x = Tensor(rng.normal(size=3), requires_grad=True)
    with mg.trace() as t:
        (mg.exp(x) * x).sum().backward()
    lines = str(t).splitlines()
    assert lines[0].split()[:2] == ["#", "op"]
    rows = lines[1:-1]
    assert [row.split()[1] for row in rows] == ["sum", "mul", "exp"]
    assert lines[-1].startswith("3 VJP calls")
    assert t.table() == str(t)


def test_observers_removed_after_block_and_after_exception():
    forward_observers, vjp_observers = grad_mode.observers()
    before = (list(forward_observers), list(vjp_observers))
    with mg.trace():
        assert len(vjp_observers) == len(before[1]) + 1
    assert (forward_observers, vjp_observers) == before
    with pytest.raises(ZeroDivisionError):
        with mg.trace():
            1 / 0
    assert (forward_observers, vjp_observers) == before


def test_nested_and_overlapping_traces():
    x = Tensor(rng.normal(size=3), requires_grad=True)
    outer, inner = mg.trace(), mg.trace()
    with outer:
        (x * x).sum().backward()
        with inner:
            mg.exp(x).sum().backward()
    assert [r["op"] for r in outer.records] == ["sum", "mul", "sum", "exp"]
    assert [r["op"] for r in inner.records] == ["sum", "exp"]
    first, second = mg.trace(), mg.trace()  # overlapping: first leaves while second records
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    (x * 2.0).sum().backward()
    second.__exit__(None, None, None)
    assert len(first.records) == 0 and len(second.records) == 2
    assert grad_mode.observers() == ([], [])


def test_a_trace_cannot_be_entered_twice():
    t = mg.trace()
    with t:
        with pytest.raises(RuntimeError, match="already recording"):
            t.__enter__()
