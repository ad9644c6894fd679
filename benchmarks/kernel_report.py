"""Registers per thread and occupancy of the GPU kernels, read from the loaded binaries.

    python benchmarks/kernel_report.py     # on a GPU machine; benchmarks/gpu_suite.sh runs it

For each kernel of kernels/reparam.cu (compiled by NVRTC through kernels.cupy_raw): the driver's
function attributes (registers, local and shared memory, max threads per block) and the blocks of
kernels.cupy_raw.THREADS threads an SM holds at once (cuOccupancyMaxActiveBlocksPerMultiprocessor),
as occupancy = resident threads / the SM's maximum. For the numba-cuda kernels of
kernels.numba_cuda, where that backend imports: registers per thread of every compiled
specialisation (Dispatcher.get_regs_per_thread), after one small call of each pass compiles them.

Prints a table and writes benchmarks/results/kernel_report_<gpu>.json. Without CuPy or a GPU it
says why and exits with status 2. The static counterpart, ptxas's sm_90 report, is written by
tests/test_cuda_c.py to benchmarks/results/ptxas_sm90.txt.
"""
import json
import os
import re
import sys

import numpy as np

# NOTE: run as a script, sys.path[0] is benchmarks/; the packages live one folder up. First in
# the path even when it is already there, so that `benchmarks` is this script's own folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import RESULTS, shown, utc_now  # noqa: E402


def device_summary(cupy):
    """Name, compute capability and the per-SM limits of the current device."""
    device = cupy.cuda.Device()
    properties = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = properties["name"]
    attributes = device.attributes
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{properties['major']}.{properties['minor']}",
        "sm_count": attributes["MultiProcessorCount"],
        "max_threads_per_sm": attributes["MaxThreadsPerMultiProcessor"],
        "registers_per_sm": attributes["MaxRegistersPerMultiprocessor"],
        "shared_bytes_per_sm": attributes["MaxSharedMemoryPerMultiprocessor"],
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cupy": cupy.__version__,
    }


def cupy_kernels(cupy, cupy_raw, max_threads_per_sm):
    """One row per kernel of reparam.cu: attributes and occupancy at cupy_raw.THREADS threads."""
    rows = []
    for name in cupy_raw.kernel_names():
        kernel = cupy_raw.kernel(name)
        attributes = kernel.attributes
        blocks = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
            kernel.kernel.ptr, cupy_raw.THREADS, 0)
        rows.append({
            "kernel": name,
            "registers": attributes["num_regs"],
            "local_bytes": attributes["local_size_bytes"],
            "shared_bytes": attributes["shared_size_bytes"],
            "max_threads_per_block": attributes["max_threads_per_block"],
            "binary_version": attributes["binary_version"],
            "threads_per_block": cupy_raw.THREADS,
            "blocks_per_sm": blocks,
            "occupancy": blocks * cupy_raw.THREADS / max_threads_per_sm,
        })
    return rows


def numba_kernels(cupy):
    """(rows, note): registers of each compiled numba-cuda kernel, or why there are none."""
    try:
        import kernels.numba_cuda as numba_cuda
    except ImportError as err:
        return [], f"kernels.numba_cuda is unavailable: {err}"
    # compile every pass once on small inputs; the backend may take CuPy or NumPy arrays
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(1000).astype(np.float32) for _ in range(3)]
    errors = []
    for wrap in (cupy.asarray, np.asarray):
        grad_z, mu, logvar = (wrap(a) for a in host)
        try:
            numba_cuda.forward(mu, logvar, 1, 0)
            numba_cuda.forward_kl(mu, logvar, 1, 0)
            numba_cuda.backward(grad_z, logvar, 1, 0)
            numba_cuda.backward_kl(grad_z, mu, logvar, 1, 0, 0.5)
            break
        except (TypeError, ValueError) as err:  # the other array kind may be the accepted one
            errors.append(f"{wrap.__module__}: {err}")
    rows = []
    for attribute, value in sorted(vars(numba_cuda).items()):
        if not hasattr(value, "get_regs_per_thread"):
            continue
        registers = value.get_regs_per_thread()
        if not isinstance(registers, dict):  # a specialised kernel has one signature
            registers = {"(specialised)": registers}
        for signature, count in registers.items():
            rows.append({"kernel": attribute, "signature": str(signature), "registers": count})
    note = "" if rows else "no compiled numba-cuda kernels found; " + "; ".join(errors)
    return rows, note


def main():
    try:
        import kernels.cupy_raw as cupy_raw  # first: its ImportError says what is missing
        import cupy
    except ImportError as err:
        print(f"kernel_report: {err}", file=sys.stderr)
        return 2
    device = device_summary(cupy)
    report = {
        "date": utc_now(),
        "device": device,
        "cupy_raw": cupy_kernels(cupy, cupy_raw, device["max_threads_per_sm"]),
    }
    report["numba_cuda"], report["numba_cuda_note"] = numba_kernels(cupy)

    print(f"{device['name']} (sm_{device['compute_capability'].replace('.', '')}, "
          f"{device['sm_count']} SMs, {device['max_threads_per_sm']} threads per SM)")
    print(f"{'cupy_raw kernel':36s} {'registers':>9s} {'local B':>7s} {'shared B':>8s} "
          f"{'blocks/SM':>9s} {'occupancy':>9s}")
    for row in report["cupy_raw"]:
        print(f"{row['kernel']:36s} {row['registers']:9d} {row['local_bytes']:7d} "
              f"{row['shared_bytes']:8d} {row['blocks_per_sm']:9d} {row['occupancy']:9.1%}")
    for row in report["numba_cuda"]:
        print(f"numba_cuda.{row['kernel']} {row['signature']}: {row['registers']} registers")
    if report["numba_cuda_note"]:
        print(report["numba_cuda_note"])

    slug = re.sub(r"[^a-z0-9]+", "_", device["name"].lower()).strip("_")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"kernel_report_{slug}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
