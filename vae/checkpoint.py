"""Checkpoints: one ``.npz`` of named arrays with a JSON metadata record, written atomically.

Nothing is pickled: arrays are read with ``allow_pickle=False`` and the metadata (config, epoch,
RNG states) is JSON stored as bytes, so a checkpoint from elsewhere can never run code.  A write
goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over the old
checkpoint: a crash leaves either the old checkpoint or the new one, never half of one.
"""
import io
import json
import os
import tempfile
import zipfile

import numpy as np

METADATA_KEY = "__metadata__"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to another model."""


def save(path, arrays, metadata):
    """Write ``arrays`` (name -> ndarray) and ``metadata`` (JSON-able dict) to ``path`` atomically."""
    if METADATA_KEY in arrays:
        raise ValueError(f"save: {METADATA_KEY!r} is reserved for the metadata")
    payload = dict(arrays)
    payload[METADATA_KEY] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_folder(folder)
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path):
    """Read a checkpoint: (arrays, metadata).  Corrupt or foreign files raise CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with open(path, "rb") as f:
            content = f.read()
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    if METADATA_KEY not in arrays:
        raise CheckpointError(f"{path}: has no metadata record; not a minigrad checkpoint")
    try:
        metadata = json.loads(arrays.pop(METADATA_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({err})") from None
    return arrays, metadata
