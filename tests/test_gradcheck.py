"""minigrad.gradcheck: passes correct gradients, catches wrong VJPs (elementwise, fast and over all
outputs; a VJP that ignores its cotangent, first and second order; each input at its own dtype's
tolerances) with a message that names the element, and refuses bad input with a clear error."""
import re
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad.gradcheck import (TOLERANCES, GradcheckError, GradcheckWarning, gradcheck,
                                gradgradcheck)
from minigrad.random import Stream

ATOL, RTOL = TOLERANCES[np.dtype(np.float64)].atol, TOLERANCES[np.dtype(np.float64)].rtol


def leaf(data, name=None, dtype=np.float64):
    return mg.Tensor(np.asarray(data, dtype=dtype), requires_grad=True, name=name)


def custom_op(name, forward, backward):
    """A one-input op written by hand, as a user would: ``forward(x)`` on the input's array,
    ``backward(g, x)`` on Tensors, returning x's gradient.  The deliberately wrong ops below are
    built with it."""
    class Custom(mg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return forward(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (backward(g, x),)
    Custom.name = name
    return Custom.apply


# sin with a wrong backward: g * sin(x) where g * cos(x) is right
bad_sin = custom_op("bad_sin", np.sin, lambda g, x: g * np.sin(x.data))
# z = 2 x for a vector, with a backward that reverses g: right only where x is a palindrome
flipped_double = custom_op("flipped_double", lambda x: 2 * x, lambda g, x: 2 * g[::-1])
# a custom loss, z = sum(x^2), whose backward returns 2 x and forgets g: right only where g is 1
sum_of_squares_ignoring_g = custom_op("sum_of_squares_ignoring_g", lambda x: np.sum(x ** 2),
                                      lambda g, x: 2 * x)
# z = 2 x, whose backward returns 2 whatever the cotangent g: right only where g is 1
double_ignoring_g = custom_op("double_ignoring_g", lambda x: 2 * x,
                              lambda g, x: mg.Tensor(np.full(g.shape, 2.0)))
# z = x^2 with the backward g -> double_ignoring_g(g x): the gradient is right, its own backward
# ignores its cotangent
square_with_a_bad_second_order = custom_op("square_with_a_bad_second_order", lambda x: x ** 2,
                                           lambda g, x: double_ignoring_g(g * x))


def sin_with_vjp_off_by(x, factor):
    """sin whose backward is ``factor`` times the right one, g * cos(x)."""
    return custom_op("sin_off_by", np.sin, lambda g, t: g * (np.cos(t.data) * factor))(x)


def worst_of_bad_sin(x):
    """Where gradcheck must point for sum(bad_sin(x)): the element furthest past its tolerance."""
    analytic, numeric = np.sin(x), np.cos(x)
    excess = np.abs(analytic - numeric) / (ATOL + RTOL * np.abs(numeric))
    return tuple(int(k) for k in np.unravel_index(np.argmax(excess), x.shape))


X = np.random.default_rng(7).uniform(-2, 2, (2, 3))


# --- correct gradients pass ----------------------------------------------------------------------
def test_passes_on_correct_ops_with_broadcasting():
    x, y = leaf(X, "x"), leaf(X[:1] + 3, "y")
    report = gradcheck(lambda x, y: mg.tanh(x) * y + mg.exp(y / 4), [x, y])
    assert report.ok and bool(report)
    assert [(r.index, r.name, r.shape) for r in report.inputs] == \
        [(0, "x", (2, 3)), (1, "y", (1, 3))]
    for r in report.inputs:
        assert r.ok and r.method == "elementwise"
        assert r.max_abs_err < 1e-8 and r.abs_err <= r.max_abs_err
        assert len(r.worst_index) == len(r.shape)
        assert r.analytic == pytest.approx(r.numeric, rel=1e-6)


def test_inputs_are_left_untouched():
    x = leaf(X, "x")
    before = x.data.copy()
    gradcheck(lambda x: (x * x).sum(), [x])
    assert x.grad is None and np.array_equal(x.data, before)


def test_arrays_are_differentiated_and_named_by_position():
    report = gradcheck(lambda a, b: a * b, [X, X.T.copy().reshape(2, 3)])
    assert report.ok and [r.name for r in report.inputs] == ["arg0", "arg1"]


def test_constant_tensors_pass_through_undifferentiated():
    index = mg.Tensor(np.array([0, 1, 1]))  # int: a constant, never differentiated
    weight = mg.Tensor(X)                   # float without requires_grad: also a constant
    report = gradcheck(lambda x, i, w: mg.getitem(x * w, i), [leaf(X, "x"), index, weight])
    assert report.ok and [r.index for r in report.inputs] == [0]


def test_an_input_the_output_ignores_has_zero_gradient():
    report = gradcheck(lambda x, y: mg.tanh(x), [leaf(X, "x"), leaf(X, "y")])
    assert report.ok and report.inputs[1].max_abs_err == 0.0


def test_fixed_seed_and_offset_make_the_stochastic_node_checkable():
    mu, logvar = leaf(X, "mu"), leaf(X / 2, "logvar")
    report = gradcheck(lambda mu, logvar: mg.reparameterize(mu, logvar, seed=5, offset=3),
                       [mu, logvar])
    assert report.ok


NOT_DETERMINISTIC = (r"gradcheck: fn returned different values for the same inputs \(max "
                     r"difference \d\.\d{3}e[+-]\d+\); finite differences need a deterministic "
                     r"function: fix the seed/offset of any noise inside it")


@pytest.mark.parametrize("fast", [False, True])
def test_fresh_noise_on_every_call_is_named_not_blamed_on_the_gradient(fast):
    # each call draws new normals, so the differences see noise, not slope: the check used to
    # report a wrong gradient for logvar
    stream = Stream(5)
    with pytest.raises(ValueError, match=NOT_DETERMINISTIC):
        gradcheck(lambda mu, logvar: mg.reparameterize(mu, logvar, stream=stream),
                  [leaf(X, "mu"), leaf(X / 2, "logvar")], fast=fast)


def test_numpy_randomness_inside_fn_is_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=NOT_DETERMINISTIC):
        gradcheck(lambda x: x * rng.standard_normal(), [leaf(X)])
    with pytest.raises(ValueError, match=NOT_DETERMINISTIC):
        gradcheck(lambda x: x + float(np.random.uniform()), [leaf(X)])


def test_a_nan_in_the_same_place_each_time_is_deterministic():
    with np.errstate(invalid="ignore"):  # sqrt(-1) is NaN at every call: a gradient failure
        report = gradcheck(lambda x: mg.sqrt(x), [leaf([4.0, -1.0])])
    assert not report.ok


def test_the_seed_fixes_the_cotangent():
    def check(seed):
        return gradcheck(lambda x: mg.sigmoid(x), [leaf(X, "x")], seed=seed).inputs[0]
    assert check(3) == check(3)
    assert check(3).analytic != check(4).analytic


@pytest.mark.filterwarnings("ignore::minigrad.gradcheck.GradcheckWarning")
def test_explicit_settings_replace_the_defaults():
    report = gradcheck(lambda x, y: mg.exp(x) * y, [leaf(X), leaf(X, dtype=np.float32)],
                       eps=1e-4, atol=1e-7, rtol=1e-6)
    assert [(r.eps, r.atol, r.rtol) for r in report.inputs] == [(1e-4, 1e-7, 1e-6)] * 2
    assert str(report).splitlines()[0].endswith(": eps 0.0001, atol 1e-07, rtol 1e-06")


# --- wrong gradients fail, naming the element -----------------------------------------------------
def test_wrong_vjp_fails_and_the_message_names_everything():
    w, x = leaf(X, "w"), leaf(X, "x")
    report = gradcheck(lambda w, x: (w + bad_sin(x)).sum(), [w, x])
    assert not report.ok and not report
    assert report.inputs[0].ok and not report.inputs[1].ok
    r = report.inputs[1]
    index = worst_of_bad_sin(X)
    assert r.worst_index == index and r.output == "v·y"
    # the one-element y is projected on a random v, never 1: analytic v sin, numeric v cos
    assert r.analytic / r.numeric == pytest.approx(np.tan(X[index]), rel=1e-6)
    assert r.tolerance == pytest.approx(ATOL + RTOL * abs(r.numeric))
    message = report.failure_message()
    for part in ["input 1", "'x'", f"element {index}", f"analytic:  {r.analytic:.6e}",
                 f"numeric:   {r.numeric:.6e}", f"abs err {r.abs_err:.3e}",
                 f"rel err {r.rel_err:.3e}", f"tolerance {r.tolerance:.3e}", "output:    v·y",
                 "a single element times v = "]:
        assert part in message
    assert "input 0" not in message


def test_raise_on_failure_raises_gradcheck_error():
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda x: bad_sin(x), [leaf(X, "x")], raise_on_failure=True)
    assert isinstance(caught.value, AssertionError)
    assert str(caught.value) == caught.value.report.failure_message()
    assert "input 0 ('x'" in str(caught.value) and "v·y" in str(caught.value)


def test_raise_on_failure_returns_the_report_when_all_pass():
    assert gradcheck(lambda x: mg.sigmoid(x), [leaf(X)], raise_on_failure=True).ok


def test_fast_mode_catches_the_wrong_vjp_and_names_an_element():
    x = np.random.default_rng(8).uniform(-2, 2, (20, 30))
    report = gradcheck(lambda x: bad_sin(x).sum(), [leaf(x, "x")], fast=True, num_directions=2)
    r = report.inputs[0]
    assert not r.ok and r.method == "elementwise after 2 directions"
    assert r.worst_index == worst_of_bad_sin(x)
    assert f"element {r.worst_index}" in report.failure_message()


def test_fast_mode_calls_fn_twice_per_direction():
    calls = []

    def fn(x):
        calls.append(1)
        return mg.tanh(x) * 3
    report = gradcheck(fn, [leaf(np.linspace(-2, 2, 2000).reshape(40, 50))], fast=True,
                       num_directions=3)
    # one call for the engine's gradient, two for the determinism check, two per direction
    assert report.ok and len(calls) == 1 + 2 + 2 * 3
    r = report.inputs[0]
    assert r.method == "3 directions" and r.worst_index is None and r.direction in (1, 2, 3)


def test_all_outputs_names_the_output_element():
    x = leaf([0.5, -1.0, 2.0, 1.5], "x")
    report = gradcheck(flipped_double, [x], all_outputs=True)
    r = report.inputs[0]
    # row y[0] of the engine's Jacobian is 2 at element 3, where the true one is 0: excess 2 / atol
    assert not r.ok and (r.output, r.worst_index, r.analytic) == ("y[0]", (3,), 2.0)
    assert abs(r.numeric) < 1e-9
    assert "output:    y[0]" in report.failure_message()
    assert not gradcheck(flipped_double, [x]).ok  # the random projection sees it too


def test_nan_in_the_differences_never_passes():
    # sqrt(x - eps) is NaN for x < eps: the check must fail, not compare NaN as equal
    report = gradcheck(lambda x: mg.sqrt(x), [leaf([4.0, 1e-7])])
    assert not report.ok and report.inputs[0].worst_index == (1,)


# --- bad input, clear errors ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_argument_and_index(bad):
    x = X.copy()
    x[1, 2] = bad
    with pytest.raises(ValueError, match=r"argument 1 \('x'\).* at index \(1, 2\)"):
        gradcheck(lambda w, x: w * x, [leaf(X, "w"), leaf(x, "x")])


def test_integer_input_to_differentiate_is_a_type_error():
    with pytest.raises(TypeError, match="argument 1 is int64"):
        gradcheck(lambda w, i: w * i, [leaf(X), np.arange(3)])


def test_fn_returning_an_array_is_a_type_error():
    with pytest.raises(TypeError, match=r"returned numpy\.ndarray of shape \(2, 3\)"):
        gradcheck(lambda x: np.sin(x.data), [leaf(X)])


def test_fn_returning_an_integer_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="dtype int64"):
        gradcheck(lambda x: mg.Tensor(np.arange(3)), [leaf(X)])


def test_nothing_to_differentiate_is_an_error():
    with pytest.raises(ValueError, match="no input to differentiate"):
        gradcheck(lambda x: x * 2, [mg.Tensor(X)])


@pytest.mark.parametrize("setting, value, error, message", [
    ("eps", 0.0, ValueError, "eps is 0.0; it must be finite and > 0"),
    ("eps", -1e-6, ValueError, "eps is -1e-06; it must be finite and > 0"),
    ("eps", np.nan, ValueError, "eps is nan; it must be finite"),
    ("eps", "1e-6", TypeError, "eps is str '1e-6'; expected a real number"),
    ("atol", -1e-5, ValueError, "atol is -1e-05; it must be finite and >= 0"),
    ("atol", np.inf, ValueError, "atol is inf; it must be finite and >= 0"),
    ("rtol", np.nan, ValueError, "rtol is nan; it must be finite and >= 0"),
    ("rtol", True, TypeError, "rtol is bool True"),
])
def test_bad_step_or_tolerance_is_refused(setting, value, error, message):
    # a negative or NaN tolerance made every element fail (or, inf, pass) without a word
    with pytest.raises(error, match=f"gradcheck: {re.escape(message)}"):
        gradcheck(lambda x: x * 2, [leaf(X)], **{setting: value})


def test_explicit_zero_tolerances_and_numpy_scalars_are_taken():
    report = gradcheck(lambda x: x * 2, [leaf(X)], eps=np.float32(1e-3), atol=0, rtol=np.int64(1))
    r = report.inputs[0]
    assert (r.eps, r.atol, r.rtol) == (float(np.float32(1e-3)), 0.0, 1.0)


@pytest.mark.parametrize("inputs, message", [
    ({"x": 1}, "inputs is dict; expected a Tensor or a list or tuple of Tensors"),
    (iter([X]), "inputs is list_iterator"),
    ([X, 2.0], r"inputs\[1\] is float; expected a Tensor"),
    ((X, [1.0, 2.0]), r"inputs\[1\] is list"),
    ([None], r"inputs\[0\] is NoneType"),
], ids=["dict", "iterator", "float entry", "list entry", "None entry"])
def test_inputs_must_be_tensors_or_arrays_in_a_list_or_tuple(inputs, message):
    with pytest.raises(TypeError, match=f"gradcheck: {message}"):
        gradcheck(lambda *args: args[0] * 2, inputs)


def test_a_single_tensor_or_array_is_one_input():
    assert gradcheck(lambda x: x * 2, leaf(X)).ok and gradcheck(lambda x: x * 2, X).ok


@pytest.mark.parametrize("count", [0, -1, 2.0, True])
def test_num_directions_must_be_a_positive_int(count):
    with pytest.raises(ValueError, match="num_directions"):
        gradcheck(lambda x: x * 2, [leaf(X)], fast=True, num_directions=count)


# --- dtypes ---------------------------------------------------------------------------------------
def test_float32_warns_and_uses_looser_defaults():
    x = leaf(X, "x", dtype=np.float32)
    with pytest.warns(GradcheckWarning, match=r"argument 0 \('x'\) is float32"):
        report = gradcheck(lambda x: mg.tanh(x) * mg.exp(x), [x])
    default = TOLERANCES[np.dtype(np.float32)]
    r = report.inputs[0]
    assert (r.eps, r.atol, r.rtol) == (default.eps, default.atol, default.rtol)
    assert report.ok and report.inputs[0].dtype == np.float32 and report.output_dtype == np.float32


def test_each_input_is_checked_with_its_own_dtypes_tolerances():
    # a float64 gradient 0.8 % wrong used to pass once a float32 input sat beside it
    x, y = leaf(X, "x"), leaf(X, "y", dtype=np.float32)
    with pytest.warns(GradcheckWarning, match=r"argument 1 \('y'\) is float32"):
        report = gradcheck(lambda x, y: sin_with_vjp_off_by(x, 1.008) * y, [x, y])
    r64, r32 = report.inputs
    float64, float32 = TOLERANCES[np.dtype(np.float64)], TOLERANCES[np.dtype(np.float32)]
    assert not r64.ok and r32.ok
    assert (r64.eps, r64.atol, r64.rtol) == (float64.eps, float64.atol, float64.rtol)
    assert (r32.eps, r32.atol, r32.rtol) == (float32.eps, float32.atol, float32.rtol)
    assert str(report).splitlines()[0].endswith(
        f"float64 inputs eps {float64.eps:g}, atol {float64.atol:g}, rtol {float64.rtol:g}; "
        f"float32 inputs eps {float32.eps:g}, atol {float32.atol:g}, rtol {float32.rtol:g}")
    assert f"atol {float64.atol:g} + rtol {float64.rtol:g}" in report.failure_message()


@pytest.mark.filterwarnings("ignore::minigrad.gradcheck.GradcheckWarning")
def test_a_float32_gradient_two_percent_wrong_fails():
    # the differences run in float64: float32's tolerances need only absorb its analytic side
    report = gradcheck(lambda x: sin_with_vjp_off_by(x, 1.02), [leaf(X, "x", np.float32)])
    assert not report.ok
    assert gradcheck(lambda x: sin_with_vjp_off_by(x, 1.0), [leaf(X, "x", np.float32)]).ok


# --- a VJP that ignores its cotangent ---------------------------------------------------------
@pytest.mark.parametrize("all_outputs", [False, True])
def test_a_loss_whose_vjp_ignores_its_cotangent_fails(all_outputs):
    x = leaf(X, "x")
    report = gradcheck(sum_of_squares_ignoring_g, [x], all_outputs=all_outputs)
    r = report.inputs[0]
    assert not r.ok and r.output == "v·y"
    assert r.analytic / r.numeric != pytest.approx(1.0, abs=0.4)   # |v| is in [1.5, 2.5]
    assert gradcheck(lambda x: (x * x).sum(), [x], all_outputs=all_outputs).ok


def test_a_second_order_that_ignores_its_cotangent_fails():
    x = leaf(0.7, "x")          # one element: the first order's gradient has one element too
    assert gradcheck(square_with_a_bad_second_order, [x]).ok
    report = gradgradcheck(square_with_a_bad_second_order, [x])
    assert not report.ok and "second derivative" in report.failure_message()


def test_a_given_cotangent_is_used_and_checked():
    report = gradcheck(sum_of_squares_ignoring_g, [leaf(X)], grad_outputs=np.ones(()))
    assert report.ok and report.projection == "projected on the given cotangent v"
    with pytest.raises(ValueError, match=r"grad_outputs has shape \(2,\), fn's output \(\)"):
        gradcheck(sum_of_squares_ignoring_g, [leaf(X)], grad_outputs=np.ones(2))
    with pytest.raises(ValueError, match="exclude each other"):
        gradcheck(sum_of_squares_ignoring_g, [leaf(X)], grad_outputs=np.ones(()),
                  all_outputs=True)


def test_float64_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradcheck(lambda x: mg.tanh(x), [leaf(X)])


# --- the report -----------------------------------------------------------------------------------
def test_report_prints_a_table_with_a_row_per_input():
    report = gradcheck(lambda w, x: (w + bad_sin(x)).sum(), [leaf(X, "w"), leaf(X, "x")])
    lines = str(report).splitlines()
    assert lines[0].startswith("gradcheck FAILED for 1 input(s)")
    header = lines[3].split()
    assert header[:4] == ["arg", "name", "shape", "dtype"] and header[-1] == "ok"
    rows = [line.split() for line in lines[4:]]
    assert [row[:4] for row in rows] == [["0", "w", "(2,3)", "float64"],
                                         ["1", "x", "(2,3)", "float64"]]
    assert [row[-1] for row in rows] == ["ok", "FAIL"]
    assert f"{report.inputs[1].analytic:.6e}" in lines[5]
    assert all(len(line) <= 110 for line in lines)
