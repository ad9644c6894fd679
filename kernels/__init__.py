"""Reparameterisation kernels: one contract (kernels.contract), backends chosen by name.

forward(mu, logvar, seed, offset, backend=None) -> z
backward(grad_z, logvar, seed, offset, backend=None) -> (grad_mu, grad_logvar)

The backend is the `backend` argument, else $MINIGRAD_KERNEL_BACKEND, else DEFAULT_BACKEND. A new
backend is one module and one entry in _BACKENDS; its module is imported on first use only, so a
missing numba or cupy costs nothing until that backend is asked for.
"""
import importlib
import os

from kernels import contract

_BACKENDS = {
    "reference": "kernels.reference",
}
DEFAULT_BACKEND = "reference"
BACKEND_ENV_VAR = "MINIGRAD_KERNEL_BACKEND"


def _backend_module(name, backend):
    """The module of the chosen backend; unknown names raise, listing the known ones."""
    source = "backend"
    if backend is None:
        # the environment overrides the default, never an explicit argument
        backend, source = os.environ.get(BACKEND_ENV_VAR, DEFAULT_BACKEND), f"${BACKEND_ENV_VAR}"
    if backend not in _BACKENDS:
        raise ValueError(f"{name}: unknown kernel backend {backend!r} (from {source}); "
                         f"known: {', '.join(sorted(_BACKENDS))}")
    return importlib.import_module(_BACKENDS[backend])


def available_backends():
    """Names of the backends whose module imports in this environment."""
    names = []
    for backend, module in _BACKENDS.items():
        try:
            importlib.import_module(module)
        except ImportError:  # e.g. numba or cupy not installed: that backend is unavailable
            continue
        names.append(backend)
    return names


def forward(mu, logvar, seed, offset, backend=None, save_noise=False):
    """z = mu + exp(logvar / 2) * eps with eps from (seed, offset); (z, eps) with save_noise."""
    contract.check_reparam_inputs("kernels.forward", mu, logvar)
    contract.check_seed_offset("kernels.forward", seed, offset)
    module = _backend_module("kernels.forward", backend)
    return module.forward(mu, logvar, seed, offset, save_noise=save_noise)


def backward(grad_z, logvar, seed, offset, backend=None, noise=None):
    """(grad_z, grad_z * exp(logvar / 2) * eps / 2), eps regenerated unless ``noise`` is given."""
    contract.check_backward_inputs("kernels.backward", grad_z, logvar, noise=noise)
    contract.check_seed_offset("kernels.backward", seed, offset)
    module = _backend_module("kernels.backward", backend)
    return module.backward(grad_z, logvar, seed, offset, noise=noise)


def forward_kl(mu, logvar, seed, offset, backend=None, save_noise=False):
    """(z, kl): the forward fused with the KL divergence to N(0, 1), summed; see contract."""
    contract.check_reparam_inputs("kernels.forward_kl", mu, logvar)
    contract.check_seed_offset("kernels.forward_kl", seed, offset)
    module = _backend_module("kernels.forward_kl", backend)
    return module.forward_kl(mu, logvar, seed, offset, save_noise=save_noise)


def backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, backend=None, noise=None):
    """The backward plus kl_grad times the KL's gradient, in one pass; see contract."""
    contract.check_backward_inputs("kernels.backward_kl", grad_z, logvar, mu=mu, noise=noise)
    contract.check_seed_offset("kernels.backward_kl", seed, offset)
    module = _backend_module("kernels.backward_kl", backend)
    return module.backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, noise=noise)
