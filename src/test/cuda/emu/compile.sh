# Sourced by run.sh and build-lib.sh: compile_all OUT_DIR SOURCE... compiles each source (.cu as C++) with g++ against
# the emulator's headers into OUT_DIR/<name>.o, in parallel, skipping those newer than their source and every header;
# extra flags in EMU_CXXFLAGS (an array). Sets OBJECTS to the objects, in order.
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMU_ROOT="$(cd "$EMU_DIR/../../../.." && pwd)"

compile_all() {
  local out=$1 src obj
  shift
  local flags=(-std=c++17 -O2 -g -pthread -Wall -Werror -Wno-unknown-pragmas -fno-strict-aliasing -I"$EMU_DIR" -I"$EMU_ROOT/src/main/cuda"
               "${EMU_CXXFLAGS[@]}")
  local pids=()
  OBJECTS=()
  mkdir -p "$out"
  for src in "$@"; do
    obj="$out/$(basename "${src%.*}").o"
    OBJECTS+=("$obj")
    if [[ ! -f "$obj" || "$src" -nt "$obj" || -n "$(find "$EMU_DIR" "$EMU_ROOT/src/main/cuda" \( -name '*.h' -o -name '*.cuh' \) -newer "$obj")" ]]; then
      # into a temporary file first: an object cut short by a killed compile must not look up to date
      { "${CXX:-g++}" "${flags[@]}" -x c++ -c "$src" -o "$obj.tmp" && mv "$obj.tmp" "$obj"; } & pids+=($!)
    fi
  done
  local p
  for p in "${pids[@]}"; do wait "$p"; done
}
