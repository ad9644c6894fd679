"""Losses, each one node with its own VJP: BCE with logits, mean squared error, and the
closed-form KL divergence of a diagonal Gaussian to the standard normal."""
from minigrad.backend import namespace
from minigrad.ops.unary import expm1, sigmoid_node
from minigrad.tensor import as_tensor, make_node

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


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """l = -[t ln s(x) + (1 - t) ln(1 - s(x))] for logits x, targets t in [0, 1], s the sigmoid.

    Written l = max(x, 0) - x t + ln(1 + e^-|x|), exact and finite for any |x|.
    VJP: gx = g (s(x) - t), gt = -g x.
    """
    logits = as_tensor(logits)
    targets = as_tensor(targets, like=logits)
    _same_shape("binary_cross_entropy_with_logits", logits, targets, ("logits", "targets"))
    xp = namespace(logits.data)
    x, t = logits.data, targets.data
    # NOTE: max(x, 0) = (x + |x|) / 2 and min(x, 0) = (x - |x|) / 2 exactly; branch-free,
    # since selects over random signs are slow on CPUs (mispredicted branches).
    magnitude = xp.abs(x)
    log_term = xp.log1p(xp.exp(-magnitude))                   # ln(1 + e^-|x|)
    values = (x + magnitude) * 0.5 - x * t + log_term
    loss, scale = _reduce("binary_cross_entropy_with_logits", values, reduction)

    def vjp(g):
        g = g * scale
        gx = gt = None
        if logits.requires_grad:
            # the sigmoid node of x, valued from the forward's terms: e^{min(x,0)} / (1 + e^-|x|)
            sigmoid = sigmoid_node(logits, xp.exp((x - magnitude) * 0.5 - log_term))
            gx = g * (sigmoid - targets)
        if targets.requires_grad:
            gt = -g * logits
        return gx, gt
    return make_node(loss, (logits, targets), vjp, "binary_cross_entropy_with_logits")


def mse_loss(prediction, target, reduction="mean"):
    """l = (p - t)^2.  VJP: gp = 2 g (p - t), gt = -2 g (p - t)."""
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    _same_shape("mse_loss", prediction, target, ("prediction", "target"))
    diff = prediction.data - target.data
    loss, scale = _reduce("mse_loss", diff * diff, reduction)

    def vjp(g):
        gp = g * (2 * scale) * (prediction - target)
        return gp, -gp
    return make_node(loss, (prediction, target), vjp, "mse_loss")


def gaussian_kl(mu, logvar, reduction="sum"):
    """KL(N(mu, e^logvar) || N(0, 1)) per element: (e^v - 1 - v + mu^2) / 2 with v = logvar.

    Summed (default), averaged, or per element ("none").  Written with expm1 so that small v
    loses no digits.  VJP: gmu = g mu, gv = g (e^v - 1) / 2.
    """
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    _same_shape("gaussian_kl", mu, logvar, ("mu", "logvar"))
    xp = namespace(mu.data)
    e_minus_1 = xp.expm1(logvar.data)
    values = (e_minus_1 - logvar.data + mu.data * mu.data) / 2
    loss, scale = _reduce("gaussian_kl", values, reduction)

    def vjp(g):
        g = g * scale
        return g * mu, g * expm1(logvar) * 0.5
    return make_node(loss, (mu, logvar), vjp, "gaussian_kl")
