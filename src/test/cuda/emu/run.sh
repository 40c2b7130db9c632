#!/usr/bin/env bash
# Builds a standalone kernel test program of src/test/cuda with g++ against the CPU emulator in this directory and runs
# its correctness part (no timings: the emulator's are meaningless). No GPU or CUDA toolkit needed.
#
#   bash src/test/cuda/emu/run.sh [BUILD_DIR [PROGRAM]]   # default target/cuda-emu, kernels_test; exit status the program's
#
# PROGRAM: kernels_test (the kernel files its `kernel-files:` line names) or flash_attention_test (which includes
# flash_attention.cu itself). EMU_ORDER (forward, reverse or random: which thread of a block runs first between
# barriers), EMU_ASYNC (eager or late: when cp.async copies land), EMU_WORKERS (OS threads per launch, default the
# cores, at least 2) and EMU_SMS (the multiprocessors the made-up device reports, default 4: the launchers size their
# grids from it) change the schedule the kernels see; EMU_CC (default 8.0, 9.0 for kernels_test) is the compute
# capability it reports.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/compile.sh"
OUT="${1:-$EMU_ROOT/target/cuda-emu}"
PROGRAM="${2:-kernels_test}"

SOURCES=()
case "$PROGRAM" in
  kernels_test)
    for k in $(sed -n 's|^// kernel-files: ||p' "$EMU_ROOT/src/test/cuda/kernels_test.cu"); do SOURCES+=("$EMU_ROOT/src/main/cuda/$k.cu"); done
    (( ${#SOURCES[@]} > 0 )) || { echo "run.sh: no kernel-files line in kernels_test.cu" >&2; exit 2; }
    ARGS=(--no-bench)
    export EMU_CC="${EMU_CC:-9.0}" ;;  # so that it checks the sm_90 variants too (the RMSNorm backward's bulk copies)
  flash_attention_test)
    ARGS=(check) ;;
  *) echo "run.sh: PROGRAM is kernels_test or flash_attention_test, not $PROGRAM" >&2; exit 2 ;;
esac
EMU_CXXFLAGS=()
compile_all "$OUT" "${SOURCES[@]}" "$EMU_ROOT/src/test/cuda/$PROGRAM.cu" "$EMU_DIR/emu.cpp"
"${CXX:-g++}" -pthread "${OBJECTS[@]}" -o "$OUT/$PROGRAM"
exec "$OUT/$PROGRAM" "${ARGS[@]}"
