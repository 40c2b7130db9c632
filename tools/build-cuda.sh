#!/usr/bin/env bash
# Compiles every SRC_DIR/*.cu into its own fatbin OUT_DIR/<name>.fatbin (sm_80 + sm_90a SASS, compute_90 PTX)
# and writes OUT_DIR/kernels.list (one fatbin name per line), which the CUDA backend loads from the jar.
#
# One fatbin per .cu (not one linked fatbin): each op family keeps its own flags (a first-line comment
# `// nvcc-flags: ...`, e.g. --use_fast_math where that is safe), rebuilds alone, and needs no device linking.
# Warnings fail the build (-Werror all-warnings). ptxas resource usage (registers, shared memory, spills) goes
# to OUT_DIR/ptxas.log; the build prints one line per kernel that spills, and a summary. A fatbin is rebuilt only when it is older than its .cu, any .cuh or this script.
# Without nvcc the build still succeeds; the backend then reports "no kernels in this build".
set -euo pipefail

SRC_DIR=${1:?usage: build-cuda.sh SRC_DIR OUT_DIR}
OUT_DIR=${2:?usage: build-cuda.sh SRC_DIR OUT_DIR}
SELF="${BASH_SOURCE[0]}"

NVCC=${NVCC:-}
if [[ -z "$NVCC" ]]; then
  if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
  elif [[ -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc
  fi
fi

shopt -s nullglob
sources=("$SRC_DIR"/*.cu)
headers=("$SRC_DIR"/*.cuh)

if [[ -z "$NVCC" ]]; then
  echo "[build-cuda] NOTICE: nvcc not found (PATH, /usr/local/cuda/bin): no CUDA kernels in this build;" \
       "the CUDA backend will report 'no kernels in this build'."
  exit 0
fi
if (( ${#sources[@]} == 0 )); then
  echo "[build-cuda] no .cu files in $SRC_DIR"
  exit 0
fi

mkdir -p "$OUT_DIR"
ARCH=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90)
COMMON=(-O3 -std=c++17 -Werror all-warnings -Xptxas -v -lineinfo)

newest_dep=$(stat -c %Y "$SELF")
for h in "${headers[@]}"; do
  t=$(stat -c %Y "$h"); (( t > newest_dep )) && newest_dep=$t
done

built=0
list="$OUT_DIR/kernels.list.tmp"
: > "$list"
for cu in "${sources[@]}"; do
  name=$(basename "$cu" .cu)
  fatbin="$OUT_DIR/$name.fatbin"
  log="$OUT_DIR/$name.ptxas.log"
  echo "$name.fatbin" >> "$list"
  if [[ -f "$fatbin" && -f "$log" ]]; then
    fb=$(stat -c %Y "$fatbin"); src=$(stat -c %Y "$cu")
    if (( fb >= src && fb >= newest_dep )); then continue; fi
  fi
  # Per-file extra flags from a first-line comment, e.g. "// nvcc-flags: --use_fast_math".
  extra=$(head -n 1 "$cu" | sed -n 's|^// nvcc-flags:||p')
  echo "[build-cuda] nvcc $name.cu ${extra}"
  # shellcheck disable=SC2086
  if ! "$NVCC" -fatbin "${ARCH[@]}" "${COMMON[@]}" $extra -I"$SRC_DIR" -o "$fatbin.tmp" "$cu" > "$log" 2>&1; then
    cat "$log" >&2
    rm -f "$fatbin.tmp" "$log"
    echo "[build-cuda] FAILED: $cu" >&2
    exit 1
  fi
  mv "$fatbin.tmp" "$fatbin"
  built=$((built + 1))
done

# Drop fatbins whose .cu was removed, so the jar never carries stale kernels.
for fb in "$OUT_DIR"/*.fatbin; do
  grep -qx "$(basename "$fb")" "$list" || rm -f "$fb" "${fb%.fatbin}.ptxas.log"
done
mv "$list" "$OUT_DIR/kernels.list"

: > "$OUT_DIR/ptxas.log"
for cu in "${sources[@]}"; do
  name=$(basename "$cu" .cu)
  { echo "== $name.cu"; grep -E 'Compiling entry|Used [0-9]+ registers|spill stores' "$OUT_DIR/$name.ptxas.log" || true; } \
    >> "$OUT_DIR/ptxas.log"
done
if (( built > 0 )); then
  # The full report is hundreds of lines: name only the kernels that spill registers to local memory.
  awk '/Compiling entry/ { match($0, /function .*/); what = substr($0, RSTART + 9) }
       /bytes spill stores/ { for (i = 1; i < NF; i++) if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) == "stores," && $i > 0)
                                print "[build-cuda] spills " $i " bytes: " what }' "$OUT_DIR/ptxas.log"
  echo "[build-cuda] compiled $built of ${#sources[@]} kernel files into $OUT_DIR" \
       "($(grep -c 'Compiling entry' "$OUT_DIR/ptxas.log") kernel entries; registers and spills in $OUT_DIR/ptxas.log)"
else
  echo "[build-cuda] kernels up to date (${#sources[@]} files)"
fi
