"""The reparameterized Gaussian node: z = mu + e^{logvar / 2} * eps, eps ~ N(0, 1).

eps is the counter-based Philox stream's normals at (seed, offset): element i of the
flattened (C order) mu uses normal offset + i.  By default the backward pass regenerates eps
from (seed, offset) instead of keeping it, so the node saves only logvar between the passes;
``save_noise=True`` keeps eps instead (memory for compute).  The arithmetic is the ``kernels``
contract, dispatched to the fastest backend for the arrays; this file connects it to the graph.
"""
import kernels
from kernels.contract import check_kl_grad, check_reparam_inputs
from minigrad.ops.unary import exp
from minigrad.random import Stream
from minigrad.tensor import Tensor, array_of, as_tensor, make_node


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


def reparameterize(mu, logvar, *, seed=None, offset=None, stream=None, save_noise=False,
                   backend=None):
    """z = mu + sigma * eps with sigma = e^{logvar / 2}.

    Give either ``seed`` and ``offset`` or a ``Stream`` (which hands out its (seed, offset) and
    advances by mu.size).  VJP: gmu = g, glogvar = g * sigma * eps / 2, eps regenerated (or
    kept, with ``save_noise``).  ``backend`` picks the kernel (see ``kernels.forward``).
    """
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    check_reparam_inputs("reparameterize", mu.data, logvar.data)
    kernels.check_backend("reparameterize", backend, mu.data)
    seed, offset = _position("reparameterize", mu.size, seed, offset, stream)
    # the arrays are checked above, once: run_forward does not check them again
    out = kernels.run_forward(mu.data, logvar.data, seed, offset, backend=backend,
                              save_noise=save_noise, name="reparameterize")
    z, eps = out if save_noise else (out, None)

    def vjp(g):
        return g, _noise_term(g, logvar, seed, offset, backend, eps)
    return make_node(z, (mu, logvar), vjp, "reparameterize")


def _noise_term(g, logvar, seed, offset, backend, eps):
    """h = g * sigma * eps / 2, sigma = e^{logvar / 2}: the node's gradient for logvar, itself a
    node of (g, logvar) whose eps the kernel regenerates from (seed, offset) (or reads from the
    saved ``eps``), bit for bit the forward's.

    VJP, with dh/dg = sigma * eps / 2 and dh/dlogvar = g * sigma * eps / 4 = h / 2:
        gg = u * sigma * eps / 2 = h(u),   glogvar = u * g * sigma * eps / 4 = h(u * g) / 2,
    the same node again, so every order works."""
    _, value = kernels.run_backward(array_of(g), logvar.data, seed, offset, backend=backend,
                                    noise=eps, name="reparameterize")

    def vjp(u):
        return (_noise_term(u, logvar, seed, offset, backend, eps),
                _noise_term(u * g, logvar, seed, offset, backend, eps) * 0.5)
    return make_node(value, (g, logvar), vjp, "reparameterize_grad_logvar")


def reparameterize_kl(mu, logvar, kl_weight, *, seed=None, offset=None, stream=None,
                      save_noise=False, backend=None):
    """(z, kl): the reparameterized sample and KL(N(mu, e^logvar) || N(0, 1)) summed, in one pass.

    The KL enters the loss through z's backward, weighted by ``kl_weight`` (beta / batch size
    for a VAE's mean loss): z's VJP is that of ``loss(z) + kl_weight * kl``, so
        gmu = g + kl_weight * mu,   glogvar = g * sigma * eps / 2 + kl_weight * (e^logvar - 1) / 2
    in one fused pass each way.  ``kl`` is returned as a plain value (a Tensor without grad) to
    report; do not add it to the loss again.  ``kl_weight`` must be a real, finite scalar (a
    Python or NumPy int or float, not bool); it is checked here, not at backward time.
    """
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    check_reparam_inputs("reparameterize_kl", mu.data, logvar.data)
    kl_weight = check_kl_grad("reparameterize_kl", "kl_weight", kl_weight, mu.data)
    kernels.check_backend("reparameterize_kl", backend, mu.data)
    seed, offset = _position("reparameterize_kl", mu.size, seed, offset, stream)
    out = kernels.run_forward_kl(mu.data, logvar.data, seed, offset, backend=backend,
                                 save_noise=save_noise, name="reparameterize_kl")
    z, kl, eps = out if save_noise else (*out, None)

    def vjp(g):
        # one fused pass gives both values; each is a node of its own for higher orders
        grad_mu, grad_logvar = kernels.run_backward_kl(array_of(g), mu.data, logvar.data, seed,
                                                       offset, kl_weight, backend=backend,
                                                       noise=eps, name="reparameterize_kl")

        def vjp_mu(u):          # gmu = g + w mu
            return u, u * kl_weight

        def vjp_logvar(u):      # glogvar = h(g) + w (e^logvar - 1) / 2, h as in _noise_term
            return (_noise_term(u, logvar, seed, offset, backend, eps),
                    _noise_term(u * g, logvar, seed, offset, backend, eps) * 0.5
                    + u * exp(logvar) * (kl_weight * 0.5))
        return (make_node(grad_mu, (g, mu), vjp_mu, "reparameterize_kl_grad_mu"),
                make_node(grad_logvar, (g, logvar), vjp_logvar, "reparameterize_kl_grad_logvar"))
    return make_node(z, (mu, logvar), vjp, "reparameterize_kl"), Tensor(kl)
