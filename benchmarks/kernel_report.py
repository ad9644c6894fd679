"""Registers per thread and occupancy of the GPU kernels, read from the loaded binaries.

    python benchmarks/kernel_report.py     # on a GPU machine; benchmarks/gpu_suite.sh runs it

For each kernel of kernels.cuda_c.nvrtc's modules (reparam.cu for the cupy backend, adam.cu),
as kernels.cuda_c.cupy_reparam loads them: the driver's function attributes (registers, local and
shared memory, max threads per block) and the blocks of THREADS threads an SM holds at once
(cuOccupancyMaxActiveBlocksPerMultiprocessor), as occupancy = resident threads / the SM's maximum.
For numba_cuda: every specialisation the backend launches (kernels.numba.gpu_kernels
.SPECIALISATIONS; kernels only: numba-cuda's device functions have no register count), compiled as
the backend compiles it, with the same attributes from the compiled kernel.

Prints a table and writes kernel_report_<gpu>.json into
runs/benchmarks/ (or --out DIR; --update-results: benchmarks/results/, the committed ones). Without CuPy
or a GPU it says why and exits with status 2. The static counterpart, every kernel compiled for
sm_80 and sm_90 without a GPU, is benchmarks/compile_report.py's.
"""
import argparse
import json
import os
import re
import sys

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import add_out_arguments, gpu_name, out_folder, shown, utc_now  # noqa: E402


def device_summary(cupy):
    """Name, compute capability and the per-SM limits of the current device."""
    device = cupy.cuda.Device()
    properties = cupy.cuda.runtime.getDeviceProperties(device.id)
    attributes = device.attributes
    return {
        "name": gpu_name(properties),
        "compute_capability": f"{properties['major']}.{properties['minor']}",
        "sm_count": attributes["MultiProcessorCount"],
        "max_threads_per_sm": attributes["MaxThreadsPerMultiProcessor"],
        "registers_per_sm": attributes["MaxRegistersPerMultiprocessor"],
        "shared_bytes_per_sm": attributes["MaxSharedMemoryPerMultiprocessor"],
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cupy": cupy.__version__,
    }


def cupy_kernels(cupy, cupy_raw, cuda_c, max_threads_per_sm):
    """One row per kernel of kernels.cuda_c.nvrtc's modules: attributes and occupancy at THREADS."""
    rows = []
    for module, names in cuda_c.KERNEL_NAMES.items():
        for name in names:
            kernel = cupy_raw.kernel(name, module)
            attributes = kernel.attributes
            blocks = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                kernel.kernel.ptr, cuda_c.THREADS, 0)
            rows.append({
                "module": module, "kernel": name, "registers": attributes["num_regs"],
                "local_bytes": attributes["local_size_bytes"],
                "shared_bytes": attributes["shared_size_bytes"],
                "max_threads_per_block": attributes["max_threads_per_block"],
                "binary_version": attributes["binary_version"],
                "threads_per_block": cuda_c.THREADS, "blocks_per_sm": blocks,
                "occupancy": blocks * cuda_c.THREADS / max_threads_per_sm})
    return rows


def compile_numba_kernel(kernel, argtypes):
    """numba_cuda's compiled kernel for these argument types, as the backend compiles it."""
    from kernels.numba.patches import no_contraction
    with no_contraction():
        return kernel.compile(argtypes)


def numba_kernels(specialisations, compile_kernel, threads, sm_count, max_threads_per_sm):
    """One row per specialisation (name, kernel, argument types): the compiled kernel's registers,
    local and shared memory, and blocks of `threads` per SM (its resident blocks on the whole
    device, from the driver, over the SM count)."""
    rows = []
    for name, kernel, argtypes in specialisations:
        compiled = compile_kernel(kernel, argtypes)
        blocks = compiled.max_cooperative_grid_blocks(threads) // sm_count
        rows.append({"kernel": name, "registers": compiled.regs_per_thread,
                     "local_bytes": compiled.local_mem_per_thread,
                     "shared_bytes": compiled.shared_mem_per_block, "threads_per_block": threads,
                     "blocks_per_sm": blocks, "occupancy": blocks * threads / max_threads_per_sm})
    return rows


def numba_rows(device):
    """(rows, note) of kernels.numba.gpu, or no rows and why."""
    try:
        import kernels.numba.gpu  # noqa: F401  (its ImportError says what is missing)
        from kernels.numba import gpu_kernels as numba_cuda_kernels
    except ImportError as err:
        return [], f"kernels.numba.gpu is unavailable: {err}"
    return numba_kernels(numba_cuda_kernels.SPECIALISATIONS, compile_numba_kernel,
                         numba_cuda_kernels.THREADS, device["sm_count"],
                         device["max_threads_per_sm"]), ""


def print_rows(title, rows):
    print(f"{title:36s} {'registers':>9s} {'local B':>7s} {'shared B':>8s} {'blocks/SM':>9s} "
          f"{'occupancy':>9s}")
    for row in rows:
        print(f"{row['kernel']:36s} {row['registers']:9d} {row['local_bytes']:7d} "
              f"{row['shared_bytes']:8d} {row['blocks_per_sm']:9d} {row['occupancy']:9.1%}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_out_arguments(parser, "kernel_report_<gpu>.json")
    args = parser.parse_args(argv)
    args.out = out_folder(args, parser)
    try:
        # first: its ImportError says what is missing
        import kernels.cuda_c.cupy_reparam as cupy_raw
        import cupy
        from kernels.cuda_c import nvrtc as cuda_c
    except ImportError as err:
        print(f"kernel_report: {err}", file=sys.stderr)
        return 2
    device = device_summary(cupy)
    report = {"date": utc_now(), "device": device,
              "cuda_c": cupy_kernels(cupy, cupy_raw, cuda_c, device["max_threads_per_sm"])}
    report["numba_cuda"], report["numba_cuda_note"] = numba_rows(device)

    print(f"{device['name']} (sm_{device['compute_capability'].replace('.', '')}, "
          f"{device['sm_count']} SMs, {device['max_threads_per_sm']} threads per SM)")
    print_rows("CUDA C kernel (cupy, Adam)", report["cuda_c"])
    print_rows("numba_cuda kernel", report["numba_cuda"])
    if report["numba_cuda_note"]:
        print(report["numba_cuda_note"])

    slug = re.sub(r"[^a-z0-9]+", "_", device["name"].lower()).strip("_")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"kernel_report_{slug}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
