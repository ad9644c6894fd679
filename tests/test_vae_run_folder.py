"""The run folder never loses work: a run already there is refused without --resume or
--overwrite, a resume refuses changed settings unless they are accepted (then applies them), one
trainer at a time holds the folder's lock, planted symbolic links are refused and never written
through, a process killed while it rewrites metrics.jsonl or writes a checkpoint loses nothing,
and a metrics line cut short by a crash is dropped on resume (any other malformed line is named).

Runs here train a tiny model on a generated 4x4-pixel data set: seconds each."""
import errno
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from minigrad import backend
from minigrad.backend import DeviceUnavailableError
from vae import checkpoint, cli, data, run_folder, train
from vae.run_folder import RunFolderError
from vae_fixtures import silent, write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.path.join(REPO, "tests")}
TINY = dict(input_dim=16, hidden_dim=128, latent_dim=2, batch_size=16, quiet=True)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("data"))
    write_dataset(folder, train_count=64, test_count=16, side=4)
    return folder


def tiny(out, data_folder, **overrides):
    return train.Config(**dict(TINY, data=data_folder, out=str(out), epochs=1) | overrides)


def train_quietly(config, **options):
    return train.run(config, log=silent, **options)


def contents(folder):
    """{name: bytes} of the run files in ``folder``."""
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in run_folder.RUN_FILES if os.path.exists(os.path.join(folder, name))}


def epochs_of(folder):
    return [record["epoch"] for record in run_folder.read_metrics(str(folder))]


# --- a run already in the folder --------------------------------------------------------------
def test_train_without_resume_refuses_a_folder_holding_a_run(data_folder, tmp_path, capsys):
    train_quietly(tiny(tmp_path, data_folder))
    before = contents(tmp_path)
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        train_quietly(tiny(tmp_path, data_folder, lr=0.01))
    assert contents(tmp_path) == before
    code = cli.main(["train", "--out", str(tmp_path), "--data", data_folder, "--no-plots",
                     "--quiet"])
    assert code == 1 and contents(tmp_path) == before
    assert "--resume" in capsys.readouterr().err


def test_overwrite_deletes_the_old_run_and_starts_over(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder, epochs=2))
    (tmp_path / "manifold.png").write_bytes(b"an old figure")
    os.makedirs(tmp_path / "frames")
    (tmp_path / "frames" / "epoch_002.png").write_bytes(b"an old frame")
    fresh = train_quietly(tiny(tmp_path, data_folder, seed=5), overwrite=True)
    assert epochs_of(tmp_path) == [1] and fresh.epoch == 1
    assert not (tmp_path / "manifold.png").exists()
    assert os.listdir(tmp_path / "frames") == []
    assert run_folder.read_config(str(tmp_path)).seed == 5


def _no_gpu(monkeypatch):
    def unavailable():
        raise DeviceUnavailableError("no GPU on this test's machine")
    monkeypatch.setattr(backend, "_cupy", unavailable)


@pytest.mark.parametrize("change, message", [
    (dict(data="no-such-folder"), "no-such-folder"),
    (dict(train_subset=1000), "train_subset is 1000"),
    (dict(device="cuda"), "no GPU on this test's machine"),
    (dict(lr=1e10), "the loss is"),                            # a NaN in the first epoch
])
def test_overwrite_that_fails_before_its_first_epoch_keeps_the_old_run(
        data_folder, tmp_path, monkeypatch, change, message):
    train_quietly(tiny(tmp_path, data_folder, epochs=2))
    (tmp_path / "manifold.png").write_bytes(b"an old figure")
    before = contents(tmp_path)
    _no_gpu(monkeypatch)
    with np.errstate(all="ignore"), pytest.raises(Exception, match=message) as err:
        train_quietly(tiny(tmp_path, data_folder, **change), overwrite=True)
    assert "old run" in str(err.value) or not isinstance(err.value, train.TrainingError)
    assert contents(tmp_path) == before and epochs_of(tmp_path) == [1, 2]
    assert (tmp_path / "manifold.png").read_bytes() == b"an old figure"


def test_resume_and_overwrite_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--resume", "--overwrite"])
    assert exit_.value.code == 2 and "--overwrite" in capsys.readouterr().err


# --- changed settings on resume ---------------------------------------------------------------
def test_resume_refuses_changed_settings_naming_each(data_folder, tmp_path, capsys):
    train_quietly(tiny(tmp_path, data_folder))
    before = contents(tmp_path)
    code = cli.main(["train", "--out", str(tmp_path), "--resume", "--epochs", "2", "--lr", "0.5",
                     "--seed", "7", "--batch-size", "8", "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "lr 0.001 -> 0.5" in err and "seed 1 -> 7" in err and "batch_size 16 -> 8" in err
    assert "--allow-changed-settings" in err
    assert contents(tmp_path) == before


def test_accepted_changes_are_applied_recorded_and_equal_a_run_by_hand(data_folder, tmp_path):
    train_quietly(tiny(tmp_path / "run", data_folder))
    changed = tiny(tmp_path / "run", data_folder, epochs=2, lr=0.01, seed=7, beta=0.5)
    resumed = train_quietly(changed, resume=True, allow_changed_settings=True)
    assert resumed.optimizer.lr == 0.01
    record = run_folder.read_metrics(str(tmp_path / "run"))[1]
    assert record["settings_changed"] == {"lr": [0.001, 0.01], "beta": [1.0, 0.5],
                                          "seed": [1, 7]}
    assert "settings_changed" not in run_folder.read_metrics(str(tmp_path / "run"))[0]
    _, metadata = checkpoint.load(str(tmp_path / "run" / train.CHECKPOINT))
    assert metadata["config"]["lr"] == 0.01 and metadata["optimizer"]["lr"] == 0.01
    assert run_folder.read_config(str(tmp_path / "run")).seed == 7
    # by hand: epoch 1 as trained, then Adam at lr 0.01, beta 0.5 and streams seeded from 7
    by_hand = train.Trainer(tiny(tmp_path / "x", data_folder), data.load(data_folder))
    by_hand.train_epoch()
    by_hand.config = changed
    by_hand.optimizer.lr = 0.01
    by_hand._seed_streams()
    by_hand.train_epoch()
    for name, value in by_hand.model.state_dict().items():
        assert np.array_equal(value, resumed.model.state_dict()[name]), name


def test_resume_may_change_the_target_epochs_and_the_records(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder))
    train_quietly(tiny(tmp_path, data_folder, epochs=2, log_grads=True), resume=True)
    metrics = run_folder.read_metrics(str(tmp_path))
    assert epochs_of(tmp_path) == [1, 2] and "grad_norms" in metrics[1]
    assert not any("settings_changed" in record for record in metrics)


def test_architecture_never_changes_even_when_changes_are_accepted(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder))
    with pytest.raises(checkpoint.CheckpointError, match="hidden_dim=128.*hidden_dim=32"):
        train_quietly(tiny(tmp_path, data_folder, epochs=2, hidden_dim=32), resume=True,
                      allow_changed_settings=True)


# --- one trainer at a time --------------------------------------------------------------------
HOLD_LOCK = """
import sys
from vae import run_folder
with run_folder.lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()       # hold it until the test closes our stdin
"""


def test_a_second_trainer_is_refused_naming_the_first(data_folder, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], env=ENV,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunFolderError, match=f"in use by another trainer \\(pid {holder.pid} "):
            train_quietly(tiny(tmp_path, data_folder))
        assert run_folder.existing_run_files(str(tmp_path)) == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    train_quietly(tiny(tmp_path, data_folder))     # released when its holder exits
    assert epochs_of(tmp_path) == [1]


def test_the_lock_of_a_killed_trainer_is_no_obstacle(data_folder, tmp_path):
    script = "import os, signal, sys\nfrom vae import run_folder\n" \
             "with run_folder.lock(sys.argv[1]):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=ENV, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert "pid" in (tmp_path / run_folder.LOCK).read_text()     # its record is still there
    train_quietly(tiny(tmp_path, data_folder))
    assert epochs_of(tmp_path) == [1]


# --- links ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [run_folder.METRICS, run_folder.CONFIG, run_folder.CHECKPOINT,
                                  "loss_curves.png", run_folder.FRAMES])
def test_a_planted_link_is_refused_and_its_target_untouched(data_folder, tmp_path, name):
    run = tmp_path / "run"
    train_quietly(tiny(run, data_folder))
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the run's to write")
    if (run / name).exists():
        os.replace(run / name, tmp_path / "moved")
    os.symlink(outside, run / name)
    with pytest.raises((RunFolderError, checkpoint.CheckpointError), match="symbolic link"):
        train_quietly(tiny(run, data_folder, epochs=2), resume=True)
    assert outside.read_bytes() == b"not the run's to write"


def test_figures_refuse_a_link_at_their_path(data_folder, tmp_path, capsys):
    folder = str(tmp_path / "run")
    train_quietly(tiny(folder, data_folder))
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"someone else's picture")
    os.symlink(outside, os.path.join(folder, "samples.png"))
    assert cli.main(["plot", folder]) == 1
    assert "samples.png: is a symbolic link" in capsys.readouterr().err
    assert outside.read_bytes() == b"someone else's picture"


def test_plot_refuses_a_planted_png_bomb_in_the_frames(data_folder, tmp_path, capsys):
    folder = tmp_path / "run"
    train_quietly(tiny(folder, data_folder))
    os.makedirs(folder / run_folder.FRAMES)
    for epoch, size in ((1, (4000, 4000)), (2, (600, 640))):
        Image.new("1", size).save(folder / run_folder.FRAMES / f"epoch_{epoch:03d}.png")
    assert cli.main(["plot", str(folder)]) == 1
    printed = capsys.readouterr().err
    assert "epoch_001.png declares 4000 x 4000 pixels" in printed
    assert len(printed.splitlines()) == 1


# --- killed mid-write -------------------------------------------------------------------------
# A child process that the kernel kills (SIGXFSZ) at its first write past `limit` bytes of a
# file: a real kill in the middle of a write, at a deterministic place.
KILLED_AT = """
import resource, signal, sys
sys.argv.pop(0)
limit, out, data_folder, epochs = int(sys.argv[0]), sys.argv[1], sys.argv[2], int(sys.argv[3])
from vae import train
from test_vae_run_folder import tiny, silent
config = tiny(out, data_folder, epochs=epochs)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)     # Python ignores it; the default kills
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
train.run(config, resume=True, log=silent)
"""


def killed_while_writing(limit, out, data_folder, epochs):
    result = subprocess.run([sys.executable, "-c", KILLED_AT, str(limit), str(out), data_folder,
                             str(epochs)], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGXFSZ, result.stderr
    return result


def test_a_kill_while_metrics_are_trimmed_keeps_them(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder, epochs=3))
    metrics = tmp_path / run_folder.METRICS
    lines = metrics.read_bytes().splitlines(keepends=True)
    # as after a crash between epoch 3's metrics and its checkpoint: resume trims epoch 3
    arrays, metadata = checkpoint.load(str(tmp_path / train.CHECKPOINT))
    checkpoint.save(str(tmp_path / train.CHECKPOINT), arrays, dict(metadata, epoch=2))
    before = metrics.read_bytes()
    killed_while_writing(len(lines[0]) + 10, tmp_path, data_folder, epochs=3)
    assert metrics.read_bytes() == before                    # the history is whole
    log = []
    train.run(tiny(tmp_path, data_folder, epochs=3), resume=True, log=log.append)
    assert any(line.startswith("removed ") and ".metrics.jsonl-" in line for line in log)
    assert epochs_of(tmp_path) == [1, 2, 3]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_kill_inside_a_checkpoint_save_leaves_nothing_behind(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder))
    saved = (tmp_path / train.CHECKPOINT).read_bytes()
    assert len(saved) > 32768
    killed_while_writing(32768, tmp_path, data_folder, epochs=2)     # metrics fit, it does not
    assert (tmp_path / train.CHECKPOINT).read_bytes() == saved
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    log = []
    train.run(tiny(tmp_path, data_folder, epochs=2), resume=True, log=log.append)
    assert any(line.startswith("removed ") and ".checkpoint.npz-" in line for line in log)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert epochs_of(tmp_path) == [1, 2]


def test_a_failed_config_write_leaves_a_run_the_tools_describe(data_folder, tmp_path,
                                                               monkeypatch, capsys):
    train_quietly(tiny(tmp_path, data_folder))
    saved = contents(tmp_path)
    real_mkstemp = tempfile.mkstemp

    def disk_full_for_config(**options):
        if options["prefix"] == f".{run_folder.CONFIG}-":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(**options)
    monkeypatch.setattr(tempfile, "mkstemp", disk_full_for_config)
    with pytest.raises(OSError, match="No space left"):
        train_quietly(tiny(tmp_path, data_folder, epochs=2), resume=True)
    monkeypatch.undo()
    assert {name: saved[name] for name in (run_folder.CONFIG, run_folder.CHECKPOINT)} == \
        {name: contents(tmp_path)[name] for name in (run_folder.CONFIG, run_folder.CHECKPOINT)}
    assert cli.main(["eval", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("epoch 1: test -ELBO")
    train_quietly(tiny(tmp_path, data_folder, epochs=2), resume=True)
    assert epochs_of(tmp_path) == [1, 2]


# --- metrics.jsonl ----------------------------------------------------------------------------
def test_resume_drops_a_line_cut_short_after_the_checkpoint_and_says_so(data_folder, tmp_path):
    train_quietly(tiny(tmp_path, data_folder, epochs=2))
    with open(tmp_path / run_folder.METRICS, "ab") as f:
        f.write(b'{"epoch": 3, "train_loss": 12')         # the append a crash cut short
    log = []
    train.run(tiny(tmp_path, data_folder, epochs=3), resume=True, log=log.append)
    assert any("dropped line 3, cut short" in line for line in log)
    assert epochs_of(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize("damage, message", [
    (lambda lines: [lines[0][:20] + b"\n", lines[1]], r"line 1 is not a JSON record"),
    (lambda lines: [lines[0], b"[1, 2]\n"], r"line 2: a JSON list, expected an object"),
    (lambda lines: [lines[0], lines[0]], r"line 2: epoch 1 follows epoch 1"),
    (lambda lines: [lines[0], b'{"epoch": 2, "train_loss": "\xff"}\n'], r"line 2 is not a JSON"),
])
def test_a_malformed_metrics_line_is_named_by_file_and_line(data_folder, tmp_path, damage,
                                                            message, capsys):
    train_quietly(tiny(tmp_path, data_folder, epochs=2))
    path = tmp_path / run_folder.METRICS
    path.write_bytes(b"".join(damage(path.read_bytes().splitlines(keepends=True))))
    with pytest.raises(RunFolderError, match=message) as err:
        train_quietly(tiny(tmp_path, data_folder, epochs=3), resume=True)
    assert str(path) in str(err.value)
    assert cli.main(["plot", str(tmp_path)]) == 1
    printed = capsys.readouterr().err
    assert str(path) in printed and "line" in printed and len(printed.splitlines()) == 1


def test_each_metrics_line_is_fsynced(data_folder, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    train_quietly(tiny(tmp_path, data_folder, epochs=2))
    assert synced.count(str(tmp_path / run_folder.METRICS)) == 2
