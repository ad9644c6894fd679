"""Losses, each one node with its own backward: BCE with logits, mean squared error, and the
closed-form KL divergence of a diagonal Gaussian to the standard normal."""
from minigrad.backend import namespace
from minigrad.function import Function
from minigrad.ops.unary import Sigmoid, expm1
from minigrad.tensor import as_tensor

REDUCTIONS = ("mean", "sum", "none")


def _reduce(op, values, reduction):
    """Reduce elementwise losses; return them and the factor each element's gradient gets."""
    if reduction == "sum":
        return values.sum(), 1
    if reduction == "mean":
        return values.mean(), 1 / values.size if values.size else 0
    if reduction == "none":
        return values, 1
    raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _same_shape(op, a, b, names):
    if a.shape != b.shape:
        raise ValueError(f"{op}: {names[0]} has shape {a.shape}, {names[1]} has shape {b.shape}; "
                         "they must match")


class BinaryCrossEntropyWithLogits(Function):
    """l = -[t ln s(x) + (1 - t) ln(1 - s(x))] for logits x, targets t in [0, 1], s the sigmoid.

    Written l = max(x, 0) - x t + ln(1 + e^-|x|), exact and finite for any |x|.
    Backward: gx = g (s(x) - t), gt = -g x, with s(x) a sigmoid node of x valued from the
    forward's terms, e^{min(x, 0)} / (1 + e^-|x|), so that second derivatives flow through it.
    """
    name = "binary_cross_entropy_with_logits"

    @staticmethod
    def forward(ctx, x, t, *, reduction):
        xp = namespace(x)
        # NOTE: max(x, 0) = (x + |x|) / 2 and min(x, 0) = (x - |x|) / 2 exactly; branch-free,
        # since selects over random signs are slow on CPUs (mispredicted branches).
        magnitude = xp.abs(x)
        log_term = xp.log1p(xp.exp(-magnitude))                   # ln(1 + e^-|x|)
        values = (x + magnitude) * 0.5 - x * t + log_term
        loss, ctx.scale = _reduce(BinaryCrossEntropyWithLogits.name, values, reduction)
        sigmoid = xp.exp((x - magnitude) * 0.5 - log_term) if ctx.needs_input_grad[0] else None
        ctx.save_for_backward(x, t, sigmoid)
        return loss

    @staticmethod
    def backward(ctx, g):
        logits, targets, sigmoid = ctx.saved_tensors
        g = g * ctx.scale
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = g * (Sigmoid.apply(logits, value=sigmoid.data) - targets)
        if ctx.needs_input_grad[1]:
            gt = -g * logits
        return gx, gt


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """The BCE of ``targets`` under Bernoulli(sigmoid(logits)) (``BinaryCrossEntropyWithLogits``),
    summed, averaged (default) or per element ("none")."""
    logits = as_tensor(logits)
    targets = as_tensor(targets, like=logits)
    _same_shape("binary_cross_entropy_with_logits", logits, targets, ("logits", "targets"))
    return BinaryCrossEntropyWithLogits.apply(logits, targets, reduction=reduction)


class MSELoss(Function):
    """l = (p - t)^2.  Backward: gp = 2 g (p - t), gt = -2 g (p - t)."""
    name = "mse_loss"

    @staticmethod
    def forward(ctx, p, t, *, reduction):
        diff = p - t
        loss, ctx.scale = _reduce(MSELoss.name, diff * diff, reduction)
        ctx.save_for_backward(p, t)
        return loss

    @staticmethod
    def backward(ctx, g):
        prediction, target = ctx.saved_tensors
        gp = g * (2 * ctx.scale) * (prediction - target)
        return gp, -gp


def mse_loss(prediction, target, reduction="mean"):
    """The squared error of ``prediction`` against ``target`` (``MSELoss``), averaged (default),
    summed or per element ("none")."""
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    _same_shape("mse_loss", prediction, target, ("prediction", "target"))
    return MSELoss.apply(prediction, target, reduction=reduction)


class GaussianKL(Function):
    """KL(N(mu, e^logvar) || N(0, 1)) per element: (e^v - 1 - v + mu^2) / 2 with v = logvar,
    written with expm1 so that small v loses no digits.
    Backward: gmu = g mu, gv = g (e^v - 1) / 2."""
    name = "gaussian_kl"

    @staticmethod
    def forward(ctx, mu, logvar, *, reduction):
        values = (namespace(mu).expm1(logvar) - logvar + mu * mu) / 2
        loss, ctx.scale = _reduce(GaussianKL.name, values, reduction)
        ctx.save_for_backward(mu, logvar)
        return loss

    @staticmethod
    def backward(ctx, g):
        mu, logvar = ctx.saved_tensors
        g = g * ctx.scale
        return g * mu, g * expm1(logvar) * 0.5


def gaussian_kl(mu, logvar, reduction="sum"):
    """KL(N(mu, e^logvar) || N(0, 1)) (``GaussianKL``), summed (default), averaged or per
    element ("none")."""
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    _same_shape("gaussian_kl", mu, logvar, ("mu", "logvar"))
    return GaussianKL.apply(mu, logvar, reduction=reduction)
