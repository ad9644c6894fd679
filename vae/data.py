"""MNIST-style data: a validating IDX reader and the four-file dataset layout.

IDX (LeCun's format): two zero bytes, a type byte (0x08 = uint8), a byte giving the number of
dimensions d, then d big-endian uint32 sizes, then the data in C order.  Files may be gzipped.
Every failure names the file and what was expected: a missing file, a wrong magic number, sizes
that disagree with the file's length, a truncated or corrupt gzip stream, image and label counts
that disagree, and (where the folder has an ``MD5SUMS``) a checksum mismatch.

Reads are bounded by the header: it is read (and decompressed) first, its sizes must declare at
most MAX_IDX_BYTES, and then at most the declared bytes plus one are read or decompressed, so a
small gzip file that inflates to gigabytes costs one byte past its declared size, not gigabytes.
"""
import dataclasses
import gzip
import hashlib
import math
import os
import zlib

import numpy as np

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "data", "mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
UINT8_TYPE = 0x08
# NOTE: 1 GiB of pixels is 1.4 million 28x28 images, 23 times MNIST's training set (and 4 GiB
# once loaded as float32): more is a corrupt or hostile header, not a data set for this VAE
MAX_IDX_BYTES = 1 << 30


class DataError(ValueError):
    """A data file is missing, malformed, or fails its checksum."""


@dataclasses.dataclass
class Dataset:
    """Images as float32 rows in [0, 1] (N, rows * cols) and labels as int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple
    source: str


def parse_idx(content, path="<bytes>"):
    """Decode IDX bytes into a uint8 array, checking the magic and that the sizes fit the length."""
    shape, header = _parse_header(content, path)
    expected = header + math.prod(shape)
    if len(content) != expected:
        raise DataError(f"{path}: dimensions {shape} need {expected} bytes, the file has "
                        f"{len(content)}")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def _parse_header(content, path):
    """(shape, header length) from the first bytes of an IDX file: checks the magic number, that
    the header is complete, and that the sizes declare at most MAX_IDX_BYTES."""
    if len(content) < 4:
        raise DataError(f"{path}: {len(content)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = int.from_bytes(content[:2], "big"), content[2], content[3]
    if zero != 0 or dtype_code != UINT8_TYPE or ndim == 0:
        raise DataError(f"{path}: magic number 0x{int.from_bytes(content[:4], 'big'):08x} is not "
                        "an IDX uint8 file (expected 0x000008NN, NN = number of dimensions)")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: header declares {ndim} dimensions but the file ends at byte "
                        f"{len(content)}")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    declared = math.prod(shape)  # Python ints: no overflow, however large the sizes
    if declared > MAX_IDX_BYTES:
        raise DataError(f"{path}: dimensions {shape} declare {declared} bytes of data, more than "
                        f"the {MAX_IDX_BYTES} an IDX file here may hold")
    return shape, header


def _read_content(path):
    """The IDX file's (decompressed) bytes, never more than its header declares plus one: the
    header is read first, then at most the declared data, so a small file that inflates to
    gigabytes is refused after reading one byte past its declared size (gzip is recognised by
    its magic, not its name)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
        try:
            head = stream.read(4)
            head += stream.read(4 * head[3]) if len(head) == 4 else b""
            shape, header = _parse_header(head, path)
            declared = header + math.prod(shape)
            if not gzipped and os.fstat(f.fileno()).st_size != declared:
                raise DataError(f"{path}: dimensions {shape} need {declared} bytes, the file "
                                f"has {os.fstat(f.fileno()).st_size}")
            content = head + stream.read(declared - len(head) + 1)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise DataError(f"{path}: the gzip stream is truncated or corrupt ({err})") from None
    if len(content) > declared:
        raise DataError(f"{path}: holds more data than its header declares (dimensions {shape} "
                        f"need {declared} bytes)")
    if len(content) < declared:
        raise DataError(f"{path}: dimensions {shape} need {declared} bytes, the decompressed "
                        f"file has {len(content)}")
    return content


def read_idx(path, expected_md5=None, expected_file_md5=None):
    """Read one IDX file (gzipped or not); verify the MD5 of its decompressed contents and of
    the file as stored, where given."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (expected an IDX file, gzipped or not)")
    if expected_file_md5 is not None:
        _check_md5(path, "the file", _file_md5(path), expected_file_md5)
    content = _read_content(path)
    if expected_md5 is not None:
        _check_md5(path, "the decompressed contents", hashlib.md5(content).hexdigest(),
                   expected_md5)
    return parse_idx(content, path)


def _file_md5(path, chunk=1 << 20):
    """MD5 of the file as stored, read a megabyte at a time."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path, what, actual, expected):
    if actual != expected:
        raise DataError(f"{path}: checksum mismatch: MD5 of {what} is {actual}, "
                        f"MD5SUMS says {expected}")


def read_md5sums(folder):
    """Map file name -> MD5 from the folder's MD5SUMS (empty if there is none)."""
    path = os.path.join(folder, "MD5SUMS")
    if not os.path.isfile(path):
        return {}
    sums = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                sums[parts[1]] = parts[0]
    return sums


def _find(folder, stem):
    """The path of ``stem`` or ``stem.gz`` in ``folder``."""
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"{os.path.join(folder, stem)}[.gz]: no such file; a data folder needs the "
                    f"four IDX files {', '.join(FILES.values())} (gzipped or not)")


def _read_listed(folder, sums, stem):
    """Read ``stem`` (or ``stem.gz``), checked against every MD5SUMS line that names it."""
    path = _find(folder, stem)
    return read_idx(path, sums.get(stem), sums.get(os.path.basename(path)))


def _load_split(folder, sums, images_stem, labels_stem):
    images, labels = (_read_listed(folder, sums, stem) for stem in (images_stem, labels_stem))
    if images.ndim != 3:
        raise DataError(f"{images_stem}: expected 3 dimensions (count, rows, cols), "
                        f"got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_stem}: expected 1 dimension (count,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {images_stem} holds {len(images)} images but {labels_stem} "
                        f"holds {len(labels)} labels")
    return images, labels


def load(folder=DEFAULT_DIR):
    """The four-file dataset in ``folder`` (MNIST by default; Fashion-MNIST has the same layout).

    Pixels become float32 in [0, 1].  Files listed in the folder's ``MD5SUMS`` are verified.
    """
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such data folder (expected the four MNIST IDX files)")
    sums = read_md5sums(folder)
    train_x, train_y = _load_split(folder, sums, FILES["train_images"], FILES["train_labels"])
    test_x, test_y = _load_split(folder, sums, FILES["test_images"], FILES["test_labels"])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{folder}: train images are {train_x.shape[1:]}, test images "
                        f"{test_x.shape[1:]}; they must match")

    def pixels(images):
        # uint8 / float32 is already float32: no second copy of the training set
        return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32, copy=False)
    return Dataset(pixels(train_x), train_y.astype(np.int64), pixels(test_x),
                   test_y.astype(np.int64), tuple(train_x.shape[1:]), os.path.abspath(folder))


def dynamic_binarize(images, rng):
    """A fresh Bernoulli draw per pixel: 1 with probability equal to the pixel's intensity."""
    return (rng.random(images.shape, dtype=np.float32) < images).astype(images.dtype)
