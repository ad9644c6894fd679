"""python -m minigrad.gradcheck: check every registered op case against finite differences.

    python -m minigrad.gradcheck                    every case, float64
    python -m minigrad.gradcheck --op matmul        the cases of one op (repeat --op for more)
    python -m minigrad.gradcheck --dtype float32 --fast
    python -m minigrad.gradcheck --order 2          second derivatives (gradgradcheck)
    python -m minigrad.gradcheck --list             the cases, unchecked
    python -m minigrad.gradcheck --sweep --op tanh --out sweep.png
                                                    error against step size, float64 and float32

Prints one row per case (worst errors over its inputs), then each failure in full.
Exit status: 0 when every case passes, 1 when one fails, 2 for a bad command line.
``--sweep`` instead measures the op's first case over steps 1e-1 .. 1e-12 (see
``minigrad.gradcheck.sweep``), prints the errors, writes the plot (creating its folder) and exits
0, or 1 with a one-line error when the plot cannot be written.
"""
import argparse
import sys
import warnings

import numpy as np

from minigrad.gradcheck import sweep
from minigrad.gradcheck.cases import CASES
from minigrad.gradcheck.core import TOLERANCES, GradcheckWarning
from minigrad.gradcheck.report import CRITERION
from minigrad.text_table import format_table


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minigrad.gradcheck",
        description="Check every op's gradients against central finite differences.")
    parser.add_argument("--op", action="append", metavar="NAME",
                        help="check only this op (repeatable)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="dtype of the inputs (default float64); differences always run "
                             "in float64")
    parser.add_argument("--fast", action="store_true",
                        help="random directional derivatives instead of every element; "
                             "a mismatch is rechecked element by element")
    parser.add_argument("--order", type=int, choices=[1, 2], default=1,
                        help="1: gradients (gradcheck); 2: second derivatives, finite differences "
                             "of the gradients (gradgradcheck)")
    parser.add_argument("--list", action="store_true", help="list the cases without checking them")
    parser.add_argument("--sweep", action="store_true",
                        help="plot the finite-difference error against the step for one --op")
    parser.add_argument("--out", default="sweep.png", metavar="PATH",
                        help="where --sweep writes its plot (.png or .svg; default sweep.png)")
    args = parser.parse_args(argv)

    known = list(dict.fromkeys(c.op for c in CASES))
    for name in args.op or []:
        if name not in known:
            parser.error(f"unknown op {name!r}; known ops: {', '.join(known)}")
    cases = sorted((c for c in CASES if not args.op or c.op in args.op),
                   key=lambda c: known.index(c.op))  # stable: each op's cases stay in order
    if args.list:
        print(format_table(("op", "case", "shapes"), [(c.op, c.label, c.shapes) for c in cases]))
        return 0
    if args.sweep:
        if len(args.op or []) != 1:
            parser.error("--sweep needs exactly one --op")
        try:
            return _sweep(cases[0], args.out)
        except (OSError, ValueError) as error:  # matplotlib: ValueError for an unknown format
            print(f"error: --out {args.out}: the plot cannot be written ({error})",
                  file=sys.stderr)
            return 1

    dtype = np.dtype(args.dtype)
    tolerance = TOLERANCES[dtype]
    check = "gradcheck" if args.order == 1 else "gradgradcheck (order 2)"
    print(f"{check}: {len(cases)} cases of {len(set(c.op for c in cases))} ops, {dtype} inputs, "
          f"{'fast' if args.fast else 'every element'}; eps {tolerance.eps:g}, "
          f"atol {tolerance.atol:g}, rtol {tolerance.rtol:g}\n{CRITERION}")
    rows, failed = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradcheckWarning)  # said once, in the line above
        for c in cases:
            try:
                report = c.check(dtype, order=args.order, fast=args.fast)
            except Exception as error:  # an op that raises fails its case; the others still run
                rows.append((c.op, c.label, c.shapes, str(dtype), "-", "-", "ERROR"))
                failed.append((c, f"raised {type(error).__name__}: {_first_line(error)}"))
                continue
            rows.append((c.op, c.label, c.shapes, str(dtype), f"{report.max_abs_err:.1e}",
                         f"{report.max_rel_err:.1e}", "ok" if report.ok else "FAIL"))
            if not report.ok:
                failed.append((c, report.failure_message()))
    print(format_table(("op", "case", "shapes", "dtype", "max abs", "max rel", "ok"), rows))
    for c, message in failed:
        print(f"\n{c.id}:\n{message}")
    print(f"\n{len(cases) - len(failed)} of {len(cases)} cases passed")
    return 1 if failed else 0


def _sweep(case, path):
    """Errors of the case's central differences over the steps, in float64 and float32."""
    results = {str(np.dtype(d)): sweep.step_sweep(case.fn, case.inputs, dtype=d)
               for d in (np.float64, np.float32)}
    print(f"step sweep of {case.id}, inputs {case.shapes}: max |numeric - analytic| over its "
          "elements; analytic in float64, differences in the dtype of the column")
    rows = [(f"{eps:.1e}", *(f"{curve[k][1]:.2e}" for curve in results.values()))
            for k, (eps, _) in enumerate(results["float64"])]
    print(format_table(("eps", *results), rows))
    for name, curve in results.items():
        eps, err = min(curve, key=lambda pair: pair[1])
        print(f"{name}: smallest error {err:.2e} at eps {eps:.1e}")
    print(f"wrote {sweep.plot_sweep(results, path, title=f'central differences of {case.id}')}")
    return 0


def _first_line(error, limit=300):
    line = (str(error).splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit] + "..."


if __name__ == "__main__":
    sys.exit(main())
