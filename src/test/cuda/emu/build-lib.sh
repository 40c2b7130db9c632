#!/usr/bin/env bash
# Builds libpatchcore_emu.so: every kernel file that needs no tensor-core PTX, compiled with g++ against the CPU
# emulator in this directory, plus emu_api.cpp (the launch entry the Java tests call through FFM).
#
#   bash src/test/cuda/emu/build-lib.sh [BUILD_DIR]      # default target/cuda-emu; prints the library's path
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/target/cuda-emu}" && cd "${1:-$ROOT/target/cuda-emu}" && pwd)/lib"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O2 -g -fPIC -pthread -Wall -Werror -Wno-unknown-pragmas -I"$HERE" -I"$ROOT/src/main/cuda")

# The attention kernels (mma.sync, ldmatrix, wgmma, TMA) and the timing kernel (a clock spin) are not built.
KERNELS=(adamw attention_decode attention_simple cross_entropy elementwise patch_embed repeat_heads rmsnorm rope swiglu)
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
for f in emu emu_api; do
  build "$HERE/$f.cpp" "$OUT/$f.o" & pids+=($!); objects+=("$OUT/$f.o")
done
for p in "${pids[@]}"; do wait "$p"; done
"$CXX" -shared -pthread "${objects[@]}" -o "$OUT/libpatchcore_emu.so"
echo "$OUT/libpatchcore_emu.so"
