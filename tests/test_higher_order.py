"""Gradients of gradients: minigrad.grad and backward(create_graph=True), derivatives of any order
against closed forms, the functional products against finite differences (and PyTorch where it
is installed), the reparameterized nodes' second order, gradgradcheck, and the in-place and
thread rules on second-order graphs."""
import gc
import threading
import types

import numpy as np
import pytest

import kernels.reference
import minigrad as mg
from minigrad import Tensor
from minigrad import functional as F
from minigrad.gradcheck import GradcheckError, gradgradcheck
from minigrad.gradcheck import __main__ as cli

rng = np.random.default_rng(0)


def leaf(*values, name=None):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True, name=name)


def derivatives(f, x, order):
    """[f', f'', ...] up to ``order`` at x (elementwise f), each by minigrad.grad of the last."""
    found, y = [], f(x)
    for k in range(order):
        (y,) = mg.grad(y.sum(), x, create_graph=k + 1 < order)
        found.append(y.data)
    return found


# --- any order, against closed forms -------------------------------------------------------------
def test_third_and_fourth_derivatives_of_tanh():
    x = leaf(-2.0, -0.3, 0.0, 0.7, 1.9)
    t = np.tanh(x.data)
    d1, d2, d3, d4 = derivatives(mg.tanh, x, 4)
    np.testing.assert_allclose(d1, 1 - t**2, rtol=1e-14)
    np.testing.assert_allclose(d2, -2 * t * (1 - t**2), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(d3, -2 * (1 - t**2) * (1 - 3 * t**2), rtol=1e-13)
    np.testing.assert_allclose(d4, 8 * t * (1 - t**2) * (2 - 3 * t**2), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, f, closed", [
    ("exp", mg.exp, lambda x: [np.exp(x)] * 3),
    ("log", mg.log, lambda x: [1 / x, -1 / x**2, 2 / x**3]),
    ("sigmoid", mg.sigmoid,
     lambda x: (lambda s: [s * (1 - s), s * (1 - s) * (1 - 2 * s),
                           s * (1 - s) * (1 - 6 * s + 6 * s**2)])(1 / (1 + np.exp(-x)))),
    ("softplus", mg.softplus,
     lambda x: (lambda s: [s, s * (1 - s), s * (1 - s) * (1 - 2 * s)])(1 / (1 + np.exp(-x)))),
    ("sqrt", mg.sqrt, lambda x: [0.5 * x**-0.5, -0.25 * x**-1.5, 0.375 * x**-2.5]),
    ("pow 3.5", lambda x: x ** 3.5, lambda x: [3.5 * x**2.5, 8.75 * x**1.5, 13.125 * x**0.5]),
    ("expm1", mg.expm1, lambda x: [np.exp(x)] * 3),
])
def test_three_orders_against_the_closed_form(name, f, closed):
    x = leaf(0.3, 0.9, 1.7, 2.5)
    for got, expected in zip(derivatives(f, x, 3), closed(x.data)):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_kinks_follow_pytorchs_convention():
    """relu'' = 0 and max's tie shares are constants: their second derivatives are 0."""
    x = leaf(-1.0, 0.5, 2.0)
    (g,) = mg.grad(mg.relu(x).sum(), x, create_graph=True)
    assert g.data.tolist() == [0, 1, 1] and not g.requires_grad  # a constant mask
    assert F.hessian(lambda t: (mg.relu(t) * t).sum(), x).data.diagonal().tolist() == [0, 2, 2]
    y = leaf(1.0, 3.0, 3.0)
    (g,) = mg.grad(mg.max(y), y, create_graph=True)
    assert g.data.tolist() == [0, 0.5, 0.5]
    assert not g.requires_grad  # a constant: nothing to differentiate


def test_pow_with_a_tensor_exponent_to_second_order_at_zero_base_is_finite():
    x, p = leaf(0.0, 2.0), leaf(2.0, 3.0)
    (gx, gp) = mg.grad((x ** p).sum(), [x, p], create_graph=True)
    hxx, hxp = mg.grad(gx.sum(), [x, p])
    assert np.all(np.isfinite(hxx.data)) and np.all(np.isfinite(hxp.data))
    np.testing.assert_allclose(hxx.data, [2.0, 3 * 2 * 2.0], rtol=1e-14)


# --- minigrad.grad and backward(create_graph=True) -----------------------------------------------
def test_grad_returns_a_tuple_and_touches_no_grad():
    x, w = leaf(1.0, 2.0), leaf(3.0, -1.0)
    y = (x * w).sum()
    gx, gw = mg.grad(y, [x, w])
    np.testing.assert_array_equal(gx.data, w.data)
    np.testing.assert_array_equal(gw.data, x.data)
    assert x.grad is None and w.grad is None and not gx.requires_grad


def test_grad_with_several_outputs_and_grad_outputs():
    x = leaf(1.0, 2.0)
    (g,) = mg.grad([x * x, mg.exp(x).sum()], x, [np.array([1.0, 10.0]), None])
    np.testing.assert_allclose(g.data, 2 * x.data * [1, 10] + np.exp(x.data), rtol=1e-15)


def test_grad_of_an_intermediate():
    x = leaf(0.5, 1.5)
    h = x * x
    (gh,) = mg.grad(mg.tanh(h).sum(), h)
    np.testing.assert_allclose(gh.data, 1 - np.tanh(h.data) ** 2, rtol=1e-15)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, y, u, c: mg.grad(y, c), RuntimeError, "input 0 .* does not require grad"),
    (lambda x, y, u, c: mg.grad(y, [x, u]), RuntimeError,
     "input 1 .* is not used to compute the outputs; pass allow_unused=True"),
    (lambda x, y, u, c: mg.grad(x * 2.0, x), RuntimeError,
     r"output 0 has shape \(2,\); a non-scalar output needs its cotangent in grad_outputs"),
    (lambda x, y, u, c: mg.grad(y, x, [None, None]), ValueError, "2 grad_outputs for 1 outputs"),
    (lambda x, y, u, c: mg.grad(c * 2.0, x), RuntimeError, "output 0 .* does not require grad"),
    (lambda x, y, u, c: mg.grad(y, [x, np.ones(2)]), TypeError, r"inputs\[1\] is ndarray"),
    (lambda x, y, u, c: mg.grad(y, x, np.ones(3)), ValueError, r"shape \(3,\)"),
])
def test_grad_errors_name_the_problem(call, error, message):
    x, u = leaf(1.0, 2.0), leaf(5.0)
    c = Tensor(np.ones(2))
    with pytest.raises(error, match=message):
        call(x, (x * x).sum(), u, c)


def test_allow_unused_gives_none():
    x, u = leaf(1.0, 2.0), leaf(5.0)
    gx, gu = mg.grad((x * x).sum(), [x, u], allow_unused=True)
    assert gu is None and gx.data.tolist() == [2.0, 4.0]


def test_backward_create_graph_makes_tensor_grads_and_keeps_the_graph():
    x = leaf(0.2, -0.4)
    y = (mg.tanh(x) * x).sum()
    y.backward(create_graph=True)
    assert isinstance(x.grad, Tensor) and x.grad.requires_grad
    first = x.grad
    x.grad = None
    y.backward(retain_graph=True)   # the graph was kept (retain_graph defaults to create_graph)
    np.testing.assert_allclose(x.grad, first.data, rtol=1e-15)
    x.grad = None
    first.sum().backward()          # the second derivative, through the gradient's own graph
    t = np.tanh(x.data)
    np.testing.assert_allclose(x.grad, 2 * (1 - t**2) - 2 * x.data * t * (1 - t**2), rtol=1e-13)


def test_first_order_grads_stay_arrays():
    x = leaf(1.0, 2.0)
    (x * x).sum().backward()
    assert type(x.grad) is np.ndarray


def test_a_second_order_graph_is_freed_by_its_backward():
    x = leaf(0.3, 0.6)
    (g,) = mg.grad(mg.exp(x * x).sum(), x, create_graph=True)
    s = g.sum()
    s.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        s.backward()


class NumpySquare(mg.Function):
    """x^2 with a backward on arrays: first order only, and it says so."""
    name = "numpy_square"
    once_differentiable = True

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (2 * g.data * x.data,)


def test_a_once_differentiable_op_is_refused_under_create_graph():
    x = leaf(0.5, 1.0)
    (g,) = mg.grad(NumpySquare.apply(x).sum(), x)   # first order: an array backward is fine
    np.testing.assert_array_equal(g.data, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="'numpy_square' is once_differentiable"):
        mg.grad(NumpySquare.apply(x).sum(), x, create_graph=True)


# --- the functional products --------------------------------------------------------------------
def composition(x, w):
    """A random-ish composition of ops, vector valued."""
    h = mg.tanh(mg.matmul(x, w)) * mg.sigmoid(x[:2] - 0.5)
    return mg.log_softmax(h * 2.0) + mg.softplus(h) ** 2


def scalar_composition(x, w):
    return (mg.logsumexp(mg.matmul(x, w) * mg.exp(w.sum(0) * 0.1)) + (x * x * x).sum()
            + mg.binary_cross_entropy_with_logits(mg.matmul(x, w), mg.sigmoid(w[0])))


def numeric_jvp(f, inputs, tangents, eps=1e-6):
    plus = [Tensor(x.data + eps * t) for x, t in zip(inputs, tangents)]
    minus = [Tensor(x.data - eps * t) for x, t in zip(inputs, tangents)]
    return (f(*plus).data - f(*minus).data) / (2 * eps)


def point():
    x, w = Tensor(rng.normal(size=3)), Tensor(rng.normal(size=(3, 2)))
    return (x, w), (rng.normal(size=3), rng.normal(size=(3, 2)))


def test_jvp_against_finite_differences():
    inputs, tangents = point()
    _, product = F.jvp(composition, inputs, tangents)
    np.testing.assert_allclose(product.data, numeric_jvp(composition, inputs, tangents),
                               rtol=1e-6, atol=1e-8)


def test_hvp_and_vhp_against_finite_differences_of_the_gradient():
    inputs, tangents = point()

    def gradient(*xs):
        leaves = [Tensor(x.data, requires_grad=True) for x in xs]
        grads = mg.grad(scalar_composition(*leaves), leaves)
        return Tensor(np.concatenate([g.data.reshape(-1) for g in grads]))

    numeric = numeric_jvp(gradient, inputs, tangents)
    for product in (F.hvp, F.vhp):
        _, result = product(scalar_composition, inputs, tangents)
        got = np.concatenate([r.data.reshape(-1) for r in result])
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


def test_jacobian_and_hessian_shapes_and_symmetry():
    (x, w), _ = point()
    jx, jw = F.jacobian(composition, (x, w))
    assert jx.shape == (2, 3) and jw.shape == (2, 3, 2)
    blocks = F.hessian(scalar_composition, (x, w))
    assert [[b.shape for b in row] for row in blocks] == [[(3, 3), (3, 3, 2)],
                                                         [(3, 2, 3), (3, 2, 3, 2)]]
    np.testing.assert_allclose(blocks[0][0].data, blocks[0][0].data.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(blocks[0][1].data, blocks[1][0].data.transpose(2, 0, 1),
                               rtol=1e-12, atol=1e-14)


def test_functional_results_are_differentiable_with_create_graph():
    x = leaf(0.3, 0.8)
    _, h = F.hvp(lambda t: (t * t * t).sum(), x, np.ones(2), create_graph=True)
    (third,) = mg.grad(h.sum(), x)                    # d/dx sum(6 x) = 6
    np.testing.assert_allclose(third.data, [6.0, 6.0], rtol=1e-14)


def test_functional_options_and_errors():
    x = Tensor(np.ones(2))
    with pytest.raises(RuntimeError, match=r"does not depend on inputs\[0\] \(strict=True\)"):
        F.vjp(lambda t: Tensor(np.ones(2)) * 2.0, x, np.ones(2), strict=True)
    with pytest.raises(NotImplementedError, match="vectorize"):
        F.jacobian(lambda t: t * 2.0, x, vectorize=True)
    with pytest.raises(ValueError, match="one element"):
        F.hvp(lambda t: t * 2.0, x, np.ones(2))
    _, zero = F.vjp(lambda t: Tensor(np.ones(2)) * 1.0, x, np.ones(2))
    assert zero.data.tolist() == [0.0, 0.0]


def test_against_pytorch_functional():
    torch = pytest.importorskip("torch")
    (x, w), (tx, tw) = point()
    tf = torch.autograd.functional

    def composition_torch(a, b):
        h = torch.tanh(a @ b) * torch.sigmoid(a[:2] - 0.5)
        return torch.log_softmax(h * 2.0, -1) + torch.nn.functional.softplus(h) ** 2

    def scalar_torch(a, b):
        target = torch.sigmoid(b[0])
        logits = a @ b
        return (torch.logsumexp(logits * torch.exp(b.sum(0) * 0.1), 0) + (a * a * a).sum()
                + torch.nn.functional.binary_cross_entropy_with_logits(logits, target))

    T = [torch.tensor(x.data), torch.tensor(w.data)]
    V = (torch.tensor(tx), torch.tensor(tw))
    cot = rng.normal(size=2)
    checks = [
        (F.vjp(composition, (x, w), cot)[1], tf.vjp(composition_torch, tuple(T),
                                                     torch.tensor(cot))[1]),
        ((F.jvp(composition, (x, w), (tx, tw))[1],), (tf.jvp(composition_torch, tuple(T), V)[1],)),
        (F.hvp(scalar_composition, (x, w), (tx, tw))[1], tf.hvp(scalar_torch, tuple(T), V)[1]),
        (F.vhp(scalar_composition, (x, w), (tx, tw))[1], tf.vhp(scalar_torch, tuple(T), V)[1]),
        (F.jacobian(composition, (x, w)), tf.jacobian(composition_torch, tuple(T))),
        (sum(F.hessian(scalar_composition, (x, w)), ()),
         sum(tf.hessian(scalar_torch, tuple(T)), ())),
    ]
    for ours, theirs in checks:
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.data, b.numpy(), rtol=1e-10, atol=1e-12)


UNARY = [("tanh", lambda L, t: L.tanh(t)), ("sigmoid", lambda L, t: L.sigmoid(t)),
         ("softplus", lambda L, t: L.softplus(t)), ("square", lambda L, t: t * t),
         ("exp", lambda L, t: L.exp(t * 0.3)), ("log1p_sq", lambda L, t: L.log(t * t + 1.0))]
BINARY = [("add", lambda a, b: a + b), ("mul", lambda a, b: a * b),
          ("div", lambda a, b: a / (b * b + 1.0)), ("scale", lambda a, b: a * b.sum())]
MINIGRAD = types.SimpleNamespace(tanh=mg.tanh, sigmoid=mg.sigmoid, softplus=mg.softplus,
                                 exp=mg.exp, log=mg.log, logsumexp=mg.logsumexp)


def random_composition(seed, L=MINIGRAD):
    """f(x, w) -> scalar: a seeded random chain of unary and binary ops, written against the
    library L (minigrad's ops, or PyTorch's through the same names)."""
    chooser = np.random.default_rng(seed)
    steps = [(UNARY[i][1], BINARY[j][1]) for i, j in
             zip(chooser.integers(len(UNARY), size=3), chooser.integers(len(BINARY), size=3))]

    def f(x, w):
        h = x
        for unary, binary in steps:
            h = binary(unary(L, h), w)
        return L.logsumexp(h) + (h * h).mean()
    return f


@pytest.mark.parametrize("seed", range(12))
def test_hvp_and_jvp_of_random_compositions_against_finite_differences(seed):
    f = random_composition(seed)
    x, w = Tensor(rng.normal(size=4)), Tensor(rng.normal(size=4))
    tx, tw = rng.normal(size=4), rng.normal(size=4)

    def gradient(*xs):
        leaves = [Tensor(t.data, requires_grad=True) for t in xs]
        return Tensor(np.concatenate([g.data for g in mg.grad(f(*leaves), leaves)]))

    def differentiable_gradient(*xs):
        return mg.concatenate(mg.grad(f(*xs), list(xs), create_graph=True))

    _, (hx, hw) = F.hvp(f, (x, w), (tx, tw))
    hv = np.concatenate([hx.data, hw.data])
    np.testing.assert_allclose(hv, numeric_jvp(gradient, (x, w), (tx, tw)), rtol=1e-5,
                               atol=1e-7)
    _, jv = F.jvp(differentiable_gradient, (x, w), (tx, tw))   # the same H v, another way
    np.testing.assert_allclose(jv.data, hv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_random_compositions_against_pytorch_functional(seed):
    torch = pytest.importorskip("torch")
    library = types.SimpleNamespace(tanh=torch.tanh, sigmoid=torch.sigmoid,
                                    softplus=torch.nn.functional.softplus, exp=torch.exp,
                                    log=torch.log, logsumexp=lambda h: torch.logsumexp(h, 0))
    ours, theirs = random_composition(seed), random_composition(seed, library)
    x, w, tx, tw = (rng.normal(size=4) for _ in range(4))
    inputs, tangents = (Tensor(x), Tensor(w)), (tx, tw)
    torch_inputs = (torch.tensor(x), torch.tensor(w))
    torch_tangents = (torch.tensor(tx), torch.tensor(tw))
    functional = torch.autograd.functional
    for mine, reference in [(F.hvp(ours, inputs, tangents)[1],
                             functional.hvp(theirs, torch_inputs, torch_tangents)[1]),
                            (F.vjp(ours, inputs)[1], functional.vjp(theirs, torch_inputs)[1]),
                            ((F.jvp(ours, inputs, tangents)[1],),
                             (functional.jvp(theirs, torch_inputs, torch_tangents)[1],))]:
        for a, b in zip(mine, reference):
            np.testing.assert_allclose(a.data, b.numpy(), rtol=1e-10, atol=1e-12)


# --- the reparameterized nodes' second order ----------------------------------------------------
def test_reparameterize_second_derivative_is_the_hand_written_one_with_the_forwards_eps():
    mu, logvar = leaf(*rng.normal(size=6)), leaf(*rng.normal(size=6))
    c = rng.normal(size=6)
    z = mg.reparameterize(mu, logvar, seed=11, offset=5)
    eps = kernels.reference.noise((6,), np.float64, 11, 5)
    (gv,) = mg.grad((z * c).sum(), logvar, create_graph=True)
    (hvv,) = mg.grad(gv.sum(), logvar)
    sigma = np.exp(logvar.data / 2)
    np.testing.assert_allclose(gv.data, c * sigma * eps / 2, rtol=1e-14)
    np.testing.assert_allclose(hvv.data, c * sigma * eps / 4, rtol=1e-14)


@pytest.mark.parametrize("node", ["reparameterize", "reparameterize_kl"])
def test_second_order_regenerates_the_saved_noise_bit_for_bit(node):
    mu, logvar = leaf(*rng.normal(size=8)), leaf(*rng.normal(size=8))
    c = Tensor(rng.normal(size=8))

    def second(save_noise):
        if node == "reparameterize":
            z = mg.reparameterize(mu, logvar, seed=3, offset=2**32 - 2, save_noise=save_noise)
        else:
            z, kl = mg.reparameterize_kl(mu, logvar, seed=3, offset=2**32 - 2,
                                         save_noise=save_noise)
            z = z + kl * 0.25
        gmu, gv = mg.grad((z * c).sum(), [mu, logvar], create_graph=True)
        third = mg.grad((gv * gv).sum() + (gmu * gv).sum(), [mu, logvar], allow_unused=True)
        return [gmu.data, gv.data, *(t.data for t in third if t is not None)]

    for regenerated, kept in zip(second(False), second(True)):
        np.testing.assert_array_equal(regenerated, kept)


def test_third_order_through_the_reparameterized_node():
    logvar = leaf(0.2, -0.5, 1.0)
    eps = kernels.reference.noise((3,), np.float64, 1, 0)
    d1, d2, d3 = derivatives(lambda v: mg.reparameterize(Tensor(np.zeros(3)), v, seed=1, offset=0),
                             logvar, 3)
    sigma = np.exp(logvar.data / 2)
    for k, d in enumerate((d1, d2, d3), start=1):
        np.testing.assert_allclose(d, sigma * eps / 2**k, rtol=1e-14)


# --- gradgradcheck -------------------------------------------------------------------------------
class BadTanh(mg.Function):
    """tanh whose backward reads a copy of its output, a constant: right first order, no second
    order."""
    name = "bad_tanh"

    @staticmethod
    def forward(ctx, x):
        z = np.tanh(x)
        ctx.save_for_backward(z.copy())
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return (g * (1 - z * z),)


def bad_tanh(x):
    return BadTanh.apply(x)


def test_gradgradcheck_passes_a_composition_and_names_a_wrong_second_derivative():
    (x, w), _ = point()
    x, w = Tensor(x.data, requires_grad=True, name="x"), Tensor(w.data, requires_grad=True)
    assert gradgradcheck(composition, [x, w])
    assert gradgradcheck(composition, [x, w], fast=True)
    report = gradgradcheck(bad_tanh, [x])
    assert not report.ok
    message = report.failure_message()
    assert message.startswith("gradgradcheck: the second derivative of input 0 ('x'")
    for part in ("analytic:", "numeric:", "abs err", "tolerance", "at element"):
        assert part in message
    with pytest.raises(GradcheckError, match="second derivative"):
        gradgradcheck(bad_tanh, [x], raise_on_failure=True)


def test_gradgradcheck_takes_grad_outputs_and_checks_their_shape():
    x = leaf(0.1, 0.2, 0.3)
    assert gradgradcheck(lambda t: mg.sigmoid(t) * t, [x], grad_outputs=np.array([1.0, -2, 3]))
    with pytest.raises(ValueError, match=r"grad_outputs has shape \(2,\)"):
        gradgradcheck(lambda t: mg.sigmoid(t) * t, [x], grad_outputs=np.ones(2))


def test_cli_order_2(capsys):
    assert cli.main(["--order", "2", "--op", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "gradgradcheck (order 2)" in out and "cases passed" in out


# --- the in-place and thread rules hold for second-order graphs --------------------------------
def test_a_second_order_graph_holds_what_it_reads():
    x = leaf(0.5, 1.5)
    (g,) = mg.grad(mg.log(x).sum(), x, create_graph=True)   # g = 1 / x reads x
    with pytest.raises(ValueError, match="read-only"):
        x.data[:] = 0.0
    del g
    gc.collect()
    x.data[:] = 0.0  # the graphs are gone: nothing holds x


def test_an_optimizer_step_between_the_orders_is_named_at_the_second_backward():
    w = leaf(0.5, -1.0)
    optimizer = mg.optim.SGD([w], lr=0.1)
    loss = (mg.tanh(w) * w).sum()
    loss.backward(create_graph=True)
    first = w.grad
    w.grad = first.data.copy()
    optimizer.step()
    with pytest.raises(RuntimeError, match="modified in place by SGD.step"):
        first.sum().backward()


def test_create_graph_in_one_thread_leaves_another_in_no_grad():
    x = leaf(0.3, 0.7)
    result = {}

    def differentiate():
        (g,) = mg.grad(mg.exp(x * x).sum(), x, create_graph=True)
        result["requires_grad"] = g.requires_grad

    with mg.no_grad():
        thread = threading.Thread(target=differentiate)
        thread.start()
        thread.join()
        assert not mg.is_grad_enabled()
        assert not (x * 2.0).requires_grad
    assert result == {"requires_grad": True}


def test_an_optimizer_steps_on_tensor_grads_from_create_graph():
    w = leaf(1.0, -2.0)
    optimizer = mg.optim.Adam([w], lr=0.1)
    (w * w * w).sum().backward(create_graph=True)
    assert isinstance(w.grad, Tensor)
    expected = w.data - 0.1 * np.sign(w.grad.data)   # Adam's first step moves by lr * sign(g)
    optimizer.step()
    np.testing.assert_allclose(w.data, expected, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_anomaly_mode_names_the_op_of_a_second_order_backward():
    x = leaf(0.0, 1.0)
    (g,) = mg.grad((x ** 1.5).sum(), x, create_graph=True)   # 1.5 x^0.5: finite at 0
    with mg.detect_anomaly():
        with pytest.raises(FloatingPointError, match="op 'pow' produced non-finite values in its "
                                                       "backward pass"):
            mg.grad(g.sum(), x)                               # 0.75 x^-0.5: not


def test_a_second_order_graph_can_be_drawn(tmp_path):
    x = leaf(0.3, 0.7, name="x")
    (g,) = mg.grad(mg.tanh(x * x).sum(), x, create_graph=True)
    mg.viz.draw_graph(g.sum(), str(tmp_path / "second.png"))
    assert (tmp_path / "second.png").stat().st_size > 0
    ops = {line.split()[2] for line in mg.format_graph(g).splitlines()}
    assert {"tanh", "mul"} <= ops
