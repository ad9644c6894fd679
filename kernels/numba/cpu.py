"""The numba_cpu backend: one fused @njit(parallel=True) loop per pass over Philox blocks.

Each iteration turns one Philox block into 4 normals and those into 4 outputs, in registers:
eps never touches memory unless save_noise asks for it. The arithmetic is kernels.numba.shared's
(the same functions the CUDA kernel calls); this module only walks the blocks and allocates.

Bytes per element (itemsize b = 4 or 8):   forward 3b (mu, logvar in; z out), +b with save_noise
backward 4b (grad_z, logvar in; grad_mu, grad_logvar out), +b with a saved noise; the KL variants
also read mu in the backward.

The loops run full blocks in a prange and the ragged first and last block (an offset or size that
is not a multiple of 4) after it. Block and element indices are uint64 throughout, which is what
lets LLVM vectorise the loop over blocks (16 blocks per vector iteration on the project's AVX-512
machines). Inputs that are not C-contiguous are copied to C order first; outputs are new
C-contiguous arrays of the input's shape.

The loops are cached on disk (cache=True), stamped with a hash of every file whose functions
they inline (kernels.numba.jit): an edit to shared.py or libm.py recompiles them.
"""
import types

import numba
import numpy as np

from kernels import contract
from kernels.numba import patches  # noqa: F401  (the cache's stamp, installed first)
from kernels.numba.shared import (backward_block, block_lanes, draw_position, forward_block,
                                  philox4x32_10)

NAME = "numba_cpu"
# KL partial sums: one float64 per chunk of CHUNK_BLOCKS blocks, so that the loop over a chunk's
# blocks stays a plain vectorisable loop (a float64 += chain across blocks would not vectorise).
CHUNK_BLOCKS = np.uint64(256)
# a full block's lanes are ZERO <= lane < FOUR. Globals, because Numba freezes globals into
# constants, so the lane tests fold away; a local would reach the prange body as a parameter.
ZERO = np.uint64(0)
FOUR = np.uint64(4)


@numba.njit(cache=True)
def _full_blocks(s, n):
    """(j_lo, count): blocks j_lo .. j_lo + count - 1 hold 4 elements each (uint64)."""
    j_lo = np.uint64(1) if s > ZERO else ZERO
    j_end = (s + n) // FOUR  # blocks j < j_end end inside the draw
    return j_lo, (j_end - j_lo if j_end > j_lo else ZERO)


@numba.njit(cache=True)
def _ragged_blocks(s, n):
    """(first, last, j_last): whether block 0 and block j_last (the last one) are ragged; a
    single ragged block is reported once, as the first."""
    j_last = (s + n + np.uint64(3)) // FOUR - np.uint64(1)
    first = s > ZERO
    last = (s + n) % FOUR != ZERO and not (first and j_last == ZERO)
    return first, last, j_last


@numba.njit(cache=True)
def _sum4(values, count):
    """values[:count].sum() in float64 with 4 accumulators, to hide the add latency."""
    acc0 = acc1 = acc2 = acc3 = 0.0
    k = ZERO
    while k + FOUR <= count:
        acc0 += values[k]
        acc1 += values[k + np.uint64(1)]
        acc2 += values[k + np.uint64(2)]
        acc3 += values[k + np.uint64(3)]
        k += FOUR
    while k < count:
        acc0 += values[k]
        k += np.uint64(1)
    return (acc0 + acc1) + (acc2 + acc3)


@numba.njit(parallel=True, cache=True)
def _forward_loop(mu, logvar, z, eps_out, kl, key0, key1, first_block, s, n):
    """forward_block over every block of the draw; returns the KL sum (0 when kl is None)."""
    j_lo, count = _full_blocks(s, n)
    num_chunks = (count + CHUNK_BLOCKS - np.uint64(1)) // CHUNK_BLOCKS
    partials = np.zeros(num_chunks + np.uint64(1))  # float64; the last slot: ragged blocks
    for cc in numba.prange(num_chunks):
        start = np.uint64(cc) * CHUNK_BLOCKS
        stop = start + CHUNK_BLOCKS if start + CHUNK_BLOCKS < count else count
        terms = np.empty(CHUNK_BLOCKS)  # one float64 per block: the block loop stays vectorisable
        for jj in range(start, stop):
            j = j_lo + jj
            terms[jj - start] = forward_block(mu, logvar, z, eps_out, kl, key0, key1,
                                              first_block + j, FOUR * j - s, ZERO, FOUR)
        partials[cc] = _sum4(terms, stop - start)
    first, last, j_last = _ragged_blocks(s, n)
    if first:
        base, lo, hi = block_lanes(ZERO, s, n)
        partials[num_chunks] += forward_block(mu, logvar, z, eps_out, kl, key0, key1,
                                              first_block, base, lo, hi)
    if last:
        base, lo, hi = block_lanes(j_last, s, n)
        partials[num_chunks] += forward_block(mu, logvar, z, eps_out, kl, key0, key1,
                                              first_block + j_last, base, lo, hi)
    return partials.sum()


@numba.njit(parallel=True, cache=True)
def _backward_loop(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                   first_block, s, n):
    """backward_block over every block of the draw."""
    j_lo, count = _full_blocks(s, n)
    for jj in numba.prange(count):
        j = j_lo + np.uint64(jj)
        backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                       first_block + j, FOUR * j - s, ZERO, FOUR)
    first, last, j_last = _ragged_blocks(s, n)
    if first:
        base, lo, hi = block_lanes(ZERO, s, n)
        backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                       first_block, base, lo, hi)
    if last:
        base, lo, hi = block_lanes(j_last, s, n)
        backward_block(grad_z, mu, logvar, weight, grad_mu, grad_logvar, noise, key0, key1,
                       first_block + j_last, base, lo, hi)


@numba.njit(parallel=True, cache=True)
def _philox_loop(counters, key0, key1, out):
    for r in numba.prange(counters.shape[0]):
        words = philox4x32_10(np.uint64(counters[r, 0]), np.uint64(counters[r, 1]),
                              np.uint64(counters[r, 2]), np.uint64(counters[r, 3]), key0, key1)
        for k in range(4):
            out[r, k] = np.uint32(words[k])


def _single_threaded(loop):
    """The same loop compiled without threads (prange runs as range), cached under its own name.

    NOTE: after a parallel loop returns, its worker threads keep spinning for a while and fight
    OpenBLAS's spinning threads for the cores: on 2 cores a VAE training step (20 x 128 draws
    between matrix products) went from about 6 ms to 20 ms.  Small draws gain nothing from
    threads anyway, so below PARALLEL_MIN_ELEMENTS they run on the calling thread.
    """
    fn = loop.py_func
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"  # a cache file of its own
    return numba.njit(cache=True, error_model="numpy")(copy)  # as a prange body: IEEE division


PARALLEL_MIN_ELEMENTS = 1 << 16
_forward_loop_serial = _single_threaded(_forward_loop)
_backward_loop_serial = _single_threaded(_backward_loop)


def _flat(x):
    """x as a 1-D C-contiguous array: a view when x is C-contiguous, else a copy."""
    return np.ascontiguousarray(x).reshape(-1)


def _forward(name, mu, logvar, seed, offset, save_noise, kl):
    """(z, kl sum, eps or None) by _forward_loop; kl is None (skip the KL) or True."""
    mu, logvar = np.asarray(mu), np.asarray(logvar)
    key0, key1, first, s = draw_position(name, mu.size, seed, offset)
    z = np.empty(mu.shape, mu.dtype)
    eps = np.empty(mu.shape, mu.dtype) if save_noise else None
    total = 0.0
    if mu.size:
        loop = _forward_loop if mu.size >= PARALLEL_MIN_ELEMENTS else _forward_loop_serial
        total = loop(_flat(mu), _flat(logvar), z.reshape(-1),
                     None if eps is None else eps.reshape(-1), kl, key0, key1, first, s,
                     np.uint64(mu.size))
    return z, total, eps


def _backward(name, grad_z, mu, logvar, seed, offset, kl_weight, noise):
    """(grad_mu, grad_logvar) by _backward_loop; mu and kl_weight None for the plain backward."""
    grad_z, logvar = np.asarray(grad_z), np.asarray(logvar)
    mu = None if mu is None else np.asarray(mu)
    noise = None if noise is None else np.asarray(noise)
    key0, key1, first, s = draw_position(name, grad_z.size, seed, offset)
    grad_mu = np.empty(grad_z.shape, grad_z.dtype)
    grad_logvar = np.empty(grad_z.shape, grad_z.dtype)
    if grad_z.size:
        weight = None if kl_weight is None else grad_z.dtype.type(kl_weight)
        loop = _backward_loop if grad_z.size >= PARALLEL_MIN_ELEMENTS else _backward_loop_serial
        loop(_flat(grad_z), None if mu is None else _flat(mu), _flat(logvar), weight,
             grad_mu.reshape(-1), grad_logvar.reshape(-1),
             None if noise is None else _flat(noise), key0, key1, first, s,
             np.uint64(grad_z.size))
    return grad_mu, grad_logvar


# the contract: run_* trust their arguments (checked by kernels' dispatch, or below)
def run_forward(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward"):
    z, _, eps = _forward(name, mu, logvar, seed, offset, save_noise, None)
    return (z, eps) if save_noise else z


def run_forward_kl(mu, logvar, seed, offset, save_noise=False, name=f"{NAME}.forward_kl"):
    z, total, eps = _forward(name, mu, logvar, seed, offset, save_noise, True)
    kl = np.asarray(total, dtype=z.dtype)
    return (z, kl, eps) if save_noise else (z, kl)


def run_backward(grad_z, logvar, seed, offset, noise=None, name=f"{NAME}.backward"):
    return _backward(name, grad_z, None, logvar, seed, offset, None, noise)


def run_backward_kl(grad_z, mu, logvar, seed, offset, kl_weight, noise=None,
                    name=f"{NAME}.backward_kl"):
    return _backward(name, grad_z, mu, logvar, seed, offset, kl_weight, noise)


def philox4x32(counters, key):
    """kernels.philox.philox4x32 computed by kernels.numba.shared's rounds: (n, 4), (2,) uint32."""
    counters, key = contract.check_philox_inputs(f"{NAME}.philox4x32", counters, key)
    out = np.empty(counters.shape, np.uint32)
    if len(counters):
        _philox_loop(np.ascontiguousarray(counters), np.uint64(key[0]), np.uint64(key[1]), out)
    return out
