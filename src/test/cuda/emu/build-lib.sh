#!/usr/bin/env bash
# Builds libpatchcore_emu.so: every kernel file (the timing kernel excepted), compiled with g++ against the CPU emulator
# in this directory, plus emu_api.cpp (the launch entry the Java tests call through FFM).
#
#   bash src/test/cuda/emu/build-lib.sh [BUILD_DIR]      # default target/cuda-emu; prints the library's path last
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/compile.sh"
OUT="$(mkdir -p "${1:-$EMU_ROOT/target/cuda-emu}" && cd "${1:-$EMU_ROOT/target/cuda-emu}" && pwd)/lib"

# Not built: the timing kernel (a clock spin).
SOURCES=()
for k in adamw attention_decode attention_simple cross_entropy elementwise flash_attention flash_wgmma patch_embed repeat_heads rmsnorm rope swiglu; do
  SOURCES+=("$EMU_ROOT/src/main/cuda/$k.cu")
done
EMU_CXXFLAGS=(-fPIC)
compile_all "$OUT" "${SOURCES[@]}" "$EMU_DIR/emu.cpp" "$EMU_DIR/emu_api.cpp"
"${CXX:-g++}" -shared -pthread "${OBJECTS[@]}" -o "$OUT/libpatchcore_emu.so"
echo "$OUT/libpatchcore_emu.so"
