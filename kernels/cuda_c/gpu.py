"""Whether this machine can run the GPU backends: CuPy importable, a driver, at least one GPU.

One check, shared by the cupy backend (which refuses to import without a GPU) and by
minigrad's device handling (which names what is missing when asked for device "cuda").
"""


def require_cupy(needs, error=ImportError):
    """The cupy module when a GPU is usable, else ``error`` whose message starts with ``needs``
    and says what is missing (CuPy itself, the driver, or a device)."""
    try:
        import cupy
    except ImportError as err:
        raise error(f"{needs}; CuPy is not importable here ({err})") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:  # no driver, or no device
        raise error(f"{needs}; CUDA reports: {err}") from None
    if count == 0:
        raise error(f"{needs}; CUDA sees no GPU")
    return cupy
