"""minigrad.optim: SGD and Adam against hand-computed steps (and PyTorch when present),
dtypes, skipped parameters, checkpoints through np.savez + JSON, and the denormal flush."""
import json
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim

# Scalar steps worked by hand: p = 1, gradients 0.5, -1, 2, lr = 0.1 (see each case's comment).
GRADS = [0.5, -1.0, 2.0]
SGD_CASES = [
    # p - 0.1 g
    (dict(), [0.95, 1.05, 0.85]),
    # buf = 0.5, -0.55, 1.505; p -= 0.1 buf
    (dict(momentum=0.9), [0.95, 1.005, 0.8545]),
    # buf as above; d = g + 0.9 buf = 0.95, -1.495, 3.3545
    (dict(momentum=0.9, nesterov=True), [0.905, 1.0545, 0.71905]),
    # d = g + 0.1 p = 0.6, -0.906, 2.09766; buf = 0.6, -0.366, 1.76826
    (dict(momentum=0.9, weight_decay=0.1), [0.94, 0.9766, 0.799774]),
]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else np.array(g, dtype=p.dtype)


def random_problem(seed, dtype=np.float64, shapes=((3, 4), (4,), (2, 2, 3))):
    """Parameters and a list of gradient sets, one per step."""
    rng = np.random.default_rng(seed)
    params = [mg.Tensor(rng.normal(size=shape).astype(dtype), requires_grad=True)
              for shape in shapes]
    grads = [[rng.normal(size=shape).astype(dtype) for shape in shapes] for _ in range(30)]
    return params, grads


def adam_by_hand(p, grads, lr, b1, b2, eps, weight_decay):
    """Adam on one Python float, written from the paper's formulas plus L2 weight decay."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


# --- SGD -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options, expected", SGD_CASES)
def test_sgd_matches_hand_computed_steps(options, expected):
    p = mg.Tensor(np.array([1.0]), requires_grad=True)
    optimizer = optim.SGD([p], lr=0.1, **options)
    for g, want in zip(GRADS, expected):
        p.grad = np.array([g])
        optimizer.step()
        assert p.data[0] == pytest.approx(want, rel=1e-14)


def test_sgd_rejects_bad_hyperparameters():
    p = mg.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match="SGD: lr must be >= 0, got -0.1"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD([p], lr=0.1, nesterov=True)


# --- Adam ----------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_matches_hand_computed_steps(weight_decay):
    grads = [0.3, -1.2, 0.7, 2.5, -0.1]
    starts = np.array([1.0, -0.5, 0.0, 3.0])
    p = mg.Tensor(starts.copy(), requires_grad=True)
    optimizer = optim.Adam([p], lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=weight_decay)
    scales = np.array([1.0, 0.5, -2.0, 1e-3])  # element k sees gradient grads[t] * scales[k]
    for g in grads:
        p.grad = g * scales
        optimizer.step()
    expected = [adam_by_hand(start, [g * scale for g in grads], 0.01, 0.8, 0.99, 1e-3,
                             weight_decay) for start, scale in zip(starts, scales)]
    np.testing.assert_allclose(p.data, expected, rtol=1e-13, atol=1e-15)
    assert optimizer.state[0]["step"] == 5


def test_adam_first_step_moves_each_element_by_lr():
    # with bias correction, step 1 is lr * g / (|g| + eps), i.e. lr * sign(g) for |g| >> eps
    p = mg.Tensor(np.zeros(3), requires_grad=True)
    p.grad = np.array([4.0, -0.02, 1e3])
    optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [-0.1, 0.1, -0.1], rtol=1e-6)


def test_adam_counts_steps_per_parameter():
    # a parameter first updated at step 3 gets step 1's bias correction, as in PyTorch
    params, grads = random_problem(7)
    alone = mg.Tensor(params[1].data.copy(), requires_grad=True)
    together, separate = optim.Adam(params, lr=0.1), optim.Adam([alone], lr=0.1)
    for t, step_grads in enumerate(grads[:5]):
        set_grads(params, [step_grads[0], None if t < 2 else step_grads[1], step_grads[2]])
        together.step()
        if t >= 2:
            set_grads([alone], [step_grads[1]])
            separate.step()
    np.testing.assert_array_equal(params[1].data, alone.data)
    assert [s["step"] for s in together.state] == [5, 3, 5]


def test_adam_rejects_bad_hyperparameters():
    p = mg.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match="beta2 must be in \\[0, 1\\), got 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.Adam([p], betas=(0.9,))
    with pytest.raises(TypeError, match="flush_denormals_every must be an int"):
        optim.Adam([p], flush_denormals_every=1.5)


# --- shared behaviour ----------------------------------------------------------------------
OPTIMIZERS = {
    "sgd": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda params: optim.SGD(params, lr=0.1, momentum=0.5, nesterov=True),
    "adam": lambda params: optim.Adam(params, lr=0.01, weight_decay=0.01),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name):
    params, grads = random_problem(0, dtype=np.float32)
    optimizer = OPTIMIZERS[name](params)
    for step_grads in grads[:3]:
        set_grads(params, step_grads)
        optimizer.step()
    assert all(p.dtype == np.float32 for p in params)
    arrays = [v for v in optimizer.state_dict().values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.dtype == np.float32 for a in arrays)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_parameters_without_grad_are_skipped(name):
    params, grads = random_problem(1)
    before = params[1].data.copy()
    optimizer = OPTIMIZERS[name](params)
    for step_grads in grads[:3]:
        set_grads(params, [step_grads[0], None, step_grads[2]])
        originals = [g.copy() for g in (params[0].grad, params[2].grad)]
        optimizer.step()
        np.testing.assert_array_equal(params[0].grad, originals[0])  # grads are only read
        np.testing.assert_array_equal(params[2].grad, originals[1])
    np.testing.assert_array_equal(params[1].data, before)
    assert optimizer.state[1] == {}
    assert not any(key.startswith("state.1.") for key in optimizer.state_dict())


def test_zero_grad_sets_none():
    params, grads = random_problem(2)
    set_grads(params, grads[0])
    optimizer = optim.Adam(params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_constructor_rejects_bad_parameter_lists():
    p = mg.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match="empty list of parameters"):
        optim.Adam([])
    with pytest.raises(TypeError, match="parameter 1 is a Tensor with requires_grad=False"):
        optim.SGD([p, mg.Tensor(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="appears more than once"):
        optim.Adam([p, p])


# --- checkpoints ---------------------------------------------------------------------------
def save_and_load(state, directory):
    """Through np.savez and JSON, as a checkpoint would go: no pickle anywhere."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    np.savez(directory / "optimizer.npz", **arrays)
    (directory / "optimizer.json").write_text(json.dumps(scalars))
    loaded = json.loads((directory / "optimizer.json").read_text())
    with np.load(directory / "optimizer.npz", allow_pickle=False) as archive:
        loaded.update({k: archive[k] for k in archive.files})
    return loaded


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resumed_optimizer_continues_bit_identically(name, tmp_path):
    params, grads = random_problem(3, dtype=np.float32)
    optimizer = OPTIMIZERS[name](params)
    for t, step_grads in enumerate(grads[:4]):
        # parameter 1 has no gradient on the first step, so per-parameter step counts differ
        set_grads(params, [step_grads[0], None if t == 0 else step_grads[1], step_grads[2]])
        optimizer.step()
    state = save_and_load(optimizer.state_dict(), tmp_path)

    resumed_params = [mg.Tensor(p.data.copy(), requires_grad=True) for p in params]
    resumed = OPTIMIZERS[name](resumed_params)
    resumed.lr = 123.0  # overwritten by the checkpoint
    resumed.load_state_dict(state)
    assert resumed.lr == optimizer.lr and resumed.step_count == 4
    for step_grads in grads[4:8]:
        for group, opt in ((params, optimizer), (resumed_params, resumed)):
            set_grads(group, step_grads)
            opt.step()
    for p, q in zip(params, resumed_params):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_validates_and_changes_nothing_on_error():
    params, grads = random_problem(4)
    optimizer = optim.Adam(params)
    set_grads(params, grads[0])
    optimizer.step()
    good = optimizer.state_dict()

    def fails(edit, error, match):
        state = dict(good)
        edit(state)
        with pytest.raises(error, match=match):
            optimizer.load_state_dict(state)

    fails(lambda s: s.update(num_params=2), ValueError,
          "the state is for 2 parameters, this optimizer has 3")
    fails(lambda s: s.update({"state.0.exp_avg": np.zeros((4, 3))}), ValueError,
          r"state.0.exp_avg has shape \(4, 3\), parameter 0 has shape \(3, 4\)")
    fails(lambda s: s.update({"state.2.exp_avg_sq": np.zeros((2, 2, 3), np.float32)}), TypeError,
          "state.2.exp_avg_sq has dtype float32, parameter 2 has dtype float64")
    fails(lambda s: s.update({"state.0.momentum_buffer": np.zeros((3, 4))}), ValueError,
          r"unexpected keys \['state.0.momentum_buffer'\]")
    fails(lambda s: s.pop("state.1.exp_avg"), ValueError,
          r"parameter 1 has some state but lacks \['state.1.exp_avg'\]")
    fails(lambda s: s.pop("beta2"), ValueError, r"the state lacks \['beta2'\]")
    fails(lambda s: s.update(step=-1), ValueError, "step must be >= 0, got -1")
    fails(lambda s: s.update(beta1=1.5), ValueError, "beta1 must be in")

    after = optimizer.state_dict()
    assert after.keys() == good.keys()
    for key, value in good.items():
        np.testing.assert_array_equal(after[key], value)


# --- denormals -----------------------------------------------------------------------------
def test_adam_flushes_denormal_moments_every_100_steps():
    tiny = np.finfo(np.float32).tiny
    m = np.array([1e-39, -3e-40, 1e-45, 0.5, -2e-3, tiny], dtype=np.float32)
    v = np.array([2e-39, 1e-42, 0.25, 1e-6, 0.0, 2 * tiny], dtype=np.float32)
    assert np.count_nonzero((m != 0) & (np.abs(m) < tiny)) == 3  # the test needs denormals

    def optimizer_at_step_98(flush_every):
        p = mg.Tensor(np.linspace(-1, 1, 6, dtype=np.float32), requires_grad=True)
        optimizer = optim.Adam([p], flush_denormals_every=flush_every)
        state = optimizer.state_dict()
        state.update({"step": 98, "state.0.step": 98, "state.0.exp_avg": m,
                      "state.0.exp_avg_sq": v})
        optimizer.load_state_dict(state)
        return p, optimizer

    flushed, plain = optimizer_at_step_98(100), optimizer_at_step_98(0)

    def step_both():
        for p, optimizer in (flushed, plain):
            p.grad = np.zeros(6, dtype=np.float32)  # vanishing gradients: moments only decay
            optimizer.step()

    step_both()  # step 99: no flush yet
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(flushed[1].state[0][key], plain[1].state[0][key])
    step_both()  # step 100: flush
    np.testing.assert_array_equal(flushed[0].data, plain[0].data)  # flush comes after the update
    for key in ("exp_avg", "exp_avg_sq"):
        kept, unflushed = flushed[1].state[0][key], plain[1].state[0][key]
        small = np.abs(unflushed) < tiny
        assert np.any(unflushed[small] != 0)
        assert np.all(kept[small] == 0)
        np.testing.assert_array_equal(kept[~small], unflushed[~small])


# --- PyTorch, when installed ---------------------------------------------------------------
def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    params, grads = random_problem(5)
    reference = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    ours = optim.Adam(params, lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01)
    theirs = torch.optim.Adam(reference, lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01)
    for t, step_grads in enumerate(grads[:20]):
        step_grads = [None if (t < 3 and i == 1) else g for i, g in enumerate(step_grads)]
        set_grads(params, step_grads)
        for r, g in zip(reference, step_grads):
            r.grad = None if g is None else torch.tensor(g)
        ours.step()
        theirs.step()
    for p, r in zip(params, reference):
        np.testing.assert_allclose(p.data, r.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", [dict(momentum=0.9, weight_decay=0.01),
                                     dict(momentum=0.5, nesterov=True, weight_decay=0.1)])
def test_sgd_matches_torch(options):
    torch = pytest.importorskip("torch")
    params, grads = random_problem(6)
    reference = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    ours = optim.SGD(params, lr=0.05, **options)
    theirs = torch.optim.SGD(reference, lr=0.05, **options)
    for step_grads in grads[:20]:
        set_grads(params, step_grads)
        for r, g in zip(reference, step_grads):
            r.grad = torch.tensor(g)
        ours.step()
        theirs.step()
    for p, r in zip(params, reference):
        np.testing.assert_allclose(p.data, r.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_is_bit_identical_to_the_array_expression(weight_decay, dtype):
    rng = np.random.default_rng(7)
    fused = [mg.Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
             for shape in [(30, 7), (7,)]]
    plain = [mg.Tensor(p.data.copy(), requires_grad=True) for p in fused]
    opt_fused = optim.Adam(fused, weight_decay=weight_decay, flush_denormals_every=3)
    opt_plain = optim.Adam(plain, weight_decay=weight_decay, flush_denormals_every=3, fused=False)
    for step in range(9):
        scale = 1e-39 if step >= 4 else 1.0  # late steps drive the moments towards subnormals
        for a, b in zip(fused, plain):
            g = (rng.standard_normal(a.shape) * scale).astype(dtype)
            g.flat[0] = np.nan if step == 8 else g.flat[0]
            a.grad, b.grad = g, g.copy()
        opt_fused.step()
        opt_plain.step()
        for i, (a, b) in enumerate(zip(fused, plain)):
            np.testing.assert_array_equal(a.data, b.data, err_msg=f"step {step}, param {i}")
            for key in ("exp_avg", "exp_avg_sq"):
                np.testing.assert_array_equal(opt_fused.state[i][key], opt_plain.state[i][key])


def test_adam_steps_float16_parameters_through_the_array_expression():
    p = mg.Tensor(np.ones(4, np.float16), requires_grad=True)
    p.grad = np.full(4, 0.5, np.float16)
    optim.Adam([p], lr=0.1, flush_denormals_every=0).step()
    assert p.dtype == np.float16 and np.all(p.data < 1)
