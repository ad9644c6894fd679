"""vae.train: the run folder, bit-identical resume, checkpoints that refuse the wrong model or a
corrupt file and survive a failed write, the NaN stop, the beta warm-up, and learning at all."""
import io
import json
import os
import re
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

import minigrad as mg
from vae import checkpoint, run_folder, train
from vae.checkpoint import CheckpointError
from vae.evaluate import convention
from vae.model import VAE
from vae_fixtures import mnist, silent, small_config

STEPS_PER_EPOCH = 4   # 256 training images in batches of 64
METRIC_KEYS = {"epoch", "train_loss", "test_neg_elbo", "test_kl", "test_reconstruction",
               "seconds", "active_units", "convention"}


@pytest.fixture(scope="module")
def dataset():
    return mnist()


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory):
    """A 2-epoch run that tests may read but not change."""
    config = config_for(tmp_path_factory.mktemp("run"), epochs=2)
    return config, train.run(config, dataset=dataset, log=silent)


def config_for(out, **overrides):
    """small_config on 256 training and 128 test images: many runs here, each a few steps."""
    return small_config(out, **dict(dict(train_subset=256, test_subset=128), **overrides))


def run_quietly(config, dataset, resume=False):
    return train.run(config, resume=resume, dataset=dataset, log=silent)


def assert_same_state(a, b):
    """Two trainers hold bit-identical parameters, Adam state and random states."""
    params_a, params_b = a.model.state_dict(), b.model.state_dict()
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        assert np.array_equal(params_a[name], params_b[name]), name
    adam_a, adam_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert adam_a.keys() == adam_b.keys()
    for name in adam_a:
        if isinstance(adam_a[name], np.ndarray):
            assert np.array_equal(adam_a[name], adam_b[name]), name
        else:
            assert adam_a[name] == adam_b[name], name
    assert a.stream.state_dict() == b.stream.state_dict()
    assert a.shuffle_rng.bit_generator.state == b.shuffle_rng.bit_generator.state
    assert a.binarize_rng.bit_generator.state == b.binarize_rng.bit_generator.state
    assert a.epoch == b.epoch


# --- the run folder ---------------------------------------------------------------------------
def test_run_writes_config_metrics_and_checkpoint(finished_run):
    config, trainer = finished_run
    with open(os.path.join(config.out, "config.json")) as f:
        assert train.Config(**json.load(f)) == config
    metrics = run_folder.read_metrics(config.out)
    assert [record["epoch"] for record in metrics] == [1, 2]
    for record in metrics:
        assert set(record) == METRIC_KEYS
        assert record["convention"] == convention("none")
        assert record["test_neg_elbo"] == pytest.approx(record["test_reconstruction"]
                                                        + record["test_kl"])
        assert 0 <= record["active_units"] <= config.latent_dim
    arrays, metadata = checkpoint.load(os.path.join(config.out, train.CHECKPOINT))
    assert metadata["epoch"] == 2 and metadata["config"]["latent_dim"] == config.latent_dim
    assert not [name for name in os.listdir(config.out) if name.endswith(".tmp")]


def test_checkpoint_loads_without_pickle(finished_run):
    config, trainer = finished_run
    with np.load(os.path.join(config.out, train.CHECKPOINT), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert checkpoint.METADATA_KEY in arrays
    assert all(array.dtype != object for array in arrays.values())
    for name, value in trainer.model.state_dict().items():
        assert np.array_equal(arrays[f"model/{name}"], value), name


# --- resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize("binarize, warmup", [("none", 0.0), ("dynamic", 3.0)])
def test_resume_is_bit_identical_to_a_straight_run(dataset, tmp_path, binarize, warmup):
    settings = dict(binarize=binarize, warmup_epochs=warmup, epochs=4)
    straight = run_quietly(config_for(tmp_path / "straight", **settings), dataset)
    run_quietly(config_for(tmp_path / "split", **dict(settings, epochs=2)), dataset)
    resumed = run_quietly(config_for(tmp_path / "split", **settings), dataset, resume=True)
    assert_same_state(straight, resumed)
    saved_straight, _ = checkpoint.load(str(tmp_path / "straight" / train.CHECKPOINT))
    saved_split, _ = checkpoint.load(str(tmp_path / "split" / train.CHECKPOINT))
    assert saved_straight.keys() == saved_split.keys()
    for name in saved_straight:
        assert np.array_equal(saved_straight[name], saved_split[name]), name

    def without_seconds(folder):
        return [{k: v for k, v in record.items() if k != "seconds"}
                for record in run_folder.read_metrics(str(folder))]
    assert without_seconds(tmp_path / "split") == without_seconds(tmp_path / "straight")


@pytest.mark.parametrize("field, value", [("latent_dim", 3), ("hidden_dim", 16)])
def test_checkpoint_of_another_architecture_is_refused(finished_run, dataset, field, value):
    config, trainer = finished_run
    other = train.Trainer(config_for(config.out, **{field: value}), dataset)
    with pytest.raises(CheckpointError, match=f"{field}={getattr(config, field)}.*{field}={value}"):
        other.restore(os.path.join(config.out, train.CHECKPOINT))


@pytest.mark.parametrize("damage", ["truncate", "flip", "random"])
def test_corrupt_checkpoint_is_refused(finished_run, dataset, tmp_path, damage):
    config, _ = finished_run
    with open(os.path.join(config.out, train.CHECKPOINT), "rb") as f:
        content = bytearray(f.read())
    if damage == "truncate":
        content = content[:len(content) // 2]
    elif damage == "flip":
        middle = len(content) // 2
        content[middle:middle + 4] = bytes(b ^ 0xFF for b in content[middle:middle + 4])
    else:
        content = np.random.default_rng(0).bytes(len(content))
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(content))
    trainer = train.Trainer(config, dataset)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as err:
        trainer.restore(str(path))
    assert str(path) in str(err.value)


def test_checkpoint_without_metadata_or_of_another_format_is_refused(finished_run, dataset,
                                                                      tmp_path):
    config, _ = finished_run
    trainer = train.Trainer(config, dataset)
    bare = str(tmp_path / "bare.npz")
    np.savez(bare, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="no metadata record"):
        trainer.restore(bare)
    foreign = checkpoint.save(str(tmp_path / "foreign.npz"), {"weights": np.zeros(3)},
                              {"format": "something-else/2"})
    with pytest.raises(CheckpointError, match="'something-else/2' is not a minigrad VAE"):
        trainer.restore(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        trainer.restore(str(tmp_path / "absent.npz"))


# --- atomic write -----------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_previous_checkpoint(dataset, tmp_path, monkeypatch, failure):
    config = config_for(tmp_path, epochs=1)
    trainer = run_quietly(config, dataset)
    path = os.path.join(config.out, train.CHECKPOINT)
    with open(path, "rb") as f:
        before = f.read()
    listing = sorted(os.listdir(config.out))

    def half_written(file, **arrays):
        file.write(b"PK\x03\x04 the first bytes of a zip, then the crash")
        raise failure
    monkeypatch.setattr(np, "savez", half_written)
    trainer.train_epoch()
    with pytest.raises(type(failure)):
        trainer.save(path)
    with open(path, "rb") as f:
        assert f.read() == before
    assert sorted(os.listdir(config.out)) == listing     # no temporary file left behind
    monkeypatch.undo()
    restored = train.Trainer(config, dataset)
    restored.restore(path)
    assert restored.epoch == 1


def test_interrupt_during_evaluation_loses_no_epoch_of_metrics(dataset, tmp_path, monkeypatch):
    config = config_for(tmp_path, epochs=3)
    real_evaluate = train.Trainer.evaluate
    evaluated = []

    def interrupted_at_epoch_2(self):
        evaluated.append(self.epoch)
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_evaluate(self)
    monkeypatch.setattr(train.Trainer, "evaluate", interrupted_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_quietly(config, dataset)
    monkeypatch.undo()
    assert evaluated == [1, 2]
    run_quietly(config, dataset, resume=True)
    assert [record["epoch"] for record in run_folder.read_metrics(config.out)] == [1, 2, 3]


# --- the NaN stop -----------------------------------------------------------------------------
def test_nan_loss_stops_naming_epoch_and_step(dataset, tmp_path, monkeypatch):
    config = config_for(tmp_path, epochs=3)
    training_calls = []
    real_loss = VAE.loss

    def nan_at_epoch_2_step_3(self, x, stream, beta=1.0):
        loss = real_loss(self, x, stream, beta)
        if mg.is_grad_enabled():                        # evaluation runs under no_grad
            training_calls.append(len(x))
            if len(training_calls) == STEPS_PER_EPOCH + 3:
                loss.total = loss.total * float("nan")
        return loss
    monkeypatch.setattr(VAE, "loss", nan_at_epoch_2_step_3)
    with pytest.raises(train.TrainingError, match="epoch 2, step 3: the loss is nan"):
        run_quietly(config, dataset)
    monkeypatch.undo()

    assert [record["epoch"] for record in run_folder.read_metrics(config.out)] == [1]
    kept = train.Trainer(config, dataset)
    kept.restore(os.path.join(config.out, train.CHECKPOINT))
    assert kept.epoch == 1
    assert all(np.isfinite(value).all() for value in kept.model.state_dict().values())
    resumed = run_quietly(config, dataset, resume=True)
    assert resumed.epoch == 3


def test_huge_learning_rate_stops_with_training_error(dataset, tmp_path):
    with np.errstate(all="ignore"):
        with pytest.raises(train.TrainingError, match=r"epoch \d+, step \d+: the loss is"):
            run_quietly(config_for(tmp_path, epochs=3, lr=1e10), dataset)


# --- beta warm-up -----------------------------------------------------------------------------
def test_beta_warmup_schedule(dataset, tmp_path):
    trainer = train.Trainer(config_for(tmp_path, beta=2.0, warmup_epochs=1.5), dataset)
    assert trainer.steps_per_epoch == STEPS_PER_EPOCH
    warmup_steps = 6                                    # 1.5 epochs of 4 steps
    expected = [2.0 * min(1.0, (step + 1) / warmup_steps) for step in range(10)]
    assert [trainer.beta_at(step) for step in range(10)] == pytest.approx(expected)
    assert trainer.beta_at(0) == pytest.approx(2.0 / 6)
    assert trainer.beta_at(5) == trainer.beta_at(1000) == 2.0
    constant = train.Trainer(config_for(tmp_path, beta=0.5), dataset)
    assert {constant.beta_at(step) for step in (0, 5, 500)} == {0.5}


def test_training_uses_the_warmup_beta_at_each_step(dataset, tmp_path, monkeypatch):
    betas = []
    real_loss = VAE.loss

    def recording(self, x, stream, beta=1.0):
        if mg.is_grad_enabled():
            betas.append(beta)
        return real_loss(self, x, stream, beta)
    monkeypatch.setattr(VAE, "loss", recording)
    run_quietly(config_for(tmp_path, epochs=2, warmup_epochs=1.5), dataset)
    assert betas == pytest.approx([min(1.0, (step + 1) / 6) for step in range(8)])


# --- learning ---------------------------------------------------------------------------------
def test_loss_decreases_over_epochs(dataset, tmp_path):
    run_quietly(small_config(tmp_path, epochs=4, lr=3e-3), dataset)
    metrics = run_folder.read_metrics(str(tmp_path))
    train_losses = [record["train_loss"] for record in metrics]
    test_losses = [record["test_neg_elbo"] for record in metrics]
    assert all(later < earlier for earlier, later in zip(train_losses, train_losses[1:]))
    assert test_losses[-1] < test_losses[0] - 20


# --- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be at least 1"),
    ("lr", 0.0, "lr must be > 0"),
    ("binarize", "static", "binarize must be 'none' or 'dynamic'"),
])
def test_invalid_config_is_refused(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        config_for(tmp_path, **{field: value}).validate()


def test_input_dim_must_match_the_images(dataset, tmp_path):
    with pytest.raises(ValueError, match="input_dim is 100 but the images have 784 pixels"):
        train.Trainer(config_for(tmp_path, input_dim=100), dataset)


def test_checkpoint_whose_metadata_lacks_a_field_is_refused(finished_run, dataset, tmp_path):
    config, _ = finished_run
    arrays, metadata = checkpoint.load(os.path.join(config.out, train.CHECKPOINT))
    del metadata["shuffle_rng"]
    damaged = checkpoint.save(str(tmp_path / "damaged.npz"), arrays, metadata)
    with pytest.raises(CheckpointError, match=r"lacks \['shuffle_rng'\]"):
        train.Trainer(config, dataset).restore(damaged)


def test_negative_subsets_are_refused():
    with pytest.raises(ValueError, match="train_subset must be >= 0"):
        train.Config(train_subset=-5).validate()


# --- NaN is never saved; the stop names the op ------------------------------------------------
def test_a_blow_up_in_the_last_update_is_never_saved_over_a_good_checkpoint(dataset, tmp_path):
    """lr 1e39 overflows float32 in Adam's step: one step per epoch, so only the check after the
    epoch's last update can see it."""
    settings = dict(train_subset=64, batch_size=64, epochs=1)
    run_quietly(config_for(tmp_path, **settings), dataset)
    path = os.path.join(str(tmp_path), train.CHECKPOINT)
    with open(path, "rb") as f:
        good = f.read()
    with np.errstate(all="ignore"), pytest.raises(train.TrainingError) as err:
        train.run(config_for(tmp_path, **dict(settings, epochs=3, lr=1e39)), resume=True,
                  dataset=dataset, log=silent, allow_changed_settings=True)
    message = str(err.value)
    assert "epoch 2, step 1: after its update parameter" in message
    assert "forward and backward are finite: Adam's update (lr 1e+39)" in message
    assert f"{path} keeps epoch 1" in message
    with open(path, "rb") as f:
        assert f.read() == good
    assert [record["epoch"] for record in run_folder.read_metrics(str(tmp_path))] == [1]


def test_a_non_finite_test_elbo_is_never_saved_and_names_the_op(dataset, tmp_path):
    with np.errstate(all="ignore"), pytest.raises(train.TrainingError) as err:
        run_quietly(config_for(tmp_path, train_subset=64, batch_size=64, lr=1e30), dataset)
    message = str(err.value)
    assert message.startswith("epoch 1: the test -ELBO is nan; rerun under anomaly mode, the "
                              "forward pass of op 'linear'")
    assert "vae/model.py:" in message and "nothing was saved" in message
    assert not os.path.exists(os.path.join(str(tmp_path), train.CHECKPOINT))
    assert not os.path.exists(os.path.join(str(tmp_path), run_folder.METRICS))


def test_the_nan_stop_names_the_op_and_its_line(dataset, tmp_path):
    with np.errstate(all="ignore"), pytest.raises(train.TrainingError) as err:
        run_quietly(config_for(tmp_path, lr=1e10), dataset)
    message = str(err.value)
    # the KL, a differentiable output of reparameterize_kl, overflows first (e^logvar)
    assert message.startswith("epoch 1, step 2: the loss is nan; rerun under anomaly mode, the "
                              "forward pass of op 'reparameterize_kl' makes")
    assert os.path.join("vae", "model.py") + ":" in message and "mg.reparameterize_kl(" in message
    assert "\n" not in message


def test_the_anomaly_rerun_restores_the_failing_steps_exact_state(dataset, tmp_path, monkeypatch):
    trainer = train.Trainer(config_for(tmp_path, lr=1e10), dataset)
    calls = []
    real_loss = VAE.loss

    def recording(self, x, stream, beta=1.0):
        if mg.is_grad_enabled():
            state = trainer.optimizer.state_dict()
            calls.append((np.asarray(x).tobytes(), stream.state_dict(), beta,
                          b"".join(v.tobytes() for v in self.state_dict().values()),
                          b"".join(v.tobytes() for v in state.values()
                                   if isinstance(v, np.ndarray)), state["step"]))
        return real_loss(self, x, stream, beta)
    monkeypatch.setattr(VAE, "loss", recording)
    with np.errstate(all="ignore"), pytest.raises(train.TrainingError, match="step 2: the loss"):
        trainer.train_epoch()
    # steps 1 and 2, then the replay: step 1, step 2, and step 2 again under anomaly mode
    assert len(calls) == 5
    assert calls[2] == calls[0] and calls[3] == calls[1] and calls[4] == calls[1]


# --- checkpoints within bounds ----------------------------------------------------------------
def rewritten(source, target, replace=None, add=None, compress=zipfile.ZIP_STORED):
    """A copy of the checkpoint ``source`` at ``target`` with members replaced or added:
    {member name: bytes, or a function writing them to a file}."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            content = (replace or {}).get(info.filename)
            if content is None:
                new.writestr(info, old.read(info))
            else:
                with new.open(zipfile.ZipInfo(info.filename), "w", force_zip64=True) as f:
                    content(f) if callable(content) else f.write(content)
        for name, content in (add or {}).items():
            new.writestr(zipfile.ZipInfo(name), content, compress_type=compress)
    return str(target)


def npy_header(shape, dtype="<f4"):
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buffer.getvalue()


def _peak_bytes(function):
    tracemalloc.start()
    try:
        try:
            function()
        except CheckpointError as err:
            return err, tracemalloc.get_traced_memory()[1]
        pytest.fail("the checkpoint was accepted")
    finally:
        tracemalloc.stop()


def test_a_member_declaring_a_huge_shape_is_refused_before_its_data(finished_run, dataset,
                                                                    tmp_path):
    config, _ = finished_run
    member = "model/encoder_hidden.weight.npy"
    path = rewritten(os.path.join(config.out, train.CHECKPOINT), tmp_path / "huge.npz",
                     replace={member: npy_header((2**40,)) + bytes(1024)})
    err, peak = _peak_bytes(lambda: train.Trainer(config, dataset).restore(path))
    assert "'model/encoder_hidden.weight' declares (1099511627776,) float32, this model " \
           "needs (784, 32) float32" in str(err)
    assert peak < 16 << 20


def test_a_deflated_member_that_inflates_past_its_header_is_refused(finished_run, dataset,
                                                                   tmp_path):
    config, _ = finished_run
    member = "model/encoder_hidden.weight.npy"

    def inflating(f):                      # the right header, then 256 MiB of zeros deflated
        f.write(npy_header((784, 32)))
        for _ in range(256):
            f.write(bytes(1 << 20))
    source = os.path.join(config.out, train.CHECKPOINT)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(tmp_path / "bomb.npz", "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename == member:
                with new.open(member, "w", force_zip64=True) as f:
                    inflating(f)
            else:
                new.writestr(info.filename, old.read(info))
    assert os.path.getsize(tmp_path / "bomb.npz") < 8 << 20
    err, peak = _peak_bytes(lambda: train.Trainer(config, dataset).restore(
        str(tmp_path / "bomb.npz")))
    assert "holds more data than its header declares" in str(err)
    assert peak < 16 << 20


def test_an_unknown_member_is_refused(finished_run, dataset, tmp_path):
    config, _ = finished_run
    path = rewritten(os.path.join(config.out, train.CHECKPOINT), tmp_path / "extra.npz",
                     add={"extra.npy": npy_header((3,)) + bytes(12)})
    with pytest.raises(CheckpointError, match=r"holds unknown arrays \['extra'\]"):
        train.Trainer(config, dataset).restore(path)


def test_a_pickled_member_is_refused_and_never_run(finished_run, dataset, tmp_path):
    config, _ = finished_run
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Planted(str(marker))], dtype=object), allow_pickle=True)
    path = rewritten(os.path.join(config.out, train.CHECKPOINT), tmp_path / "pickled.npz",
                     replace={"model/encoder_hidden.bias.npy": buffer.getvalue()})
    with pytest.raises(CheckpointError, match="holds Python objects"):
        train.Trainer(config, dataset).restore(path)
    with pytest.raises(CheckpointError, match="holds Python objects"):
        checkpoint.load(path)
    assert not marker.exists()


class _Planted:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("change, message", [
    (lambda m: [1, 2, 3], "the metadata is a JSON list, expected an object"),
    (lambda m: dict(m, config="x"), "config is a JSON string, expected an object"),
    (lambda m: dict(m, config=dict(m["config"], epochs="10")), "epochs must be an integer"),
    (lambda m: dict(m, config=dict(m["config"], lr=None)), "lr must be a number, got None"),
    (lambda m: dict(m, epoch=-3), "epoch is -3; expected an integer in"),
    (lambda m: dict(m, epoch=2.7), "epoch is 2.7; expected an integer in"),
    (lambda m: dict(m, epoch="3"), "epoch is '3'; expected an integer in"),
    (lambda m: dict(m, epoch=10**30), "epoch is 1000000000000000000000000000000; expected"),
    (lambda m: dict(m, stream=[1]), "stream is list, expected a JSON object"),
    (lambda m: dict(m, stream={"seed": "a", "offset": 0}), "its states are unreadable"),
    (lambda m: dict(m, optimizer=dict(m["optimizer"], step=10**400)),
     "the optimizer's step is 1" + "0" * 400 + ", out of range"),
    (lambda m: dict(m, optimizer=dict(m["optimizer"], lr="0.1")), "its states are unreadable"),
])
def test_metadata_of_the_wrong_type_or_range_is_refused(finished_run, dataset, tmp_path, change,
                                                        message):
    config, _ = finished_run
    arrays, metadata = checkpoint.load(os.path.join(config.out, train.CHECKPOINT))
    path = str(tmp_path / "damaged.npz")
    payload = dict(arrays, **{checkpoint.METADATA_KEY: np.frombuffer(
        json.dumps(change(metadata)).encode(), dtype=np.uint8)})
    np.savez(path, **payload)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        train.Trainer(config, dataset).restore(path)
