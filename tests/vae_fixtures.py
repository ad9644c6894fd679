"""Shared helpers of the VAE tests: IDX files written byte by byte, the carried MNIST read once
per session, a small training config and a tiny float64 model."""
import functools
import gzip
import os

import numpy as np

from vae import data, train
from vae.model import VAE

SMALL = dict(train_subset=512, test_subset=256, hidden_dim=32, latent_dim=4, batch_size=64)


def idx_bytes(array):
    """IDX encoding of a uint8 array: magic 0x000008NN (NN = ndim), big-endian uint32 sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, data.UINT8_TYPE, array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.tobytes()


def write_idx(path, array, compress=False):
    """Write ``array`` as an IDX file (gzipped when ``compress``); return the path."""
    content = idx_bytes(array)
    with open(path, "wb") as f:
        f.write(gzip.compress(content) if compress else content)
    return path


def write_dataset(folder, train_count=6, test_count=4, side=3, compress=False, seed=0):
    """A four-file dataset of random images in ``folder``; returns the uint8 arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (train_count, side, side), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train_count, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test_count, side, side), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test_count, dtype=np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for key, array in arrays.items():
        name = data.FILES[key] + (".gz" if compress else "")
        write_idx(os.path.join(folder, name), array, compress)
    return arrays


@functools.cache
def mnist():
    """The carried MNIST, read (about a second) once per test session; treat it as read-only."""
    return data.load(data.DEFAULT_DIR)


def small_config(out, **overrides):
    """A quiet run on 512 training and 256 test images with a 32-unit, 4-latent model."""
    settings = dict(SMALL, out=str(out), epochs=2, quiet=True)
    settings.update(overrides)
    return train.Config(**settings)


def silent(*args):
    """A ``log`` for train.run that prints nothing."""


def tiny_vae(input_dim=4, hidden_dim=3, latent_dim=2, seed=0):
    """A float64 VAE small enough to check against NumPy by hand."""
    return VAE(input_dim, hidden_dim, latent_dim, rng=np.random.default_rng(seed),
               dtype=np.float64)
