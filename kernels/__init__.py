"""Reparameterisation kernels: one contract (kernels.contract), backends chosen by name.

forward(mu, logvar, seed, offset, backend=None) -> z
backward(grad_z, logvar, seed, offset, backend=None) -> (grad_mu, grad_logvar)

Laid out by toolchain: the contract, the NumPy reference (reference.py, philox.py, families.py)
and the launch grids (occupancy.py) here; the Numba backends in kernels/numba/, the CUDA C ones
(NVRTC, run by CuPy) in kernels/cuda_c/.

The backend is the `backend` argument, else $MINIGRAD_KERNEL_BACKEND, else the one for the arrays'
type (ARRAY_BACKENDS: NumPy -> numba_cpu, CuPy -> cupy, other __cuda_array_interface__ arrays ->
numba_cuda). A new backend is one module exporting its unchecked passes (run_forward, ...; see
kernels.contract) and one entry in BACKENDS; its module is imported on first use only, so a
missing numba-cuda or cupy costs nothing until that backend is asked for, and then
BackendUnavailableError says what is missing (no GPU, no CuPy, no numba-cuda).

Adam's update has three implementations, in ADAM_BACKENDS: the array expression of
minigrad.optim.Adam (any array library; "expression" names it, no module here), one Numba loop for
NumPy arrays and one CUDA kernel for CuPy arrays; adam_backend_for(param, grad) names the one for
the parameter's arrays and adam_update(name) gives its function (None for the expression). Tests
and benchmarks take their lists from here.
"""
import functools
import importlib
import os
import sys

from kernels import contract

BACKENDS = {
    "reference": "kernels.reference",
    "numba_cpu": "kernels.numba.cpu",
    "numba_cuda": "kernels.numba.gpu",
    "cupy": "kernels.cuda_c.cupy_reparam",
}
GPU_BACKENDS = ("numba_cuda", "cupy")  # their arrays live on a GPU
# the backend for arrays of each library (the top-level module of the array's type)
ARRAY_BACKENDS = {"numpy": "numba_cpu", "cupy": "cupy"}
# Adam's implementations: name -> the module whose adam_update runs it (None: the expression)
ADAM_BACKENDS = {"expression": None, "numba": "kernels.numba.adam",
                 "cupy": "kernels.cuda_c.cupy_adam"}
# the fused Adam for C-contiguous float32/float64 arrays of each library
ARRAY_ADAM_BACKENDS = {"numpy": "numba", "cupy": "cupy"}
DEVICE_ARRAY_BACKEND = "numba_cuda"  # any other array with __cuda_array_interface__
BACKEND_ENV_VAR = "MINIGRAD_KERNEL_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A known backend whose module cannot be imported here (no GPU, no CuPy, no numba-cuda)."""


def backend_for(array):
    """The backend that dispatch picks for `array` when neither argument nor environment says."""
    library = _library(type(array))
    if library in ARRAY_BACKENDS:
        return ARRAY_BACKENDS[library]
    if hasattr(array, "__cuda_array_interface__"):
        return DEVICE_ARRAY_BACKEND
    return ARRAY_BACKENDS["numpy"]  # lists, scalars: read through NumPy


def _backend_module(name, backend, array):
    """The module of the chosen backend; unknown names raise, listing the known ones, and
    unavailable ones raise BackendUnavailableError with the reason."""
    chosen = backend
    if chosen is None:
        # the environment overrides the array type, never an explicit argument
        chosen = os.environ.get(BACKEND_ENV_VAR) or backend_for(array)
    module = sys.modules.get(BACKENDS.get(chosen, ""))  # NOTE: the common case, one lookup
    if module is not None:
        return module
    if backend is not None:
        source = "backend"
    elif os.environ.get(BACKEND_ENV_VAR):
        source = f"${BACKEND_ENV_VAR}"
    else:
        source = f"the type of {type(array).__name__} arrays"
    if chosen not in BACKENDS:
        raise ValueError(f"{name}: unknown kernel backend {chosen!r} (from {source}); "
                         f"known: {', '.join(sorted(BACKENDS))}")
    try:
        return importlib.import_module(BACKENDS[chosen])
    except ImportError as err:
        missing = f"{err.name} is not installed" if err.name and str(err).startswith("No module") \
            else str(err)
        raise BackendUnavailableError(f"{name}: kernel backend {chosen!r} (from {source}) is "
                                      f"unavailable: {missing}") from err


def check_backend(name, backend, array):
    """Raise as a call with these arguments would (unknown name, unavailable backend), without
    running anything: callers that must not change state on a failed call check first."""
    _backend_module(name, backend, array)


def available_backends():
    """Names of the backends whose module imports in this environment."""
    names = []
    for backend, module in BACKENDS.items():
        try:
            importlib.import_module(module)
        except ImportError:  # e.g. no GPU, cupy or numba-cuda: that backend is unavailable
            continue
        names.append(backend)
    return names


def adam_backend_for(param, grad):
    """The name of the fused Adam for these arrays (ARRAY_ADAM_BACKENDS), or "expression" where
    none applies (another library, dtype or memory layout)."""
    library = _library(type(param))
    fused = ARRAY_ADAM_BACKENDS.get(library)
    if fused is None or param.dtype not in contract.FLOAT_DTYPES \
            or not (param.flags.c_contiguous and grad.flags.c_contiguous):
        return "expression"
    return fused


@functools.cache
def _library(array_type):
    """The top-level module of an array type ("numpy", "cupy", ...)."""
    return array_type.__module__.split(".")[0]


@functools.cache  # NOTE: an optimizer asks once per parameter and step
def adam_update(name):
    """The adam_update function of Adam's implementation `name` (None for "expression")."""
    if name not in ADAM_BACKENDS:
        raise ValueError(f"adam_update: unknown Adam implementation {name!r}; known: "
                         f"{', '.join(ADAM_BACKENDS)}")
    return None if ADAM_BACKENDS[name] is None else \
        importlib.import_module(ADAM_BACKENDS[name]).adam_update


# The passes: forward, forward_kl, backward and backward_kl are the contract's checked entry points
# (kernels.contract.forward, ...) on the chosen backend; a backend module exports only its
# unchecked run_* passes. Seed and offset are checked where the backend computes the draw's
# position. The run_* functions here are for callers that checked the arrays themselves:
# minigrad's reparameterized nodes, before advancing a Stream, and their VJPs, whose gradient has
# the output's shape and dtype by construction and whose kl_weight was checked when the node was
# made.
def run_forward(mu, logvar, seed, offset, backend=None, save_noise=False, name="kernels.forward"):
    """forward on arrays the caller checked (contract.check_reparam_inputs)."""
    module = _backend_module(name, backend, mu)
    return module.run_forward(mu, logvar, seed, offset, save_noise, name=name)


def run_forward_kl(mu, logvar, seed, offset, backend=None, save_noise=False,
                   name="kernels.forward_kl"):
    """forward_kl on arrays the caller checked (contract.check_reparam_inputs)."""
    module = _backend_module(name, backend, mu)
    return module.run_forward_kl(mu, logvar, seed, offset, save_noise, name=name)


def run_backward(grad_z, logvar, seed, offset, backend=None, noise=None,
                 name="kernels.backward"):
    """backward on arrays the caller checked (contract.check_backward_inputs)."""
    module = _backend_module(name, backend, grad_z)
    return module.run_backward(grad_z, logvar, seed, offset, noise, name=name)


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, backend=None, noise=None,
                    name="kernels.backward_kl"):
    """backward_kl on arrays and a kl_weight the caller checked (contract.check_backward_inputs,
    contract.check_kl_weight)."""
    module = _backend_module(name, backend, grad_z)
    return module.run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise, name=name)


def forward(mu, logvar, seed, offset, backend=None, save_noise=False):
    """z = mu + exp(logvar / 2) * eps with eps from (seed, offset); (z, eps) with save_noise."""
    name = "kernels.forward"
    return contract.forward(_backend_module(name, backend, mu), mu, logvar, seed, offset,
                            save_noise, name)


def backward(grad_z, logvar, seed, offset, backend=None, noise=None):
    """(grad_z, grad_z * exp(logvar / 2) * eps / 2), eps regenerated unless ``noise`` is given."""
    name = "kernels.backward"
    return contract.backward(_backend_module(name, backend, grad_z), grad_z, logvar, seed, offset,
                             noise, name)


def forward_kl(mu, logvar, seed, offset, backend=None, save_noise=False):
    """(z, kl): the forward fused with the KL divergence to N(0, 1), summed; see contract."""
    name = "kernels.forward_kl"
    return contract.forward_kl(_backend_module(name, backend, mu), mu, logvar, seed, offset,
                               save_noise, name)


def backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, backend=None, noise=None):
    """The backward plus kl_weight times the KL's gradient, in one pass; see contract."""
    name = "kernels.backward_kl"
    return contract.backward_kl(_backend_module(name, backend, grad_z), grad_z, mu, logvar, seed,
                                offset, kl_weight, noise, name)
