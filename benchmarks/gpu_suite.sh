#!/usr/bin/env bash
# Every GPU check and GPU benchmark in one call of a lent GPU machine, within a time budget.
#
#   bash benchmarks/gpu_suite.sh OUT                    # on the GPU machine, from anywhere
#   bash benchmarks/gpu_suite.sh --budget 300 OUT       # total seconds (default 480: 8 minutes)
#   bash benchmarks/gpu_suite.sh --dry-run OUT          # the same plumbing on the CPU
#
# The machine (benchmarks/README.md, "A lent GPU") has CuPy, numba-cuda and PyTorch, no internet
# and the checkout only, and returns at most 8 files from one folder: so everything lands in OUT
# as exactly three files, written by benchmarks/gpu_suite.py at the end:
#   gpu_suite.json     every figure of every step, the device (name, driver, clocks), the steps
#   gpu_suite.md       the summary: each step's status and time, and the headline figures
#   gpu_logs.tar.gz    each step's log and the benchmarks' own JSON, Markdown and PNG files
# Steps run in value order, each under its own time limit (never past what the budget has left,
# less RESERVE for the summary); a step that fails or times out is recorded and the next one
# runs; once the budget is spent the remaining steps are skipped, and the summary says so.
#   1. device       nvidia-smi: name, driver, clocks, memory, power limit
#   2. kernel_tests the kernel suites on the real GPU (MINIGRAD_REAL_GPU=1)
#   3. kernel_report registers and occupancy of every GPU kernel, from the driver
#   4. reparam      benchmarks/reparam.py --device gpu: numba_cuda, cupy, PyTorch eager and
#                   torch.compile against the device's copy bandwidth
#   5. vae          benchmarks/vae_gpu.py at batch 128 and 4096, with the CUDA-graph replay
#   6. rest         the rest of the test suite on real CUDA
# --dry-run runs each step's CPU stand-in (Numba's CUDA simulator, tiny sizes): what CI tests.
# Exits 1 when a step failed or timed out, else 0.
set -uo pipefail

budget=480
mode=gpu
usage="usage: bash benchmarks/gpu_suite.sh [--budget SECONDS] [--dry-run] OUT"
while (($#)); do
    case $1 in
        --budget) budget=${2:?$usage}; shift 2 ;;
        --dry-run) mode=dry-run; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "gpu_suite.sh: unknown option $1; $usage" >&2; exit 2 ;;
        *) break ;;
    esac
done
if (($# != 1)); then
    echo "gpu_suite.sh: expected one output folder; $usage" >&2
    exit 2
fi
if ! [[ $budget =~ ^[0-9]+$ ]]; then
    echo "gpu_suite.sh: --budget must be a whole number of seconds, got '$budget'" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH=. PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/logs" "$work/results"
RESERVE=15  # seconds kept for gpu_suite.py's summary and archive
start=$SECONDS
failed=0

# step NAME LIMIT COMMAND...: run COMMAND under min(LIMIT, what the budget has left), its output
# to logs/NAME.log; one line per step in steps.tsv (name, status, exit, seconds, limit)
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - RESERVE - (SECONDS - start)))
    if ((left < 10)); then
        printf '%s\tskipped\t\t0\t%s\n' "$name" "$limit" >>"$work/steps.tsv"
        echo "=== $name: skipped, the budget of ${budget} s is spent"
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (at most ${limit} s): $*"
    local began=$SECONDS code
    timeout --kill-after=10 "$limit" "$@" >"$work/logs/$name.log" 2>&1
    code=$?
    local status=ok
    if ((code == 124 || code == 137)); then
        status=timed_out
    elif ((code != 0)); then
        status=failed
    fi
    [[ $status == ok ]] || failed=1
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$code" "$((SECONDS - began))" "$limit" \
        >>"$work/steps.tsv"
    echo "=== $name: $status (exit $code, $((SECONDS - began)) s)"
    tail -n 3 "$work/logs/$name.log"
}

results=$work/results
if [[ $mode == gpu ]]; then
    step device 20 nvidia-smi --format=csv \
        --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,compute_cap
    cp "$work/logs/device.log" "$work/device.csv" 2>/dev/null
    step kernel_tests 120 env MINIGRAD_REAL_GPU=1 "$PYTHON" -m pytest -q -ra -p no:cacheprovider \
        tests/test_kernels.py tests/test_cuda_c.py tests/test_gpu_launch.py
    step kernel_report 60 "$PYTHON" benchmarks/kernel_report.py --out "$results"
    step reparam 150 "$PYTHON" benchmarks/reparam.py --device gpu --min-log2 16 --max-log2 28 \
        --step 4 --repeats 3 --out "$results"
    step vae 150 "$PYTHON" benchmarks/vae_gpu.py --epochs 2 --batch-sizes 128,4096 \
        --cuda-graph --out "$results"
    step rest 600 env MINIGRAD_REAL_GPU=1 "$PYTHON" -m pytest -q -ra -p no:cacheprovider tests/ \
        --ignore=tests/test_kernels.py --ignore=tests/test_cuda_c.py \
        --ignore=tests/test_gpu_launch.py
else
    step device 20 "$PYTHON" -c "import platform; print('name,driver_version'); \
print(f'{platform.processor() or platform.machine()} (dry run),none')"
    cp "$work/logs/device.log" "$work/device.csv" 2>/dev/null
    step kernel_tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu_launch.py \
        -k "not kernel_report"
    step kernel_report 60 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu_launch.py \
        -k kernel_report
    step reparam 150 "$PYTHON" benchmarks/reparam.py --device cpu --min-log2 10 --max-log2 12 \
        --repeats 1 --pause 0 --no-torch --out "$results"
    step vae 150 "$PYTHON" benchmarks/vae_cpu.py --epochs 1 --train-subset 256 --no-torch \
        --pause 0 --out "$results"
    step rest 600 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_philox.py
fi

"$PYTHON" benchmarks/gpu_suite.py collect "$work" "$out" --mode "$mode" --budget "$budget" \
    --seconds $((SECONDS - start)) || exit 1
exit $failed
