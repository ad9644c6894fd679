"""gradgradcheck: second derivatives against finite differences of the first.

For y = fn(x_0, x_1, ...) and a cotangent v of y's shape, the first-order VJP

    F(x, v) = (v^T dy/dx_i for each differentiated x_i, flattened and joined)

is a function like any other: ``gradgradcheck`` runs ``gradcheck`` on F, whose analytic gradient
is the engine's second order (a backward pass through the graph that ``grad(...,
create_graph=True)`` recorded) and whose numeric gradient is central differences of the
engine's first order.  v is differentiated too (F is linear in v, so that checks the first order
once more), as PyTorch's gradgradcheck does.  The report is gradcheck's, element by element:
its output "y" is F's flattened result, its inputs are fn's followed by "grad_output".
"""
import dataclasses

import numpy as np

from minigrad.autograd import grad
from minigrad.backend import namespace
from minigrad.grad_mode import enable_grad
from minigrad.gradcheck.core import GradcheckError, gradcheck
from minigrad.ops.shape import concatenate
from minigrad.tensor import Tensor


def gradgradcheck(fn, inputs, grad_outputs=None, eps=None, atol=None, rtol=None, fast=False,
                  num_directions=4, raise_on_failure=False, seed=0):
    """Check the second derivatives of ``fn(*inputs)`` by finite differences of its first.

    inputs: as for gradcheck (float Tensors with requires_grad=True and float arrays are
        differentiated; other Tensors are constants).
    grad_outputs: the cotangent v of fn's output (an array or Tensor of its shape); by default a
        random normal one drawn from ``seed``.  It is differentiated as well.
    The other options are gradcheck's.  Returns gradcheck's GradcheckReport.
    """
    values = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    differentiated = [i for i, x in enumerate(values) if _differentiated(x)]
    if not differentiated:
        raise ValueError("gradgradcheck: no input to differentiate; pass float Tensors with "
                         "requires_grad=True, or float arrays")
    output = fn(*[_leaf(x) if i in differentiated else x for i, x in enumerate(values)])
    if not isinstance(output, Tensor):
        raise TypeError(f"gradgradcheck: fn returned {type(output).__name__}; it must return a "
                        "minigrad Tensor")
    v = _cotangent(grad_outputs, output, seed)

    def first_order(*args):
        """F(x, v): the VJP of fn at x for the cotangent v, as one flat Tensor."""
        *xs, cotangent = args
        with enable_grad():
            leaves = [_leaf(x) if i in differentiated else x for i, x in enumerate(xs)]
            y = fn(*leaves)
            wanted = [leaves[i] for i in differentiated]
            grads = ([None] * len(wanted) if not y.requires_grad else
                     grad(y, wanted, cotangent, create_graph=True, allow_unused=True))
            parts = [(g if g is not None else _zeros(x)).reshape((x.size,))
                     for g, x in zip(grads, wanted)]
            return concatenate(parts) if len(parts) > 1 else parts[0]

    report = gradcheck(first_order, [*values, v], eps=eps, atol=atol, rtol=rtol, fast=fast,
                       num_directions=num_directions, seed=seed)
    report = dataclasses.replace(report, check="gradgradcheck", derivative="second derivative",
                                 function="grad_output^T d fn / d inputs (flattened)")
    if raise_on_failure and not report.ok:
        raise GradcheckError(report.failure_message(), report)
    return report


def _differentiated(x):
    """Whether gradcheck differentiates input x: a float Tensor that requires grad, or a float
    array (gradcheck's own checks refuse what is neither)."""
    if isinstance(x, Tensor):
        return x.requires_grad
    return np.asarray(x).dtype.kind == "f"


def _leaf(x):
    """x as a tensor to differentiate: itself if it requires grad (gradcheck's leaves, so that
    the second order flows back to them), else a new leaf holding its values."""
    if isinstance(x, Tensor) and x.requires_grad:
        return x
    return Tensor(x.data if isinstance(x, Tensor) else np.asarray(x), requires_grad=True)


def _cotangent(grad_outputs, output, seed):
    """v as a float64 Tensor that requires grad, named "grad_output"."""
    if grad_outputs is None:
        v = np.random.default_rng(seed).standard_normal(output.shape)
    else:
        v = np.asarray(grad_outputs.numpy() if isinstance(grad_outputs, Tensor) else grad_outputs,
                       dtype=np.float64)
        if v.shape != output.shape:
            raise ValueError(f"gradgradcheck: grad_outputs has shape {v.shape}, fn's output has "
                             f"shape {output.shape}")
    return Tensor(v.astype(output.dtype), requires_grad=True, name="grad_output")


def _zeros(x):
    return Tensor(namespace(x.data).zeros(x.shape, dtype=x.dtype))
