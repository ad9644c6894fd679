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


def adam_float64(p, grads, lr, b1, b2, eps, weight_decay):
    """Adam on float64 arrays, p rounded to float16 after each step as a float16 parameter is;
    returns (p, m, v)."""
    p = p.astype(np.float64)
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64) + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        update = lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
        p = (p - update).astype(np.float16).astype(np.float64)
    return p, m, v


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_float16_steps_are_the_float64_steps_rounded(fused, weight_decay):
    # eps = 1e-8 is 0 in float16, and so is (1 - b2) g^2 for |g| < 7.7e-3: float16 arithmetic
    # divided m by 0 and wrote -inf after one step
    rng = np.random.default_rng(11)
    start = rng.uniform(-2, 2, (4, 5)).astype(np.float16)
    scales = np.array([1e-6, 1e-4, 3e-3, 1.0, 100.0])  # one per column
    grads = [(rng.standard_normal((4, 5)) * scales).astype(np.float16) for _ in range(6)]
    p = mg.Tensor(start.copy(), requires_grad=True)
    optimizer = optim.Adam([p], lr=1e-2, weight_decay=weight_decay, fused=fused)
    for g in grads:
        p.grad = g
        optimizer.step()
    expected, m, v = adam_float64(start, grads, 1e-2, 0.9, 0.999, 1e-8, weight_decay)
    assert p.dtype == np.float16 and np.all(np.isfinite(p.data))
    ulps = np.abs(p.data.astype(np.float64) - expected) / np.spacing(np.abs(p.data))
    assert ulps.max() <= 1, ulps  # float32 steps rounded to float16: at most a double rounding
    assert np.any(p.data != start)
    state = optimizer.state[0]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == np.float32
    np.testing.assert_allclose(state["exp_avg"], m, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(state["exp_avg_sq"], v, rtol=1e-5, atol=1e-30)


def test_fused_adam_on_float16_is_bit_identical_to_the_array_expression():
    rng = np.random.default_rng(12)
    fused = mg.Tensor(rng.standard_normal((6, 7)).astype(np.float16), requires_grad=True)
    plain = mg.Tensor(fused.data.copy(), requires_grad=True)
    opt_fused, opt_plain = optim.Adam([fused]), optim.Adam([plain], fused=False)
    for _ in range(4):
        fused.grad = (rng.standard_normal((6, 7)) * 1e-3).astype(np.float16)
        plain.grad = fused.grad.copy()
        opt_fused.step()
        opt_plain.step()
        np.testing.assert_array_equal(fused.data, plain.data)
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(opt_fused.state[0][key], opt_plain.state[0][key])


def test_adam_float16_state_is_float32_in_the_state_dict_too():
    p = mg.Tensor(np.ones((2, 3), np.float16), requires_grad=True)
    optimizer = optim.Adam([p], lr=0.1)
    p.grad = np.full((2, 3), 1e-4, np.float16)
    optimizer.step()
    state = optimizer.state_dict()
    assert state["state.0.exp_avg"].dtype == state["state.0.exp_avg_sq"].dtype == np.float32
    resumed_p = mg.Tensor(p.data.copy(), requires_grad=True)
    resumed = optim.Adam([resumed_p], lr=0.1)
    resumed.load_state_dict(state)
    for q, opt in ((p, optimizer), (resumed_p, resumed)):
        q.grad = np.full((2, 3), -2e-4, np.float16)
        opt.step()
    np.testing.assert_array_equal(resumed_p.data, p.data)
    state["state.0.exp_avg"] = state["state.0.exp_avg"].astype(np.float16)
    with pytest.raises(TypeError, match="state.0.exp_avg has dtype float16, parameter 0 has "
                                        "dtype float16, whose state is float32"):
        resumed.load_state_dict(state)


def test_adam_picks_its_implementation_from_the_kernels_registry(monkeypatch):
    import kernels
    assert list(kernels.ADAM_BACKENDS) == ["expression", "numba", "cupy"]
    f32 = np.zeros((3, 4), np.float32)
    assert kernels.adam_backend_for(f32, f32) == "numba"
    assert kernels.adam_backend_for(f32.T, f32.T) == "expression"  # not C-contiguous
    assert kernels.adam_backend_for(f32.astype(np.float16), f32) == "expression"
    with pytest.raises(ValueError, match="unknown Adam implementation 'sgd'"):
        kernels.adam_update("sgd")
    used, adam_update = [], kernels.adam_update
    monkeypatch.setattr(kernels, "adam_update", lambda name: used.append(name) or adam_update(name))
    p = mg.Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    p.grad = np.full((3, 4), 0.5, np.float32)
    optim.Adam([p]).step()
    optim.Adam([p], fused=False).step()
    assert used == ["numba"]  # and the unfused step ran the array expression
