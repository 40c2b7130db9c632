#!/usr/bin/env bash
# The paper's central claim at a scale a CPU can run: patch-level training (K = 4 on a fraction λ = 2/3 of the
# data, then token level on the rest) ends as good as token-level training on the same data, for about half the
# compute (paper §3.2, Table 1). Four runs per seed (every step reads the same number of tokens):
#   patch       λ = 2/3, K = 4, STEPS steps   (compute ≈ (λ/K + 1 − λ) · STEPS ≈ STEPS / 2 token-level steps)
#   token       λ = 0, STEPS steps            (the same data, twice the compute)
#   token-half  λ = 0, STEPS / 2 steps        (the same compute as patch, half the data)
#   token-third λ = 0, STEPS / 3 steps        (patch's token stage alone, from scratch: what the patch stage adds)
#   patch-mixup λ = 2/3, K = 4, --patch-mode mixup (paper App. C's baseline; only when RUNS names it)
#   patch-inproj / patch-outproj / patch-bothproj   λ = 2/3, K = 4 with paper §3.7's projections (Table 5; ditto)
#   patch-short λ = 2/3, K = 4, --short-patch-context (§3.2's context ablation; ditto)
# Each final checkpoint is then evaluated on the whole validation split with `eval` (non-overlapping blocks) and, on
# a byte-tokenized dataset with python3 present, with `eval --choices` on two 4-way completion tasks built from the
# held-out sentences by benchmarks/cloze.py ("order": the true ending against its words shuffled; "ending": against
# other sentences' endings; chance 25 %).
#
#   bash benchmarks/quality.sh                        # tiny preset, 4000 steps, seeds 1234 and 7 (~20 min, 2 cores)
#   PRESET=small STEPS=4000 SEEDS=1234 bash benchmarks/quality.sh
#   JAR=path/to/patchcore.jar OUT=dir EXTRA="--backend cuda" bash benchmarks/quality.sh
#   RUNS="patch patch-mixup" bash benchmarks/quality.sh   # a subset, or the mixup baseline beside patch
# Prints a Markdown table; the runs stay in $OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAR=${JAR:-$ROOT/target/patchcore.jar}
PRESET=${PRESET:-tiny}
STEPS=${STEPS:-4000}
SEEDS=${SEEDS:-"1234 7"}
OUT=${OUT:-$ROOT/runs/quality-$PRESET-$STEPS}
EXTRA=${EXTRA:-}
RUNS=${RUNS:-"patch token token-half token-third"}
[[ -f "$JAR" ]] || { echo "no $JAR: build it first (mvn -q -DskipTests package)" >&2; exit 2; }
mkdir -p "$OUT"

# DATA_DIR: a prepared dataset; default the bundled corpus (prepared by the first train into the cache folder)
EVAL_DATA=${DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/patchcore/brown-byte}
run() { # run NAME SEED STEPS LAMBDA [TRAIN_ARGS...]
  local dir="$OUT/$1-s$2"
  if [[ ! -f "$dir/done" ]]; then
    rm -rf "$dir"
    local t0=$(date +%s)
    "$JAVA" -jar "$JAR" train --preset "$PRESET" --steps "$3" --lambda "$4" --seed "$2" --out "$dir" \
        ${DATA_DIR:+--data "$DATA_DIR"} --log-every 200 $EXTRA "${@:5}" > "$dir.log" 2>&1
    echo $(( $(date +%s) - t0 )) > "$dir/done"
  fi
  local loss acc=() task
  loss=$("$JAVA" -jar "$JAR" eval --checkpoint "$dir" --data "$EVAL_DATA" --split val $EXTRA 2>&1 | grep -o '^loss [0-9.]*' | cut -d' ' -f2)
  for task in order ending; do
    # built once, after the first train has prepared the bundled corpus; not for BPE datasets (cloze.py says why)
    if [[ ! -f "$OUT/$task.jsonl" && ! -f "$OUT/$task.none" ]]; then
      python3 "$ROOT/benchmarks/cloze.py" "$EVAL_DATA" "$OUT/$task.jsonl" 1000 1 "$task" > "$OUT/$task.none" 2>&1 \
        && rm "$OUT/$task.none" || rm -f "$OUT/$task.jsonl"
    fi
    if [[ -f "$OUT/$task.jsonl" ]]; then
      acc+=("$("$JAVA" -jar "$JAR" eval --checkpoint "$dir" --choices "$OUT/$task.jsonl" $EXTRA 2>&1 | grep -o '^acc [0-9.]*' | cut -d' ' -f2)")
    else
      acc+=("-")
    fi
  done
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "${loss:-?}" "${acc[0]:-?}" "${acc[1]:-?}" "$(cat "$dir/done")"
}

echo "quality comparison: preset $PRESET, $STEPS steps, seeds $SEEDS, $(date -u +%F), $(nproc) cores"
echo
echo "| run | seed | steps | λ | val loss (nats/token, whole split) | order acc | ending acc | wall s |"
echo "|---|---|---|---|---|---|---|---|"
for s in $SEEDS; do
  for r in $RUNS; do
    case $r in
      patch)       run patch "$s" "$STEPS" 0.6667 ;;
      token)       run token "$s" "$STEPS" 0 ;;
      token-half)  run token-half "$s" $(( STEPS / 2 )) 0 ;;
      token-third) run token-third "$s" $(( STEPS / 3 )) 0 ;;
      patch-mixup) run patch-mixup "$s" "$STEPS" 0.6667 --patch-mode mixup ;;
      patch-inproj) run patch-inproj "$s" "$STEPS" 0.6667 --input-proj ;;
      patch-outproj) run patch-outproj "$s" "$STEPS" 0.6667 --output-proj ;;
      patch-bothproj) run patch-bothproj "$s" "$STEPS" 0.6667 --input-proj --output-proj ;;
      patch-short) run patch-short "$s" "$STEPS" 0.6667 --short-patch-context ;;
      *) echo "unknown run '$r' in RUNS (patch token token-half token-third patch-mixup patch-inproj patch-outproj patch-bothproj patch-short)" >&2; exit 2 ;;
    esac
  done
done
