"""benchmarks/engine_overhead.py: the switch that times the engine without its in-place check,
and one small run of the whole benchmark on the carried MNIST."""
import json

import numpy as np
import pytest

import minigrad as mg
from benchmarks import engine_overhead


def test_inplace_check_off_holds_nothing_and_is_restored():
    x = mg.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with engine_overhead.inplace_check_off():
        y = (x * x).sum()
        assert x.data.flags.writeable  # not held: the check is off
        y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    y = (x * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        x.data[:] = 10.0
    y.backward()
    assert x.data.flags.writeable


def test_inplace_check_off_is_restored_after_an_error():
    with pytest.raises(KeyError):
        with engine_overhead.inplace_check_off():
            raise KeyError("inside")
    x = mg.Tensor(np.ones(2), requires_grad=True)
    y = x * x
    assert not x.data.flags.writeable  # held again: the check is back on
    del y
    assert x.data.flags.writeable


def test_a_small_run_reports_the_overhead_and_the_check_cost(tmp_path):
    lines = []
    engine_overhead.main(["--quick", "--train-subset", "256", "--train-epochs", "0",
                          "--steps", "2", "--out", str(tmp_path)], log=lines.append)
    assert lines[-1].startswith("engine forward+backward over the hand-written NumPy step: ")
    assert lines[-2].startswith("the in-place check costs ")
    with open(tmp_path / "engine_overhead_quick.json") as f:
        report = json.load(f)
    cost = report["inplace_check"]
    assert cost["steps"] == 2 and cost["step_with_check_ms"] > 0
    assert cost["cost"] == pytest.approx(
        cost["step_with_check_ms"] / cost["step_without_check_ms"] - 1)
    check = report["check"]
    assert check["engine_loss"] == pytest.approx(check["numpy_loss"], rel=1e-5)
    assert "in-place check costs" in (tmp_path / "engine_overhead_quick.md").read_text()
