"""CPU benchmark: the minigrad VAE's training loop against the same recipe in PyTorch.

    python benchmarks/vae_cpu.py --epochs 10      # the full run (several minutes)
    python benchmarks/vae_cpu.py --quick          # smoke run: 1 epoch on 5000 training images

What it measures, all in one process on one machine, with the same data (``vae.data.load()``):

1. Epoch time and test -ELBO per epoch of three trainers, interleaved epoch by epoch so machine
   noise hits each alike: minigrad (``vae.train.Trainer``, the product's own loop), PyTorch eager
   (the pytorch/examples VAE: fc1 784-400, fc21/fc22 400-20, fc3 20-400, fc4 400-784, ReLU,
   BCE-with-logits + KL, Adam 1e-3, batch 128, reshuffled each epoch, seed 1) and PyTorch with
   ``Adam(fused=True)``.  Test -ELBO: mean over the whole test set of BCE-sum + KL, one sample.
2. A minigrad step profile: forward+loss, backward and Adam step (medians), the engine's
   forward+backward against the same math written directly in NumPy, the 11 matrix products alone,
   and the backward time per op.
3. Peak resident memory of each trainer, each in a subprocess of its own.

PyTorch is never a dependency: without it, minigrad is measured alone and the report says so.
Results go to benchmarks/results/vae_cpu.{json,md} (``--quick``: vae_cpu_quick.{json,md}).
"""
import argparse
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from kernels.reference import noise  # noqa: E402
from minigrad.graph import topological_order  # noqa: E402
from vae import data  # noqa: E402
from vae.train import EVAL_SEED_OFFSET, Config, Trainer  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
FRAMEWORKS = ("minigrad", "torch", "torch_fused")
TARGET_ELBO_GAP = 0.5       # nats: final test -ELBO of minigrad vs PyTorch eager
TARGET_EPOCH_RATIO = 1.0    # minigrad mean epoch / PyTorch eager mean epoch
TARGET_OVERHEAD = 0.15      # engine forward+backward over the hand-written NumPy one


# --- the machine ------------------------------------------------------------------------------
def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_info():
    """CPU model, logical/physical/usable cores, a few SIMD flags and memory, from /proc."""
    text = _read("/proc/cpuinfo")
    fields = [dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
              for block in text.strip().split("\n\n") if block]
    fields = [{k.strip(): v.strip() for k, v in f.items()} for f in fields]
    model = fields[0].get("model name", platform.processor()) if fields else platform.processor()
    cores = {(f.get("physical id"), f.get("core id")) for f in fields}
    flags = set(fields[0].get("flags", "").split()) if fields else set()
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    return {"model": model, "logical_cpus": os.cpu_count(),
            "physical_cores": len(cores) if fields else None,
            "usable_cpus": len(os.sched_getaffinity(0)),
            "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags],
            "memory_gib": round(mem_kib / 2**20, 1)}


def openblas_runtime():
    """OpenBLAS's own report of its kernels and threads, read from the loaded library."""
    try:
        import threadpoolctl
        return {"threadpoolctl": threadpoolctl.threadpool_info()}
    except ImportError:
        pass
    import ctypes
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure the library is loaded
    paths = sorted({line.split()[-1] for line in _read("/proc/self/maps").splitlines()
                    if "openblas" in line.lower() and ".so" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                               ("openblas_", "64_"), ("openblas_", "")):
            try:
                config, corename, threads = (getattr(lib, f"{prefix}{name}{suffix}") for name in
                                             ("get_config", "get_corename", "get_num_threads"))
            except AttributeError:  # another symbol naming: try the next
                continue
            config.restype = corename.restype = ctypes.c_char_p
            return {"library": path, "config": config().decode(),
                    "corename": corename().decode(), "threads": threads()}
    return {"library": paths[0] if paths else None, "note": "OpenBLAS symbols not found"}


def software_info(torch):
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": {k: blas.get(k) for k in ("name", "version", "openblas configuration")},
            "numpy_blas_runtime": openblas_runtime(),
            "torch": torch.__version__ if torch else None}
    if torch:
        info["torch_threads"] = torch.get_num_threads()
        info["torch_config"] = torch.__config__.show()
    return info


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# --- the trainers -----------------------------------------------------------------------------
class MinigradRun:
    """The product's Trainer: train_epoch() and evaluate() exactly as `python -m vae train`."""

    name = "minigrad"

    def __init__(self, config, dataset):
        self.trainer = Trainer(config, dataset)

    def train_epoch(self):
        return self.trainer.train_epoch()

    def evaluate(self):
        return self.trainer.evaluate()["neg_elbo"]


def torch_vae_class(torch, device="cpu"):
    """The pytorch/examples VAE (vae/main.py, returning logits instead of sigmoid outputs) and
    its loss, defined once torch is imported (it is optional): (TorchVAE, neg_elbo_sum)."""
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


def torch_run_class(torch):
    """The PyTorch trainer, defined once torch is imported (it is optional)."""
    TorchVAE, neg_elbo_sum = torch_vae_class(torch)

    class TorchRun:
        def __init__(self, config, train_images, test_images, fused):
            self.name = "torch_fused" if fused else "torch"
            self.config = config
            torch.manual_seed(config.seed)  # the same initial weights for eager and fused
            self.model = TorchVAE(config.input_dim, config.hidden_dim, config.latent_dim)
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=fused)
            self.train_images = torch.from_numpy(train_images)  # shares memory, float32
            self.test_images = torch.from_numpy(test_images)
            self.shuffle = torch.Generator().manual_seed(config.seed)
            self.noise = torch.Generator().manual_seed(config.seed + 1)

        def train_epoch(self):
            """One shuffled pass; the loss is the batch mean of -ELBO, as minigrad's."""
            self.model.train()
            images, batch = self.train_images, self.config.batch_size
            order = torch.randperm(len(images), generator=self.shuffle)
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
            generator = torch.Generator().manual_seed(self.config.seed + EVAL_SEED_OFFSET)
            total = 0.0
            with torch.no_grad():
                for start in range(0, len(self.test_images), batch):
                    x = self.test_images[start:start + batch]
                    logits, mu, logvar = self.model(x, generator)
                    total += neg_elbo_sum(logits, x, mu, logvar).item()
            return total / len(self.test_images)

    return TorchRun


# --- interleaved epochs -----------------------------------------------------------------------
def warm_up(runs):
    """A few steps and an evaluation of throwaway trainers, so that no timed epoch pays for
    first-call costs (thread pools, page faults, lazy initialisation)."""
    for run in runs:
        run.train_epoch()
        run.evaluate()


def timed_epoch(run, row):
    """One epoch of ``run``: its train loss, training seconds and test -ELBO into ``row``."""
    started = time.perf_counter()
    row[f"{run.name}_train_loss"] = run.train_epoch()
    row[f"{run.name}_s"] = time.perf_counter() - started
    row[f"{run.name}_test_neg_elbo"] = run.evaluate()


def interleaved_epochs(runs, epochs, pause, log):
    """Epoch e of every trainer in turn, then epoch e + 1; one row per epoch."""
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch}
        for run in runs:
            timed_epoch(run, row)
            # NOTE: OpenBLAS workers spin ~0.1 s after a matmul and slow whoever runs next
            time.sleep(pause)
        for other in ("torch", "torch_fused"):
            if f"{other}_s" in row:
                row[f"ratio_{other}"] = row["minigrad_s"] / row[f"{other}_s"]
        rows.append(row)
        log("epoch {}/{}  ".format(epoch, epochs) + "  ".join(
            f"{run.name} {row[run.name + '_s']:.2f}s (test -ELBO "
            f"{row[run.name + '_test_neg_elbo']:.2f})" for run in runs))
    return rows


def summarize(rows, names):
    """Mean epoch times, their ratios, final test -ELBO and the targets."""
    summary = {f"{name}_mean_epoch_s": statistics.fmean(r[f"{name}_s"] for r in rows)
               for name in names}
    summary.update({f"{name}_final_test_neg_elbo": rows[-1][f"{name}_test_neg_elbo"]
                    for name in names})
    for other in names[1:]:
        summary[f"ratio_{other}_mean_epoch"] = (summary["minigrad_mean_epoch_s"]
                                                / summary[f"{other}_mean_epoch_s"])
        summary[f"neg_elbo_minus_{other}"] = (summary["minigrad_final_test_neg_elbo"]
                                              - summary[f"{other}_final_test_neg_elbo"])
    if "torch" in names:
        summary["target_elbo_gap_met"] = abs(summary["neg_elbo_minus_torch"]) <= TARGET_ELBO_GAP
        summary["target_epoch_ratio_met"] = (summary["ratio_torch_mean_epoch"]
                                             <= TARGET_EPOCH_RATIO)
    return summary


# --- the minigrad step, phase by phase --------------------------------------------------------
def _median_ms(samples):
    return statistics.median(samples) * 1e3


def profile_phases(trainer, steps, warmup):
    """Median times of the training step's phases, in train_epoch's order, on its data."""
    config, model, optimizer = trainer.config, trainer.model, trainer.optimizer
    order = np.random.default_rng(config.seed).permutation(len(trainer.train_images))
    batches = len(order) // config.batch_size
    clock = time.perf_counter
    phases = {"batch_gather": [], "forward_loss": [], "backward": [], "optimizer_step": []}
    for step in range(warmup + steps):
        t0 = clock()
        x = trainer.train_images[order[(step % batches) * config.batch_size:
                                       (step % batches + 1) * config.batch_size]]
        t1 = clock()
        loss = model.loss(x, trainer.stream, config.beta).total
        float(loss.data)  # the loop reads the loss every step
        t2 = clock()
        optimizer.zero_grad()
        loss.backward()
        t3 = clock()
        optimizer.step()
        t4 = clock()
        if step >= warmup:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(seconds)
    result = {f"{name}_ms": _median_ms(samples) for name, samples in phases.items()}
    result["step_ms"] = _median_ms([sum(parts) for parts in zip(*phases.values())])
    result["steps"] = steps
    return result


def numpy_step(params, x, eps):
    """The VAE's loss and parameter gradients written directly in NumPy: the engine's math.

    params are (W1, b1, W2, b2, W3, b3, W4, b4) with W of shape (in, out), as minigrad's Linear;
    W2 holds the mu and logvar heads side by side.  Returns (loss, grads, saved), where saved
    are the operands of the 11 matrix products (see numpy_matmuls).
    """
    w1, b1, w2, b2, w3, b3, w4, b4 = params
    batch, latent = len(x), w3.shape[0]
    inv = 1.0 / batch  # NOTE: a Python float is weak in NumPy 2, so float32 stays float32
    h1 = x @ w1                                                      # (B, H)
    h1 += b1
    a1 = np.maximum(h1, 0)
    heads = a1 @ w2                                                  # (B, 2L)
    heads += b2
    mu, logvar = heads[:, :latent], heads[:, latent:]
    sigma = np.exp(logvar / 2)
    z = mu + sigma * eps                                             # (B, L)
    h3 = z @ w3                                                      # (B, H)
    h3 += b3
    a3 = np.maximum(h3, 0)
    logits = a3 @ w4                                                 # (B, D)
    logits += b4
    magnitude = np.abs(logits)
    log_term = np.log1p(np.exp(-magnitude))
    bce = ((logits + magnitude) * 0.5 - logits * x + log_term).sum()
    expm1 = np.expm1(logvar)
    kl = (expm1 - logvar + mu * mu).sum() / 2
    loss = (bce + kl) * inv

    # backward: the sigmoid as the engine writes it, exp(min(x, 0) - ln(1 + e^-|x|))
    g_logits = np.exp((logits - magnitude) * 0.5 - log_term)        # (B, D)
    g_logits -= x
    g_logits *= inv
    g_w4, g_b4 = a3.T @ g_logits, g_logits.sum(axis=0)
    g_h3 = g_logits @ w4.T                                           # (B, H)
    g_h3 *= h3 > 0
    g_w3, g_b3 = z.T @ g_h3, g_h3.sum(axis=0)
    g_z = g_h3 @ w3.T                                                # (B, L)
    g_heads = np.empty_like(heads)                                   # (B, 2L)
    g_heads[:, :latent] = g_z + mu * inv
    g_heads[:, latent:] = g_z * sigma * eps / 2 + expm1 * (inv / 2)
    g_w2, g_b2 = a1.T @ g_heads, g_heads.sum(axis=0)
    g_h1 = g_heads @ w2.T                                            # (B, H)
    g_h1 *= h1 > 0
    g_w1, g_b1 = x.T @ g_h1, g_h1.sum(axis=0)
    grads = (g_w1, g_b1, g_w2, g_b2, g_w3, g_b3, g_w4, g_b4)
    saved = (x, a1, z, a3, g_logits, g_h3, g_heads, g_h1)
    return float(loss), grads, saved


def numpy_matmuls(params, saved):
    """The 11 matrix products of numpy_step alone, same shapes and layouts: 4 forward, 7
    backward (no input gradient for the first layer)."""
    w1, _, w2, _, w3, _, w4, _ = params
    x, a1, z, a3, g_logits, g_h3, g_heads, g_h1 = saved
    x @ w1, a1 @ w2, z @ w3, a3 @ w4
    a3.T @ g_logits, g_logits @ w4.T, z.T @ g_h3, g_h3 @ w3.T
    a1.T @ g_heads, g_heads @ w2.T, x.T @ g_h1


def check_against_numpy(trainer, x):
    """Loss and gradient agreement of the engine and numpy_step on one batch (same noise)."""
    model, stream = trainer.model, trainer.stream
    seed, offset = stream.seed, stream.offset  # the draw reparameterize is about to make
    loss = model.loss(x, stream).total
    model.zero_grad()
    loss.backward()
    eps = noise((len(x), model.latent_dim), x.dtype, seed, offset)
    params = [p.data for p in model.parameters()]
    reference_loss, grads, _ = numpy_step(params, x, eps)
    worst = max(float(np.abs(p.grad - g).max() / (np.abs(g).max() + 1e-30))
                for p, g in zip(model.parameters(), grads))
    model.zero_grad()
    return {"engine_loss": float(loss.data), "numpy_loss": reference_loss,
            "max_grad_error_relative_to_max_grad": worst}


def compare_with_numpy(trainer, steps, warmup):
    """Engine forward+backward against numpy_step, its matmuls alone and its noise draw,
    timed in turn on one batch with the same parameters (medians)."""
    model, stream, batch = trainer.model, trainer.stream, trainer.config.batch_size
    x = trainer.train_images[:batch]
    params = [p.data for p in model.parameters()]
    shape = (batch, model.latent_dim)
    clock = time.perf_counter
    times = {"engine_forward_backward": [], "numpy_forward_backward": [], "numpy_matmuls": [],
             "noise_draw": []}
    for step in range(warmup + steps):
        t0 = clock()
        loss = model.loss(x, stream).total
        float(loss.data)
        model.zero_grad()
        loss.backward()
        t1 = clock()
        eps = noise(shape, x.dtype, trainer.config.seed, step * math.prod(shape))
        _, _, saved = numpy_step(params, x, eps)
        t2 = clock()
        numpy_matmuls(params, saved)
        t3 = clock()
        noise(shape, x.dtype, trainer.config.seed, step * math.prod(shape))
        t4 = clock()
        if step >= warmup:
            for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[name].append(seconds)
    model.zero_grad()
    result = {f"{name}_ms": _median_ms(samples) for name, samples in times.items()}
    engine, hand = result["engine_forward_backward_ms"], result["numpy_forward_backward_ms"]
    matmuls, draw = result["numpy_matmuls_ms"], result["noise_draw_ms"]
    result.update({
        "engine_overhead": engine / hand - 1,
        "target_overhead_met": engine / hand - 1 < TARGET_OVERHEAD,
        "matmul_share_of_engine": matmuls / engine,
        "matmul_share_of_numpy": matmuls / hand,
        # the hand-written step = matmuls + elementwise + one noise draw
        "numpy_elementwise_ms": hand - matmuls - draw,
        "steps": steps,
    })
    return result


def backward_by_op(trainer, steps, warmup):
    """Median per-step backward time of each op's VJP, and of the graph walk around them.

    Wraps the VJP closures of each step's own graph (nothing in minigrad is patched).
    """
    model, stream, batch = trainer.model, trainer.stream, trainer.config.batch_size
    x = trainer.train_images[:batch]
    clock = time.perf_counter
    per_step, walks = [], []
    for step in range(warmup + steps):
        loss = model.loss(x, stream).total
        spent = {}

        def timed(vjp, op):
            def wrapper(g):
                started = clock()
                grads = vjp(g)
                spent[op] = spent.get(op, 0.0) + clock() - started
                return grads
            return wrapper
        for tensor in topological_order(loss):
            node = tensor._node  # NOTE: the graph's own record; no public accessor exists
            if node is not None:
                node.vjp = timed(node.vjp, node.op)
        model.zero_grad()
        started = clock()
        loss.backward()
        total = clock() - started
        if step >= warmup:
            per_step.append(spent)
            walks.append(total - sum(spent.values()))
    model.zero_grad()
    ops = sorted({op for spent in per_step for op in spent})
    result = {op: _median_ms([spent.get(op, 0.0) for spent in per_step]) for op in ops}
    result["graph_walk_and_accumulation"] = _median_ms(walks)
    return dict(sorted(result.items(), key=lambda item: -item[1]))


# --- peak memory, one trainer per process -----------------------------------------------------
def _status_kib(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"memory probe: /proc/self/status has no {field} (Linux only)")


def _reset_peak():
    """Reset the process's peak RSS (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_probe(framework, args):
    """Train one epoch and evaluate in this (fresh) process; print its memory as JSON.

    NOTE: ru_maxrss is useless here: Linux carries the peak of the process image that exec
    replaced (the forked copy of the parent benchmark) into the child's ru_maxrss.  VmHWM of
    /proc/self/status is this process image's own peak, and clear_refs can reset it.
    """
    torch = None
    if framework != "minigrad":
        import torch
        torch.set_num_threads(args.threads)
    dataset = data.load(args.data)
    config = make_config(args, epochs=1)
    load_peak = _status_kib("VmHWM")
    after_load = _status_kib("VmRSS")
    reset = _reset_peak()
    if torch is None:
        run = MinigradRun(config, dataset)
    else:
        subset = Trainer(config, dataset)  # the same subsets as the minigrad run
        run = torch_run_class(torch)(config, subset.train_images, subset.test_images,
                                     fused=framework == "torch_fused")
        del subset
    run.train_epoch()
    run.evaluate()
    training_peak = _status_kib("VmHWM")
    mib = 1 / 1024  # /proc/self/status counts KiB
    print(json.dumps({
        "framework": framework, "torch_imported": "torch" in sys.modules,
        "rss_after_data_load_mib": after_load * mib,
        "peak_during_training_mib": training_peak * mib if reset else None,
        "peak_whole_process_mib": max(load_peak, training_peak) * mib,
    }))


def measure_memory(args, names):
    """Run memory_probe for each trainer in a subprocess of its own."""
    results = {}
    for name in names:
        command = [sys.executable, os.path.abspath(__file__), "--memory-probe", name,
                   "--data", args.data, "--train-subset", str(args.train_subset),
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


# --- reports ----------------------------------------------------------------------------------
def _cell(value, form):
    return "n/a" if value is None else format(value, form)


def markdown(report):
    """The short human-readable report: the epoch table, targets, profile and memory."""
    names = report["frameworks"]
    cfg, soft, device = report["config"], report["software"], report["device"]
    runtime = soft["numpy_blas_runtime"]
    blas = (f"{soft['numpy_blas']['name']} {soft['numpy_blas']['version']}, "
            f"{runtime.get('corename', '?')} kernels, {runtime.get('threads', '?')} threads")
    lines = [f"# VAE training on CPU: minigrad vs PyTorch{' (quick)' if report['quick'] else ''}",
             "",
             f"{device['model']}, {device['usable_cpus']} usable CPUs; Python {soft['python']}, "
             f"NumPy {soft['numpy']} ({blas}); "
             + (f"PyTorch {soft['torch']} ({soft['torch_threads']} threads)" if soft["torch"]
                else report["torch_absent"]) + f"; {report['date']}.",
             f"{cfg['train_images']} training / {cfg['test_images']} test images, batch "
             f"{cfg['batch_size']}, Adam lr {cfg['lr']}, float32, seed {cfg['seed']}; epochs "
             f"interleaved ({', '.join(names)}), {cfg['pause_s']} s pause between blocks. "
             "Test -ELBO: one sample, mean over the test set, nats. 1-minute load average "
             f"{report['load_average_1min']['start']:.2f} at the start, "
             f"{report['load_average_1min']['end']:.2f} at the end.", ""]
    header = ["epoch"] + [f"{n} s" for n in names] + [f"minigrad/{n}" for n in names[1:]] \
        + [f"-ELBO {n}" for n in names]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    rows = report["epochs"]
    for row in rows:
        cells = [str(row["epoch"])] + [_cell(row[f"{n}_s"], ".2f") for n in names] \
            + [_cell(row[f"ratio_{n}"], ".3f") for n in names[1:]] \
            + [_cell(row[f"{n}_test_neg_elbo"], ".2f") for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    s = report["summary"]
    cells = ["mean"] + [_cell(s[f"{n}_mean_epoch_s"], ".2f") for n in names] \
        + [_cell(s[f"ratio_{n}_mean_epoch"], ".3f") for n in names[1:]] + [""] * len(names)
    lines += ["| " + " | ".join(cells) + " |", ""]

    if "torch" in names:
        met = {True: "met", False: "NOT met"}
        lines.append(f"- final test -ELBO: minigrad {s['minigrad_final_test_neg_elbo']:.2f}, "
                     + ", ".join(f"{n} {s[f'{n}_final_test_neg_elbo']:.2f} (minigrad - {n}: "
                                 f"{s[f'neg_elbo_minus_{n}']:+.2f})" for n in names[1:])
                     + f"; target |minigrad - torch| <= {TARGET_ELBO_GAP}: "
                     + met[s["target_elbo_gap_met"]])
        lines.append(f"- mean epoch minigrad/torch {s['ratio_torch_mean_epoch']:.3f}; target <= "
                     f"{TARGET_EPOCH_RATIO}: {met[s['target_epoch_ratio_met']]}")
    else:
        lines.append(f"- final test -ELBO: minigrad {s['minigrad_final_test_neg_elbo']:.2f}")
    if report.get("torch_fused_note"):
        lines.append(f"- {report['torch_fused_note']}")

    prof = report["profile"]
    phases, comp, check = prof["phases"], prof["numpy_comparison"], prof["check"]
    lines += ["", f"## minigrad step (medians over {phases['steps']} steps, after the timed "
              "epochs)", "", "| phase | ms |", "|---|---:|"]
    lines += [f"| {name} | {phases[name + '_ms']:.3f} |" for name in
              ("batch_gather", "forward_loss", "backward", "optimizer_step", "step")]
    lines += ["", f"## engine vs hand-written NumPy, one batch (medians over {comp['steps']} "
              "steps)", "", "| | ms | share of engine forward+backward |", "|---|---:|---:|"]
    engine = comp["engine_forward_backward_ms"]
    for label, key in (("engine forward+backward", "engine_forward_backward_ms"),
                       ("hand-written NumPy forward+backward", "numpy_forward_backward_ms"),
                       ("  its 11 matmuls (4 forward, 7 backward)", "numpy_matmuls_ms"),
                       ("  its elementwise work", "numpy_elementwise_ms"),
                       ("  its noise draw (Philox, once)", "noise_draw_ms")):
        lines.append(f"| {label} | {comp[key]:.3f} | {comp[key] / engine:.1%} |")
    lines += ["", f"- engine overhead over hand-written NumPy: {comp['engine_overhead']:+.1%} "
              f"(target < {TARGET_OVERHEAD:.0%}: "
              f"{'met' if comp['target_overhead_met'] else 'NOT met'}); matmuls are "
              f"{comp['matmul_share_of_engine']:.1%} of the engine's forward+backward",
              f"- same batch, same noise: loss {check['engine_loss']:.4f} (engine) vs "
              f"{check['numpy_loss']:.4f} (NumPy); largest gradient difference "
              f"{check['max_grad_error_relative_to_max_grad']:.1e} of the largest gradient",
              "", "Backward time per op (median ms per step):", "",
              "| op | ms |", "|---|---:|"]
    lines += [f"| {op} | {ms:.3f} |" for op, ms in prof["backward_by_op_ms"].items()]

    memory = report.get("memory")
    if memory:
        lines += ["", "## peak resident memory (MiB; each trainer alone in a fresh process, "
                  "1 epoch + evaluation)", "",
                  "| trainer | RSS after data load | peak during training | peak of the "
                  "whole process |", "|---|---:|---:|---:|"]
        for name, m in memory["per_trainer"].items():
            if "error" in m:
                lines.append(f"| {name} | error: {m['error']} | | |")
                continue
            lines.append(f"| {name} | {_cell(m['rss_after_data_load_mib'], '.0f')} | "
                         f"{_cell(m['peak_during_training_mib'], '.0f')} | "
                         f"{m['peak_whole_process_mib']:.0f} |")
        lines += ["", f"This benchmark's own process (all trainers and the data): ru_maxrss "
                  f"{memory['this_process_ru_maxrss_mib']:.0f} MiB."]
    return "\n".join(lines) + "\n"


def save_report(report, text, out_dir, stem):
    """Write ``stem``.json (the report) and ``stem``.md (its text); a crash never leaves half
    of either.  Returns the two paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = (os.path.join(out_dir, stem + ".json"), os.path.join(out_dir, stem + ".md"))
    for path, content in zip(paths, (json.dumps(report, indent=2) + "\n", text)):
        with open(path + ".tmp", "w") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    return paths


def write_report(report, out_dir, stem):
    text = markdown(report)
    return text, save_report(report, text, out_dir, stem)


# --- main -------------------------------------------------------------------------------------
def make_config(args, epochs=None):
    return Config(data=args.data, epochs=epochs or args.epochs, train_subset=args.train_subset,
                  seed=args.seed, quiet=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help="epochs per trainer (default 10; --quick: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 epoch on 5000 images; writes vae_cpu_quick.*")
    parser.add_argument("--train-subset", type=int,
                        help="training images to use, 0 for all (default all; --quick: 5000)")
    parser.add_argument("--data", default=data.DEFAULT_DIR, help="MNIST folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of sleep between framework blocks")
    parser.add_argument("--profile-steps", type=int, help="steps per profile (default 100)")
    parser.add_argument("--no-torch", action="store_true", help="measure minigrad alone")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", default=RESULTS, help="folder for the .json and .md")
    parser.add_argument("--memory-probe", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (1 if args.quick else 10)
    if args.train_subset is None:
        args.train_subset = 5000 if args.quick else 0
    args.profile_steps = args.profile_steps or 100
    if args.epochs < 1 or args.train_subset < 0 or args.profile_steps < 1:
        parser.error("--epochs and --profile-steps must be >= 1, --train-subset >= 0")
    return args


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


def import_torch(args, log):
    """(torch, None), or (None, why not) when it is absent or not wanted; the reason is printed."""
    if args.no_torch:
        reason = "PyTorch skipped (--no-torch)"
    elif importlib.util.find_spec("torch") is None:
        reason = "PyTorch not installed (pip install torch to compare)"
    else:
        import torch
        torch.set_num_threads(args.threads)
        return torch, None
    log(f"{reason}: measuring minigrad alone")
    return None, reason


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe, args)
        return 0
    log = print
    load_at_start = os.getloadavg()[0]
    if load_at_start > 0.5:
        log(f"warning: the 1-minute load average is {load_at_start:.2f} before starting; other "
            "work on this machine will distort the timings")
    torch, torch_absent = import_torch(args, log)
    dataset = data.load(args.data)
    config = make_config(args)
    runs = [MinigradRun(config, dataset)]
    fused_note = None
    if torch is not None:
        TorchRun = torch_run_class(torch)
        train, test = runs[0].trainer.train_images, runs[0].trainer.test_images
        runs.append(TorchRun(config, train, test, fused=False))
        error = fused_adam_error(torch)
        if error is None:
            runs.append(TorchRun(config, train, test, fused=True))
        else:
            fused_note = (f"torch {torch.__version__}: Adam(fused=True) is unsupported on "
                          f"CPU ({error})")
            log(fused_note)
    names = [run.name for run in runs]
    log(f"{len(runs[0].trainer.train_images)} training / {len(runs[0].trainer.test_images)} "
        f"test images, batch {config.batch_size}, {args.epochs} epoch(s), interleaved: "
        f"{', '.join(names)}")

    # warm-up on throwaway trainers over 5 batches and 1000 test images
    small = dataclasses.replace(config, train_subset=5 * config.batch_size, test_subset=1000)
    warm = [MinigradRun(small, dataset)]
    if torch is not None:
        for run in runs[1:]:
            warm.append(TorchRun(small, warm[0].trainer.train_images, warm[0].trainer.test_images,
                                 fused=run.name == "torch_fused"))
    warm_up(warm)
    time.sleep(args.pause)

    rows = interleaved_epochs(runs, args.epochs, args.pause, log)
    summary = summarize(rows, names)

    time.sleep(args.pause)
    log(f"profiling the minigrad step ({args.profile_steps} steps per measurement)")
    trainer, warmup = runs[0].trainer, 10
    x = trainer.train_images[:config.batch_size]
    profile = {"phases": profile_phases(trainer, args.profile_steps, warmup),
               "check": check_against_numpy(trainer, x),
               "numpy_comparison": compare_with_numpy(trainer, args.profile_steps, warmup),
               "backward_by_op_ms": backward_by_op(trainer, args.profile_steps, warmup)}

    memory = None
    if not args.no_memory:
        log("measuring peak memory, one subprocess per trainer")
        memory = {"per_trainer": measure_memory(args, names),
                  "this_process_ru_maxrss_mib":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "note": "per_trainer: a fresh process per trainer (minigrad without torch "
                          "imported), 1 epoch + evaluation, peaks read from VmHWM (ru_maxrss of "
                          "a child inherits its parent's peak across fork+exec); "
                          "peak_during_training: VmHWM reset once the data was loaded; "
                          "this_process: ru_maxrss of the benchmark itself, every trainer, "
                          "torch and the data"}

    report = {
        "benchmark": "vae_cpu", "quick": args.quick, "command": sys.argv,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "device": cpu_info(), "software": software_info(torch),
        "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
        "frameworks": names, "torch_absent": torch_absent, "torch_fused_note": fused_note,
        "config": {"epochs": args.epochs, "train_images": len(trainer.train_images),
                   "test_images": len(trainer.test_images), "batch_size": config.batch_size,
                   "lr": config.lr, "hidden_dim": config.hidden_dim,
                   "latent_dim": config.latent_dim, "seed": config.seed, "dtype": "float32",
                   "pause_s": args.pause, "torch_threads": args.threads,
                   "profile_steps": args.profile_steps},
        "epochs": rows, "summary": summary, "profile": profile, "memory": memory,
        "notes": ["epoch seconds cover the training loop only (shuffle, batches, forward, "
                  "backward, optimizer, reading the loss), not the evaluation",
                  "both frameworks minimise the batch mean of -ELBO (the PyTorch example sums "
                  "over the batch; Adam is invariant to that scale up to eps)",
                  "minigrad draws its noise from its Philox stream, PyTorch from torch.randn"],
    }
    text, paths = write_report(report, args.out, "vae_cpu_quick" if args.quick else "vae_cpu")
    print()
    print(text, end="")
    log(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
