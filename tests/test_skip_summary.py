"""The run's last lines: skipped tests summarised one line per reason (tests/conftest.py), not
one line per test (pytest.ini no longer asks for -ra)."""
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent


def test_skips_are_summarised_one_line_per_reason(tmp_path):
    (tmp_path / "test_sample.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.mark.parametrize("i", range(5))
        def test_gpu(i):
            pytest.skip("the GPU tests need CuPy")

        def test_compilers():
            pytest.skip("the CUDA compilers are not installed")

        def test_runs():
            pass
    '''))
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-c", str(TESTS.parent / "pytest.ini"), "--rootdir", str(tmp_path),
                             str(tmp_path)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0, out
    assert "6 skipped, 2 reasons" in out
    assert "   5  the GPU tests need CuPy" in out
    assert "   1  the CUDA compilers are not installed" in out
    assert "expected on a machine without them" in out
    assert "SKIPPED [" not in out, "pytest's one line per test is back (-ra)"
