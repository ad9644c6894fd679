"""The VAE trainers the benchmarks time, one epoch at a time, and the settings they share.

- ``MinigradRun``: the product's own loop (``vae.train.Trainer``), exactly as `python -m vae train`.
- ``torch_run_class(torch, device)``: the pytorch/examples VAE (vae/main.py: fc1 784-400,
  fc21/fc22 400-20, fc3 20-400, fc4 400-784, ReLU, BCE-with-logits + KL, Adam 1e-3, batch 128,
  reshuffled each epoch), returning logits instead of sigmoid outputs, on the CPU or on CUDA.
- ``warm_up``, ``timed_epoch``, ``interleaved_epochs``: epochs of every trainer in turn, so
  machine noise hits each alike.
- ``add_cpu_arguments``, ``make_config``: the settings of the CPU benchmarks.

PyTorch is never a dependency: it is passed in once imported (``import_torch``).
"""
import dataclasses
import importlib.util
import statistics
import time

from benchmarks.report import add_out_arguments, out_folder
from vae import data
from vae.train import EVAL_SEED_OFFSET, Config, Trainer

QUICK_TRAIN_SUBSET = 5000  # training images of a --quick run


class MinigradRun:
    """The product's Trainer: train_epoch() and evaluate() exactly as `python -m vae train`."""

    name = "minigrad"

    def __init__(self, config, dataset):
        self.trainer = Trainer(config, dataset)

    def train_epoch(self):
        return self.trainer.train_epoch()  # ends with a read of the loss: the epoch is done

    def evaluate(self):
        return self.trainer.evaluate()["neg_elbo"]


def torch_vae_class(torch, device="cpu"):
    """The pytorch/examples VAE and its loss, defined once torch is imported (it is optional):
    (TorchVAE, neg_elbo_sum)."""
    functional = torch.nn.functional

    class TorchVAE(torch.nn.Module):
        def __init__(self, input_dim, hidden_dim, latent_dim):
            super().__init__()
            self.fc1 = torch.nn.Linear(input_dim, hidden_dim)
            self.fc21 = torch.nn.Linear(hidden_dim, latent_dim)
            self.fc22 = torch.nn.Linear(hidden_dim, latent_dim)
            self.fc3 = torch.nn.Linear(latent_dim, hidden_dim)
            self.fc4 = torch.nn.Linear(hidden_dim, input_dim)

        def forward(self, x, generator):
            h1 = functional.relu(self.fc1(x))
            mu, logvar = self.fc21(h1), self.fc22(h1)                         # (B, L) each
            eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
            return self.fc4(functional.relu(self.fc3(z))), mu, logvar

    def neg_elbo_sum(logits, x, mu, logvar):
        """Sum over the batch of BCE-sum + KL, the example's loss_function (with logits)."""
        bce = functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kl

    return TorchVAE, neg_elbo_sum


def torch_run_class(torch, device="cpu"):
    """The PyTorch trainer on ``device``, defined once torch is imported (it is optional).

    Data, model and noise live on the device; on the CPU the images share the NumPy arrays'
    memory.  ``loss.item()`` every step, as the example does (on CUDA, a sync per step).
    """
    device = torch.device(device)
    TorchVAE, neg_elbo_sum = torch_vae_class(torch, device)

    class TorchRun:
        def __init__(self, config, train_images, test_images, fused=False):
            self.name = "torch_fused" if fused else "torch"
            self.config, self.fused = config, fused
            torch.manual_seed(config.seed)  # the same initial weights for eager and fused
            self.model = TorchVAE(config.input_dim, config.hidden_dim,
                                  config.latent_dim).to(device)
            # NOTE: fused=None, not False, for eager: False also turns off the foreach update
            # that torch picks by default on CUDA (on the CPU, None and False are the same)
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                              fused=True if fused else None)
            self.train_images = torch.from_numpy(train_images).to(device)  # float32, once
            self.test_images = torch.from_numpy(test_images).to(device)
            self.shuffle = torch.Generator(device=device).manual_seed(config.seed)
            self.noise = torch.Generator(device=device).manual_seed(config.seed + 1)

        def train_epoch(self):
            """One shuffled pass; the loss is the batch mean of -ELBO, as minigrad's."""
            self.model.train()
            images, batch = self.train_images, self.config.batch_size
            order = torch.randperm(len(images), generator=self.shuffle, device=device)
            total = 0.0
            for start in range(0, len(images), batch):
                x = images[order[start:start + batch]]
                self.optimizer.zero_grad()
                logits, mu, logvar = self.model(x, self.noise)
                loss = neg_elbo_sum(logits, x, mu, logvar) / len(x)
                loss.backward()
                total += loss.item() * len(x)
                self.optimizer.step()
            return total / len(images)

        def evaluate(self, batch=1000):
            """Mean over the test set of -ELBO with one sample (fixed noise seed)."""
            self.model.eval()
            generator = torch.Generator(device=device).manual_seed(
                self.config.seed + EVAL_SEED_OFFSET)
            total = 0.0
            with torch.no_grad():
                for start in range(0, len(self.test_images), batch):
                    x = self.test_images[start:start + batch]
                    logits, mu, logvar = self.model(x, generator)
                    total += neg_elbo_sum(logits, x, mu, logvar).item()
            return total / len(self.test_images)

    return TorchRun


def fused_adam_error(torch):
    """None if Adam(fused=True) steps a CPU tensor in this torch, else the error's text."""
    try:
        param = torch.nn.Parameter(torch.zeros(4))
        optimizer = torch.optim.Adam([param], fused=True)
        param.grad = torch.ones(4)
        optimizer.step()
    except (RuntimeError, TypeError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def import_torch(no_torch, threads, log):
    """(torch, None), or (None, why not) when it is absent or not wanted; the reason is logged."""
    if no_torch:
        reason = "PyTorch skipped (--no-torch)"
    elif importlib.util.find_spec("torch") is None:
        reason = "PyTorch not installed (pip install torch to compare)"
    else:
        import torch
        torch.set_num_threads(threads)
        return torch, None
    log(f"{reason}: measuring minigrad alone")
    return None, reason


# --- epochs, interleaved ----------------------------------------------------------------------
def warm_up(runs, dataset):
    """Five steps and an evaluation on 1000 test images of a throwaway copy of each run, so that
    no timed epoch pays for first-call costs (thread pools, page faults, kernel compilation)."""
    config = runs[0].trainer.config
    small = dataclasses.replace(config, train_subset=5 * config.batch_size, test_subset=1000)
    first = MinigradRun(small, dataset)
    copies = [first] + [type(run)(small, first.trainer.train_images, first.trainer.test_images,
                                  fused=run.fused) for run in runs[1:]]
    for run in copies:
        run.train_epoch()
        run.evaluate()
    return copies


def timed_epoch(run, row):
    """One epoch of ``run``: its train loss, training seconds and test -ELBO into ``row``."""
    started = time.perf_counter()
    row[f"{run.name}_train_loss"] = run.train_epoch()
    row[f"{run.name}_s"] = time.perf_counter() - started
    row[f"{run.name}_test_neg_elbo"] = run.evaluate()


def interleaved_epochs(runs, epochs, log, pause=0.0, label=""):
    """Epoch e of every trainer in turn (runs[0] is minigrad), then epoch e + 1; one row per
    epoch with minigrad's time over each other's.  ``label`` prefixes the progress lines."""
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch}
        for run in runs:
            timed_epoch(run, row)
            # NOTE: OpenBLAS workers spin ~0.1 s after a matmul and slow whoever runs next
            time.sleep(pause)
        for other in runs[1:]:
            row[f"ratio_{other.name}"] = row["minigrad_s"] / row[f"{other.name}_s"]
        rows.append(row)
        log(f"{label}epoch {epoch}/{epochs}  " + "  ".join(
            f"{run.name} {row[run.name + '_s']:.2f}s (test -ELBO "
            f"{row[run.name + '_test_neg_elbo']:.2f})" for run in runs))
    return rows


def mean_and_final(rows, names):
    """Each trainer's mean epoch seconds and final test -ELBO."""
    summary = {f"{name}_mean_epoch_s": statistics.fmean(r[f"{name}_s"] for r in rows)
               for name in names}
    summary.update({f"{name}_final_test_neg_elbo": rows[-1][f"{name}_test_neg_elbo"]
                    for name in names})
    return summary


# --- what the CPU benchmarks share ------------------------------------------------------------
def add_cpu_arguments(parser, quick_help):
    """--quick, --train-subset, --data, --seed, --out and --update-results, as every CPU VAE
    benchmark takes them."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--train-subset", type=int,
                        help=f"training images to use, 0 for all (default all; --quick: "
                             f"{QUICK_TRAIN_SUBSET})")
    parser.add_argument("--data", default=data.DEFAULT_DIR, help="MNIST folder")
    parser.add_argument("--seed", type=int, default=1)
    add_out_arguments(parser, "the .json and .md")


def resolve_cpu_arguments(args, parser):
    """Fill in --train-subset's default (depends on --quick) and check it; resolve --out."""
    args.out = out_folder(args, parser)
    if args.train_subset is None:
        args.train_subset = QUICK_TRAIN_SUBSET if args.quick else 0
    if args.train_subset < 0:
        parser.error("--train-subset must be >= 0 (0: all)")


def make_config(args, epochs=1):
    return Config(data=args.data, epochs=epochs, train_subset=args.train_subset,
                  seed=args.seed, quiet=True)
