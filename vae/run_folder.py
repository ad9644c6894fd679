"""The run folder: every file of a run, and how each is read and written.

    config.json     the settings (vae.config), written at the start and with every checkpoint
    metrics.jsonl   one JSON object per finished epoch, appended, flushed and fsync'ed
    checkpoint.npz  the state after the last finished epoch (vae.checkpoint), replaced atomically
    frames/         epoch_XXX.png, the decoded manifold after each epoch (--manifold-frames)
    *.png, *.gif    the figures (vae.plots)
    .lock           flock'ed by the one process that trains the run; holds its pid and host

The rules, each for a failure seen in practice:
- one writer: ``lock`` takes an OS advisory lock (``fcntl.flock``) that the kernel drops when its
  process ends, however it ends, so a crashed trainer never blocks the next one;
- no link is followed: every file is opened with O_NOFOLLOW (or its entry checked with lstat),
  so a symbolic link planted in the folder is refused, never written through;
- whole files are replaced, never rewritten in place: ``replace_atomically`` writes a temporary
  file beside the target, fsyncs it and renames it over; a crash leaves the old file or the new
  one, and the temporary files it may leave are removed by the next trainer (``remove_temporaries``);
- reads are bounded: a file larger than its kind may be is refused before it is read;
- a metrics line cut short by a crash after the last checkpoint is dropped on resume, saying so;
  any other malformed line is an error naming the file and the line.
"""
import contextlib
import dataclasses
import datetime
import errno
import fcntl
import glob
import json
import os
import socket
import stat
import tempfile

from vae.config import config_from_dict

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
FRAMES = "frames"
LOCK = ".lock"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT)
# every figure ``vae.plots.plot_run`` may write: --overwrite removes them with the old run
FIGURES = ("loss_curves.png", "reconstructions.png", "samples.png", "latent.png",
           "interpolation.png", "traversals.png", "grad_norms.png", "manifold.png",
           "manifold.gif")
TEMPORARY = ".{name}-*.tmp"  # what replace_atomically leaves if its process dies mid-write
MAX_CONFIG_BYTES = 1 << 20
MAX_METRICS_BYTES = 64 << 20  # about 100,000 epochs with gradient norms


class RunFolderError(ValueError):
    """A run folder's file is a link, too large, malformed, or the folder is in use."""


# --- files, opened without following links ----------------------------------------------------
def refuse_link(path):
    """Raise RunFolderError if ``path`` is a symbolic link (whether or not its target exists)."""
    if os.path.islink(path):
        raise RunFolderError(f"{path}: is a symbolic link; a run's files are never read or "
                             "written through links (remove it, or copy the file it points to)")


def _open(path, flags, mode=0o666):
    """os.open with O_NOFOLLOW and O_NONBLOCK (a planted FIFO must not hang us); the result is a
    regular file with one name, or RunFolderError."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            refuse_link(path)
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif flags & (os.O_WRONLY | os.O_RDWR) and info.st_nlink > 1:
        problem = f"has {info.st_nlink} hard links; writing would change the other names too"
    if problem:
        os.close(fd)
        raise RunFolderError(f"{path}: {problem}")
    return fd


def read_bytes(path, limit, what):
    """The contents of ``path``, at most ``limit`` bytes; larger files are refused unread."""
    with os.fdopen(_open(path, os.O_RDONLY), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        content = f.read(limit + 1) if size <= limit else b""
        if size > limit or len(content) > limit:
            raise RunFolderError(f"{path}: {max(size, len(content))} bytes, more than a {what} "
                                 f"may hold ({limit})")
    return content


def open_binary(path):
    """``path`` opened for reading as a binary file object, without following a link."""
    return os.fdopen(_open(path, os.O_RDONLY), "rb")


def replace_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the folder: readers see the old file or the new one, never a mix.  On
    any error (KeyboardInterrupt included) the temporary file is removed."""
    return replace_together([(path, write)])[0]


def replace_together(files):
    """``replace_atomically`` for several (path, write) pairs, all or none: every temporary file
    is written and fsync'ed first, and only then is each renamed over its path, in order.  A
    failed write (a full disk, an interrupt) therefore leaves every old file in place; only a
    kill between two renames can leave some replaced and the others not.  Returns the paths."""
    for path, _ in files:
        refuse_link(path)
    temporaries = []
    try:
        for path, write in files:
            temporaries.append(_write_beside(path, write))
        for (path, _), temporary in zip(files, temporaries):
            os.replace(temporary, path)
    finally:
        for temporary in temporaries:
            if os.path.lexists(temporary):
                os.remove(temporary)
    for folder in sorted({os.path.dirname(os.path.abspath(path)) for path, _ in files}):
        _fsync_folder(folder)
    return [path for path, _ in files]


def _write_beside(path, write):
    """A temporary file beside ``path`` holding what ``write(file)`` wrote, fsync'ed; removed
    again if the write fails."""
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp",
                                     dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.remove(temporary)
        raise
    return temporary


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make a rename durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(path):
    """Create ``path`` (and its parents) as a folder; an existing link there is refused."""
    refuse_link(path)
    os.makedirs(path, exist_ok=True)
    return path


# --- the folder as a whole --------------------------------------------------------------------
@contextlib.contextmanager
def lock(folder):
    """Hold the run folder's lock for the ``with`` block, or raise RunFolderError naming the
    process that holds it.  The kernel releases it when this process exits or is killed."""
    path = os.path.join(folder, LOCK)
    fd = _open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunFolderError(f"{folder}: in use by another trainer ({holder}); two trainers "
                                 "in one run folder would mix their epochs; wait for it to end "
                                 "or choose another --out") from None
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_temporaries(folder):
    """Delete the temporary files that an interrupted ``replace_atomically`` left in ``folder``
    (call it holding the lock: no live writer then owns them); returns their paths."""
    found = []
    for name in RUN_FILES + FIGURES + (os.path.join(FRAMES, "epoch_*.png"),):
        head, tail = os.path.split(name)
        found += glob.glob(os.path.join(glob.escape(folder), head, TEMPORARY.format(name=tail)))
    for path in found:
        os.remove(path)
    return sorted(found)


def refuse_links(folder):
    """Raise RunFolderError if any entry a run writes in ``folder`` is a symbolic link: the run
    files, the figures, the frames folder and its frames (checked before anything is written,
    so a planted link stops the run at its start, not after an epoch)."""
    names = RUN_FILES + FIGURES + (FRAMES,)
    frames = os.path.join(folder, FRAMES)
    if os.path.isdir(frames) and not os.path.islink(frames):
        names += tuple(os.path.join(FRAMES, name) for name in sorted(os.listdir(frames)))
    for name in names:
        refuse_link(os.path.join(folder, name))


def existing_run_files(folder):
    """The run files (config, metrics, checkpoint) present in ``folder``, links included."""
    return [name for name in RUN_FILES if os.path.lexists(os.path.join(folder, name))]


def clear_run(folder):
    """Remove a run's files, figures and frames from ``folder`` (for --overwrite); links are
    removed, never followed.  Returns the names removed."""
    names = [name for name in RUN_FILES + FIGURES if os.path.lexists(os.path.join(folder, name))]
    frames = os.path.join(folder, FRAMES)
    if os.path.isdir(frames) and not os.path.islink(frames):
        names += [os.path.join(FRAMES, name) for name in sorted(os.listdir(frames))
                  if name.startswith("epoch_") and name.endswith(".png")]
    for name in names:
        os.remove(os.path.join(folder, name))
    return names


# --- config.json ------------------------------------------------------------------------------
def write_config(folder, config):
    """Replace ``folder``'s config.json with ``config`` (atomically)."""
    return replace_atomically(os.path.join(folder, CONFIG), config_writer(config))


def config_writer(config):
    """write(file) putting ``config`` into a file as config.json's JSON text."""
    text = json.dumps(dataclasses.asdict(config), indent=2) + "\n"
    return lambda f: f.write(text.encode())


def read_config(folder):
    """The validated Config of ``folder``'s config.json, or RunFolderError naming the file."""
    path = os.path.join(folder, CONFIG)
    if not os.path.lexists(path):
        raise RunFolderError(f"{path}: no such file; is {folder} a run folder?")
    content = read_bytes(path, MAX_CONFIG_BYTES, "config.json")
    try:
        values = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path}: not a run's config.json ({err})") from None
    try:
        return config_from_dict(values, path)
    except ValueError as err:
        raise RunFolderError(str(err)) from None


# --- metrics.jsonl ----------------------------------------------------------------------------
def append_metrics(folder, record):
    """Append one epoch's record as a line, flushed and fsync'ed before returning."""
    line = (json.dumps(record) + "\n").encode("utf-8")
    fd = _open(os.path.join(folder, METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def read_metrics(folder, through_epoch=None, log=None):
    """The per-epoch records of ``folder``'s metrics.jsonl, in order.

    With ``through_epoch`` (the checkpoint's epoch) only records up to it are returned, and a
    last line cut short by a crash after that epoch's record is dropped (``log`` says so);
    without it, or before that record, a cut line is an error naming the file and the line.
    """
    records, _ = _parse_metrics(os.path.join(folder, METRICS), through_epoch, log)
    return [record for record, _ in records
            if through_epoch is None or record["epoch"] <= through_epoch]


def trim_metrics(folder, epochs, log):
    """Keep only the records of epochs 1 .. ``epochs`` (the checkpoint's): a crash after an
    append but before the save leaves more, or a cut last line.  The trimmed file replaces the
    old one atomically, so a crash during the trim loses nothing."""
    path = os.path.join(folder, METRICS)
    if not os.path.lexists(path):
        return
    records, content = _parse_metrics(path, epochs, log)
    kept = b"".join(line for record, line in records if record["epoch"] <= epochs)
    if kept != content:
        replace_atomically(path, lambda f: f.write(kept))


def _parse_metrics(path, through_epoch, log):
    """([(record, its line with a newline)] in file order, the file's bytes)."""
    if not os.path.lexists(path):
        raise RunFolderError(f"{path}: no such file; the run has no finished epoch")
    content = read_bytes(path, MAX_METRICS_BYTES, "metrics.jsonl")
    lines = content.split(b"\n")
    if content.endswith(b"\n"):
        lines.pop()
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            last_epoch = records[-1][0]["epoch"] if records else 0
            if number == len(lines) and through_epoch is not None and last_epoch >= through_epoch:
                # NOTE: each record is fsync'ed before its epoch's checkpoint is written, so a
                # cut last line after the checkpoint's record is an append that a crash stopped
                if log is not None:
                    log(f"{path}: dropped line {number}, cut short by a crash after epoch "
                        f"{last_epoch} was recorded")
                break
            raise RunFolderError(f"{path}: line {number} is not a JSON record ({err})") from None
        problem = _record_problem(record, records[-1][0]["epoch"] if records else 0)
        if problem:
            raise RunFolderError(f"{path}: line {number}: {problem}")
        records.append((record, raw + b"\n"))
    return records, content


def _record_problem(record, previous_epoch):
    """What is wrong with one metrics record (a dict with increasing epochs), or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, expected an object (one epoch's record)"
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return f"epoch is {epoch!r}, expected an integer >= 1"
    if epoch <= previous_epoch:
        return f"epoch {epoch} follows epoch {previous_epoch}; epochs must increase"
    for key in ("train_loss", "test_neg_elbo"):
        value = record.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{key} is {value!r}, expected a number"
    if not isinstance(record.get("convention"), str):
        return f"convention is {record.get('convention')!r}, expected a string"
    norms = record.get("grad_norms", {})
    if not isinstance(norms, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in norms.values()):
        return "grad_norms is not an object of numbers"
    return None
