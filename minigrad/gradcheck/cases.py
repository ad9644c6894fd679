"""Sample inputs for every op in ``minigrad.ops.__all__``
(``NODES``): the per-op finite-difference suite.

``case(op, label, fn, **inputs)`` registers fn of named float64 inputs in ``CASES`` (an input
wrapped in ``Constant`` is passed to fn but not differentiated);
``tests/test_gradcheck_cases.py`` and ``python -m minigrad.gradcheck`` check every one.  Inputs
come from one Generator with a fixed seed.  They keep clear of kinks (relu at 0, ties in max,
x <= 0 for log, sqrt and pow's tensor exponent): a central difference across a kink measures the
mean of two one-sided slopes, not the subgradient the engine chose.  Seeds and offsets of
stochastic nodes are fixed inside fn, so the node is an ordinary function of its inputs.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

import minigrad as mg
from minigrad.gradcheck.core import gradcheck
from minigrad.gradcheck.second_order import gradgradcheck
from minigrad.tensor import Tensor
from minigrad.text_table import format_shape

CASES = []
NODES = tuple(mg.ops.__all__)  # every differentiable node minigrad has
_rng = np.random.default_rng(0)


@dataclass(frozen=True)
class Case:
    """One op applied to one set of inputs."""
    op: str                     # the op's name in minigrad.ops.__all__
    label: str                  # what the case exercises
    fn: Callable                # takes the inputs, returns a Tensor
    inputs: tuple               # named float64 Tensors; constants have requires_grad=False

    @property
    def id(self):
        return f"{self.op}[{self.label}]"

    @property
    def shapes(self):
        """Input shapes, a constant's marked with a "c": "(2,3) c(3,)"."""
        return " ".join(("" if t.requires_grad else "c") + format_shape(t.shape)
                        for t in self.inputs)

    def check(self, dtype=np.float64, order=1, **options):
        """gradcheck (``order`` 1) or gradgradcheck (2) of fn on copies of the inputs (constants
        too) in ``dtype``; options go to the check."""
        inputs = [Tensor(t.data.astype(dtype), requires_grad=t.requires_grad, name=t.name)
                  for t in self.inputs]
        return self.check_inputs(inputs, order, **options)

    def check_inputs(self, inputs, order=1, **options):
        """The check of fn on ``inputs``: the case's own, cast or moved to a device."""
        check = {1: gradcheck, 2: gradgradcheck}[order]
        return check(self.fn, inputs, **options)


@dataclass(frozen=True)
class Constant:
    """A case input that fn receives but that is not differentiated."""
    value: object


def case(op, label, fn, /, **inputs):
    """Register ``fn(*inputs.values())`` as a case of ``op``; keyword names name the inputs."""
    tensors = tuple(Tensor(np.asarray(getattr(value, "value", value), dtype=np.float64),
                           requires_grad=not isinstance(value, Constant), name=name)
                    for name, value in inputs.items())
    CASES.append(Case(op, label, fn, tensors))


def normal(*shape):
    return _rng.standard_normal(shape)


def uniform(low, high, *shape):
    return _rng.uniform(low, high, shape)


def away_from_zero(*shape, low=0.5, high=2.0):
    """|x| in [low, high] with random signs: clear of poles and kinks at 0."""
    return _rng.choice([-1.0, 1.0], shape) * _rng.uniform(low, high, shape)


def distinct(*shape, gap=0.25):
    """Shuffled values at least ``gap`` apart, so max has no ties within eps."""
    size = math.prod(shape)
    values = (_rng.permutation(size) - size / 2) * gap + _rng.uniform(0, gap / 4, size)
    return values.reshape(shape)


# --- arithmetic: the broadcasting battery ---------------------------------------------------------
BROADCASTS = [  # (label, shape of x, shape of y)
    ("scalar", (), ()),
    ("vector", (3,), (3,)),
    ("matrix", (2, 3), (2, 3)),
    ("stretch x axis 0", (1, 3), (2, 3)),
    ("stretch y axis 0", (2, 3), (1, 3)),
    ("outer (2,1) (1,3)", (2, 1), (1, 3)),
    ("scalar and matrix", (), (2, 3)),
    ("vector and matrix", (3,), (2, 3)),
]
for name, op in [("add", mg.add), ("sub", mg.sub), ("mul", mg.mul), ("div", mg.div)]:
    denominator = away_from_zero if name == "div" else normal
    for label, x_shape, y_shape in BROADCASTS:
        case(name, label, op, x=normal(*x_shape), y=denominator(*y_shape))
    case(name, "python float right", lambda x, op=op: op(x, 2.5), x=normal(2, 3))
    case(name, "python float left", lambda y, op=op: op(2.5, y), y=denominator(2, 3))

# one operand a constant: the VJP skips the gradient it does not need
case("mul", "constant y", mg.mul, x=normal(1, 3), y=Constant(normal(2, 3)))
case("div", "constant x", mg.div, x=Constant(normal(2, 3)), y=away_from_zero(2, 1))
case("div", "constant y", mg.div, x=normal(2, 3), y=Constant(away_from_zero(3)))

case("neg", "scalar", mg.neg, x=normal())
case("neg", "matrix", mg.neg, x=normal(2, 3))

case("pow", "square", lambda x: mg.pow(x, 2), x=normal(2, 3))
case("pow", "cube of negatives", lambda x: mg.pow(x, 3), x=-uniform(0.5, 2, 2, 3))
case("pow", "x ** 2.5", lambda x: mg.pow(x, 2.5), x=uniform(0.5, 2, 2, 3))
case("pow", "x ** -1.5", lambda x: mg.pow(x, -1.5), x=uniform(0.5, 2, 3))
case("pow", "x ** 0", lambda x: mg.pow(x, 0), x=away_from_zero(3))
case("pow", "tensor p", mg.pow, x=uniform(0.5, 2, 2, 3), p=normal(2, 3))
case("pow", "tensor p, outer", mg.pow, x=uniform(0.5, 2, 2, 1), p=normal(1, 3))
case("pow", "0-d tensor p", mg.pow, x=uniform(0.5, 2, 2, 3), p=normal())
case("pow", "python float base", lambda p: mg.pow(2.0, p), p=normal(2, 3))
case("pow", "constant tensor p", mg.pow, x=uniform(0.5, 2, 2, 3), p=Constant(normal(3)))
case("pow", "constant base", mg.pow, x=Constant(uniform(0.5, 2, 3)), p=normal(2, 3))

# --- linear algebra -------------------------------------------------------------------------------
MATMULS = [
    ("vector . vector", (3,), (3,)),
    ("vector . matrix", (3,), (3, 4)),
    ("matrix . vector", (2, 3), (3,)),
    ("matrix . matrix", (2, 3), (3, 4)),
    ("batched", (2, 2, 3), (2, 3, 4)),
    ("broadcast batch dims", (2, 1, 2, 3), (3, 3, 4)),
    ("batched . matrix", (2, 2, 3), (3, 4)),
    ("vector . batched", (3,), (2, 3, 4)),
    ("batched . vector", (2, 2, 3), (3,)),
]
for label, x_shape, y_shape in MATMULS:
    case("matmul", label, mg.matmul, x=normal(*x_shape), y=normal(*y_shape))
case("matmul", "constant y", mg.matmul, x=normal(2, 2, 3), y=Constant(normal(3, 4)))
case("matmul", "constant x", mg.matmul, x=Constant(normal(2, 3)), y=normal(2, 3, 4))

case("linear", "with bias", mg.linear, x=normal(4, 3), weight=normal(3, 2), bias=normal(2))
case("linear", "without bias", mg.linear, x=normal(4, 3), weight=normal(3, 2))
case("linear", "constant weight", mg.linear, x=normal(4, 3), weight=Constant(normal(3, 2)),
     bias=normal(2))
case("linear", "batch of one", mg.linear, x=normal(1, 3), weight=normal(3, 5), bias=normal(5))

# --- reductions -----------------------------------------------------------------------------------
AXES = [  # (label, axis, keepdims)
    ("all", None, False),
    ("all keepdims", None, True),
    ("axis 0", 0, False),
    ("axis -1", -1, False),
    ("axes (0,2)", (0, 2), False),
    ("axis 1 keepdims", 1, True),
]
for name, op in [("sum", mg.sum), ("mean", mg.mean)]:
    for label, axis, keepdims in AXES:
        case(name, label, lambda x, op=op, a=axis, k=keepdims: op(x, a, k), x=normal(2, 3, 4))
    case(name, "scalar", op, x=normal())
for label, axis, keepdims in AXES:
    case("max", label, lambda x, a=axis, k=keepdims: mg.max(x, a, k), x=distinct(2, 3, 4))
case("max", "vector", mg.max, x=distinct(5))

case("logsumexp", "all", mg.logsumexp, x=normal(2, 3))
case("logsumexp", "axis -1", lambda x: mg.logsumexp(x, -1), x=normal(2, 3))
case("logsumexp", "axes (0,1) keepdims", lambda x: mg.logsumexp(x, (0, 1), True), x=normal(2, 3, 2))
case("logsumexp", "near 1000", lambda x: mg.logsumexp(x, -1), x=1000 + normal(2, 3))
case("logsumexp", "1000 and -1000", lambda x: mg.logsumexp(x, -1),
     x=np.array([[1000.0, 999.5, -1000.0], [-1000.0, 0.0, 1.0]]))

case("log_softmax", "axis -1", mg.log_softmax, x=normal(2, 3))
case("log_softmax", "axis 0", lambda x: mg.log_softmax(x, 0), x=normal(2, 3))
case("log_softmax", "3-d axis 1", lambda x: mg.log_softmax(x, 1), x=normal(2, 3, 2))
case("log_softmax", "near 1000", mg.log_softmax, x=1000 + normal(2, 3))
case("log_softmax", "axes (0,1)", lambda x: mg.log_softmax(x, (0, 1)), x=normal(2, 3, 2))

# --- elementwise functions ------------------------------------------------------------------------
case("exp", "matrix", mg.exp, x=normal(2, 3))
case("exp", "up to e^10", mg.exp, x=uniform(5, 10, 3))
case("exp", "scalar", mg.exp, x=normal())
case("expm1", "matrix", mg.expm1, x=normal(2, 3))
case("expm1", "near zero", mg.expm1, x=uniform(-1e-3, 1e-3, 3))
case("log", "matrix", mg.log, x=uniform(0.5, 3, 2, 3))
case("log", "near zero", mg.log, x=uniform(0.01, 0.1, 3))
case("log", "large", mg.log, x=uniform(1e3, 1e4, 3))
case("sqrt", "matrix", mg.sqrt, x=uniform(0.5, 3, 2, 3))
case("sqrt", "near zero", mg.sqrt, x=uniform(0.01, 0.1, 3))
case("sqrt", "large", mg.sqrt, x=uniform(1e3, 1e4, 3))
case("tanh", "matrix", mg.tanh, x=normal(2, 3))
case("tanh", "saturated +-5, +-10", mg.tanh, x=np.array([-10.0, -5.0, 5.0, 10.0]) + normal(4) / 10)
case("sigmoid", "matrix", mg.sigmoid, x=normal(2, 3))
case("sigmoid", "saturated +-20, +-30", mg.sigmoid, x=np.array([-30.0, -20.0, 20.0, 30.0]))
case("relu", "away from the kink", mg.relu, x=away_from_zero(2, 3, low=0.1))
case("relu", "positive scalar", mg.relu, x=uniform(0.5, 2))
case("relu", "negative scalar", mg.relu, x=-uniform(0.5, 2))
case("softplus", "matrix", mg.softplus, x=normal(2, 3))
case("softplus", "saturated +-30", mg.softplus, x=np.array([-30.0, -20.0, 20.0, 30.0]))

# --- shape and selection --------------------------------------------------------------------------
case("reshape", "matrix to matrix", lambda x: mg.reshape(x, (3, 2)), x=normal(2, 3))
case("reshape", "flatten", lambda x: mg.reshape(x, (6,)), x=normal(2, 3))
case("reshape", "inferred -1", lambda x: mg.reshape(x, (4, -1)), x=normal(2, 3, 4))
case("reshape", "scalar to (1,1)", lambda x: mg.reshape(x, (1, 1)), x=normal())
case("reshape", "vector to 3-d", lambda x: mg.reshape(x, (2, 1, 3)), x=normal(6))

case("transpose", "matrix", mg.transpose, x=normal(2, 3))
case("transpose", "3-d reversed", mg.transpose, x=normal(2, 3, 4))
case("transpose", "axes (1,0,2)", lambda x: mg.transpose(x, (1, 0, 2)), x=normal(2, 3, 4))
case("transpose", "negative axes", lambda x: mg.transpose(x, (-1, 0, 1)), x=normal(2, 3, 4))
case("transpose", "vector", mg.transpose, x=normal(3))

GETITEMS = [  # (label, index into a (3, 4) x)
    ("int", 1),
    ("negative int", -1),
    ("slices with step", (slice(1, None), slice(None, None, 2))),
    ("reversed rows", slice(None, None, -1)),
    ("ellipsis and newaxis", (Ellipsis, None, -2)),
    ("repeated int array", [0, 2, 0, 0]),
    ("repeated index pairs", ([0, 1, 1, 0], [2, 0, 0, 2])),
    ("negative int array", np.array([-1, 0, -1])),
    ("slice and int array", (slice(None), [3, 0, 3])),
    ("boolean mask", np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)),
    ("boolean rows", np.array([True, False, True])),
    ("tensor index", Tensor(np.array([1, 1, 2]))),
]
for label, index in GETITEMS:
    case("getitem", label, lambda x, i=index: mg.getitem(x, i), x=normal(3, 4))
case("getitem", "element of a vector", lambda x: mg.getitem(x, 2), x=normal(4))
case("scatter_add", "slice into zeros", lambda v: mg.scatter_add(v, (3, 4), (slice(1, 3),)),
     v=normal(2, 4))
case("scatter_add", "repeated rows add up",
     lambda v: mg.scatter_add(v, (3, 4), (np.array([0, 2, 0]),)), v=normal(3, 4))
case("broadcast_to", "row to matrix", lambda x: mg.broadcast_to(x, (2, 3)), x=normal(3))
case("broadcast_to", "(2,1) to (4,2,3)", lambda x: mg.broadcast_to(x, (4, 2, 3)), x=normal(2, 1))
case("broadcast_to", "scalar", lambda x: mg.broadcast_to(x, (2, 2)), x=normal())

case("concatenate", "axis 0", lambda a, b: mg.concatenate([a, b]), a=normal(2, 3), b=normal(1, 3))
case("concatenate", "axis 1", lambda a, b: mg.concatenate([a, b], 1),
     a=normal(2, 1), b=normal(2, 3))
case("concatenate", "three vectors", lambda a, b, c: mg.concatenate([a, b, c]),
     a=normal(2), b=normal(3), c=normal(1))
case("concatenate", "axis -1 of 3-d", lambda a, b: mg.concatenate([a, b], -1),
     a=normal(2, 2, 1), b=normal(2, 2, 3))
case("concatenate", "with a constant", lambda a, b: mg.concatenate([a, b], 1),
     a=Constant(normal(2, 2)), b=normal(2, 3))
case("concatenate", "one tensor", lambda a: mg.concatenate([a]), a=normal(2, 3))

case("stack", "axis 0", lambda a, b: mg.stack([a, b]), a=normal(2, 3), b=normal(2, 3))
case("stack", "axis 1", lambda a, b: mg.stack([a, b], 1), a=normal(2, 3), b=normal(2, 3))
case("stack", "axis -1 of vectors", lambda a, b, c: mg.stack([a, b, c], -1),
     a=normal(3), b=normal(3), c=normal(3))
case("stack", "scalars", lambda a, b: mg.stack([a, b]), a=normal(), b=normal())

MASK = np.array([[True, False, True], [False, False, True]])
case("where", "same shape", lambda x, y: mg.where(MASK, x, y), x=normal(2, 3), y=normal(2, 3))
case("where", "outer (2,1) (1,3)", lambda x, y: mg.where(MASK, x, y),
     x=normal(2, 1), y=normal(1, 3))
case("where", "scalar x", lambda x, y: mg.where(MASK, x, y), x=normal(), y=normal(2, 3))
case("where", "python float y", lambda x: mg.where(MASK, x, 0.0), x=normal(2, 3))
case("where", "condition broadcasts", lambda x, y: mg.where(MASK[0], x, y), x=normal(2, 3),
     y=normal(2, 3))
case("where", "tensor condition", lambda x, y: mg.where(Tensor(MASK), x, y), x=normal(2, 3),
     y=normal(2, 3))

# --- losses and the stochastic node ---------------------------------------------------------------
for reduction in ("mean", "sum", "none"):
    case("binary_cross_entropy_with_logits", f"reduction {reduction}",
         lambda logits, targets, r=reduction:
             mg.binary_cross_entropy_with_logits(logits, targets, r),
         logits=normal(2, 3), targets=uniform(0, 1, 2, 3))
case("binary_cross_entropy_with_logits", "logits +-35, +-40",
     lambda logits, targets: mg.binary_cross_entropy_with_logits(logits, targets, "sum"),
     logits=np.array([[-40.0, 40.0, -35.0], [35.0, 0.5, -0.5]]), targets=uniform(0, 1, 2, 3))
case("binary_cross_entropy_with_logits", "constant targets", mg.binary_cross_entropy_with_logits,
     logits=normal(2, 3), targets=Constant(uniform(0, 1, 2, 3)))
case("binary_cross_entropy_with_logits", "hard targets",
     mg.binary_cross_entropy_with_logits, logits=normal(4), targets=np.array([0.0, 1.0, 1.0, 0.0]))
case("binary_cross_entropy_with_logits", "scalar",
     lambda logits, targets: mg.binary_cross_entropy_with_logits(logits, targets, "none"),
     logits=normal(), targets=uniform(0, 1))

for reduction in ("mean", "sum", "none"):
    case("mse_loss", f"reduction {reduction}",
         lambda prediction, target, r=reduction: mg.mse_loss(prediction, target, r),
         prediction=normal(2, 3), target=normal(2, 3))
case("mse_loss", "scalar", mg.mse_loss, prediction=normal(), target=normal())
case("mse_loss", "constant target", mg.mse_loss, prediction=normal(3), target=Constant(normal(3)))

for reduction in ("sum", "mean", "none"):
    case("gaussian_kl", f"reduction {reduction}",
         lambda mu, logvar, r=reduction: mg.gaussian_kl(mu, logvar, r),
         mu=normal(2, 3), logvar=normal(2, 3))
case("gaussian_kl", "logvar in [-5, 5]", mg.gaussian_kl, mu=normal(4), logvar=uniform(-5, 5, 4))
case("gaussian_kl", "constant mu", mg.gaussian_kl, mu=Constant(normal(3)), logvar=normal(3))

REPARAMETERIZATIONS = [  # (label, shape, seed, offset): no offset is a multiple of 4
    ("offset 3", (2, 3), 1234, 3),
    ("vector, offset 7", (5,), 2**40 + 1, 7),
    ("scalar, offset 1", (), 0, 1),
    ("offset 2^34 - 6", (3, 4), 99, 2**34 - 6),  # crosses block 2^32,
]
for label, shape, seed, offset in REPARAMETERIZATIONS:
    case("reparameterize", label,
         lambda mu, logvar, s=seed, o=offset: mg.reparameterize(mu, logvar, seed=s, offset=o),
         mu=normal(*shape), logvar=normal(*shape))
case("reparameterize", "saved noise",
     lambda mu, logvar: mg.reparameterize(mu, logvar, seed=3, offset=9, save_noise=True),
     mu=normal(2, 3), logvar=normal(2, 3))
case("reparameterize", "constant mu",
     lambda mu, logvar: mg.reparameterize(mu, logvar, seed=7, offset=5),
     mu=Constant(normal(2, 3)), logvar=normal(2, 3))


def kl_loss(mu, logvar, cotangent, kl_weight, **position):
    """<c, z> + kl_weight * kl, a VAE's loss in miniature: both of reparameterize_kl's outputs
    get a gradient, so its backward runs the fused pass."""
    z, kl = mg.reparameterize_kl(mu, logvar, **position)
    return mg.sum(mg.mul(z, cotangent)) + kl_weight * kl


def squared_kl_loss(mu, logvar, cotangent, kl_weight, **position):
    """<c, z^2> + kl_weight * kl: nonlinear in z, so that a second-order pass reaches z from the
    first pass's gradient (where a KL term added per pass through z would show)."""
    z, kl = mg.reparameterize_kl(mu, logvar, **position)
    return mg.sum(z * z * cotangent) + kl_weight * kl


KL_REPARAMETERIZATIONS = [  # (label, shape, kl_weight, seed, offset, save_noise)
    ("kl_weight 0.25", (2, 3), 0.25, 1234, 3, False),
    ("kl_weight 0", (5,), 0.0, 2**40 + 1, 7, False),
    ("saved noise, 1/128", (3, 4), 1 / 128, 99, 2**34 - 6, True),
]
for label, shape, weight, seed, offset, save_noise in KL_REPARAMETERIZATIONS:
    case("reparameterize_kl", label,
         lambda mu, logvar, c, w=weight, s=seed, o=offset, n=save_noise:
             kl_loss(mu, logvar, c, w, seed=s, offset=o, save_noise=n),
         mu=normal(*shape), logvar=normal(*shape), c=Constant(normal(*shape)))
case("reparameterize_kl", "nonlinear in z",
     lambda mu, logvar, c: squared_kl_loss(mu, logvar, c, 0.5, seed=5, offset=3),
     mu=normal(2, 3), logvar=normal(2, 3), c=Constant(normal(2, 3)))
case("reparameterize_kl", "kl alone",
     lambda mu, logvar: mg.reparameterize_kl(mu, logvar, seed=5, offset=3)[1] * 0.5,
     mu=normal(2, 3), logvar=normal(2, 3))
case("reparameterize", "nonlinear in z",
     lambda mu, logvar: mg.tanh(mg.reparameterize(mu, logvar, seed=2, offset=6)),
     mu=normal(2, 3), logvar=normal(2, 3))

for family, (seed, offset) in zip(mg.ops.families.FAMILIES, [(5, 0), (6, 11), (2**33, 3), (9, 2)]):
    case("reparameterize_family", family,
         lambda loc, log_scale, f=family, s=seed, o=offset:
             mg.reparameterize_family(loc, log_scale, f, seed=s, offset=o),
         loc=normal(2, 3), log_scale=uniform(-1.0, 1.0, 2, 3))
    case("reparameterize_family", f"{family}, nonlinear in z",
         lambda loc, log_scale, f=family, s=seed, o=offset:
             mg.reparameterize_family(loc, log_scale, f, seed=s, offset=o) ** 2,
         loc=normal(2, 3), log_scale=uniform(-1.0, 1.0, 2, 3))

case("clone", "matrix", mg.clone, x=normal(2, 3))
