// Rotary position embedding, Hugging Face LLaMA convention (rotate_half): within each head, element i pairs with
// i + Dh/2 and rotates by angle pos · inv_freq_i, inv_freq_i = 1 / theta^(2i/Dh), pos = row mod seqLen (the patch
// index in the patch stage). Backward applies the inverse rotation (angle negated). Semantics: Backend.rope.
//
// Angles are computed on the fly in fp32 exactly as HF does (inv_freq in fp32, then pos · inv_freq in fp32) with
// precise powf/sincosf (this file must not be built with --use_fast_math: __sinf is inaccurate at angles ~ 10³).
// A thread owns (row, 8 consecutive frequencies), computes their sin/cos once and rotates them in every head, so
// the trigonometry is amortized over the heads and all memory traffic is 16-byte loads/stores.
#include "common.cuh"

namespace {

__device__ __forceinline__ void load8(const bf16* p, float* f) { unpack8(*reinterpret_cast<const bf16x8*>(p), f); }
__device__ __forceinline__ void store8(bf16* p, const float* f) { *reinterpret_cast<bf16x8*>(p) = pack8(f); }

__device__ __forceinline__ void rope_angle(float pos, int i, int headDim, float theta, float* s, float* c) {
    const float invFreq = 1.0f / powf(theta, (float)(2 * i) / (float)headDim);
    sincosf(pos * invFreq, s, c);
}

// Forward: lo' = lo·cos − hi·sin, hi' = hi·cos + lo·sin. INVERSE uses −sin.
template <bool INVERSE>
__device__ __forceinline__ void rope_rotate(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen,
                                            int heads, int headDim, float theta, int headsPerItem) {
    const int half = headDim / 2;
    const size_t width = (size_t)heads * headDim;
    if (half % 8 == 0 && aligned16(out) && aligned16(x)) {
        // Offsets row·width + h·headDim + i0 (+ half) are all multiples of 8 elements: 16-byte aligned.
        // item = (row · chunks + head chunk) · groups + group: neighbouring threads touch neighbouring 16 bytes.
        const int groups = half / 8;
        const int chunks = (heads + headsPerItem - 1) / headsPerItem;
        GRID_STRIDE(item, (long long)rows * chunks * groups) {
            const long long rc = item / groups;
            const int i0 = (int)(item - rc * groups) * 8;
            const int row = (int)(rc / chunks);
            const int h0 = (int)(rc - (long long)row * chunks) * headsPerItem;
            const int h1 = min(heads, h0 + headsPerItem);
            const float pos = (float)(row % seqLen);
            float sn[8], cs[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                rope_angle(pos, i0 + k, headDim, theta, &sn[k], &cs[k]);
                if (INVERSE) sn[k] = -sn[k];
            }
            const size_t base = (size_t)row * width + i0;
#pragma unroll 2
            for (int h = h0; h < h1; ++h) {
                const size_t off = base + (size_t)h * headDim;
                float lo[8], hi[8], olo[8], ohi[8];
                load8(x + off, lo);
                load8(x + off + half, hi);
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    olo[k] = lo[k] * cs[k] - hi[k] * sn[k];
                    ohi[k] = hi[k] * cs[k] + lo[k] * sn[k];
                }
                store8(out + off, olo);
                store8(out + off + half, ohi);
            }
        }
    } else {
        GRID_STRIDE(item, (long long)rows * half) {
            const int row = (int)(item / half);
            const int i = (int)(item - (long long)row * half);
            float sn, cs;
            rope_angle((float)(row % seqLen), i, headDim, theta, &sn, &cs);
            if (INVERSE) sn = -sn;
            const size_t base = (size_t)row * width + i;
            for (int h = 0; h < heads; ++h) {
                const size_t off = base + (size_t)h * headDim;
                const float lo = __bfloat162float(x[off]), hi = __bfloat162float(x[off + half]);
                out[off] = __float2bfloat16_rn(lo * cs - hi * sn);
                out[off + half] = __float2bfloat16_rn(hi * cs + lo * sn);
            }
        }
    }
}

}  // namespace

// x, out: bf16 [rows, heads·headDim]. grid, block: any (grid-stride). On the vector path a work item is
// (row, 8 frequencies, headsPerItem heads): fewer heads per item means more threads in flight but more sincosf.
extern "C" __global__ void rope_fwd_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen,
                                         int heads, int headDim, float theta, int headsPerItem) {
    rope_rotate<false>(out, x, rows, seqLen, heads, headDim, theta, headsPerItem);
}

// dx = inverse rotation of dy (the rotation is orthogonal).
extern "C" __global__ void rope_bwd_bf16(bf16* __restrict__ dx, const bf16* __restrict__ dy, int rows, int seqLen,
                                         int heads, int headDim, float theta, int headsPerItem) {
    rope_rotate<true>(dx, dy, rows, seqLen, heads, headDim, theta, headsPerItem);
}
