"""The settings of a run: one ``Config``, its fields' types and ranges, and which of them a resume
may change.

The same checks serve every way a setting arrives: the command line's flags (``problem``, called
by ``vae.cli`` at parse time), a Config built in Python (``Config.validate``), and the JSON of
``config.json`` or of a checkpoint's metadata (``config_from_dict``, which also checks the JSON
types).  A field missing from an older run's JSON holds its default, the value it had before the
field existed (``posterior`` was always "gaussian").

Fields by what a resume may do with them:
    ARCHITECTURE  the model's shape: never changes (the checkpoint could not fill another model)
    TRAINING      change what the parameters become: they must match the checkpoint's, unless the
                  change is accepted explicitly (``--allow-changed-settings``)
    the others    the target (epochs), where and how it runs (device, kernel_backend, quiet, out)
                  and what is recorded (log_grads, manifold_frames): free to change
"""
import dataclasses
import math
import os

from minigrad.backend import DEVICES
from vae import data
from vae.model import POSTERIORS

KERNEL_BACKENDS = ("cupy", "numba_cuda")
ARCHITECTURE = ("input_dim", "hidden_dim", "latent_dim", "posterior")
TRAINING = ("data", "batch_size", "lr", "beta", "warmup_epochs", "seed", "binarize",
            "train_subset", "test_subset")
MAX_EPOCHS = 1_000_000
# inclusive integer ranges; the upper bounds keep a typo from asking for terabytes of memory
INT_RANGES = {
    "epochs": (1, MAX_EPOCHS),
    "batch_size": (1, 2**20),
    "input_dim": (1, 2**24),
    "hidden_dim": (1, 2**16),
    "latent_dim": (1, 2**16),
    "seed": (0, 2**32 - 1),
    "train_subset": (0, 2**31),   # 0: all; larger than the data set is refused by the Trainer
    "test_subset": (0, 2**31),
}
# (lowest, lowest is allowed, highest): finite numbers only
FLOAT_RANGES = {
    "lr": (0.0, False, math.inf),
    "beta": (0.0, True, math.inf),
    "warmup_epochs": (0.0, True, float(MAX_EPOCHS)),
}
CHOICES = {"binarize": ("none", "dynamic"), "posterior": POSTERIORS, "device": DEVICES}


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
        """Self, or a ValueError naming the first field out of its type or range."""
        for field in dataclasses.fields(self):
            found = problem(field.name, getattr(self, field.name))
            if found:
                raise ValueError(f"config: {field.name} {found}")
        if self.kernel_backend is not None and self.device != "cuda":
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


FIELD_TYPES = {field.name: field.type for field in dataclasses.fields(Config)}


def problem(name, value):
    """What is wrong with ``value`` for the field ``name`` ("must be ..., got ..."), or None."""
    kind = FIELD_TYPES[name]
    if name == "kernel_backend":
        if value is not None and value not in KERNEL_BACKENDS:
            return f"must be one of {', '.join(KERNEL_BACKENDS)} or None, got {value!r}"
        return None
    if kind is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if kind is str:
        if not isinstance(value, str):
            return f"must be a string, got {value!r}"
        if name in CHOICES and value not in CHOICES[name]:
            if name == "binarize":
                return f"must be 'none' or 'dynamic', got {value!r}"
            return f"must be one of {', '.join(CHOICES[name])}, got {value!r}"
        return None
    if kind is int:
        low, high = INT_RANGES[name]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {value!r}"
        if value < low:
            return (f"must be >= 0 (0: all), got {value}" if name.endswith("_subset")
                    else f"must be at least {low}, got {value}")
        if value > high:
            return f"must be at most {high}, got {value}"
        return None
    low, low_allowed, high = FLOAT_RANGES[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if value < low or (value == low and not low_allowed):
        return f"must be {'>=' if low_allowed else '>'} {low:g}, got {value}"
    if value > high:
        return f"must be at most {high:g}, got {value}"
    return None


def config_from_dict(values, source):
    """A validated Config from JSON ``values``; a ValueError names ``source`` and the field."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: the config is a JSON {_json_type(values)}, expected an "
                         "object of settings")
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise ValueError(f"{source}: unknown config fields {unknown}")
    settings = dict(values)
    for name, value in values.items():
        if FIELD_TYPES[name] is float and isinstance(value, int) and not isinstance(value, bool):
            settings[name] = float(value)  # JSON writes 1.0 as 1 only if a person edited it
        found = problem(name, settings[name])
        if found:
            raise ValueError(f"{source}: {name} {found}")
    try:
        return Config(**settings).validate()
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def _json_type(value):
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def differences(first, second, names):
    """{field: (first's value, second's value)} for the ``names`` on which two Configs differ
    (``data`` compared as the folder it resolves to)."""
    found = {}
    for name in names:
        a, b = getattr(first, name), getattr(second, name)
        if (os.path.realpath(a) != os.path.realpath(b)) if name == "data" else a != b:
            found[name] = (a, b)
    return found


def training_changes(saved, wanted):
    """{field: (saved value, wanted value)} for the TRAINING fields that differ."""
    return differences(saved, wanted, TRAINING)
