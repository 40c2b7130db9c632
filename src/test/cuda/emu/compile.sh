# Sourced by run.sh and build-lib.sh: compile_all OUT_DIR SOURCE... compiles each source (.cu as C++) with g++ against
# the emulator's headers into OUT_DIR/<name>.o, in parallel, skipping those newer than every file they were built from
# (g++'s dependency list, <name>.d: the source and whatever it includes, .cu files included by a test too); extra flags
# in EMU_CXXFLAGS (an array). Sets OBJECTS to the objects, in order.
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMU_ROOT="$(cd "$EMU_DIR/../../../.." && pwd)"

# Whether $1 (an object) must be rebuilt: missing, no dependency list, or a file on that list newer than it.
stale() {
  local obj=$1 dep
  [[ -f "$obj" && -f "${obj%.o}.d" ]] || return 0
  for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "${obj%.o}.d"); do
    [[ -e "$dep" && ! "$dep" -nt "$obj" ]] || return 0
  done
  return 1
}

compile_all() {
  local out=$1 src obj
  shift
  local flags=(-std=c++17 -O2 -g -pthread -Wall -Werror -Wno-unknown-pragmas -fno-strict-aliasing -Wno-psabi -I"$EMU_DIR"
               -I"$EMU_ROOT/src/main/cuda" "${EMU_CXXFLAGS[@]}")
  local pids=()
  OBJECTS=()
  mkdir -p "$out"
  for src in "$@"; do
    obj="$out/$(basename "${src%.*}").o"
    OBJECTS+=("$obj")
    if stale "$obj"; then
      # into temporary files first: an object cut short by a killed compile must not look up to date
      { "${CXX:-g++}" "${flags[@]}" -MMD -MF "${obj%.o}.d.tmp" -x c++ -c "$src" -o "$obj.tmp" &&
          mv "${obj%.o}.d.tmp" "${obj%.o}.d" && mv "$obj.tmp" "$obj"; } & pids+=($!)
    fi
  done
  local p status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  return $status
}
