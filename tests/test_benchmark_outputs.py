"""Where a benchmark writes: runs/benchmarks/ (ignored by git) unless told otherwise, the committed
benchmarks/results/ only with --update-results (benchmarks/report.py: add_out_arguments,
out_folder). tests/test_docs.py runs the documented commands and checks that git sees no change.
"""
import argparse
import os
import subprocess

import pytest

from benchmarks import report
from benchmarks.reparam import parse_args as reparam_arguments
from benchmarks.vae_cpu import parse_args as vae_cpu_arguments


def folder(argv):
    parser = argparse.ArgumentParser()
    report.add_out_arguments(parser, "the results")
    return report.out_folder(parser.parse_args(argv), parser)


def test_a_run_writes_outside_the_committed_results_unless_asked():
    assert folder([]) == report.SCRATCH
    assert folder(["--out", "mine"]) == "mine"
    assert folder(["--update-results"]) == report.RESULTS


def test_out_and_update_results_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        folder(["--out", "mine", "--update-results"])
    assert "--update-results" in capsys.readouterr().err


def test_the_default_folder_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", os.path.join(report.SCRATCH, "x.json")],
                            cwd=report.ROOT, capture_output=True)
    assert result.returncode == 0, f"git does not ignore {report.relative(report.SCRATCH)}/"
    tracked = subprocess.run(["git", "ls-files", report.relative(report.RESULTS)], cwd=report.ROOT,
                             capture_output=True, text=True).stdout.split()
    assert tracked, "benchmarks/results/ should hold the committed figures"


@pytest.mark.parametrize("arguments", [reparam_arguments, vae_cpu_arguments])
def test_the_scripts_resolve_their_folder(arguments):
    assert arguments(["--quick"]).out == report.SCRATCH
    assert arguments(["--quick", "--update-results"]).out == report.RESULTS


def test_compile_report_without_the_compilers_says_how_to_install_them(monkeypatch, capsys):
    from benchmarks import compile_report
    monkeypatch.setattr(compile_report, "missing_toolchain",
                        lambda: "the CUDA compilers are not installed (ImportError: nvrtc)")
    assert compile_report.main([]) == compile_report.MISSING_TOOLCHAIN
    assert 'pip install -e ".[gpu-compile]"' in capsys.readouterr().err
