"""The reparameterisation contract every backend implements, and the input checks they share.

    forward(mu, logvar, seed, offset, save_noise=False) -> z, or (z, eps) when save_noise
        z = mu + exp(logvar / 2) * eps
    backward(grad_z, logvar, seed, offset, noise=None) -> (grad_mu, grad_logvar)
        grad_mu     = grad_z                              (a new array, never an alias of grad_z)
        grad_logvar = grad_z * exp(logvar / 2) * eps / 2
    forward_kl(mu, logvar, seed, offset, save_noise=False) -> (z, kl), or (z, kl, eps)
        kl = sum over elements of (expm1(logvar) - logvar + mu^2) / 2, the KL divergence of
             N(mu, exp(logvar)) to N(0, 1); a 0-d array of the input dtype, accumulated in
             float64 (so backends differ from the reference only by summation order)
    backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None) -> (grad_mu, grad_logvar)
        grad_mu     = grad_z + kl_weight * mu
        grad_logvar = grad_z * exp(logvar / 2) * eps / 2 + kl_weight * expm1(logvar) / 2
        kl_weight is the KL's weight in the loss, the scalar gradient reaching kl (beta / batch
        in a VAE's mean loss)

eps = kernels.philox.normal(mu.size, seed, offset, dtype=mu.dtype).reshape(mu.shape): element i of
the C-order flattening of mu uses normal offset + i of the stream keyed by seed. By default the
backward regenerates eps from (seed, offset) and nothing but the inputs is kept between the
passes; with save_noise=True the forward also returns eps and the backward takes it as ``noise``
(the memory-for-compute trade the benchmarks measure).

- All arrays of a call have one shape and one dtype, float32 or float64; outputs have that shape
  and dtype, and arithmetic happens in that dtype.
- seed is an int in [0, 2**64); offset is an int >= 0 (Python or NumPy integers, never bool), with
  offset + size <= 2**66 (STREAM_END) so that the last Philox block index fits in 64 bits.
- kl_weight is a real, finite scalar (a Python or NumPy int or float, never bool), finite also when
  rounded to the arrays' dtype; None is refused, never read as "no KL".
- The reference accepts inputs of any strides (it reads them through NumPy's elementwise
  ufuncs); the compiled backends copy non-contiguous inputs to C order first (never misread them).
- NaN and Inf propagate as IEEE arithmetic makes them: no backend checks values.

Checks raise before any backend runs and name the function, the argument, what arrived and what
was expected, and each call checks once, at its boundary: a backend's run_* functions trust their
arguments, and the checked entry points at the end of this module (which kernels' dispatch calls)
check them first; seed and offset are checked where the draw's position is computed
(stream_position). This module knows
only arrays: it never imports minigrad.
"""
import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
STREAM_END = 2**66  # normals per seed: the last one's block index, (2**66 - 1) // 4, fits 64 bits


def check_int(name, what, value, bits=None):
    """Return value as a Python int, after checking it is an integer >= 0 (and < 2**bits if given).

    Python and NumPy integers pass; bool is refused even though it subclasses int.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: {what} is {type(value).__name__} {value!r}; expected an int")
    value = int(value)
    if value < 0 or (bits is not None and value >= 2**bits):
        bound = "" if bits is None else f" and < 2**{bits}"
        raise ValueError(f"{name}: {what} is {value}; it must be >= 0{bound}")
    return value


def check_float_dtype(name, what, dtype):
    """Return np.dtype(dtype) after checking it is float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name}: {what} {dtype!r} is not a NumPy dtype; "
                        "expected float32 or float64") from err
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: {what} is {dtype}; expected float32 or float64")
    return dtype


def _shape_dtype(x):
    """(shape, dtype) of an array of any library; other array-likes are read through NumPy."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return tuple(x.shape), np.dtype(x.dtype)
    x = np.asarray(x)
    return x.shape, x.dtype


def _check_pair(name, first, a, second, b):
    """Two arrays of one shape and one float dtype, else an error naming both."""
    a_shape, a_dtype = _shape_dtype(a)
    b_shape, b_dtype = _shape_dtype(b)
    if a_shape != b_shape:
        raise ValueError(f"{name}: {first} has shape {a_shape}, {second} {b_shape}; "
                         "they must match")
    if a_dtype != b_dtype:
        raise TypeError(f"{name}: {first} is {a_dtype}, {second} {b_dtype}; they must match")
    check_float_dtype(name, f"the dtype of {first} and {second}", a_dtype)


def check_reparam_inputs(name, mu, logvar):
    """Raise unless mu and logvar share one shape and one float32/float64 dtype."""
    _check_pair(name, "mu", mu, "logvar", logvar)


def check_backward_inputs(name, grad_z, logvar, mu=None, noise=None):
    """Raise unless grad_z, logvar (and mu, noise where given) share one shape and float dtype."""
    _check_pair(name, "grad_z", grad_z, "logvar", logvar)
    if mu is not None:
        _check_pair(name, "mu", mu, "logvar", logvar)
    if noise is not None:
        _check_pair(name, "noise", noise, "logvar", logvar)


def check_shape(name, shape):
    """shape (an int or a sequence of ints >= 0) as a tuple of Python ints, else an error naming
    the bad entry."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: shape is {type(shape).__name__} {shape!r}; expected an int "
                        "or a tuple of ints") from None
    return tuple(check_int(name, f"shape[{i}]", s) for i, s in enumerate(shape))


def check_kl_weight(name, what, value, like):
    """value as a Python float after checking it is a real, finite scalar (a Python or NumPy int
    or float, not bool, None, a string, an array or a complex number) whose rounding to the dtype
    of the array ``like`` is finite too."""
    real = (int, float, np.integer, np.floating)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, real):
        raise TypeError(f"{name}: {what} is {type(value).__name__} {value!r}; expected a real "
                        "scalar (a Python or NumPy int or float)")
    try:
        number = float(value)
    except OverflowError:  # a Python int past float64's range
        raise ValueError(f"{name}: {what} is an int of {int(value).bit_length()} bits, past "
                         "float64's range; it must be finite") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}: {what} is {value!r}; it must be finite")
    dtype = _shape_dtype(like)[1]
    # NOTE: a float64 rounds to inf in float32 from max + half an ulp up (that tie rounds to
    # even, which is up); float64 values are finite in float64 already
    if dtype == np.float32 and abs(number) >= _FLOAT32_OVERFLOW:
        raise ValueError(f"{name}: {what} is {value!r}, which is inf in {dtype}; it must be "
                         f"finite in {dtype}")
    return number



_FLOAT32_OVERFLOW = float(np.finfo(np.float32).max) + 2.0 ** 103  # max + ulp(max) / 2, exact


def check_offset(name, what, offset, size=0):
    """offset as a Python int after checking it is an int >= 0 with offset + size <= STREAM_END."""
    offset = check_int(name, what, offset)
    if offset + size > STREAM_END:
        raise ValueError(f"{name}: {what} {offset} + size {size} is past 2**66, the end of "
                         "the stream; the last block index must fit in 64 bits")
    return offset


def check_seed_offset(name, seed, offset):
    """Raise unless seed is an int in [0, 2**64) and offset an int >= 0."""
    check_int(name, "seed", seed, bits=64)
    check_int(name, "offset", offset)


def stream_position(name, size, seed, offset):
    """(first_block, start_lane, key0, key1), Python ints, of a draw of ``size`` normals at
    ``offset``: normal offset + i is lane (offset + i) % 4 of Philox block (offset + i) // 4,
    keyed by (seed mod 2**32, seed >> 32).  Every backend computes its launch from this.

    Checks seed < 2**64, offset >= 0 and offset + size <= 2**66 (the last block index must fit
    the 64-bit counter).  A draw of size 0 touches no block: (0, 0, key0, key1).
    """
    seed = check_int(name, "seed", seed, bits=64)
    offset = check_offset(name, "offset", offset, size)
    key0, key1 = seed & 0xFFFFFFFF, seed >> 32
    if size == 0:  # offset // 4 may not even fit in 64 bits
        return 0, 0, key0, key1
    return offset // 4, offset % 4, key0, key1


def check_words(name, what, words):
    """words as a uint32 array (NumPy, or CuPy as given), else a TypeError naming the dtype."""
    if not (hasattr(words, "shape") and hasattr(words, "dtype")):
        words = np.asarray(words)
    if words.dtype != np.uint32:
        raise TypeError(f"{name}: {what} has dtype {words.dtype}; expected uint32")
    return words


def check_blocks(name, what, words):
    """words as an (n, 4) uint32 ndarray: one Philox block per row."""
    words = check_words(name, what, words)
    if words.ndim != 2 or words.shape[1] != 4:
        raise ValueError(f"{name}: {what} has shape {words.shape}; expected (n, 4)")
    return words


def check_philox_inputs(name, counters, key):
    """(counters, key) of a philox4x32 call: (n, 4) and (2,) uint32 arrays, else an error."""
    counters = check_blocks(name, "counters", counters)
    key = check_words(name, "key", key)
    if key.shape != (2,):
        raise ValueError(f"{name}: key has shape {key.shape}; expected (2,)")
    return counters, key


# The one checked entry point of each pass: the arrays (and kl_weight) checked, then the pass of
# ``backend``, a backend module whose run_* functions trust their arguments. Errors name ``name``,
# "<backend.NAME>.<pass>" unless the caller (kernels' dispatch) names itself.
def forward(backend, mu, logvar, seed, offset, save_noise=False, name=None):
    """z = mu + exp(logvar / 2) * eps; (z, eps) with save_noise."""
    name = name or f"{backend.NAME}.forward"
    check_reparam_inputs(name, mu, logvar)
    return backend.run_forward(mu, logvar, seed, offset, save_noise, name=name)


def forward_kl(backend, mu, logvar, seed, offset, save_noise=False, name=None):
    """(z, kl), or (z, kl, eps) with save_noise; kl a 0-d array."""
    name = name or f"{backend.NAME}.forward_kl"
    check_reparam_inputs(name, mu, logvar)
    return backend.run_forward_kl(mu, logvar, seed, offset, save_noise, name=name)


def backward(backend, grad_z, logvar, seed, offset, noise=None, name=None):
    """(grad_mu, grad_logvar); eps regenerated unless noise is given."""
    name = name or f"{backend.NAME}.backward"
    check_backward_inputs(name, grad_z, logvar, noise=noise)
    return backend.run_backward(grad_z, logvar, seed, offset, noise, name=name)


def backward_kl(backend, grad_z, mu, logvar, seed, offset, kl_weight, noise=None, name=None):
    """The backward plus kl_weight times the KL's gradient, in one pass."""
    name = name or f"{backend.NAME}.backward_kl"
    check_backward_inputs(name, grad_z, logvar, mu=mu, noise=noise)
    kl_weight = check_kl_weight(name, "kl_weight", kl_weight, grad_z)
    return backend.run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise, name=name)
