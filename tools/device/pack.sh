#!/usr/bin/env bash
# Prepares what the GPU machine needs (it has no Java, Maven or network): the fat jar plus a jlinked Java 25 runtime
# with only the modules the jar uses, packed as .device/patchcore-device.tgz (git-ignored; must stay < 60 MiB so it
# fits a device call's 64 MiB carry). Run here, then on the device: tools/device/gpu-check.sh (carry: .device).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
BUILD=${BUILD_DIR:-/tmp/build-device-pack}
DEST="$ROOT/.device"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

cd "$ROOT"
echo "[pack] mvn package (build dir $BUILD)"
mvn -q -o -Dbuild.dir="$BUILD" -DskipTests package
JAR="$BUILD/patchcore.jar"
[[ -f "$JAR" ]] || { echo "[pack] no jar at $JAR" >&2; exit 1; }
if ! unzip -l "$JAR" cuda/kernels.list >/dev/null 2>&1; then
  echo "[pack] WARNING: the jar has no CUDA kernels (nvcc missing?); the device run will report 'no kernels in this build'" >&2
fi

# Modules the jar needs, plus the Vector API (loaded reflectively, so jdeps cannot see it) and jdk.unsupported
# (sun.misc.Unsafe users among the dependencies).
MODS=$("$JAVA_HOME/bin/jdeps" --multi-release 25 --ignore-missing-deps --print-module-deps "$JAR")
MODS=$(echo "$MODS,jdk.incubator.vector,jdk.unsupported" | tr , "\n" | sort -u | paste -sd, -)
echo "[pack] jlink modules: $MODS"
"$JAVA_HOME/bin/jlink" --add-modules "$MODS" --strip-debug --no-man-pages --no-header-files --compress zip-9 \
  --output "$STAGE/runtime"
cp "$JAR" "$STAGE/patchcore.jar"

# The standalone CUDA tests (src/test/cuda: each kernel against a float64 host loop, then timings), for gpu-check's
# cuda-tests step. The CUDA runtime is linked statically, so they need only the driver there.
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
PACKED=(runtime patchcore.jar)
if [[ -n "$NVCC" ]]; then
  mkdir -p "$STAGE/cuda-tests"
  echo "[pack] nvcc src/test/cuda/kernels_test.cu, flash_attention_test.cu (sm_80, sm_90a)"
  KT_FILES=()  # the kernel files kernels_test.cu declares, from its `kernel-files:` line
  for k in $(sed -n 's|^// kernel-files: ||p' src/test/cuda/kernels_test.cu); do KT_FILES+=("src/main/cuda/$k.cu"); done
  "$NVCC" -O3 -std=c++17 -Isrc/main/cuda -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 \
      src/test/cuda/kernels_test.cu "${KT_FILES[@]}" -o "$STAGE/cuda-tests/kernels_test"
  "$NVCC" -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 \
      src/test/cuda/flash_attention_test.cu -o "$STAGE/cuda-tests/flash_attention_test"
  # The Hopper kernels exist for sm_90a only; timing.cu for the spin kernel of its timing mode.
  echo "[pack] nvcc src/test/cuda/flash_wgmma_test.cu (sm_90a)"
  FW_FILES=()
  for k in $(sed -n 's|^// kernel-files: ||p' src/test/cuda/flash_wgmma_test.cu) timing; do FW_FILES+=("src/main/cuda/$k.cu"); done
  "$NVCC" -O3 -std=c++17 -Isrc/main/cuda -gencode arch=compute_90a,code=sm_90a \
      src/test/cuda/flash_wgmma_test.cu "${FW_FILES[@]}" -o "$STAGE/cuda-tests/flash_wgmma_test"
  PACKED+=(cuda-tests)
else
  echo "[pack] no nvcc: the pack has no standalone CUDA tests (gpu-check's cuda-tests step will say so)" >&2
fi

mkdir -p "$DEST"
tar -C "$STAGE" -czf "$DEST/patchcore-device.tgz.tmp" "${PACKED[@]}"
mv "$DEST/patchcore-device.tgz.tmp" "$DEST/patchcore-device.tgz"
BYTES=$(stat -c %s "$DEST/patchcore-device.tgz")
echo "[pack] $DEST/patchcore-device.tgz: $((BYTES / 1048576)) MiB (runtime $(du -sm "$STAGE/runtime" | cut -f1) MiB unpacked, jar $(($(stat -c %s "$JAR") / 1048576)) MiB)"
if (( BYTES >= 60 * 1048576 )); then
  echo "[pack] too large for one device call (limit 60 MiB)" >&2
  exit 1
fi
