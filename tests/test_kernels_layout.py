"""kernels/ laid out by toolchain: NumPy (the contract, the reference, the stream) at the top,
Numba in kernels/numba/, CUDA C and CuPy in kernels/cuda_c/; every change to Numba's internals in
kernels/numba/patches.py; one checked entry point per pass (kernels.contract), with backends that
export only their unchecked passes."""
import ast
import importlib
import re
from pathlib import Path

import pytest

import kernels
from kernels import contract

KERNELS = Path(kernels.__file__).parent
PASSES = ("forward", "forward_kl", "backward", "backward_kl")
# the writes kernels/numba/patches.py makes into Numba: no other file may make one
NUMBA_PATCH = re.compile(r"_locator_classes\.insert|\bcompile_ir\s*=|get_current_device\s*=")


def imported(path):
    """The top-level names of every module ``path`` imports, wherever in the file."""
    tree = ast.parse(path.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return names | {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}


def python_files(folder):
    return sorted(folder.glob("*.py"))


def test_the_top_level_is_numpy_alone():
    for path in python_files(KERNELS):
        assert not imported(path) & {"numba", "cupy", "cuda", "numba_cuda"}, path.name


# (CuPy arrays are also taken by kernels/numba/gpu.py, the numba_cuda backend: cupy is no toolchain)
@pytest.mark.parametrize("toolchain, folder", [("numba", "numba"), ("cuda", "cuda_c")])
def test_each_toolchain_lives_in_its_folder(toolchain, folder):
    users = {path.relative_to(KERNELS).parts[0] for path in KERNELS.rglob("*.py")
             if toolchain in imported(path)}
    assert users <= {folder}, sorted(users)


def test_the_cuda_c_sources_live_in_kernels_cuda_c():
    sources = [p.relative_to(KERNELS) for p in KERNELS.rglob("*") if p.suffix in (".cu", ".cuh")]
    assert sources and all(p.parts[0] == "cuda_c" for p in sources), sources


def test_numbas_internals_are_patched_in_one_file():
    touching = [str(path.relative_to(KERNELS)) for path in KERNELS.rglob("*.py")
                if NUMBA_PATCH.search(path.read_text())]
    assert touching == ["numba/patches.py"]


def test_the_contract_holds_the_one_checked_entry_point_of_each_pass():
    for name in PASSES:
        assert callable(getattr(contract, name)), name


@pytest.mark.parametrize("name", sorted(kernels.BACKENDS))
def test_backends_export_only_their_unchecked_passes(name):
    try:
        module = importlib.import_module(kernels.BACKENDS[name])
    except ImportError as err:
        pytest.skip(f"{name} is unavailable here: {err}")
    assert module.NAME == name
    assert all(callable(getattr(module, f"run_{p}")) for p in PASSES)
    assert not [p for p in PASSES if hasattr(module, p)]
