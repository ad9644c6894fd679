"""Training: the loop, the run folder, checkpoints every epoch, and bit-identical resume.

A run folder holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.npz``
(written atomically at the end of every epoch) and the plots.  Everything random is counter-
or state-based and saved in the checkpoint (the sampling stream's (seed, offset), the shuffling
and binarization generators' states, Adam's moments and step), so 5 epochs + resume 5 epochs
gives the same parameters, bit for bit, as 10 epochs straight.

Optional records: ``log_grads`` adds each parameter's gradient L2 norm, averaged over the epoch's
steps, to every metrics line as "grad_norms"; ``manifold_frames`` (latent_dim 2) draws the
decoded manifold after every epoch into ``frames/epoch_XXX.png`` (vae.study_plots).
"""
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from minigrad.optim import Adam
from minigrad.random import Stream
from vae import checkpoint, data
from vae.evaluate import convention, evaluate
from vae.model import POSTERIORS, VAE

CHECKPOINT = "checkpoint.npz"
ARCHITECTURE = ("input_dim", "hidden_dim", "latent_dim", "posterior")
# checkpoints written before a field of ARCHITECTURE existed held its value implicitly
IMPLICIT_ARCHITECTURE = {"posterior": "gaussian"}
FRAMES = "frames"
EVAL_SEED_OFFSET = 7919  # evaluation draws its own stream, never the training one


class TrainingError(RuntimeError):
    """Training stopped: bad values appeared; the last good checkpoint is kept."""


@dataclasses.dataclass
class Config:
    """Every setting of a run; saved as config.json and inside each checkpoint."""

    data: str = data.DEFAULT_DIR
    out: str = os.path.join("runs", "mnist")
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    input_dim: int = 784
    hidden_dim: int = 400
    latent_dim: int = 20
    beta: float = 1.0
    warmup_epochs: float = 0.0
    seed: int = 1
    binarize: str = "none"
    train_subset: int = 0
    test_subset: int = 0
    posterior: str = "gaussian"
    log_grads: bool = False
    manifold_frames: bool = False
    quiet: bool = False

    def validate(self):
        for name in ("epochs", "batch_size", "hidden_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"config: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) < 0:
                raise ValueError(f"config: {name} must be >= 0 (0: all), got {getattr(self, name)}")
        if self.lr <= 0 or self.beta < 0 or self.warmup_epochs < 0:
            raise ValueError(f"config: lr must be > 0 and beta, warmup_epochs >= 0; got lr="
                             f"{self.lr}, beta={self.beta}, warmup_epochs={self.warmup_epochs}")
        if self.binarize not in ("none", "dynamic"):
            raise ValueError(f"config: binarize must be 'none' or 'dynamic', got {self.binarize!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"config: posterior must be one of {', '.join(POSTERIORS)}, "
                             f"got {self.posterior!r}")
        if self.manifold_frames and self.latent_dim != 2:
            raise ValueError(f"config: manifold_frames draws the 2-D latent manifold and needs "
                             f"latent_dim == 2, got latent_dim={self.latent_dim}")
        return self


class Trainer:
    """The model, optimizer and every random state of a run, and one epoch at a time of it."""

    def __init__(self, config, dataset):
        self.config = config.validate()
        self.train_images, self.test_images = _subsets(config, dataset)
        self.test_labels = dataset.test_labels[:len(self.test_images)]
        if self.train_images.shape[1] != config.input_dim:
            raise ValueError(f"config: input_dim is {config.input_dim} but the images have "
                             f"{self.train_images.shape[1]} pixels")
        self.model = VAE(config.input_dim, config.hidden_dim, config.latent_dim,
                         rng=np.random.default_rng(config.seed), posterior=config.posterior)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.stream = Stream(config.seed)
        self.shuffle_rng = np.random.default_rng([config.seed, 1])
        self.binarize_rng = np.random.default_rng([config.seed, 2])
        if config.binarize == "dynamic":
            # NOTE: the test set is binarized once, with a fixed draw, as in the literature
            self.test_images = data.dynamic_binarize(self.test_images,
                                                     np.random.default_rng([config.seed, 3]))
        self.epoch = 0
        self.steps_per_epoch = math.ceil(len(self.train_images) / config.batch_size)
        self.grad_norms = None  # {parameter name: mean L2 norm} of the last epoch, with log_grads

    # --- one epoch --------------------------------------------------------------------------
    def beta_at(self, step):
        """KL weight at a global step: beta, ramped linearly over ``warmup_epochs``."""
        warmup_steps = self.config.warmup_epochs * self.steps_per_epoch
        if warmup_steps <= 0:
            return self.config.beta
        return self.config.beta * min(1.0, (step + 1) / warmup_steps)

    def train_epoch(self, progress=None):
        """One pass over the shuffled training set; returns the mean training loss.

        With ``log_grads``, also sets ``grad_norms``: each parameter's gradient L2 norm (in
        float64), averaged over the epoch's steps.
        """
        config, images = self.config, self.train_images
        order = self.shuffle_rng.permutation(len(images))
        total, seen = 0.0, 0
        parameters = self.model.named_parameters()
        norm_sums = dict.fromkeys((name for name, _ in parameters), 0.0)
        for step in range(self.steps_per_epoch):
            rows = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = images[rows]
            if config.binarize == "dynamic":
                x = data.dynamic_binarize(x, self.binarize_rng)
            global_step = self.epoch * self.steps_per_epoch + step
            loss = self.model.loss(x, self.stream, self.beta_at(global_step)).total
            value = float(loss.data)
            if not math.isfinite(value):
                raise TrainingError(f"epoch {self.epoch + 1}, step {step + 1}: the loss is {value}; "
                                    f"stopped, the last good checkpoint is kept")
            self.optimizer.zero_grad()
            loss.backward()
            if config.log_grads:
                for name, tensor in parameters:
                    norm_sums[name] += float(np.linalg.norm(tensor.grad.astype(np.float64).ravel()))
            self.optimizer.step()
            total += value * len(x)
            seen += len(x)
            if progress is not None:
                progress.update(len(x))
                progress.set_postfix(loss=f"{total / seen:.2f}", refresh=False)
        self.epoch += 1
        if config.log_grads:
            self.grad_norms = {name: value / self.steps_per_epoch
                               for name, value in norm_sums.items()}
        return total / seen

    def evaluate(self):
        return evaluate(self.model, self.test_images, self.config.seed + EVAL_SEED_OFFSET)

    # --- checkpoints ------------------------------------------------------------------------
    def save(self, path):
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        optimizer_state = _split_arrays(self.optimizer.state_dict(), "optimizer", arrays)
        metadata = {
            "format": "minigrad-vae-checkpoint/1",
            "config": dataclasses.asdict(self.config),
            "epoch": self.epoch,
            "stream": self.stream.state_dict(),
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "binarize_rng": self.binarize_rng.bit_generator.state,
            "optimizer": optimizer_state,
        }
        return checkpoint.save(path, arrays, metadata)

    def restore(self, path):
        """Load a checkpoint of this architecture; refuse one of another."""
        arrays, metadata = checkpoint.load(path)
        if metadata.get("format") != "minigrad-vae-checkpoint/1":
            raise checkpoint.CheckpointError(f"{path}: format {metadata.get('format')!r} is not "
                                             "a minigrad VAE checkpoint")
        missing = [key for key in ("config", "epoch", "optimizer", "stream", "shuffle_rng",
                                   "binarize_rng") if key not in metadata]
        if missing:
            raise checkpoint.CheckpointError(f"{path}: the metadata lacks {missing}")
        saved = metadata["config"]
        for name in ARCHITECTURE:
            value = saved.get(name, IMPLICIT_ARCHITECTURE.get(name))
            if value != getattr(self.config, name):
                raise checkpoint.CheckpointError(
                    f"{path}: the checkpoint's model has {name}={value}, this run "
                    f"has {name}={getattr(self.config, name)}; they must match")
        state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        try:
            self.model.load_state_dict(state)
            self.optimizer.load_state_dict(_join_arrays(metadata["optimizer"], arrays))
        except (KeyError, ValueError, TypeError) as err:
            raise checkpoint.CheckpointError(f"{path}: does not fit this model ({err})") from None
        try:
            self.epoch = int(metadata["epoch"])
            self.stream.load_state_dict(metadata["stream"])
            self.shuffle_rng.bit_generator.state = metadata["shuffle_rng"]
            self.binarize_rng.bit_generator.state = metadata["binarize_rng"]
        except (KeyError, ValueError, TypeError) as err:
            raise checkpoint.CheckpointError(f"{path}: its RNG states are unreadable ({err})") from None


def _split_arrays(value, prefix, arrays):
    """Copy a nested state into JSON-able form, moving ndarrays into ``arrays`` by path."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {str(k): _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join_arrays(value, arrays):
    """Inverse of ``_split_arrays``."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, arrays) for v in value]
    return value


def _subsets(config, dataset):
    train = dataset.train_images[:config.train_subset or None]
    test = dataset.test_images[:config.test_subset or None]
    return np.ascontiguousarray(train), np.ascontiguousarray(test)


def run(config, resume=False, dataset=None, log=print):
    """Train (or resume) the run in ``config.out``; return the Trainer after the last epoch."""
    dataset = data.load(config.data) if dataset is None else dataset
    os.makedirs(config.out, exist_ok=True)
    trainer = Trainer(config, dataset)
    checkpoint_path = os.path.join(config.out, CHECKPOINT)
    metrics_path = os.path.join(config.out, "metrics.jsonl")
    if resume:
        trainer.restore(checkpoint_path)
        _truncate_metrics(metrics_path, trainer.epoch)
        log(f"resumed {checkpoint_path} after epoch {trainer.epoch}")
    else:
        open(metrics_path, "w").close()
    with open(os.path.join(config.out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    log(f"training on {len(trainer.train_images)} images from {dataset.source}, "
        f"testing on {len(trainer.test_images)}; {trainer.model.architecture()}, "
        f"batch {config.batch_size}, lr {config.lr}, beta {config.beta}, seed {config.seed}")
    figures = convention(config.binarize, posterior=config.posterior)
    log(f"figures: {figures}, per test example, in nats")
    draw_frame = _frame_drawer(config, log)
    show_bar = not config.quiet and sys.stderr.isatty()
    while trainer.epoch < config.epochs:
        started = time.perf_counter()
        with tqdm(total=len(trainer.train_images), desc=f"epoch {trainer.epoch + 1}", unit="img",
                  disable=not show_bar, leave=False) as bar:
            train_loss = trainer.train_epoch(bar)
        seconds = time.perf_counter() - started
        test = trainer.evaluate()
        record = {"epoch": trainer.epoch, "train_loss": train_loss, "test_neg_elbo": test["neg_elbo"],
                  "test_reconstruction": test["reconstruction"], "test_kl": test["kl"],
                  "active_units": test["active_units"], "seconds": seconds,
                  "convention": figures}
        if config.log_grads:
            record["grad_norms"] = trainer.grad_norms
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        # NOTE: the checkpoint comes last: a crash before it leaves metrics ahead of the
        # checkpoint, which resume trims; the other order would lose this epoch's metrics
        trainer.save(checkpoint_path)
        if draw_frame is not None:
            draw_frame(trainer.model, trainer.epoch)
        if not config.quiet:
            log(f"epoch {trainer.epoch}/{config.epochs}  train -ELBO {train_loss:.2f}  "
                f"test -ELBO {test['neg_elbo']:.2f} (rec {test['reconstruction']:.2f}, "
                f"KL {test['kl']:.2f})  active units {test['active_units']}  {seconds:.1f}s")
    return trainer


def _frame_drawer(config, log):
    """draw(model, epoch) writing frames/epoch_XXX.png of the run, or None when frames are off
    (or vae.study_plots cannot be imported: a missing figure must not stop a run)."""
    if not config.manifold_frames:
        return None
    try:
        from vae import study_plots
    except ImportError as err:
        log(f"note: --manifold-frames skipped: vae.study_plots is not importable ({err})")
        return None
    folder = os.path.join(config.out, FRAMES)
    os.makedirs(folder, exist_ok=True)

    def draw(model, epoch):
        return study_plots.manifold_frame(model, os.path.join(folder, f"epoch_{epoch:03d}.png"),
                                          epoch, grid=15)
    return draw


def _truncate_metrics(path, epochs):
    """Keep the metrics of the epochs the checkpoint holds (a crash may have left more)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["epoch"] <= epochs]
    with open(path, "w") as f:
        f.writelines(kept)


def read_metrics(folder):
    """The list of per-epoch records of a run folder."""
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
