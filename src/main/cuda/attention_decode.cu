// Cached attention for generation (DecodingBackend.attendCached): n new queries q [n, H·D] at positions
// start … start + n − 1 over a KV cache keys, values [capacity, KH·D] (bf16, rotated keys; KH key/value heads, H a
// multiple of KH); query i sees cache rows 0 … start + i, and query head h reads key/value head h / (H / KH) (grouped-
// query attention, as Backend.repeatHeads repeats them; KH = H is multi-head attention). Any even D up to 256.
//
// Split over the keys (as flash-decoding does): a decode step has one query per head, so one block per head would
// leave most of the GPU idle and walk the keys in a long dependent chain. Instead each block takes a chunk of
// DEC_KEYS keys of one (query, head): every lane scores one key (its own dot product over D, reading the query from
// shared memory), the warp takes its max and exp-sum with shuffles, then accumulates Σ p_j·v_j with lanes across the
// columns (coalesced value rows). The block's four warps are combined in a fixed order and written as a partial
// (max, sum, unnormalized output); `attn_decode_combine` merges a row's partials in chunk order. With one chunk
// (contexts up to DEC_KEYS) the block writes the output itself. Deterministic; fp32 scores and softmax with accurate
// expf (no fast math), like attention_simple.cu.
#include "common.cuh"
#include <math.h>

namespace {

constexpr int DEC_WARPS = 4;                  // CudaDecodeAttention.THREADS / 32
constexpr int DEC_KEYS = 32 * DEC_WARPS;      // CudaDecodeAttention.KEYS_PER_BLOCK: one key per lane
constexpr int DEC_MAX_CHUNKS = 8;             // columns per lane: D ≤ 32 · 8 = 256

// q · key over D columns (q already scaled, in shared memory). vec: 16-byte loads (D % 8 == 0, 16-byte aligned rows).
__device__ __forceinline__ float score(const float* sq, const bf16* __restrict__ kr, int D, bool vec) {
    float a0 = 0.0f, a1 = 0.0f;
    if (vec) {
        for (int e = 0; e < D; e += 8) {
            float f[8];
            unpack8(*reinterpret_cast<const bf16x8*>(kr + e), f);
#pragma unroll
            for (int u = 0; u < 8; u += 2) {
                a0 = fmaf(sq[e + u], f[u], a0);
                a1 = fmaf(sq[e + u + 1], f[u + 1], a1);
            }
        }
    } else {  // element loads: any alignment of the cache
        for (int e = 0; e < D; e += 2) {
            a0 = fmaf(sq[e], to_f32(kr[e]), a0);
            a1 = fmaf(sq[e + 1], to_f32(kr[e + 1]), a1);
        }
    }
    return a0 + a1;
}

}  // namespace

// grid (chunks, H, n), block 32 · DEC_WARPS. Chunk c holds keys c·DEC_KEYS … +DEC_KEYS−1. Writes partMl[(i·H + h)·chunks
// + c] = (max, exp-sum) and partAcc[((i·H + h)·chunks + c)·D + col] = Σ exp(s_j − max)·v_j[col]; a chunk past the
// row's last key writes (−inf, 0). With gridDim.x == 1 writes out (bf16 [n, H·D]) directly instead. The blocks of a
// group's query heads each read their key/value head's rows (one head per block as before; L2 may serve the repeats).
extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS)
attn_decode_partial(bf16* __restrict__ out, float* __restrict__ partAcc, float2* __restrict__ partMl,
                    const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, int start,
                    int H, int KH, int D, int vec) {
    __shared__ float sq[32 * DEC_MAX_CHUNKS];
    __shared__ float sm[DEC_WARPS], sl[DEC_WARPS], sacc[DEC_WARPS][32 * DEC_MAX_CHUNKS];
    const int c = blockIdx.x, h = blockIdx.y, i = blockIdx.z, chunks = gridDim.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long width = (long long)H * D, kvWidth = (long long)KH * D;  // q and out rows; key and value rows
    const long long kvCol = (long long)(h / (H / KH)) * D;                    // this head's key/value head
    const int seen = start + i + 1;  // keys 0 … seen − 1
    const int first = c * DEC_KEYS;
    const long long part = ((long long)i * H + h) * chunks + c;
    if (first >= seen) {  // the whole block: no key of this chunk is visible to row i
        if (threadIdx.x == 0) partMl[part] = make_float2(-INFINITY, 0.0f);
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const bf16* qr = q + i * width + (long long)h * D;
    for (int e = threadIdx.x; e < D; e += blockDim.x) sq[e] = to_f32(qr[e]) * scale;
    __syncthreads();

    const int base = first + warp * 32, j = base + lane;
    const int valid = min(32, seen - base);  // this warp's visible keys (≤ 0: none), the same for every lane
    float m = -INFINITY, l = 0.0f, acc[DEC_MAX_CHUNKS];
#pragma unroll
    for (int r = 0; r < DEC_MAX_CHUNKS; ++r) acc[r] = 0.0f;
    if (valid > 0) {
        const float s = lane < valid ? score(sq, k + j * kvWidth + kvCol, D, vec != 0) : -INFINITY;
        m = warp_max(s);  // finite: lane 0's key is visible
        const float p = lane < valid ? expf(s - m) : 0.0f;
        l = warp_sum(p);
        const bf16* vh = v + (long long)base * kvWidth + kvCol;
#pragma unroll 4
        for (int jj = 0; jj < valid; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const bf16* vr = vh + jj * kvWidth;
#pragma unroll
            for (int r = 0; r < DEC_MAX_CHUNKS; ++r) {
                const int col = lane + 32 * r;
                if (col < D) acc[r] = fmaf(pj, to_f32(vr[col]), acc[r]);
            }
        }
    }
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int r = 0; r < DEC_MAX_CHUNKS; ++r) {
        const int col = lane + 32 * r;
        if (col < D) sacc[warp][col] = acc[r];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < DEC_WARPS; ++w) M = fmaxf(M, sm[w]);  // warp 0 has the chunk's first key, so M is finite
    float L = 0.0f;
    for (int w = 0; w < DEC_WARPS; ++w) if (sl[w] > 0.0f) L += sl[w] * expf(sm[w] - M);
    // One chunk: the output itself; several: this chunk's partial (unnormalized) and its (max, sum).
    bf16* orow = out + i * width + (long long)h * D;
    float* prow = chunks == 1 ? nullptr : partAcc + part * D;
    for (int col = threadIdx.x; col < D; col += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < DEC_WARPS; ++w) if (sl[w] > 0.0f) o += sacc[w][col] * expf(sm[w] - M);
        if (prow) prow[col] = o;
        else orow[col] = to_bf16(o / L);
    }
    if (prow && threadIdx.x == 0) partMl[part] = make_float2(M, L);
}

// grid (H, n), block any multiple of 32: out[i, h·D + col] = Σ_c partAcc_c[col]·exp(m_c − M) / Σ_c l_c·exp(m_c − M)
// over the chunks c with l_c > 0 (chunk 0 always: it holds key 0).
extern "C" __global__ void attn_decode_combine(bf16* __restrict__ out, const float* __restrict__ partAcc,
                                               const float2* __restrict__ partMl, int chunks, int H, int D) {
    const int h = blockIdx.x, i = blockIdx.y;
    const long long row = ((long long)i * H + h) * chunks;
    float M = -INFINITY;
    for (int c = 0; c < chunks; ++c) {
        const float2 ml = partMl[row + c];
        if (ml.y > 0.0f) M = fmaxf(M, ml.x);
    }
    float L = 0.0f;
    for (int c = 0; c < chunks; ++c) {
        const float2 ml = partMl[row + c];
        if (ml.y > 0.0f) L += ml.y * expf(ml.x - M);
    }
    bf16* orow = out + (long long)i * H * D + (long long)h * D;
    for (int col = threadIdx.x; col < D; col += blockDim.x) {
        float o = 0.0f;
        for (int c = 0; c < chunks; ++c) {
            const float2 ml = partMl[row + c];
            if (ml.y > 0.0f) o += partAcc[(row + c) * D + col] * expf(ml.x - M);
        }
        orow[col] = to_bf16(o / L);
    }
}
