"""GPU benchmark: the minigrad VAE with --device cuda against the same recipe in PyTorch on CUDA.

    python benchmarks/vae_gpu.py                      # batch 128 and 4096, 5 epochs each
    python benchmarks/vae_gpu.py --epochs 1 --train-subset 10000   # smoke run
    python benchmarks/vae_gpu.py --cuda-graph         # also replay a captured step (timing only)

What it measures, in one process on one GPU, with the same data (``vae.data.load()``):

1. Epoch time and test -ELBO per epoch of minigrad (``vae.train.Trainer`` with device "cuda", the
   product's own loop: data resident on the GPU, loss read every LOSS_READ_EVERY steps) and
   PyTorch eager on CUDA (benchmarks/vae_runs.py's recipe, data resident, ``loss.item()`` every
   step as the example does), interleaved epoch by epoch, at each batch size.
   Targets: minigrad / PyTorch epoch time <= 1.5 at batch 128 and <= 1.1 at batch 4096; final
   test -ELBO within 0.5 nat of the CPU run's (benchmarks/results/vae_cpu.json).
2. A step profile per batch size: GPU time of one training step (cupy.cuda.Event pairs) against
   the host time to issue it (time.perf_counter, no synchronisation), from
   cupyx.profiler.benchmark.  Host time >= GPU time means the step is bound by Python and
   launch overhead, not by the kernels.
3. With --cuda-graph: the whole step captured once into a CUDA graph (CuPy stream capture) and
   replayed, against the eager step.  TIMING ONLY: the graph bakes in every host scalar of the
   captured step (the Philox offset, Adam's bias corrections, the batch rows), so replays repeat
   one step's noise and update; it bounds what capturing would gain, it is not a trainer.

Exits 1 with the reason when CuPy or a GPU is missing.  Results go to
vae_gpu.{json,md} in runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import (RESULTS, add_out_arguments, gpu_name, out_folder,  # noqa: E402
                               provenance, publish)
from benchmarks.vae_runs import (MinigradRun, interleaved_epochs, mean_and_final,  # noqa: E402
                                 torch_run_class, warm_up)
from minigrad import backend  # noqa: E402
from vae import data  # noqa: E402
from vae.train import Config  # noqa: E402

TARGET_EPOCH_RATIO = {128: 1.5, 4096: 1.1}  # minigrad / PyTorch eager mean epoch time
TARGET_ELBO_GAP = 0.5                       # nats: final test -ELBO against the CPU run's


# --- epochs -----------------------------------------------------------------------------------
def summarize(rows, names, batch, cpu_elbo):
    # NOTE: the first timed epoch is kept: warm-up ran on throwaway trainers beforehand
    summary = mean_and_final(rows, names)
    if "torch" in names:
        ratio = summary["minigrad_mean_epoch_s"] / summary["torch_mean_epoch_s"]
        summary["ratio_torch_mean_epoch"] = ratio
        if batch in TARGET_EPOCH_RATIO:
            summary["target_epoch_ratio"] = TARGET_EPOCH_RATIO[batch]
            summary["target_epoch_ratio_met"] = ratio <= TARGET_EPOCH_RATIO[batch]
    if cpu_elbo is not None:
        gap = summary["minigrad_final_test_neg_elbo"] - cpu_elbo
        summary["neg_elbo_minus_cpu_run"] = gap
        summary["target_elbo_gap_met"] = abs(gap) <= TARGET_ELBO_GAP
    return summary


# --- one step, profiled -----------------------------------------------------------------------
def step_function(trainer, batch):
    """One training step of ``trainer`` on a fixed device batch (as train_epoch does it)."""
    x = trainer.train_resident[:batch]
    model, optimizer, stream = trainer.model, trainer.optimizer, trainer.stream

    def step():
        loss = model.loss(x, stream, trainer.config.beta).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss
    return step


def profile_step(cupy, trainer, batch, steps):
    """Host time to issue a step against its GPU time; the kernels' share of the step."""
    from cupyx.profiler import benchmark
    result = benchmark(step_function(trainer, batch), n_repeat=steps, n_warmup=10)
    cpu_ms = float(np.median(result.cpu_times)) * 1e3
    gpu_ms = float(np.median(result.gpu_times[0])) * 1e3
    # issue-only time: steps queued back to back without a sync, then one event pair around all
    step = step_function(trainer, batch)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    issue_ms = (time.perf_counter() - began) / steps * 1e3
    end.record()
    end.synchronize()
    pipelined_ms = cupy.cuda.get_elapsed_time(start, end) / steps
    return {"cpu_ms": cpu_ms, "gpu_ms": gpu_ms, "issue_ms": issue_ms,
            "pipelined_gpu_ms": pipelined_ms,
            "bound": "host (Python + launches)" if issue_ms >= 0.9 * pipelined_ms else "kernels",
            "note": "cpu/gpu_ms: cupyx.profiler.benchmark medians (each step synchronised); "
                    "issue_ms: host time per step queued without syncs; pipelined_gpu_ms: "
                    "event time per step over the same queue"}


def cuda_graph_gain(cupy, trainer, batch, replays):
    """Eager step against the same step captured once and replayed (timing only: see the
    module docstring)."""
    step = step_function(trainer, batch)
    pool = cupy.cuda.MemoryPool()  # the graph's buffers, kept apart from everything else
    stream = cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(pool.malloc), stream:
        step()                      # compile kernels, fill the private pool
        stream.synchronize()
        stream.begin_capture()
        step()
        graph = stream.end_capture()
    timings = {}
    for label, run in (("eager", step), ("graph", lambda: graph.launch(stream))):
        with stream:
            run()
            stream.synchronize()
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record(stream)
            for _ in range(replays):
                run()
            end.record(stream)
            end.synchronize()
        timings[f"{label}_ms"] = cupy.cuda.get_elapsed_time(start, end) / replays
    timings["speedup"] = timings["eager_ms"] / timings["graph_ms"]
    timings["note"] = ("timing only: the graph replays one captured step (its Philox offset, "
                       "Adam bias corrections and batch are baked in); a graph-driven trainer "
                       "would need those scalars in device memory")
    return timings


# --- report -----------------------------------------------------------------------------------
def markdown(report):
    lines = ["# VAE on the GPU: minigrad (--device cuda) against PyTorch eager on CUDA",
             "", f"{report['date']}, {report['device']}, commit {report['git_commit']}", ""]
    for batch, part in report["batches"].items():
        s = part["summary"]
        lines += [f"## batch {batch}", "",
                  "| trainer | mean epoch s | final test -ELBO |", "|---|---|---|"]
        for name in report["frameworks"]:
            lines.append(f"| {name} | {s[name + '_mean_epoch_s']:.2f} | "
                         f"{s[name + '_final_test_neg_elbo']:.2f} |")
        if "ratio_torch_mean_epoch" in s:
            lines.append(f"\nminigrad / PyTorch epoch time: {s['ratio_torch_mean_epoch']:.2f} "
                         f"(target <= {s.get('target_epoch_ratio', '-')}, met: "
                         f"{s.get('target_epoch_ratio_met', '-')})")
        if "neg_elbo_minus_cpu_run" in s:
            lines.append(f"test -ELBO minus the CPU run's: {s['neg_elbo_minus_cpu_run']:+.2f} "
                         f"(target within {TARGET_ELBO_GAP}, met: {s['target_elbo_gap_met']})")
        p = part["profile"]
        lines.append(f"\nstep profile: GPU {p['gpu_ms']:.3f} ms, host {p['cpu_ms']:.3f} ms "
                     f"(issue {p['issue_ms']:.3f} ms, pipelined GPU "
                     f"{p['pipelined_gpu_ms']:.3f} ms): bound by {p['bound']}")
        if part.get("cuda_graph"):
            g = part["cuda_graph"]
            lines.append(f"CUDA graph: eager {g['eager_ms']:.3f} ms, graph {g['graph_ms']:.3f} "
                         f"ms per step, x{g['speedup']:.2f} ({g['note']})")
        lines.append("")
    return "\n".join(lines) + "\n"


def cpu_reference(path):
    """Final minigrad test -ELBO of the CPU benchmark's run, or None without one."""
    try:
        with open(path) as f:
            return json.load(f)["summary"]["minigrad_final_test_neg_elbo"]
    except (OSError, KeyError, ValueError):
        return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trainer and batch size")
    parser.add_argument("--batch-sizes", default="128,4096", help="comma-separated")
    parser.add_argument("--train-subset", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--data", default=data.DEFAULT_DIR, help="MNIST folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kernel-backend", choices=("cupy", "numba_cuda"), default=None)
    parser.add_argument("--profile-steps", type=int, default=100)
    parser.add_argument("--cuda-graph", action="store_true",
                        help="also time the step captured into a CUDA graph and replayed")
    parser.add_argument("--no-torch", action="store_true", help="measure minigrad alone")
    parser.add_argument("--cpu-report", default=os.path.join(RESULTS, "vae_cpu.json"),
                        help="the CPU benchmark's JSON, for the -ELBO target")
    add_out_arguments(parser, "vae_gpu.{json,md}")
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    return args


def main(argv=None):
    args = parse_args(argv)
    if not backend.cuda_available():
        try:
            backend.to_device(np.zeros(1), "cuda")
        except backend.DeviceUnavailableError as err:
            print(f"vae_gpu.py: {err}", file=sys.stderr)
        return 1
    import cupy
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError as err:
            print(f"note: PyTorch is not importable ({err}); minigrad is measured alone")
        if torch is not None and not torch.cuda.is_available():
            print("note: PyTorch sees no CUDA device; minigrad is measured alone")
            torch = None
    dataset = data.load(args.data)
    cpu_elbo = cpu_reference(args.cpu_report)
    report = provenance(
        "vae_gpu", device=gpu_name(cupy.cuda.runtime.getDeviceProperties(0)),
        software={"cupy": cupy.__version__, "torch": None if torch is None else torch.__version__},
        frameworks=["minigrad"] + ([] if torch is None else ["torch"]),
        cpu_reference_neg_elbo=cpu_elbo, batches={})
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        config = Config(data=args.data, epochs=args.epochs, batch_size=batch,
                        train_subset=args.train_subset, seed=args.seed, quiet=True,
                        device="cuda", kernel_backend=args.kernel_backend)
        runs = [MinigradRun(config, dataset)]
        if torch is not None:
            trainer = runs[0].trainer
            runs.append(torch_run_class(torch, "cuda")(config, trainer.train_images,
                                                       trainer.test_images))
        warm = warm_up(runs, dataset)  # compiles kernels, fills memory pools, starts cuBLAS
        rows = interleaved_epochs(runs, args.epochs, print, label=f"batch {batch} ")
        part = {"epochs": rows, "summary": summarize(rows, [r.name for r in runs], batch, cpu_elbo),
                "profile": profile_step(cupy, runs[0].trainer, batch, args.profile_steps)}
        if args.cuda_graph:
            part["cuda_graph"] = cuda_graph_gain(cupy, warm[0].trainer, batch,
                                                 args.profile_steps)
        report["batches"][str(batch)] = part
    publish(report, markdown(report), args.out, "vae_gpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
