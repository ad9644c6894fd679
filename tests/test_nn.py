"""minigrad.nn: parameter discovery, state dicts, Linear (forward, init, gradients), Sequential."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


class Encoder(nn.Module):
    """Attributes of every kind discovery must handle, in a deliberate order."""

    def __init__(self, rng):
        self.body = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.Tanh(), nn.Linear(4, 2, rng=rng))
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.heads = [nn.Linear(2, 1, rng=rng), nn.Linear(2, 1, bias=False, rng=rng)]
        self.frozen = mg.Tensor(np.zeros(2, dtype=np.float32))   # no grad: not a parameter
        self.first = self.body[0]                                  # shared: listed once
        self.note = "not a member"

    def forward(self, x):
        h = self.body(x) * self.scale
        return self.heads[0](h) + self.heads[1](h)


def make_encoder(seed=0):
    return Encoder(np.random.default_rng(seed))


def central_difference(f, x, eps=1e-6):
    """d f / d x by central differences, one element at a time (x float64, changed in place)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        up = f()
        x[index] = saved - eps
        down = f()
        x[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


# --- discovery -----------------------------------------------------------------------------
def test_named_parameters_order_and_names():
    model = make_encoder()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale",
                     "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
                     "heads.0.weight", "heads.0.bias", "heads.1.weight"]
    tensors = model.parameters()
    assert tensors[0] is model.scale and tensors[1] is model.body[0].weight
    assert tensors[-1] is model.heads[1].weight
    assert len({id(t) for t in tensors}) == len(tensors)


def test_named_modules_lists_shared_modules_once():
    model = make_encoder()
    names = [name for name, _ in model.named_modules()]
    assert names == ["", "body", "body.0", "body.1", "body.2", "heads.0", "heads.1"]


def test_zero_grad_and_train_eval():
    model = make_encoder()
    model(np.ones((2, 3), dtype=np.float32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert model.eval() is model
    assert not any(module.training for _, module in model.named_modules())
    model.train()
    assert all(module.training for _, module in model.named_modules())


def test_repr_is_nested():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 1, bias=False)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=4, out_features=1, bias=False)\n"
        "  )\n"
        ")")


def test_forward_missing_raises():
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(1.0)


# --- state dicts ---------------------------------------------------------------------------
def test_state_dict_round_trip_copies_in_place():
    source, target = make_encoder(seed=1), make_encoder(seed=2)
    x = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    assert not np.array_equal(source(x).data, target(x).data)

    state = source.state_dict()
    assert list(state) == [name for name, _ in source.named_parameters()]
    state["scale"][:] = 7.0  # a copy: the model is unchanged
    assert np.all(source.scale.data == 1.0)
    state["scale"][:] = 1.0

    arrays_before = [p.data for p in target.parameters()]
    target.load_state_dict(state)
    assert all(p.data is a for p, a in zip(target.parameters(), arrays_before))
    np.testing.assert_array_equal(target(x).data, source(x).data)


def test_load_state_dict_missing_key():
    model = make_encoder()
    state = model.state_dict()
    del state["body.2.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['body.2.bias'\], unexpected keys \[\]"):
        model.load_state_dict(state)


def test_load_state_dict_unexpected_key():
    model = make_encoder()
    state = model.state_dict()
    state["body.3.weight"] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"unexpected keys \['body.3.weight'\]"):
        model.load_state_dict(state)


def test_load_state_dict_wrong_shape_names_parameter_and_shapes():
    model = make_encoder()
    state = model.state_dict()
    state["body.0.weight"] = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"'body.0.weight' has shape \(3, 4\), "
                                         r"the state has shape \(4, 3\)"):
        model.load_state_dict(state)


def test_load_state_dict_wrong_dtype_changes_nothing():
    model = make_encoder()
    before = model.state_dict()
    state = {name: np.zeros_like(value) for name, value in before.items()}
    state["heads.1.weight"] = state["heads.1.weight"].astype(np.float64)
    with pytest.raises(TypeError, match=r"'heads.1.weight' has dtype float32, "
                                        r"the state has dtype float64"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():  # checked before anything was copied
        np.testing.assert_array_equal(value, before[name])


# --- Linear --------------------------------------------------------------------------------
def test_linear_forward_matches_numpy():
    layer = nn.Linear(3, 5, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    expected = x @ layer.weight.data + layer.bias.data
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-6)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (5,)

    no_bias = nn.Linear(3, 5, bias=False, rng=np.random.default_rng(0))
    assert no_bias.bias is None and len(no_bias.parameters()) == 1
    np.testing.assert_allclose(no_bias(x).data, x @ no_bias.weight.data, rtol=1e-6)


def test_linear_init_bounds_and_spread():
    fan_in = 256
    layer = nn.Linear(fan_in, 512, rng=np.random.default_rng(0))
    bound = 1 / math.sqrt(fan_in)
    # rounding to float32 is monotonic, so values below the bound stay below its float32 value
    assert np.all(np.abs(layer.weight.data) <= np.float32(bound))
    assert np.all(np.abs(layer.bias.data) <= np.float32(bound))
    # U(-a, a) has mean 0 and standard deviation a / sqrt(3); 131072 draws pin both to ~0.3%
    weight = layer.weight.data.astype(np.float64)
    assert abs(weight.mean()) < 0.01 * bound
    assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert weight.min() < -0.99 * bound and weight.max() > 0.99 * bound


def test_linear_init_is_seedable():
    first = nn.Linear(4, 3, rng=np.random.default_rng(42))
    second = nn.Linear(4, 3, rng=np.random.default_rng(42))
    third = nn.Linear(4, 3, rng=np.random.default_rng(43))
    np.testing.assert_array_equal(first.weight.data, second.weight.data)
    np.testing.assert_array_equal(first.bias.data, second.bias.data)
    assert not np.array_equal(first.weight.data, third.weight.data)


@pytest.mark.parametrize("input_shape", [(4, 3), (2, 2, 3), (3,)])
def test_linear_gradients_match_finite_differences(input_shape):
    rng = np.random.default_rng(5)
    layer = nn.Linear(3, 2, dtype=np.float64, rng=rng)
    x = mg.Tensor(rng.normal(size=input_shape), requires_grad=True)
    projection = rng.normal(size=input_shape[:-1] + (2,))    # loss = <projection, layer(x)>

    def loss():
        return float((layer(x).data * projection).sum())

    (layer(x) * projection).sum().backward()
    for tensor in (x, layer.weight, layer.bias):
        numeric = central_difference(loss, tensor.data)
        np.testing.assert_allclose(tensor.grad, numeric, rtol=1e-7, atol=1e-9)


def test_linear_on_3d_input_applies_to_last_axis():
    layer = nn.Linear(3, 4, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 5, 4)
    for i in range(2):
        np.testing.assert_allclose(y.data[i], layer(x[i]).data, rtol=1e-6)
    assert layer(x[0, 0]).shape == (4,)


def test_linear_keeps_float32():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    x = mg.Tensor(np.ones((2, 4, 3), dtype=np.float32), requires_grad=True)
    y = layer(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32


def test_linear_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_features must be a positive int, got 0"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="dtype must be floating, got int32"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match=r"input has shape \(4, 2\); .* in_features=3"):
        nn.Linear(3, 2)(np.ones((4, 2), dtype=np.float32))


# --- Sequential and activations ------------------------------------------------------------
def test_sequential_composes_in_order():
    rng = np.random.default_rng(0)
    first, second = nn.Linear(3, 4, rng=rng), nn.Linear(4, 2, rng=rng)
    model = nn.Sequential(first, nn.Softplus(), second, nn.Sigmoid())
    x = rng.normal(size=(6, 3)).astype(np.float32)
    expected = mg.sigmoid(second(mg.softplus(first(x))))
    np.testing.assert_array_equal(model(x).data, expected.data)

    assert len(model) == 4 and model[0] is first and model[-2] is second
    assert list(model) == list(model.layers)
    tail = model[2:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2 and tail[0] is second
    with pytest.raises(TypeError, match="argument 1 is a function, expected a Module"):
        nn.Sequential(first, mg.relu)


@pytest.mark.parametrize("module, op", [(nn.ReLU(), mg.relu), (nn.Sigmoid(), mg.sigmoid),
                                        (nn.Tanh(), mg.tanh), (nn.Softplus(), mg.softplus)])
def test_activation_modules_call_their_op(module, op):
    x = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(module(x).data, op(x).data)
    assert module.parameters() == []
