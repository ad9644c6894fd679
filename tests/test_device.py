"""Devices: Tensor.device and .to, the device check of binary ops, Module.to, optimizer state on
the parameters' device, and the VAE with --device cuda.

The first half runs everywhere (no CuPy here means .to("cuda") must fail clearly).  The second
half needs CuPy and a GPU and skips without them: every gradcheck case on CuPy float64, every op
and one VAE step recorded into a CUDA graph (stream capture refuses a synchronising copy to the
host, so a capture that completes proves no op read device data back), checkpoints moved between
devices bit for bit, and a one-epoch run of `python -m vae train --device cuda`.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import kernels
import minigrad as mg
from minigrad import backend, nn
from minigrad.gradcheck.cases import CASES
from minigrad.optim import Adam
from minigrad.tensor import Tensor
from vae import run_folder, train
from vae_fixtures import silent, small_config, write_dataset, mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA = backend.cuda_available()
needs_no_gpu = pytest.mark.skipif(CUDA, reason="checks the error raised where CUDA is missing")


# --- everywhere --------------------------------------------------------------------------------
def test_tensors_and_numpy_scalars_live_on_the_cpu():
    assert Tensor([1.0, 2.0]).device == "cpu"
    assert backend.device_of(np.float32(1.0)) == "cpu"


def test_to_cpu_is_a_differentiable_node_that_shares_the_data():
    x = Tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x.to("cpu")
    assert y is not x and not y.is_leaf and y.op == "to" and y.data is x.data
    (y * y).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


def test_to_of_a_constant_is_a_leaf():
    y = Tensor([1.0]).to("cpu")
    assert y.is_leaf and not y.requires_grad


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Tensor([1.0]).to("tpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        nn.Linear(2, 3).to("gpu")


@needs_no_gpu
def test_to_cuda_without_cupy_says_what_is_missing():
    with pytest.raises(backend.DeviceUnavailableError, match=r"needs CuPy \(pip install cupy-cuda13x\)"):
        Tensor([1.0]).to("cuda")


def test_module_to_cpu_keeps_the_parameter_objects():
    model = nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(0)), nn.ReLU(),
                          nn.Linear(4, 2, rng=np.random.default_rng(1)))
    before = [(p, p.data) for p in model.parameters()]
    assert model.to("cpu") is model
    assert [(p, p.data) for p in model.parameters()] == before


class _StandIn:
    """An array type registered as another device, only to read the helper's message."""


def test_device_check_names_the_op_and_both_devices(monkeypatch):
    monkeypatch.setitem(backend._DEVICE_OF_TYPE, _StandIn, "elsewhere")
    with pytest.raises(ValueError, match=r"add: operands live on different devices, "
                                         r"cpu and elsewhere"):
        backend.check_same_device("add", np.zeros(2), _StandIn())
    backend.check_same_device("add", np.zeros(2), np.float64(1.0))  # one device, two types


@needs_no_gpu
def test_train_on_cuda_without_cupy_exits_1_with_the_reason(tmp_path):
    write_dataset(tmp_path / "data", train_count=6, test_count=4, side=28)
    result = subprocess.run(
        [sys.executable, "-m", "vae", "train", "--device", "cuda", "--epochs", "1", "--quiet",
         "--no-plots", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 1, result.stderr
    assert "device 'cuda' needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU" in result.stderr


def test_kernel_backend_needs_the_cuda_device(tmp_path):
    with pytest.raises(ValueError, match="kernel_backend must be one of cupy, numba_cuda"):
        small_config(tmp_path, kernel_backend="cupy").validate()


# --- with CuPy and a GPU ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cupy():
    cupy = pytest.importorskip("cupy", reason="the GPU tests need CuPy")
    if not CUDA:
        pytest.skip("CuPy is installed but sees no GPU")
    return cupy


def _on_gpu(t):
    """A case input moved with .to("cuda"): a leaf on the GPU, as the case made it on the host."""
    moved = t.detach().to("cuda").requires_grad_(t.requires_grad)
    moved.name = t.name
    return moved


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck_every_case_on_cupy_float64(cupy, case):
    inputs = [_on_gpu(t) for t in case.inputs]
    assert all(isinstance(t.data, cupy.ndarray) for t in inputs)
    case.check_inputs(inputs, raise_on_failure=True)


def _without_host_sync(cupy, work):
    """Run ``work`` once, then again inside a CUDA stream capture: a copy to the host or a
    synchronisation during capture is refused by CUDA and fails the test."""
    work()  # compiles the kernels and fills the memory pool outside the capture
    stream = cupy.cuda.Stream(non_blocking=True)
    error = None
    with stream:
        stream.begin_capture()
        try:
            work()
        except Exception as err:  # noqa: BLE001  (reported below, after the capture is closed)
            error = err
        try:
            stream.end_capture()
        except Exception as err:  # noqa: BLE001
            error = error or err
    if error is not None:
        pytest.fail(f"synchronised or copied to the host inside a step: {error!r}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_no_op_moves_data_to_the_host(cupy, case):
    inputs = [_on_gpu(t) for t in case.inputs]

    def forward_backward():
        for t in inputs:
            t.grad = None
        out = case.fn(*inputs)
        if out.requires_grad:
            (out.sum() if out.size != 1 else out).backward()
    _without_host_sync(cupy, forward_backward)


def test_a_vae_step_moves_nothing_to_the_host(cupy):
    from vae.model import VAE
    model = VAE(784, 64, 8, rng=np.random.default_rng(0)).to("cuda")
    optimizer = Adam(model.parameters())
    x = backend.to_device(mnist().train_images[:128], "cuda")
    stream = mg.random.Stream(0)

    def step():
        loss = model.loss(x, stream).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _without_host_sync(cupy, step)


@pytest.mark.parametrize("kernel_backend", kernels.GPU_BACKENDS)
def test_the_kernel_backends_move_nothing_to_the_host(cupy, kernel_backend):
    # every pass on CuPy arrays, inside a stream capture on a non-blocking stream: numba_cuda
    # launches on CuPy's current stream, keeps the KL on the device and imports by DLPack
    if kernel_backend == "numba_cuda" and os.environ.get("MINIGRAD_REAL_GPU") != "1":
        pytest.skip("numba_cuda on CuPy arrays needs the real GPU (MINIGRAD_REAL_GPU=1)")
    rng = np.random.default_rng(0)
    mu, logvar, grad_z = (cupy.asarray(rng.standard_normal(4099).astype(np.float32))
                          for _ in range(3))

    def passes():
        z, kl, eps = kernels.forward_kl(mu, logvar, 1, 3, backend=kernel_backend,
                                        save_noise=True)
        kernels.backward_kl(grad_z, mu, logvar, 1, 3, 0.25, backend=kernel_backend)
        kernels.backward(grad_z, logvar, 1, 3, backend=kernel_backend, noise=eps)
        assert isinstance(kl, cupy.ndarray) and kl.shape == ()
    _without_host_sync(cupy, passes)


def test_to_cuda_and_back_carries_the_gradient(cupy):
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and isinstance(y.data, cupy.ndarray)
    (mg.exp(y) * 2.0).sum().backward()
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data), rtol=1e-12)


@pytest.mark.parametrize("op", [mg.add, mg.mul, mg.matmul, lambda a, b: mg.stack([a, b]),
                                lambda a, b: mg.concatenate([a, b]),
                                lambda a, b: mg.where(np.array([True, False]), a, b),
                                lambda a, b: mg.linear(a[None], mg.stack([b, b], axis=1))],
                         ids=["add", "mul", "matmul", "stack", "concatenate", "where", "linear"])
def test_mixed_devices_raise_naming_both(cupy, op):
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2)).to("cuda")
    with pytest.raises(ValueError, match=r"different devices, (cpu and cuda|cuda and cpu)"):
        op(a, b)


def test_optimizer_state_follows_the_module(cupy):
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    optimizer = Adam(model.parameters())
    x = Tensor(np.ones((4, 3), np.float32))
    model(x).sum().backward()
    optimizer.step()
    model.to("cuda")
    optimizer.zero_grad()
    model(x.to("cuda")).sum().backward()
    optimizer.step()
    assert all(isinstance(a, cupy.ndarray) for entry in optimizer.state
               for a in (entry["exp_avg"], entry["exp_avg_sq"]))
    state = optimizer.state_dict()
    assert all(isinstance(v, np.ndarray) for k, v in state.items() if k.startswith("state."))


def _trainer_state(trainer):
    state = trainer.optimizer.state_dict()
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    return trainer.model.state_dict(), arrays


def _assert_same_bits(first, second):
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


def test_checkpoints_move_between_devices_bit_for_bit(cupy, tmp_path):
    gpu = train.run(small_config(tmp_path / "gpu", epochs=1, device="cuda"), dataset=mnist(),
                    log=silent)
    saved = _trainer_state(gpu)
    cpu = train.Trainer(small_config(tmp_path / "cpu"), mnist())
    cpu.restore(str(tmp_path / "gpu" / train.CHECKPOINT))
    _assert_same_bits(saved, _trainer_state(cpu))
    cpu.save(str(tmp_path / "cpu.npz"))
    back = train.Trainer(small_config(tmp_path / "back", device="cuda"), mnist())
    back.restore(str(tmp_path / "cpu.npz"))
    assert isinstance(back.model.parameters()[0].data, cupy.ndarray)
    _assert_same_bits(saved, _trainer_state(back))


@pytest.mark.parametrize("kernel_backend", [None, "numba_cuda"])
def test_one_epoch_on_cuda_from_the_command_line(cupy, tmp_path, kernel_backend):
    if kernel_backend == "numba_cuda" and os.environ.get("MINIGRAD_REAL_GPU") != "1":
        pytest.skip("numba_cuda on CuPy arrays needs the real GPU (MINIGRAD_REAL_GPU=1)")
    flags = ["--kernel-backend", kernel_backend] if kernel_backend else []
    result = subprocess.run(
        [sys.executable, "-m", "vae", "train", "--device", "cuda", "--epochs", "1",
         "--train-subset", "2048", "--test-subset", "500", "--binarize", "dynamic", "--quiet",
         "--no-plots", "--out", str(tmp_path / "run"), *flags],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr
    record = run_folder.read_metrics(str(tmp_path / "run"))[0]
    assert np.isfinite(record["train_loss"]) and np.isfinite(record["test_neg_elbo"])
