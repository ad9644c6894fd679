"""The CUDA C modules and how they are built: NVRTC with the options below, for one GPU
architecture, to a cubin that kernels.cuda_c.cupy_reparam and kernels.cuda_c.cupy_adam load
(cupy.RawModule(path=)).

    MODULES        reparam (reparam.cu + reparam_math.cuh), adam (adam.cu + adam_math.cuh)
    source(name)   the module's text with its headers inlined (what NVRTC compiles)
    build(...)     (cubin, NVRTC's log) for one arch, through an NVRTC binding
    cubin_path(...) the cubin cached on disk, built on first use

NOTE: compiled here, not by cupy.RawModule(code=...): CuPy appends -ftz=true after the caller's
options (cupy/cuda/compiler.py), and the last flag wins, so float32 subnormals would be flushed on
the GPU and kept on the CPU. OPTIONS state the semantics on purpose, the same as the CPU
backends' and the host build's: subnormals kept (--ftz=false), nothing fused that the source does
not fuse (--fmad=false; the math library's own FMAs stay), IEEE division and square root. The
compile report (benchmarks/compile_report.py) runs this very build with the real NVRTC, so the
registers and spills it states are those of the code the GPU runs; --ptxas-options=-v only adds
ptxas's resource lines to the log.

Bindings: CudaBindingsNvrtc (cuda-bindings' cuda.bindings.nvrtc, which numba-cuda installs; CI)
and CupyNvrtc (CuPy's own, on a GPU machine). This module imports neither until asked.
"""
import hashlib
import os
import re
import tempfile
from pathlib import Path

KERNELS = Path(__file__).resolve().parent
MODULES = {"reparam": "reparam.cu", "adam": "adam.cu"}
# NOTE: the block size of every launch of these modules: MG_THREADS in reparam.cu (the KL
# reduction's shared array), a multiple of the warp; cupy_reparam.py explains the choice.
THREADS = 256
_PASSES = ("forward", "forward_save_noise", "forward_kl", "forward_kl_save_noise", "backward",
           "backward_from_noise", "backward_kl", "backward_kl_from_noise")
# every __global__ function of each module
KERNEL_NAMES = {
    "reparam": [f"reparam_{p}_{s}" for s in ("f32", "f64") for p in _PASSES] + ["philox4x32_rows"],
    "adam": ["adam_update_f32", "adam_update_f64"],
}
OPTIONS = ("-std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true",
           "--ptxas-options=-v")
_INCLUDE = re.compile(r'^#include "([\w.]+)"[^\n]*$', re.M)


def source(name):
    """The text NVRTC compiles for module `name`: its .cu file with every #include "x" of a file
    of kernels/ replaced by that file's text, once each (NVRTC has no search path here, and an
    edit to a header must change the text that the cubin's cache key hashes)."""
    if name not in MODULES:
        raise ValueError(f"cuda_c.source: unknown module {name!r}; known: {', '.join(MODULES)}")
    seen = set()

    def inline(match):
        header = match[1]
        if not (KERNELS / header).is_file():
            raise FileNotFoundError(f"cuda_c.source: {MODULES[name]} includes {header!r}, "
                                    f"which is not in {KERNELS}")
        if header in seen:
            return ""
        seen.add(header)
        return _INCLUDE.sub(inline, (KERNELS / header).read_text())
    return _INCLUDE.sub(inline, (KERNELS / MODULES[name]).read_text())


class CudaBindingsNvrtc:
    """NVRTC through cuda-bindings (cuda.bindings.nvrtc)."""

    def __init__(self):
        from cuda.bindings import nvrtc
        self.nvrtc = nvrtc

    def _checked(self, result, what):
        status, *values = result
        if status != self.nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"cuda_c: NVRTC {what} failed: {status}")
        return values[0] if len(values) == 1 else values

    def version(self):
        return tuple(self._checked(self.nvrtc.nvrtcVersion(), "version"))

    def compile(self, text, filename, options):
        """(cubin bytes, log) of `text` (PTX for a compute_XX architecture), or a RuntimeError
        holding NVRTC's log."""
        nvrtc = self.nvrtc
        program = self._checked(nvrtc.nvrtcCreateProgram(text.encode(), filename.encode(), 0,
                                                         [], []), "createProgram")
        try:
            flags = [option.encode() for option in options]
            status, = nvrtc.nvrtcCompileProgram(program, len(flags), flags)
            size = self._checked(nvrtc.nvrtcGetProgramLogSize(program), "getProgramLogSize")
            log = bytearray(size)
            self._checked(nvrtc.nvrtcGetProgramLog(program, log), "getProgramLog")
            log = log.rstrip(b"\0").decode()
            if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
                raise RuntimeError(f"cuda_c: NVRTC could not compile {filename} with "
                                   f"{' '.join(options)}:\n{log}")
            kind = "PTX" if _virtual(options) else "CUBIN"
            size = self._checked(getattr(nvrtc, f"nvrtcGet{kind}Size")(program), "getSize")
            code = bytearray(size)
            self._checked(getattr(nvrtc, f"nvrtcGet{kind}")(program, code), f"get{kind}")
            return bytes(code).rstrip(b"\0") if kind == "PTX" else bytes(code), log
        finally:
            nvrtc.nvrtcDestroyProgram(program)


class CupyNvrtc:
    """NVRTC through CuPy's binding (cupy_backends.cuda.libs.nvrtc, CuPy 13 and 14)."""

    def __init__(self):
        from cupy_backends.cuda.libs import nvrtc
        self.nvrtc = nvrtc

    def version(self):
        return tuple(self.nvrtc.getVersion())

    def compile(self, text, filename, options):
        """(cubin bytes, log) of `text` (PTX for a compute_XX architecture), or a RuntimeError
        holding NVRTC's log."""
        nvrtc = self.nvrtc
        program = nvrtc.createProgram(text, filename, (), ())
        try:
            try:
                nvrtc.compileProgram(program, list(options))
            except nvrtc.NVRTCError as err:
                raise RuntimeError(f"cuda_c: NVRTC could not compile {filename} with "
                                   f"{' '.join(options)} ({err}):\n"
                                   f"{nvrtc.getProgramLog(program)}") from None
            code = nvrtc.getPTX(program) if _virtual(options) else nvrtc.getCUBIN(program)
            return code, nvrtc.getProgramLog(program)
        finally:
            nvrtc.destroyProgram(program)


def _virtual(options):
    """Whether the options ask for PTX (a compute_XX architecture) rather than a cubin."""
    return any(option.startswith("--gpu-architecture=compute_") for option in options)


def build(name, arch, nvrtc):
    """(cubin, log) of module `name` for `arch` (e.g. "sm_90") through the binding `nvrtc`; for a
    virtual architecture (e.g. "compute_90") the PTX instead, which the compile report reads."""
    if not re.fullmatch(r"(sm|compute)_\d+a?", arch):
        raise ValueError(f"cuda_c.build: arch {arch!r}; expected sm_<major><minor> (e.g. sm_90) "
                         "or compute_<major><minor>")
    return nvrtc.compile(source(name), MODULES[name], (*OPTIONS, f"--gpu-architecture={arch}"))


def cubin_path(name, arch, nvrtc):
    """The cubin of module `name` for `arch`, cached under $MINIGRAD_CACHE_DIR (else the temp
    folder) by a hash of its source, OPTIONS and NVRTC's version; built on first use."""
    key = hashlib.sha256(repr((source(name), OPTIONS, arch, nvrtc.version())).encode())
    cache = Path(os.environ.get("MINIGRAD_CACHE_DIR", tempfile.gettempdir())) / "minigrad-cuda-c"
    path = cache / f"{name}-{arch}-{key.hexdigest()[:16]}.cubin"
    if not path.exists():
        cubin, _ = build(name, arch, nvrtc)
        cache.mkdir(parents=True, exist_ok=True)
        # written under a name of our own, then renamed: no process reads half a file
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(cubin)
        os.replace(partial, path)
    return path
