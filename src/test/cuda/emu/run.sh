#!/usr/bin/env bash
# Builds src/test/cuda/kernels_test.cu and the kernels it checks with g++ against the CPU emulator in this directory,
# and runs the correctness part (no timings: the emulator's are meaningless). No GPU or CUDA toolkit needed.
#
#   bash src/test/cuda/emu/run.sh [BUILD_DIR]      # default target/cuda-emu; exit status that of kernels_test
#
# EMU_ORDER (forward, reverse or random: which thread of a block runs first between barriers), EMU_WORKERS (OS threads
# per launch, default the cores, at least 2) and EMU_SMS (the multiprocessors the made-up device reports, default 4: the
# launchers size their grids from it) change the schedule the kernels see.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
OUT="${1:-$ROOT/target/cuda-emu}"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O2 -g -pthread -Wall -Werror -Wno-unknown-pragmas -I"$HERE" -I"$ROOT/src/main/cuda")

# The kernel files kernels_test.cu names on its `kernel-files:` line; each built on its own (in parallel), rebuilt when a
# source is newer.
read -r -a KERNELS <<< "$(sed -n 's|^// kernel-files: ||p' "$ROOT/src/test/cuda/kernels_test.cu")"
(( ${#KERNELS[@]} > 0 )) || { echo "run.sh: no kernel-files line in kernels_test.cu" >&2; exit 2; }
pids=()
objects=()
build() {  # build SOURCE OBJECT
  if [[ ! -f "$2" || "$1" -nt "$2" || -n "$(find "$HERE" "$ROOT/src/main/cuda" -name '*.h' -newer "$2" -o -name '*.cuh' -newer "$2")" ]]; then
    "$CXX" "${FLAGS[@]}" -x c++ -c "$1" -o "$2"
  fi
}
for k in "${KERNELS[@]}"; do
  build "$ROOT/src/main/cuda/$k.cu" "$OUT/$k.o" & pids+=($!); objects+=("$OUT/$k.o")
done
build "$ROOT/src/test/cuda/kernels_test.cu" "$OUT/kernels_test.o" & pids+=($!); objects+=("$OUT/kernels_test.o")
build "$HERE/emu.cpp" "$OUT/emu.o" & pids+=($!); objects+=("$OUT/emu.o")
for p in "${pids[@]}"; do wait "$p"; done
"$CXX" -pthread "${objects[@]}" -o "$OUT/kernels_test"
exec "$OUT/kernels_test" --no-bench
