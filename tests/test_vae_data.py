"""vae.data: the IDX reader's errors each name the file, gzipped and plain files read alike, the
carried MNIST loads and verifies, and dynamic binarization draws Bernoulli pixels."""
import gzip
import hashlib
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vae import data
from vae.data import DataError
from vae_fixtures import idx_bytes, mnist, write_dataset, write_idx


@pytest.fixture(scope="module")
def carried():
    return mnist()


# --- one file ---------------------------------------------------------------------------------
def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="no such file") as err:
        data.read_idx(path)
    assert path in str(err.value)


@pytest.mark.parametrize("magic", [b"\x00\x00\x09\x03", b"\x12\x34\x56\x78", b"\x00\x00\x08\x00"])
def test_wrong_magic_names_file_and_number(tmp_path, magic):
    path = tmp_path / "bad-magic"
    path.write_bytes(magic + (2).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="magic number") as err:
        data.read_idx(str(path))
    assert str(path) in str(err.value)
    assert f"0x{magic.hex()}" in str(err.value)


def test_truncated_data_states_sizes_and_length(tmp_path):
    content = idx_bytes(np.arange(24, dtype=np.uint8).reshape(3, 2, 4))
    path = tmp_path / "truncated"
    path.write_bytes(content[:-5])
    with pytest.raises(DataError) as err:
        data.read_idx(str(path))
    message = str(err.value)
    assert str(path) in message
    assert "(3, 2, 4)" in message and f"{len(content) - 5}" in message


def test_overlong_data_is_refused(tmp_path):
    path = tmp_path / "overlong"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"\x00")
    with pytest.raises(DataError, match=r"dimensions \(2, 2\) need 16 bytes, the file has 17"):
        data.read_idx(str(path))


def test_truncated_header_is_refused(tmp_path):
    path = tmp_path / "short-header"
    path.write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8))[:9])
    with pytest.raises(DataError, match="declares 3 dimensions") as err:
        data.read_idx(str(path))
    assert str(path) in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(10, 20)))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(DataError, match="gzip stream is truncated or corrupt") as err:
        data.read_idx(str(path))
    assert str(path) in str(err.value)


def test_corrupt_gzip_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    packed = bytearray(gzip.compress(idx_bytes(rng.integers(0, 256, (20, 20), dtype=np.uint8))))
    middle = len(packed) // 2
    packed[middle:middle + 8] = bytes(b ^ 0xFF for b in packed[middle:middle + 8])
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="gzip stream is truncated or corrupt") as err:
        data.read_idx(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("compress", [False, True])
def test_gzipped_and_plain_files_read_the_same(tmp_path, compress):
    array = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
    path = write_idx(str(tmp_path / "file"), array, compress)
    read = data.read_idx(path)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, array)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_parse_idx_round_trips_any_shape(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(array)), array)


def test_md5_mismatch_names_file_and_both_sums(tmp_path):
    path = write_idx(str(tmp_path / "file"), np.arange(10, dtype=np.uint8))
    actual = hashlib.md5(idx_bytes(np.arange(10, dtype=np.uint8))).hexdigest()
    assert data.read_idx(path, expected_md5=actual).shape == (10,)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        data.read_idx(path, expected_md5="0" * 32)
    assert path in str(err.value) and actual in str(err.value) and "0" * 32 in str(err.value)


# --- a folder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_generated_folder_loads(tmp_path, compress):
    arrays = write_dataset(str(tmp_path), compress=compress)
    dataset = data.load(str(tmp_path))
    assert dataset.image_shape == (3, 3)
    assert dataset.train_images.shape == (6, 9) and dataset.test_images.shape == (4, 9)
    assert dataset.train_images.dtype == np.float32 and dataset.train_labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.train_images,
                                  (arrays["train_images"].reshape(6, 9) / np.float32(255)))
    np.testing.assert_array_equal(dataset.test_labels, arrays["test_labels"])


def test_missing_folder_is_named(tmp_path):
    folder = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no such data folder") as err:
        data.load(folder)
    assert folder in str(err.value)


def test_missing_file_in_folder_is_named(tmp_path):
    write_dataset(str(tmp_path))
    os.remove(tmp_path / data.FILES["test_labels"])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as err:
        data.load(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_image_and_label_counts_must_agree(tmp_path):
    write_dataset(str(tmp_path))
    write_idx(str(tmp_path / data.FILES["train_labels"]), np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="holds 6 images but train-labels-idx1-ubyte holds 5"):
        data.load(str(tmp_path))


def test_images_need_three_dimensions(tmp_path):
    write_dataset(str(tmp_path))
    write_idx(str(tmp_path / data.FILES["train_images"]), np.zeros((6, 9), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: expected 3 dimensions"):
        data.load(str(tmp_path))


def test_folder_md5sums_are_checked(tmp_path):
    write_dataset(str(tmp_path), compress=True)
    name = data.FILES["train_images"]
    with gzip.open(tmp_path / (name + ".gz"), "rb") as f:
        good = hashlib.md5(f.read()).hexdigest()
    (tmp_path / "MD5SUMS").write_text(f"# md5 of the decompressed files\n{good}  {name}\n")
    assert data.load(str(tmp_path)).train_images.shape == (6, 9)
    (tmp_path / "MD5SUMS").write_text(f"{'f' * 32}  {name}\n")
    with pytest.raises(DataError, match="checksum mismatch") as err:
        data.load(str(tmp_path))
    assert name in str(err.value) and good in str(err.value)


# --- the carried MNIST ------------------------------------------------------------------------
def test_carried_mnist_shapes_and_ranges(carried):
    assert carried.train_images.shape == (60000, 784)
    assert carried.test_images.shape == (10000, 784)
    assert carried.image_shape == (28, 28)
    for images in (carried.train_images, carried.test_images):
        assert images.dtype == np.float32
        assert images.min() == 0.0 and images.max() == 1.0
    for labels in (carried.train_labels, carried.test_labels):
        assert labels.dtype == np.int64
        assert set(np.unique(labels)) == set(range(10))
    assert carried.train_labels.shape == (60000,) and carried.test_labels.shape == (10000,)


def test_carried_mnist_checksums_verify():
    sums = data.read_md5sums(data.DEFAULT_DIR)
    assert set(data.FILES.values()) <= set(sums)     # so load() checked all four files
    for stem in data.FILES.values():
        with gzip.open(os.path.join(data.DEFAULT_DIR, stem + ".gz"), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == sums[stem], stem


def test_dynamic_binarize_is_bernoulli_of_the_pixels(carried):
    images = carried.train_images[:2000]
    binary = data.dynamic_binarize(images, np.random.default_rng(0))
    assert binary.shape == images.shape and binary.dtype == np.float32
    assert set(np.unique(binary)) == {0.0, 1.0}
    # mean over 1.6M pixels: its standard error is below 4e-4
    assert abs(binary.mean() - images.mean()) < 2e-3
    assert np.all(binary[images == 0] == 0) and np.all(binary[images == 1] == 1)
    again = data.dynamic_binarize(images, np.random.default_rng(1))
    assert not np.array_equal(binary, again)


def test_md5sums_listing_only_the_gzip_files_is_checked(tmp_path):
    import shutil
    from vae import data
    for stem in data.FILES.values():
        shutil.copy(os.path.join(data.DEFAULT_DIR, stem + ".gz"), tmp_path)
    (tmp_path / "MD5SUMS").write_text("0" * 32 + "  t10k-labels-idx1-ubyte.gz\n")
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch: MD5 of the file"):
        data.load(str(tmp_path))


# --- bounded reads ----------------------------------------------------------------------------
def _peak_bytes(function):
    """(what function() raised, the peak bytes traced while it ran): NumPy and bytes objects
    report their allocations to tracemalloc."""
    import tracemalloc
    tracemalloc.start()
    try:
        try:
            function()
        except DataError as err:
            raised = err
        else:
            raised = None
        return raised, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_inflating_past_its_header_is_refused_after_the_declared_bytes(tmp_path):
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    with gzip.open(path, "wb", compresslevel=1) as f:     # 4 KB on disk, 64 MiB inflated
        f.write(idx_bytes(np.zeros((10, 28, 28), np.uint8)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    assert os.path.getsize(path) < 1 << 20
    raised, peak = _peak_bytes(lambda: data.read_idx(path))
    assert "holds more data than its header declares" in str(raised) and path in str(raised)
    assert peak < 4 << 20


def test_raw_file_longer_than_its_header_is_refused_unread(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + bytes(32 << 20))
    raised, peak = _peak_bytes(lambda: data.read_idx(str(path)))
    assert "dimensions (2, 2) need 16 bytes, the file has" in str(raised)
    assert peak < 4 << 20


@pytest.mark.parametrize("shape", [(2**31,), (2**32 - 1,) * 4, (65536, 65536)])
@pytest.mark.parametrize("compress", [False, True])
def test_header_declaring_more_than_the_bound_is_refused(tmp_path, shape, compress):
    header = bytes([0, 0, data.UINT8_TYPE, len(shape)])
    header += b"".join(size.to_bytes(4, "big") for size in shape)
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(header + bytes(100)) if compress else header + bytes(100))
    with pytest.raises(DataError, match=f"declare {math.prod(shape)} bytes of data, more than "
                                        f"the {data.MAX_IDX_BYTES}") as err:
        data.read_idx(str(path))
    assert str(path) in str(err.value)


def test_short_gzip_content_states_sizes(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 4), np.uint8))[:-5]))
    with pytest.raises(DataError, match=r"dimensions \(3, 4\) need 24 bytes, the decompressed "
                                        r"file has 19"):
        data.read_idx(str(path))
