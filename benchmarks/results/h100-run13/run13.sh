#!/usr/bin/env bash
# Recorded as run: it sat in tools/device/ (ROOT below is two folders up from there); copy it back there to rerun.
# One-off (run 13): ncu on four kernels, then bench speed with the default forward and with flashfwd v6 at D = 64.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-/tmp/r13}; mkdir -p "$OUT"
W=$(mktemp -d); tar -C "$W" -xzf "$ROOT/.device/patchcore-device.tgz"; export XDG_CACHE_HOME="$W/cache"
J=("$W/runtime/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED)
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
t0=$(date +%s)
timeout 200 "$NCU" --target-processes all --kernel-id '::regex:^(rmsnorm_bwd_rows4_bf16|flash_attn_fwd2_d64_m2_n64_q1|flash_attn_fwd_wgmma_pp_persistent_tma_d64|flash_attn_bwd_wgmma_d64)$:12' \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats \
  --section SchedulerStats --section Occupancy --section LaunchStats --section InstructionStats \
  "${J[@]}" -jar "$W/patchcore.jar" bench kernels --backend cuda --runs 3 > "$OUT/profile.log" 2>&1
echo "profile rc=$? in $(( $(date +%s) - t0 ))s"
for v in 1 6; do
  t0=$(date +%s)
  timeout 60 "${J[@]}" -Dpatchcore.flashfwd.variant=$v -jar "$W/patchcore.jar" bench speed --backend cuda \
    --preset 370m --batch 4 --accum 8 --warmup 1 --steps 5 > "$OUT/speed-fwd$v.log" 2>&1
  echo "speed flashfwd v$v rc=$? in $(( $(date +%s) - t0 ))s"; grep -E '^\|' "$OUT/speed-fwd$v.log"
done
grep -E '^  [A-Za-z].*[0-9]|^    [A-Z]|==PROF==|flash_attn|rmsnorm_bwd' "$OUT/profile.log" | grep -v '^    ---' | head -400
