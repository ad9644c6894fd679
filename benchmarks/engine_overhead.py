"""The engine's overhead: minigrad's forward+backward of the VAE loss against the same math
written directly in NumPy.

    python benchmarks/engine_overhead.py          # 1 epoch of training, then 100 timed steps
    python benchmarks/engine_overhead.py --quick  # 1 epoch on 5000 images, then 30 timed steps

Prints, last, one line: ``engine forward+backward over the hand-written NumPy step: +N.N %``.

The model first trains ``--train-epochs`` epochs through the product's loop, so the step is
timed on the weights of a model in training.  Then, on one batch and those parameters, each of
``--steps`` steps (after 10 untimed ones) times in turn: the engine's forward+backward
(``model.loss(...).total.backward()``), ``numpy_step`` (float32, the engine's matrix layouts, the
same Philox noise, drawn once), its 11 matrix products alone (4 forward, 7 backward) and its
noise draw; medians are reported.  Before timing, the two are checked against each other on the
same noise: loss and the largest gradient difference.

Then the cost of the in-place check (minigrad/saved.py: the arrays a live node's VJP reads are
read-only until it is freed): ``--steps`` whole training steps (forward, backward, Adam) with
the check on and, in turn, with it off (``inplace_check_off``), medians.

Results go to runs/benchmarks/engine_overhead.{json,md} (``--quick``: engine_overhead_quick.*),
or ``--out DIR``; ``--update-results`` replaces the committed benchmarks/results/ ones.
"""
import contextlib
import math
import os
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import describe  # noqa: E402
from benchmarks.report import load_sentence  # noqa: E402
from benchmarks.step_timing import (WARMUP_STEPS, median_ms, run_step_benchmark,  # noqa: E402
                                    step_setting)
from kernels.reference import noise  # noqa: E402
from minigrad import saved  # noqa: E402

TARGET_OVERHEAD = 0.15  # engine forward+backward over the hand-written NumPy one


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
    result = {f"{name}_ms": median_ms(samples) for name, samples in times.items()}
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


@contextlib.contextmanager
def inplace_check_off():
    """The engine without its in-place check, for timing it: nodes hold none of the arrays
    they saved (``minigrad.saved.hold`` holds nothing), so backward checks nothing and releases
    nothing, and ``Optimizer.step`` finds nothing to let go.  Restored on exit."""
    hold = saved.hold
    saved.hold = lambda arrays, op: ()
    try:
        yield
    finally:
        saved.hold = hold


def training_step(trainer, x):
    """One whole training step on batch x: forward, backward, Adam."""
    loss = trainer.model.loss(x, trainer.stream).total
    float(loss.data)
    trainer.optimizer.zero_grad()
    loss.backward()
    trainer.optimizer.step()


def inplace_check_cost(trainer, steps, warmup):
    """Whole training steps with the in-place check on and off, timed in turn, each first
    every other step (medians)."""
    x = trainer.train_images[:trainer.config.batch_size]
    clock = time.perf_counter
    times = {"step_with_check": [], "step_without_check": []}
    for step in range(warmup + steps):
        for name in sorted(times, reverse=step % 2 == 1):  # each goes first every other step
            with inplace_check_off() if name == "step_without_check" else contextlib.nullcontext():
                started = clock()
                training_step(trainer, x)
                seconds = clock() - started
            if step >= warmup:
                times[name].append(seconds)
    result = {f"{name}_ms": median_ms(samples) for name, samples in times.items()}
    result["cost"] = result["step_with_check_ms"] / result["step_without_check_ms"] - 1
    result["steps"] = steps
    return result


def headline(comparison):
    """The figure later work reports before and after a change, as one line."""
    return (f"engine forward+backward over the hand-written NumPy step: "
            f"{comparison['engine_overhead']:+.1%} (engine "
            f"{comparison['engine_forward_backward_ms']:.3f} ms, NumPy "
            f"{comparison['numpy_forward_backward_ms']:.3f} ms; medians over "
            f"{comparison['steps']} steps)")


def markdown(report):
    comp, check = report["comparison"], report["check"]
    lines = [f"# minigrad engine vs hand-written NumPy{' (quick)' if report['quick'] else ''}",
             "", describe(report["device"], report["software"]) + f"; {report['date']}.",
             step_setting(report["config"]) + " " + load_sentence(report["load_average_1min"]),
             "", "| | ms | share of engine forward+backward |", "|---|---:|---:|"]
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
              "- " + inplace_line(report["inplace_check"])]
    return "\n".join(lines) + "\n"


def inplace_line(cost):
    """The in-place check's cost as one line."""
    return (f"the in-place check costs {cost['cost']:+.1%} of a whole training step "
            f"(forward, backward, Adam): {cost['step_with_check_ms']:.3f} ms with it, "
            f"{cost['step_without_check_ms']:.3f} ms without, timed in turn; medians over "
            f"{cost['steps']} steps")


def measure(trainer, args, log):
    log(f"timing the engine against hand-written NumPy ({args.steps} steps)")
    check = check_against_numpy(trainer, trainer.train_images[:trainer.config.batch_size])
    comparison = compare_with_numpy(trainer, args.steps, WARMUP_STEPS)
    log(f"timing training steps with and without the in-place check ({args.steps} each)")
    cost = inplace_check_cost(trainer, args.steps, WARMUP_STEPS)
    return {"check": check, "comparison": comparison, "inplace_check": cost,
            "headline": headline(comparison)}


def main(argv=None, log=print):
    report = run_step_benchmark("engine_overhead", __doc__.split("\n\n")[0], measure, markdown,
                                argv, log)
    log(inplace_line(report["inplace_check"]))
    log(report["headline"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
