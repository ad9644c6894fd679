"""minigrad.text_table: the tables of the study tools' reports, and their one home: trace and
gradcheck both use it, and neither reaches into the other for it."""
import subprocess
import sys

from minigrad.text_table import format_shape, format_table


def test_shapes_are_written_compactly():
    assert [format_shape(s) for s in [(), (3,), (2, 3), (1, 2, 3)]] == \
        ["()", "(3,)", "(2,3)", "(1,2,3)"]


def test_columns_are_padded_to_their_widest_cell():
    table = format_table(("op", "shape"), [("matmul", "(2,3)"), ("exp", "()")])
    assert table.splitlines() == ["op      shape", "matmul  (2,3)", "exp     ()"]


def test_trace_does_not_load_gradcheck():
    code = "import sys, minigrad.trace; print('minigrad.gradcheck' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
