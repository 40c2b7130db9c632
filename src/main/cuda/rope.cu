// Rotary position embedding, Hugging Face LLaMA convention (rotate_half): within each head, element i pairs with
// i + Dh/2 and rotates by angle pos · inv_freq_i, inv_freq_i = 1 / theta^(2i/Dh) or, for scaled frequencies
// (LLaMA-3's), table[i], pos = start + row mod seqLen (the patch index in the patch stage; start > 0 for
// generation's new rows after a KV cache). Backward applies the inverse rotation (angle negated). Semantics:
// Backend.rope and DecodingBackend.ropeAt.
//
// Angles are computed on the fly in fp32 exactly as HF does (inv_freq in fp32, then pos · inv_freq in fp32) with
// precise powf/sincosf (this file must not be built with --use_fast_math: __sinf is inaccurate at angles ~ 10³).
//
// Vector path (Dh/2 a multiple of 8, 16-byte aligned tensors, Dh/2 ≤ ROPE_MAX_TABLE): one warp per row. The angle of
// (row, i) does not depend on the head, so a warp computes each of its row's Dh/2 (cos, sin) pairs once — one
// powf + sincosf per lane at Dh = 64 — into its own slice of shared memory, and every head of the row reads them from
// there. The lane first issues the 16-byte loads of its (head, 8-frequency group) items (both halves), then does the
// trigonometry while they are in flight, then rotates and stores. Before, a thread owned 8 frequencies × a few heads
// and computed 8 sincosf for them: ~8× the trigonometry, and at the 370M shape one wave of threads that each waited on
// a chain of load, 8 sincosf, store, load, store (≈ 50 % of the copy bandwidth in `bench kernels`).
#include "common.cuh"

namespace {

constexpr int ROPE_THREADS = 256;    // CudaRope.THREADS: 8 warps, one row each
constexpr int ROPE_ITEMS = 4;        // (head, group) items per lane in flight: rows up to 2048 wide in one step
constexpr int ROPE_MAX_TABLE = 768;  // CudaRope.MAX_TABLE: largest Dh/2 on the vector path (8 warps · 768 · 8 B = 48 KB)

// table: the Dh/2 scaled frequencies, or null for theta's.
__device__ __forceinline__ float inv_freq(int i, int headDim, float theta, const float* __restrict__ table) {
    return table ? table[i] : 1.0f / powf(theta, (float)(2 * i) / (float)headDim);
}

// Forward: lo' = lo·cos − hi·sin, hi' = hi·cos + lo·sin. INVERSE uses −sin.
__device__ __forceinline__ void rotate8(const bf16x8& lo, const bf16x8& hi, const float* cs, const float* sn,
                                       bf16* __restrict__ olo, bf16* __restrict__ ohi) {
    float l[8], u[8], ol[8], ou[8];
    unpack8(lo, l);
    unpack8(hi, u);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        ol[k] = l[k] * cs[k] - u[k] * sn[k];
        ou[k] = u[k] * cs[k] + l[k] * sn[k];
    }
    *reinterpret_cast<bf16x8*>(olo) = pack8(ol);
    *reinterpret_cast<bf16x8*>(ohi) = pack8(ou);
}

// A warp's (cos, ±sin) table for one row: entry f = angle pos · inv_freq_f, f < half, lanes striding by 32.
template <bool INVERSE>
__device__ __forceinline__ void fill_table(float2* tab, float pos, int half, int headDim, float theta,
                                           const float* __restrict__ table) {
    for (int f = threadIdx.x & 31; f < half; f += 32) {
        float sn, cs;
        sincosf(pos * inv_freq(f, headDim, theta, table), &sn, &cs);
        tab[f] = make_float2(cs, INVERSE ? -sn : sn);
    }
}

// Rotates one 8-frequency group (low half `lo` at out, high half `hi` at out + half) with the table entries t8[0..7]
// (64-byte aligned).
__device__ __forceinline__ void rotate_group(const bf16x8& lo, const bf16x8& hi, const float2* t8, bf16* __restrict__ out,
                                             int half) {
    const float4* t4 = reinterpret_cast<const float4*>(t8);
    float cs[8], sn[8];
#pragma unroll
    for (int m = 0; m < 4; ++m) {
        const float4 t = t4[m];
        cs[2 * m] = t.x, sn[2 * m] = t.y, cs[2 * m + 1] = t.z, sn[2 * m + 1] = t.w;
    }
    rotate8(lo, hi, cs, sn, out, out + half);
}

template <bool INVERSE>
__device__ __forceinline__ void rope_rotate(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen,
                                            int start, int heads, int headDim, float theta,
                                            const float* __restrict__ table, int vector) {
    const int half = headDim / 2;
    const size_t width = (size_t)heads * headDim;
    if (vector && half % 8 == 0 && half <= ROPE_MAX_TABLE && aligned16(out) && aligned16(x)) {
        // Dynamic shared memory: (blockDim / 32) · half float2 (cos, ±sin), one slice per warp.
        DYNAMIC_SHARED(float4, sTable);  // declared float4 for its 16-byte alignment (read as float4 below)
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        float2* tab = reinterpret_cast<float2*>(sTable) + (size_t)warp * half;
        const int groups = half / 8, items = heads * groups;
        for (int row = blockIdx.x * warps + warp; row < rows; row += gridDim.x * warps) {
            const bf16* xb = x + (size_t)row * width;
            bf16* ob = out + (size_t)row * width;
            for (int i0 = 0; i0 < items; i0 += 32 * ROPE_ITEMS) {
                // Item it = (head h, group g): elements h·Dh + 8g .. +7 and the same + Dh/2 (16-byte aligned).
                bf16x8 lo[ROPE_ITEMS], hi[ROPE_ITEMS];
#pragma unroll
                for (int u = 0; u < ROPE_ITEMS; ++u) {
                    const int it = i0 + lane + 32 * u;
                    if (it < items) {
                        const int h = it / groups, g = it - h * groups;
                        const size_t off = (size_t)h * headDim + 8 * g;
                        lo[u] = *reinterpret_cast<const bf16x8*>(xb + off);
                        hi[u] = *reinterpret_cast<const bf16x8*>(xb + off + half);
                    }
                }
                if (i0 == 0) {
                    // This row's table, while the first loads are in flight. The first __syncwarp keeps the
                    // previous row's readers ahead of the overwrite, the second publishes the table to the warp.
                    __syncwarp();
                    fill_table<INVERSE>(tab, (float)(start + row % seqLen), half, headDim, theta, table);
                    __syncwarp();
                }
#pragma unroll
                for (int u = 0; u < ROPE_ITEMS; ++u) {
                    const int it = i0 + lane + 32 * u;
                    if (it < items) {
                        const int h = it / groups, g = it - h * groups;
                        const size_t off = (size_t)h * headDim + 8 * g;
                        rotate_group(lo[u], hi[u], tab + 8 * g, ob + off, half);
                    }
                }
            }
        }
    } else {
        // Scalar path (odd Dh/2, misaligned views, very large heads): item (row, frequency), every head.
        GRID_STRIDE(item, (long long)rows * half) {
            const int row = (int)(item / half);
            const int i = (int)(item - (long long)row * half);
            float sn, cs;
            sincosf((float)(start + row % seqLen) * inv_freq(i, headDim, theta, table), &sn, &cs);
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

// x, out: bf16 [rows, heads·headDim]; row r at position start + r mod seqLen (start ≥ 0, start + seqLen ≤ 2^24 so
// positions are exact in fp32). grid: any (grid-stride over rows, or over (row, frequency) on the scalar path);
// block: ROPE_THREADS. vector ≠ 0 asks for the vector path (taken only when Dh/2 % 8 == 0, Dh/2 ≤ ROPE_MAX_TABLE and
// both tensors are 16-byte aligned) and then needs (ROPE_THREADS / 32) · (Dh/2) · 8 bytes of dynamic shared memory.
// table: null, or Dh/2 fp32 frequencies used instead of theta's.
extern "C" __global__ void __launch_bounds__(ROPE_THREADS, 4)
rope_fwd_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, int rows, int seqLen, int start, int heads,
              int headDim, float theta, const float* __restrict__ table, int vector) {
    rope_rotate<false>(out, x, rows, seqLen, start, heads, headDim, theta, table, vector);
}

// dx = inverse rotation of dy (the rotation is orthogonal).
extern "C" __global__ void __launch_bounds__(ROPE_THREADS, 4)
rope_bwd_bf16(bf16* __restrict__ dx, const bf16* __restrict__ dy, int rows, int seqLen, int start, int heads,
              int headDim, float theta, const float* __restrict__ table, int vector) {
    rope_rotate<true>(dx, dy, rows, seqLen, start, heads, headDim, theta, table, vector);
}
