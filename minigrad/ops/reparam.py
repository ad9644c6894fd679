"""The reparameterized Gaussian node: z = mu + e^{logvar / 2} * eps, eps ~ N(0, 1).

eps is the counter-based Philox stream's normals at (seed, offset): element i of the
flattened (C order) mu uses normal offset + i.  By default the backward pass regenerates eps
from (seed, offset) instead of keeping it, so the node saves only logvar between the passes;
``save_noise=True`` keeps eps instead (memory for compute).  The arithmetic is the ``kernels``
contract, dispatched to the fastest backend for the arrays; this file connects it to the graph.

Each gradient that regenerates eps is itself a node (``NoiseTerm``, ``KLGradients``) whose
forward is a fused kernel pass and whose backward is written out by hand, so every order works
and the first-order pass costs one kernel call.
"""
import kernels
from kernels.contract import check_kl_weight, check_reparam_inputs
from minigrad.function import Function
from minigrad.ops.unary import exp, expm1
from minigrad.random import Stream
from minigrad.tensor import as_tensor


def _position(name, size, seed, offset, stream):
    """(seed, offset) of the draw: given directly, or taken from a Stream (which advances).

    Callers check every other argument first, so that a call that raises leaves the Stream where
    it was; take() itself refuses a draw past the end of the stream.
    """
    if stream is None:
        if seed is None or offset is None:
            raise ValueError(f"{name}: needs seed= and offset= (or stream=)")
        return seed, offset
    if seed is not None or offset is not None:
        raise ValueError(f"{name}: give either stream or seed and offset, not both")
    if not isinstance(stream, Stream):
        raise TypeError(f"{name}: stream must be a minigrad.random.Stream, "
                        f"got {type(stream).__name__}")
    return stream.take(size)


def _draw(ctx, eps):
    """The keywords that name a node's noise: where it lies in the stream, which kernel
    regenerates it, and the saved eps (a Tensor, or None: regenerate it)."""
    return {"seed": ctx.seed, "offset": ctx.offset, "backend": ctx.backend,
            "noise": None if eps is None else eps.data}


class Reparameterize(Function):
    """z = mu + sigma * eps with sigma = e^{logvar / 2}.
    Backward: gmu = g, glogvar = h(g) = g * sigma * eps / 2 (``NoiseTerm``)."""
    name = "reparameterize"

    @staticmethod
    def forward(ctx, mu, logvar, *, seed, offset, backend, save_noise):
        out = kernels.run_forward(mu, logvar, seed, offset, backend=backend,
                                  save_noise=save_noise, name="reparameterize")
        z, eps = out if save_noise else (out, None)
        ctx.seed, ctx.offset, ctx.backend = seed, offset, backend
        ctx.save_for_backward(logvar, eps)
        return z

    @staticmethod
    def backward(ctx, g):
        logvar, eps = ctx.saved_tensors
        return g, NoiseTerm.apply(g, logvar, **_draw(ctx, eps))


class NoiseTerm(Function):
    """h = g * sigma * eps / 2, sigma = e^{logvar / 2}: the gradient for logvar, as a node of
    (g, logvar) whose eps the kernel regenerates from (seed, offset) (or reads from the saved
    ``noise``), bit for bit the forward's.

    Backward, with dh/dg = sigma * eps / 2 and dh/dlogvar = g * sigma * eps / 4 = h / 2:
        gg = u * sigma * eps / 2 = h(u),   glogvar = u * g * sigma * eps / 4 = h(u * g) / 2,
    the same node again, so every order works."""
    name = "reparameterize_grad_logvar"

    @staticmethod
    def forward(ctx, g, logvar, *, seed, offset, backend, noise):
        _, value = kernels.run_backward(g, logvar, seed, offset, backend=backend, noise=noise,
                                        name="reparameterize")
        ctx.seed, ctx.offset, ctx.backend = seed, offset, backend
        ctx.save_for_backward(g, logvar, noise)
        return value

    @staticmethod
    def backward(ctx, u):
        g, logvar, eps = ctx.saved_tensors
        draw = _draw(ctx, eps)
        return (NoiseTerm.apply(u, logvar, **draw),
                NoiseTerm.apply(u * g, logvar, **draw) * 0.5)


def reparameterize(mu, logvar, *, seed=None, offset=None, stream=None, save_noise=False,
                   backend=None):
    """z = mu + sigma * eps (``Reparameterize``).

    Give either ``seed`` and ``offset`` or a ``Stream`` (which hands out its (seed, offset) and
    advances by mu.size).  ``backend`` picks the kernel (see ``kernels.forward``).
    """
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    check_reparam_inputs("reparameterize", mu.data, logvar.data)
    kernels.check_backend("reparameterize", backend, mu.data)
    seed, offset = _position("reparameterize", mu.size, seed, offset, stream)
    return Reparameterize.apply(mu, logvar, seed=seed, offset=offset, backend=backend,
                                save_noise=save_noise)


class ReparameterizeKL(Function):
    """(z, kl): the reparameterized sample and KL(N(mu, e^logvar) || N(0, 1)) summed, in one
    pass; two outputs, each differentiable.

    Backward, for the gradients g of z and w of kl (each None when that output got none):
        gmu = g + w * mu,   glogvar = h(g) + w * (e^logvar - 1) / 2,
    linear in (g, w): a pass that reaches z but not kl (a second-order pass through z, say) adds
    no KL term.  With both, one fused kernel pass computes the two (``KLGradients``).
    """
    name = "reparameterize_kl"

    @staticmethod
    def forward(ctx, mu, logvar, *, seed, offset, backend, save_noise):
        out = kernels.run_forward_kl(mu, logvar, seed, offset, backend=backend,
                                     save_noise=save_noise, name="reparameterize_kl")
        z, kl, eps = out if save_noise else (*out, None)
        ctx.seed, ctx.offset, ctx.backend = seed, offset, backend
        ctx.save_for_backward(mu, logvar, eps)
        return z, kl

    @staticmethod
    def backward(ctx, g, w):
        mu, logvar, eps = ctx.saved_tensors
        if w is None:       # the KL is not in the loss
            return g, NoiseTerm.apply(g, logvar, **_draw(ctx, eps))
        if g is None:       # only the KL is
            return w * mu, w * expm1(logvar) * 0.5
        return KLGradients.apply(g, w, mu, logvar, **_draw(ctx, eps))


class KLGradients(Function):
    """(gmu, glogvar) = (g + w mu, h(g) + w (e^logvar - 1) / 2), h as in ``NoiseTerm``: the
    gradients of ``ReparameterizeKL`` as one node of (g, w, mu, logvar), w the scalar gradient of
    the KL, computed by the fused kernel pass.

    Backward, for (u, v) the gradients of (gmu, glogvar):
        gg = u + h(v),                          gw = sum(u mu) + sum(v (e^logvar - 1)) / 2,
        gmu = w u,                              glogvar = h(v g) / 2 + w v e^logvar / 2.
    """
    name = "reparameterize_kl_grads"

    @staticmethod
    def forward(ctx, g, w, mu, logvar, *, seed, offset, backend, noise):
        # the KL's gradient is its weight in the loss, the kernels' kl_weight
        kl_weight = check_kl_weight("reparameterize_kl", "the gradient of kl", w[()], mu)
        grads = kernels.run_backward_kl(g, mu, logvar, seed, offset, kl_weight, backend=backend,
                                        noise=noise, name="reparameterize_kl")
        ctx.seed, ctx.offset, ctx.backend = seed, offset, backend
        ctx.save_for_backward(g, w, mu, logvar, noise)
        return tuple(grads)

    @staticmethod
    def backward(ctx, u, v):
        g, w, mu, logvar, eps = ctx.saved_tensors
        draw = _draw(ctx, eps)
        gg, gw, gmu, glogvar = u, None, None, None
        if u is not None:
            gw, gmu = (u * mu).sum(), u * w
        if v is not None:
            noise_v = NoiseTerm.apply(v, logvar, **draw)
            gg = noise_v if gg is None else gg + noise_v
            kl_v = (v * expm1(logvar)).sum() * 0.5
            gw = kl_v if gw is None else gw + kl_v
            glogvar = NoiseTerm.apply(v * g, logvar, **draw) * 0.5 \
                + v * exp(logvar) * (w * 0.5)
        return gg, gw, gmu, glogvar


def reparameterize_kl(mu, logvar, *args, seed=None, offset=None, stream=None, save_noise=False,
                      backend=None):
    """(z, kl) = ``ReparameterizeKL``: z = mu + sigma * eps and kl = KL(N(mu, e^logvar) || N(0, 1))
    summed over every element, from one fused pass; the backward of both is one fused pass too.

    Both outputs are differentiable: a VAE's loss adds the KL itself, ``loss = recon + weight *
    kl`` (weight beta / batch for a batch-mean loss), and the KL's gradient reaches mu and logvar
    once, with the weight as its cotangent.  Seed, offset and stream as in ``reparameterize``.
    """
    if args:
        raise TypeError("reparameterize_kl: takes mu and logvar only (got a third positional "
                        "argument, the kl_weight of older versions); kl is now differentiable: "
                        "add kl_weight * kl to the loss")
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    check_reparam_inputs("reparameterize_kl", mu.data, logvar.data)
    kernels.check_backend("reparameterize_kl", backend, mu.data)
    seed, offset = _position("reparameterize_kl", mu.size, seed, offset, stream)
    return ReparameterizeKL.apply(mu, logvar, seed=seed, offset=offset, backend=backend,
                                  save_noise=save_noise)
