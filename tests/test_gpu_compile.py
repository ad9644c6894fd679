"""Every GPU kernel compiled by the real CUDA toolchains, no GPU needed (benchmarks/compile_report.py).

numba_cuda's launched specialisations through NVVM and ptxas, reparam.cu and adam.cu through NVRTC
with kernels.cuda_c.nvrtc's options, for sm_80 and sm_90: no spill and no local stack anywhere, no
contraction the source does not write and no flushed subnormals, and the report equal to the
committed benchmarks/results/compile_report.json; a toolkit with a piece missing reads as a
missing toolchain, never a crash.

The compilers are wheels (pip install -e ".[gpu-compile]"). Without them these tests skip, saying
so, unless MINIGRAD_REQUIRE_GPU_COMPILERS=1 (as .ci/run sets): then a missing compiler fails.
The compiles run in subprocesses: this test process runs Numba's simulator (conftest.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "compile_report.py"
COMMITTED = ROOT / "benchmarks" / "results" / "compile_report.json"
REQUIRE = os.environ.get("MINIGRAD_REQUIRE_GPU_COMPILERS") == "1"
MISSING_TOOLCHAIN = 3  # compile_report.py's exit status
# kernels.numba.libm.fma_f64's explicit FMAs in one Philox block's float64 normals: 4 per
# Box-Muller pair
F64_BLOCK_FMAS = 8


def _without_simulator():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


def _python(code):
    """Run `code` in a fresh interpreter without the simulator; its stdout."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env={**_without_simulator(), "PYTHONPATH": str(ROOT)},
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile_report")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, env=_without_simulator(),
                            timeout=900)
    if result.returncode == MISSING_TOOLCHAIN:
        message = result.stderr.strip()   # the reason and how to install the compilers
        if REQUIRE:
            pytest.fail(f"MINIGRAD_REQUIRE_GPU_COMPILERS=1 but {message}")
        pytest.skip(message)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "compile_report.json").read_text())


# compile_report.main with the nvidia-nvvm distribution hidden: a partial toolkit, as PyTorch's
# CUDA wheels leave (NVRTC, cuda-bindings, no NVVM)
PARTIAL_TOOLKIT = """
import sys
from importlib import metadata
from benchmarks import compile_report

def version(name):
    if name == "nvidia-nvvm":
        raise metadata.PackageNotFoundError(name)
    return metadata.version(name)

compile_report.metadata = type("Hidden", (), {"version": staticmethod(version),
                                             "PackageNotFoundError": metadata.PackageNotFoundError})
sys.exit(compile_report.main(["--out", sys.argv[1]]))
"""


def test_a_partial_toolkit_reads_as_a_missing_toolchain(tmp_path):
    # the report crashed with PackageNotFoundError: nvidia-nvvm, after compiling everything
    result = subprocess.run([sys.executable, "-c", PARTIAL_TOOLKIT, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**_without_simulator(), "PYTHONPATH": str(ROOT)})
    assert result.returncode == MISSING_TOOLCHAIN, result.stderr
    assert result.stderr.startswith("compile_report: cannot compile here: the CUDA compilers "
                                    "are not all installed (missing: ")
    assert "nvidia-nvvm" in result.stderr and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_every_kernel_compiles_for_both_archs_without_spills_or_a_stack(report):
    rows = report["kernels"]
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90"}
    bad = [(r["backend"], r["kernel"], r["arch"], r["stack"], r["spill_stores"], r["spill_loads"])
           for r in rows if r["stack"] or r["spill_stores"] or r["spill_loads"]]
    assert not bad, f"(backend, kernel, arch, stack, spill stores, spill loads): {bad}"
    assert all(r["blocks_per_sm"] >= 1 for r in rows)


def test_every_launched_kernel_is_compiled():
    names = json.loads(_python(
        "import json; from kernels.cuda_c import nvrtc as cuda_c; "
        "from kernels.numba import gpu_kernels as k; print(json.dumps("
        "{'numba_cuda': [s[0] for s in k.SPECIALISATIONS], 'cupy': cuda_c.KERNEL_NAMES['reparam'],"
        " 'adam_cupy': cuda_c.KERNEL_NAMES['adam']}))"))
    committed = json.loads(COMMITTED.read_text())["kernels"]
    for arch in ("sm_80", "sm_90"):
        for backend, kernels in names.items():
            found = {r["kernel"] for r in committed if r["arch"] == arch and r["backend"] == backend}
            assert found == set(kernels), (arch, backend, sorted(found ^ set(kernels)))


def test_no_contraction_and_no_flushed_subnormals_in_the_ptx(report):
    for r in report["kernels"]:
        where = (r["backend"], r["kernel"], r["arch"])
        # a float add/sub/mul without .rn is one ptxas may fuse; .ftz flushes subnormals
        assert r["contractible"] == 0 and r["ftz"] == 0, where
        if r["backend"] == "numba_cuda":  # the only FMAs are kernels.numba.libm's explicit ones
            regenerates = "f64" in r["kernel"] and "from_noise" not in r["kernel"] \
                and "kl_sum" not in r["kernel"]
            assert r["fma"] == (F64_BLOCK_FMAS if regenerates else 0), where
        if r["backend"] == "adam_cupy":  # Adam's source has no fma, its library calls none
            assert r["fma"] == 0, where


def test_the_report_is_the_committed_one(report):
    committed = json.loads(COMMITTED.read_text())
    assert report["toolchain"] == committed["toolchain"], (
        "another toolchain than the committed report's: install the pinned .[gpu-compile] "
        "or regenerate with python benchmarks/compile_report.py --update-results")
    changed = [(new["backend"], new["kernel"], new["arch"])
               for new, old in zip(report["kernels"], committed["kernels"]) if new != old]
    assert len(report["kernels"]) == len(committed["kernels"]) and not changed, (
        f"kernels whose figures changed: {changed}; regenerate benchmarks/results/"
        "compile_report.{json,md} with python benchmarks/compile_report.py --update-results")


def test_the_checks_see_what_the_default_compilers_would_do(report):
    # the same kernels built the default ways: NVVM contracting (numba-cuda without the hook),
    # NVRTC with CuPy's appended -ftz=true; the PTX counts must show both
    counts = json.loads(_python(
        "import json; from numba import cuda; from kernels.cuda_c import nvrtc as cuda_c; "
        "from kernels.numba import gpu_kernels as k; from benchmarks import compile_report as r\n"
        "from kernels.numba.patches import compiling_for\n"
        "name, kernel, types = k.SPECIALISATIONS[0]\n"
        "with compiling_for((9, 0)):\n"
        "    ptx, _ = cuda.compile_ptx(kernel.py_func, types, cc=(9, 0))\n"
        "nvrtc = cuda_c.CudaBindingsNvrtc()\n"
        "cupy_like = nvrtc.compile(cuda_c.source('adam'), 'adam.cu', (*cuda_c.OPTIONS,"
        " '--gpu-architecture=compute_90', '-ftz=true'))[0].decode()\n"
        "print(json.dumps([name, r.ptx_counts(ptx), r.ptx_counts(cupy_like)]))"))
    name, contracted, flushed = counts
    assert name == "forward_f32" and contracted["fma"] > 0
    assert flushed["ftz"] > 0
