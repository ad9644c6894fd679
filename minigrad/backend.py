"""Which array library holds an array: NumPy, or CuPy once a tensor lives on a GPU.

Ops never call ``numpy.`` on tensor data directly; they ask ``namespace(array)`` and call the
same function there, so CuPy arrays flow through unchanged.
"""
import sys

import numpy as np


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
