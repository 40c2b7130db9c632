// The softmax exponential of the flash-attention kernels (flash_attention.cu, flash_wgmma.cu). (Computing a quarter or
// half of them with a degree-5 polynomial on the FMA pipe instead, FlashAttention-4's trick, ran at 0.82–0.90× on an
// H100 at D = 64 in every kernel tried, H100 run 11: these kernels are not limited by MUFU.EX2.)
#pragma once
#include <stdint.h>

// ex2.approx.ftz is a single MUFU.EX2; exp2f wraps the same instruction in a denormal fix-up (compare, two
// multiplies). Flushing results below 2^-126 to zero changes a probability by less than 2^-126 (the row
// maximum contributes exactly 1 to its row sum); exp2(-inf) = +0, so fully masked entries stay exact zeros.
static __device__ __forceinline__ float exp2_ftz(float x) {
#ifndef PATCHCORE_EMU
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#else
    return emu::ex2_approx_ftz(x);  // the CPU emulator (src/test/cuda/emu)
#endif
}
