"""kernels.philox: known answers, counter layout, split invariance, Box-Muller, statistics."""
import csv
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels.philox import (block_counters, box_muller, normal, normal_words, philox4x32,
                            seed_to_key, uint32_to_uniform)

# Random123's kat_vectors + old_kat_vectors, carried in the repository next to this file.
KAT_PATH = Path(__file__).parent / "data" / "philox4x32_10_kat.csv"
with KAT_PATH.open() as f:
    KAT_ROWS = [[int(value, 16) for value in row] for row in list(csv.reader(f))[1:]]

MASK32 = 0xFFFFFFFF
seeds = st.integers(0, 2**64 - 1)
# offsets near 0, around the block index 2^32 (carry into counter word 1), and anywhere below 2^66
offsets = st.one_of(st.integers(0, 64), st.integers(4 * 2**32 - 64, 4 * 2**32 + 64),
                    st.integers(0, 2**66 - 256))


def philox_scalar(counter, key):
    """Philox4x32-10 on Python ints, straight from the definition: the independent reference."""
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x0, 0xCD9E8D57 * x2
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ k0, p1 & MASK32, (p0 >> 32) ^ x3 ^ k1, p0 & MASK32
        k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return [x0, x1, x2, x3]


def test_kat_file_has_all_rows():
    assert len(KAT_ROWS) == 55


@pytest.mark.parametrize("row", KAT_ROWS, ids=[f"kat{i}" for i in range(len(KAT_ROWS))])
def test_known_answers(row):
    counter, key, expected = row[:4], row[4:6], row[6:]
    out = philox4x32(np.array([counter], dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32 and out.shape == (1, 4)
    got = [int(w) for w in out[0]]
    assert got == expected, f"counter {counter} key {key}: got {[hex(w) for w in got]}"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, MASK32), min_size=4, max_size=4), min_size=1, max_size=8),
       st.lists(st.integers(0, MASK32), min_size=2, max_size=2))
def test_vectorised_matches_scalar_python(counters, key):
    out = philox4x32(np.array(counters, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.tolist() == [philox_scalar(c, key) for c in counters]


def test_seed_to_key_splits_low_then_high_word():
    assert seed_to_key(0x0123456789ABCDEF).tolist() == [0x89ABCDEF, 0x01234567]
    assert seed_to_key(np.uint64(2**64 - 1)).tolist() == [MASK32, MASK32]
    assert seed_to_key(7).dtype == np.uint32


def test_block_counters_carry_into_word_1():
    expected = np.array([[2**32 - 2, 0, 0, 0], [2**32 - 1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]],
                        dtype=np.uint32)
    counters = block_counters(2**32 - 2, 4)
    np.testing.assert_array_equal(counters, expected)
    key = seed_to_key(2**40 + 17)
    np.testing.assert_array_equal(philox4x32(counters, key), philox4x32(expected, key))


def test_block_counters_reach_the_last_64_bit_block():
    np.testing.assert_array_equal(block_counters(2**64 - 1, 1), [[MASK32, MASK32, 0, 0]])
    assert block_counters(5, 0).shape == (0, 4)
    with pytest.raises(ValueError, match="64-bit"):
        block_counters(2**64 - 1, 2)


def test_normal_words_follow_block_and_lane():
    seed, block = 2**63 + 5, 2**32 - 1
    key = [seed & MASK32, seed >> 32]
    # normals 4 * block + 1 .. 4 * block + 5: lanes 1..3 of block 2^32 - 1, lanes 0..1 of block 2^32
    drawn = normal_words(5, seed, 4 * block + 1)
    assert drawn.dtype == np.uint32
    assert drawn[:3].tolist() == philox_scalar([MASK32, 0, 0, 0], key)[1:]
    assert drawn[3:].tolist() == philox_scalar([0, 1, 0, 0], key)[:2]


@settings(max_examples=60, deadline=None)
@given(seeds, offsets, st.integers(0, 40), st.data())
def test_draws_do_not_depend_on_how_they_are_split(seed, offset, n, data):
    split = data.draw(st.integers(0, n), label="split")
    for draw in (normal_words, normal):
        pieces = np.concatenate([draw(split, seed, offset), draw(n - split, seed, offset + split)])
        np.testing.assert_array_equal(pieces, draw(n, seed, offset))


@settings(max_examples=20, deadline=None)
@given(seeds, offsets, st.integers(1, 20))
def test_normals_are_box_muller_of_their_words(seed, offset, n):
    first = offset // 4
    blocks = philox4x32(block_counters(first, (offset + n - 1) // 4 - first + 1), seed_to_key(seed))
    expected = box_muller(blocks).ravel()[offset - 4 * first:][:n]
    np.testing.assert_array_equal(normal(n, seed, offset), expected)


def test_uniform_is_exact_and_in_the_open_interval():
    x = np.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], dtype=np.uint32)
    u = uint32_to_uniform(x)
    assert u.dtype == np.float64
    assert u[0] == 2.0**-33 and u[-1] == 1 - 2.0**-33
    assert np.all((u > 0) & (u < 1))
    exact = [(Fraction(int(xi)) + Fraction(1, 2)) / 2**32 for xi in x]
    assert [Fraction(float(ui)) for ui in u] == exact


def test_box_muller_matches_scalar_math():
    words = philox4x32(block_counters(1000, 16), seed_to_key(12345))
    words[0] = [0, 0, MASK32, MASK32]  # the extreme uniforms on both pairs
    normals = box_muller(words)
    for row, out in zip(words.tolist(), normals):
        u = [(w + 0.5) * 2.0**-32 for w in row]
        r0, r2 = math.sqrt(-2.0 * math.log(u[0])), math.sqrt(-2.0 * math.log(u[2]))
        t1, t3 = 2.0 * math.pi * u[1], 2.0 * math.pi * u[3]
        expected = [r0 * math.sin(t1), r0 * math.cos(t1), r2 * math.sin(t3), r2 * math.cos(t3)]
        # NumPy's SIMD log/sin/cos may differ from libm in the last ulp
        np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-15)


def test_one_million_normals_look_standard_normal():
    n = 10**6
    x = normal(n, seed=20240601, offset=3)
    assert np.all(np.isfinite(x))
    # 5 sigma: the sample mean has sd 1/sqrt(n), the sample variance about sqrt(2/n)
    assert abs(x.mean()) < 5 / math.sqrt(n), x.mean()
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n), x.var()
    # Kolmogorov-Smirnov against Phi; P(sqrt(n) D > 1.95) is about 1e-3 under the null
    x.sort()
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    ecdf_hi = np.arange(1, n + 1) / n
    statistic = max(np.max(ecdf_hi - cdf), np.max(cdf - (ecdf_hi - 1 / n)))
    assert statistic < 1.95 / math.sqrt(n), statistic


@pytest.mark.parametrize("offset", [0, 7, 4 * 2**32 - 3])
def test_float32_normals_are_float64_normals_rounded(offset):
    single = normal(1001, 99, offset, dtype=np.float32)
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single, normal(1001, 99, offset).astype(np.float32))


def test_empty_draw():
    assert normal(0, 1, 5).shape == (0,) and normal(0, 1, 5).dtype == np.float64
    assert normal(0, 1, 5, np.float32).dtype == np.float32
    assert normal_words(0, 1, 2**66).dtype == np.uint32


def test_last_block_of_the_stream():
    assert normal(4, 3, 2**66 - 4).shape == (4,)
    with pytest.raises(ValueError, match="2\\*\\*66"):
        normal(5, 3, 2**66 - 4)


def test_philox_rejects_bad_counters_and_keys():
    key = np.zeros(2, dtype=np.uint32)
    with pytest.raises(TypeError, match="int64"):
        philox4x32(np.zeros((1, 4), dtype=np.int64), key)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        philox4x32(np.zeros(3, dtype=np.uint32), key)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        philox4x32(np.zeros((2, 3), dtype=np.uint32), key)
    with pytest.raises(ValueError, match=r"key has shape \(3,\)"):
        philox4x32(np.zeros((1, 4), dtype=np.uint32), np.zeros(3, dtype=np.uint32))
    with pytest.raises(TypeError, match="float64"):
        box_muller(np.zeros((1, 4)))
    with pytest.raises(TypeError, match="int32"):
        uint32_to_uniform(np.zeros(2, dtype=np.int32))


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**64, ValueError), (True, TypeError),
                                         (1.5, TypeError), ("3", TypeError)])
def test_bad_seeds(seed, error):
    with pytest.raises(error, match="seed"):
        seed_to_key(seed)
    with pytest.raises(error, match="seed"):
        normal(1, seed, 0)


@pytest.mark.parametrize("offset, error",
                         [(-1, ValueError), (2.0, TypeError), (np.bool_(True), TypeError)])
def test_bad_offsets(offset, error):
    with pytest.raises(error, match="offset"):
        normal(1, 0, offset)


def test_bad_n_and_dtype():
    with pytest.raises(ValueError, match="n is -1"):
        normal(-1, 0, 0)
    with pytest.raises(TypeError, match="float16"):
        normal(4, 0, 0, dtype=np.float16)
    with pytest.raises(TypeError, match="int64"):
        normal(4, 0, 0, dtype=np.int64)
    assert normal(2, np.uint64(5), np.int32(3)).shape == (2,)
