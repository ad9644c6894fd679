"""The GPU backends' launch logic, on the CPU: grids sized from the compiled kernels' occupancy,
the KL kept on the device, CuPy's stream and device, DLPack imports, one check per call.

What needs the driver (its occupancy answer, a real stream capture) runs on a GPU in
tests/test_kernels.py and tests/test_device.py; here the same code paths run under Numba's
simulator or against numba-cuda's own functions.
"""
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import contract, occupancy, reference

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "results" / "compile_report.json"
H100_SMS = 132


# --- occupancy and grid sizes -----------------------------------------------------------------
@pytest.mark.parametrize("registers, shared, blocks", [
    (78, 2048, 3),    # numba_cuda forward_kl float64: 2560 registers a warp, 25 warps, 3 blocks
    (48, 0, 5),       # reparam.cu's __launch_bounds__(256, 5) cap
    (40, 0, 6), (32, 0, 8), (0, 0, 8),
    (255, 0, 1),
    (16, 100 * 1024, 2),  # 228 KiB of shared memory hold 2 blocks of 100 KiB + 1 KiB reserved
])
def test_resident_blocks_on_sm_90(registers, shared, blocks):
    assert occupancy.resident_blocks(registers, shared, 256, "sm_90") == blocks


def test_resident_blocks_on_sm_80_has_less_shared_memory():
    assert occupancy.resident_blocks(16, 100 * 1024, 256, "sm_80") == 1
    assert occupancy.resident_blocks(16, 200 * 1024, 256, "sm_90") == 1
    assert occupancy.resident_blocks(16, 240 * 1024, 256, "sm_90") == 0


@pytest.mark.parametrize("args, message", [
    ((32, 0, 256, "sm_70"), "unknown arch 'sm_70'"),
    ((300, 0, 256, "sm_90"), "300 registers per thread"),
    ((32, 0, 100, "sm_90"), "100 threads per block"),
])
def test_resident_blocks_names_a_bad_argument(args, message):
    with pytest.raises(ValueError, match=message):
        occupancy.resident_blocks(*args)


def test_grid_blocks_gives_one_step_per_thread_up_to_the_resident_blocks():
    assert occupancy.grid_blocks(1, 256, 396) == 1
    assert occupancy.grid_blocks(256 * 10 + 1, 256, 396) == 11
    assert occupancy.grid_blocks(10**9, 256, 396) == 396
    with pytest.raises(ValueError, match="fits no SM"):
        occupancy.grid_blocks(10, 256, 0)


def test_grids_from_the_compiled_kernels_register_counts():
    # the committed compile report (tests/test_gpu_compile.py keeps it current): each kernel's
    # blocks per SM is the occupancy of its registers and shared memory, and a large launch on
    # an H100 gets exactly the blocks its SMs hold, not the 8 a block of 256 threads could
    rows = json.loads(REPORT.read_text())["kernels"]
    for r in rows:
        blocks = occupancy.resident_blocks(r["registers"], r["shared"], r["threads"], r["arch"])
        assert blocks == r["blocks_per_sm"], r
        assert occupancy.grid_blocks(2**28, r["threads"], blocks * H100_SMS) == blocks * H100_SMS
    forward_kl = {(r["kernel"], r["arch"]): r for r in rows if r["backend"] == "numba_cuda"}
    assert forward_kl["forward_kl_save_noise_f64", "sm_90"]["blocks_per_sm"] < 8


# --- numba_cuda under the simulator --------------------------------------------------------------
@pytest.fixture
def numba_cuda():
    module = pytest.importorskip("kernels.numba.gpu", reason="numba_cuda unavailable")
    if not module.SIMULATED:
        pytest.skip("checks the simulator's launches")
    return module


def _every_pass(module, dtype):
    rng = np.random.default_rng(3)
    mu, logvar, grad_z = (rng.standard_normal(37).astype(dtype) for _ in range(3))
    z, kl, eps = contract.forward_kl(module, mu, logvar, 5, 2, save_noise=True)
    contract.forward(module, mu, logvar, 5, 2, save_noise=True)
    contract.forward(module, mu, logvar, 5, 2)
    contract.forward_kl(module, mu, logvar, 5, 2)
    for noise in (None, eps):
        contract.backward(module, grad_z, logvar, 5, 2, noise=noise)
        contract.backward_kl(module, grad_z, mu, logvar, 5, 2, 0.5, noise=noise)
    return kl


def test_every_launch_is_a_compiled_specialisation(numba_cuda, monkeypatch):
    from kernels.numba import gpu_kernels as numba_cuda_kernels
    launched = set()
    launch = numba_cuda._launch

    def recording(kernel, steps, args, arrays, config=None):
        launched.add((kernel.py_func.__name__, numba_cuda_kernels.launch_signature(args)))
        return launch(kernel, steps, args, arrays, config)
    monkeypatch.setattr(numba_cuda, "_launch", recording)
    for dtype in (np.float32, np.float64):
        _every_pass(numba_cuda, dtype)
    numba_cuda.philox4x32(np.zeros((3, 4), np.uint32), np.zeros(2, np.uint32))
    compiled = {(kernel.py_func.__name__, types_) for _, kernel, types_ in
                numba_cuda_kernels.SPECIALISATIONS}
    assert launched == compiled, (sorted(map(str, launched - compiled)),
                                  sorted(map(str, compiled - launched)))


def test_forward_kl_reads_back_only_its_outputs(numba_cuda, monkeypatch):
    # the KL's per-block partial sums are added on the device (a second kernel): for NumPy
    # callers the only copies to the host are z, kl and eps, never the partials
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    copies = []
    copy_to_host = FakeCUDAArray.copy_to_host

    def counting(self, *args, **kwargs):
        copies.append(self.shape)
        return copy_to_host(self, *args, **kwargs)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", counting)
    mu = np.linspace(-1, 1, 2000, dtype=np.float32)
    z, kl, eps = contract.forward_kl(numba_cuda, mu, mu, 5, 2, save_noise=True)
    assert sorted(copies) == sorted([(2000,), (), (2000,)])
    expected = contract.forward_kl(reference, mu, mu, 5, 2)[1]
    assert kl.shape == () and abs(float(kl) - float(expected)) <= 4 * np.spacing(expected)


def test_the_kl_partials_fit_the_grid_of_the_kernel_that_runs(numba_cuda, monkeypatch):
    # the KL kernel's occupancy, not the plain forward's, sizes its grid and its partial sums:
    # here the KL specialisation fits 3 resident blocks and the others 7 (a buffer sized for 7
    # would add 4 uninitialised partials)
    monkeypatch.setattr(numba_cuda, "resident_blocks",
                        lambda kernel, args: 3 if kernel is numba_cuda.forward_kernel
                        and args[5] is not None else 7)
    blocks = []
    launch = numba_cuda._launch

    def recording(kernel, steps, args, arrays, config=None):
        if kernel is numba_cuda.forward_kernel:
            blocks.append((numba_cuda.launch_config(kernel, args, steps)[0], len(args[5])))
        return launch(kernel, steps, args, arrays, config)
    monkeypatch.setattr(numba_cuda, "_launch", recording)
    mu = np.linspace(-2, 2, 3001)
    kl = contract.forward_kl(numba_cuda, mu, mu / 3, 5, 2)[1]
    assert blocks == [(3, 3)]
    expected = contract.forward_kl(reference, mu, mu / 3, 5, 2)[1]
    assert abs(float(kl) - float(expected)) <= 8 * np.spacing(expected)


class _FakeCupyArray:
    """Stands in for a cupy.ndarray on GPU 1 (only what the launch path reads)."""
    __module__ = "cupy"
    device = types.SimpleNamespace(id=1)


def test_cupy_arrays_launch_on_cupys_current_stream_and_their_device(numba_cuda, monkeypatch):
    stream = types.SimpleNamespace(ptr=0xC0FFEE)
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    external = []
    monkeypatch.setattr(numba_cuda.cuda, "external_stream",
                        lambda ptr: external.append(ptr) or f"stream {ptr:#x}")
    monkeypatch.setattr(numba_cuda.cuda, "gpus", {0: "GPU 0", 1: "GPU 1"})
    arrays = numba_cuda._Arrays("test", _FakeCupyArray())
    assert arrays.kind == "cupy"
    assert arrays.stream() == "stream 0xc0ffee" and external == [0xC0FFEE]
    assert arrays.device() == "GPU 1"  # the context manager making GPU 1 current for Numba


def test_numba_cuda_imports_cupy_arrays_by_dlpack_on_the_launch_stream():
    # numba-cuda 0.30 turns a kernel argument with __dlpack__ into a StridedMemoryView through
    # DLPack, passing the launch's stream (the producer orders its stream before it, on the GPU);
    # through __cuda_array_interface__ it would synchronise the array's stream from the host.
    # Run without the simulator (numba-cuda's real argument path; no GPU is touched).
    code = """
from numba.cuda import args
from numba.cuda.cudadrv import devicearray
calls = []
devicearray.StridedMemoryView = type("View", (), {"from_dlpack": staticmethod(
    lambda obj, stream_ptr=None: calls.append(("dlpack", stream_ptr)) or "view")})
class CupyLike:
    dtype = __import__("numpy").dtype("float32")
    def __dlpack__(self, stream=None): raise AssertionError("imported directly")
    __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (0, False),
                                "version": 3, "stream": 1}
retr = []
print(args.wrap_arg(CupyLike()).to_device(retr, stream=7), calls)
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "view [('dlpack', 7)]", result.stdout


# --- one call, one check --------------------------------------------------------------------------
def test_a_call_checks_its_arrays_once(monkeypatch):
    import minigrad as mg
    checked = []
    check_pair = contract._check_pair
    monkeypatch.setattr(contract, "_check_pair",
                        lambda name, *args: checked.append(name) or check_pair(name, *args))
    mu, logvar = np.zeros(8, np.float32), np.zeros(8, np.float32)
    kernels.forward(mu, logvar, 3, 1)
    kernels.backward_kl(mu, mu, logvar, 3, 1, 0.5)
    contract.forward(importlib.import_module(kernels.BACKENDS["numba_cpu"]), mu, logvar, 3, 1)
    assert checked == ["kernels.forward", "kernels.backward_kl", "kernels.backward_kl",
                       "numba_cpu.forward"]  # backward_kl: (grad_z, logvar) and (mu, logvar)
    checked.clear()
    z = mg.reparameterize(mg.Tensor(mu, requires_grad=True), mg.Tensor(logvar), seed=3,
                          offset=1)
    assert checked == ["reparameterize"]
    z.sum().backward()  # the VJP's gradient has z's shape and dtype: nothing to check again
    assert checked == ["reparameterize"]


# --- benchmarks/kernel_report.py ------------------------------------------------------------------
class _Compiled:
    """What numba-cuda's compiled _Kernel answers, with made-up figures."""
    regs_per_thread, local_mem_per_thread, shared_mem_per_block = 40, 0, 2048

    def max_cooperative_grid_blocks(self, threads):
        return 6 * H100_SMS


def test_kernel_report_asks_only_kernels_for_their_registers(numba_cuda):
    # it used to walk every numba-cuda dispatcher of the module, device functions too, and a
    # device function has no register count (AttributeError before anything was printed)
    from benchmarks import kernel_report
    from kernels.numba import gpu_kernels as numba_cuda_kernels
    asked = []

    def compile_kernel(kernel, argtypes):
        if getattr(kernel, "_device", False):
            raise AttributeError(f"{kernel} is a device function: no registers")
        asked.append(kernel)
        return _Compiled()
    rows = kernel_report.numba_kernels(numba_cuda_kernels.SPECIALISATIONS, compile_kernel, 256,
                                       H100_SMS, 2048)
    assert [r["kernel"] for r in rows] == [s[0] for s in numba_cuda_kernels.SPECIALISATIONS]
    assert all(r["blocks_per_sm"] == 6 and r["occupancy"] == 0.75 for r in rows)
    assert numba_cuda_kernels._forward_block._device  # the module has device functions
    assert numba_cuda_kernels._forward_block not in asked
    kernel_report.print_rows("numba_cuda kernel", rows)


def test_kernel_report_without_a_gpu_says_why(capsys):
    if "cupy" in kernels.available_backends():
        pytest.skip("checks the report's refusal where CuPy or a GPU is missing")
    from benchmarks import kernel_report
    assert kernel_report.main(["--out", "unused"]) == 2
    assert "kernel_report: the cupy backend needs CuPy" in capsys.readouterr().err
