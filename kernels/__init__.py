"""Reparameterisation kernels: one contract (kernels.contract), backends chosen by name.

forward(mu, logvar, seed, offset, backend=None) -> z
backward(grad_z, logvar, seed, offset, backend=None) -> (grad_mu, grad_logvar)

The backend is the `backend` argument, else $MINIGRAD_KERNEL_BACKEND, else the one for the arrays'
type (ARRAY_BACKENDS: NumPy -> numba_cpu, CuPy -> cupy, other __cuda_array_interface__ arrays ->
numba_cuda). A new backend is one module and one entry in _BACKENDS; its module is imported on
first use only, so a missing numba-cuda or cupy costs nothing until that backend is asked for,
and then BackendUnavailableError says what is missing (no GPU, no CuPy, no numba-cuda).
"""
import importlib
import os

from kernels import contract

_BACKENDS = {
    "reference": "kernels.reference",
    "numba_cpu": "kernels.numba_cpu",
    "numba_cuda": "kernels.numba_cuda",
    "cupy": "kernels.cupy_raw",
}
# the backend for arrays of each library (the top-level module of the array's type)
ARRAY_BACKENDS = {"numpy": "numba_cpu", "cupy": "cupy"}
DEVICE_ARRAY_BACKEND = "numba_cuda"  # any other array with __cuda_array_interface__
BACKEND_ENV_VAR = "MINIGRAD_KERNEL_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A known backend whose module cannot be imported here (no GPU, no CuPy, no numba-cuda)."""


def backend_for(array):
    """The backend that dispatch picks for `array` when neither argument nor environment says."""
    library = type(array).__module__.split(".")[0]
    if library in ARRAY_BACKENDS:
        return ARRAY_BACKENDS[library]
    if hasattr(array, "__cuda_array_interface__"):
        return DEVICE_ARRAY_BACKEND
    return ARRAY_BACKENDS["numpy"]  # lists, scalars: read through NumPy


def _backend_module(name, backend, array):
    """The module of the chosen backend; unknown names raise, listing the known ones, and
    unavailable ones raise BackendUnavailableError with the reason."""
    source = "backend"
    if backend is None:
        # the environment overrides the array type, never an explicit argument
        if os.environ.get(BACKEND_ENV_VAR):
            backend, source = os.environ[BACKEND_ENV_VAR], f"${BACKEND_ENV_VAR}"
        else:
            backend, source = backend_for(array), f"the type of {type(array).__name__} arrays"
    if backend not in _BACKENDS:
        raise ValueError(f"{name}: unknown kernel backend {backend!r} (from {source}); "
                         f"known: {', '.join(sorted(_BACKENDS))}")
    try:
        return importlib.import_module(_BACKENDS[backend])
    except ImportError as err:
        missing = f"{err.name} is not installed" if err.name and str(err).startswith("No module") \
            else str(err)
        raise BackendUnavailableError(f"{name}: kernel backend {backend!r} (from {source}) is "
                                      f"unavailable: {missing}") from err


def check_backend(name, backend, array):
    """Raise as a call with these arguments would (unknown name, unavailable backend), without
    running anything: callers that must not change state on a failed call check first."""
    _backend_module(name, backend, array)


def available_backends():
    """Names of the backends whose module imports in this environment."""
    names = []
    for backend, module in _BACKENDS.items():
        try:
            importlib.import_module(module)
        except ImportError:  # e.g. no GPU, cupy or numba-cuda: that backend is unavailable
            continue
        names.append(backend)
    return names


def forward(mu, logvar, seed, offset, backend=None, save_noise=False):
    """z = mu + exp(logvar / 2) * eps with eps from (seed, offset); (z, eps) with save_noise."""
    contract.check_reparam_inputs("kernels.forward", mu, logvar)
    contract.check_seed_offset("kernels.forward", seed, offset)
    module = _backend_module("kernels.forward", backend, mu)
    return module.forward(mu, logvar, seed, offset, save_noise=save_noise)


def backward(grad_z, logvar, seed, offset, backend=None, noise=None):
    """(grad_z, grad_z * exp(logvar / 2) * eps / 2), eps regenerated unless ``noise`` is given."""
    contract.check_backward_inputs("kernels.backward", grad_z, logvar, noise=noise)
    contract.check_seed_offset("kernels.backward", seed, offset)
    module = _backend_module("kernels.backward", backend, grad_z)
    return module.backward(grad_z, logvar, seed, offset, noise=noise)


def forward_kl(mu, logvar, seed, offset, backend=None, save_noise=False):
    """(z, kl): the forward fused with the KL divergence to N(0, 1), summed; see contract."""
    contract.check_reparam_inputs("kernels.forward_kl", mu, logvar)
    contract.check_seed_offset("kernels.forward_kl", seed, offset)
    module = _backend_module("kernels.forward_kl", backend, mu)
    return module.forward_kl(mu, logvar, seed, offset, save_noise=save_noise)


def backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, backend=None, noise=None):
    """The backward plus kl_grad times the KL's gradient, in one pass; see contract."""
    contract.check_backward_inputs("kernels.backward_kl", grad_z, logvar, mu=mu, noise=noise)
    contract.check_seed_offset("kernels.backward_kl", seed, offset)
    kl_grad = contract.check_kl_grad("kernels.backward_kl", "kl_grad", kl_grad, grad_z)
    module = _backend_module("kernels.backward_kl", backend, grad_z)
    return module.backward_kl(grad_z, mu, logvar, seed, offset, kl_grad, noise=noise)
