#!/usr/bin/env bash
# The real runs behind results/rcps/*.json and the seed study (results/README.md).
# Run from the repository root; DATA is the CIFAR-10 subset in the official format.
# Batch 128 and 256 alternate for seeds 1..10 (so both reference sets grow together),
# then batch 128 continues with seeds 11..20 for the 20-seed study. One intra-op thread:
# on a shared, oversubscribed machine two OpenMP threads spend most of their time waiting.
set -u  # a run that diverges or misses the target is recorded; the next one still runs
DATA=${DATA:-../shared/data/cifar10-subset/cifar-10-batches-py}
OUT=${OUT:-results/rcp-runs}
have() {  # have BATCH SEED: a finished run of this seed is already there (the script can be rerun)
  for f in "$OUT/bs$1"/*/*/*/*/summary.json; do
    [ -f "$f" ] && grep -q "\"seed\": $2," "$f" && grep -q '"status": "success"' "$f" && return 0
  done
  return 1
}
run() {  # run BATCH SEED MAX_EPOCHS
  have "$1" "$2" && return 0
  ttabench run --benchmark resnet20 --data-dir "$DATA" --batch-size "$1" --seed "$2" \
    --target 0.45 --max-epochs "$3" --eval-every 0.25epoch --thresholds 0.30:0.45:0.01 \
    --threads 1 --progress none --results-dir "$OUT/bs$1"
}
plan() {  # one "BATCH SEED MAX_EPOCHS" line per run, in the order above
  for seed in $(seq 1 10); do echo "128 $seed 15"; echo "256 $seed 20"; done
  for seed in $(seq 11 20); do echo "128 $seed 15"; done
}
# JOBS=2 runs two at a time (one thread each, one core each on a 2-core machine).
export DATA OUT
export -f have run
plan | xargs -P "${JOBS:-1}" -L 1 bash -c 'run "$@"' _
