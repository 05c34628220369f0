#!/usr/bin/env bash
# The runs behind results/algorithms/study.md: every reference algorithm x network x seed, ResNet-20
# on the CIFAR-10 subset with the closed recipe, target 45 %, thresholds 0.30:0.45:0.01 (those of
# the shipped RCPs), at most 15 epochs (an algorithm that misses the target is recorded as not
# reached), an evaluation every quarter epoch, one intra-op thread per worker. Global batch 128
# everywhere (the RCPs' and so their learning rate): 2 workers x 64, decentralized DEC_WORKERS
# (default 4) x 128/DEC_WORKERS. No per-algorithm or per-network tuning.
# Networks: emulated 1gbe, 100mbit, 20mbit (`--network`), and tbf-100mbit: real tbf shaping
# across `ttabench netlab` (one single-worker node per host namespace; root; one lab at a time).
#
# Run from the repository root; rerunning skips every finished run (status success or diverged),
# so it can be run in pieces, e.g. one seed or one algorithm at a time:
#   bash results/algorithms/make_study.sh                              # everything left to run
#   SEEDS=1 ALGORITHMS="allreduce topk" NETWORKS=20mbit bash results/algorithms/make_study.sh
#   JOBS=2 bash results/algorithms/make_study.sh                      # two emulated runs at a time
# then the table and figure: python -m benchmarks.algorithm_study results/algorithms/study
# Each run's own command is in its config.json; its output in $OUT/logs/.
set -u  # a run that fails, diverges or misses the target is recorded; the next one still runs
DATA=${DATA:-../shared/data/cifar10-subset/cifar-10-batches-py}
OUT=${OUT:-results/algorithms/study}
SEEDS=${SEEDS:-1 2 3}
ALGORITHMS=${ALGORITHMS:-allreduce fp16 powersgd local-sgd topk decentralized}
NETWORKS=${NETWORKS:-1gbe 100mbit 20mbit tbf-100mbit}
DEC_WORKERS=${DEC_WORKERS:-4}
TTABENCH=${TTABENCH:-ttabench}
have() {  # have ALGORITHM NETWORK SEED: a finished run of this seed is already there
  for f in "$OUT/$1/$2"/*/*/*/*/summary.json; do
    [ -f "$f" ] && grep -q "\"seed\": $3," "$f" && grep -Eq '"status": "(success|diverged)"' "$f" && return 0
  done
  return 1
}
run() {  # run ALGORITHM NETWORK SEED
  have "$1" "$2" "$3" && return 0
  local workers=2
  [ "$1" = decentralized ] && workers=$DEC_WORKERS
  local flags=(--benchmark resnet20 --data-dir "$DATA" --batch-size $((128 / workers)) --seed "$3"
    --algorithm "$1" --target 0.45 --max-epochs 15 --eval-every 0.25epoch
    --thresholds 0.30:0.45:0.01 --threads 1 --progress none --results-dir "$OUT/$1/$2")
  local log="$OUT/logs/$1-$2-seed$3.txt"
  mkdir -p "$OUT/logs"
  echo "$(date -u +%FT%TZ) $1 $2 seed $3 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  case "$2" in
    tbf-*)  # one lab on this machine at a time: the lock, then up, run, down
      (
        flock 9
        $TTABENCH netlab up --hosts "$workers" --rate "${2#tbf-}" >"$log" 2>&1 &&
          $TTABENCH netlab run -- "${flags[@]}" >>"$log" 2>&1
        $TTABENCH netlab down >>"$log" 2>&1
      ) 9>"$OUT/.netlab.lock" ;;
    *) $TTABENCH run --workers "$workers" --network "$2" "${flags[@]}" >"$log" 2>&1 ;;
  esac
  sed -i "s|$PWD/||g" "$log"  # a stack trace names this checkout's absolute path: the log keeps it relative
}
plan() {  # one "ALGORITHM NETWORK SEED" line per run: seed by seed, so a partial study is balanced
  for seed in $SEEDS; do for a in $ALGORITHMS; do for n in $NETWORKS; do echo "$a $n $seed"; done; done; done
}
mkdir -p "$OUT"
export DATA OUT DEC_WORKERS TTABENCH
export -f have run
plan | xargs -P "${JOBS:-1}" -L 1 bash -c 'run "$@"' _
