"""Tensor itself: construction, array facts, operators and their reflections, error messages,
and the way back to NumPy (.numpy(), .item())."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor


# --- construction ----------------------------------------------------------------------------
def test_from_a_nested_list_uses_numpys_default_dtype():
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert isinstance(x.data, np.ndarray)
    assert x.shape == (2, 3) and x.dtype == np.float64
    np.testing.assert_array_equal(x.data, [[1, 2, 3], [4, 5, 6]])


def test_from_python_scalars():
    assert Tensor(2.5).shape == () and Tensor(2.5).dtype == np.float64
    assert Tensor(3).dtype == np.array(3).dtype  # an int stays an int
    assert Tensor(True).dtype == np.bool_


def test_from_an_array_keeps_its_dtype_and_memory():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = Tensor(array)
    assert x.dtype == np.float32
    assert x.data is array  # kept as given: no copy


def test_from_a_tensor_takes_its_data():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = Tensor(x)
    assert y.data is x.data and not y.requires_grad and y.is_leaf


@pytest.mark.parametrize("data", [[1, 2, 3], np.arange(3), np.array([True, False])])
def test_requires_grad_on_non_float_data_names_the_dtype(data):
    dtype = np.asarray(data).dtype
    with pytest.raises(TypeError, match=str(dtype)):
        Tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match=str(dtype)):
        Tensor(data).requires_grad_()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_requires_grad_on_every_float_dtype(dtype):
    x = Tensor(np.zeros(2, dtype=dtype), requires_grad=True)
    assert x.requires_grad and x.is_leaf and x.grad is None


# --- array facts -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (4, 1, 5)])
def test_shape_dtype_ndim_size_len(shape):
    array = np.ones(shape, dtype=np.float32)
    x = Tensor(array)
    assert x.shape == shape and isinstance(x.shape, tuple)
    assert x.dtype == np.float32
    assert x.ndim == len(shape)
    assert x.size == array.size
    if shape:
        assert len(x) == shape[0]


def test_leaf_and_op():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert x.is_leaf and x.op is None
    assert not y.is_leaf and y.op == "mul"


def test_numpy_returns_the_data_and_item_a_python_scalar():
    array = np.array([[1.5, 2.5]])
    x = Tensor(array)
    assert x.numpy() is array
    value = Tensor(np.float32(1.5)).item()
    assert value == 1.5 and type(value) is float
    assert type(Tensor(7).item()) is int
    with pytest.raises(ValueError):
        Tensor([1.0, 2.0]).item()


# --- operators -------------------------------------------------------------------------------
A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
B = np.array([2.0, -0.5, 0.25])


@pytest.mark.parametrize("left, apply, expected", [
    (A, lambda a, b: a + b, A + B),
    (A, lambda a, b: a - b, A - B),
    (A, lambda a, b: a * b, A * B),
    (A, lambda a, b: a / b, A / B),
    (np.abs(A), lambda a, b: a ** b, np.abs(A) ** B),
])
def test_binary_operators_match_numpy(left, apply, expected):
    z = apply(Tensor(left), Tensor(B))
    assert isinstance(z, Tensor)
    np.testing.assert_array_equal(z.data, expected)


def test_unary_operators_and_methods():
    x = Tensor(A)
    np.testing.assert_array_equal((-x).data, -A)
    np.testing.assert_array_equal(x.T.data, A.T)
    np.testing.assert_array_equal(x.transpose().data, A.T)
    np.testing.assert_array_equal(x.transpose(1, 0).data, A.T)
    np.testing.assert_array_equal(x.reshape(3, 2).data, A.reshape(3, 2))
    np.testing.assert_array_equal(x.reshape((6,)).data, A.reshape(6))
    np.testing.assert_array_equal(x.reshape(-1).data, A.reshape(-1))
    np.testing.assert_array_equal(x[1, ::-1].data, A[1, ::-1])
    np.testing.assert_allclose(x.sum().data, A.sum(), rtol=1e-15)
    np.testing.assert_allclose(x.mean().data, A.mean(), rtol=1e-15)
    assert x.max().item() == 4.0
    np.testing.assert_array_equal(x.relu().data, np.maximum(A, 0))


@pytest.mark.parametrize("apply, expected", [
    (lambda x: 2 + x, 2 + B),
    (lambda x: 2 - x, 2 - B),
    (lambda x: 2 * x, 2 * B),
    (lambda x: 2 / x, 2 / B),
    (lambda x: 2 ** x, 2 ** B),
    (lambda x: x ** 2, B ** 2),
    (lambda x: x - 2, B - 2),
    (lambda x: x / 2, B / 2),
])
def test_operators_with_python_scalars_on_either_side(apply, expected):
    z = apply(Tensor(B))
    assert isinstance(z, Tensor)
    np.testing.assert_allclose(z.data, expected, rtol=1e-15)


@pytest.mark.parametrize("apply, expected", [
    (lambda a, x: a + x, A + B),
    (lambda a, x: a - x, A - B),
    (lambda a, x: a * x, A * B),
    (lambda a, x: a / x, A / B),
    (lambda a, x: a.T @ x[:2], A.T @ B[:2]),
])
def test_ndarray_on_the_left_defers_to_the_tensor(apply, expected):
    z = apply(A, Tensor(B))
    assert isinstance(z, Tensor), f"ndarray <op> Tensor returned {type(z).__name__}"
    np.testing.assert_allclose(z.data, expected, rtol=1e-15)


def test_reflected_operators_record_the_graph():
    x = Tensor(B, requires_grad=True)
    (2 - x).sum().backward()
    np.testing.assert_array_equal(x.grad, -np.ones(3))
    x.zero_grad()
    (2 / x).sum().backward()
    np.testing.assert_allclose(x.grad, -2 / B ** 2, rtol=1e-15)
    x.zero_grad()
    (2 ** x).sum().backward()
    np.testing.assert_allclose(x.grad, np.log(2) * 2 ** B, rtol=1e-15)


def test_matmul_operator():
    w = np.arange(6.0).reshape(3, 2)
    z = Tensor(A) @ Tensor(w)
    np.testing.assert_array_equal(z.data, A @ w)


# --- errors ----------------------------------------------------------------------------------
def test_add_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((2, 3))) + Tensor(np.ones((4,)))
    message = str(info.value)
    assert "add" in message and "(2, 3)" in message and "(4,)" in message


def test_matmul_misalignment_names_both_shapes():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    message = str(info.value)
    assert "matmul" in message and "(2, 3)" in message and "(4, 5)" in message


def test_matmul_of_a_scalar_is_refused():
    with pytest.raises(ValueError, match=r"\(\)"):
        Tensor(2.0) @ Tensor(np.ones(3))


def test_reshape_to_the_wrong_size_names_both():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((2, 3))).reshape(4, 2)
    message = str(info.value)
    assert "reshape" in message and "(2, 3)" in message and "(4, 2)" in message


# --- zero_grad and repr ----------------------------------------------------------------------
def test_zero_grad_clears_the_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad is not None
    x.zero_grad()
    assert x.grad is None


def test_repr_of_a_large_tensor_omits_the_values():
    text = repr(Tensor(np.zeros((10, 10), dtype=np.float32), name="big"))
    assert "shape=(10, 10)" in text and "dtype=float32" in text and "name='big'" in text
    assert "0." not in text


def test_module_exports_the_tensor_and_the_ops():
    assert mg.Tensor is Tensor
    for name in mg.ops.__all__:
        assert callable(getattr(mg, name)), name


def test_transpose_rejects_out_of_range_axes():
    with pytest.raises(ValueError, match=r"axes \(0, 3\) out of range for 2 dimensions"):
        mg.transpose(Tensor(np.ones((2, 3))), (0, 3))


def test_reductions_take_numpy_integer_axes_and_refuse_repeated_or_impossible_ones():
    x = Tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(mg.sum(x, axis=np.int64(1)).data, [3.0, 12.0])
    with pytest.raises(ValueError, match="names a dimension twice"):
        mg.sum(x, axis=(1, -1))
    with pytest.raises(ValueError, match="axis 0 is out of range for a tensor with 0 dimensions"):
        mg.sum(Tensor(np.float64(2.0)), axis=0)


def test_linear_accepts_plain_arrays_as_weight_and_bias():
    out = mg.linear(Tensor(np.ones((2, 3))), np.ones((3, 4)), np.zeros(4))
    np.testing.assert_array_equal(out.data, np.full((2, 4), 3.0))


def test_numpy_reductions_of_a_tensor_return_the_ops_tensor():
    # NumPy calls t.sum(axis=None, out=None) (t.mean also with dtype=None): a TypeError before
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    total, largest, average = np.sum(x), np.max(x), np.mean(x)
    assert all(isinstance(t, Tensor) for t in (total, largest, average))
    assert (total.item(), largest.item(), average.item()) == (15.0, 5.0, 2.5)
    assert total.op == "sum" and largest.op == "max" and average.op == "mean"
    np.testing.assert_array_equal(np.sum(x, axis=1, keepdims=True).data, [[3.0], [12.0]])
    np.testing.assert_array_equal(np.amax(x, axis=0).data, [3.0, 4.0, 5.0])
    total.backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


@pytest.mark.parametrize("method", ["sum", "mean", "max"])
def test_reductions_refuse_an_out_array_or_a_dtype(method):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match=rf"Tensor.{method}: out= is not supported \(got ndarray\)"):
        getattr(np, method)(x, out=np.empty(()))
    with pytest.raises(TypeError, match=rf"Tensor.{method}: dtype= is not supported \(got "
                                        r"<class 'numpy.float32'>\); the result keeps the "
                                        "tensor's dtype float64"):
        getattr(x, method)(dtype=np.float32)
    assert getattr(x, method)(dtype=None, out=None).shape == ()
