"""Training: the loop, the run folder, checkpoints every epoch, and bit-identical resume.

A run folder holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.npz``
(written atomically at the end of every epoch) and the plots.  Everything random is counter-
or state-based and saved in the checkpoint (the sampling stream's (seed, offset), the shuffling
and binarization generators' states, Adam's moments and step), so 5 epochs + resume 5 epochs
gives the same parameters, bit for bit, as 10 epochs straight.

On a GPU (``device="cuda"``) the model and both image sets are copied to the device once; the
shuffle order is still drawn from the host Generator (whose state the checkpoint saves) and
moved over, 8 bytes per image per epoch; dynamic binarization draws on the device from a CuPy
generator seeded once per epoch from the host binarization Generator, so resume stays exact (the
draws differ from a CPU run's).  The loss is read back to the host only every
``LOSS_READ_EVERY`` steps and at the end of the epoch, for the progress bar and the NaN check,
which then names the first window of steps whose loss was not finite.

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

from minigrad.backend import DEVICES, namespace, to_device
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
# steps between reads of the loss on a GPU: each read waits for the device (1 on the CPU,
# where reading is free); about 9 reads per epoch at batch 128
LOSS_READ_EVERY = 50
KERNEL_BACKENDS = ("cupy", "numba_cuda")


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
    device: str = "cpu"
    kernel_backend: str = None  # the sampling kernel on a GPU; None: by array type (cupy)

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
        if self.device not in DEVICES:
            raise ValueError(f"config: device must be one of {', '.join(DEVICES)}, "
                             f"got {self.device!r}")
        if self.kernel_backend is not None and (self.kernel_backend not in KERNEL_BACKENDS
                                                or self.device != "cuda"):
            raise ValueError(f"config: kernel_backend must be one of {', '.join(KERNEL_BACKENDS)} "
                             f"with device 'cuda', got {self.kernel_backend!r} on "
                             f"{self.device!r}")
        if self.device == "cuda" and (self.posterior != "gaussian" or self.manifold_frames):
            raise ValueError("config: device 'cuda' trains the gaussian posterior without "
                             f"manifold frames (their kernels and plots run on the CPU); got "
                             f"posterior={self.posterior!r}, "
                             f"manifold_frames={self.manifold_frames}")
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
                         rng=np.random.default_rng(config.seed), posterior=config.posterior,
                         kernel_backend=config.kernel_backend)
        self.model.to(config.device)  # initialised on the host, so every device starts equal
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.stream = Stream(config.seed)
        self.shuffle_rng = np.random.default_rng([config.seed, 1])
        self.binarize_rng = np.random.default_rng([config.seed, 2])
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
        config, images = self.config, self.train_resident
        xp = namespace(images)
        # NOTE: drawn on the host in every case, so the saved Generator state is the whole story
        order = to_device(self.shuffle_rng.permutation(len(images)), config.device)
        binarize_rng = self._binarize_generator() if config.binarize == "dynamic" else None
        read_every = 1 if config.device == "cpu" else LOSS_READ_EVERY
        total, seen = 0.0, 0
        window, window_sizes = [], []  # losses (device scalars) not yet read, and batch sizes
        parameters = self.model.named_parameters()
        norm_sums = dict.fromkeys((name for name, _ in parameters), 0.0)
        for step in range(self.steps_per_epoch):
            rows = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = images[rows]
            if binarize_rng is not None:
                x = data.dynamic_binarize(x, binarize_rng)
            global_step = self.epoch * self.steps_per_epoch + step
            loss = self.model.loss(x, self.stream, self.beta_at(global_step)).total
            window.append(loss.data)
            window_sizes.append(len(x))
            if len(window) == read_every or step + 1 == self.steps_per_epoch:
                # the one read of the device per window: checked before this step's update
                values = to_device(xp.stack(window).astype(np.float64), "cpu").tolist()
                for value, size in zip(values, window_sizes):
                    if not math.isfinite(value):
                        first = step + 2 - len(window)
                        steps = f"step {step + 1}" if first == step + 1 else \
                            f"steps {first}-{step + 1} (the loss is read every {read_every})"
                        raise TrainingError(f"epoch {self.epoch + 1}, {steps}: the loss is {value}; "
                                            f"stopped, the last good checkpoint is kept")
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


class _DeviceUniforms:
    """``random(shape, dtype)`` uniforms in [0, 1) drawn on the GPU by a seeded CuPy RandomState:
    the one method of a Generator that ``data.dynamic_binarize`` calls."""

    def __init__(self, seed):
        import cupy  # only reached with device "cuda", where the model's move imported it
        self._state = cupy.random.RandomState(seed)

    def random(self, shape, dtype):
        return self._state.random_sample(shape, dtype=dtype)


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
    draw_frame = _frame_drawer(config)
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


def _frame_drawer(config):
    """draw(model, epoch) writing frames/epoch_XXX.png of the run, or None when frames are off."""
    if not config.manifold_frames:
        return None
    from vae import study_plots  # matplotlib is loaded only by runs that draw
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
