"""minigrad.detect_anomaly: the first op that makes NaN or Inf from finite values, forward or
backward, named with the line of user code that created it; silent when all is finite; no
observers left behind; normal mode unaffected."""
import inspect
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor, grad_mode
from minigrad.anomaly import AnomalyError
from vae.model import VAE

rng = np.random.default_rng(0)


def next_line():
    """'test_anomaly.py:N' for the line after the one that calls next_line()."""
    return f"test_anomaly.py:{inspect.currentframe().f_back.f_lineno + 1}"


@pytest.fixture(autouse=True)
def quiet_numpy():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        yield


def test_forward_nan_from_log_of_negative():
    x = Tensor(np.array([1.0, -1.0, 2.0]), requires_grad=True)
    with pytest.raises(AnomalyError) as caught:
        with mg.detect_anomaly():
            y = x * 2.0
            line = next_line()
            z = mg.log(y)
            z.sum().backward()
    error = caught.value
    assert (error.op, error.phase, error.count, error.size) == ("log", "forward", 1, 3)
    assert error.origin.endswith(line)
    message = str(error)
    assert "'log'" in message and "forward" in message and "1 of 3" in message
    assert line in message and "z = mg.log(y)" in message
    assert isinstance(error, FloatingPointError)


def test_backward_inf_from_sqrt_at_zero():
    x = Tensor(np.array([0.0, 1.0, 4.0]), requires_grad=True)
    with pytest.raises(AnomalyError) as caught:
        with mg.detect_anomaly():
            line = next_line()
            root = mg.sqrt(x)
            (root * 3.0).sum().backward()
    error = caught.value
    assert (error.op, error.phase, error.count) == ("sqrt", "backward", 1)
    assert error.origin.endswith(line)
    assert "backward" in str(error) and "parent 1 of 1" in str(error) and line in str(error)


def test_non_finite_input_is_not_blamed_on_later_ops():
    # the rule: only an op that makes non-finite values from finite inputs is reported
    x = Tensor(np.array([np.nan, 1.0]), requires_grad=True)
    with mg.detect_anomaly():
        y = mg.exp(x * 2.0).sum()  # NaN passes through mul, exp and sum
    assert np.isnan(y.data)
    with pytest.raises(AnomalyError, match="'div'"):
        with mg.detect_anomaly():
            y / Tensor(0.0)  # NaN / 0 is NaN: not blamed; but 1 / 0 below is
            Tensor(np.array([1.0])) / Tensor(0.0)


def test_op_in_library_code_is_traced_to_the_user_line():
    # a VAE whose encoder weights overflow: the line reported is in vae/model.py, not minigrad
    model = VAE(16, 8, 3, rng=np.random.default_rng(0), dtype=np.float64)
    model.encoder_hidden.weight.data[:] = 1e308
    x = np.random.default_rng(1).random((4, 16))
    with pytest.raises(AnomalyError) as caught:
        with mg.detect_anomaly():
            model.loss(x, mg.random.Stream(0))
    assert caught.value.phase == "forward" and caught.value.op == "linear"
    assert "vae" in caught.value.origin and "model.py" in caught.value.origin


def test_vae_and_mlp_without_anomaly_run_clean():
    model = VAE(16, 8, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).random((4, 16))
    mlp = mg.nn.Sequential(mg.nn.Linear(5, 7, dtype=np.float64, rng=rng),
                           mg.nn.Linear(7, 1, dtype=np.float64, rng=rng))
    with mg.detect_anomaly():
        model.loss(x, mg.random.Stream(0)).total.backward()
        mg.tanh(mlp(Tensor(rng.normal(size=(3, 5))))).sum().backward()
    assert np.all(np.isfinite(model.encoder_hidden.weight.grad))
    assert grad_mode.observers() == ([], [])


def test_observers_removed_after_an_anomaly():
    with pytest.raises(AnomalyError):
        with mg.detect_anomaly():
            mg.log(Tensor(-1.0))
    assert grad_mode.observers() == ([], [])


def test_normal_mode_does_not_check():
    y = mg.log(Tensor(-1.0, requires_grad=True))
    assert np.isnan(y.data)
    root = mg.sqrt(Tensor(np.array([0.0]), requires_grad=True))
    root.sum().backward()  # an Inf gradient, silently, as without anomaly mode
    assert grad_mode.observers() == ([], [])
