"""What gradcheck found: one InputResult per differentiated input, gathered in a GradcheckReport
that prints as a table and, on failure, as a message naming output, input, element, analytic and
numeric values, errors and tolerance."""
from dataclasses import dataclass

import numpy as np

from minigrad.text_table import format_shape, format_table


CRITERION = ("central differences in float64; a value is ok when "
             "|analytic - numeric| <= atol + rtol * |numeric|")


@dataclass
class InputResult:
    """How one differentiated input fared.

    The worst element is the one furthest past its tolerance (or, when all pass, closest to it);
    ``analytic``, ``numeric`` and ``tolerance`` are its values.  ``max_rel_err`` floors |numeric|
    at atol, so that an exactly zero gradient has a finite relative error.
    """
    index: int                  # position among fn's arguments
    name: str                   # the Tensor's name, else "arg{index}"
    shape: tuple
    dtype: np.dtype             # the input's own dtype, in which the analytic gradient was computed
    eps: float                  # the step, and the tolerances this input was checked with
    atol: float
    rtol: float
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple | None   # element of the input; None when only directions were compared
    direction: int | None       # which random direction (from 1) was worst, when only those were
    output: str                 # what was compared there: "v·y" or "y[1, 0]"
    analytic: float
    numeric: float
    abs_err: float              # |analytic - numeric| at the worst element
    rel_err: float              # abs_err / max(|numeric|, atol) there
    tolerance: float            # atol + rtol * |numeric| there (atol scaled, for directions)
    ok: bool
    method: str                 # "elementwise", "4 directions" or "elementwise after 4 directions"

    @property
    def where(self):
        """The worst element as text: "(1, 2)", "direction 3" when only directions were compared,
        "-" for an input without elements."""
        if self.worst_index is not None:
            return str(self.worst_index)
        return "-" if self.direction is None else f"direction {self.direction}"


@dataclass
class GradcheckReport:
    """The verdict of one ``gradcheck`` call; true when every input passed."""
    inputs: list                # InputResult per differentiated input, in argument order
    output_shape: tuple
    output_dtype: np.dtype
    projection: str             # how the output was reduced to numbers, in words
    check: str = "gradcheck"    # which check made it, and what y is: gradgradcheck relabels both
    function: str = "fn(...)"
    derivative: str = "gradient"

    @property
    def ok(self):
        return all(result.ok for result in self.inputs)

    def __bool__(self):
        return self.ok

    @property
    def failures(self):
        return [result for result in self.inputs if not result.ok]

    @property
    def max_abs_err(self):
        return max((r.max_abs_err for r in self.inputs), default=0.0)

    @property
    def max_rel_err(self):
        return max((r.max_rel_err for r in self.inputs), default=0.0)

    @property
    def settings(self):
        """The step and tolerances in words: one set when every input shares it, else one per
        input dtype (each input is checked with its own dtype's)."""
        texts = {str(r.dtype): f"eps {r.eps:g}, atol {r.atol:g}, rtol {r.rtol:g}"
                 for r in self.inputs}
        if len(set(texts.values())) <= 1:
            return next(iter(texts.values()), "no input")
        return "; ".join(f"{dtype} inputs {text}" for dtype, text in texts.items())

    def failure_message(self):
        """One paragraph per failing input (empty when all pass)."""
        return "\n".join(self._failure(result) for result in self.failures)

    def _failure(self, r):
        where = ("along random directions" if r.worst_index is None
                 else f"at element {r.worst_index}")  # fast mode rechecks elements before failing
        return (
            f"{self.check}: the {self.derivative} of input {r.index} ({r.name!r}, shape {r.shape}, "
            f"{r.dtype}) is wrong {where}\n"
            f"  output:    {r.output}, where y = {self.function} has shape {self.output_shape}; "
            f"{self.projection}\n"
            f"  analytic:  {r.analytic:.6e}  (the engine's backward, in {r.dtype})\n"
            f"  numeric:   {r.numeric:.6e}  (central difference in float64, eps {r.eps:g})\n"
            f"  abs err {r.abs_err:.3e}, rel err {r.rel_err:.3e}; "
            f"tolerance {r.tolerance:.3e} = atol {r.atol:g} + rtol {r.rtol:g} * |numeric|"
            f"\n  checked:   {r.method}")

    def __str__(self):
        verdict = "passed" if self.ok else f"FAILED for {len(self.failures)} input(s)"
        header = (f"{self.check} {verdict}: {self.settings}\n"
                  f"y = {self.function} of shape {self.output_shape} ({self.output_dtype}), "
                  f"{self.projection}\n"
                  f"{CRITERION}")
        rows = [(r.index, r.name, format_shape(r.shape), str(r.dtype), f"{r.max_abs_err:.1e}",
                 f"{r.max_rel_err:.1e}", r.where, r.output, f"{r.analytic:.6e}", f"{r.numeric:.6e}",
                 "ok" if r.ok else "FAIL")
                for r in self.inputs]
        table = format_table(("arg", "name", "shape", "dtype", "max abs err", "max rel err",
                              "worst at", "output", "analytic", "numeric", "ok"), rows)
        return f"{header}\n{table}"
