"""Philox4x32-10 in vectorised NumPy, and the stream of normals every backend must reproduce.

Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) maps a
counter (x0, x1, x2, x3) and a key (k0, k1), all uint32 words, to four uint32 words. All arithmetic
is mod 2^32; hi(p) and lo(p) are the top and bottom words of a full 64-bit product p. Ten rounds of

    (x0, x1, x2, x3) <- (hi(M1 x2) ^ x1 ^ k0, lo(M1 x2), hi(M0 x0) ^ x3 ^ k1, lo(M0 x0))

with M0 = 0xD2511F53, M1 = 0xCD9E8D57, where round r uses the key (k0 + r W0, k1 + r W1) and
W0 = 0x9E3779B9, W1 = 0xBB67AE85. Checked against Random123's known answers in
tests/data/philox4x32_10_kat.csv.

The stream. Keys, counters and lanes follow cuRAND (curand_init(seed, 0, 4 b), then
curand_normal4), so the uint32 words are cuRAND's; the uniforms and the float64 Box-Muller are
this module's own, so the normals are not cuRAND's float32 ones.

    key        = (seed mod 2^32, seed // 2^32)                        seed in [0, 2^64)
    block b    = philox4x32((b mod 2^32, b // 2^32, 0, 0), key)       b in [0, 2^64)
    u          = (x + 0.5) * 2^-32 for each word x, in float64        exact, in (0, 1)
    normals    = (r0 sin t1, r0 cos t1, r2 sin t3, r2 cos t3)         ri = sqrt(-2 ln ui)
                                                                      ti = 2 pi ui
    normal k   = lane k % 4 of the normals of block k // 4

A draw of n normals at offset o is normals o .. o+n-1, computed in float64 and rounded once to the
requested dtype; it depends only on (seed, o, n), never on how a longer draw was split.

This module is the definition every backend must match bit for bit: the uint32 words always, and
the normals wherever the backend's float64 log/sin/cos agree with NumPy's (elsewhere to the last
ulps those functions differ by).
"""
import numpy as np

from kernels.contract import (check_blocks, check_float_dtype, check_int, check_philox_inputs,
                              check_words, stream_position)

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_ROUNDS = 10
_MASK32 = 0xFFFFFFFF


def _mulhilo(m, x):
    """(hi, lo): the top and bottom uint32 words of the 64-bit products m * x."""
    product = m * x.astype(np.uint64)  # a 32x32-bit product is < 2^64: uint64 never wraps
    hi = (product >> np.uint64(32)).astype(np.uint32)
    lo = (product & np.uint64(_MASK32)).astype(np.uint32)
    return hi, lo


def philox4x32(counters, key):
    """Philox4x32-10 of each counter row under one key: (n, 4), (2,) uint32 -> (n, 4) uint32."""
    counters, key = check_philox_inputs("philox4x32", counters, key)
    x0, x1, x2, x3 = (counters[:, i] for i in range(4))  # (n,) each
    k0, k1 = int(key[0]), int(key[1])
    for r in range(_ROUNDS):
        # round r's key is the key bumped r times; Python ints, then wrapped mod 2^32
        rk0 = np.uint32((k0 + r * _W0) & _MASK32)
        rk1 = np.uint32((k1 + r * _W1) & _MASK32)
        hi0, lo0 = _mulhilo(_M0, x0)
        hi1, lo1 = _mulhilo(_M1, x2)
        # uint32 XOR stays uint32; the tuple assignment reads every old word first
        x0, x1, x2, x3 = hi1 ^ x1 ^ rk0, lo1, hi0 ^ x3 ^ rk1, lo0
    return np.stack([x0, x1, x2, x3], axis=1)


def seed_to_key(seed):
    """Key (seed mod 2^32, seed // 2^32) as uint32 (2,), for an int seed in [0, 2^64)."""
    seed = check_int("seed_to_key", "seed", seed, bits=64)
    return np.array([seed & _MASK32, seed >> 32], dtype=np.uint32)


def block_counters(first_block, num_blocks):
    """Counters (b mod 2^32, b // 2^32, 0, 0) for b = first_block .. first_block + num_blocks - 1.

    The block index b is a 64-bit number: the carry out of word 0 lands in word 1.
    """
    first_block = check_int("block_counters", "first_block", first_block, bits=64)
    num_blocks = check_int("block_counters", "num_blocks", num_blocks)
    if first_block + num_blocks > 2**64:
        raise ValueError(f"block_counters: blocks {first_block} .. {first_block + num_blocks - 1} "
                         "pass 2**64 - 1; block indices are 64-bit")
    # uint64 holds every index (checked above), so the carry is exact before the split
    blocks = np.uint64(first_block) + np.arange(num_blocks, dtype=np.uint64)  # (num_blocks,)
    counters = np.zeros((num_blocks, 4), dtype=np.uint32)
    counters[:, 0] = (blocks & np.uint64(_MASK32)).astype(np.uint32)
    counters[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    return counters


def uint32_to_uniform(x):
    """u = (x + 0.5) * 2^-32 in float64: exact, and in (0, 1) for every uint32 x."""
    x = check_words("uint32_to_uniform", "x", x)
    # NOTE: x + 0.5 needs 33 significant bits (float64 has 53) and 2^-32 only shifts the exponent,
    # so u is exact; the extremes are 2^-33 and 1 - 2^-33, both safe for log.
    return (x.astype(np.float64) + 0.5) * 2.0**-32


def box_muller(words):
    """(n, 4) uint32 -> (n, 4) float64 normals, cuRAND's curand_normal4 layout (sine first).

    u = uint32_to_uniform(words); lanes (0, 1): r = sqrt(-2 ln u0), (r sin 2 pi u1, r cos 2 pi u1);
    lanes (2, 3): the same with u2, u3.
    """
    words = check_blocks("box_muller", "words", words)
    u = uint32_to_uniform(words)  # (n, 4)
    radius = np.sqrt(-2.0 * np.log(u[:, 0::2]))  # (n, 2) from lanes 0 and 2
    angle = (2.0 * np.pi) * u[:, 1::2]  # (n, 2) from lanes 1 and 3
    normals = np.empty_like(u)
    normals[:, 0::2] = radius * np.sin(angle)  # sine first, as curand_normal4
    normals[:, 1::2] = radius * np.cos(angle)
    return normals


def _stream_blocks(name, n, seed, offset):
    """(blocks, start): the Philox blocks (m, 4) holding words offset .. offset+n-1 of the stream,
    and the index of word `offset` in blocks.ravel()."""
    n = check_int(name, "n", n)
    first, start, key0, key1 = stream_position(name, n, seed, offset)
    key = np.array([key0, key1], dtype=np.uint32)
    if n == 0:  # no blocks at all, even where offset // 4 is past the last block
        return np.zeros((0, 4), dtype=np.uint32), 0
    # only the blocks the draw touches: offset // 4 .. (offset + n - 1) // 4
    num_blocks = (start + n - 1) // 4 + 1
    return philox4x32(block_counters(first, num_blocks), key), start


def normal_words(n, seed, offset):
    """The uint32 words (n,) behind normals offset .. offset+n-1: lane k % 4 of block k // 4."""
    blocks, start = _stream_blocks("normal_words", n, seed, offset)
    return blocks.ravel()[start:start + n].copy()  # a copy: a view would keep every block alive


def normal(n, seed, offset, dtype=np.float64):
    """Normals offset .. offset+n-1 of the stream keyed by seed, (n,) of dtype (float32 or float64).

    Computed in float64 and rounded once to dtype, so float32 draws are float64 draws rounded.
    """
    dtype = check_float_dtype("normal", "dtype", dtype)
    blocks, start = _stream_blocks("normal", n, seed, offset)
    return box_muller(blocks).ravel()[start:start + n].astype(dtype)  # astype copies, rounding once
