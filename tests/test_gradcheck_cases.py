"""The per-op finite-difference suite: every case of minigrad.gradcheck.cases in float64, every op
covered, and the ``python -m minigrad.gradcheck`` command line."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad.gradcheck import __main__ as cli
from minigrad.gradcheck.cases import CASES, NODES, Case
from minigrad.tensor import Tensor

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_matches_finite_differences(case):
    report = case.check()
    assert report.ok, report.failure_message()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_passes_at_second_order(case):
    report = case.check(order=2)
    assert report.ok, report.failure_message()


@pytest.mark.filterwarnings("ignore::minigrad.gradcheck.GradcheckWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_passes_in_float32_with_its_defaults(case):
    report = case.check(np.float32)
    assert report.ok, report.failure_message()


def test_every_op_has_a_case():
    covered = {c.op for c in CASES}
    assert [name for name in NODES if name not in covered] == []


def test_every_case_names_an_op_and_is_unique():
    assert {c.op for c in CASES} <= set(NODES)
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_case_inputs_are_finite_named_float64():
    for c in CASES:
        assert any(t.requires_grad for t in c.inputs), c.id
        for t in c.inputs:
            assert t.dtype == np.float64 and t.name and np.all(np.isfinite(t.data)), c.id


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minigrad.gradcheck", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_checks_one_op():
    result = run_cli("--op", "mul")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("op "))
    assert header.split() == ["op", "case", "shapes", "dtype", "max", "abs", "max", "rel", "ok"]
    rows = [line.split() for line in lines if line.startswith("mul ")]
    count = sum(c.op == "mul" for c in CASES)
    assert len(rows) == count and all(row[-1] == "ok" for row in rows)
    assert f"{count} of {count} cases passed" in result.stdout
    assert all(len(line) <= 110 for line in lines)


def test_cli_unknown_op_exits_2_listing_the_known_ops():
    result = run_cli("--op", "nosuchop")
    assert result.returncode == 2
    assert "unknown op 'nosuchop'" in result.stderr and "matmul" in result.stderr


def test_cli_lists_cases_without_checking():
    result = run_cli("--list", "--op", "reparameterize")
    assert result.returncode == 0
    assert sum(line.startswith("reparameterize ") for line in result.stdout.splitlines()) == \
        sum(c.op == "reparameterize" for c in CASES)


def test_cli_fails_and_explains_a_wrong_vjp(monkeypatch, capsys):
    class BadSquare(mg.Function):
        name = "bad_square"

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (g * x,)   # missing 2

    def bad_square(x):
        return BadSquare.apply(x)
    bad = Case("bad_square", "vector", bad_square, (Tensor(np.array([1.0, 2.0]), True, "x"),))
    monkeypatch.setattr(cli, "CASES", [bad, *[c for c in CASES if c.op == "neg"]])
    assert cli.main(["--fast"]) == 1
    out = capsys.readouterr().out
    assert "bad_square[vector]:" in out and "is wrong at element" in out
    assert "2 of 3 cases passed" in out
    assert cli.main(["--op", "neg"]) == 0
