"""The machine a CPU benchmark ran on: the CPU, memory, NumPy's BLAS and PyTorch, for its report.

Library files are named relative to the site-packages folder that holds NumPy, not by the
machine's absolute path.
"""
import os
import platform

import numpy as np


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


def library_name(path):
    """A shared library's path relative to the site-packages folder holding NumPy (e.g.
    ``numpy.libs/libscipy_openblas64_-....so``), or its file name when it lies elsewhere."""
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    inside = os.path.commonpath([site_packages, os.path.abspath(path)]) == site_packages
    return os.path.relpath(path, site_packages) if inside else os.path.basename(path)


def openblas_runtime():
    """OpenBLAS's own report of its kernels and threads, read from the loaded library."""
    try:
        import threadpoolctl
        pools = threadpoolctl.threadpool_info()
        return {"threadpoolctl": [dict(pool, filepath=library_name(pool["filepath"]))
                                  if pool.get("filepath") else pool for pool in pools]}
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
            return {"library": library_name(path), "config": config().decode(),
                    "corename": corename().decode(), "threads": threads()}
    return {"library": library_name(paths[0]) if paths else None,
            "note": "OpenBLAS symbols not found"}


def software_info(torch):
    """Python, NumPy and its BLAS (build and runtime), and PyTorch when ``torch`` is given."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": {k: blas.get(k) for k in ("name", "version", "openblas configuration")},
            "numpy_blas_runtime": openblas_runtime(),
            "torch": torch.__version__ if torch else None}
    if torch:
        info["torch_threads"] = torch.get_num_threads()
        info["torch_config"] = torch.__config__.show()
    return info


def describe(device, software):
    """One line for a Markdown report: the CPU, Python, NumPy with its BLAS and PyTorch."""
    runtime = software["numpy_blas_runtime"]
    blas = (f"{software['numpy_blas']['name']} {software['numpy_blas']['version']}, "
            f"{runtime.get('corename', '?')} kernels, {runtime.get('threads', '?')} threads")
    line = (f"{device['model']}, {device['usable_cpus']} usable CPUs; Python "
            f"{software['python']}, NumPy {software['numpy']} ({blas})")
    if software["torch"]:
        line += f"; PyTorch {software['torch']} ({software['torch_threads']} threads)"
    return line
