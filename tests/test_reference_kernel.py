"""kernels.reference and the kernels dispatch against the contract; minigrad.random.Stream."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import kernels
from kernels import reference
from kernels.philox import normal
from minigrad.random import Stream

DTYPES = [np.float32, np.float64]
SHAPES = [(), (3,), (2, 3), (4, 1, 5)]


def inputs(shape, dtype, seed=0):
    """mu, logvar of the given shape and dtype, from NumPy's generator (not the one under test)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_is_the_closed_form(shape, dtype):
    mu, logvar = inputs(shape, dtype)
    z = kernels.forward(mu, logvar, seed=11, offset=5, backend="reference")
    eps = normal(mu.size, 11, 5, dtype).reshape(shape)
    assert isinstance(z, np.ndarray) and z.shape == shape and z.dtype == dtype
    np.testing.assert_array_equal(z, mu + np.exp(logvar / 2) * eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_is_the_closed_form(shape, dtype):
    grad_z, logvar = inputs(shape, dtype, seed=1)
    grad_mu, grad_logvar = kernels.backward(grad_z, logvar, seed=11, offset=5, backend="reference")
    eps = normal(grad_z.size, 11, 5, dtype).reshape(shape)
    for grad in (grad_mu, grad_logvar):
        assert isinstance(grad, np.ndarray) and grad.shape == shape and grad.dtype == dtype
    np.testing.assert_array_equal(grad_mu, grad_z)
    np.testing.assert_array_equal(grad_logvar, grad_z * np.exp(logvar / 2) * eps / 2)


def test_grad_mu_is_not_an_alias_of_grad_z():
    grad_z, logvar = inputs((3,), np.float64)
    grad_mu, _ = kernels.backward(grad_z, logvar, 0, 0)
    grad_mu += 1
    assert not np.shares_memory(grad_mu, grad_z)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
       st.integers(0, 2**64 - 1), st.integers(0, 2**40), st.data())
def test_standardised_output_is_the_stream(dtype, shape, seed, offset, data):
    floats = st.floats(-3, 3, width=np.dtype(dtype).itemsize * 8)
    mu = data.draw(hnp.arrays(dtype, shape, elements=floats), label="mu")
    logvar = data.draw(hnp.arrays(dtype, shape, elements=floats), label="logvar")
    z = kernels.forward(mu, logvar, seed, offset)
    eps = normal(mu.size, seed, offset, dtype).reshape(shape)
    # (z - mu) / sigma undoes the forward up to rounding in dtype
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose((z - mu) / np.exp(logvar / 2), eps, rtol=tolerance, atol=tolerance)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
       st.integers(0, 2**64 - 1), st.integers(0, 2**40))
def test_backward_regenerates_the_forwards_noise(dtype, shape, seed, offset):
    # with mu = 0 and logvar = 0 the forward returns eps itself, bit for bit
    zeros = np.zeros(shape, dtype)
    eps = kernels.forward(zeros, zeros, seed, offset, backend="reference")
    grad_z, logvar = inputs(shape, dtype, seed=seed % 1000)
    _, grad_logvar = kernels.backward(grad_z, logvar, seed, offset, backend="reference")
    np.testing.assert_array_equal(grad_logvar, grad_z * np.exp(logvar / 2) * eps / 2)


def test_noise_is_the_stream_in_c_order():
    eps = reference.noise((2, 3), np.float32, 4, 9)
    assert eps.shape == (2, 3) and eps.dtype == np.float32
    np.testing.assert_array_equal(eps.ravel(), normal(6, 4, 9, np.float32))


def test_non_contiguous_inputs_use_their_logical_order():
    mu, logvar = inputs((4, 6), np.float64)
    strided_mu, strided_logvar = mu[::2, ::3], logvar.T.copy().T[::2, ::3]
    z = kernels.forward(strided_mu, strided_logvar, 3, 1)
    contiguous = np.ascontiguousarray(strided_mu), np.ascontiguousarray(strided_logvar)
    expected = kernels.forward(*contiguous, 3, 1)
    np.testing.assert_array_equal(z, expected)


def test_nan_and_inf_in_logvar_propagate():
    mu = np.array([0.5, 0.5, 0.5, 0.5])
    logvar = np.array([np.nan, np.inf, -np.inf, 0.0])
    z = kernels.forward(mu, logvar, 1, 0, backend="reference")
    eps = normal(4, 1, 0)
    assert np.isnan(z[0])
    assert z[1] == np.copysign(np.inf, eps[1])  # sigma = inf
    assert z[2] == 0.5  # sigma = 0
    assert z[3] == 0.5 + eps[3]
    _, grad_logvar = kernels.backward(np.ones(4), logvar, 1, 0, backend="reference")
    assert np.isnan(grad_logvar[0]) and not np.isnan(grad_logvar[3])


def test_empty_inputs():
    empty = np.zeros((0, 3), np.float32)
    z = kernels.forward(empty, empty, 0, 10)
    grad_mu, grad_logvar = kernels.backward(empty, empty, 0, 10)
    assert z.shape == grad_mu.shape == grad_logvar.shape == (0, 3)
    assert z.dtype == grad_logvar.dtype == np.float32


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"mu has shape \(2, 3\), logvar \(3,\)"):
        kernels.forward(np.zeros((2, 3)), np.zeros(3), 0, 0)
    with pytest.raises(ValueError, match=r"grad_z has shape \(2,\), logvar \(2, 1\)"):
        kernels.backward(np.zeros(2), np.zeros((2, 1)), 0, 0)


def test_dtype_errors_name_the_dtypes():
    with pytest.raises(TypeError, match="float32.*float64"):
        kernels.forward(np.zeros(2, np.float32), np.zeros(2), 0, 0)
    with pytest.raises(TypeError, match="int64"):
        kernels.forward(np.zeros(2, np.int64), np.zeros(2, np.int64), 0, 0)
    with pytest.raises(TypeError, match="float16"):
        kernels.backward(np.zeros(2, np.float16), np.zeros(2, np.float16), 0, 0)


@pytest.mark.parametrize("seed, offset, error, word", [
    (-1, 0, ValueError, "seed"), (2**64, 0, ValueError, "seed"), (False, 0, TypeError, "seed"),
    (0, -3, ValueError, "offset"), (0, 1.0, TypeError, "offset")])
def test_bad_seed_or_offset(seed, offset, error, word):
    with pytest.raises(error, match=f"kernels.forward: {word}"):
        kernels.forward(np.zeros(2), np.zeros(2), seed, offset)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="'nope'.*known: .*reference"):
        kernels.forward(np.zeros(2), np.zeros(2), 0, 0, backend="nope")
    assert "reference" in kernels.available_backends()


def test_environment_variable_overrides_the_default(monkeypatch):
    monkeypatch.setenv("MINIGRAD_KERNEL_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"'nope' \(from \$MINIGRAD_KERNEL_BACKEND\)"):
        kernels.backward(np.zeros(2), np.zeros(2), 0, 0)
    # an explicit backend still wins over the environment
    assert kernels.forward(np.zeros(2), np.zeros(2), 0, 0, backend="reference").shape == (2,)
    monkeypatch.setenv("MINIGRAD_KERNEL_BACKEND", "reference")
    assert kernels.forward(np.zeros(2), np.zeros(2), 0, 0).shape == (2,)


def test_stream_take_advances_and_draws_consecutively():
    stream = Stream(seed=42, offset=3)
    assert stream.take(5) == (42, 3)
    assert stream.take(0) == (42, 8)
    assert stream.offset == 8
    first, second = stream.normal((2, 3)), stream.normal(4, dtype=np.float32)
    assert first.shape == (2, 3) and second.dtype == np.float32
    np.testing.assert_array_equal(first.ravel(), normal(6, 42, 8))
    np.testing.assert_array_equal(second, normal(4, 42, 14, np.float32))
    assert repr(stream) == "Stream(seed=42, offset=18)"


def test_stream_state_round_trips_through_json():
    stream = Stream(np.uint64(2**64 - 1), offset=np.int64(7))
    stream.take(10)
    state = json.loads(json.dumps(stream.state_dict()))
    assert state == {"seed": 2**64 - 1, "offset": 17}
    restored = Stream(0)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.normal(5), stream.normal(5))


def test_stream_rejects_bad_input_without_changing():
    stream = Stream(1, 2)
    with pytest.raises(ValueError, match="keys"):
        stream.load_state_dict({"seed": 1})
    with pytest.raises(ValueError, match="seed is -1"):
        stream.load_state_dict({"seed": -1, "offset": 0})
    with pytest.raises(TypeError, match="float16"):
        stream.normal(3, dtype=np.float16)
    with pytest.raises(ValueError, match=r"shape\[1\] is -1"):
        stream.normal((2, -1))
    with pytest.raises(ValueError, match="n is -1"):
        stream.take(-1)
    assert stream.state_dict() == {"seed": 1, "offset": 2}
    with pytest.raises(ValueError, match="seed"):
        Stream(2**64)
    with pytest.raises(TypeError, match="seed"):
        Stream(1.0)


def test_stream_refuses_offsets_past_its_end():
    # 2**66 normals per seed (the last block index must fit 64 bits): past that, a position does
    # not exist, so no Stream may hold one or hand one out
    end = 2**66
    assert Stream(1, offset=end).take(0) == (1, end)
    with pytest.raises(ValueError, match=r"Stream: offset 73786976294838206465 \+ size 0 is "
                                         r"past 2\*\*66, the end of the stream"):
        Stream(1, offset=end + 1)
    stream = Stream(1, offset=end - 4)
    with pytest.raises(ValueError, match=r"Stream.load_state_dict: offset .* past 2\*\*66"):
        stream.load_state_dict({"seed": 2, "offset": end + 1})
    assert stream.state_dict() == {"seed": 1, "offset": end - 4}
    with pytest.raises(ValueError, match=r"Stream.take: offset 73786976294838206460 \+ size 5 "
                                         r"is past 2\*\*66"):
        stream.take(5)
    with pytest.raises(ValueError, match=r"Stream.take: .* past 2\*\*66"):
        stream.normal((5,))
    assert stream.offset == end - 4
    assert stream.normal(4).shape == (4,) and stream.offset == end
