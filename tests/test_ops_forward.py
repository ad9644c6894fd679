"""Every op's forward against an independent NumPy / SciPy or closed-form computation, at ordinary
points and at kinks, zeros and saturation: finite differences cannot catch a wrong forward.

Gradients appear here only where their value is a documented choice or a numerical hazard that
finite differences would not see: pow's exponent at x <= 0, ties in max, relu'(0), scatter-add in
getitem, the split of concatenate/stack, saturated sigmoid/softplus/BCE, the reparameterised noise.
"""
import ast
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import Tensor

rng = np.random.default_rng(2024)


def const(array, dtype=np.float64):
    return Tensor(np.asarray(array, dtype=dtype))


def var(array, dtype=np.float64):
    return Tensor(np.asarray(array, dtype=dtype), requires_grad=True)


def random(*shape, low=-2.0, high=2.0, dtype=np.float64):
    return rng.uniform(low, high, size=shape).astype(dtype)


@contextmanager
def no_warnings():
    """Fail on any warning (overflow, invalid, divide) raised inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_every_op_is_tested_here():
    """Every name in minigrad.ops.__all__ is called as mg.<name> somewhere in this file."""
    tree = ast.parse(Path(__file__).read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "mg"}
    missing = sorted(set(mg.ops.__all__) - used)
    assert not missing, f"ops without a forward test: {missing}"


# --- arithmetic ------------------------------------------------------------------------------
BROADCAST_PAIRS = [((), ()), ((3,), ()), ((), (3,)), ((2, 3), (3,)), ((1, 3), (2, 3)),
                   ((2, 1), (1, 3)), ((4, 1, 3), (2, 1))]
ARITHMETIC = {
    "add": (lambda a, b: mg.add(a, b), np.add),
    "sub": (lambda a, b: mg.sub(a, b), np.subtract),
    "mul": (lambda a, b: mg.mul(a, b), np.multiply),
    "div": (lambda a, b: mg.div(a, b), np.divide),
    "pow": (lambda a, b: mg.pow(a, b), np.power),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("name", sorted(ARITHMETIC))
def test_arithmetic_matches_numpy_with_broadcasting(name, shapes, dtype):
    op, reference = ARITHMETIC[name]
    a = random(*shapes[0], low=0.5, high=3.0, dtype=dtype)  # positive: pow and div are defined
    b = random(*shapes[1], low=0.5, high=3.0, dtype=dtype)
    z = op(const(a, dtype), const(b, dtype))
    expected = reference(a, b)
    assert z.shape == expected.shape and z.dtype == dtype
    np.testing.assert_allclose(z.data, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_arithmetic_with_signs_and_zeros():
    a = np.array([-3.0, -0.0, 0.0, 2.5])
    b = np.array([2.0, -1.5, 4.0, -0.5])
    np.testing.assert_array_equal(mg.add(const(a), const(b)).data, [-1.0, -1.5, 4.0, 2.0])
    np.testing.assert_array_equal(mg.sub(const(a), const(b)).data, [-5.0, 1.5, -4.0, 3.0])
    np.testing.assert_array_equal(mg.mul(const(a), const(b)).data, [-6.0, 0.0, 0.0, -1.25])
    np.testing.assert_array_equal(mg.div(const(a), const(b)).data, [-1.5, 0.0, 0.0, -5.0])
    np.testing.assert_array_equal(mg.neg(const(a)).data, [3.0, 0.0, -0.0, -2.5])


def test_neg_float32():
    x = random(2, 3, dtype=np.float32)
    z = mg.neg(const(x, np.float32))
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z.data, -x)


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, -1, 0.5, -2.5, 2.0])
def test_pow_with_a_scalar_exponent(exponent):
    x = random(5, low=0.1, high=3.0)
    np.testing.assert_allclose(mg.pow(const(x), exponent).data, x ** exponent, rtol=1e-15)


def test_pow_with_integer_exponents_of_negative_bases():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(mg.pow(const(x), 3).data, [-8.0, -0.125, 0.0, 3.375], rtol=1e-15)
    np.testing.assert_allclose(mg.pow(const(x), 2).data, [4.0, 0.25, 0.0, 2.25], rtol=1e-15)


def test_pow_gradients_with_a_tensor_exponent_for_positive_bases():
    x, p = var([0.5, 2.0, 3.0]), var([2.0, -1.0, 0.5])
    z = mg.pow(x, p)
    z.sum().backward()
    np.testing.assert_allclose(x.grad, p.data * x.data ** (p.data - 1), rtol=1e-15)
    np.testing.assert_allclose(p.grad, x.data ** p.data * np.log(x.data), rtol=1e-15)


def test_pow_at_zero_base_has_zero_exponent_gradient():
    # d/dp 0^p is taken as 0 (the limit for p > 0), as the docstring says
    x, p = var([0.0, 0.0, 0.0]), var([1.0, 2.0, 3.5])
    z = mg.pow(x, p)
    np.testing.assert_array_equal(z.data, [0.0, 0.0, 0.0])
    z.sum().backward()
    np.testing.assert_array_equal(p.grad, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 0.0])


def test_pow_at_zero_base_and_negative_exponent_has_minus_inf_exponent_gradient():
    # PyTorch's rule: 0 only where x == 0 and p >= 0; for p < 0, z log x = inf * -inf = -inf
    # (the op used to zero it wherever x == 0)
    x, p = var([0.0, 0.0, 0.0, 0.0]), var([-1.0, -2.5, 0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0^-1 and the VJP's x^(p - 1) warn, deliberately
        z = mg.pow(x, p)
        z.backward(Tensor(np.array([1.0, 2.0, 3.0, 4.0])))
    np.testing.assert_array_equal(z.data, [np.inf, np.inf, 1.0, 0.0])
    np.testing.assert_array_equal(p.grad, [-np.inf, -np.inf, 0.0, 0.0])


def test_pow_at_negative_base_has_nan_exponent_gradient():
    # (-2)^2 is real, but d/dp (-2)^p has no real value: NaN, as documented
    x, p = var([-2.0, -3.0]), var([2.0, 3.0])
    z = mg.pow(x, p)
    np.testing.assert_array_equal(z.data, [4.0, -27.0])
    z.sum().backward()
    assert np.all(np.isnan(p.grad))
    np.testing.assert_array_equal(x.grad, [-4.0, 27.0])


@pytest.mark.parametrize("tensor_exponent", [False, True])
def test_pow_zero_exponent_has_zero_base_gradient_at_zero(tensor_exponent):
    # x^0 = 1 for every x, so d/dx is 0 everywhere, x = 0 included (not 0 * 0^-1 = NaN)
    x = var([0.0, 2.0])
    exponent = var([0.0, 0.0]) if tensor_exponent else 0
    z = mg.pow(x, exponent)
    np.testing.assert_array_equal(z.data, [1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


# --- matmul and linear -----------------------------------------------------------------------
MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((5, 2, 3), (5, 3, 4)),
                 ((2, 1, 2, 3), (3, 3, 4))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_numpy(shapes, dtype):
    a, b = random(*shapes[0], dtype=dtype), random(*shapes[1], dtype=dtype)
    z = mg.matmul(const(a, dtype), const(b, dtype))
    expected = np.matmul(a, b)
    assert z.shape == expected.shape and z.dtype == dtype
    np.testing.assert_allclose(z.data, expected, rtol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradient_shapes_and_values(shapes):
    # z is bilinear, so a central difference along a random direction is exact up to rounding
    a, b = var(random(*shapes[0])), var(random(*shapes[1]))
    upstream = random(*np.matmul(a.data, b.data).shape)
    mg.matmul(a, b).backward(Tensor(upstream))
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    for t, other_first in ((a, False), (b, True)):
        direction = random(*t.shape)

        def f(value):
            pair = (a.data, value) if other_first else (value, b.data)
            return np.sum(upstream * np.matmul(*pair))
        numeric = (f(t.data + direction) - f(t.data - direction)) / 2
        np.testing.assert_allclose(np.sum(t.grad * direction), numeric, rtol=1e-10, atol=1e-12)


def test_linear_is_x_at_w_plus_b():
    x, w, b = random(4, 3), random(3, 5), random(5)
    np.testing.assert_allclose(mg.linear(const(x), const(w), const(b)).data, x @ w + b, rtol=1e-14)
    np.testing.assert_allclose(mg.linear(const(x), const(w)).data, x @ w, rtol=1e-14)


def test_linear_gradients():
    x, w, b = var(random(4, 3)), var(random(3, 5)), var(random(5))
    upstream = random(4, 5)
    mg.linear(x, w, b).backward(Tensor(upstream))
    np.testing.assert_allclose(x.grad, upstream @ w.data.T, rtol=1e-14)
    np.testing.assert_allclose(w.grad, x.data.T @ upstream, rtol=1e-14)
    np.testing.assert_allclose(b.grad, upstream.sum(axis=0), rtol=1e-14)


def test_linear_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(2, 5\)"):
        mg.linear(const(np.ones((4, 3))), const(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        mg.linear(const(np.ones((4, 3))), const(np.ones((3, 5))), const(np.ones(4)))


# --- reductions ------------------------------------------------------------------------------
AXES = [None, 0, 1, -1, (0, 2), (2, 0), ()]
REDUCTIONS = {"sum": (mg.sum, np.sum), "mean": (mg.mean, np.mean), "max": (mg.max, np.max)}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions_match_numpy(name, axis, keepdims):
    op, reference = REDUCTIONS[name]
    x = random(2, 3, 4)
    z = op(const(x), axis=axis, keepdims=keepdims)
    expected = reference(x, axis=axis, keepdims=keepdims)
    assert z.shape == np.shape(expected)
    np.testing.assert_allclose(z.data, expected, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions_of_a_scalar(name):
    op, reference = REDUCTIONS[name]
    z = op(const(2.5))
    assert z.shape == () and z.item() == 2.5


@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, False), (1, True), ((0, 1), True)])
def test_sum_and_mean_gradients_spread_the_upstream(axis, keepdims):
    x = var(random(2, 3))
    z = mg.sum(x, axis=axis, keepdims=keepdims)
    upstream = random(*z.shape)
    z.backward(Tensor(upstream))
    expanded = upstream if keepdims or axis is None else np.expand_dims(upstream, axis)
    np.testing.assert_allclose(x.grad, np.broadcast_to(expanded, (2, 3)), rtol=1e-15)
    y = var(x.data)
    m = mg.mean(y, axis=axis, keepdims=keepdims)
    m.backward(Tensor(upstream))
    count = x.size // m.size  # elements averaged into each output
    np.testing.assert_allclose(y.grad, np.broadcast_to(expanded, (2, 3)) / count, rtol=1e-15)


def test_max_splits_the_gradient_evenly_at_ties():
    x = var([1.0, 3.0, 3.0])
    z = mg.max(x)
    assert z.item() == 3.0
    z.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])


def test_max_ties_along_an_axis():
    x = var([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, -1.0, 0.0]])
    z = mg.max(x, axis=1)
    np.testing.assert_array_equal(z.data, [3.0, 2.0, 5.0])
    z.backward(Tensor(np.array([1.0, 3.0, 2.0])))
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 1, 1], [2, 0, 0]], rtol=1e-15)


def test_max_with_keepdims_gradient():
    x = var([[4.0, 1.0], [4.0, 7.0]])
    z = mg.max(x, axis=0, keepdims=True)
    np.testing.assert_array_equal(z.data, [[4.0, 7.0]])
    z.backward(Tensor(np.array([[2.0, 1.0]])))
    np.testing.assert_array_equal(x.grad, [[1.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize("op, reason", [
    (mg.max, "the reduction has no identity"), (mg.logsumexp, "the reduction has no identity"),
    (mg.log_softmax, "its logsumexp has no identity"), (mg.mean, "the mean of no elements")])
def test_reductions_without_identity_refuse_an_empty_axis(op, reason):
    # max and logsumexp raised NumPy's own error, mean gave NaN with RuntimeWarnings
    name = op.__name__
    with no_warnings():
        with pytest.raises(ValueError, match=rf"{name}: axis 0 of shape \(0, 3\) is empty; "
                                             rf"{reason}"):
            op(const(np.zeros((0, 3))), axis=0)
        with pytest.raises(ValueError, match=rf"{name}: axis 1 of shape \(2, 0\) is empty"):
            op(const(np.zeros((2, 0))), axis=-1)
        if op is not mg.log_softmax:  # log_softmax keeps the shape: its axis is one int
            with pytest.raises(ValueError, match=rf"{name}: axis 0 of shape \(0,\) is empty"):
                op(const(np.zeros(0)))
            # reducing a non-empty axis of an empty tensor is fine: no slice is empty
            assert op(const(np.zeros((0, 3))), axis=1).shape == (0,)


def test_sum_over_an_empty_axis_is_zero():
    x = var(np.zeros((0, 3)))
    z = mg.sum(x, axis=0)
    np.testing.assert_array_equal(z.data, np.zeros(3))
    z.backward(Tensor(np.ones(3)))
    assert x.grad.shape == (0, 3)
    assert mg.sum(const(np.zeros(0))).item() == 0.0


def test_reduction_axis_out_of_range():
    with pytest.raises(ValueError, match="axis 2"):
        mg.sum(const(np.ones((2, 3))), axis=2)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), (-1, False),
                                            ((0, 1), False)])
def test_logsumexp_matches_scipy(axis, keepdims):
    x = random(3, 4, low=-5, high=5)
    z = mg.logsumexp(const(x), axis=axis, keepdims=keepdims)
    expected = scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)
    assert z.shape == np.shape(expected)
    np.testing.assert_allclose(z.data, expected, rtol=1e-14)


def test_logsumexp_at_extremes():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [1000.0, -1000.0],
                  [-np.inf, -np.inf], [-np.inf, 3.0]])
    with np.errstate(divide="ignore"):  # ln 0 = -inf is the intended value for the empty row
        z = mg.logsumexp(const(x), axis=1)
    np.testing.assert_allclose(z.data[:3], [1000 + np.log(2), -1000 + np.log(2), 1000.0], rtol=1e-15)
    assert z.data[3] == -np.inf  # an empty sum: -inf, not NaN
    assert z.data[4] == 3.0
    assert not np.any(np.isnan(z.data))
    np.testing.assert_array_equal(z.data, scipy.special.logsumexp(x, axis=1))


def test_logsumexp_gradient_is_the_softmax():
    x = var(random(2, 5, low=-3, high=3))
    mg.logsumexp(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, scipy.special.softmax(x.data, axis=1), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_log_softmax_matches_scipy(axis, dtype):
    x = random(3, 5, low=-5, high=5, dtype=dtype)
    z = mg.log_softmax(const(x, dtype), axis=axis)
    assert z.shape == x.shape and z.dtype == dtype
    np.testing.assert_allclose(z.data, scipy.special.log_softmax(x, axis=axis),
                               rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)
    np.testing.assert_allclose(np.exp(z.data).sum(axis=axis), 1.0,
                               rtol=1e-5 if dtype == np.float32 else 1e-14)


def test_log_softmax_at_extremes():
    x = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0]])
    with no_warnings():
        z = mg.log_softmax(const(x))
    # NOTE: x - logsumexp(x) cancels ~1000 to ~1, so about |x| * eps = 1e-13 is lost there
    np.testing.assert_allclose(z.data, scipy.special.log_softmax(x, axis=-1), rtol=1e-15, atol=1e-12)
    np.testing.assert_allclose(z.data[0], [0.0, -1000.0, -2000.0], rtol=1e-15)
    np.testing.assert_allclose(np.exp(z.data).sum(axis=-1), 1.0, rtol=1e-12)


def test_log_softmax_gradient():
    x = var(random(2, 4))
    upstream = random(2, 4)
    mg.log_softmax(x).backward(Tensor(upstream))
    softmax = scipy.special.softmax(x.data, axis=-1)
    expected = upstream - softmax * upstream.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-13, atol=1e-15)


# --- elementwise -----------------------------------------------------------------------------
UNARY = {
    "exp": (mg.exp, np.exp, np.array([-1000.0, -2.0, 0.0, 1.5, 700.0])),
    "expm1": (mg.expm1, np.expm1, np.array([-1000.0, -1e-12, 0.0, 1e-300, 1e-8, 700.0])),
    "log": (mg.log, np.log, np.array([1e-300, 0.25, 1.0, 2.0, 1e300])),
    "sqrt": (mg.sqrt, np.sqrt, np.array([0.0, 1e-300, 0.25, 2.0, 1e300])),
    "tanh": (mg.tanh, np.tanh, np.array([-1000.0, -1.0, -0.0, 0.0, 0.5, 20.0, 1000.0])),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_numpy(name, dtype):
    op, reference, points = UNARY[name]
    with np.errstate(all="ignore"):  # 1e300 and 700 overflow float32, 1e-300 underflows to 0
        x = np.concatenate([points, random(6, low=0.1, high=3.0)]).astype(dtype)
        expected = reference(x)
        z = op(const(x, dtype))
    assert z.dtype == dtype
    np.testing.assert_allclose(z.data, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_log_and_sqrt_at_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mg.log(const(0.0)).item() == -np.inf
    assert mg.sqrt(const(0.0)).item() == 0.0
    assert mg.exp(const(0.0)).item() == 1.0
    assert mg.tanh(const(1000.0)).item() == 1.0 and mg.tanh(const(-1000.0)).item() == -1.0


def test_unary_gradients_at_ordinary_points():
    x = random(5, low=0.2, high=2.0)
    for op, derivative in [(mg.exp, np.exp), (mg.log, lambda v: 1 / v),
                           (mg.sqrt, lambda v: 0.5 / np.sqrt(v)),
                           (mg.tanh, lambda v: 1 / np.cosh(v) ** 2)]:
        leaf = var(x)
        op(leaf).sum().backward()
        np.testing.assert_allclose(leaf.grad, derivative(x), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_matches_expit_and_saturates_exactly(dtype):
    x = np.concatenate([[-1000.0, -745.0, -40.0, -1.0, 0.0, 1.0, 40.0, 745.0, 1000.0],
                        random(6, low=-8, high=8)]).astype(dtype)
    with no_warnings():
        z = mg.sigmoid(const(x, dtype))
    assert z.dtype == dtype and not np.any(np.isnan(z.data))
    # atol: at -745 the exact value e^-745 rounds to the least subnormal, where expit gives 0
    np.testing.assert_allclose(z.data, scipy.special.expit(x),
                               rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-320)
    assert z.data[0] == 0.0 and z.data[8] == 1.0  # -1000 and 1000 saturate exactly
    assert z.data[4] == 0.5


def test_sigmoid_gradient_at_saturation_is_zero_not_nan():
    x = var([-1000.0, 0.0, 1000.0])
    with no_warnings():
        mg.sigmoid(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.25, 0.0])


def test_sigmoid_gradient():
    x = var(random(6, low=-6, high=6))
    mg.sigmoid(x).sum().backward()
    s = scipy.special.expit(x.data)
    np.testing.assert_allclose(x.grad, s * (1 - s), rtol=1e-13)


def test_relu_forward_and_its_subgradient_at_zero():
    x = var([-2.0, -0.0, 0.0, 1e-300, 3.0])
    z = mg.relu(x)
    np.testing.assert_array_equal(z.data, np.maximum([-2.0, -0.0, 0.0, 1e-300, 3.0], 0.0))
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0, 1.0, 1.0])  # relu'(0) = 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softplus_matches_logaddexp_at_extremes(dtype):
    x = np.concatenate([[-1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0],
                        random(6, low=-8, high=8)]).astype(dtype)
    with no_warnings():
        z = mg.softplus(const(x, dtype))
    assert z.dtype == dtype
    np.testing.assert_allclose(z.data, np.logaddexp(0, x),
                               rtol=1e-6 if dtype == np.float32 else 1e-15, atol=0)
    assert z.data[0] == 0.0 and z.data[6] == 1000.0
    assert z.data[3] == np.log(dtype(2))


def test_softplus_gradient_is_expit():
    x = var(np.concatenate([[-1000.0, 0.0, 1000.0], random(5, low=-8, high=8)]))
    with no_warnings():
        mg.softplus(x).sum().backward()
    np.testing.assert_allclose(x.grad, scipy.special.expit(x.data), rtol=1e-15, atol=0)


# --- shape ops -------------------------------------------------------------------------------
def test_reshape_and_transpose_match_numpy():
    x = random(2, 3, 4)
    np.testing.assert_array_equal(mg.reshape(const(x), (4, 6)).data, x.reshape(4, 6))
    np.testing.assert_array_equal(mg.reshape(const(x), (-1,)).data, x.reshape(-1))
    np.testing.assert_array_equal(mg.transpose(const(x)).data, x.transpose())
    np.testing.assert_array_equal(mg.transpose(const(x), (1, 2, 0)).data, x.transpose(1, 2, 0))
    np.testing.assert_array_equal(mg.transpose(const(x), (-1, 0, 1)).data, x.transpose(2, 0, 1))


def test_reshape_and_transpose_gradients_return_to_the_input_layout():
    x = var(random(2, 3, 4))
    upstream = random(3, 4, 2)
    mg.transpose(x, (1, 2, 0)).backward(Tensor(upstream))
    np.testing.assert_array_equal(x.grad, upstream.transpose(2, 0, 1))
    y = var(random(2, 3))
    mg.reshape(y, (3, 2)).backward(Tensor(np.arange(6.0).reshape(3, 2)))
    np.testing.assert_array_equal(y.grad, np.arange(6.0).reshape(2, 3))


def test_transpose_rejects_a_bad_permutation():
    with pytest.raises(ValueError, match="permutation"):
        mg.transpose(const(np.ones((2, 3))), (0, 0))


X34 = np.arange(12.0).reshape(3, 4)


@pytest.mark.parametrize("index", [
    (slice(1, None), slice(None, None, 2)),
    -1,
    (slice(None), -2),
    (Ellipsis, slice(None, None, -1)),
    (None, 1),
    ([0, 0, 2],),
    ([2, 0, 2], [1, 1, 3]),
    (slice(None), [3, 3]),
    (Ellipsis, [0, 0]),
    X34 > 4.5,
    ([-1, -3],),
], ids=str)
def test_getitem_matches_numpy(index):
    z = mg.getitem(const(X34), index)
    np.testing.assert_array_equal(z.data, X34[index])


@pytest.mark.parametrize("index", [
    (slice(1, None), slice(None, None, 2)),
    -1,
    ([0, 0, 2],),
    ([2, 0, 2], [1, 1, 3]),
    (slice(None), [3, 3]),
    (Ellipsis, [0, 0]),
    X34 > 4.5,
    ([-1, -3, -1],),
], ids=str)
def test_getitem_gradient_is_a_scatter_add(index):
    x = var(X34)
    z = mg.getitem(x, index)
    upstream = random(*z.shape)
    z.backward(Tensor(upstream))
    expected = np.zeros_like(X34)
    np.add.at(expected, index, upstream)  # the reference: every read adds its gradient
    np.testing.assert_allclose(x.grad, expected, rtol=1e-15)


def test_broadcast_to_matches_numpy_and_sums_back():
    x = var(random(2, 1))
    z = mg.broadcast_to(x, (4, 2, 3))
    np.testing.assert_array_equal(z.data, np.broadcast_to(x.data, (4, 2, 3)))
    upstream = random(4, 2, 3)
    z.backward(Tensor(upstream))
    np.testing.assert_allclose(x.grad, upstream.sum(axis=(0, 2))[:, None], rtol=1e-15)
    with pytest.raises(ValueError, match=r"broadcast_to: shape \(2, 1\) does not broadcast"):
        mg.broadcast_to(x, (3, 3))


@pytest.mark.parametrize("index", [(slice(1, 3),), ([0, 2, 0],), (X34 > 4.5,)], ids=str)
def test_scatter_add_is_numpys_add_at_and_its_gradient_is_getitem(index):
    values = var(X34[index] + 1.0)
    z = mg.scatter_add(values, X34.shape, index)
    expected = np.zeros_like(X34)
    np.add.at(expected, index, values.data)
    np.testing.assert_array_equal(z.data, expected)
    upstream = random(*X34.shape)
    z.backward(Tensor(upstream))
    np.testing.assert_array_equal(values.grad, upstream[index])


def test_getitem_repeated_indices_sum_their_gradients():
    x = var([1.0, 2.0, 3.0])
    mg.getitem(x, [0, 0, 1]).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 1.0, 0.0])


def test_getitem_with_tensor_indices_and_masks():
    x = var([1.0, -2.0, 3.0, -4.0])
    mask = Tensor(np.array([True, False, True, False]))
    np.testing.assert_array_equal(mg.getitem(x, mask).data, [1.0, 3.0])
    np.testing.assert_array_equal(x[Tensor(np.array([3, 3]))].data, [-4.0, -4.0])
    mg.getitem(x, mask).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_matches_numpy_and_splits_its_gradient(axis):
    shapes = [(2, 3), (2, 3), (2, 3)]
    shapes = [tuple(n + i if d == axis % 2 else n for d, n in enumerate(s))
              for i, s in enumerate(shapes)]
    parts = [var(random(*s)) for s in shapes]
    z = mg.concatenate(parts, axis=axis)
    np.testing.assert_array_equal(z.data, np.concatenate([p.data for p in parts], axis=axis))
    upstream = random(*z.shape)
    z.backward(Tensor(upstream))
    start = 0
    for p in parts:
        size = p.shape[axis]
        np.testing.assert_array_equal(p.grad, np.take(upstream, range(start, start + size), axis=axis))
        start += size


def test_concatenate_shape_error_lists_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        mg.concatenate([const(np.ones((2, 3))), const(np.ones((3, 2)))], axis=1)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_matches_numpy_and_splits_its_gradient(axis):
    parts = [var(random(2, 3)) for _ in range(4)]
    z = mg.stack(parts, axis=axis)
    np.testing.assert_array_equal(z.data, np.stack([p.data for p in parts], axis=axis))
    upstream = random(*z.shape)
    z.backward(Tensor(upstream))
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(p.grad, np.take(upstream, i, axis=axis))


def test_stack_of_different_shapes_lists_them():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        mg.stack([const(np.ones(2)), const(np.ones(3))])


def test_clone_copies_into_memory_of_its_own_and_passes_the_gradient():
    x = var(random(2, 3))
    z = mg.clone(x)
    np.testing.assert_array_equal(z.data, x.data)
    assert not np.shares_memory(z.data, x.data)
    upstream = random(2, 3)
    z.backward(Tensor(upstream))
    np.testing.assert_array_equal(x.grad, upstream)


def test_where_matches_numpy_with_broadcasting():
    condition = np.array([[True, False, True], [False, False, True]])
    x, y = var(random(2, 3)), var(random(3))
    z = mg.where(condition, x, y)
    np.testing.assert_array_equal(z.data, np.where(condition, x.data, y.data))
    upstream = random(2, 3)
    z.backward(Tensor(upstream))
    np.testing.assert_array_equal(x.grad, np.where(condition, upstream, 0.0))
    np.testing.assert_array_equal(y.grad, np.where(condition, 0.0, upstream).sum(axis=0))


def test_where_with_a_scalar_and_a_tensor_condition():
    x = var([-1.0, 2.0, -3.0])
    z = mg.where(Tensor(x.data > 0), x, 0.0)
    np.testing.assert_array_equal(z.data, [0.0, 2.0, 0.0])
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


def test_where_needs_a_boolean_condition():
    with pytest.raises(TypeError, match="int"):
        mg.where(np.array([1, 0]), const([1.0, 2.0]), const([3.0, 4.0]))


# --- losses ----------------------------------------------------------------------------------
def bce_reference(x, t):
    """-[t ln s(x) + (1 - t) ln(1 - s(x))] straight from the definition, float64 SciPy."""
    s = scipy.special.expit(x)
    return -(t * np.log(s) + (1 - t) * np.log(1 - s))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_the_definition(reduction):
    x = random(4, 5, low=-8, high=8)
    t = np.concatenate([random(4, 3, low=0, high=1), np.zeros((4, 1)), np.ones((4, 1))], axis=1)
    z = mg.binary_cross_entropy_with_logits(const(x), const(t), reduction=reduction)
    values = bce_reference(x, t)
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    assert z.shape == np.shape(expected)
    np.testing.assert_allclose(z.data, expected, rtol=1e-12)


def test_bce_with_logits_at_100_is_the_exact_asymptote():
    # l = (1 - t) x + ln(1 + e^-x); at x = +-100, ln(1 + e^-100) = e^-100 in double precision
    t = np.array([0.0, 0.3, 1.0])
    tail = np.exp(-100.0)
    with no_warnings():
        high = mg.binary_cross_entropy_with_logits(const(np.full(3, 100.0)), const(t), "none")
        low = mg.binary_cross_entropy_with_logits(const(np.full(3, -100.0)), const(t), "none")
    np.testing.assert_allclose(high.data, (1 - t) * 100 + tail, rtol=1e-15, atol=0)
    np.testing.assert_allclose(low.data, t * 100 + tail, rtol=1e-15, atol=0)
    assert high.data[2] > 0  # e^-100, not rounded to 0 by 1 - s(100)


def test_bce_with_logits_gradients_are_finite_at_saturation():
    x = var([-100.0, -1.0, 0.0, 2.0, 100.0])
    t = var([1.0, 0.2, 0.5, 0.0, 0.0])
    with no_warnings():
        mg.binary_cross_entropy_with_logits(x, t, reduction="sum").backward()
    np.testing.assert_allclose(x.grad, scipy.special.expit(x.data) - t.data, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(t.grad, -x.data)


def test_bce_with_logits_mean_gradient_is_scaled():
    x, t = var(random(6)), const(random(6, low=0, high=1))
    mg.binary_cross_entropy_with_logits(x, t).backward()
    np.testing.assert_allclose(x.grad, (scipy.special.expit(x.data) - t.data) / 6, rtol=1e-14)


@pytest.mark.parametrize("loss", [mg.binary_cross_entropy_with_logits, mg.mse_loss, mg.gaussian_kl])
def test_losses_reject_unknown_reductions_and_name_them(loss):
    with pytest.raises(ValueError, match="'average'") as info:
        loss(const(np.ones(3)), const(np.ones(3)), reduction="average")
    assert loss.__name__ in str(info.value)


@pytest.mark.parametrize("loss", [mg.binary_cross_entropy_with_logits, mg.mse_loss, mg.gaussian_kl])
def test_losses_name_both_shapes_on_mismatch(loss):
    with pytest.raises(ValueError) as info:
        loss(const(np.ones((2, 3))), const(np.ones((3, 2))))
    assert "(2, 3)" in str(info.value) and "(3, 2)" in str(info.value)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_numpy(reduction):
    p, t = var(random(3, 4)), var(random(3, 4))
    z = mg.mse_loss(p, t, reduction=reduction)
    squared = (p.data - t.data) ** 2
    expected = {"mean": squared.mean(), "sum": squared.sum(), "none": squared}[reduction]
    np.testing.assert_allclose(z.data, expected, rtol=1e-14)
    z.sum().backward()
    scale = 1 / 12 if reduction == "mean" else 1
    np.testing.assert_allclose(p.grad, 2 * scale * (p.data - t.data), rtol=1e-14)
    np.testing.assert_allclose(t.grad, -2 * scale * (p.data - t.data), rtol=1e-14)


def kl_reference(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, 1)) = (sigma^2 + mu^2 - 1 - ln sigma^2) / 2, elementwise."""
    sigma2 = np.exp(logvar)
    return 0.5 * (sigma2 + mu ** 2 - 1 - np.log(sigma2))


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_gaussian_kl_matches_the_closed_form(reduction):
    mu, logvar = random(4, 3, low=-3, high=3), random(4, 3, low=-4, high=4)
    z = mg.gaussian_kl(const(mu), const(logvar), reduction=reduction)
    values = kl_reference(mu, logvar)
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    np.testing.assert_allclose(z.data, expected, rtol=1e-12)


def test_gaussian_kl_default_reduction_is_sum():
    mu, logvar = random(5), random(5)
    np.testing.assert_allclose(mg.gaussian_kl(const(mu), const(logvar)).data,
                               kl_reference(mu, logvar).sum(), rtol=1e-13)


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    mu, logvar = np.array([0.5, -1.0, 0.0]), np.array([0.3, -0.5, 1.2])
    sigma = np.exp(logvar / 2)
    samples = np.random.default_rng(7).normal(mu, sigma, size=(200_000, 3))
    log_ratio = scipy.stats.norm.logpdf(samples, mu, sigma) - scipy.stats.norm.logpdf(samples)
    estimate = log_ratio.mean(axis=0)
    standard_error = log_ratio.std(axis=0) / np.sqrt(len(samples))
    z = mg.gaussian_kl(const(mu), const(logvar), reduction="none")
    assert np.all(np.abs(z.data - estimate) < 5 * standard_error), (z.data, estimate, standard_error)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-30, 30)),
       st.data())
def test_gaussian_kl_is_never_negative(mu, data):
    logvar = data.draw(hnp.arrays(np.float64, mu.shape, elements=st.floats(-30, 30)), label="logvar")
    z = mg.gaussian_kl(const(mu), const(logvar), reduction="none")
    assert np.all(z.data >= 0), (mu, logvar, z.data)


def test_gaussian_kl_is_zero_at_the_prior():
    z = mg.gaussian_kl(const(np.zeros(4)), const(np.zeros(4)), reduction="none")
    np.testing.assert_array_equal(z.data, np.zeros(4))


@pytest.mark.parametrize("v", [1e-8, -1e-8, 1e-5, -3e-6])
def test_gaussian_kl_keeps_precision_for_small_logvar(v):
    # (e^v - 1 - v) / 2 = v^2/4 + v^3/12 + v^4/48 + ...; naive exp(v) - 1 would lose every digit
    z = mg.gaussian_kl(const([0.0]), const([v]))
    series = v ** 2 / 4 + v ** 3 / 12 + v ** 4 / 48
    np.testing.assert_allclose(z.data, series, rtol=1e-6)


def test_gaussian_kl_weightients():
    mu, logvar = var(random(5)), var(random(5))
    mg.gaussian_kl(mu, logvar).backward()
    np.testing.assert_allclose(mu.grad, mu.data, rtol=1e-15)
    np.testing.assert_allclose(logvar.grad, (np.exp(logvar.data) - 1) / 2, rtol=1e-13)


# --- reparameterize --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_reparameterize_is_mu_plus_sigma_eps(shape, dtype):
    mu, logvar = var(random(*shape, dtype=dtype), dtype), var(random(*shape, dtype=dtype), dtype)
    # the reference kernel: the fused backends are held to it in ulps by tests/test_kernels.py
    z = mg.reparameterize(mu, logvar, seed=123, offset=45, backend="reference")
    eps = mg.random.normal(mu.size, 123, 45, dtype).reshape(shape)
    sigma = np.exp(logvar.data / 2)
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    assert z.shape == shape and z.dtype == dtype
    np.testing.assert_allclose(z.data, mu.data + sigma * eps, rtol=rtol)
    upstream = random(*shape, dtype=dtype)
    z.backward(Tensor(upstream))
    np.testing.assert_array_equal(mu.grad, upstream)
    np.testing.assert_allclose(logvar.grad, upstream * sigma * eps / 2, rtol=rtol)


@pytest.mark.parametrize("save_noise", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reparameterize_kl_is_sample_plus_closed_form_kl(dtype, save_noise):
    shape = (3, 5)
    mu, logvar = var(random(*shape, dtype=dtype), dtype), var(random(*shape, dtype=dtype), dtype)
    z, kl = mg.reparameterize_kl(mu, logvar, seed=8, offset=3, save_noise=save_noise,
                                 backend="reference")  # the fused backends are held to it in ulps
    eps = mg.random.normal(mu.size, 8, 3, dtype).reshape(shape)
    sigma = np.exp(logvar.data / 2)
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(z.data, mu.data + sigma * eps, rtol=rtol)
    closed_form = 0.5 * np.sum(np.exp(logvar.data.astype(np.float64)) - 1
                               - logvar.data + mu.data.astype(np.float64) ** 2)
    np.testing.assert_allclose(kl.data, closed_form, rtol=rtol)
    assert kl.dtype == dtype and kl.requires_grad and kl.shape == ()
    # a VAE's loss in miniature: <upstream, z> + 0.25 KL, both gradients in one fused pass
    upstream = random(*shape, dtype=dtype)
    ((z * upstream).sum() + kl * 0.25).backward()
    np.testing.assert_allclose(mu.grad, upstream + 0.25 * mu.data, rtol=rtol)
    np.testing.assert_allclose(logvar.grad, upstream * sigma * eps / 2
                               + 0.25 * np.expm1(logvar.data) / 2, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("used", ["z", "kl"])
def test_reparameterize_kl_adds_only_the_gradient_of_the_output_used(used):
    mu, logvar = var(random(4)), var(random(4))
    z, kl = mg.reparameterize_kl(mu, logvar, seed=8, offset=3)
    eps = mg.random.normal(4, 8, 3)
    (z.sum() if used == "z" else kl).backward()
    if used == "z":   # no KL term: z's backward is linear in its gradient
        np.testing.assert_array_equal(mu.grad, np.ones(4))
        np.testing.assert_allclose(logvar.grad, np.exp(logvar.data / 2) * eps / 2, rtol=1e-15)
    else:
        np.testing.assert_allclose(mu.grad, mu.data, rtol=1e-15)
        np.testing.assert_allclose(logvar.grad, np.expm1(logvar.data) / 2, rtol=1e-15)


@pytest.mark.parametrize("family", mg.ops.families.FAMILIES)
def test_reparameterize_family_is_loc_plus_scale_times_the_familys_noise(family):
    loc, log_scale = var(random(2, 3)), var(random(2, 3))
    z = mg.reparameterize_family(loc, log_scale, family, seed=4, offset=1)
    eps = mg.ops.families.noise((2, 3), family, seed=4, offset=1)
    np.testing.assert_allclose(z.data, loc.data + np.exp(log_scale.data) * eps, rtol=1e-14)


def test_reparameterize_with_a_stream_takes_its_position():
    mu, logvar = const(np.zeros((2, 2))), const(np.zeros((2, 2)))
    stream = mg.random.Stream(seed=9, offset=3)
    first = mg.reparameterize(mu, logvar, stream=stream, backend="reference")
    second = mg.reparameterize(mu, logvar, stream=stream, backend="reference")
    assert stream.offset == 11
    np.testing.assert_array_equal(first.data.ravel(), mg.random.normal(4, 9, 3))
    np.testing.assert_array_equal(second.data.ravel(), mg.random.normal(4, 9, 7))


def test_reparameterize_needs_a_position():
    with pytest.raises(ValueError, match="seed"):
        mg.reparameterize(const([0.0]), const([0.0]))


def test_reparameterize_kl_refuses_the_old_positional_kl_weight():
    # the weight once rode along in z's backward; now kl carries it as its cotangent, and a
    # call written for the old form must not silently train without the KL
    stream = mg.random.Stream(seed=4)
    with pytest.raises(TypeError, match="add kl_weight \\* kl to the loss"):
        mg.reparameterize_kl(var(np.zeros(3)), var(np.zeros(3)), 0.5, stream=stream)
    assert stream.offset == 0


@pytest.mark.parametrize("kl_weight", [1, np.float32(0.25), np.int64(3)])
@pytest.mark.parametrize("backend", ["reference", "numba_cpu"])
def test_reparameterize_kl_takes_numpy_and_python_real_weights(kl_weight, backend):
    mu, logvar = var(random(4)), var(random(4))
    z, kl = mg.reparameterize_kl(mu, logvar, seed=1, offset=0, backend=backend)
    ((z * 0.0).sum() + kl * kl_weight).backward()
    np.testing.assert_allclose(mu.grad, float(kl_weight) * mu.data, rtol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda s: mg.reparameterize(const([0.0]), const([0.0]), stream=s, backend="nope"),
     ValueError, "reparameterize: unknown kernel backend 'nope'"),
    (lambda s: mg.reparameterize_kl(const([0.0]), const([0.0]), stream=s, backend="nope"),
     ValueError, "reparameterize_kl: unknown kernel backend 'nope'"),
    (lambda s: mg.reparameterize(const([0.0, 1.0]), const([0.0]), stream=s),
     ValueError, "mu has shape"),
    (lambda s: mg.reparameterize(const(np.zeros(8)), const(np.zeros(8)), stream=s),
     ValueError, r"Stream.take: offset 73786976294838206458 \+ size 8 is past 2\*\*66"),
    (lambda s: mg.reparameterize_kl(const(np.zeros(8)), const(np.zeros(8)), stream=s),
     ValueError, r"Stream.take: offset .* is past 2\*\*66"),
], ids=["backend", "kl backend", "shapes", "past the end", "kl past the end"])
def test_a_refused_reparameterize_does_not_advance_the_stream(call, error, message):
    stream = mg.random.Stream(seed=3, offset=2**66 - 6)
    with pytest.raises(error, match=message):
        call(stream)
    assert stream.offset == 2**66 - 6
