"""How many thread blocks of a compiled kernel an SM holds at once, and the grid a launch gets.

    resident_blocks(registers, shared_bytes, threads, arch)   theoretical blocks per SM
    grid_blocks(steps, threads, resident)                     blocks of a grid-stride launch

resident_blocks is CUDA's occupancy calculation (the CUDA Occupancy Calculator's formulas, as
cudaOccupancyMaxActiveBlocksPerMultiprocessor computes them): registers are allocated per warp in
units of 256 (a thread's count times 32, rounded up), shared memory per block in units of 128
bytes plus 1 KiB the runtime reserves, and an SM holds at most MAX_BLOCKS blocks and its maximum
of threads. The compile report (benchmarks/compile_report.py) states it for every kernel; on a
GPU the backends ask the driver, whose answer this reproduces, and size their grids with
grid_blocks. Both GPU backends import this module; it needs no GPU.
"""
import math

WARP = 32
# per SM: 32-bit registers, threads, blocks, shared memory (bytes, the largest carveout)
SM_LIMITS = {
    "sm_80": {"registers": 65536, "threads": 2048, "blocks": 32, "shared": 164 * 1024},
    "sm_90": {"registers": 65536, "threads": 2048, "blocks": 32, "shared": 228 * 1024},
}
REGISTER_UNIT = 256       # registers are allocated per warp in units of this many
SHARED_UNIT = 128         # bytes
SHARED_RESERVED = 1024    # bytes per block the CUDA runtime keeps (compute capability 8.0 on)
MAX_REGISTERS = 255       # per thread


def resident_blocks(registers, shared_bytes, threads, arch):
    """Blocks of ``threads`` threads of a kernel using ``registers`` per thread and
    ``shared_bytes`` of shared memory per block that one SM of ``arch`` holds at once (0 when not
    even one fits)."""
    if arch not in SM_LIMITS:
        raise ValueError(f"resident_blocks: unknown arch {arch!r}; known: "
                         f"{', '.join(SM_LIMITS)}")
    if not 0 <= registers <= MAX_REGISTERS:
        raise ValueError(f"resident_blocks: {registers} registers per thread; at most "
                         f"{MAX_REGISTERS}")
    if threads <= 0 or threads % WARP:
        raise ValueError(f"resident_blocks: {threads} threads per block; expected a positive "
                         f"multiple of {WARP}")
    limits = SM_LIMITS[arch]
    warps = threads // WARP
    per_warp = math.ceil(registers * WARP / REGISTER_UNIT) * REGISTER_UNIT
    by_registers = (limits["registers"] // per_warp) // warps if per_warp else limits["blocks"]
    per_block = math.ceil((shared_bytes + SHARED_RESERVED) / SHARED_UNIT) * SHARED_UNIT
    return min(by_registers, limits["threads"] // threads, limits["blocks"],
               limits["shared"] // per_block)


def occupancy(blocks, threads, arch):
    """The fraction of an SM's threads that ``blocks`` resident blocks of ``threads`` keep."""
    return blocks * threads / SM_LIMITS[arch]["threads"]


def grid_blocks(steps, threads, resident):
    """Blocks for a grid-stride loop of ``steps`` steps: one step per thread while that needs no
    more than ``resident`` blocks (what all SMs hold at once), else ``resident`` blocks that loop,
    since a second wave of blocks would only repeat their setup. At least 1."""
    if resident < 1:
        raise ValueError(f"grid_blocks: {resident} resident blocks; the kernel fits no SM "
                         "(too many registers or too much shared memory per block)")
    return max(1, min(-(-steps // threads), resident))
