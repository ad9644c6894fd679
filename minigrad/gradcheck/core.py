"""gradcheck: the engine's gradients against central finite differences in float64.

For y = fn(x_0, x_1, ...) and each differentiated input x_i, one backward pass with the cotangent v
gives the engine's vector-Jacobian product, which is compared element by element with central
differences on float64 copies of the inputs:

    analytic_j = (v^T dy/dx_i)_j
    numeric_j  = v^T (y(x_i + eps e_j) - y(x_i - eps e_j)) / (2 eps)

An element passes when |analytic_j - numeric_j| <= atol + rtol |numeric_j|, with eps, atol and
rtol those of x_i's own dtype (TOLERANCES): a float32 input beside a float64 one loosens only its
own check.  v is a fixed random normal cotangent drawn from ``seed``, as HIPS autograd and JAX's
check_grads do; ``all_outputs=True`` takes every unit cotangent instead, i.e. the whole Jacobian.
A one-element y (a loss) gets a random v in +-[1.5, 2.5] in both modes: never 1, so that a VJP
which ignores its cotangent fails, and never near 0, where every error would hide under atol.

Fast mode compares directional derivatives along ``num_directions`` random unit vectors u per input,
v^T (y(x_i + eps u) - y(x_i - eps u)) / (2 eps) against <analytic, u>, with atol scaled by ||u||_1
(the most that elements each within atol can add up to): 2 k calls of fn per input instead of 2 per
element.  An input whose directions disagree is rechecked element by element, which decides its
verdict and names the worst element, as PyTorch's fast gradcheck does.

Before any difference is taken, fn is evaluated twice at the float64 inputs: finite differences
of a function that is not deterministic (fresh noise from a Stream or np.random on every call)
measure the noise, not the slope, so such an fn is refused with a ValueError that says so.
"""
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from minigrad.backend import is_float_dtype, to_device
from minigrad.grad_mode import no_grad
from minigrad.gradcheck.report import GradcheckReport, InputResult
from minigrad.tensor import Tensor


class GradcheckError(AssertionError):
    """A gradient disagrees with finite differences; ``report`` holds every input's result."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


class GradcheckWarning(UserWarning):
    """An input is less precise than float64, so the check is looser and less reliable."""


@dataclass(frozen=True)
class Tolerance:
    """The central-difference step and the pass criterion |a - n| <= atol + rtol |n|."""
    eps: float
    atol: float
    rtol: float


# NOTE: the differences always run in float64, where eps = 1e-6 balances truncation (~eps^2)
# against round-off (~1e-16 / eps).  A float32 or float16 input has its analytic gradient computed
# in its own dtype, so its atol and rtol absorb that round-off; its eps grows because values that
# fn makes in float32 itself (closed-over constants are never cast) add ~1e-7 / eps to the numeric
# side.  float32's 1e-3 is 3.4 times the worst error of every registered case in float32, first
# and second order (log near 0, where the step's truncation dominates): a VJP 0.5 % wrong fails.
TOLERANCES = {
    np.dtype(np.float64): Tolerance(eps=1e-6, atol=1e-5, rtol=1e-3),
    np.dtype(np.float32): Tolerance(eps=1e-3, atol=1e-3, rtol=1e-3),
    np.dtype(np.float16): Tolerance(eps=1e-2, atol=1e-1, rtol=1e-1),
}


@dataclass
class _Argument:
    """One argument of fn: its array, whether it is differentiated, and the value passed as is."""
    index: int
    name: str
    data: np.ndarray
    differentiate: bool
    value: object               # the Tensor given (passed unchanged when not differentiated)


def gradcheck(fn, inputs, eps=None, atol=None, rtol=None, fast=False, num_directions=4,
              raise_on_failure=False, seed=0, all_outputs=False, grad_outputs=None):
    """Check the gradients of ``fn(*inputs)`` (which must return a Tensor) by finite differences.

    inputs: a Tensor or NumPy array (or scalar), or a list or tuple of them.  Float Tensors with
        requires_grad=True and float arrays are differentiated; other Tensors are passed through
        as constants.
    eps, atol, rtol: default, per input, to TOLERANCES of that input's dtype; given, they apply
        to every input.
    fast: compare ``num_directions`` random directional derivatives per input (see the module).
    seed: picks the cotangent v and the directions; a fixed seed makes the check repeatable.
    all_outputs: compare every output element instead of the projection on v.
    grad_outputs: the cotangent v (an array or Tensor of the output's shape) instead of a random
        one.  A node whose backward is right only for one cotangent is checked at it:
        reparameterize_kl's z carries the KL's gradient for a loss that backward() starts from,
        so its loss is checked with v = 1.
    raise_on_failure: raise GradcheckError with the failure message instead of returning.

    Returns a GradcheckReport (true when every input passed).  Raises TypeError for inputs that
    are not Tensors or arrays, an integer array to differentiate or a non-Tensor result;
    ValueError for NaN or Inf in an input, eps <= 0, a negative or non-finite tolerance,
    grad_outputs of another shape than the output (or with all_outputs), or an fn that returns
    different values for the same inputs.
    """
    arguments = parse_arguments(inputs)
    checked = [a for a in arguments if a.differentiate]
    if not checked:
        raise ValueError("gradcheck: no input to differentiate; pass float Tensors with "
                         "requires_grad=True, or float arrays")
    if isinstance(num_directions, bool) or not isinstance(num_directions, int) \
            or num_directions < 1:
        raise ValueError(f"gradcheck: num_directions must be an int >= 1, got {num_directions!r}")
    tolerances = _tolerances(checked, eps, atol, rtol)
    rng = np.random.default_rng(seed)

    # fn runs on the device of the Tensors given (CuPy data is checked on the GPU); the finite
    # differences and the comparison run on host copies
    device = next((a.value.device for a in arguments if isinstance(a.value, Tensor)), "cpu")
    leaves = [Tensor(to_device(a.data.copy(), device), requires_grad=True, name=a.name)
              if a.differentiate else a.value for a in arguments]
    output = checked_output(fn(*leaves), "fn(*inputs)")
    cotangents, labels, projection = _cotangents(output, rng, all_outputs, seed, grad_outputs)
    analytic = vjp_rows(output, leaves, checked, cotangents)
    evaluate = evaluator(fn, arguments, output.shape, device)
    _check_deterministic(evaluate)

    results = []
    for a in checked:
        method = "elementwise"
        if fast:
            directions = _unit_directions(rng, num_directions, a.data.size)
            result = _check_directions(a, analytic[a.index], evaluate, directions, cotangents,
                                       labels, tolerances[a.index])
            if result.ok:
                results.append(result)
                continue
            method = f"elementwise after {num_directions} directions"  # it finds and decides
        results.append(_check_elements(a, analytic[a.index], evaluate, cotangents, labels,
                                       tolerances[a.index], method))

    report = GradcheckReport(results, output.shape, output.dtype, projection)
    if raise_on_failure and not report.ok:
        raise GradcheckError(report.failure_message(), report)
    return report


_INPUT_TYPES = (Tensor, np.ndarray, np.generic)  # an argument of fn: a Tensor, a NumPy array/scalar


def parse_arguments(inputs, caller="gradcheck"):
    """fn's arguments, checked: Tensors or arrays, float where differentiated, finite wherever
    float (errors name ``caller``)."""
    if isinstance(inputs, _INPUT_TYPES):
        inputs = (inputs,)
    elif not isinstance(inputs, (list, tuple)):
        raise TypeError(f"{caller}: inputs is {type(inputs).__name__}; expected a Tensor or a "
                        "list or tuple of Tensors (float NumPy arrays are differentiated too)")
    arguments = []
    for i, value in enumerate(inputs):
        if not isinstance(value, _INPUT_TYPES):
            raise TypeError(f"{caller}: inputs[{i}] is {type(value).__name__}; expected a "
                            "Tensor (or a float NumPy array or scalar)")
        if isinstance(value, Tensor):
            data, differentiate, name = np.asarray(value.numpy()), value.requires_grad, value.name
        else:
            data, differentiate, name = np.asarray(value), True, None
            if not is_float_dtype(data.dtype):
                raise TypeError(f"{caller}: argument {i} is {data.dtype}; finite differences "
                                "need a float array (pass a Tensor with requires_grad=False to "
                                "hold it constant)")
        name = name or f"arg{i}"
        if is_float_dtype(data.dtype) and not np.all(np.isfinite(data)):
            bad = tuple(int(k) for k in np.argwhere(~np.isfinite(data))[0])
            raise ValueError(f"{caller}: argument {i} ({name!r}) holds {data[bad]} at index "
                             f"{bad}; finite differences need finite inputs")
        arguments.append(_Argument(i, name, data, differentiate, value))
    return arguments


def _tolerances(checked, eps, atol, rtol):
    """{argument index: Tolerance}: the defaults of each input's own dtype, replaced by any
    setting given; a warning names the inputs below float64."""
    below = [a for a in checked if a.data.dtype != np.float64]
    if below:
        names = ", ".join(f"{a.index} ({a.name!r}) is {a.data.dtype}" for a in below)
        warnings.warn(f"gradcheck: argument {names}; such a gradient is checked with its "
                      "dtype's looser tolerances, and float64 inputs are the reliable setting",
                      GradcheckWarning, stacklevel=3)
    eps = None if eps is None else _setting("eps", eps, positive=True)
    atol = None if atol is None else _setting("atol", atol)
    rtol = None if rtol is None else _setting("rtol", rtol)
    tolerances = {}
    for a in checked:
        default = TOLERANCES[a.data.dtype]
        tolerances[a.index] = Tolerance(eps=default.eps if eps is None else eps,
                                        atol=default.atol if atol is None else atol,
                                        rtol=default.rtol if rtol is None else rtol)
    return tolerances


def _setting(name, value, positive=False):
    """An explicit eps (finite, > 0) or tolerance (finite, >= 0) as a float, else an error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"gradcheck: {name} is {type(value).__name__} {value!r}; expected a "
                        "real number")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"gradcheck: {name} is {value}; it must be finite and {bound}")
    return value


def checked_output(output, call):
    if not isinstance(output, Tensor):
        what = type(output).__module__ + "." + type(output).__qualname__
        if hasattr(output, "shape") and hasattr(output, "dtype"):
            what += f" of shape {tuple(output.shape)} and dtype {output.dtype}"
        raise TypeError(f"gradcheck: {call} returned {what}; it must return a minigrad Tensor "
                        "(built from minigrad ops, so that it has a gradient)")
    if not is_float_dtype(output.dtype):
        raise TypeError(f"gradcheck: {call} returned a Tensor of dtype {output.dtype}; "
                        "it must be a float Tensor")
    return output


def _cotangents(output, rng, all_outputs, seed, grad_outputs):
    """Rows v (float64, one per compared quantity) over the flattened output, their labels,
    and the projection in words."""
    size = output.size
    if grad_outputs is not None:
        if all_outputs:
            raise ValueError("gradcheck: grad_outputs and all_outputs=True exclude each other: "
                             "all_outputs takes every unit cotangent")
        v = np.asarray(to_device(grad_outputs.data, "cpu") if isinstance(grad_outputs, Tensor)
                       else grad_outputs, dtype=np.float64)
        if v.shape != output.shape or not np.all(np.isfinite(v)):
            raise ValueError(f"gradcheck: grad_outputs has shape {v.shape}, fn's output "
                             f"{output.shape}; it must have the output's shape and be finite")
        return v.reshape(1, -1), ["v·y"], "projected on the given cotangent v"
    if size == 1:  # NOTE: never 1 (a VJP ignoring g is then right) and never near 0 (see above)
        v = rng.choice((-1.0, 1.0)) * rng.uniform(1.5, 2.5)
        return np.full((1, 1), v), ["v·y"], f"a single element times v = {v:.4f} (seed {seed})"
    if all_outputs:
        labels = [f"y[{', '.join(map(str, np.unravel_index(k, output.shape)))}]"
                  for k in range(size)]
        return np.eye(size), labels, "every output element compared"
    projection = f"projected on a random cotangent v (seed {seed})"
    return rng.standard_normal((1, size)), ["v·y"], projection


def vjp_rows(output, leaves, checked, cotangents):
    """The engine's gradients: one backward pass per cotangent row; {index: (rows, size)}, in
    float64, for each argument in ``checked``."""
    rows = {a.index: np.zeros((len(cotangents), a.data.size)) for a in checked}
    if not output.requires_grad:  # fn ignored every differentiated input: all gradients are 0
        return rows
    for p, v in enumerate(cotangents):
        for a in checked:
            leaves[a.index].grad = None
        output.backward(to_device(v.reshape(output.shape).astype(output.dtype), output.device),
                        retain_graph=p + 1 < len(cotangents))
        for a in checked:
            grad = leaves[a.index].grad
            if grad is not None:
                rows[a.index][p] = np.asarray(to_device(grad, "cpu"), dtype=np.float64).reshape(-1)
    return rows


def evaluator(fn, arguments, output_shape, device="cpu", dtype=np.float64, caller="gradcheck"):
    """evaluate(i, x): fn with its float arguments in ``dtype`` and argument i replaced by x
    (none when i is None), flattened, as an array of ``dtype``; fn runs on ``device``, x and the
    result are host arrays.  fn must compute in ``dtype``: its differences are taken there."""
    dtype = np.dtype(dtype)
    base = [Tensor(to_device(a.data.astype(dtype), device)) if is_float_dtype(a.data.dtype)
            else a.value for a in arguments]

    def evaluate(index, x):
        values = [Tensor(to_device(x, device)) if k == index else value
                  for k, value in enumerate(base)]
        # NOTE: a step may leave fn's domain (sqrt just above 0); the NaN it gives fails the
        # comparison and is reported there, so NumPy's warning would only repeat it
        with no_grad(), np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            y = checked_output(fn(*values), f"fn(*inputs) in {dtype}")
        if y.shape != output_shape:
            raise ValueError(f"{caller}: fn returned shape {y.shape} on {dtype} inputs and "
                             f"{output_shape} on the inputs given; it must not depend on the dtype")
        if y.dtype != dtype:
            raise TypeError(f"{caller}: fn returned {y.dtype} on {dtype} inputs; the differences "
                            f"are taken in {dtype} arithmetic, so fn must compute in it")
        # NOTE: a copy, since y may be a view of x (reshape, getitem), which is perturbed in place
        return np.array(to_device(y.data, "cpu"), dtype=dtype).reshape(-1)
    return evaluate


def central_differences(evaluate, index, x, eps, cotangents):
    """cotangents @ (y(x + eps e_j) - y(x - eps e_j)) / (2 eps) for each element j of argument
    ``index`` at x, y = ``evaluate``'s fn: (rows, x.size), in the arithmetic of x's dtype (the
    cotangent rows should be of that dtype too)."""
    x = np.array(x)  # a fresh C-ordered copy, perturbed in place one element at a time
    flat = x.reshape(-1)
    step = x.dtype.type(eps)
    numeric = np.empty((len(cotangents), x.size), dtype=x.dtype)
    for j in range(x.size):
        centre = flat[j]
        flat[j] = centre + step
        plus = evaluate(index, x)
        flat[j] = centre - step
        minus = evaluate(index, x)
        flat[j] = centre
        numeric[:, j] = cotangents @ (plus - minus) / (2 * step)
    return numeric


def _check_deterministic(evaluate):
    """Raise unless fn gives the same values twice at the float64 inputs (NaN where NaN)."""
    first, second = evaluate(None, None), evaluate(None, None)
    if np.array_equal(first, second, equal_nan=True):
        return
    with np.errstate(invalid="ignore"):
        difference = np.abs(first - second)
    difference = np.where(np.isnan(first) == np.isnan(second), difference, np.inf)
    raise ValueError("gradcheck: fn returned different values for the same inputs (max "
                     f"difference {np.nanmax(difference):.3e}); finite differences need a "
                     "deterministic function: fix the seed/offset of any noise inside it")


def _unit_directions(rng, count, size):
    """count random directions of unit Euclidean norm, as rows."""
    directions = rng.standard_normal((count, size))
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    return directions / np.where(norms == 0, 1, norms)


def _check_elements(argument, analytic, evaluate, cotangents, labels, tolerance, method):
    """Central differences element by element; compare with the analytic rows."""
    x = argument.data.astype(np.float64)
    numeric = central_differences(evaluate, argument.index, x, tolerance.eps, cotangents)
    compared = _compare(analytic, numeric, tolerance.atol, tolerance.rtol)
    p, j = compared.worst
    worst_index = None
    if x.size:
        worst_index = tuple(int(k) for k in np.unravel_index(j, argument.data.shape))
    return compared.result(argument, tolerance, worst_index, None, labels[p], method)


def _check_directions(argument, analytic, evaluate, directions, cotangents, labels, tolerance):
    """Directional derivatives along each row of ``directions``; compare with <analytic, u>."""
    x = argument.data.astype(np.float64)
    eps = tolerance.eps
    numeric = np.empty((len(cotangents), len(directions)))
    for d, u in enumerate(directions):
        u = u.reshape(x.shape)
        plus, minus = evaluate(argument.index, x + eps * u), evaluate(argument.index, x - eps * u)
        numeric[:, d] = cotangents @ (plus - minus) / (2 * eps)
    atol = tolerance.atol * np.abs(directions).sum(axis=1)  # (directions,)
    compared = _compare(analytic @ directions.T, numeric, atol, tolerance.rtol)
    p, d = compared.worst
    return compared.result(argument, tolerance, None, d + 1, labels[p],
                           f"{len(directions)} directions")


@dataclass
class _Comparison:
    """analytic against numeric, (rows, columns) each, with the errors and tolerances."""
    analytic: np.ndarray
    numeric: np.ndarray
    abs_err: np.ndarray
    rel_err: np.ndarray
    tolerance: np.ndarray
    worst: tuple                # (row, column) furthest past (or closest to) its tolerance

    def result(self, argument, tolerance, worst_index, direction, output, method):
        p, j = self.worst
        empty = self.abs_err.size == 0
        return InputResult(
            index=argument.index, name=argument.name, shape=argument.data.shape,
            dtype=argument.data.dtype, eps=tolerance.eps, atol=tolerance.atol,
            rtol=tolerance.rtol,
            max_abs_err=0.0 if empty else float(self.abs_err.max()),
            max_rel_err=0.0 if empty else float(self.rel_err.max()),
            worst_index=worst_index, direction=direction, output=output,
            analytic=0.0 if empty else float(self.analytic[p, j]),
            numeric=0.0 if empty else float(self.numeric[p, j]),
            abs_err=0.0 if empty else float(self.abs_err[p, j]),
            rel_err=0.0 if empty else float(self.rel_err[p, j]),
            tolerance=0.0 if empty else float(self.tolerance[p, j]),
            ok=bool(np.all(self.abs_err <= self.tolerance)), method=method)


def _compare(analytic, numeric, atol, rtol):
    """|analytic - numeric| against atol + rtol |numeric|, elementwise; NaN on either side fails."""
    with np.errstate(invalid="ignore"):
        abs_err = np.abs(analytic - numeric)
    abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)
    magnitude = np.abs(np.nan_to_num(numeric, nan=0.0, posinf=0.0, neginf=0.0))
    tolerance = atol + rtol * magnitude
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(abs_err == 0, 0.0, abs_err / tolerance)
        rel_err = np.where(abs_err == 0, 0.0,
                           abs_err / np.maximum(magnitude, np.maximum(atol, np.finfo(float).tiny)))
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else (0, 0)
    return _Comparison(analytic, numeric, abs_err, rel_err,
                       np.broadcast_to(tolerance, abs_err.shape), tuple(int(k) for k in worst))
