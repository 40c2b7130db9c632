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
source "$(dirname "${BASH_SOURCE[0]}")/compile.sh"
OUT="${1:-$EMU_ROOT/target/cuda-emu}"

# The kernel files kernels_test.cu names on its `kernel-files:` line.
SOURCES=()
for k in $(sed -n 's|^// kernel-files: ||p' "$EMU_ROOT/src/test/cuda/kernels_test.cu"); do SOURCES+=("$EMU_ROOT/src/main/cuda/$k.cu"); done
(( ${#SOURCES[@]} > 0 )) || { echo "run.sh: no kernel-files line in kernels_test.cu" >&2; exit 2; }
EMU_CXXFLAGS=()
compile_all "$OUT" "${SOURCES[@]}" "$EMU_ROOT/src/test/cuda/kernels_test.cu" "$EMU_DIR/emu.cpp"
"${CXX:-g++}" -pthread "${OBJECTS[@]}" -o "$OUT/kernels_test"
exec "$OUT/kernels_test" --no-bench
