"""Which array library holds an array (NumPy, or CuPy once a tensor lives on a GPU), and on which
device: "cpu" or "cuda".

Ops never call ``numpy.`` on tensor data directly; they ask ``namespace(array)`` and call the
same function there, so CuPy arrays flow through unchanged.  Data moves between devices only
through ``to_device``: an op never copies its operands to the host behind the caller's back.
"""
import sys

import numpy as np

from kernels.cuda_c.gpu import require_cupy

DEVICES = ("cpu", "cuda")
CUDA_NEEDS = "device 'cuda' needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU"


def namespace(array):
    """The module whose functions operate on ``array`` (``numpy`` or ``cupy``)."""
    # NOTE: cupy is looked up in sys.modules, never imported here: a CuPy array can only
    # exist if the user already imported cupy, and CPU-only users pay nothing.
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    return np


def is_float_dtype(dtype):
    """True for the floating dtypes the engine differentiates (float16/32/64)."""
    return np.dtype(dtype).kind == "f"


# the device of each array type; CuPy's is added when CuPy is first asked for (see _cupy)
_DEVICE_OF_TYPE = {np.ndarray: "cpu"}


def device_of(array):
    """"cpu" for NumPy arrays (and scalars), "cuda" for CuPy arrays."""
    device = _DEVICE_OF_TYPE.get(type(array))
    if device is None:
        device = "cuda" if namespace(array) is not np else "cpu"
    return device


def check_device(name):
    """``name`` if it is a known device string, else a ValueError naming it."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; known devices: {', '.join(DEVICES)}")
    return name


class DeviceUnavailableError(RuntimeError):
    """A device was asked for that this machine cannot provide (no CuPy, no driver, no GPU)."""


def _cupy():
    """The cupy module with a usable GPU, or a DeviceUnavailableError saying what is missing."""
    cupy = require_cupy(CUDA_NEEDS, DeviceUnavailableError)
    _DEVICE_OF_TYPE[cupy.ndarray] = "cuda"
    return cupy


def cuda_available():
    """True when CuPy imports and sees a GPU (tests and benchmarks skip otherwise)."""
    try:
        _cupy()
    except DeviceUnavailableError:
        return False
    return True


def to_device(array, device):
    """``array`` on ``device``: the same array when it is there already, else a copy."""
    if device_of(array) == check_device(device):
        return array
    if device == "cpu":
        return namespace(array).asnumpy(array)
    return _cupy().asarray(array)


def check_same_device(op, a, b):
    """Raise a ValueError naming ``op`` and both devices unless arrays ``a`` and ``b`` share one.

    NOTE: the type test comes first and settles the common case (two NumPy arrays) at the cost
    of one comparison; a NumPy scalar against an array, or two array types of one device,
    fall through to the device lookup.
    """
    if type(a) is type(b):
        return
    first, second = device_of(a), device_of(b)
    if first != second:
        raise ValueError(f"{op}: operands live on different devices, {first} and {second}; "
                         f"move one with .to({first!r}) or .to({second!r})")
