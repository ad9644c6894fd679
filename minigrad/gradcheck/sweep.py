"""How the error of a central difference depends on its step, and where an input's error lies.

The central difference of f at x with step eps errs in two ways:

    (f(x + eps) - f(x - eps)) / (2 eps) - f'(x)  ~  f'''(x) eps^2 / 6   +   u |f(x)| / eps
                                                    truncation            round-off

where u is the unit round-off of the arithmetic (1.1e-16 in float64, 6e-8 in float32).  The sum
is smallest near eps ~ u^(1/3): about 1e-5 in float64 (error ~1e-11) and 1e-2..1e-3 in float32
(error ~1e-5).  ``step_sweep`` measures this V on a log-log plot (``plot_sweep``): the float32
curve evaluates fn and takes the differences in float32 arithmetic, the float64 one in float64.
Both are compared with the engine's gradient in float64 at the same (dtype-rounded) point, so
the curve shows the error of the difference alone.

``element_errors`` and ``error_map`` show |analytic - numeric| per element of one input, the
analytic gradient in the input's own dtype (as gradcheck computes it) and the numeric one in
float64 at gradcheck's step: a wrong VJP shows as a pattern (a row, a diagonal, one corner).

    python -m minigrad.gradcheck --sweep --op tanh --out sweep.png
"""
import os

import numpy as np

from minigrad.backend import is_float_dtype
from minigrad.gradcheck import core
from minigrad.gradcheck.core import TOLERANCES
from minigrad.tensor import Tensor

STEPS = np.logspace(-1, -12, 23)  # half a decade apart, from 1e-1 down to 1e-12
NEAR = 4                          # points each side of a curve's minimum that anchor its guides


def step_sweep(fn, inputs, steps=STEPS, dtype=np.float64, seed=0):
    """[(eps, max_abs_err)]: central differences at each step in ``dtype`` against the analytic
    gradient, worst element over every differentiated input.

    inputs: as for gradcheck (Tensors with requires_grad=True and float arrays are differentiated,
        other Tensors are constants); every float input is cast to ``dtype``.
    seed: draws the cotangent v; a non-scalar output y is compared as v . y.
    """
    dtype = np.dtype(dtype)
    if not is_float_dtype(dtype):
        raise TypeError(f"step_sweep: dtype {dtype} is not a float dtype")
    arguments, checked = _parsed("step_sweep", inputs)
    # the analytic side in float64 at the point rounded to dtype, so the curve shows the error
    # of the difference alone
    analytic, v, shape = _analytic(fn, arguments, checked, seed, dtype, leaf_dtype=dtype)
    evaluate = core.evaluator(fn, arguments, shape, dtype=dtype, caller="step_sweep")
    cotangent = v.astype(dtype)[None]
    results = []
    for eps in steps:
        worst = 0.0
        for a in checked:
            numeric = core.central_differences(evaluate, a.index, a.data.astype(dtype),
                                               float(eps), cotangent)[0]
            with np.errstate(invalid="ignore"):
                errors = np.abs(numeric.astype(np.float64) - analytic[a.index])
            worst = max(worst, float(np.nan_to_num(errors, nan=np.inf).max(initial=0.0)))
        results.append((float(eps), worst))
    return results


def element_errors(fn, inputs, input_index, eps=None, seed=0):
    """|analytic - numeric| for each element of input ``input_index`` (an array of its shape).

    analytic: the engine's gradient in the inputs' own dtypes; numeric: central differences in
    float64 with step ``eps`` (gradcheck's float64 step by default).
    """
    arguments, checked = _parsed("element_errors", inputs)
    if input_index not in [a.index for a in checked]:
        raise ValueError(f"element_errors: input {input_index} is not differentiated; "
                         f"differentiated inputs: {[a.index for a in checked]}")
    argument = arguments[input_index]
    eps = TOLERANCES[np.dtype(np.float64)].eps if eps is None else eps
    analytic, v, shape = _analytic(fn, arguments, [argument], seed, np.float64)
    evaluate = core.evaluator(fn, arguments, shape, caller="element_errors")
    numeric = core.central_differences(evaluate, input_index, argument.data.astype(np.float64),
                                       eps, v[None])[0]
    with np.errstate(invalid="ignore"):
        errors = np.abs(analytic[input_index] - numeric)
    return np.nan_to_num(errors, nan=np.inf).reshape(argument.data.shape)


def plot_sweep(results, path, title="central difference error against step size"):
    """Log-log plot of {label: [(eps, max_abs_err)]} (e.g. "float64", "float32"), with each
    curve's minimum marked and guides ~ eps^2 (truncation) and ~ 1/eps (round-off); returns path."""
    figure, ax = _figure((7, 4.8))
    for k, (label, curve) in enumerate(results.items()):
        eps, err = np.array(curve, dtype=np.float64).T
        shown = err > 0  # an exact zero has no place on a log axis
        color = f"C{k}"
        ax.loglog(eps[shown], err[shown], "o-", color=color, ms=3.5, label=label)
        best = int(np.argmin(np.where(shown, err, np.inf)))
        ax.plot(eps[best], err[best], "o", ms=10, mfc="none", mec=color)
        ax.annotate(f"min {err[best]:.1e}\nat eps {eps[best]:.0e}", (eps[best], err[best]),
                    textcoords="offset points", xytext=(0, -26), ha="center", fontsize=8,
                    color=color)
        # guides through the NEAR points on each side of the minimum (further out, round-off
        # saturates: a step below u |x| leaves x unchanged and the difference is 0)
        larger, smaller = _sides(eps, best)
        if larger.size:
            scale = np.median(err[larger[:NEAR]] / eps[larger[:NEAR]] ** 2)
            ax.loglog(eps[larger], scale * eps[larger] ** 2, ":", color=color, lw=1,
                      label="~ eps^2 (truncation)" if k == 0 else None)
        if smaller.size:
            scale = np.median(err[smaller[:NEAR]] * eps[smaller[:NEAR]])
            ax.loglog(eps[smaller], scale / eps[smaller], "--", color=color, lw=1,
                      label="~ 1/eps (round-off)" if k == 0 else None)
    errors = [e for curve in results.values() for _, e in curve if e > 0]
    ax.set_ylim(min(errors) / 30, max(errors) * 30)
    ax.set_xlabel("step eps")
    ax.set_ylabel("max |numeric - analytic|")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def error_map(fn, inputs, input_index, path, eps=None, seed=0):
    """Image of ``element_errors`` (log colour scale) for one input; returns path.

    A vector is drawn as one row; an input of more than 2 dimensions as (rows of the leading
    dimensions, last dimension)."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    errors = element_errors(fn, inputs, input_index, eps, seed)
    shape = errors.shape
    image = errors.reshape(1, -1) if errors.ndim < 2 else errors.reshape(-1, shape[-1])
    finite = image[np.isfinite(image) & (image > 0)]
    low, high = (finite.min(), finite.max()) if finite.size else (1e-17, 1e-16)
    figure, ax = _figure((max(4.0, min(12.0, 0.5 * image.shape[1] + 2)),
                          max(2.5, min(10.0, 0.5 * image.shape[0] + 1.5))))
    # NOTE: zeros are drawn at the floor of the scale, infinities at its top
    shown = np.clip(np.where(np.isfinite(image), image, high), low, high)
    picture = ax.imshow(shown, norm=LogNorm(vmin=low, vmax=max(high, low * 10)), cmap="magma",
                        interpolation="nearest", aspect="auto")
    figure.colorbar(picture, ax=ax, label="|analytic - numeric|")
    worst = np.unravel_index(int(np.argmax(errors)), shape) if errors.size else ()
    ax.set_title(f"input {input_index}, shape {shape}: max error {errors.max(initial=0):.2e} "
                 f"at {tuple(int(k) for k in worst)}", fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("column" if errors.ndim == 2 else "last axis")
    ax.set_ylabel({0: "", 1: "", 2: "row"}.get(errors.ndim, "leading axes, flattened"))
    return _save(figure, path)


def _sides(eps, best):
    """Indices of the steps larger and smaller than eps[best], each nearest first."""
    larger = np.flatnonzero(eps > eps[best])
    smaller = np.flatnonzero(eps < eps[best])
    return larger[np.argsort(eps[larger])], smaller[np.argsort(-eps[smaller])]


def _figure(size):
    """A Figure on the Agg canvas, with one Axes; no pyplot state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path):
    """Save ``figure`` to ``path`` (its folder created if missing); returns path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def _parsed(caller, inputs):
    """gradcheck's parsed arguments and the differentiated ones (at least one)."""
    arguments = core.parse_arguments(inputs, caller)
    checked = [a for a in arguments if a.differentiate]
    if not checked:
        raise ValueError(f"{caller}: no input is differentiated")
    return arguments, checked


def _analytic(fn, arguments, checked, seed, v_dtype, leaf_dtype=None):
    """({input index: flat float64 gradient of v . fn}, v, fn's output shape) from one backward
    pass, the differentiated inputs in their own dtype or rounded to ``leaf_dtype`` and then held
    in float64.  v is drawn in float64 and rounded to ``v_dtype``, so the differences can use it
    exactly."""
    def leaf(a):
        data = a.data if leaf_dtype is None else a.data.astype(leaf_dtype).astype(np.float64)
        return Tensor(data, requires_grad=True)
    leaves = [leaf(a) if a.differentiate else a.value for a in arguments]
    y = core.checked_output(fn(*leaves), "fn(*inputs)")
    rng = np.random.default_rng(seed)
    v = np.ones(y.shape) if y.size == 1 else rng.standard_normal(y.shape)
    v = v.astype(v_dtype).astype(np.float64)
    rows = core.vjp_rows(y, leaves, checked, v.reshape(1, -1))
    return {i: row[0] for i, row in rows.items()}, v.reshape(-1), y.shape
