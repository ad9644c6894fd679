"""Training: the loop, checkpoints every epoch, bit-identical resume, and the NaN stop.

A run lives in its run folder (``vae.run_folder``): ``config.json``, ``metrics.jsonl`` (one line
per epoch), ``checkpoint.npz`` (written atomically at the end of every epoch) and the plots.
Everything random is counter- or state-based and saved in the checkpoint (the sampling stream's
(seed, offset), the shuffling and binarization generators' states, Adam's moments and step), so
5 epochs + resume 5 epochs gives the same parameters, bit for bit, as 10 epochs straight.

``run`` never loses work: it holds the folder's lock, refuses a folder that already holds a run
unless told to resume it or to overwrite it, refuses a resume whose settings differ from the
checkpoint's unless the change is accepted (then applied for real and recorded in
metrics.jsonl), and saves only finite state: a NaN or Inf in the loss, the parameters, Adam's
moments or the test -ELBO stops the run before anything is written, with the last good
checkpoint in place.  The stop reruns the failing step under ``minigrad.detect_anomaly()`` from
its exact state (replayed from the epoch's start: parameters, optimizer state, stream position,
batch) and names the op that made the first non-finite value and the line that created it.

On a GPU (``device="cuda"``) the model and both image sets are copied to the device once; the
shuffle order is still drawn from the host Generator (whose state the checkpoint saves) and
moved over, 8 bytes per image per epoch; dynamic binarization draws on the device from a CuPy
generator seeded once per epoch from the host binarization Generator, so resume stays exact (the
draws differ from a CPU run's).  The loss is read back to the host only every
``LOSS_READ_EVERY`` steps and at the end of the epoch, for the progress bar and the NaN check.

Optional records: ``log_grads`` adds each parameter's gradient L2 norm, averaged over the epoch's
steps, to every metrics line as "grad_norms"; ``manifold_frames`` (latent_dim 2) draws the
decoded manifold after every epoch into ``frames/epoch_XXX.png`` (vae.plots).
"""
import dataclasses
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import minigrad as mg
from minigrad.anomaly import AnomalyError
from minigrad.backend import namespace, to_device
from minigrad.optim import Adam
from minigrad.random import Stream
from vae import checkpoint, data, run_folder
from vae.config import ARCHITECTURE, Config, differences, training_changes
from vae.evaluate import convention, evaluate
from vae.model import VAE

CHECKPOINT = run_folder.CHECKPOINT
EVAL_SEED_OFFSET = 7919  # evaluation draws its own stream, never the training one
# steps between reads of the loss on a GPU: each read waits for the device (1 on the CPU,
# where reading is free); about 9 reads per epoch at batch 128
LOSS_READ_EVERY = 50


class TrainingError(RuntimeError):
    """Training stopped: a value became NaN or Inf; nothing non-finite was saved."""


class _NonFinite(Exception):
    """Inside train_epoch: the loss of steps first..last (0-based), or the state after the
    update of step ``last`` (``value`` None), is not finite."""

    def __init__(self, first, last, value=None, what=None):
        super().__init__(first, last, value, what)
        self.first, self.last, self.value, self.what = first, last, value, what


class Trainer:
    """The model, optimizer and every random state of a run, and one epoch at a time of it."""

    def __init__(self, config, dataset):
        self.config = config.validate()
        for name, images in (("train_subset", dataset.train_images),
                             ("test_subset", dataset.test_images)):
            if getattr(config, name) > len(images):
                raise ValueError(f"config: {name} is {getattr(config, name)} but "
                                 f"{dataset.source} has only {len(images)} "
                                 f"{name.split('_')[0]} images")
        self.train_images, self.test_images = _subsets(config, dataset)
        self.test_labels = dataset.test_labels[:len(self.test_images)]
        if self.train_images.shape[1] != config.input_dim:
            raise ValueError(f"config: input_dim is {config.input_dim} but the images have "
                             f"{self.train_images.shape[1]} pixels")
        self.model = VAE(config.input_dim, config.hidden_dim, config.latent_dim,
                         rng=np.random.default_rng(config.seed), posterior=config.posterior,
                         kernel_backend=config.kernel_backend)
        self.model.to(config.device)  # initialised on the host, so every device starts equal
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self._seed_streams()
        if config.binarize == "dynamic":
            # NOTE: the test set is binarized once, with a fixed draw, as in the literature
            self.test_images = data.dynamic_binarize(self.test_images,
                                                     np.random.default_rng([config.seed, 3]))
        # the images the steps read: the host arrays themselves, or one copy of each on the GPU
        self.train_resident = to_device(self.train_images, config.device)
        self.test_resident = to_device(self.test_images, config.device)
        self.epoch = 0
        self.steps_per_epoch = math.ceil(len(self.train_images) / config.batch_size)
        self.grad_norms = None  # {parameter name: mean L2 norm} of the last epoch, with log_grads

    def _seed_streams(self):
        """The sampling stream and the shuffling and binarization generators, from the seed."""
        seed = self.config.seed
        self.stream = Stream(seed)
        self.shuffle_rng = np.random.default_rng([seed, 1])
        self.binarize_rng = np.random.default_rng([seed, 2])

    # --- one epoch --------------------------------------------------------------------------
    def beta_at(self, step):
        """KL weight at a global step: beta, ramped linearly over ``warmup_epochs``."""
        warmup_steps = self.config.warmup_epochs * self.steps_per_epoch
        if warmup_steps <= 0:
            return self.config.beta
        return self.config.beta * min(1.0, (step + 1) / warmup_steps)

    def train_epoch(self, progress=None):
        """One pass over the shuffled training set; returns the mean training loss.

        A non-finite loss, or parameters or Adam moments that are not finite after the last
        update, raise TrainingError naming the epoch, the step and (by a rerun of that step
        under anomaly mode) the op.  With ``log_grads``, also sets ``grad_norms``: each
        parameter's gradient L2 norm (in float64), averaged over the epoch's steps.
        """
        start = self._state()  # where the anomaly rerun replays from: one copy per epoch
        try:
            return self._train_epoch(progress)
        except _NonFinite as failure:
            raise TrainingError(self._explain(failure, start)) from None

    def _batches(self):
        """(step, x) for every step of this epoch, drawing the order and the binarization."""
        config, images = self.config, self.train_resident
        # NOTE: drawn on the host in every case, so the saved Generator state is the whole story
        order = to_device(self.shuffle_rng.permutation(len(images)), config.device)
        binarize_rng = self._binarize_generator() if config.binarize == "dynamic" else None
        for step in range(self.steps_per_epoch):
            x = images[order[step * config.batch_size:(step + 1) * config.batch_size]]
            if binarize_rng is not None:
                x = data.dynamic_binarize(x, binarize_rng)
            yield step, x

    def _train_epoch(self, progress):
        config = self.config
        xp = namespace(self.train_resident)
        read_every = 1 if config.device == "cpu" else LOSS_READ_EVERY
        total, seen = 0.0, 0
        window, window_sizes = [], []  # losses (device scalars) not yet read, and batch sizes
        parameters = self.model.named_parameters()
        norm_sums = dict.fromkeys((name for name, _ in parameters), 0.0)
        for step, x in self._batches():
            global_step = self.epoch * self.steps_per_epoch + step
            loss = self.model.loss(x, self.stream, self.beta_at(global_step)).total
            window.append(loss.data)
            window_sizes.append(len(x))
            if len(window) == read_every or step + 1 == self.steps_per_epoch:
                # the one read of the device per window: checked before this step's update
                values = to_device(xp.stack(window).astype(np.float64), "cpu").tolist()
                for value, size in zip(values, window_sizes):
                    if not math.isfinite(value):
                        raise _NonFinite(step + 1 - len(window), step, value)
                    total += value * size
                    seen += size
                if progress is not None:
                    progress.update(sum(window_sizes))
                    progress.set_postfix(loss=f"{total / seen:.2f}", refresh=False)
                window, window_sizes = [], []
            self.optimizer.zero_grad()
            loss.backward()
            if config.log_grads:
                for name, tensor in parameters:  # summed on the device, read once per epoch
                    norm_sums[name] = norm_sums[name] + xp.linalg.norm(
                        tensor.grad.astype(np.float64).ravel())
            self.optimizer.step()
        # NOTE: the loss checks above cover every update but the last: check its result here
        bad = self.non_finite_state()
        if bad is not None:
            raise _NonFinite(self.steps_per_epoch - 1, self.steps_per_epoch - 1, None, bad)
        self.epoch += 1
        if config.log_grads:
            self.grad_norms = {name: float(value) / self.steps_per_epoch
                               for name, value in norm_sums.items()}
        return total / seen

    def _binarize_generator(self):
        """What ``data.dynamic_binarize`` draws from this epoch: the host Generator itself on the
        CPU; on a GPU a CuPy generator seeded from it (one host draw per epoch)."""
        if self.config.device == "cpu":
            return self.binarize_rng
        return _DeviceUniforms(int(self.binarize_rng.integers(2**63)))

    def evaluate(self):
        return evaluate(self.model, self.test_resident, self.config.seed + EVAL_SEED_OFFSET)

    def non_finite_state(self):
        """"parameter NAME" or "Adam's KEY of NAME" for the first array holding NaN or Inf, or
        None when the parameters and the optimizer state are all finite."""
        parameters = self.model.named_parameters()
        for name, tensor in parameters:
            if not bool(namespace(tensor.data).isfinite(tensor.data).all()):
                return f"parameter {name}"
        for (name, _), entry in zip(parameters, self.optimizer.state):
            for key in self.optimizer.state_arrays:
                if key in entry and not bool(namespace(entry[key]).isfinite(entry[key]).all()):
                    return f"Adam's {key} of {name}"
        return None

    # --- the NaN stop's diagnosis -------------------------------------------------------------
    def _explain(self, failure, start):
        """The TrainingError message: epoch, step, what is not finite, and what anomaly mode
        found when the failing step was rerun from its exact state."""
        epoch = self.epoch + 1
        step, value, finding = self._rerun_under_anomaly(failure, start)
        if failure.value is None:
            return (f"epoch {epoch}, step {failure.last + 1}: after its update {failure.what} "
                    f"holds NaN or Inf values; {finding}")
        if step is not None:  # the replay read every step's loss: the exact step
            where = f"step {step + 1}"
        elif failure.first == failure.last:
            where, value = f"step {failure.last + 1}", failure.value
        else:  # not reproduced on a GPU: the window of steps whose losses were read together
            where, value = (f"steps {failure.first + 1}-{failure.last + 1} (the loss is read "
                            f"every {LOSS_READ_EVERY})", failure.value)
        return f"epoch {epoch}, {where}: the loss is {value}; {finding}"

    def _rerun_under_anomaly(self, failure, start):
        """Replay the epoch from ``start`` (the state at its beginning) to the failing step and
        run that step again under ``mg.detect_anomaly()`` with the parameters, optimizer state,
        stream position and batch it had.  Returns (step, loss, finding): the first step whose
        replayed loss is not finite (None if none was), its loss, and what anomaly mode found."""
        self._load_state(*start)
        for step, x in self._batches():
            beta = self.beta_at(self.epoch * self.steps_per_epoch + step)
            if failure.value is None and step == failure.last:
                return step, None, self._anomaly_step(x, beta, step, loss_failed=False)
            position = self.stream.state_dict()
            loss = self.model.loss(x, self.stream, beta).total
            value = float(to_device(loss.data, "cpu"))
            if not math.isfinite(value):
                self.stream.load_state_dict(position)  # the step draws its own noise again
                return step, value, self._anomaly_step(x, beta, step, loss_failed=True)
            if step == failure.last:
                break
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return (None, None, "rerun from the epoch's start, every step stayed finite: the "
                "failure did not reproduce")

    def _anomaly_step(self, x, beta, step, loss_failed):
        """Forward (and, for a failed update, backward and update) of one step under anomaly
        mode: what made the first non-finite value."""
        bad = self.non_finite_state()
        if bad is not None:  # step > 0: every epoch starts from finite, checked state
            return (f"{bad} was already non-finite before step {step + 1}: the update of step "
                    f"{step} made it (Adam, lr {self.optimizer.lr})")
        try:
            with mg.detect_anomaly():
                loss = self.model.loss(x, self.stream, beta).total
                if not loss_failed:
                    self.optimizer.zero_grad()
                    loss.backward()
        except AnomalyError as err:
            return _anomaly_text(err)
        if loss_failed:
            return ("rerun under anomaly mode, no op made a NaN or Inf from finite values: it "
                    "comes from a leaf (the batch or a constant)")
        self.optimizer.step()
        bad = self.non_finite_state()
        return (f"rerun under anomaly mode, forward and backward are finite: Adam's update "
                f"(lr {self.optimizer.lr}) made {bad} non-finite" if bad is not None else
                "rerun under anomaly mode, the step stayed finite: the failure did not reproduce")

    def explain_evaluation(self):
        """What anomaly mode finds when the evaluation is run again (it is deterministic)."""
        try:
            with mg.detect_anomaly():
                self.evaluate()
        except AnomalyError as err:
            return _anomaly_text(err)
        return ("rerun under anomaly mode, no op made a NaN or Inf from finite values: it comes "
                "from a leaf (the test images or a constant)")

    # --- state and checkpoints ----------------------------------------------------------------
    def _state(self):
        """(arrays, metadata): a copy of everything a checkpoint holds."""
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        optimizer_state = checkpoint.split_arrays(self.optimizer.state_dict(), "optimizer",
                                                  arrays)
        metadata = {
            "format": checkpoint.FORMAT,
            "config": dataclasses.asdict(self.config),
            "epoch": self.epoch,
            "stream": self.stream.state_dict(),
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "binarize_rng": self.binarize_rng.bit_generator.state,
            "optimizer": optimizer_state,
        }
        return arrays, metadata

    def _load_state(self, arrays, metadata):
        state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        self.model.load_state_dict(state)
        self.optimizer.load_state_dict(checkpoint.join_arrays(metadata["optimizer"], arrays))
        self.epoch = metadata["epoch"]
        self.stream.load_state_dict(metadata["stream"])
        self.shuffle_rng.bit_generator.state = metadata["shuffle_rng"]
        self.binarize_rng.bit_generator.state = metadata["binarize_rng"]

    def save(self, path, config_path=None):
        """Write the checkpoint atomically, and with ``config_path`` the config as config.json
        with it, both or neither (``run_folder.replace_together``): a failed write never leaves
        a config.json that describes another checkpoint.  Refuse (TrainingError) state that is
        not finite."""
        bad = self.non_finite_state()
        if bad is not None:
            raise TrainingError(f"epoch {self.epoch}: {bad} holds NaN or Inf values; not saved "
                                f"over {path}")
        files = [(path, checkpoint.writer(*self._state()))]
        if config_path is not None:
            files.append((config_path, run_folder.config_writer(self.config)))
        return run_folder.replace_together(files)[0]

    def expected_arrays(self):
        """{array name: (shape, dtype)} of every array a checkpoint of this trainer may hold."""
        expected = {}
        for i, (name, tensor) in enumerate(self.model.named_parameters()):
            expected[f"model/{name}"] = (tensor.shape, tensor.dtype)
            for key in self.optimizer.state_arrays:
                expected[f"optimizer/state.{i}.{key}"] = (tensor.shape, tensor.dtype)
        return expected

    def restore(self, path):
        """Load a checkpoint of this architecture; return the Config it was trained with.

        Its metadata is validated and its architecture compared with this trainer's before any
        array is read; then each array's declared shape and dtype must be this model's.
        """
        def expected(metadata):
            saved = checkpoint.checked_metadata(path, metadata)
            for name in ARCHITECTURE:
                if getattr(saved, name) != getattr(self.config, name):
                    raise checkpoint.CheckpointError(
                        f"{path}: the checkpoint's model has {name}={getattr(saved, name)}, "
                        f"this run has {name}={getattr(self.config, name)}; they must match")
            return self.expected_arrays()
        arrays, metadata = checkpoint.load(path, expected)
        try:
            self._load_state(arrays, metadata)
        except (KeyError, ValueError, TypeError, OverflowError) as err:
            raise checkpoint.CheckpointError(f"{path}: does not fit this model or its states "
                                             f"are unreadable ({err})") from None
        return checkpoint.checked_metadata(path, metadata)

    def resume(self, path, allow_changed_settings=False):
        """``restore``, then compare the TRAINING settings with the checkpoint's: refuse a
        difference, or with ``allow_changed_settings`` apply it (Adam's lr set, the streams
        seeded afresh from a new seed; the rest is read from the config at every step).
        Returns {field: (saved, new)} of the changes."""
        saved = self.restore(path)
        changes = training_changes(saved, self.config)
        if changes and not allow_changed_settings:
            listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
            raise ValueError(f"{path}: the resumed run's settings differ from the checkpoint's "
                             f"({listed}); leave those flags out to continue the run as it was "
                             "trained, or pass --allow-changed-settings to change them (the run "
                             "is then no longer bit-identical to a straight one)")
        self.optimizer.lr = self.config.lr
        if "seed" in changes:
            self._seed_streams()
        return changes


def _anomaly_text(err):
    """One line from an AnomalyError: the op, its pass, and the line of code that created it."""
    lines = str(err).splitlines()
    source = f": {lines[1].strip()}" if len(lines) > 1 else ""
    return (f"rerun under anomaly mode, the {err.phase} pass of op '{err.op}' makes {err.count} "
            f"of {err.size} values NaN or Inf from finite ones ({err.where}); the op was "
            f"created at {err.origin or 'an unknown line'}{source}")


class _DeviceUniforms:
    """``random(shape, dtype)`` uniforms in [0, 1) drawn on the GPU by a seeded CuPy RandomState:
    the one method of a Generator that ``data.dynamic_binarize`` calls."""

    def __init__(self, seed):
        import cupy  # only reached with device "cuda", where the model's move imported it
        self._state = cupy.random.RandomState(seed)

    def random(self, shape, dtype):
        return self._state.random_sample(shape, dtype=dtype)


def _subsets(config, dataset):
    train = dataset.train_images[:config.train_subset or None]
    test = dataset.test_images[:config.test_subset or None]
    return np.ascontiguousarray(train), np.ascontiguousarray(test)


# --- a run in its folder ----------------------------------------------------------------------
def run(config, resume=False, dataset=None, log=print, overwrite=False,
        allow_changed_settings=False):
    """Train (or resume) the run in ``config.out``; return the Trainer after the last epoch.

    A folder that already holds a run is refused unless ``resume`` (continue it from its
    checkpoint) or ``overwrite`` (replace it by a new run).  An overwritten run is removed only
    when the new run's first epoch is ready to be saved: bad data, subsets or device, a NaN or
    an interrupt before then leave it whole.  On resume, TRAINING settings that differ from the
    checkpoint's are refused unless ``allow_changed_settings``; an accepted change is recorded
    in the next metrics line as "settings_changed".
    """
    config.validate()
    folder = config.out
    run_folder.make_folder(folder)
    with run_folder.lock(folder):
        run_folder.refuse_links(folder)
        for path in run_folder.remove_temporaries(folder):
            log(f"removed {path}, left by an interrupted write")
        checkpoint_path = os.path.join(folder, CHECKPOINT)
        if resume and not os.path.lexists(checkpoint_path):
            raise checkpoint.CheckpointError(
                f"{checkpoint_path}: no such checkpoint; --resume needs an earlier run in "
                f"{folder} that finished an epoch")
        present = run_folder.existing_run_files(folder)
        if present and not resume and not overwrite:
            raise run_folder.RunFolderError(
                f"{folder}: already holds a run ({', '.join(present)}); pass --resume to "
                "continue it, or --overwrite to delete it and start over")
        replacing = bool(present) and not resume
        dataset = data.load(config.data) if dataset is None else dataset
        trainer = Trainer(config, dataset)
        changes = {}
        if resume:
            changes = trainer.resume(checkpoint_path, allow_changed_settings)
            run_folder.trim_metrics(folder, trainer.epoch, log)
            log(f"resumed {checkpoint_path} after epoch {trainer.epoch}")
            if changes:
                log("changed on resume: " + ", ".join(
                    f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
                    + "; from here the run is not bit-identical to a straight one")
        elif not replacing:
            run_folder.write_config(folder, config)
        _train_epochs(trainer, dataset, changes, log, replacing)
    return trainer


def _train_epochs(trainer, dataset, changes, log, replacing=False):
    """The epochs of ``run``: train, evaluate, check, record, save; until config.epochs.
    ``replacing``: the folder holds an old run that the first save removes (--overwrite)."""
    config, folder = trainer.config, trainer.config.out
    checkpoint_path = os.path.join(folder, CHECKPOINT)
    log(f"training on {len(trainer.train_images)} images from {dataset.source}, "
        f"testing on {len(trainer.test_images)}; {trainer.model.architecture()}, "
        f"batch {config.batch_size}, lr {config.lr}, beta {config.beta}, seed {config.seed}")
    figures = convention(config.binarize, posterior=config.posterior)
    log(f"figures: {figures}, per test example, in nats")
    draw_frame = _frame_drawer(config)
    show_bar = not config.quiet and sys.stderr.isatty()
    saved_epoch = trainer.epoch if os.path.lexists(checkpoint_path) else None
    while trainer.epoch < config.epochs:
        started = time.perf_counter()
        try:
            with tqdm(total=len(trainer.train_images), desc=f"epoch {trainer.epoch + 1}",
                      unit="img", disable=not show_bar, leave=False) as bar:
                train_loss = trainer.train_epoch(bar)
            seconds = time.perf_counter() - started
            test = trainer.evaluate()
            if not math.isfinite(test["neg_elbo"]):
                raise TrainingError(f"epoch {trainer.epoch}: the test -ELBO is "
                                    f"{test['neg_elbo']}; {trainer.explain_evaluation()}")
        except TrainingError as err:
            if replacing:
                kept = f"the old run in {folder} is left as it was"
            elif saved_epoch is None:
                kept = "nothing was saved (no epoch had finished)"
            else:
                kept = f"{checkpoint_path} keeps epoch {saved_epoch}"
            raise TrainingError(f"{err}; stopped, {kept}") from None
        record = {"epoch": trainer.epoch, "train_loss": train_loss, "test_neg_elbo": test["neg_elbo"],
                  "test_reconstruction": test["reconstruction"], "test_kl": test["kl"],
                  "active_units": test["active_units"], "seconds": seconds,
                  "convention": figures}
        if config.log_grads:
            record["grad_norms"] = trainer.grad_norms
        if changes:  # the first epoch after an accepted change of settings says so
            record["settings_changed"] = {name: list(pair) for name, pair in changes.items()}
            changes = {}
        if replacing:  # the new run has its first epoch: now the old one goes
            log(f"--overwrite: removed {', '.join(run_folder.clear_run(folder))} from {folder}")
            replacing = False
        run_folder.append_metrics(folder, record)
        # NOTE: the checkpoint comes after the metrics: a crash between leaves metrics ahead of
        # the checkpoint, which resume trims; the other order would lose this epoch's metrics.
        # config.json is written with the checkpoint, both or neither: it always describes it
        trainer.save(checkpoint_path, os.path.join(folder, run_folder.CONFIG))
        saved_epoch = trainer.epoch
        if draw_frame is not None:
            draw_frame(trainer.model, trainer.epoch)
        if not config.quiet:
            log(f"epoch {trainer.epoch}/{config.epochs}  train -ELBO {train_loss:.2f}  "
                f"test -ELBO {test['neg_elbo']:.2f} (rec {test['reconstruction']:.2f}, "
                f"KL {test['kl']:.2f})  active units {test['active_units']}  {seconds:.1f}s")


def _frame_drawer(config):
    """draw(model, epoch) writing frames/epoch_XXX.png of the run, or None when frames are off."""
    if not config.manifold_frames:
        return None
    from vae import plots  # matplotlib is loaded only by runs that draw
    folder = run_folder.make_folder(os.path.join(config.out, run_folder.FRAMES))

    def draw(model, epoch):
        return plots.manifold_frame(model, os.path.join(folder, f"epoch_{epoch:03d}.png"),
                                    epoch, grid=15)
    return draw


def load_run(folder):
    """The Trainer of the run in ``folder``, on the CPU, restored from its checkpoint.

    The model is built from the config the checkpoint embeds (what was trained), and the
    folder's config.json must agree with it: a disagreement is refused, naming each field.
    """
    written = run_folder.read_config(folder)
    path = os.path.join(folder, CHECKPOINT)
    saved = checkpoint.checked_metadata(path, checkpoint.read_metadata(path))
    # the folder may have moved (out) and quiet changes nothing; every other field must agree
    names = [field.name for field in dataclasses.fields(Config)
             if field.name not in ("out", "quiet")]
    differ = differences(written, saved, names)
    if differ:
        listed = "; ".join(f"{name} {a!r} there, {b!r} in the checkpoint"
                           for name, (a, b) in differ.items())
        raise checkpoint.CheckpointError(
            f"{os.path.join(folder, run_folder.CONFIG)}: disagrees with {path} ({listed}); the "
            "checkpoint holds what was trained: undo the edit to config.json (if no one edited "
            "it, a trainer was killed between renaming the two into place)")
    # eval, sample and plot run on the CPU, whatever device trained the run
    config = dataclasses.replace(saved, out=folder, device="cpu", kernel_backend=None)
    trainer = Trainer(config, data.load(config.data))
    trainer.restore(path)
    return trainer
