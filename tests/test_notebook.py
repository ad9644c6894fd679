"""docs/tutorial.ipynb runs from top to bottom without an error, and the outputs stored in it are
the ones it produces.

The notebook is stored with its outputs (so that it reads where the repository is browsed); this
test executes a copy with nbclient in a temporary folder, in the interpreter that runs the tests,
and compares each code cell's outputs with the stored ones: the same kinds (text, pictures) and
the same text once every number is masked (so BLAS rounding on another CPU is no difference,
while a cell edited without running the notebook again is). Refresh the stored outputs with
``jupyter nbconvert --to notebook --execute --inplace docs/tutorial.ipynb`` (the notebook extra).
"""
import json
import os
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "docs", "tutorial.ipynb")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
KERNEL = "minigrad-tests"


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def outputs_in_brief(cell):
    """A code cell's outputs as [(kind, content)]: consecutive stream chunks joined (how a
    stream is cut into outputs depends on timing), numbers masked as '#', white space dropped
    (NumPy pads its columns to the widest number); a picture as ('image/png', '')."""
    brief = []
    for output in cell.outputs:
        if output.output_type == "stream":
            text = "".join(NUMBER.sub("#", output.text).split())
            if brief and brief[-1][0] == output.name:
                brief[-1] = (output.name, brief[-1][1] + text)
            else:
                brief.append((output.name, text))
        elif output.output_type == "error":
            brief.append(("error", output.ename))
        elif "image/png" in output.data:
            brief.append(("image/png", ""))
        else:
            text = output.data.get("text/plain", "")
            brief.append(("text/plain", "".join(NUMBER.sub("#", text).split())))
    return brief


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """A kernel spec that runs ipykernel in sys.executable, first on Jupyter's search path, so
    the notebook runs against the minigrad these tests import; the inline backend, not Agg."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "minigrad tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return KERNEL


def test_the_stored_notebook_was_run_top_to_bottom_without_errors():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = code_cells(notebook)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{NOTEBOOK}: execution counts {counts}; run the whole notebook once, top to bottom, "
        "and save it with its outputs")
    errors = [i for i, cell in enumerate(cells) for kind, _ in outputs_in_brief(cell)
              if kind in ("error", "stderr")]
    assert not errors, f"{NOTEBOOK}: code cells {errors} hold an error or stderr output"
    assert sum(kind == "image/png" for cell in cells for kind, _ in outputs_in_brief(cell)) >= 4
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for target in re.findall(r"\]\(([^)#\s]+)\)", cell.source):
                assert "://" in target or os.path.exists(
                    os.path.join(os.path.dirname(NOTEBOOK), target)), \
                    f"{NOTEBOOK} links to {target}, which does not exist"


def test_the_notebook_runs_and_its_stored_outputs_are_current(tmp_path, kernel_of_this_interpreter):
    stored = nbformat.read(NOTEBOOK, as_version=4)
    fresh = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "cwd"
    work.mkdir()
    client = NotebookClient(fresh, timeout=300, kernel_name=kernel_of_this_interpreter,
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{NOTEBOOK} failed:\n{error}")
    assert not os.listdir(work), f"the notebook wrote files: {os.listdir(work)}"
    for index, (old, new) in enumerate(zip(code_cells(stored), code_cells(fresh))):
        assert outputs_in_brief(old) == outputs_in_brief(new), (
            f"{NOTEBOOK}: code cell {index} ({old.source.splitlines()[0]!r}) now prints other "
            f"outputs than the stored ones:\nstored {outputs_in_brief(old)}\n"
            f"now    {outputs_in_brief(new)}\nrefresh them: jupyter nbconvert --to notebook "
            "--execute --inplace docs/tutorial.ipynb")


def test_the_comparison_tells_a_changed_output_from_a_number():
    cell = nbformat.v4.new_code_cell("print(x)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="loss 1.25\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="step -3e-05 [ 0.1  2.]")]
    same = nbformat.v4.new_code_cell("print(x)")
    same.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                           text="loss 17.5\nstep 4e+01 [0.125 -2.5]")]
    changed = nbformat.v4.new_code_cell("print(x)")
    changed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="KL 1.25\nstep 3")]
    assert outputs_in_brief(cell) == outputs_in_brief(same)
    assert outputs_in_brief(cell) != outputs_in_brief(changed)
