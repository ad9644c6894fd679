"""Finite-difference checks of minigrad's gradients.

    >>> import minigrad as mg
    >>> from minigrad.gradcheck import gradcheck
    >>> x = mg.Tensor([0.5, 1.5, 2.5], requires_grad=True, name="x")
    >>> bool(gradcheck(lambda x: mg.tanh(x) * x, [x]))
    True

``gradcheck`` returns a GradcheckReport (or raises GradcheckError with ``raise_on_failure``);
``minigrad.gradcheck.cases`` registers sample inputs for every op, checked by
``python -m minigrad.gradcheck``.
"""
from minigrad.gradcheck.core import (TOLERANCES, GradcheckError, GradcheckWarning, Tolerance,
                                     gradcheck)
from minigrad.gradcheck.report import GradcheckReport, InputResult

__all__ = ["gradcheck", "GradcheckReport", "InputResult", "GradcheckError", "GradcheckWarning",
           "Tolerance", "TOLERANCES"]
