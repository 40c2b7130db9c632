// The softmax exponentials of the flash-attention kernels (flash_attention.cu, flash_wgmma.cu).
#pragma once
#include <stdint.h>

// ex2.approx.ftz is a single MUFU.EX2; exp2f wraps the same instruction in a denormal fix-up (compare, two
// multiplies). Flushing results below 2^-126 to zero changes a probability by less than 2^-126 (the row
// maximum contributes exactly 1 to its row sum); exp2(-inf) = +0, so fully masked entries stay exact zeros.
static __device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// 2^x for x ≤ 0 on the FMA pipe instead of the MUFU unit (the trick FlashAttention-4 uses where MUFU.EX2 limits the
// softmax: at D = 64 a tile needs one exponential per 4·D = 256 MMA flops, about the H100's tensor : MUFU ratio).
// n = round(x) with the 1.5·2^23 trick, 2^f for f = x − n ∈ [−0.5, 0.5] by a degree-5 polynomial (fp32 relative
// error ≤ 3e-7, about ex2.approx's; 2^0 is exactly 1), then n added to the exponent bits. x < −125 (masked −inf
// included) gives 0, where ex2.approx.ftz gives 0 below −126.
static __device__ __forceinline__ float exp2_poly(float x) {
    const float xc = fmaxf(x, -127.f);
    const float t = xc + 12582912.f;  // 1.5·2^23: the low mantissa bits of t hold round(xc)
    const float f = xc - (t - 12582912.f);
    float p = 1.3260921696200967e-3f;
    p = fmaf(p, f, 9.670175611972809e-3f);
    p = fmaf(p, f, 5.5507123470306396e-2f);
    p = fmaf(p, f, 0.2402222454547882f);
    p = fmaf(p, f, 0.6931470036506653f);
    p = fmaf(p, f, 1.0f);
    // bits(t) = bits(1.5·2^23) + n and bits(1.5·2^23) << 23 wraps to 0, so (bits(t) << 23) = n · 2^23.
    const float r = __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
    return x < -125.f ? 0.f : r;
}

// The softmax exponential of S n-tile n: exp2_poly on the FMA pipe for a 1/POLY share of the n-tiles
// (n % POLY == POLY − 1), MUFU otherwise; POLY = 0: MUFU only.
template <int POLY>
static __device__ __forceinline__ float softmax_exp2(int n, float x) {
    if constexpr (POLY > 0) {
        if (n % POLY == POLY - 1) return exp2_poly(x);
    }
    return exp2_ftz(x);
}
