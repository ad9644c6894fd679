"""Checkpoints: one ``.npz`` of named arrays with a JSON metadata record, written atomically and
read within bounds.

Nothing is pickled: the metadata (config, epoch, RNG states) is JSON stored as bytes, and arrays
of Python objects are refused, so a checkpoint from elsewhere can never run code.  A write goes to
a temporary file in the same folder, is flushed and fsync'ed, then renamed over the old
checkpoint: a crash leaves either the old checkpoint or the new one, never half of one.

The VAE trainer's checkpoint (``FORMAT``) holds the model's parameters as "model/NAME" arrays,
Adam's state split by ``split_arrays`` into "optimizer/..." arrays and a JSON skeleton, and in
its metadata the config, the epoch and every random state (``METADATA_KEYS``), each checked for
type and range by ``checked_metadata`` before the model is built from it.

A read trusts nothing in the file.  The zip archive is read member by member: a member that is
not expected is refused; each member's ``.npy`` header (shape, dtype) is parsed and checked
against what the member must fill before any of its data is read; and at most the bytes that
header declares (plus one, to notice more) are decompressed.  A checkpoint therefore costs at
most the memory of the model it fills, whatever its members claim or hold.
"""
import json
import math
import os
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from vae.config import MAX_EPOCHS, config_from_dict
from vae.run_folder import RunFolderError, open_binary, replace_atomically

FORMAT = "minigrad-vae-checkpoint/1"
METADATA_KEYS = ("config", "epoch", "optimizer", "stream", "shuffle_rng", "binarize_rng")
METADATA_KEY = "__metadata__"
MAX_METADATA_BYTES = 1 << 20
MAX_MEMBER_BYTES = 1 << 32   # the most one array may declare when ``expected`` is not given
MAX_MEMBERS = 4096
MAX_HEADER_BYTES = 10_000    # numpy's own limit for a .npy header


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to another model."""


def save(path, arrays, metadata):
    """Write ``arrays`` (name -> ndarray) and ``metadata`` (JSON-able dict) to ``path`` atomically."""
    return replace_atomically(path, writer(arrays, metadata))


def writer(arrays, metadata):
    """write(file) putting ``arrays`` and ``metadata`` into a file as a checkpoint."""
    if METADATA_KEY in arrays:
        raise ValueError(f"save: {METADATA_KEY!r} is reserved for the metadata")
    payload = dict(arrays)
    payload[METADATA_KEY] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    return lambda f: np.savez(f, **payload)


def read_metadata(path):
    """The checkpoint's metadata (a dict), read without touching its arrays."""
    return _read(path, expected=None, metadata_only=True)[1]


def load(path, expected=None):
    """Read a checkpoint: (arrays, metadata).

    ``expected`` maps each array name the checkpoint may hold to the (shape, dtype) it must
    have, or is a function of the metadata (a dict) that checks it and returns that map; any
    other member is refused.  Without it, any names are read, each at most MAX_MEMBER_BYTES.
    Corrupt, oversized or foreign files raise CheckpointError.
    """
    return _read(path, expected, metadata_only=False)


def _read(path, expected, metadata_only):
    if not os.path.lexists(path) or os.path.isdir(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        file = open_binary(path)
    except RunFolderError as err:
        raise CheckpointError(str(err)) from None
    try:
        with file, zipfile.ZipFile(file) as archive:
            members = _members(path, archive)
            if METADATA_KEY not in members:
                raise CheckpointError(f"{path}: has no metadata record; not a minigrad checkpoint")
            metadata = _metadata(path, _read_array(path, archive, members.pop(METADATA_KEY),
                                                   max_bytes=MAX_METADATA_BYTES))
            if metadata_only:
                return {}, metadata
            if callable(expected):
                expected = expected(metadata)
            unknown = sorted(set(members) - set(expected)) if expected is not None else []
            if unknown:
                raise CheckpointError(f"{path}: holds unknown arrays {unknown}; a checkpoint of "
                                      "this model holds only its parameters and optimizer state")
            arrays = {name: _read_array(path, archive, info, None if expected is None
                                        else expected[name]) for name, info in members.items()}
    except CheckpointError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
            NotImplementedError, MemoryError) as err:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    return arrays, metadata


def _members(path, archive):
    """{array name: ZipInfo}, refusing duplicates and entries that are not .npy arrays."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: {len(infos)} members; a checkpoint has at most "
                              f"{MAX_MEMBERS}")
    members = {}
    for info in infos:
        name = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else None
        if name is None or name in members:
            what = "is not an .npy array" if name is None else "appears twice"
            raise CheckpointError(f"{path}: member {info.filename!r} {what}; not a minigrad "
                                  "checkpoint")
        members[name] = info
    return members


def _read_array(path, archive, info, expected=None, max_bytes=MAX_MEMBER_BYTES):
    """One member as an array: its header checked against ``expected`` (shape, dtype), or
    without it against ``max_bytes``, before at most the declared bytes are read."""
    name = info.filename[:-len(".npy")]
    with archive.open(info) as member:
        version = npy_format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(member, MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(member, MAX_HEADER_BYTES)
        else:
            raise CheckpointError(f"{path}: array {name!r} has .npy format {version}; "
                                  "expected 1.0 or 2.0")
        if dtype.hasobject:
            raise CheckpointError(f"{path}: array {name!r} holds Python objects (dtype "
                                  f"{dtype}), which only pickle can read; refused")
        nbytes = math.prod(shape) * dtype.itemsize
        if expected is not None:
            want_shape, want_dtype = tuple(expected[0]), np.dtype(expected[1])
            if tuple(shape) != want_shape or dtype != want_dtype:
                raise CheckpointError(f"{path}: array {name!r} declares {tuple(shape)} {dtype}, "
                                      f"this model needs {want_shape} {want_dtype}; the "
                                      "checkpoint does not fit this model")
        elif nbytes > max_bytes:
            raise CheckpointError(f"{path}: array {name!r} declares shape {tuple(shape)}, "
                                  f"{nbytes} bytes, more than the {max_bytes} it may hold")
        # read straight into the array's memory, then one byte more: the data must end there
        array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
        view = memoryview(array.reshape(-1)).cast("B")
        filled = 0
        while filled < nbytes:
            count = member.readinto(view[filled:])
            if not count:
                raise CheckpointError(f"{path}: array {name!r} holds only {filled} of the "
                                      f"{nbytes} bytes its header declares")
            filled += count
        if member.read(1):
            raise CheckpointError(f"{path}: array {name!r} holds more data than its header "
                                  f"declares ({nbytes} bytes)")
    return array.T if fortran else array


def _metadata(path, raw):
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: the metadata record is {raw.shape} {raw.dtype}, "
                              "expected uint8 bytes")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the metadata is a JSON {type(metadata).__name__}, "
                              "expected an object")
    return metadata


# --- the VAE trainer's record: its metadata's fields, and nested state split into arrays ------
def checked_metadata(path, metadata):
    """The Config inside a checkpoint's metadata, after checking every field's type and range;
    a CheckpointError names what is wrong."""
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {metadata.get('format')!r} is not a minigrad VAE "
                              "checkpoint")
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"{path}: the metadata lacks {missing}")
    epoch = metadata["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCHS:
        raise CheckpointError(f"{path}: the metadata's epoch is {epoch!r}; expected an "
                              f"integer in [0, {MAX_EPOCHS}]")
    for key in ("optimizer", "stream", "shuffle_rng", "binarize_rng"):
        if not isinstance(metadata[key], dict):
            raise CheckpointError(f"{path}: the metadata's {key} is "
                                  f"{type(metadata[key]).__name__}, expected a JSON object")
    for where, value in _numbers(metadata["optimizer"], "the optimizer's"):
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            raise CheckpointError(f"{path}: {where} is {value}, out of range for a count")
    try:
        return config_from_dict(metadata["config"], f"{path}: the checkpoint's config")
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def _numbers(value, where):
    """(where, number) for every number inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where} {key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where} {i}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def split_arrays(value, prefix, arrays):
    """Copy a nested state into JSON-able form, moving ndarrays into ``arrays`` by path."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {str(k): split_arrays(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def join_arrays(value, arrays):
    """Inverse of ``split_arrays``."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [join_arrays(v, arrays) for v in value]
    return value
