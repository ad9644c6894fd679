"""The vae package's shape: imports run one way (cli -> train / evaluate / plots -> model ->
minigrad, never kernels, with the run folder's files in one module, the checkpoint format in one
and the figures in one), and no library module chooses matplotlib's backend; only the command
line does."""
import ast
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAE = os.path.join(REPO, "vae")
# each module's rank: a module may import only modules of a lower rank (functions' imports too)
RANKS = {"data": 0, "model": 0, "config": 1, "evaluate": 1, "run_folder": 2, "checkpoint": 3,
         "plots": 4, "train": 5, "cli": 6, "__main__": 7}


def vae_imports(name):
    """The vae modules that vae/<name>.py imports, wherever in the file the import is."""
    with open(os.path.join(VAE, name + ".py")) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "vae":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("vae.")}
    return found


def test_every_vae_module_has_a_rank():
    modules = {name[:-3] for name in os.listdir(VAE) if name.endswith(".py")} - {"__init__"}
    assert modules == set(RANKS)


@pytest.mark.parametrize("name", sorted(RANKS))
def test_imports_run_one_way(name):
    for imported in vae_imports(name):
        assert RANKS[imported] < RANKS[name], f"vae/{name}.py imports vae.{imported}"


@pytest.mark.parametrize("name", sorted(RANKS))
def test_vae_reaches_the_kernels_only_through_minigrad(name):
    # dependencies point one way, vae -> minigrad -> kernels (evaluate took a constant from kernels)
    with open(os.path.join(VAE, name + ".py")) as f:
        tree = ast.parse(f.read())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in modules if m == "kernels" or m.startswith("kernels.")}


def test_no_library_module_chooses_the_plotting_backend(tmp_path):
    """A notebook's backend survives importing every module; the CLI's drawing commands choose
    Agg."""
    script = """
import matplotlib
matplotlib.use("svg")
import benchmarks.estimators, vae.checkpoint, vae.cli, vae.evaluate, vae.plots, vae.run_folder
import vae.train
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
from vae import cli
assert cli.main(["sample", "no-such-run"]) == 1
print(matplotlib.get_backend())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120,
                            env={**{k: v for k, v in os.environ.items() if k != "MPLBACKEND"},
                                 "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lower() == "agg"


def test_the_guarantees_name_tests_that_exist():
    with open(os.path.join(REPO, "docs", "never-lost-work.md")) as f:
        named = set(re.findall(r"`(test_\w+)`", f.read()))
    defined = set()
    for name in os.listdir(os.path.join(REPO, "tests")):
        if name.endswith(".py"):
            with open(os.path.join(REPO, "tests", name)) as f:
                defined |= set(re.findall(r"^def (test_\w+)", f.read(), re.M))
    assert len(named) >= 10 and named <= defined, sorted(named - defined)
