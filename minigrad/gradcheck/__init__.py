"""Finite-difference checks of minigrad's gradients.

    >>> import minigrad as mg
    >>> from minigrad.gradcheck import gradcheck
    >>> x = mg.Tensor([0.5, 1.5, 2.5], requires_grad=True, name="x")
    >>> bool(gradcheck(lambda x: mg.tanh(x) * x, [x]))
    True

``gradcheck`` returns a GradcheckReport (or raises GradcheckError with ``raise_on_failure``);
``gradgradcheck`` checks second derivatives the same way; ``minigrad.gradcheck.cases`` registers
sample inputs for every op, checked by ``python -m minigrad.gradcheck [--order 2]``.
"""
from minigrad.gradcheck.core import (TOLERANCES, GradcheckError, GradcheckWarning, Tolerance,
                                     gradcheck)
from minigrad.gradcheck.report import GradcheckReport, InputResult
from minigrad.gradcheck.second_order import gradgradcheck

__all__ = ["gradcheck", "gradgradcheck", "GradcheckReport", "InputResult", "GradcheckError",
           "GradcheckWarning", "Tolerance", "TOLERANCES"]
