"""The reparameterization trick as an experiment: pathwise against score-function gradients.

    python benchmarks/estimators.py                      # the full run (a couple of minutes)
    python benchmarks/estimators.py --update-results     # the same, replacing the committed one
    python benchmarks/estimators.py --quick              # test-sized
    python benchmarks/estimators.py --runs runs/a runs/b # VAE checkpoints from run folders

For q = N(mu, e^logvar) per dimension and a reward r(z), three estimators of d/dtheta E_q[r(z)],
theta = (mu, logvar), each the mean over K samples z_1 .. z_K:

    pathwise       d/dtheta r(mu + e^{logvar/2} eps), by minigrad (reparameterize + backward)
    reinforce      r(z_k) * s(z_k),  s = d log q(z)/d theta, written by hand (``gaussian_score``)
    reinforce_loo  (r(z_k) - b_k) * s(z_k),  b_k = mean of r over the other K - 1 samples
                   (the leave-one-out baseline: unbiased since b_k is independent of z_k;
                   undefined for K = 1)

Two objectives.  "gaussian": r(z) = sum_d (z_d - c_d)^2, whose exact gradient is
d/dmu = 2 (mu - c), d/dlogvar = e^logvar.  "vae": the one-example ELBO of a VAE,
r(z) = log p(x | z) + log p(z) - log q(z | x), differentiated w.r.t. the mu and logvar that the
encoder gives a fixed batch of test images (the encoder's outputs, not its weights); the pathwise
estimator differentiates the same Monte Carlo ELBO (log q included, not the closed-form KL).  The
VAE has no exact gradient; the reference is the pathwise mean over an independent large sample.

For each K, the K-sample estimate is drawn ``repetitions`` times; its variance across
repetitions per gradient coordinate, averaged over coordinates, is the number reported, with
the largest |mean - exact| / standard error over coordinates as the bias check.
"""
import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import minigrad as mg  # noqa: E402
from kernels.families import LOG_2PI  # noqa: E402
from minigrad.random import Stream  # noqa: E402
from vae import data  # noqa: E402
from vae.model import VAE  # noqa: E402
from vae.train import Config, Trainer, load_run  # noqa: E402
from benchmarks.report import add_out_arguments, out_folder  # noqa: E402

ESTIMATORS = ("pathwise", "reinforce", "reinforce_loo")
PARAMETERS = ("mu", "logvar")
CHUNK_ROWS = 8192   # Gaussians per minigrad pass: bounds memory (a VAE row decodes 784 logits)
BIAS_LIMIT = 5.0    # |mean - exact| / standard error above this counts as biased

# the Gaussian objective: three dimensions with mu != c and three different scales
GAUSSIAN_MU = (1.0, -0.5, 0.0)
GAUSSIAN_LOGVAR = (0.0, math.log(0.25), math.log(2.0))
GAUSSIAN_TARGET = (0.0, 0.5, -1.0)


# --- the score function, by hand, and the log-density it differentiates -----------------------
def log_normal(z, mu, logvar):
    """log N(z; mu, e^logvar) per element, as minigrad ops (Tensors in, a Tensor out)."""
    return -0.5 * ((z - mu) ** 2 * mg.exp(-logvar) + logvar + LOG_2PI)


def gaussian_score(z, mu, logvar):
    """(d/dmu, d/dlogvar) of log N(z; mu, e^logvar) per element, for NumPy arrays:
    d/dmu = (z - mu) / sigma^2,  d/dlogvar = ((z - mu)^2 / sigma^2 - 1) / 2."""
    inv_var = np.exp(-logvar)
    centred = z - mu
    return centred * inv_var, 0.5 * (centred ** 2 * inv_var - 1.0)


# --- the objectives: per-sample pathwise gradients, rewards and scores -------------------------
@dataclasses.dataclass
class Draw:
    """``count`` samples of G independent problems with P gradient coordinates each (first the
    mu ones, then the logvar ones): pathwise (count, G, P), reward (count, G),
    score (count, G, P)."""

    pathwise: np.ndarray
    reward: np.ndarray
    score: np.ndarray


def _leaves(mu, logvar, count):
    """mu and logvar (G, L) repeated ``count`` times as (count * G, L) leaves that take grads:
    each row's gradient is then that one sample's gradient."""
    return (mg.Tensor(np.tile(mu, (count, 1)), requires_grad=True),
            mg.Tensor(np.tile(logvar, (count, 1)), requires_grad=True))


def _collect(count, mu, logvar, z, reward):
    """Backward of sum(reward) and the Draw of the rows (sample-major, then problem)."""
    reward.sum().backward()
    groups = mu.shape[0] // count
    pathwise = np.concatenate([mu.grad, logvar.grad], axis=1)              # (count * G, P)
    score = np.concatenate(gaussian_score(z.data, mu.data, logvar.data), axis=1)
    return Draw(pathwise.reshape(count, groups, -1), reward.data.reshape(count, groups),
                score.reshape(count, groups, -1))


class GaussianObjective:
    """r(z) = sum_d (z_d - c_d)^2 with z ~ N(mu, e^logvar): one problem (G = 1), P = 2 D."""

    name = "gaussian"
    rows_per_sample = 1

    def __init__(self, mu=GAUSSIAN_MU, logvar=GAUSSIAN_LOGVAR, target=GAUSSIAN_TARGET):
        self.mu = np.asarray(mu, dtype=np.float64)[None, :]                # (1, D)
        self.logvar = np.asarray(logvar, dtype=np.float64)[None, :]        # (1, D)
        self.target = np.asarray(target, dtype=np.float64)                 # (D,)
        if not self.mu.shape == self.logvar.shape == (1, len(self.target)):
            raise ValueError(f"GaussianObjective: mu {self.mu.shape[1:]}, logvar "
                             f"{self.logvar.shape[1:]} and target {self.target.shape} must match")
        self.latent_dim = self.target.size

    def exact(self):
        """d/dmu E[r] = 2 (mu - c), d/dlogvar E[r] = e^logvar, as (1, P)."""
        return np.concatenate([2 * (self.mu - self.target), np.exp(self.logvar)], axis=1)

    def pathwise_variance(self):
        """Per-sample variance of the pathwise gradient in closed form, (1, P): with
        a = mu - c, d/dmu = 2 (z - c) has 4 sigma^2 and d/dlogvar = (z - c) sigma eps has
        sigma^2 (a^2 + 2 sigma^2)."""
        var = np.exp(self.logvar)
        a = self.mu - self.target
        return np.concatenate([4 * var, var * (a ** 2 + 2 * var)], axis=1)

    def draw(self, count, stream):
        mu, logvar = _leaves(self.mu, self.logvar, count)                  # (count, D) each
        z = mg.reparameterize(mu, logvar, stream=stream)
        reward = ((z - self.target) ** 2).sum(axis=1)                      # (count,)
        return _collect(count, mu, logvar, z, reward)


class VAEObjective:
    """The one-example ELBO of each of G images, as a function of the encoder's mu and logvar
    for it: r(z) = log p(x | z) + log p(z) - log q(z | x), in float64."""

    name = "vae"

    def __init__(self, model, images):
        posterior = getattr(model, "posterior", "gaussian")
        if posterior != "gaussian":
            raise ValueError(f"VAEObjective: the score function here is the Gaussian one; this "
                             f"model's posterior is {posterior!r}")
        self.model = as_float64(model)
        self.images = np.asarray(images, dtype=np.float64)                 # (G, D)
        with mg.no_grad():
            mu, logvar = self.model.encode(self.images)
        self.mu, self.logvar = mu.numpy(), logvar.numpy()                  # (G, L) each
        self.latent_dim = model.latent_dim
        self.rows_per_sample = len(self.images)

    def draw(self, count, stream):
        mu, logvar = _leaves(self.mu, self.logvar, count)                  # (count * G, L)
        z = mg.reparameterize(mu, logvar, stream=stream)
        x = np.tile(self.images, (count, 1))                               # (count * G, D)
        log_likelihood = -mg.binary_cross_entropy_with_logits(
            self.model.decode(z), x, reduction="none").sum(axis=1)
        log_prior = (-0.5 * (z ** 2 + LOG_2PI)).sum(axis=1)
        log_posterior = log_normal(z, mu, logvar).sum(axis=1)
        return _collect(count, mu, logvar, z, log_likelihood + log_prior - log_posterior)

    def reference(self, num_samples, stream):
        """The pathwise mean over ``num_samples`` fresh samples and its standard error, (G, P)."""
        total = np.zeros(self.mu.shape[:1] + (2 * self.latent_dim,))
        total_sq = np.zeros_like(total)
        for count in _chunks(num_samples, CHUNK_ROWS // self.rows_per_sample):
            grads = self.draw(count, stream).pathwise
            total += grads.sum(axis=0)
            total_sq += (grads ** 2).sum(axis=0)
        mean = total / num_samples
        variance = (total_sq / num_samples - mean ** 2) * num_samples / (num_samples - 1)
        return mean, np.sqrt(np.maximum(variance, 0.0) / num_samples)


def as_float64(model):
    """A float64 copy of a VAE: the estimators' arithmetic should not be float32's."""
    copy = VAE(model.input_dim, model.hidden_dim, model.latent_dim, dtype=np.float64)
    copy.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    return copy


def _chunks(total, size):
    """Sizes of consecutive chunks of at most ``size`` (>= 1) that add up to ``total``."""
    size = max(1, size)
    return [min(size, total - start) for start in range(0, total, size)]


# --- K-sample estimates and their statistics ---------------------------------------------------
def estimates(draw, k):
    """The three K-sample estimates from a Draw of R * K samples: {name: (R, G, P)}; the
    leave-one-out one is None for K = 1."""
    count, groups, coords = draw.pathwise.shape
    reps = count // k
    pathwise = draw.pathwise.reshape(reps, k, groups, coords)
    reward = draw.reward.reshape(reps, k, groups)
    score = draw.score.reshape(reps, k, groups, coords)
    result = {"pathwise": pathwise.mean(axis=1),
              "reinforce": (reward[..., None] * score).mean(axis=1),
              "reinforce_loo": None}
    if k > 1:
        # b_k: mean of the other K - 1 rewards of the same repetition
        baseline = (reward.sum(axis=1, keepdims=True) - reward) / (k - 1)  # (R, K, G)
        result["reinforce_loo"] = ((reward - baseline)[..., None] * score).mean(axis=1)
    return result


def sample_estimates(objective, k, repetitions, stream):
    """``repetitions`` K-sample estimates of each estimator, drawn in memory-sized chunks."""
    per_chunk = CHUNK_ROWS // (k * objective.rows_per_sample)
    parts = {name: [] for name in ESTIMATORS}
    for reps in _chunks(repetitions, per_chunk):
        for name, value in estimates(objective.draw(reps * k, stream), k).items():
            if value is not None:
                parts[name].append(value)
    return {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}


def summarise(values, exact, exact_se, latent_dim):
    """Variance and bias check of (R, G, P) estimates against ``exact`` (G, P) +- ``exact_se``.

    Returns {parameter: {"variance": mean over coordinates of the variance across repetitions,
    "max_bias_over_se": largest |mean - exact| / standard error, "rms_bias_over_se": the root
    mean square of that ratio (about 1 when unbiased)}} for mu, logvar and all.
    """
    reps = len(values)
    variance = values.var(axis=0, ddof=1)                                  # (G, P)
    standard_error = np.sqrt(variance / reps + exact_se ** 2)
    bias_over_se = np.abs(values.mean(axis=0) - exact) / standard_error    # (G, P)
    columns = {"mu": slice(0, latent_dim), "logvar": slice(latent_dim, 2 * latent_dim),
               "all": slice(0, 2 * latent_dim)}
    return {parameter: {"variance": float(variance[:, cols].mean()),
                        "max_bias_over_se": float(bias_over_se[:, cols].max()),
                        "rms_bias_over_se": float(np.sqrt((bias_over_se[:, cols] ** 2).mean()))}
            for parameter, cols in columns.items()}


def measure(objective, ks, repetitions, stream, exact, exact_se, checkpoint=None, log=print):
    """Records {problem, checkpoint, parameter, estimator, K, ...} for every K and estimator."""
    records = []
    for k in ks:
        started = time.perf_counter()
        stats = {name: summarise(values, exact, exact_se, objective.latent_dim)
                 for name, values in sample_estimates(objective, k, repetitions, stream).items()}
        for name, by_parameter in stats.items():
            for parameter, result in by_parameter.items():
                pathwise = stats["pathwise"][parameter]["variance"]
                records.append({"problem": objective.name, "checkpoint": checkpoint,
                                "parameter": parameter, "estimator": name, "K": k,
                                "repetitions": repetitions, **result,
                                "ratio_vs_pathwise": result["variance"] / pathwise})
        line = "  ".join(f"{name} {stats[name]['all']['variance']:.3g}" for name in stats)
        where = objective.name if checkpoint is None else f"{objective.name} epoch {checkpoint}"
        log(f"{where:<14} K={k:<5} variance  {line}  ({time.perf_counter() - started:.1f}s)")
    return records


def loglog_slope(records, problem, checkpoint, parameter, estimator):
    """Least-squares slope of log variance against log K (-1 for variance ~ 1/K)."""
    points = [(r["K"], r["variance"]) for r in records
              if (r["problem"], r["checkpoint"], r["parameter"], r["estimator"])
              == (problem, checkpoint, parameter, estimator)]
    ks, variances = np.log(np.array(points, dtype=np.float64)).T
    return float(np.polyfit(ks, variances, 1)[0])


# --- VAE checkpoints ---------------------------------------------------------------------------
def trained_checkpoints(epochs, settings, dataset, log=print):
    """([(epoch, float64 model copy, test -ELBO)], test images) of one small VAE trained here,
    copied after each of ``epochs`` (0: the initialisation)."""
    config = Config(epochs=max(max(epochs), 1), quiet=True, **settings)
    trainer = Trainer(config, dataset)
    log(f"training a VAE {trainer.model.architecture()} on {len(trainer.train_images)} images "
        f"for checkpoints at epochs {list(epochs)}")
    checkpoints = []
    for epoch in range(max(epochs) + 1):
        if epoch > 0:
            trainer.train_epoch()
        if epoch in epochs:
            neg_elbo = trainer.evaluate()["neg_elbo"]
            log(f"  epoch {epoch}: test -ELBO {neg_elbo:.2f}")
            checkpoints.append((epoch, as_float64(trainer.model), neg_elbo))
    return checkpoints, trainer.test_images


def run_checkpoints(folders, log=print):
    """([(epoch, float64 model, test -ELBO)], test images of the first) from run folders."""
    checkpoints, images = [], None
    for folder in folders:
        trainer = load_run(folder)
        neg_elbo = trainer.evaluate()["neg_elbo"]
        log(f"{folder}: epoch {trainer.epoch}, test -ELBO {neg_elbo:.2f}")
        checkpoints.append((trainer.epoch, as_float64(trainer.model), neg_elbo))
        images = trainer.test_images if images is None else images
    return checkpoints, images


# --- outputs -----------------------------------------------------------------------------------
COLOURS = {"pathwise": "tab:blue", "reinforce": "tab:red", "reinforce_loo": "tab:orange"}
LABELS = {"pathwise": "pathwise (reparameterized)", "reinforce": "REINFORCE",
          "reinforce_loo": "REINFORCE + leave-one-out baseline"}
CHECKPOINT_STYLES = ("-", "--", ":", "-.")


def _series(records, **match):
    rows = [r for r in records if all(r[key] == value for key, value in match.items())]
    return [r["K"] for r in rows], [r["variance"] for r in rows]


def _guide(ax, records):
    """A grey 1/K line for the eye, a factor 3 under the lowest line at the smallest K."""
    ks = np.array(sorted({r["K"] for r in records}), dtype=np.float64)
    lowest = min(r["variance"] for r in records if r["K"] == ks[0])
    ax.plot(ks, lowest / 3 * ks[0] / ks, color="grey", lw=1.0, ls=(0, (1, 2)),
            label="slope of 1/K")


def plot(records, path):
    """Variance against K, log-log: the Gaussian objective (mu solid, logvar dashed) and the
    VAE's encoder outputs (all coordinates; one line style per checkpoint)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    gaussian = [r for r in records if r["problem"] == "gaussian"]
    for estimator in ESTIMATORS:
        for parameter, style in zip(PARAMETERS, ("-", "--")):
            ks, variances = _series(gaussian, estimator=estimator, parameter=parameter)
            left.plot(ks, variances, style, marker="o", ms=3, color=COLOURS[estimator],
                      label=f"{LABELS[estimator]}, d/d{parameter}")
    _guide(left, [r for r in gaussian if r["parameter"] != "all"])
    left.set_title("Gaussian objective: r(z) = sum (z - c)^2, z ~ N(mu, e^logvar), 3 dims",
                   fontsize=9)
    vae = [r for r in records if r["problem"] == "vae" and r["parameter"] == "all"]
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in vae))
    for estimator in ESTIMATORS:
        for checkpoint, style in zip(checkpoints, CHECKPOINT_STYLES):
            ks, variances = _series(vae, estimator=estimator, checkpoint=checkpoint)
            right.plot(ks, variances, style, marker="o", ms=3, color=COLOURS[estimator],
                       label=f"{LABELS[estimator]}, epoch {checkpoint}")
    if vae:
        _guide(right, vae)
    right.set_title("VAE: one-example ELBO w.r.t. the encoder's mu and logvar\n"
                    "(mean over images and coordinates)", fontsize=9)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples per estimate K")
        ax.set_ylabel("variance per coordinate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, handlelength=3.5)  # long enough to show the dashes
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def markdown(report):
    """The report as markdown: settings, the checks, and one table per objective."""
    records, settings = report["records"], report["settings"]
    lines = ["# Pathwise vs score-function gradient estimators", "",
             f"{report['machine']}; {report['date']}; {report['seconds']:.0f} s.",
             "", report["definitions"], "",
             f"Settings: {json.dumps(settings)}", "", "## Checks", ""]
    checked = [r for r in records if r["parameter"] != "all"]  # "all" repeats mu and logvar
    biased = [r for r in checked if r["max_bias_over_se"] > BIAS_LIMIT]
    lines.append(f"- bias: {len(biased)} of {len(checked)} (objective, parameter, estimator, K) "
                 f"rows have max |mean - exact| / SE > {BIAS_LIMIT:g} (the max is over every "
                 "coordinate of the row; the rms column is about 1 for an unbiased estimator)")
    lines += [f"  - {r['problem']} epoch {r['checkpoint']}, {r['parameter']}, {r['estimator']}, "
              f"K={r['K']}: {r['max_bias_over_se']:.2f} (rms {r['rms_bias_over_se']:.2f})"
              for r in biased]
    for key in report["problems"]:
        problem, checkpoint = key["problem"], key["checkpoint"]
        slopes = ", ".join(f"{e} {loglog_slope(records, problem, checkpoint, 'all', e):.2f}"
                           for e in ESTIMATORS)
        lines.append(f"- {key['title']}: log-log slope of variance vs K (all coordinates): "
                     f"{slopes}")
    for key in report["problems"]:
        lines += ["", f"## {key['title']}", "", key["note"], "",
                  "| estimator | K | variance d/dmu | variance d/dlogvar | max abs(bias)/SE "
                  "| rms bias/SE | ratio vs pathwise d/dmu | ratio vs pathwise d/dlogvar |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        rows = {(r["estimator"], r["K"], r["parameter"]): r for r in records
                if (r["problem"], r["checkpoint"]) == (key["problem"], key["checkpoint"])}
        for estimator in ESTIMATORS:
            for k in sorted({k for (e, k, _) in rows if e == estimator}):
                mu, logvar, both = (rows[(estimator, k, p)] for p in ("mu", "logvar", "all"))
                lines.append(f"| {estimator} | {k} | {mu['variance']:.3g} | "
                             f"{logvar['variance']:.3g} | {both['max_bias_over_se']:.2f} | "
                             f"{both['rms_bias_over_se']:.2f} | "
                             f"{mu['ratio_vs_pathwise']:.3g} | "
                             f"{logvar['ratio_vs_pathwise']:.3g} |")
    return "\n".join(lines) + "\n"


# --- the experiment ----------------------------------------------------------------------------
def _ints(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def build_parser():
    parser = argparse.ArgumentParser(prog="python benchmarks/estimators.py", description=
                                     "Variance of pathwise and score-function gradient "
                                     "estimators against the number of samples K.")
    add = parser.add_argument
    add("--quick", action="store_true", help="a test-sized run (seconds): few repetitions, small "
                                             "K, a VAE trained 1 epoch on 1000 images")
    add("--reps", type=int, default=None, help="repetitions per K, Gaussian objective "
                                               "(default 2000; --quick 400)")
    add("--vae-reps", type=int, default=None, help="repetitions per K, VAE (default 100; "
                                                   "--quick 40)")
    add("--ks", type=_ints, default=None, help="K values, Gaussian objective (default "
                                               "1,2,5,10,20,50,100,200,500,1000; "
                                               "--quick 1,2,10,50)")
    add("--vae-ks", type=_ints, default=None, help="K values, VAE (default 1,3,10,30,100,300,"
                                                   "1000; --quick 1,2,10)")
    add("--seed", type=int, default=0, help="seed of the Philox stream and of the VAE's training "
                                            "(default: %(default)s)")
    add("--runs", nargs="*", default=None, help="VAE run folders to study instead of training one")
    add("--epochs", type=_ints, default=None, help="checkpoints of the VAE trained here, in epochs "
                                                   "(default 0,1,5; --quick 0,1)")
    add("--examples", type=int, default=4, help="test images whose encoder outputs are "
                                                "differentiated (default: %(default)s)")
    add("--reference-samples", type=int, default=None,
        help="samples of the VAE's pathwise reference gradient (default 50000; --quick 2000)")
    add("--data", default=data.DEFAULT_DIR, help="MNIST folder (default: the carried copy)")
    add_out_arguments(parser, "the json, md and png")
    add("--name", default=None, help="file name stem (default: estimators; --quick: "
                                     "estimators_quick)")
    return parser


def _settings(args):
    """Flags with their defaults filled in (full or --quick)."""
    quick = args.quick
    pick = (lambda given, full, small: given if given is not None else (small if quick else full))
    settings = {
        "quick": quick, "seed": args.seed, "examples": args.examples,
        "reps": pick(args.reps, 2000, 400), "vae_reps": pick(args.vae_reps, 100, 40),
        "ks": pick(args.ks, [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], [1, 2, 10, 50]),
        "vae_ks": pick(args.vae_ks, [1, 3, 10, 30, 100, 300, 1000], [1, 2, 10]),
        "epochs": pick(args.epochs, [0, 1, 5], [0, 1]),
        "reference_samples": pick(args.reference_samples, 50_000, 2000),
        "runs": args.runs or [], "data": args.data,
        "vae": (dict(hidden_dim=32, latent_dim=4, train_subset=1000, test_subset=200) if quick
                else dict(hidden_dim=100, latent_dim=20, train_subset=10_000, test_subset=1000)),
    }
    for name in ("reps", "vae_reps", "examples", "reference_samples"):
        if settings[name] < 2:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 2, got {settings[name]}")
    for name in ("ks", "vae_ks"):
        if min(settings[name]) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: K must be at least 1, "
                             f"got {settings[name]}")
    settings["vae"]["seed"] = args.seed + 1  # Trainer seeds init, shuffling and its own stream
    return settings


def experiment(settings, log=print):
    """Both objectives at every K; returns the report (records, settings, description)."""
    started = time.perf_counter()
    stream = Stream(settings["seed"])  # one stream for every draw: no two draws share a normal
    gaussian = GaussianObjective()
    problems = [{"problem": "gaussian", "checkpoint": None, "title": "Gaussian objective",
                 "note": f"r(z) = sum_d (z_d - c_d)^2, mu = {list(GAUSSIAN_MU)}, logvar = "
                         f"{[round(v, 4) for v in GAUSSIAN_LOGVAR]}, c = {list(GAUSSIAN_TARGET)}; "
                         f"exact gradient in closed form; {settings['reps']} repetitions per K."}]
    log(f"Gaussian objective: {settings['reps']} repetitions of each K in {settings['ks']}")
    records = measure(gaussian, settings["ks"], settings["reps"], stream, gaussian.exact(),
                      np.zeros((1, 2 * gaussian.latent_dim)), log=log)
    if settings["runs"]:
        checkpoints, images = run_checkpoints(settings["runs"], log)
    else:
        dataset = data.load(settings["data"])
        checkpoints, images = trained_checkpoints(settings["epochs"], settings["vae"], dataset,
                                                  log)
    images = images[:settings["examples"]]
    for epoch, model, neg_elbo in checkpoints:
        objective = VAEObjective(model, images)
        reference, reference_se = objective.reference(settings["reference_samples"], stream)
        problems.append({"problem": "vae", "checkpoint": epoch, "title": f"VAE after epoch {epoch}",
                         "note": f"Test -ELBO {neg_elbo:.2f}; {len(images)} test images, latent "
                                 f"{model.latent_dim}, hidden {model.hidden_dim}; reference: "
                                 f"pathwise mean of {settings['reference_samples']} samples; "
                                 f"{settings['vae_reps']} repetitions per K."})
        records += measure(objective, settings["vae_ks"], settings["vae_reps"], stream, reference,
                           reference_se, checkpoint=epoch, log=log)
    return {"records": records, "settings": settings, "problems": problems,
            "definitions": __doc__.split("\n\n", 2)[2].strip(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; Python "
                       f"{platform.python_version()}, NumPy {np.__version__}",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - started}


def main(argv=None):
    matplotlib.use("Agg")  # a program that draws into files; the import above chose nothing
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    try:
        settings = _settings(args)
        print(f"settings: {json.dumps(settings)}")
        report = experiment(settings)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    name = args.name or ("estimators_quick" if args.quick else "estimators")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, name)
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    plot(report["records"], stem + ".png")
    for suffix in (".json", ".md", ".png"):
        print(f"wrote {stem + suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
