// Rotary position embedding, Hugging Face LLaMA convention (rotate_half): within each head, element i pairs with
// i + Dh/2 and rotates by angle pos · inv_freq_i, inv_freq_i = 1 / theta^(2i/Dh), pos = row mod seqLen (the patch
// index in the patch stage). Backward applies the inverse rotation (angle negated). Semantics: Backend.rope.
//
// Angles are computed on the fly in fp32 exactly as HF does (inv_freq in fp32, then pos · inv_freq in fp32) with
// precise powf/sincosf (this file must not be built with --use_fast_math: __sinf is inaccurate at angles ~ 10³).
// Each block first puts inv_freq (one powf per frequency) in shared memory. A thread owns (row, 8 consecutive
// frequencies, headsPerItem heads): it issues the 16-byte loads of its first 2 heads, computes the 8 sincosf while
// they are in flight, then rotates and stores 2 heads at a time. The trigonometry is amortized over the heads and
// hidden behind the memory latency (at the 370M shapes every thread has exactly one item, so there is no later wave
// for it to overlap with). Batches of 2 heads keep the kernel at 64 registers without spills (4 blocks per SM).
#include "common.cuh"

namespace {

constexpr int ROPE_THREADS = 256;      // CudaRope.THREADS
constexpr int HEAD_BATCH = 2;          // heads whose loads are in flight together

__device__ __forceinline__ float inv_freq(int i, int headDim, float theta) {
    return 1.0f / powf(theta, (float)(2 * i) / (float)headDim);
}

// Forward: lo' = lo·cos − hi·sin, hi' = hi·cos + lo·sin. INVERSE uses −sin.
template <bool INVERSE>
__device__ __forceinline__ void rope_rotate(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen,
                                            int heads, int headDim, float theta, int headsPerItem) {
    extern __shared__ float sInv[];  // [headDim / 2] inv_freq: dynamic shared memory
    const int half = headDim / 2;
    const size_t width = (size_t)heads * headDim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) sInv[i] = inv_freq(i, headDim, theta);
    __syncthreads();
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
            const bf16* xb = x + (size_t)row * width + i0;
            bf16* ob = out + (size_t)row * width + i0;

            // The first batch's loads are issued before the trigonometry, so their latency hides it.
            bf16x8 lo[HEAD_BATCH], hi[HEAD_BATCH];
#pragma unroll
            for (int j = 0; j < HEAD_BATCH; ++j)
                if (h0 + j < h1) {
                    lo[j] = *reinterpret_cast<const bf16x8*>(xb + (size_t)(h0 + j) * headDim);
                    hi[j] = *reinterpret_cast<const bf16x8*>(xb + (size_t)(h0 + j) * headDim + half);
                }
            const float pos = (float)(row % seqLen);
            float sn[8], cs[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                sincosf(pos * sInv[i0 + k], &sn[k], &cs[k]);
                if (INVERSE) sn[k] = -sn[k];
            }
            for (int h = h0;;) {
#pragma unroll
                for (int j = 0; j < HEAD_BATCH; ++j)
                    if (h + j < h1) {
                        float l[8], u[8], ol[8], ou[8];
                        unpack8(lo[j], l);
                        unpack8(hi[j], u);
#pragma unroll
                        for (int k = 0; k < 8; ++k) {
                            ol[k] = l[k] * cs[k] - u[k] * sn[k];
                            ou[k] = u[k] * cs[k] + l[k] * sn[k];
                        }
                        *reinterpret_cast<bf16x8*>(ob + (size_t)(h + j) * headDim) = pack8(ol);
                        *reinterpret_cast<bf16x8*>(ob + (size_t)(h + j) * headDim + half) = pack8(ou);
                    }
                h += HEAD_BATCH;
                if (h >= h1) break;
#pragma unroll
                for (int j = 0; j < HEAD_BATCH; ++j)
                    if (h + j < h1) {
                        lo[j] = *reinterpret_cast<const bf16x8*>(xb + (size_t)(h + j) * headDim);
                        hi[j] = *reinterpret_cast<const bf16x8*>(xb + (size_t)(h + j) * headDim + half);
                    }
            }
        }
    } else {
        GRID_STRIDE(item, (long long)rows * half) {
            const int row = (int)(item / half);
            const int i = (int)(item - (long long)row * half);
            float sn, cs;
            sincosf((float)(row % seqLen) * sInv[i], &sn, &cs);
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

// x, out: bf16 [rows, heads·headDim]. grid: any (grid-stride); block: ROPE_THREADS; dynamic shared memory:
// headDim/2 floats. On the vector path a work item
// is (row, 8 frequencies, headsPerItem heads): fewer heads per item means more threads in flight but more sincosf.
extern "C" __global__ void __launch_bounds__(ROPE_THREADS, 4)
rope_fwd_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen, int heads, int headDim,
              float theta, int headsPerItem) {
    rope_rotate<false>(out, x, rows, seqLen, heads, headDim, theta, headsPerItem);
}

// dx = inverse rotation of dy (the rotation is orthogonal).
extern "C" __global__ void __launch_bounds__(ROPE_THREADS, 4)
rope_bwd_bf16(bf16* __restrict__ dx, const bf16* __restrict__ dy, int rows, int seqLen, int heads, int headDim,
              float theta, int headsPerItem) {
    rope_rotate<true>(dx, dy, rows, seqLen, heads, headDim, theta, headsPerItem);
}
