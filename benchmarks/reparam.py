"""Benchmark: the fused reparameterisation kernels against unfused NumPy and PyTorch.

    python benchmarks/reparam.py                      # CPU: N = 2^16 .. 2^24, float32 and float64
    python benchmarks/reparam.py --device gpu         # GPU: N = 2^16 .. 2^28 (numba_cuda, cupy)
    python benchmarks/reparam.py --quick              # smoke run: small sizes, 2 repetitions

For each N and dtype, every method runs forward (z from mu, logvar), backward (grad_mu,
grad_logvar from grad_z, logvar) and forward+backward; times are the minima over interleaved
repetitions (every method once per round), so a busy neighbour hurts all methods alike. Methods:
  - each available kernels backend (CPU: numba_cpu; GPU: numba_cuda, cupy), regenerating eps in
    the backward (0 bytes kept between the passes) and with save_noise (eps kept: itemsize B/elem)
  - NumPy unfused: eps from np.random.default_rng().standard_normal, then exp, multiply, add; the
    backward reuses eps (kept: itemsize B/elem)
  - PyTorch eager (randn, exp, mul, add; autograd backward) and torch.compile of the same, when
    torch is installed; a compile failure is caught and reported
GB/s counts the bytes a pass must move: forward reads mu, logvar and writes z, backward reads
grad_z, logvar and writes grad_logvar (3 itemsizes per element each; the contract's grad_mu copy
and any saved eps are extra and not counted), over the copy bandwidth of the same device measured
in the same run (CPU: np.copyto of a buffer of 3 itemsizes per element, counted read + write;
GPU: a device-to-device copy of the same bytes).

Results: reparam_{cpu,gpu}[_quick].json, .md and .png (GB/s against N) in
runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones),
and a table on stdout.

Each timed pass follows one untimed call of the same pass. Before a method's turn the script
sleeps (--pause), so that the previous method's spinning threads leave the cores; but Numba's
OpenMP workers fall asleep too, and the first call after the pause pays their wake-up and cold
caches (about 0.15 ms on a 2-CPU AMD EPYC, more than a whole forward at N = 2^16). Timed first
without that call, the forward looked slower than forward+backward at small N.

The speedups at the largest N are time(other) / time(kernel): above 1 the regenerating kernel
is faster. Below 1 for its own save_noise variant on a CPU: there the kernel is compute-bound,
and regenerating eps (Philox and Box-Muller again) costs more than reading it back.

--wide-vectors sets NUMBA_CPU_FEATURES to the host's features with 512-bit vectors
preferred, for this process only: it must be set before numba is imported and applies to the
whole process, so it is never set for users (docs/kernels.md, "What makes the CPU loop
vectorise", says what vectorises).
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import add_out_arguments, gpu_name, out_folder, save_report, utc_now  # noqa: E402
import kernels  # noqa: E402
from kernels import contract  # noqa: E402

SEED, OFFSET = 1234, 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--min-log2", type=int, default=16, help="smallest N = 2^this")
    parser.add_argument("--max-log2", type=int, help="largest N (default 24 on CPU, 28 on GPU)")
    parser.add_argument("--step", type=int, default=2, help="log2 step between sizes")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per size")
    parser.add_argument("--quick", action="store_true", help="N up to 2^18, 2 rounds")
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds of sleep before each method's turn: thread pools that "
                             "spin after their work (OpenMP, torch) must not steal the next "
                             "method's cores")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--wide-vectors", action="store_true",
                        help="NUMBA_CPU_FEATURES = host features, 512-bit vectors preferred")
    add_out_arguments(parser, "reparam_<device>[_quick].{json,md,png}")
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    if args.max_log2 is None:
        args.max_log2 = 24 if args.device == "cpu" else 28
    if args.quick:
        args.max_log2, args.repeats = min(args.max_log2, 18), 2
    return args


def wide_vector_features():
    """The host's LLVM features with 512-bit vectors preferred (what --wide-vectors sets)."""
    import llvmlite.binding as llvm  # llvmlite alone: numba must not be imported before this
    llvm.initialize_native_target()
    return llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"


# ---------------------------------------------------------------------------------------------
# the methods: each one's prepare() makes its inputs, then forward / backward / forward_backward
class Method:
    """One way to run the passes. kept_bytes: bytes per element kept between the passes."""

    def __init__(self, name, xp, sync=lambda: None):
        self.name, self.xp, self.sync = name, xp, sync
        self.error = None

    def prepare(self, n, dtype):
        rng = np.random.default_rng(n)
        host = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
        self.mu, self.logvar, self.grad_z = (self.xp.asarray(a) for a in host)
        self.saved = None
        self.kept_bytes = 0

    def before(self, name):
        """Untimed work before timing pass `name` (none by default)."""


class Kernel(Method):
    """A kernels backend module; save_noise keeps eps for the backward instead of regenerating."""

    def __init__(self, name, module, xp, sync, save_noise):
        super().__init__(name + ("+save_noise" if save_noise else ""), xp, sync)
        self.module, self.save_noise = module, save_noise

    def prepare(self, n, dtype):
        super().prepare(n, dtype)
        self.kept_bytes = self.mu.dtype.itemsize if self.save_noise else 0
        self.forward()  # compile, and have eps for a lone backward

    def forward(self):
        if self.save_noise:
            _, self.saved = contract.forward(self.module, self.mu, self.logvar, SEED, OFFSET,
                                             save_noise=True)
        else:
            contract.forward(self.module, self.mu, self.logvar, SEED, OFFSET)

    def backward(self):
        contract.backward(self.module, self.grad_z, self.logvar, SEED, OFFSET, noise=self.saved)

    def forward_backward(self):
        self.forward()
        self.backward()


class NumpyUnfused(Method):
    """The textbook NumPy version: eps drawn and kept, then one ufunc per operation."""

    def __init__(self):
        super().__init__("numpy_unfused", np)
        self.rng = np.random.default_rng(SEED)

    def prepare(self, n, dtype):
        super().prepare(n, dtype)
        self.kept_bytes = self.mu.dtype.itemsize
        self.forward()

    def forward(self):
        self.eps = self.rng.standard_normal(self.mu.size, dtype=self.mu.dtype)
        return self.mu + self.xp.exp(self.logvar / 2) * self.eps

    def backward(self):
        return self.grad_z.copy(), self.grad_z * self.xp.exp(self.logvar / 2) * self.eps / 2

    def forward_backward(self):
        self.forward()
        self.backward()


class Torch(Method):
    """PyTorch: randn + exp + mul + add with autograd, eager or through torch.compile."""

    def __init__(self, torch, device, compiled):
        super().__init__("torch_compile" if compiled else "torch_eager", None,
                         torch.cuda.synchronize if device == "cuda" else (lambda: None))
        self.torch, self.device, self.compiled = torch, device, compiled

        def reparam(mu, logvar):
            return mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        self.function = torch.compile(reparam) if compiled else reparam

    def prepare(self, n, dtype):
        rng = np.random.default_rng(n)
        host = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
        self.mu, self.logvar, self.grad_z = (self.torch.tensor(a, device=self.device)
                                             for a in host)
        self.mu.requires_grad_(True)
        self.logvar.requires_grad_(True)
        self.kept_bytes = np.dtype(dtype).itemsize  # autograd keeps eps (or sigma * eps)
        self.forward_backward()  # compiles, when compiled

    def before(self, name):
        # fresh .grad each time (accumulating would add traffic); a backward needs a new graph
        self.mu.grad = self.logvar.grad = None
        if name == "backward":
            self.forward()

    def forward(self):
        self.z = self.function(self.mu, self.logvar)

    def backward(self):
        self.z.backward(self.grad_z)

    def forward_backward(self):
        self.forward()
        self.backward()


def kernel_methods(names, xp, sync, notes):
    """Kernel methods (regenerating, and with save_noise) of each backend in `names` that imports
    here; the others go into notes with the reason."""
    methods = []
    for name in names:
        try:
            module = importlib.import_module(kernels.BACKENDS[name])
        except ImportError as err:
            notes[name] = f"unavailable: {err}"
            continue
        methods += [Kernel(name, module, xp, sync, False), Kernel(name, module, xp, sync, True)]
    return methods


def cpu_methods(args):
    """(methods, notes) on the CPU: the registry's compiled CPU backends, NumPy, PyTorch."""
    notes = {}
    names = [b for b in kernels.BACKENDS if b not in kernels.GPU_BACKENDS and b != "reference"]
    methods = kernel_methods(names, np, lambda: None, notes) + [NumpyUnfused()]
    methods += torch_methods(args, "cpu", notes)
    return methods, notes


def torch_methods(args, device, notes):
    if args.no_torch:
        notes["torch"] = "skipped (--no-torch)"
        return []
    try:
        import torch
    except ImportError as err:
        notes["torch"] = f"not installed ({err})"
        return []
    methods = [Torch(torch, device, compiled=False)]
    if not args.no_compile:
        methods.append(Torch(torch, device, compiled=True))
    return methods


def gpu_methods(args):
    """(methods, notes) on the GPU: the registry's GPU backends on CuPy arrays, torch on cuda."""
    import cupy
    notes = {}
    methods = kernel_methods(kernels.GPU_BACKENDS, cupy, cupy.cuda.Device().synchronize, notes)
    return methods + torch_methods(args, "cuda", notes), notes


# ---------------------------------------------------------------------------------------------
# measuring
PASSES = ("forward", "backward", "forward_backward")


def timed(function, sync):
    sync()
    start = time.perf_counter()
    function()
    sync()
    return time.perf_counter() - start


def copy_seconds(n, itemsize, repeats, device):
    """Minimum time to copy 3 * itemsize * n bytes on the device (a pass's traffic: read + write
    counted, so GB/s = 2 * bytes / seconds)."""
    size = 3 * itemsize * n
    if device == "cpu":
        src, dst = np.ones(size, np.uint8), np.empty(size, np.uint8)
        return min(timed(lambda: np.copyto(dst, src), lambda: None) for _ in range(repeats))
    import cupy
    src, dst = cupy.ones(size, cupy.uint8), cupy.empty(size, cupy.uint8)
    sync = cupy.cuda.Device().synchronize
    return min(timed(lambda: dst.__setitem__(slice(None), src), sync) for _ in range(repeats))


def run(args, methods):
    """Rows of results: one per (method, dtype, n, pass); interleaved rounds, minimum kept."""
    rows, copies = [], []
    for dtype in args.dtypes.split(","):
        itemsize = np.dtype(dtype).itemsize
        for log2 in range(args.min_log2, args.max_log2 + 1, args.step):
            n = 1 << log2
            copy = copy_seconds(n, itemsize, args.repeats, args.device)
            copy_gbps = 2 * 3 * itemsize * n / copy / 1e9
            copies.append({"dtype": dtype, "n": n, "seconds": copy, "gbps": copy_gbps})
            ready = []
            for method in methods:
                try:
                    method.prepare(n, dtype)
                    ready.append(method)
                except Exception as err:  # e.g. torch.compile without a working toolchain
                    method.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
                    print(f"  {method.name} {dtype} 2^{log2}: {method.error}", file=sys.stderr)
            best = {}
            for _ in range(args.repeats):
                for method in ready:
                    time.sleep(args.pause)
                    for name in PASSES:
                        # NOTE: one untimed call first: it wakes the thread pool the pause put
                        # to sleep and warms the caches (the module docstring says why)
                        method.before(name)
                        getattr(method, name)()
                        method.before(name)
                        seconds = timed(getattr(method, name), method.sync)
                        key = (method.name, name)
                        best[key] = min(best.get(key, float("inf")), seconds)
            for method in ready:
                for name in PASSES:
                    seconds = best[(method.name, name)]
                    moved = (6 if name == "forward_backward" else 3) * itemsize * n
                    rows.append({"method": method.name, "dtype": dtype, "n": n, "pass": name,
                                 "seconds": seconds, "gbps": moved / seconds / 1e9,
                                 "fraction_of_copy": moved / seconds / 1e9 / copy_gbps,
                                 "kept_bytes_per_element": method.kept_bytes})
            print(f"  {dtype} 2^{log2} done", file=sys.stderr)
    return rows, copies


# ---------------------------------------------------------------------------------------------
# reporting
def device_info(device):
    info = {"kind": device, "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        import numba
        import llvmlite
        info.update(numba=numba.__version__, llvmlite=llvmlite.__version__,
                    numba_threads=numba.get_num_threads(),
                    numba_cpu_features=os.environ.get("NUMBA_CPU_FEATURES", "(default)"))
    except ImportError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    if device == "cpu":
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["name"] = names[0] if names else platform.processor()
    else:
        import cupy
        properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info.update(name=gpu_name(properties), cupy=cupy.__version__,
                    sm_count=properties["multiProcessorCount"])
    return info


def format_table(rows, copies):
    """The results as text: per dtype, one row per method and N (also saved as the .md)."""
    by = {(r["method"], r["dtype"], r["n"], r["pass"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        lines += ["", f"{dtype}: milliseconds (min over rounds); GB/s and fraction of copy for "
                      "fwd+bwd", "```",
                  f"{'method':26s} {'N':>9s} {'fwd':>9s} {'bwd':>9s} {'fwd+bwd':>9s} {'GB/s':>7s} "
                  f"{'of copy':>7s} {'kept B':>6s}"]
        for copy in (c for c in copies if c["dtype"] == dtype):
            n = copy["n"]
            lines.append(f"{'(copy bandwidth)':26s} {n:9d} {'':9s} {'':9s} {'':9s} "
                         f"{copy['gbps']:7.1f}")
            for method in methods:
                if (method, dtype, n, "forward") not in by:
                    continue
                f, b, fb = (by[(method, dtype, n, p)] for p in PASSES)
                lines.append(f"{method:26s} {n:9d} {f['seconds'] * 1e3:9.2f} "
                             f"{b['seconds'] * 1e3:9.2f} {fb['seconds'] * 1e3:9.2f} "
                             f"{fb['gbps']:7.1f} {fb['fraction_of_copy']:7.1%} "
                             f"{f['kept_bytes_per_element']:6d}")
        lines.append("```")
    return "\n".join(lines)


SPEEDUP_NOTE = ("Above 1 the regenerating kernel is faster. Below 1 against its own save_noise "
                "variant on a CPU: the kernel is compute-bound there, and regenerating eps costs "
                "more than reading the saved eps back.")


def speedups(rows, kernel):
    """forward+backward time ratios baseline / kernel at the largest N of each dtype."""
    out = {}
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        n = max(r["n"] for r in rows if r["dtype"] == dtype)
        times = {r["method"]: r["seconds"] for r in rows
                 if r["dtype"] == dtype and r["n"] == n and r["pass"] == "forward_backward"}
        if kernel in times:
            out[dtype] = {"n": n, **{f"{kernel}_vs_{m}": times[m] / times[kernel]
                                     for m in times if m != kernel}}
    return out


def plot(rows, copies, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = sorted((r["n"], r["gbps"]) for r in rows if r["method"] == method
                            and r["dtype"] == dtype and r["pass"] == "forward_backward")
            if points:
                ax.plot(*zip(*points), marker="o", label=method)
        copy = sorted((c["n"], c["gbps"]) for c in copies if c["dtype"] == dtype)
        ax.plot(*zip(*copy), "k--", label="copy bandwidth")
        ax.set(xscale="log", yscale="log", xlabel="N (elements)",
               ylabel="GB/s (forward+backward)", title=dtype)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(argv)
    if args.wide_vectors:
        os.environ["NUMBA_CPU_FEATURES"] = wide_vector_features()
    load_start = os.getloadavg()
    try:
        methods, notes = (cpu_methods if args.device == "cpu" else gpu_methods)(args)
    except ImportError as err:  # --device gpu without CuPy, or no numba on the CPU
        print(f"reparam: {args.device} benchmark unavailable: {err}", file=sys.stderr)
        return 2
    print(f"reparam benchmark on {args.device}: {', '.join(m.name for m in methods)}; "
          f"N = 2^{args.min_log2}..2^{args.max_log2}, {args.repeats} rounds, "
          f"load average {load_start[0]:.2f}", file=sys.stderr)
    rows, copies = run(args, methods)
    notes.update({m.name: m.error for m in methods if m.error})
    kernel = "numba_cpu" if args.device == "cpu" else "numba_cuda"
    report = {
        "date": utc_now(),
        "device": device_info(args.device),
        "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "bytes_per_element": "forward: mu, logvar read + z written; backward: grad_z, logvar "
                             "read + grad_logvar written; 3 itemsizes each (grad_mu's copy and "
                             "saved eps not counted); copy: 3 itemsizes read + written",
        "copy": copies, "results": rows, "speedups_forward_backward": speedups(rows, kernel),
        "notes": notes,
    }
    stem = f"reparam_{args.device}{'_quick' if args.quick else ''}"
    table = format_table(rows, copies)
    speedup_text = json.dumps(report["speedups_forward_backward"], indent=1)
    text = (f"# Fused reparameterization, {report['device'].get('name', args.device)}, "
            f"{report['date']}\n\nLoad average {load_start[0]:.2f} -> "
            f"{report['load_average_1min']['end']:.2f}. kept B: bytes per element kept "
            f"between forward and backward. Each timed pass follows an untimed call of it "
            f"(the thread pool awake, caches warm).\n{table}\n\nforward+backward speedups at "
            f"the largest N, time(other) / time({kernel}):\n```\n{speedup_text}\n```\n"
            f"{SPEEDUP_NOTE}\n")
    save_report(report, text, args.out, stem)
    plot(rows, copies, os.path.join(args.out, stem + ".png"))
    print(table)
    print(f"\nforward+backward speedups at the largest N: {speedup_text}\n{SPEEDUP_NOTE}")
    if notes:
        print(f"notes: {json.dumps(notes, indent=1)}")
    print(f"wrote {os.path.join(args.out, stem)}.json, .md and .png; load average "
          f"{load_start[0]:.2f} -> {report['load_average_1min']['end']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
