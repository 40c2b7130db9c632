// The emulator as a shared library for the Java tests (CudaEmulatedOpsTest through EmulatedKernelContext): the CUDA
// backend's own launchers (CudaRmsNorm, CudaRope, …) launch the real kernels on the CPU, with host memory for device
// memory.
//
// A launch names the kernel by its address (Java looks the extern "C" symbol up in this library) and gives its
// arguments split by class: pointers and integers as 64-bit words in order, floats in order. The kernel is then
// called through one generic function type, which is the x86-64 System V calling convention at work: the first six
// integer-class arguments travel in registers, the first eight float arguments in xmm registers whatever their
// positions among the others, and further integer-class arguments on the stack in order. So any kernel with at most
// eight float parameters and no struct parameters (every kernel built here) receives exactly its arguments.
#include "cuda.h"
#include "cuda_runtime.h"
#include "cuda_bf16.h"

#include <cstdio>

#if !defined(__x86_64__)
#error "emu_api.cpp calls kernels through the x86-64 System V convention"
#endif

namespace {
constexpr int STACK_WORDS = 16;
using Generic = void (*)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float, float, float, float, float,
                         float, float, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
}  // namespace

// Runs kernel `fn` over grid × block with `sharedBytes` of dynamic shared memory (cooperative ≠ 0: every block resident
// at once); returns 0, or −1 (and a message in `error`) for arguments the generic call cannot pass.
extern "C" int emu_launch(void* fn, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes, int cooperative,
                          const int64_t* words, int wordCount, const float* floats, int floatCount, char* error,
                          int errorBytes) {
    if (wordCount < 0 || wordCount > 6 + STACK_WORDS || floatCount < 0 || floatCount > 8) {
        std::snprintf(error, errorBytes, "emu_launch: %d integer and %d float arguments (at most %d and 8)", wordCount,
                      floatCount, 6 + STACK_WORDS);
        return -1;
    }
    int64_t w[6 + STACK_WORDS] = {};
    float f[8] = {};
    for (int i = 0; i < wordCount; ++i) w[i] = words[i];
    for (int i = 0; i < floatCount; ++i) f[i] = floats[i];
    const Generic k = reinterpret_cast<Generic>(fn);
    emu::run_grid(dim3(gx, gy, gz), dim3(bx, by, bz), (size_t)sharedBytes, [&] {
        k(w[0], w[1], w[2], w[3], w[4], w[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], w[6], w[7], w[8], w[9],
          w[10], w[11], w[12], w[13], w[14], w[15], w[16], w[17], w[18], w[19], w[20], w[21]);
    }, cooperative != 0);
    return 0;
}

// The schedule of later launches (emu::configure): order 0 forward, 1 reverse, 2 random, late 0 or 1; −1: the
// environment's EMU_ORDER / EMU_ASYNC.
extern "C" void emu_configure(int order, int late) { emu::configure(order, late); }

// The TMA attention forwards (flash_attn_fwd_wgmma_pp*_persistent_tma_d*) take three CUtensorMaps by value, which the
// generic call above cannot pass: this entry calls them through their own type. words: q, k, v, out, lse, T, H, BH;
// maps: three emulator-encoded maps of 128 bytes each. Returns 0, or −1 with a message in `error`.
extern "C" int emu_launch_tma(void* fn, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes,
                              const int64_t* words, int wordCount, const void* maps, int mapCount, char* error,
                              int errorBytes) {
    if (wordCount != 8 || mapCount != 3) {
        std::snprintf(error, errorBytes, "emu_launch_tma: %d words and %d maps (8 and 3 expected)", wordCount, mapCount);
        return -1;
    }
    using Tma = void (*)(const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, float*, int, int,
                         int, CUtensorMap, CUtensorMap, CUtensorMap);
    CUtensorMap m[3];
    std::memcpy(m, maps, sizeof m);
    const Tma k = reinterpret_cast<Tma>(fn);
    const auto* w = words;
    emu::run_grid(dim3(gx, gy, gz), dim3(bx, by, bz), (size_t)sharedBytes, [&] {
        k(reinterpret_cast<const __nv_bfloat16*>(w[0]), reinterpret_cast<const __nv_bfloat16*>(w[1]),
          reinterpret_cast<const __nv_bfloat16*>(w[2]), reinterpret_cast<__nv_bfloat16*>(w[3]), reinterpret_cast<float*>(w[4]),
          (int)w[5], (int)w[6], (int)w[7], m[0], m[1], m[2]);
    });
    return 0;
}
