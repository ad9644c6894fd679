#!/usr/bin/env bash
# Every GPU test and GPU benchmark in one call, for the rare machine with a GPU.
#
#   bash benchmarks/gpu_suite.sh          # from anywhere; runs in the repository root
#
# Expects CuPy, numba-cuda and PyTorch installed and no internet. Each step's output is teed to
# benchmarks/results/gpu_<step>_<stamp>.log; a failing step is recorded and the later steps still
# run (a GPU is rare: one failure should not cost the other figures). Exits 1 if any step failed.
#   1. nvidia-smi, the machine's description
#   2. the whole test suite on real CUDA (MINIGRAD_REAL_GPU=1: the conftest skips the simulator),
#      including tests/test_cuda_c.py's GPU tests and its sm_90 ptxas report
#   3. registers per thread and occupancy of every GPU kernel (benchmarks/kernel_report.py)
#   4. benchmarks/reparam.py --device gpu, and benchmarks/vae_gpu.py where it exists
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH=.
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
RESULTS=benchmarks/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"
failed=()

# step NAME COMMAND...: run COMMAND, tee its output to the step's log, record a failure
step() {
    local name=$1
    shift
    local log="$RESULTS/gpu_${name}_${STAMP}.log"
    echo "=== $name: $*" | tee "$log"
    if "$@" 2>&1 | tee -a "$log"; then
        echo "=== $name: ok" | tee -a "$log"
    else
        echo "=== $name: FAILED (exit ${PIPESTATUS[0]})" | tee -a "$log"
        failed+=("$name")
    fi
}

step nvidia_smi nvidia-smi
step nvidia_smi_query nvidia-smi \
    --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
    --format=csv
step pytest env MINIGRAD_REAL_GPU=1 "$PYTHON" -m pytest -q -ra tests/
step kernel_report "$PYTHON" benchmarks/kernel_report.py
step reparam_benchmark "$PYTHON" benchmarks/reparam.py --device gpu
if [[ -f benchmarks/vae_gpu.py ]]; then
    # batch 128 and 4096, 5 interleaved epochs each, the step profile, and the CUDA-graph replay
    step vae_benchmark "$PYTHON" benchmarks/vae_gpu.py --epochs 5 --batch-sizes 128,4096 \
        --cuda-graph
    step vae_benchmark_numba_cuda "$PYTHON" benchmarks/vae_gpu.py --epochs 1 --batch-sizes 128 \
        --kernel-backend numba_cuda --no-torch --out "$RESULTS/vae_gpu_numba_cuda"
fi

echo "logs and figures: $RESULTS (stamp $STAMP)"
if ((${#failed[@]})); then
    echo "failed steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
