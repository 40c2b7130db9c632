#!/usr/bin/env bash
# Recorded as run: it sat in tools/device/ (ROOT below is two folders up from there); copy it back there to rerun.
# One-off (run 14): quick selftests of the new variants (a failing one is skipped afterwards), the full selftest,
# bench kernels, bench speed at 370m (D = 64) with the default forward and variant 7, at 1.3b (D = 128) with the new
# defaults and with the previous ones (flashfwd 4, flashbwd 2).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-/tmp/r14}; mkdir -p "$OUT"
W=$(mktemp -d); tar -C "$W" -xzf "$ROOT/.device/patchcore-device.tgz"; export XDG_CACHE_HOME="$W/cache"
J=("$W/runtime/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED)
P="$W/patchcore.jar"
step() { local n=$1 l=$2; shift 2; local t0=$(date +%s)
  timeout --kill-after=5 "$l" "$@" > "$OUT/$n.log" 2>&1; local rc=$?
  echo "$n rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$OUT/steps.log"; return $rc; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
SKIP=""
for fv in "flashfwd v7" "rmsnormbwd v3" "rmsnormbwd v4"; do
  fam=${fv% *}; v=${fv#* v}
  step "quick-$fam-v$v" 40 "${J[@]}" -jar "$P" selftest --only "[$fv]" || SKIP="$SKIP,$fam:$v"
done
SK=(); [[ -n $SKIP ]] && SK=("-Dpatchcore.variants.skip=${SKIP#,}"); echo "skipped variants: ${SKIP:-none}"
step selftest 120 "${J[@]}" "${SK[@]}" -jar "$P" selftest
step kernels 120 "${J[@]}" "${SK[@]}" -jar "$P" bench kernels --backend cuda --json "$OUT/kernels.json" --runs 10
S=(bench speed --backend cuda --batch 4 --accum 8 --warmup 1 --steps 3)
step speed370 60 "${J[@]}" -jar "$P" "${S[@]}" --preset 370m --json "$OUT/speed370.json"
[[ $SKIP != *flashfwd:7* ]] && step speed370-fwd7 60 "${J[@]}" -Dpatchcore.flashfwd.variant=7 -jar "$P" "${S[@]}" --preset 370m
step speed13b 100 "${J[@]}" -jar "$P" "${S[@]}" --preset 1.3b --json "$OUT/speed13b.json"
step speed13b-old 100 "${J[@]}" -Dpatchcore.flashfwd.variant=4 -Dpatchcore.flashbwd.variant=2 -jar "$P" "${S[@]}" --preset 1.3b
echo "==== summary"
grep -hE '^selftest:|FAIL' "$OUT"/quick-*.log "$OUT/selftest.log" | head -30
grep -E '^\| (attention flash|rmsNorm backward|addRmsNorm|ceiling)' "$OUT/kernels.log" | sed '/kernel variants under evaluation/,$d' | head -60
sed -n '/kernel variants under evaluation/,$p' "$OUT/kernels.log" | grep -E '^\| (attention|rmsNorm backward)' | head -40
for f in speed370 speed370-fwd7 speed13b speed13b-old; do [[ -f $OUT/$f.log ]] && { echo "--- $f"; grep -E '^\|' "$OUT/$f.log"; }; done
