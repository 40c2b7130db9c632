#!/usr/bin/env bash
# Builds a standalone kernel test program of src/test/cuda with g++ against the CPU emulator in this directory and runs
# its correctness part (no timings: the emulator's are meaningless). No GPU or CUDA toolkit needed.
#
#   bash src/test/cuda/emu/run.sh [BUILD_DIR [PROGRAM [ARG...]]]   # default target/cuda-emu, kernels_test; exit status the program's
#
# PROGRAM: kernels_test or flash_wgmma_test (each with the kernel files its `kernel-files:` line names), or
# flash_attention_test (which includes flash_attention.cu itself). EMU_ORDER (forward, reverse or random: which thread
# of a block runs first between barriers; EMU_SEED picks random's schedule), EMU_ASYNC (eager or late: when cp.async
# copies land), EMU_WORKERS (OS threads per launch, default the cores, at least 2) and EMU_SMS (the multiprocessors the
# made-up device reports, default 4: the launchers size their grids from it) change the schedule the kernels see; EMU_CC (default 8.0; 9.0 for
# kernels_test and flash_wgmma_test, whose wgmma kernels exist for sm_90a only) is the compute capability it reports.
# ARGs, where given, replace the program's default arguments (--no-bench for kernels_test, check for the others), e.g.
# `run.sh target/cuda-emu flash_wgmma_test launches`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/compile.sh"
OUT="${1:-$EMU_ROOT/target/cuda-emu}"
PROGRAM="${2:-kernels_test}"
EXTRA_ARGS=("${@:3}")

SOURCES=()
case "$PROGRAM" in
  kernels_test | flash_wgmma_test)
    for k in $(sed -n 's|^// kernel-files: ||p' "$EMU_ROOT/src/test/cuda/$PROGRAM.cu"); do SOURCES+=("$EMU_ROOT/src/main/cuda/$k.cu"); done
    (( ${#SOURCES[@]} > 0 )) || { echo "run.sh: no kernel-files line in $PROGRAM.cu" >&2; exit 2; }
    if [[ $PROGRAM == kernels_test ]]; then ARGS=(--no-bench); else ARGS=(check); fi
    # 9.0: kernels_test checks the sm_90 variants too (the RMSNorm backward's bulk copies); the wgmma kernels need it
    export EMU_CC="${EMU_CC:-9.0}" ;;
  flash_attention_test)
    ARGS=(check) ;;
  *) echo "run.sh: PROGRAM is kernels_test, flash_attention_test or flash_wgmma_test, not $PROGRAM" >&2; exit 2 ;;
esac
(( ${#EXTRA_ARGS[@]} == 0 )) || ARGS=("${EXTRA_ARGS[@]}")
EMU_CXXFLAGS=()
compile_all "$OUT" "${SOURCES[@]}" "$EMU_ROOT/src/test/cuda/$PROGRAM.cu" "$EMU_DIR/emu.cpp"
"${CXX:-g++}" -pthread "${OBJECTS[@]}" -o "$OUT/$PROGRAM"
exec "$OUT/$PROGRAM" "${ARGS[@]}"
