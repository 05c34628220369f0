#!/usr/bin/env bash
# GPU readiness check: exercise ttabench's GPU path end to end on a machine with one NVIDIA GPU,
# in under 8 minutes, writing figures and logs into one folder.
#
#   benchmarks/device_check.sh [OUT_DIR]      # default: $OUT, else ./device-check
#
# Steps (each with its own time limit; a failed step is recorded and the next one runs):
#   env          GPU, driver, CUDA/cuDNN/NCCL versions (env.json, nvidia-smi.txt)
#   peak         GEMM peaks in fp32, bf16, fp16 (peak.json)
#   datapath     ttabench's data path alone on the GPU: gather, crop+flip, normalise (datapath.json)
#   fp32, bf16   ResNet-20 training runs on the GPU (results/.../summary.json)
#   compile-bf16 torch.compile default mode; compile-ro-bf16: reduce-overhead (CUDA graphs)
#   workers2     2 workers sharing the GPU (gloo: NCCL refuses two ranks on one GPU)
#   nccl-shared  --dist-backend nccl with 2 workers on 1 GPU must end in one clear error line
#   throughput   python -m benchmarks.throughput --device cuda (throughput.json, with % of peak)
#   figures      figures.json + figures.md gathered from all of the above
# Every step's output is in logs/STEP.log; steps.tsv has STEP<TAB>ok|failed|skipped<TAB>seconds.
#
# Python: $TTABENCH_PYTHON if set; else ./.venv if it has the dependencies; else the python3 on
# PATH if it has them (torch, numpy, rich, mlperf-logging); else `make install` (needs the
# package index). This checkout is imported as `ttabench` in every case.
#
# Without a GPU it says so in one line and runs its CPU-only parts, small (the GPU-only ones are
# recorded as skipped): that is what tests/test_device_check.py runs. DEVICE_CHECK_BUDGET_S
# (default 450 s with a GPU, 3600 s without) is the time after which the remaining steps are
# skipped; DEVICE_CHECK_TIMEOUT_SCALE (default 1 with a GPU, 5 without) multiplies every step's
# time limit (a shared CPU can be many times slower than a quiet one).
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-${OUT:-device-check}}
mkdir -p "$DEST/logs" || { echo "device_check: error: cannot create $DEST" >&2; exit 2; }
DEST=$(cd "$DEST" && pwd)
cd "$REPO" || exit 2
START=$SECONDS
: >"$DEST/steps.tsv"

has_deps() { "$1" -c "import torch, numpy, rich, mlperf_logging" >/dev/null 2>&1; }

if [ -n "${TTABENCH_PYTHON:-}" ]; then
    PY=$TTABENCH_PYTHON
elif [ -x .venv/bin/python ] && has_deps .venv/bin/python; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null && has_deps python3; then
    PY=python3
elif make install >"$DEST/logs/install.log" 2>&1; then
    PY=.venv/bin/python
else
    echo "device_check: error: no Python with torch and the project's dependencies, and make install failed (see $DEST/logs/install.log)" >&2
    exit 2
fi
# This checkout is the `ttabench` package (as setup.cfg's package_dir maps it), installed or not.
PKG=$(mktemp -d)
trap 'rm -rf "$PKG"' EXIT
ln -s "$REPO" "$PKG/ttabench"
export PYTHONPATH="$PKG:$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Compiled kernels are cached across the steps' processes (the throughput modes reuse the runs').
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$DEST/.inductor-cache}

# step NAME TIMEOUT_S COMMAND...: run it, log it, record ok/failed and its seconds.
step() {
    local name=$1 limit=$2 t0=$SECONDS status
    shift 2
    if [ $((SECONDS - START)) -ge "$BUDGET" ]; then
        printf '%s\tskipped\t0\n' "$name" >>"$DEST/steps.tsv"
        echo "  $name: skipped (past the ${BUDGET} s budget)"
        return
    fi
    # a step never runs past the budget: the whole check stays within it
    local left=$((BUDGET - (SECONDS - START))) lim=$((limit * SCALE))
    [ "$lim" -gt "$left" ] && lim=$left
    if timeout --kill-after=10 "$lim" "$@" >"$DEST/logs/$name.log" 2>&1; then status=ok; else status=failed; fi
    printf '%s\t%s\t%s\n' "$name" "$status" $((SECONDS - t0)) >>"$DEST/steps.tsv"
    echo "  $name: $status ($((SECONDS - t0)) s)"
}
skip() { printf '%s\tskipped\t0\n' "$1" >>"$DEST/steps.tsv"; echo "  $1: skipped ($2)"; }

# EXPECT_ERROR COMMAND...: the command must fail with exit 2 and a `ttabench: error:` line about
# nccl, no traceback (a script, not a function: `timeout` runs commands only).
EXPECT_ERROR='out=$("$@" 2>&1); rc=$?; printf "%s\n" "$out"
[ "$rc" -eq 2 ] && printf "%s\n" "$out" | grep -q "^ttabench: error: .*nccl" && ! printf "%s\n" "$out" | grep -q Traceback'

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    DEV=cuda
    BUDGET=${DEVICE_CHECK_BUDGET_S:-450}
    SCALE=${DEVICE_CHECK_TIMEOUT_SCALE:-1}
    echo "device_check: CUDA GPU found; full check into $DEST"
    TRAIN=(--max-epochs 20)  # 780 steps of 128 on the synthetic set
    PROBE=()
    DP_EPOCHS=20
    # the compiled modes reuse the compile steps' kernels (same graphs, Inductor's cache)
    BENCH=(--modes baseline,fp32-cl,bf16-cl,compile-bf16-cl,compile-ro-bf16-cl --epochs 10 --reps 1)
    nvidia-smi >"$DEST/nvidia-smi.txt" 2>&1 || true
else
    DEV=cpu
    BUDGET=${DEVICE_CHECK_BUDGET_S:-3600}
    SCALE=${DEVICE_CHECK_TIMEOUT_SCALE:-5}
    echo "device_check: no CUDA GPU visible (torch.cuda.is_available() is False): running the CPU-only parts, small"
    # a check of the wiring, not of the machine: 2 steps of 32 per run, 2 steps in the bench,
    # one thread per process (on a shared CPU a second one mostly waits, spinning, for a core)
    TRAIN=(--max-steps 2 --batch-size 32 --threads 1)
    PROBE=(--probe-n 256)
    DP_EPOCHS=1
    BENCH=(--modes fp32-cl --epochs 1 --reps 1 --max-steps 2 --threads 1)
fi
RUN=("$PY" -m ttabench run --device "$DEV" --synthetic --seed 0 --progress plain
    --results-dir "$DEST/results" --system "device-check-$DEV" --eval-every 1000epochs "${TRAIN[@]}")

step env 60 "$PY" -m benchmarks.device_steps env --device "$DEV" --out "$DEST"
step peak 120 "$PY" -m benchmarks.device_steps peak --device "$DEV" --out "$DEST" "${PROBE[@]}"
step datapath 120 "$PY" -m benchmarks.device_steps datapath --device "$DEV" --out "$DEST" \
    --synthetic --epochs "$DP_EPOCHS"
step fp32 180 "${RUN[@]}" --precision fp32
step bf16 180 "${RUN[@]}" --precision bf16
if [ "$DEV" = cuda ]; then
    step compile-bf16 300 "${RUN[@]}" --precision bf16 --compile default
    step compile-ro-bf16 300 "${RUN[@]}" --precision bf16 --compile reduce-overhead
else
    skip compile-bf16 "no GPU; compilation on this CPU takes minutes"
    skip compile-ro-bf16 "no GPU: no CUDA graphs"
fi
step workers2 240 "${RUN[@]}" --precision bf16 --workers 2
step nccl-shared 120 bash -c "$EXPECT_ERROR" expect-error "${RUN[@]}" --workers 2 --dist-backend nccl
step throughput 420 "$PY" -m benchmarks.throughput --device "$DEV" --synthetic --no-overhead \
    "${BENCH[@]}" "${PROBE[@]}" --json "$DEST/throughput.json"
"$PY" -m benchmarks.device_steps figures --out "$DEST" >"$DEST/logs/figures.log" 2>&1
rc=$?
cat "$DEST/figures.md" 2>/dev/null
echo "device_check: $(grep -c $'\tok\t' "$DEST/steps.tsv") ok, $(grep -c $'\tfailed\t' "$DEST/steps.tsv") failed, $(grep -c $'\tskipped\t' "$DEST/steps.tsv") skipped in $((SECONDS - START)) s; figures in $DEST/figures.md"
exit $rc
