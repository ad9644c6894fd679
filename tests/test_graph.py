"""Reverse mode: accumulation, retain_graph, deep chains, no_grad, detach, hooks, retain_grad,
backward's input checks, unbroadcast, dtype preservation, and the text/DOT views of a graph."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor
from minigrad.gradients import unbroadcast

rng = np.random.default_rng(0)


def leaf(*shape, dtype=np.float64, low=-2.0, high=2.0):
    """A leaf that requires grad, uniform in [low, high)."""
    return Tensor(rng.uniform(low, high, size=shape).astype(dtype), requires_grad=True)


# --- accumulation over several uses ---------------------------------------------------------
def test_x_times_x_accumulates_both_uses():
    x = leaf(3)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data, rtol=1e-15)


def test_x_plus_x_accumulates_both_uses():
    x = leaf(2, 3)
    (x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))


def test_leaf_used_at_two_depths():
    x = leaf(4)
    (x * (x * x)).sum().backward()  # d/dx x^3 = 3 x^2
    np.testing.assert_allclose(x.grad, 3 * x.data ** 2, rtol=1e-14)


def test_diamond_graph():
    # x -> a = 3x -> {b = e^a, c = a^2} -> d = sum(b + c); dd/dx = 3 e^{3x} + 18 x
    x = leaf(5)
    a = x * 3.0
    b = a.exp()
    c = a * a
    (b + c).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * np.exp(3 * x.data) + 18 * x.data, rtol=1e-14)


def test_two_leaves_sharing_an_intermediate():
    x, y = leaf(3), leaf(3)
    s = x * y
    (s * x + s * y).sum().backward()  # z = x^2 y + x y^2
    np.testing.assert_allclose(x.grad, 2 * x.data * y.data + y.data ** 2, rtol=1e-14)
    np.testing.assert_allclose(y.grad, x.data ** 2 + 2 * x.data * y.data, rtol=1e-14)


# --- backward twice --------------------------------------------------------------------------
def test_backward_twice_with_retain_graph_accumulates():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    once = x.grad.copy()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(once, 2 * x.data, rtol=1e-15)
    np.testing.assert_allclose(x.grad, 2 * once, rtol=1e-15)


def test_second_backward_without_retain_graph_raises():
    x = leaf(3)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_then_plain_backward_then_raise():
    x = leaf(3)
    y = (x * 2.0).sum()
    y.backward(retain_graph=True)
    y.backward()  # the graph was kept, so this one works and frees it
    np.testing.assert_array_equal(x.grad, np.full(3, 4.0))
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


# --- deep chains -----------------------------------------------------------------------------
def test_chain_of_100000_ops_has_no_recursion():
    x = leaf(2)
    y = x
    for _ in range(50_000):
        y = y * 1.0
        y = y + 0.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(2))
    assert len(mg.graph.topological_order(y)) == 100_000   # nodes


# --- no_grad ---------------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = leaf(3)
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y.op is None
    np.testing.assert_allclose(y.data, np.exp(2 * x.data).sum(), rtol=1e-15)
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("inside")
    assert mg.is_grad_enabled()
    assert (leaf(2) * 2.0).requires_grad


def test_nested_no_grad_restores_the_outer_state():
    with mg.no_grad():
        with mg.no_grad():
            pass
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


# --- detach ----------------------------------------------------------------------------------
def test_detach_shares_data_and_cuts_the_graph():
    x = leaf(3)
    d = x.detach()
    assert d.data is x.data and np.shares_memory(d.data, x.data)
    assert not d.requires_grad and d.is_leaf
    (d * x).sum().backward()  # d is a constant: the gradient is d, not 2x
    np.testing.assert_array_equal(x.grad, x.data)


def test_detach_of_an_intermediate():
    x = leaf(3)
    y = x * 3.0
    (y.detach() * y).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * y.data, rtol=1e-15)


# --- hooks -----------------------------------------------------------------------------------
def test_hook_sees_the_total_gradient_once():
    x = leaf(3)
    y = x * 2.0
    seen = []
    y.register_hook(lambda g: seen.append(g.data.copy()))
    (y * y + y).sum().backward()  # dz/dy = 2y + 1, reached along two paths
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * y.data + 1, rtol=1e-15)


def test_hook_on_a_leaf_used_twice():
    x = leaf(3)
    seen = []
    x.register_hook(lambda g: seen.append(g.data.copy()))
    (x * x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * x.data, rtol=1e-15)


def test_hook_replacing_the_gradient_doubles_everything_downstream():
    x, w = leaf(3), leaf(3)
    y = x * w
    y.register_hook(lambda g: 2 * g)
    (y * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 6 * w.data, rtol=1e-15)
    np.testing.assert_allclose(w.grad, 6 * x.data, rtol=1e-15)


def test_hook_on_a_leaf_replaces_its_grad_with_an_array():
    x = leaf(3)
    x.register_hook(lambda g: 2 * g)
    (x * 3.0).sum().backward()
    assert isinstance(x.grad, np.ndarray), f".grad is a {type(x.grad).__name__}"
    np.testing.assert_array_equal(x.grad, np.full(3, 6.0))


def test_hook_may_return_a_tensor_or_none():
    x = leaf(3)
    y = x * 1.0
    y.register_hook(lambda g: None)
    y.register_hook(lambda g: Tensor(g * 10))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 10.0))


def test_removed_hook_is_not_called():
    x = leaf(3)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or 5 * g)
    handle.remove()
    handle.remove()  # removing twice is harmless
    (x * 1.0).sum().backward()
    assert calls == []
    np.testing.assert_array_equal(x.grad, np.ones(3))


def test_hook_of_the_wrong_shape_names_both_shapes():
    x = leaf(2, 3)
    y = x * 1.0
    y.register_hook(lambda g: np.ones((3, 2)))
    with pytest.raises(ValueError) as info:
        y.sum().backward()
    assert "(3, 2)" in str(info.value) and "(2, 3)" in str(info.value)


def test_hook_on_a_constant_is_refused():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).register_hook(lambda g: g)


# --- retain_grad -----------------------------------------------------------------------------
def test_retain_grad_keeps_an_intermediate_gradient():
    x = leaf(3)
    y = (x * 2.0).retain_grad()
    other = x * 5.0
    (y * y + other).sum().backward()
    np.testing.assert_allclose(y.grad, 2 * y.data, rtol=1e-15)
    assert other.grad is None  # not retained
    np.testing.assert_allclose(x.grad, 4 * y.data + 5, rtol=1e-15)


def test_retain_grad_accumulates_over_two_backwards():
    x = leaf(3)
    y = (x * 2.0).retain_grad()
    z = (y * 3.0).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(y.grad, np.full(3, 6.0))


# --- backward's input checks -----------------------------------------------------------------
def test_backward_of_a_non_scalar_without_grad_names_the_shape():
    y = leaf(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=re.escape("(2, 3)")):
        y.backward()


def test_backward_of_a_one_element_output_without_grad():
    x = leaf(1, 1)
    (x * 4.0).backward()
    np.testing.assert_array_equal(x.grad, [[4.0]])


def test_backward_with_a_grad_of_the_wrong_shape_names_both_shapes():
    y = leaf(2, 3) * 2.0
    with pytest.raises(ValueError) as info:
        y.backward(np.ones((3, 2)))
    assert "(3, 2)" in str(info.value) and "(2, 3)" in str(info.value)


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0, 2.0]) * 2.0).sum().backward()


@pytest.mark.parametrize("wrap", [np.asarray, Tensor], ids=["ndarray", "Tensor"])
def test_backward_with_an_explicit_grad(wrap):
    x = leaf(2, 3)
    upstream = rng.normal(size=(3, 2))
    x.reshape(3, 2).backward(wrap(upstream))
    assert isinstance(x.grad, np.ndarray), f".grad is a {type(x.grad).__name__}"
    np.testing.assert_array_equal(x.grad, upstream.reshape(2, 3))


@pytest.mark.parametrize("wrap", [np.asarray, Tensor], ids=["ndarray", "Tensor"])
def test_backward_of_a_leaf_with_an_explicit_grad(wrap):
    x = leaf(3)
    x.backward(wrap(np.array([1.0, 2.0, 3.0])))
    assert isinstance(x.grad, np.ndarray), f".grad is a {type(x.grad).__name__}"
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])


def test_leaf_grads_are_writable_arrays_of_their_own():
    # An optimizer that clips or decays in place (p.grad *= c) must change one gradient only.
    x, y = leaf(3), leaf(3)
    (x + y).sum().backward()
    for t in (x, y):
        assert isinstance(t.grad, np.ndarray) and t.grad.flags.writeable, t.grad.flags
    assert not np.shares_memory(x.grad, y.grad)
    x.grad *= 0.5
    np.testing.assert_array_equal(y.grad, np.ones(3))


# --- unbroadcast -----------------------------------------------------------------------------
@pytest.mark.parametrize("grad_shape, shape, explicit", [
    ((2, 3), (3,), lambda g: g.sum(axis=0)),
    ((2, 3), (1, 3), lambda g: g.sum(axis=0, keepdims=True)),
    ((2, 3), (2, 1), lambda g: g.sum(axis=1, keepdims=True)),
    ((4, 2, 3), (2, 1), lambda g: g.sum(axis=0).sum(axis=1, keepdims=True)),
    ((4, 2, 3), (1, 2, 1), lambda g: g.sum(axis=(0, 2), keepdims=True)),
    ((2, 3), (), lambda g: g.sum()),
    ((), (), lambda g: g),
    ((2, 3), (2, 3), lambda g: g),
])
def test_unbroadcast_is_the_explicit_sum(grad_shape, shape, explicit):
    g = rng.normal(size=grad_shape)
    reduced = unbroadcast(g, shape)
    assert reduced.shape == shape
    np.testing.assert_allclose(reduced, explicit(g), rtol=1e-14)


@pytest.mark.parametrize("grad_shape, shape", [((2, 3), (4,)), ((4, 2, 3), (2, 1, 3))])
def test_unbroadcast_to_a_shape_that_does_not_broadcast_raises(grad_shape, shape):
    # (2, 1, 3) does not broadcast against (4, 2, 3): 2 against 4 in the leading axis
    with pytest.raises(ValueError, match=re.escape(f"cannot be reduced to {shape}")):
        unbroadcast(np.ones(grad_shape), shape)


# --- dtype preservation ----------------------------------------------------------------------
def _cond(shape):
    return np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0


# Each entry builds an output from float32 leaves of the given shapes (positive where needed).
FLOAT32_CASES = {
    "add": ([(2, 3), (3,)], lambda a, b: a + b),
    "sub": ([(2, 3), (3,)], lambda a, b: a - b),
    "mul": ([(2, 3), (3,)], lambda a, b: a * b),
    "div": ([(2, 3), (3,)], lambda a, b: a / b),
    "neg": ([(3,)], lambda a: -a),
    "pow scalar": ([(3,)], lambda a: a ** 2.5),
    "pow tensor": ([(3,), (3,)], lambda a, b: a ** b),
    "python scalars": ([(3,)], lambda a: 0.5 * a + 1 - 2 / a + 3 * (a / 4) ** 2 - 2 ** a),
    "matmul": ([(2, 3), (3, 4)], lambda a, b: a @ b),
    "matmul batched": ([(5, 2, 3), (3,)], lambda a, b: a @ b),
    "linear": ([(2, 3), (3, 4), (4,)], lambda x, w, b: mg.linear(x, w, b)),
    "sum": ([(2, 3)], lambda a: a.sum(axis=1)),
    "mean": ([(2, 3)], lambda a: a.mean(axis=0, keepdims=True)),
    "max": ([(2, 3)], lambda a: a.max(axis=1)),
    "max all": ([(2, 3)], lambda a: a.max()),
    "logsumexp": ([(2, 3)], lambda a: mg.logsumexp(a, axis=1)),
    "log_softmax": ([(2, 3)], lambda a: mg.log_softmax(a)),
    "exp": ([(3,)], lambda a: a.exp()),
    "log": ([(3,)], lambda a: a.log()),
    "sqrt": ([(3,)], lambda a: a.sqrt()),
    "tanh": ([(3,)], lambda a: a.tanh()),
    "sigmoid": ([(3,)], lambda a: a.sigmoid()),
    "relu": ([(3,)], lambda a: a.relu()),
    "softplus": ([(3,)], lambda a: mg.softplus(a)),
    "reshape": ([(2, 3)], lambda a: a.reshape(3, 2)),
    "transpose": ([(2, 3)], lambda a: a.T),
    "getitem": ([(4,)], lambda a: a[[0, 0, 3]]),
    "concatenate": ([(2,), (3,)], lambda a, b: mg.concatenate([a, b])),
    "stack": ([(3,), (3,)], lambda a, b: mg.stack([a, b], axis=1)),
    "where": ([(2, 3), (2, 3)], lambda a, b: mg.where(_cond((2, 3)), a, b)),
    "where scalar": ([(2, 3)], lambda a: mg.where(_cond((2, 3)), a, 0.0)),
    "bce": ([(4,), (4,)], lambda a, b: mg.binary_cross_entropy_with_logits(a, b / 3)),
    "mse": ([(4,), (4,)], lambda a, b: mg.mse_loss(a, b)),
    "kl": ([(4,), (4,)], lambda a, b: mg.gaussian_kl(a, b)),
    "reparameterize": ([(4,), (4,)], lambda a, b: mg.reparameterize(a, b, seed=1, offset=2)),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_stays_float32_forward_and_backward(name):
    shapes, build = FLOAT32_CASES[name]
    leaves = [leaf(*shape, dtype=np.float32, low=0.5, high=2.0) for shape in shapes]
    out = build(*leaves)
    assert out.dtype == np.float32, f"{name}: output is {out.dtype}"
    out.sum().backward()
    for i, t in enumerate(leaves):
        assert t.grad is not None, f"{name}: input {i} got no gradient"
        assert t.grad.dtype == np.float32, f"{name}: gradient of input {i} is {t.grad.dtype}"
        assert np.all(np.isfinite(t.grad))


def test_python_scalars_take_the_float32_of_the_tensor():
    x = leaf(3, dtype=np.float32)
    for out in (0.5 * x, x * 0.5, x + 1, 1 - x, x / 3.0, 2.0 / x, x ** 2, 2 ** x, -x):
        assert out.dtype == np.float32, out
    (0.5 * x).sum().backward()
    assert x.grad.dtype == np.float32


MIXED_CASES = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "matmul": lambda a, b: a.reshape(1, 3) @ b.reshape(3, 1),
    "linear weight": lambda a, b: mg.linear(a.reshape(1, 3), b.reshape(3, 1), a[:1]),
    "linear bias": lambda a, b: mg.linear(a.reshape(1, 3), a.reshape(3, 1), b[:1]),
    "where": lambda a, b: mg.where(np.array([True, False, True]), a, b),
    "concatenate": lambda a, b: mg.concatenate([a, b]),
    "stack": lambda a, b: mg.stack([a, b]),
    "mse": lambda a, b: mg.mse_loss(a, b),
    "bce": lambda a, b: mg.binary_cross_entropy_with_logits(a, b / 3),
    "kl": lambda a, b: mg.gaussian_kl(a, b),
}


@pytest.mark.parametrize("name", sorted(MIXED_CASES))
@pytest.mark.parametrize("order", ["32 first", "64 first"])
def test_float32_with_float64_gives_float64_but_float32_grads(name, order):
    x32 = leaf(3, dtype=np.float32, low=0.5, high=2.0)
    x64 = leaf(3, dtype=np.float64, low=0.5, high=2.0)
    a, b = (x32, x64) if order == "32 first" else (x64, x32)
    out = MIXED_CASES[name](a, b)
    assert out.dtype == np.float64, f"{name}: output is {out.dtype}"
    out.sum().backward()
    assert x32.grad.dtype == np.float32 and x64.grad.dtype == np.float64


# --- views of the graph ----------------------------------------------------------------------
def _small_graph():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True, name="x")
    w = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True, name="w")
    return x, w, ((x @ w).relu() * Tensor(np.float32(2))).sum()


def test_format_graph_lists_ops_shapes_and_inputs():
    x, w, loss = _small_graph()
    lines = mg.format_graph(loss).splitlines()
    assert len(lines) == 6  # x, w, matmul, relu, mul, sum; the constant 2 is no line of its own
    label, inputs = {}, {}
    for line in lines:
        match = re.fullmatch(r"%(\d+) = (.*?)(?:  <- (.*?))?(?:  saves [\d,]+ B)?", line)
        assert match, line
        label[match.group(1)] = match.group(2)
        inputs[match.group(2)] = (match.group(3) or "").split(", ")
    named = lambda refs: [label[r.lstrip("%")] if r.startswith("%") else r for r in refs]
    assert named(inputs["matmul (2, 4) float32"]) == ["x leaf (2, 3) float32", "w leaf (3, 4) float32"]
    assert named(inputs["relu (2, 4) float32"]) == ["matmul (2, 4) float32"]
    assert named(inputs["mul (2, 4) float32"]) == ["relu (2, 4) float32", "const"]
    assert named(inputs["sum () float32"]) == ["mul (2, 4) float32"]


def test_format_graph_marks_gradients():
    x, w, loss = _small_graph()
    loss.backward(retain_graph=True)
    text = mg.format_graph(loss)
    assert text.count("(has .grad)") == 2


def test_to_dot_is_valid_dot():
    x, w, loss = _small_graph()
    dot = mg.to_dot(loss)
    assert dot.startswith("digraph")
    assert dot.count("{") == dot.count("}") and dot.rstrip().endswith("}")
    nodes = re.findall(r'^  n(\d+) \[label="[^"]*"', dot, flags=re.M)
    edges = re.findall(r"^  n(\d+) -> n(\d+);$", dot, flags=re.M)
    assert sorted(nodes, key=int) == [str(i) for i in range(6)]  # x, w, matmul, relu, mul, sum
    assert len(edges) == 5 and {n for edge in edges for n in edge} == set(nodes)
    assert any(source == "0" for source, _ in edges)  # n0, a leaf, feeds the graph


def test_repr_shows_shape_dtype_and_op():
    x, w, loss = _small_graph()
    text = repr(x @ w)
    assert "shape=(2, 4)" in text and "dtype=float32" in text and "op=matmul" in text
    assert "requires_grad=True" in text
    assert "name='x'" in repr(x) and "op=" not in repr(x)


def test_backward_casts_the_given_grad_to_the_outputs_dtype():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    x.backward(np.ones(3))                                # float64 grad for a float32 tensor
    assert x.grad.dtype == np.float32


def test_dot_labels_escape_quotes():
    x = Tensor(np.ones(2), requires_grad=True, name='say "hi"')
    assert 'say \\"hi\\"' in mg.to_dot(x * 2)


# --- malformed backwards and gradients are refused, never truncated or silently reduced ----------
def custom_op(inputs, backward, shape=None):
    """A user-written op: the output is the first input's data (or zeros of ``shape``), its
    backward ``backward(g)``."""
    class Custom(mg.Function):
        name = "custom"

        @staticmethod
        def forward(ctx, *arrays):
            return arrays[0].copy() if shape is None else np.zeros(shape)

        @staticmethod
        def backward(ctx, g):
            return backward(g)
    return Custom.apply(*inputs)


def test_a_backward_returning_too_few_gradients_is_refused():
    x, y = leaf(3), leaf(3)
    out = custom_op((x, y), lambda g: (g,))
    with pytest.raises(TypeError, match=r"backward of 'custom' returned 1 gradient for 2 inputs"):
        out.sum().backward()


def test_a_backward_returning_a_bare_gradient_is_refused():
    x = leaf(3)
    out = custom_op((x,), lambda g: g)
    with pytest.raises(TypeError, match=r"backward of 'custom' returned a Tensor for 1 input"):
        out.sum().backward()


def test_a_gradient_with_extra_leading_axes_is_refused():
    x = leaf(3)
    out = custom_op((x,), lambda g: (Tensor(np.ones((2, 3))),))
    with pytest.raises(ValueError, match=re.escape("gradient of shape (2, 3) for input 1 of "
                                                   "shape (3,)")):
        out.sum().backward()


def test_a_gradient_of_another_dtype_is_cast_to_its_inputs():
    x = leaf(3, dtype=np.float32)
    out = custom_op((x,), lambda g: (g.astype(np.float64) * 2,))
    out.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_an_array_from_a_backward_is_refused_unless_once_differentiable():
    x = leaf(3)
    out = custom_op((x,), lambda g: (g.data * 2,))
    with pytest.raises(TypeError, match="backward of 'custom' returned a ndarray for input 1.*"
                                        "once_differentiable"):
        out.sum().backward()


def test_a_gradient_in_the_outputs_broadcast_shape_is_reduced():
    x = leaf(3)
    out = custom_op((x,), lambda g: (g,), shape=(2, 3))   # the op broadcast x to (2, 3)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_a_complex_gradient_from_a_vjp_is_refused():
    x = leaf(3)
    out = custom_op((x,), lambda g: (Tensor(g.data * 1j),))
    with pytest.raises(TypeError, match="backward of 'custom' returned a gradient of dtype "
                                        "complex128"):
        out.sum().backward()


def test_backward_refuses_a_complex_grad():
    x = leaf(2)
    with pytest.raises(TypeError, match="imaginary part would be dropped"):
        (x * 2.0).backward(np.array([1.0 + 1j, 1.0]))


def test_backward_takes_a_list_and_refuses_strings():
    x = leaf(2)
    (x * 2.0).backward([1.0, 3.0])
    np.testing.assert_array_equal(x.grad, [2.0, 6.0])
    with pytest.raises(TypeError, match="dtype <U1: gradients are real numbers"):
        (x * 2.0).backward(np.array(["a", "b"]))


@pytest.mark.parametrize("returned, message", [
    ([["a"], ["b"]], "dtype <U1"),
    (np.array([True, False]), "dtype bool"),
    (7, re.escape("of shape () for a tensor of shape (2,)")),
])
def test_a_hook_returning_a_non_gradient_names_it(returned, message):
    x = leaf(2)
    x.register_hook(lambda g: returned)
    with pytest.raises((TypeError, ValueError), match=message):
        (x * 2.0).sum().backward()


def test_a_hook_returning_float64_keeps_a_float32_leafs_dtype():
    x = leaf(3, dtype=np.float32)
    x.register_hook(lambda g: g.astype(np.float64) * 2)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [4.0, 4.0, 4.0])


def test_a_hook_may_return_a_number_for_a_0d_tensor():
    x = Tensor(np.float64(3.0), requires_grad=True)
    x.register_hook(lambda g: 5)
    (x * x).backward()
    assert x.grad.dtype == np.float64 and float(x.grad) == 5.0


def test_a_0d_tensors_grad_is_a_0d_array():
    x = Tensor(np.array(3.0), requires_grad=True)
    (x * x + x).backward()
    assert type(x.grad) is np.ndarray and x.grad.shape == () and float(x.grad) == 7.0
