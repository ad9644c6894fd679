"""Every GPU kernel compiled by the real CUDA toolchains, without a GPU: registers, spills, shared
memory and theoretical occupancy per kernel, for sm_80 and sm_90.

    python benchmarks/compile_report.py            # writes runs/benchmarks/compile_report.*
    python benchmarks/compile_report.py --update-results   # the committed benchmarks/results/
    python benchmarks/compile_report.py --out DIR

Needs the compilers as wheels (pip install -e ".[gpu-compile]": numba-cuda's NVVM, NVRTC,
cuda-bindings, and ptxas from nvidia-cuda-nvcc, all from one CUDA release, since ptxas must be
at least as new as the NVVM that wrote the PTX); no driver, no GPU. Without any one of them
(PyTorch's CUDA wheels bring NVRTC and cuda-bindings but not NVVM) it says what is missing and
exits with status 3. NUMBA_ENABLE_CUDASIM must be unset (the simulator compiles nothing).

What is compiled, exactly as the backends build it:
- numba_cuda: every specialisation kernels.numba.gpu launches
  (kernels.numba.gpu_kernels.SPECIALISATIONS), through NVVM with contraction off, then ptxas -v;
- cupy and Adam: kernels.cuda_c.nvrtc's modules (reparam.cu, adam.cu) by NVRTC with its
  options, the cubin the GPU loads, whose ptxas lines come in NVRTC's log.
Per kernel: registers, stack frame, spill stores and loads, static shared memory, and blocks per
SM and occupancy at the launch's block size (kernels.occupancy); from the PTX: FMAs, float
add/sub/mul without a rounding mode (which ptxas may still fuse: "contractible") and arithmetic
flushing subnormals (.ftz, other than the math library's .approx seeds). Results: compile_report.json
(every figure) and compile_report.md (the table); no date, so they change only when a kernel or the
toolchain does. tests/test_gpu_compile.py regenerates them and compares.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import add_out_arguments, out_folder, shown  # noqa: E402
from kernels import occupancy  # noqa: E402

ARCHS = ("sm_80", "sm_90")
MISSING_TOOLCHAIN = 3  # exit status
PACKAGES = ("numba-cuda", "cuda-bindings", "nvidia-nvvm", "nvidia-cuda-nvrtc", "nvidia-cuda-nvcc")
FIELDS = ("registers", "stack", "spill_stores", "spill_loads", "shared", "threads",
          "blocks_per_sm", "occupancy", "fma", "contractible", "ftz")


INSTALL_HINT = ('install the compilers as wheels, no GPU needed: python -m pip install -e '
                '".[gpu-compile]"')


def missing_toolchain():
    """Why the report cannot be made here (a sentence), or None.  Every package of PACKAGES must
    be installed (the report records their versions), and each compiler must load."""
    from numba.core import config
    if config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM is set: the simulator compiles nothing"
    absent = [name for name in PACKAGES if not _installed(name)]
    if absent:
        return f"the CUDA compilers are not all installed (missing: {', '.join(absent)})"
    try:
        from cuda.bindings import nvrtc  # noqa: F401
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        from kernels.cuda_c import nvrtc as cuda_c
        cuda_c.CudaBindingsNvrtc().version()
    except Exception as err:  # noqa: BLE001  (ImportError, NvvmSupportError, a missing library)
        detail = " ".join(str(err).split())
        return f"the CUDA compilers are not installed ({type(err).__name__}: {detail})"
    if ptxas() is None:
        return "ptxas is not installed (pip install nvidia-cuda-nvcc)"
    return None


def _installed(name):
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def ptxas():
    """The path of ptxas: the nvidia-cuda-nvcc wheel's, else the one on PATH, else None."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility
        found = find_nvidia_binary_utility("ptxas")
    except ImportError:
        found = None
    return found or shutil.which("ptxas")


def parse_ptxas(text):
    """{function: {stack, spill_stores, spill_loads, registers, shared}} from ptxas -v output."""
    functions = {}
    properties = re.compile(r"Function properties for (\S+)\n(?:ptxas\s*\.)?\s*(\d+) bytes stack "
                            r"frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
    for match in properties.finditer(text):
        entry = {"stack": int(match[2]), "spill_stores": int(match[3]),
                 "spill_loads": int(match[4])}
        used = re.match(r"\nptxas info\s*: Used (\d+) registers(.*)", text[match.end():])
        if used:
            shared = re.search(r"(\d+) bytes smem", used[2])
            entry.update(registers=int(used[1]), shared=int(shared[1]) if shared else 0)
        functions[match[1]] = entry
    return functions


INSTRUCTION = re.compile(r"^\s*(?:@%p\d+\s+)?([a-z][\w.]*)", re.M)


def ptx_counts(ptx):
    """{fma, contractible, ftz}: instruction counts of one kernel's PTX."""
    ops = INSTRUCTION.findall(ptx)
    return {
        "fma": sum(op.startswith("fma.") for op in ops),
        "contractible": sum(bool(re.fullmatch(r"(add|sub|mul)\.f(32|64)", op)) for op in ops),
        "ftz": sum(".ftz" in op and ".approx" not in op for op in ops),
    }


def ptx_entries(ptx):
    """{entry name: its PTX} of a module's PTX (each .entry up to the next)."""
    starts = [(m.start(), m[1]) for m in re.finditer(r"\.entry\s+(\w+)\s*\(", ptx)]
    return {name: ptx[start:(starts[k + 1][0] if k + 1 < len(starts) else len(ptx))]
            for k, (start, name) in enumerate(starts)}


def row(backend, kernel, arch, resources, counts, threads):
    """One report row: ptxas's resources, the PTX counts and the occupancy at `threads`."""
    blocks = occupancy.resident_blocks(resources["registers"], resources["shared"], threads, arch)
    return {"backend": backend, "kernel": kernel, "arch": arch, **resources, "threads": threads,
            "blocks_per_sm": blocks, "occupancy": occupancy.occupancy(blocks, threads, arch),
            **counts}


def numba_rows(arch):
    """Rows of every numba_cuda specialisation for `arch`: NVVM to PTX, then ptxas -v."""
    from kernels.numba import gpu_kernels as nck
    cc = (int(arch[3]), int(arch[4:]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kernel, argtypes in nck.SPECIALISATIONS:
            ptx = nck.compile_ptx(kernel, argtypes, cc)
            path = os.path.join(tmp, f"{name}.ptx")
            with open(path, "w") as f:
                f.write(ptx)
            result = subprocess.run([ptxas(), "-v", f"-arch={arch}", path, "-o",
                                     os.path.join(tmp, f"{name}.cubin")],
                                    capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"compile_report: ptxas failed on numba_cuda {name} for "
                                   f"{arch}:\n{result.stderr}")
            (resources,) = parse_ptxas(result.stderr + result.stdout).values()
            # the KL sum runs one block of THREADS; every other kernel a grid of THREADS-blocks
            rows.append(row("numba_cuda", name, arch, resources, ptx_counts(ptx), nck.THREADS))
    return rows


def cuda_c_rows(arch):
    """Rows of every kernel of kernels.cuda_c.nvrtc's modules for `arch`: NVRTC's cubin build (its
    ptxas lines) and, for the PTX counts, the same build for the virtual architecture."""
    from kernels.cuda_c import nvrtc as cuda_c
    nvrtc = cuda_c.CudaBindingsNvrtc()
    rows = []
    for module in cuda_c.MODULES:
        _, log = cuda_c.build(module, arch, nvrtc)
        ptx, _ = cuda_c.build(module, arch.replace("sm_", "compute_"), nvrtc)
        entries = ptx_entries(ptx.decode())
        backend = "cupy" if module == "reparam" else "adam_cupy"
        for name, resources in sorted(parse_ptxas(log).items()):
            rows.append(row(backend, name, arch, resources, ptx_counts(entries[name]),
                            cuda_c.THREADS))
    return rows


def rows_for(arch):
    return numba_rows(arch) + cuda_c_rows(arch)


def toolchain():
    """Versions of the compilers and of the packages that carry them."""
    from numba.cuda.cudadrv import nvvm
    from kernels.cuda_c import nvrtc as cuda_c
    ptxas_version = subprocess.run([ptxas(), "--version"], capture_output=True,
                                   text=True).stdout.strip().splitlines()[-1]
    return {"packages": {name: metadata.version(name) for name in PACKAGES},
            "nvvm_ir": ".".join(map(str, nvvm.NVVM().get_ir_version()[:2])),
            "nvrtc": ".".join(map(str, cuda_c.CudaBindingsNvrtc().version())),
            "ptxas": ptxas_version, "nvrtc_options": list(cuda_c.OPTIONS)}


def markdown(report):
    lines = ["# GPU kernels compiled without a GPU: registers, spills, occupancy", "",
             "Written by `python benchmarks/compile_report.py` (checked by "
             "tests/test_gpu_compile.py). Toolchain: " + ", ".join(
                 f"{k} {v}" for k, v in report["toolchain"]["packages"].items())
             + f"; {report['toolchain']['ptxas']}.", "",
             "Occupancy: theoretical, blocks of `threads` resident on one SM (kernels.occupancy)."
             " fma / contractible / ftz: PTX instruction counts (see the script's docstring).", "",
             "| backend | kernel | arch | " + " | ".join(FIELDS) + " |",
             "|" + "---|" * (3 + len(FIELDS))]
    for r in report["kernels"]:
        values = [f"{r[f]:.1%}" if f == "occupancy" else str(r[f]) for f in FIELDS]
        lines.append(f"| {r['backend']} | {r['kernel']} | {r['arch']} | " + " | ".join(values)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_out_arguments(parser, "compile_report.{json,md}")
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    reason = missing_toolchain()
    if reason:
        print(f"compile_report: cannot compile here: {reason}; {INSTALL_HINT}", file=sys.stderr)
        return MISSING_TOOLCHAIN
    with ProcessPoolExecutor(max_workers=len(ARCHS)) as pool:  # one process per architecture
        rows = [r for arch_rows in pool.map(rows_for, ARCHS) for r in arch_rows]
    report = {"toolchain": toolchain(), "kernels": rows}
    os.makedirs(args.out, exist_ok=True)
    for suffix, text in (("json", json.dumps(report, indent=1) + "\n"), ("md", markdown(report))):
        path = os.path.join(args.out, f"compile_report.{suffix}")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    worst = max(rows, key=lambda r: r["registers"])
    print(f"compile_report: {len(rows)} kernels; most registers: {worst['backend']} "
          f"{worst['kernel']} {worst['arch']} {worst['registers']} ({worst['blocks_per_sm']} "
          f"blocks/SM, {worst['occupancy']:.1%}); wrote {shown(args.out)}/compile_report.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
