"""minigrad.gradcheck.sweep: the V of central-difference error against step size (truncation on
the right, round-off on the left) in float64 and float32; the per-element error map; the CLI."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor
from minigrad.gradcheck import sweep
from minigrad.gradcheck.cases import CASES

ROOT = Path(__file__).resolve().parents[1]  # where python -m minigrad.gradcheck finds minigrad
TANH = next(c for c in CASES if c.op == "tanh")


@pytest.fixture(scope="module")
def curves():
    return {str(np.dtype(d)): sweep.step_sweep(TANH.fn, TANH.inputs, dtype=d)
            for d in (np.float64, np.float32)}


def test_steps_run_from_1e_1_to_1e_12(curves):
    eps = [e for e, _ in curves["float64"]]
    assert len(eps) == 23 and eps[0] == pytest.approx(1e-1) and eps[-1] == pytest.approx(1e-12)


def test_float64_bottoms_out_between_truncation_and_round_off(curves):
    eps, err = np.array(curves["float64"]).T
    best = int(np.argmin(err))
    assert err[best] < 1e-8
    assert 1e-7 <= eps[best] <= 1e-3
    assert err[0] > 100 * err[best]       # truncation at eps = 1e-1, ~ eps^2
    assert err[-1] > 100 * err[best]      # round-off at eps = 1e-12, ~ 1e-16 / eps


def test_truncation_error_falls_as_eps_squared(curves):
    (e1, r1), (e2, r2) = curves["float64"][0], curves["float64"][2]  # 1e-1 and 1e-2
    assert np.log(r1 / r2) / np.log(e1 / e2) == pytest.approx(2, abs=0.1)


def test_float32_bottoms_out_at_a_larger_step(curves):
    eps64, err64 = np.array(curves["float64"]).T
    eps32, err32 = np.array(curves["float32"]).T
    assert eps32[np.argmin(err32)] > 10 * eps64[np.argmin(err64)]
    assert err32.min() > 100 * err64.min()
    assert 1e-4 <= eps32[np.argmin(err32)] <= 3e-2


def test_float32_differences_run_in_float32():
    seen = []

    def fn(x):
        seen.append(x.dtype)
        return mg.tanh(x)
    sweep.step_sweep(fn, [Tensor(np.array([0.3]), requires_grad=True)], steps=[1e-3],
                     dtype=np.float32)
    assert seen[0] == np.float64 and set(seen[1:]) == {np.dtype(np.float32)}


def test_fn_that_leaves_the_dtype_is_named():
    constant = np.array([1.0])  # float64: promotes a float32 x
    with pytest.raises(TypeError, match="returned float64 on float32 inputs"):
        sweep.step_sweep(lambda x: x * constant, [np.array([0.5])], steps=[1e-3],
                         dtype=np.float32)


class WrongInRowOne(mg.Function):
    """z = x * w with a backward for x that is 1% off in row 1, written with NumPy."""
    name = "wrong_mul"
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = g.data * w.data
        gx[1] *= 1.01
        return gx, g.data * x.data


def wrong_in_row_one(x, w):
    return WrongInRowOne.apply(x, w)


def test_element_errors_find_the_wrong_row():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 5)), requires_grad=True)
    w = Tensor(rng.uniform(1, 2, size=(4, 5)), requires_grad=True)
    errors = sweep.element_errors(wrong_in_row_one, [x, w], 0)
    assert errors.shape == (4, 5)
    assert np.all(errors[1] > 1e-4)
    assert np.delete(errors, 1, axis=0).max() < 1e-8
    assert sweep.element_errors(wrong_in_row_one, [x, w], 1).max() < 1e-8


def test_error_map_and_sweep_plot_write_pngs(tmp_path, curves):
    rng = np.random.default_rng(0)
    inputs = [Tensor(rng.normal(size=(4, 5)), requires_grad=True),
              Tensor(rng.uniform(1, 2, size=(4, 5)), requires_grad=True)]
    for path in (sweep.error_map(wrong_in_row_one, inputs, 0, tmp_path / "map.png"),
                 sweep.plot_sweep(curves, tmp_path / "sweep.png")):
        assert path.read_bytes().startswith(b"\x89PNG")


def test_constant_input_is_not_differentiated():
    with pytest.raises(ValueError, match="input 1 is not differentiated"):
        sweep.element_errors(mg.mul, [np.ones(2), Tensor(np.ones(2))], 1)


def test_cli_sweep_writes_the_plot(tmp_path):
    out = tmp_path / "s.png"
    done = subprocess.run([sys.executable, "-m", "minigrad.gradcheck", "--sweep", "--op", "tanh",
                           "--out", str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    assert "float64: smallest error" in done.stdout and "tanh[matrix]" in done.stdout


def test_cli_sweep_creates_the_folder_of_its_plot(tmp_path):
    out = tmp_path / "not" / "there" / "s.png"
    done = subprocess.run([sys.executable, "-m", "minigrad.gradcheck", "--sweep", "--op", "tanh",
                           "--out", str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_sweep_that_cannot_write_its_plot_says_so_in_one_line(tmp_path):
    (tmp_path / "a_file").write_bytes(b"")
    out = tmp_path / "a_file" / "s.png"
    done = subprocess.run([sys.executable, "-m", "minigrad.gradcheck", "--sweep", "--op", "tanh",
                           "--out", str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --out {out}: the plot cannot be written")
    assert len(done.stderr.splitlines()) == 1


def test_cli_sweep_needs_one_op():
    done = subprocess.run([sys.executable, "-m", "minigrad.gradcheck", "--sweep"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "exactly one --op" in done.stderr
