// Cached attention for generation (DecodingBackend.attendCached): n new queries q [n, H·D] at positions
// start … start + n − 1 over a KV cache keys, values [capacity, KH·D] (bf16, rotated keys; KH key/value heads, H a
// multiple of KH); query i sees cache rows 0 … start + i, and query head h reads key/value head h / (H / KH) (grouped-
// query attention, as Backend.repeatHeads repeats them; KH = H is multi-head attention). Any even D up to 256.
//
// Split over the keys (as flash-decoding does): a decode step has one query per head, so one block per head would
// leave most of the GPU idle and walk the keys in a long dependent chain. Instead each block takes a chunk of
// DEC_KEYS keys of one query and G query heads that share a key/value head: every lane scores one key against the G
// queries (its own dot products over D: each 16-byte piece of the key row is loaded once and used G times, the queries
// read from shared memory), the warp takes each head's max and exp-sum with shuffles, then accumulates the G sums
// Σ p_j·v_j with lanes across the columns (coalesced value rows, each element loaded once for the G heads). The
// block's four warps are combined in a fixed order and written as one partial (max, sum, unnormalized output) per
// head; `attn_decode_combine` merges a row's partials in chunk order. With one chunk (contexts up to DEC_KEYS) the
// block writes the output itself. Deterministic; fp32 scores and softmax with accurate expf (no fast math), like
// attention_simple.cu; each head's arithmetic is the same operations in the same order for every G, so the grouped
// kernels give bit-identical outputs to G = 1.
//
// G = 1 is `attn_decode_partial` (a block per query head, as before grouping: the multi-head path, and valid for any
// grouping); `attn_decode_partial_g2` … `_g8` take G = 2 … 8 query heads per block, which CudaDecodeAttention
// launches with G = the largest divisor of H / KH up to 8 (the whole group for groups of 2 … 8), so a group's cached
// rows are read once per G heads instead of once per head.
#include "common.cuh"
#include <math.h>

namespace {

constexpr int DEC_WARPS = 4;                  // CudaDecodeAttention.THREADS / 32
constexpr int DEC_KEYS = 32 * DEC_WARPS;      // CudaDecodeAttention.KEYS_PER_BLOCK: one key per lane
constexpr int DEC_MAX_CHUNKS = 8;             // columns per lane: D ≤ 32 · 8 = 256
constexpr int DEC_MAX_D = 32 * DEC_MAX_CHUNKS;  // a head's stride in the shared query and output arrays

// G dot products q_g · key over D columns (the G queries already scaled, in shared memory at stride DEC_MAX_D): each
// piece of the key is loaded once for all G. vec: 16-byte loads (D % 8 == 0, 16-byte aligned rows). Per head the same
// two-accumulator order as with G = 1.
template <int G>
__device__ __forceinline__ void score(float (&s)[G], const float* sq, const bf16* __restrict__ kr, int D, bool vec) {
    float a0[G], a1[G];
#pragma unroll
    for (int g = 0; g < G; ++g) a0[g] = a1[g] = 0.0f;
    if (vec) {
        for (int e = 0; e < D; e += 8) {
            float f[8];
            unpack8(*reinterpret_cast<const bf16x8*>(kr + e), f);
#pragma unroll
            for (int u = 0; u < 8; u += 2) {
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    a0[g] = fmaf(sq[g * DEC_MAX_D + e + u], f[u], a0[g]);
                    a1[g] = fmaf(sq[g * DEC_MAX_D + e + u + 1], f[u + 1], a1[g]);
                }
            }
        }
    } else {  // element loads: any alignment of the cache
        for (int e = 0; e < D; e += 2) {
            const float f0 = to_f32(kr[e]), f1 = to_f32(kr[e + 1]);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                a0[g] = fmaf(sq[g * DEC_MAX_D + e], f0, a0[g]);
                a1[g] = fmaf(sq[g * DEC_MAX_D + e + 1], f1, a1[g]);
            }
        }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) s[g] = a0[g] + a1[g];
}

// The block (c, y, i) of a grid (chunks, H / G, n), 32 · DEC_WARPS threads: query i, query heads h0 … h0 + G − 1
// (h0 = y·G, all reading key/value head h0 / (H / KH): G must divide H / KH), keys c·DEC_KEYS … +DEC_KEYS−1. Writes
// partMl[(i·H + h)·chunks + c] = (max, exp-sum) and partAcc[((i·H + h)·chunks + c)·D + col] = Σ exp(s_j − max)·v_j[col]
// for each of its heads h; a chunk past the row's last key writes (−inf, 0). With gridDim.x == 1 writes out
// (bf16 [n, H·D]) directly instead.
template <int G>
__device__ __forceinline__ void decode_partial(bf16* __restrict__ out, float* __restrict__ partAcc,
                                               float2* __restrict__ partMl, const bf16* __restrict__ q,
                                               const bf16* __restrict__ k, const bf16* __restrict__ v, int start, int H,
                                               int KH, int D, int vec) {
    STATIC_SHARED(float, sq, [G * DEC_MAX_D]);
    STATIC_SHARED(float, sm, [DEC_WARPS][G]);
    STATIC_SHARED(float, sl, [DEC_WARPS][G]);
    STATIC_SHARED(float, sacc, [DEC_WARPS][G * DEC_MAX_D]);
    const int c = blockIdx.x, h0 = blockIdx.y * G, i = blockIdx.z, chunks = gridDim.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long width = (long long)H * D, kvWidth = (long long)KH * D;  // q and out rows; key and value rows
    const long long kvCol = (long long)(h0 / (H / KH)) * D;                   // the heads' key/value head
    const int seen = start + i + 1;  // keys 0 … seen − 1
    const int first = c * DEC_KEYS;
    const long long part = ((long long)i * H + h0) * chunks + c;  // head h0 + g: part + g·chunks
    if (first >= seen) {  // the whole block: no key of this chunk is visible to row i
        if (threadIdx.x < G) partMl[part + threadIdx.x * chunks] = make_float2(-INFINITY, 0.0f);
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const bf16* qr = q + i * width + (long long)h0 * D;  // the G heads' queries, adjacent
#pragma unroll
    for (int g = 0; g < G; ++g)
        for (int e = threadIdx.x; e < D; e += blockDim.x) sq[g * DEC_MAX_D + e] = to_f32(qr[g * D + e]) * scale;
    __syncthreads();

    const int base = first + warp * 32, j = base + lane;
    const int valid = min(32, seen - base);  // this warp's visible keys (≤ 0: none), the same for every lane
    float p[G], acc[G][DEC_MAX_CHUNKS];
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int r = 0; r < DEC_MAX_CHUNKS; ++r) acc[g][r] = 0.0f;
    }
    if (valid > 0) {
        float s[G];
        if (lane < valid) score<G>(s, sq, k + j * kvWidth + kvCol, D, vec != 0);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            if (lane >= valid) s[g] = -INFINITY;
            const float m = warp_max(s[g]);  // finite: lane 0's key is visible
            p[g] = lane < valid ? expf(s[g] - m) : 0.0f;
            const float l = warp_sum(p[g]);
            if (lane == 0) { sm[warp][g] = m; sl[warp][g] = l; }
        }
        const bf16* vh = v + (long long)base * kvWidth + kvCol;
#pragma unroll 4
        for (int jj = 0; jj < valid; ++jj) {
            float pj[G];
#pragma unroll
            for (int g = 0; g < G; ++g) pj[g] = __shfl_sync(0xffffffffu, p[g], jj);
            const bf16* vr = vh + jj * kvWidth;
#pragma unroll
            for (int r = 0; r < DEC_MAX_CHUNKS; ++r) {
                const int col = lane + 32 * r;
                if (col < D) {
                    const float x = to_f32(vr[col]);
#pragma unroll
                    for (int g = 0; g < G; ++g) acc[g][r] = fmaf(pj[g], x, acc[g][r]);
                }
            }
        }
    } else if (lane == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) { sm[warp][g] = -INFINITY; sl[warp][g] = 0.0f; }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int r = 0; r < DEC_MAX_CHUNKS; ++r) {
            const int col = lane + 32 * r;
            if (col < D) sacc[warp][g * DEC_MAX_D + col] = acc[g][r];
        }
    }
    __syncthreads();
    // One chunk: the output itself; several: this chunk's partial (unnormalized) and its (max, sum), per head.
#pragma unroll 1
    for (int g = 0; g < G; ++g) {
        float M = -INFINITY;
        for (int w = 0; w < DEC_WARPS; ++w) M = fmaxf(M, sm[w][g]);  // warp 0 has the chunk's first key: M is finite
        float L = 0.0f;
        for (int w = 0; w < DEC_WARPS; ++w) if (sl[w][g] > 0.0f) L += sl[w][g] * expf(sm[w][g] - M);
        bf16* orow = out + i * width + (long long)(h0 + g) * D;
        float* prow = chunks == 1 ? nullptr : partAcc + (part + (long long)g * chunks) * D;
        for (int col = threadIdx.x; col < D; col += blockDim.x) {
            float o = 0.0f;
            for (int w = 0; w < DEC_WARPS; ++w)
                if (sl[w][g] > 0.0f) o += sacc[w][g * DEC_MAX_D + col] * expf(sm[w][g] - M);
            if (prow) prow[col] = o;
            else orow[col] = to_bf16(o / L);
        }
        if (prow && threadIdx.x == 0) partMl[part + (long long)g * chunks] = make_float2(M, L);
    }
}

}  // namespace

// grid (chunks, H, n), block 32 · DEC_WARPS: a block per query head (G = 1), for any grouping (query head h reads key/value
// head h / (H / KH)); CudaDecodeAttention's path for multi-head attention (H = KH). See decode_partial.
extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS)
attn_decode_partial(bf16* __restrict__ out, float* __restrict__ partAcc, float2* __restrict__ partMl,
                    const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v, int start,
                    int H, int KH, int D, int vec) {
    decode_partial<1>(out, partAcc, partMl, q, k, v, start, H, KH, D, vec);
}

// grid (chunks, H / G, n), block 32 · DEC_WARPS: G query heads of one key/value head per block (G divides H / KH),
// reading each cached key and value row once for the G. The same arguments and outputs as attn_decode_partial.
#define DECODE_PARTIAL_GROUPED(G)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * DEC_WARPS) attn_decode_partial_g##G(                              \
        bf16* __restrict__ out, float* __restrict__ partAcc, float2* __restrict__ partMl, const bf16* __restrict__ q,   \
        const bf16* __restrict__ k, const bf16* __restrict__ v, int start, int H, int KH, int D, int vec) {             \
        decode_partial<G>(out, partAcc, partMl, q, k, v, start, H, KH, D, vec);                                         \
    }
DECODE_PARTIAL_GROUPED(2)
DECODE_PARTIAL_GROUPED(3)
DECODE_PARTIAL_GROUPED(4)
DECODE_PARTIAL_GROUPED(5)
DECODE_PARTIAL_GROUPED(6)
DECODE_PARTIAL_GROUPED(7)
DECODE_PARTIAL_GROUPED(8)

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
