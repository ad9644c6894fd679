"""One kernel suite, parametrised over every backend, each held to kernels.reference.

Backends: reference, numba_cpu, numba_cuda (under the CUDA simulator unless MINIGRAD_REAL_GPU=1,
see conftest.py), cupy (needs CuPy and a GPU), cuda_c_host (tests/cuda_c_host.py, the CUDA C
built for the CPU). One that cannot load here is skipped with its reason.

- The uint32 Philox words are bit-identical to kernels.philox: Random123's known answers, random
  counters, block counters whose first word carries into the second.
- Floats are within the ulp bounds below; a backend agrees with itself bit for bit (save_noise or
  regenerate, contiguous or strided, one draw or two halves).
- Edge cases: n = 0, 1, not a multiple of 4; offset not a multiple of 4; a draw crossing block
  2^32; the last block index 2^64 - 1; NaN and Inf in logvar; dtype and shape mismatches.
- Dispatch: NumPy -> numba_cpu, $MINIGRAD_KERNEL_BACKEND, errors naming what is missing.
"""
import csv
import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import contract, philox, reference

# the dispatch registry's backends, and the CUDA C built for the host (tests/cuda_c_host.py:
# pytest puts tests/ on sys.path)
MODULES = {**kernels.BACKENDS, "cuda_c_host": "cuda_c_host"}
BACKENDS = list(MODULES)
DTYPES = [np.float32, np.float64]
KAT_PATH = Path(__file__).parent / "data" / "philox4x32_10_kat.csv"
with KAT_PATH.open() as f:
    KAT_ROWS = [[int(value, 16) for value in row] for row in list(csv.reader(f))[1:]]

# Ulp bounds against kernels.reference, in ulps of the dtype at the magnitude of the result, or,
# for a sum whose terms may cancel, at the sum of the terms' magnitudes (z = mu + sigma eps; the
# two terms of backward_kl's grad_logvar). Measured maxima, numba_cpu / cuda_c_host, over three
# draws of 2^22 elements (logvar uniform in +-3, +-20, +-80; mu, grad_z standard normal); the
# simulated numba_cuda is bit-identical to numba_cpu (the same compiled arithmetic):
#   eps          float32 4 / 3   float64 2 / 3
#   z            float32 6 / 6   float64 5 / 5
#   grad_logvar  float32 7 / 6   float64 5 / 6   (backward; backward_kl's: 6 / 6 and 4 / 5)
#   kl           float32 0 / 0   float64 8 / 18  (float64 sums in another order: grows with n)
#   backward_kl's grad_mu = grad_z + kl_weight mu: 0 / 0 (the same two roundings)
# float32 eps: kernels.numba.shared's polynomial log, sin, cos against the reference's float64
# rounded once (the polynomials are within 4 ulps of exact, NumPy's float32 exp within 2; see
# test_numba_libm.py); float64: kernels.numba.shared's float64 polynomials (fdlibm's methods, with
# compensated last steps) against NumPy's SIMD loops.
# GRAD_MU_KL_ULPS allows 1 for a GPU compiler fusing grad_z + kl_weight mu into one FMA.
EPS_ULPS = {np.float32: 4, np.float64: 3}
Z_ULPS = {np.float32: 6, np.float64: 5}
GRAD_LOGVAR_ULPS = {np.float32: 7, np.float64: 6}
KL_ULPS = {np.float32: 1, np.float64: 18}
GRAD_MU_KL_ULPS = 1


class Backend:
    """A backend module with NumPy in and out: arrays go to the backend's kind and come back."""

    def __init__(self, name, module):
        self.name, self.module = name, module
        # each backend's own Philox; the reference's is kernels.philox, the definition itself
        self.philox4x32 = philox.philox4x32 if name == "reference" else module.philox4x32
        self.cupy = importlib.import_module("cupy") if name == "cupy" else None
        simulated = name == "numba_cuda" and module.SIMULATED
        # the simulator runs about 1 ms per Philox block: a few thousand elements at most
        self.large = 700 if simulated else 1 << 15

    def __call__(self, function, *args, **kwargs):
        args = [self.cupy.asarray(a) if self.cupy and isinstance(a, np.ndarray) else a
                for a in args]
        kwargs = {key: self.cupy.asarray(a) if self.cupy and isinstance(a, np.ndarray) else a
                  for key, a in kwargs.items()}
        # a pass through the contract's checked entry point (kernels.contract.forward, ...)
        return self._numpy(getattr(contract, function)(self.module, *args, **kwargs))

    def _numpy(self, result):
        if isinstance(result, tuple):
            return tuple(self._numpy(r) for r in result)
        if self.cupy is not None:
            assert isinstance(result, self.cupy.ndarray), type(result)  # CuPy in, CuPy out
            return self.cupy.asnumpy(result)
        assert isinstance(result, np.ndarray), type(result)  # NumPy in, NumPy out
        return result


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    try:
        return Backend(request.param, importlib.import_module(MODULES[request.param]))
    except ImportError as err:  # no GPU, CuPy, numba-cuda or compiler: say which
        pytest.skip(f"{request.param} is unavailable: {err}")


def ulps(actual, expected, scale=None):
    """|actual - expected| in ulps of expected's dtype at max(|expected|, scale), elementwise;
    NaN and Inf must sit at the same places with the same signs, and count 0 there."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg="Inf")
    finite = np.isfinite(expected)
    magnitude = np.abs(expected.astype(np.float64))
    if scale is not None:
        magnitude = np.maximum(magnitude, np.abs(np.asarray(scale, np.float64)))
    spacing = np.spacing(magnitude.astype(expected.dtype)).astype(np.float64)
    error = np.zeros(expected.shape)
    error[finite] = (np.abs(actual[finite].astype(np.float64) - expected[finite])
                     / spacing[finite])
    return error


def assert_within(name, actual, expected, bound, scale=None):
    """Fail naming the worst element, its values and the bound."""
    error = ulps(actual, expected, scale)
    if error.size and error.max() > bound:
        worst = np.unravel_index(np.argmax(error), error.shape)
        raise AssertionError(f"{name}: {error.max():.2f} ulps > {bound} at {worst}: "
                             f"{actual[worst]!r} vs reference {expected[worst]!r}")


def inputs(shape, dtype, seed=0, logvar_scale=3.0):
    """mu, logvar, grad_z from NumPy's generator (not the one under test)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(shape).astype(dtype)
    logvar = rng.uniform(-logvar_scale, logvar_scale, shape).astype(dtype)
    return mu, logvar, rng.standard_normal(shape).astype(dtype)


def check_all_passes(backend, shape, dtype, seed, offset, logvar_scale=3.0, kl_weight=0.37,
                     arrays=None):
    """forward, forward_kl, backward and backward_kl against the reference at one draw (of
    inputs(...), or of `arrays` = (mu, logvar, grad_z))."""
    mu, logvar, grad_z = arrays or inputs(shape, dtype, seed % 1000, logvar_scale)
    eps_ref = reference.noise(shape, dtype, seed, offset)
    z_ref = contract.forward(reference, mu, logvar, seed, offset)
    sigma_eps = np.abs(np.exp(logvar / 2) * eps_ref)
    z, kl, eps = backend("forward_kl", mu, logvar, seed, offset, save_noise=True)
    assert z.shape == eps.shape == shape and z.dtype == eps.dtype == dtype
    assert kl.shape == () and kl.dtype == dtype
    assert_within("eps", eps, eps_ref, EPS_ULPS[dtype])
    assert_within("z", z, z_ref, Z_ULPS[dtype], np.abs(mu) + sigma_eps)
    kl_ref = contract.forward_kl(reference, mu, logvar, seed, offset)[1]
    assert_within("kl", kl, kl_ref, KL_ULPS[dtype])

    grad_mu, grad_logvar = backend("backward", grad_z, logvar, seed, offset)
    np.testing.assert_array_equal(grad_mu, grad_z)
    grad_logvar_ref = contract.backward(reference, grad_z, logvar, seed, offset)[1]
    assert_within("grad_logvar", grad_logvar, grad_logvar_ref, GRAD_LOGVAR_ULPS[dtype])

    grad_mu, grad_logvar = backend("backward_kl", grad_z, mu, logvar, seed, offset, kl_weight)
    mu_ref, logvar_ref = contract.backward_kl(reference, grad_z, mu, logvar, seed, offset,
                                              kl_weight)
    weight = dtype(kl_weight)
    assert_within("backward_kl grad_mu", grad_mu, mu_ref, GRAD_MU_KL_ULPS,
                  np.abs(grad_z) + np.abs(weight * mu))
    assert_within("backward_kl grad_logvar", grad_logvar, logvar_ref, GRAD_LOGVAR_ULPS[dtype],
                  np.abs(grad_z * sigma_eps / 2) + np.abs(weight * np.expm1(logvar) / 2))
    return z, eps


# ---------------------------------------------------------------------------------------------
# the uint32 stream
def test_philox_known_answers(backend):
    for row in KAT_ROWS:
        counter, key, expected = row[:4], row[4:6], row[6:]
        words = backend.philox4x32(np.array([counter], np.uint32), np.array(key, np.uint32))
        assert words.dtype == np.uint32
        assert words[0].tolist() == expected, f"counter {counter} key {key}"


def test_philox_random_counters_bit_identical(backend):
    rng = np.random.default_rng(4)
    key = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)
    counters = np.concatenate([
        rng.integers(0, 2**32, (300, 4), dtype=np.uint64).astype(np.uint32),
        philox.block_counters(2**32 - 5, 10),  # word 0 wraps, word 1 takes the carry
        philox.block_counters(2**64 - 3, 3)])  # the last block indices
    words = backend.philox4x32(counters, key)
    np.testing.assert_array_equal(words, philox.philox4x32(counters, key))


# ---------------------------------------------------------------------------------------------
# floats against the reference
EDGE_DRAWS = [  # (shape, offset)
    ((1,), 0), ((1,), 3), ((2,), 1),  # one element; a draw inside one block, ragged both ends
    ((3,), 1), ((5,), 2), ((6,), 3), ((8,), 0), ((9,), 4), ((33,), 7),
    ((2, 3, 5), 3), ((), 6),  # shapes are kept, 0-d included
    ((21,), 4 * (2**32 - 2) + 1),  # blocks 2^32 - 2 .. 2^32 + 3: the carry into counter word 1
    ((7,), 2**66 - 7),  # ends at the last stream position: block 2^64 - 1
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, offset", EDGE_DRAWS)
def test_edge_draws_match_the_reference(backend, shape, offset, dtype):
    check_all_passes(backend, shape, dtype, seed=2**64 - 11, offset=offset)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_draws_within_the_ulp_bounds(backend, dtype):
    for trial, logvar_scale in enumerate((3.0, 20.0, 80.0)):
        check_all_passes(backend, (backend.large + trial,), dtype, seed=1234 + trial,
                         offset=trial * 1001, logvar_scale=logvar_scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_draws(backend, dtype):
    empty = np.zeros((0, 3), dtype)
    z, kl, eps = backend("forward_kl", empty, empty, 5, 2**66, save_noise=True)
    assert z.shape == eps.shape == (0, 3) and z.dtype == dtype and kl == 0 and kl.dtype == dtype
    for grads in (backend("backward", empty, empty, 5, 7),
                  backend("backward_kl", empty, empty, empty, 5, 7, 0.5)):
        assert all(g.shape == (0, 3) and g.dtype == dtype for g in grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_in_logvar_propagate_as_in_the_reference(backend, dtype):
    logvar = np.array([np.nan, np.inf, -np.inf, 0.0, 200.0, -250.0, 1e30, -1e30, np.nan, 3.0],
                      dtype)
    mu = np.array([0.5, 0.5, 0.5, np.inf, 1.0, 1.0, -1.0, 2.0, np.nan, -np.inf], dtype)
    grad_z = np.array([1.0, 0.0, 1.0, 1.0, -1.0, 0.0, 1.0, np.inf, 1.0, 1.0], dtype)
    seed, offset = 17, 5
    for function, args in (("forward", (mu, logvar)), ("forward_kl", (mu, logvar)),
                           ("backward", (grad_z, logvar)),
                           ("backward_kl", (grad_z, mu, logvar))):
        tail = (0.25,) if function == "backward_kl" else ()
        with np.errstate(all="ignore"):  # NumPy warns where IEEE makes Inf and NaN
            actual = backend(function, *args, seed, offset, *tail)
            expected = getattr(contract, function)(reference, *args, seed, offset, *tail)
        if not isinstance(actual, tuple):
            actual, expected = (actual,), (expected,)
        for a, e in zip(actual, expected):
            ulps(a, e)  # NaN and Inf at the same places, with the same signs


def test_float32_subnormals_are_kept_as_in_the_reference(backend):
    # the GPU builds keep subnormals (kernels.cuda_c.nvrtc: --ftz=false; numba-cuda: no fastmath);
    # flushed, these z and gradients would be 0, hundreds of thousands of ulps from the reference
    tiny = np.finfo(np.float32).smallest_subnormal
    rng = np.random.default_rng(14)
    mu = (rng.integers(-2**20, 2**20, 64) * tiny).astype(np.float32)  # subnormal or 0
    logvar = rng.uniform(-205.0, -180.0, 64).astype(np.float32)  # sigma e^-45 .. e^-51
    grad_z = (rng.integers(-2**22, 2**22, 64) * tiny).astype(np.float32)
    with np.errstate(under="ignore"):
        check_all_passes(backend, (64,), np.float32, seed=77, offset=3, logvar_scale=None,
                         arrays=(mu, logvar, grad_z), kl_weight=tiny * 2**10)


# ---------------------------------------------------------------------------------------------
# a backend agrees with itself
@pytest.mark.parametrize("dtype", DTYPES)
def test_saved_noise_equals_regenerated_noise(backend, dtype):
    mu, logvar, grad_z = inputs((3, 7), dtype, seed=3)
    z, eps = backend("forward", mu, logvar, 8, 2, save_noise=True)
    np.testing.assert_array_equal(z, backend("forward", mu, logvar, 8, 2))
    zkl, kl, eps_kl = backend("forward_kl", mu, logvar, 8, 2, save_noise=True)
    np.testing.assert_array_equal(zkl, z)
    np.testing.assert_array_equal(eps_kl, eps)
    np.testing.assert_array_equal(kl, backend("forward_kl", mu, logvar, 8, 2)[1])
    for function, args in (("backward", (grad_z, logvar)),
                           ("backward_kl", (grad_z, mu, logvar))):
        tail = (0.5,) if function == "backward_kl" else ()
        regenerated = backend(function, *args, 8, 2, *tail)
        saved = backend(function, *args, 8, 2, *tail, noise=eps)
        for r, s in zip(regenerated, saved):
            np.testing.assert_array_equal(s, r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_draw_does_not_depend_on_how_it_is_split(backend, dtype):
    mu, logvar, _ = inputs((23,), dtype, seed=5)
    whole = backend("forward", mu, logvar, 99, 6)
    for cut in (1, 4, 9):  # 6 + cut: the second draw starts at every lane
        first = backend("forward", mu[:cut], logvar[:cut], 99, 6)
        second = backend("forward", mu[cut:], logvar[cut:], 99, 6 + cut)
        np.testing.assert_array_equal(np.concatenate([first, second]), whole)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs_are_read_in_c_order(backend, dtype):
    mu, logvar, grad_z = inputs((6, 8), dtype, seed=6)
    views = mu[::2, 1::3], logvar.T.copy().T[::2, 1::3], grad_z[::-2, ::3]  # (3, 3) each
    copies = [np.ascontiguousarray(v) for v in views]
    assert not any(v.flags.c_contiguous for v in views)
    np.testing.assert_array_equal(backend("forward", views[0], views[1], 4, 1),
                                  backend("forward", copies[0], copies[1], 4, 1))
    for view_result, copy_result in zip(
            backend("backward_kl", views[2], views[0], views[1], 4, 1, 0.5, noise=views[0]),
            backend("backward_kl", copies[2], copies[0], copies[1], 4, 1, 0.5, noise=copies[0])):
        np.testing.assert_array_equal(view_result, copy_result)


def test_grad_mu_is_a_new_array(backend):
    grad_z, logvar = np.ones(5), np.zeros(5)
    grad_mu, _ = backend("backward", grad_z, logvar, 0, 0)
    grad_mu += 1
    np.testing.assert_array_equal(grad_z, np.ones(5))


# ---------------------------------------------------------------------------------------------
# errors
@pytest.mark.parametrize("backend_name", ["numba_cpu", "numba_cuda"])
def test_compiled_backends_check_their_inputs(backend_name):
    module = pytest.importorskip(MODULES[backend_name], reason=f"{backend_name} unavailable")
    with pytest.raises(ValueError, match=r"forward: mu has shape \(2, 3\), logvar \(3,\)"):
        contract.forward(module, np.zeros((2, 3)), np.zeros(3), 0, 0)
    with pytest.raises(TypeError, match=r"forward_kl: mu is float32, logvar float64"):
        contract.forward_kl(module, np.zeros(2, np.float32), np.zeros(2), 0, 0)
    with pytest.raises(TypeError, match="int64"):
        contract.backward(module, np.zeros(2, np.int64), np.zeros(2, np.int64), 0, 0)
    with pytest.raises(ValueError, match=r"backward_kl: noise has shape \(3,\), logvar \(2,\)"):
        contract.backward_kl(module, np.zeros(2), np.zeros(2), np.zeros(2), 0, 0, 1.0,
                             noise=np.zeros(3))
    with pytest.raises(ValueError, match=r"offset .* is past 2\*\*66"):
        contract.forward(module, np.zeros(2), np.zeros(2), 0, 2**66 - 1)
    with pytest.raises(ValueError, match="seed is -1"):
        contract.backward(module, np.zeros(2), np.zeros(2), -1, 0)


BAD_KL_GRADS = [  # (kl_weight, error, what the message says)
    (None, TypeError, "kl_weight is NoneType None; expected a real scalar"),
    ("0.5", TypeError, "kl_weight is str '0.5'"),
    (True, TypeError, "kl_weight is bool True"),
    (np.bool_(False), TypeError, "kl_weight is bool"),
    (np.array([0.5]), TypeError, "kl_weight is ndarray"),
    (np.array(0.5), TypeError, "kl_weight is ndarray"),
    (0.5 + 0j, TypeError, "kl_weight is complex"),
    (np.nan, ValueError, "kl_weight is nan; it must be finite"),
    (-np.inf, ValueError, "kl_weight is -inf; it must be finite"),
    (10**400, ValueError, "kl_weight is an int of 1329 bits, past float64's range"),
]


@pytest.mark.parametrize("kl_weight, error, message", BAD_KL_GRADS,
                         ids=[message.split(";")[0] for _, _, message in BAD_KL_GRADS])
def test_backward_kl_refuses_a_kl_weight_that_is_not_a_real_finite_scalar(backend, kl_weight, error,
                                                                         message):
    # None was numba_cpu's "plain backward" (the KL's gradient silently dropped) and the
    # reference's NaN; the others were taken, or failed inside Numba
    mu, logvar, grad_z = inputs((5,), np.float64, seed=11)
    with pytest.raises(error, match=rf"{backend.name}\.backward_kl: {re.escape(message)}"):
        backend("backward_kl", grad_z, mu, logvar, 3, 1, kl_weight)
    if backend.name in kernels.available_backends():  # the dispatch checks before any backend
        with pytest.raises(error, match=rf"kernels\.backward_kl: {re.escape(message)}"):
            kernels.backward_kl(grad_z, mu, logvar, 3, 1, kl_weight, backend=backend.name)


def test_backward_kl_refuses_a_kl_weight_that_overflows_the_dtype(backend):
    mu, logvar, grad_z = inputs((5,), np.float32, seed=12)
    with pytest.raises(ValueError, match=r"kl_weight is 1e\+39, which is inf in float32"):
        backend("backward_kl", grad_z, mu, logvar, 3, 1, 1e39)


def test_the_kl_weight_has_one_name_from_the_op_to_the_kernels(backend):
    # the kernels called it kl_grad, the op kl_weight
    mu, logvar, grad_z = inputs((6,), np.float64, seed=13)
    expected = contract.backward_kl(reference, grad_z, mu, logvar, 3, 1, kl_weight=0.5)
    for actual, wanted in zip(backend("backward_kl", grad_z, mu, logvar, 3, 1, kl_weight=0.5),
                              expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12)
    with pytest.raises(TypeError, match="backward_kl: kl_weight is bool"):
        backend("backward_kl", grad_z, mu, logvar, 3, 1, kl_weight=True)


@pytest.mark.parametrize("kl_weight", [2, np.int64(2), np.float32(2.0), np.float64(2.0), 2.0])
def test_backward_kl_takes_python_and_numpy_real_scalars(backend, kl_weight):
    mu, logvar, grad_z = inputs((6,), np.float64, seed=13)
    expected = contract.backward_kl(reference, grad_z, mu, logvar, 3, 1, 2.0)
    actuals = backend("backward_kl", grad_z, mu, logvar, 3, 1, kl_weight)
    for actual, wanted in zip(actuals, expected):
        assert_within("backward_kl", actual, wanted, GRAD_LOGVAR_ULPS[np.float64],
                      np.abs(grad_z) + 2 * np.abs(mu) + np.abs(np.expm1(logvar)))


# ---------------------------------------------------------------------------------------------
# dispatch
def test_numpy_arrays_dispatch_to_numba_cpu(monkeypatch):
    monkeypatch.delenv(kernels.BACKEND_ENV_VAR, raising=False)
    mu, logvar, grad_z = inputs((40,), np.float32, seed=7)
    assert kernels.backend_for(mu) == "numba_cpu"
    from kernels.numba import cpu as numba_cpu
    np.testing.assert_array_equal(kernels.forward(mu, logvar, 3, 1),
                                  contract.forward(numba_cpu, mu, logvar, 3, 1))
    np.testing.assert_array_equal(kernels.backward(grad_z, logvar, 3, 1)[1],
                                  contract.backward(numba_cpu, grad_z, logvar, 3, 1)[1])


def test_other_array_types_dispatch_by_library():
    cupy_like = type("ndarray", (), {"__module__": "cupy"})()
    device_array = type("DeviceNDArray", (), {"__module__": "somelib",
                                              "__cuda_array_interface__": {}})()
    assert kernels.backend_for(cupy_like) == "cupy"
    assert kernels.backend_for(device_array) == "numba_cuda"
    assert kernels.backend_for([1.0, 2.0]) == "numba_cpu"


def test_environment_and_argument_override_the_array_type(monkeypatch):
    mu, logvar, grad_z = inputs((40,), np.float32, seed=8)
    monkeypatch.setenv(kernels.BACKEND_ENV_VAR, "reference")
    np.testing.assert_array_equal(kernels.forward_kl(mu, logvar, 3, 1)[0],
                                  contract.forward(reference, mu, logvar, 3, 1))
    monkeypatch.setenv(kernels.BACKEND_ENV_VAR, "nope")
    with pytest.raises(ValueError, match=r"'nope' \(from \$MINIGRAD_KERNEL_BACKEND\); known: "
                                         r"cupy, numba_cpu, numba_cuda, reference"):
        kernels.backward_kl(grad_z, mu, logvar, 3, 1, 0.5)
    # the argument wins over the environment
    np.testing.assert_array_equal(kernels.backward(grad_z, logvar, 3, 1, backend="reference")[1],
                                  contract.backward(reference, grad_z, logvar, 3, 1)[1])


def test_unavailable_backends_say_what_is_missing():
    missing = [name for name in ("numba_cuda", "cupy") if name not in kernels.available_backends()]
    if not missing:
        pytest.skip("numba_cuda and cupy are both available here")
    for name in missing:
        with pytest.raises(kernels.BackendUnavailableError,
                           match=rf"kernels.forward: kernel backend '{name}' \(from backend\) is "
                                 r"unavailable: .*(GPU|CuPy|numba-cuda)"):
            kernels.forward(np.zeros(2), np.zeros(2), 0, 0, backend=name)


def _import_numba_cuda_fresh():
    """Execute kernels/numba/gpu.py as a new module (sys.modules keeps the loaded one)."""
    spec = importlib.util.find_spec("kernels.numba.gpu")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numba_cuda_names_a_missing_gpu_or_numba_cuda(monkeypatch):
    cuda = pytest.importorskip("numba.cuda")
    from numba.core import config
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(ImportError, match="no CUDA GPU.*NUMBA_ENABLE_CUDASIM=1"):
        _import_numba_cuda_fresh()
    monkeypatch.setattr(cuda, "implementation", "Built-in", raising=False)
    with pytest.raises(ImportError, match="needs the numba-cuda package"):
        _import_numba_cuda_fresh()


def test_numba_cuda_keeps_device_arrays_on_the_device():
    module = pytest.importorskip("kernels.numba.gpu", reason="numba_cuda unavailable")
    if module.SIMULATED:
        pytest.skip("the simulator's device arrays have no __cuda_array_interface__")
    from numba import cuda
    mu, logvar, grad_z = inputs((3, 5), np.float32, seed=9)
    on_device = [cuda.to_device(a) for a in (mu, logvar, grad_z)]
    z, kl = contract.forward_kl(module, on_device[0], on_device[1], 2, 1)
    assert cuda.is_cuda_array(z) and cuda.is_cuda_array(kl) and z.shape == (3, 5)
    np.testing.assert_array_equal(z.copy_to_host(), contract.forward(module, mu, logvar, 2, 1))
    np.testing.assert_array_equal(kl.copy_to_host(),
                                  contract.forward_kl(module, mu, logvar, 2, 1)[1])
    grads = contract.backward_kl(module, on_device[2], on_device[0], on_device[1], 2, 1, 0.5)
    host_grads = contract.backward_kl(module, grad_z, mu, logvar, 2, 1, 0.5)
    for device_grad, host_grad in zip(grads, host_grads):
        assert cuda.is_cuda_array(device_grad)
        np.testing.assert_array_equal(device_grad.copy_to_host(), host_grad)
