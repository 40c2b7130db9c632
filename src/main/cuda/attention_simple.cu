// Simple causal attention (forward + backward) for any even head dim up to 256: the reference GPU path and the
// "naive" row of `bench kernels`. q, k, v, out: bf16 [B·T, H·D] (head h of row n at n·H·D + h·D); lse: F32 [B, H, T].
//
// One block per (row, head, batch); its 4 warps split the other sequence axis, each lane keeps D/32 columns in
// registers, and the warps' partial results are combined in a fixed order, so results are deterministic.
// Scores and softmax in fp32 with accurate expf/logf (no fast-math: lse is compared against fp32 references).
// Backward: kernel 1 per query row computes delta_i = Σ dO_i·O_i and dq_i; kernel 2 per key row recomputes the
// probabilities from lse and accumulates dk_j and dv_j. No atomics.
#include "common.cuh"
#include <math.h>

#define ATTN_MAX_CHUNKS 8  // D <= 32·8 = 256
#define ATTN_WARPS 4       // launch with 32·ATTN_WARPS threads

__device__ __forceinline__ const bf16* head_row(const bf16* base, int b, int t, int h, int T, int H, int D) {
    return base + ((long long)b * T + t) * ((long long)H * D) + (long long)h * D;
}

__device__ __forceinline__ float dot_row(const float* regs, const bf16* row, int lane, int D) {
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
        const int c = lane + 32 * r;
        if (c < D) s += regs[r] * to_f32(row[c]);
    }
    return warp_sum(s);
}

__device__ __forceinline__ void load_row(float* regs, const bf16* row, int lane, int D, float scale) {
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
        const int c = lane + 32 * r;
        regs[r] = c < D ? to_f32(row[c]) * scale : 0.0f;
    }
}

extern "C" __global__ void attn_simple_fwd(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                                           const bf16* __restrict__ k, const bf16* __restrict__ v, int T, int H, int D) {
    STATIC_SHARED(float, sm, [ATTN_WARPS]);
    STATIC_SHARED(float, sl, [ATTN_WARPS]);
    STATIC_SHARED(float, sacc, [ATTN_WARPS][32 * ATTN_MAX_CHUNKS]);
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale = 1.0f / sqrtf((float)D);
    float qv[ATTN_MAX_CHUNKS], acc[ATTN_MAX_CHUNKS];
    load_row(qv, head_row(q, b, i, h, T, H, D), lane, D, scale);
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) acc[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = warp; j <= i; j += ATTN_WARPS) {  // online softmax over this warp's keys
        const float s = dot_row(qv, head_row(k, b, j, h, T, H, D), lane, D);
        const float mNew = fmaxf(m, s);
        const float corr = expf(m - mNew), p = expf(s - mNew);
        l = l * corr + p;
        const bf16* vr = head_row(v, b, j, h, T, H, D);
#pragma unroll
        for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
            const int c = lane + 32 * r;
            if (c < D) acc[r] = acc[r] * corr + p * to_f32(vr[c]);
        }
        m = mNew;
    }
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
        const int c = lane + 32 * r;
        if (c < D) sacc[warp][c] = acc[r];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; ++w) M = fmaxf(M, sm[w]);  // warp 0 always has key 0, so M is finite
    float L = 0.0f;
    for (int w = 0; w < ATTN_WARPS; ++w) if (sl[w] > 0.0f) L += sl[w] * expf(sm[w] - M);
    bf16* orow = out + ((long long)b * T + i) * ((long long)H * D) + (long long)h * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ATTN_WARPS; ++w) if (sl[w] > 0.0f) o += sacc[w][c] * expf(sm[w] - M);
        orow[c] = to_bf16(o / L);
    }
    if (threadIdx.x == 0) lse[((long long)b * H + h) * T + i] = M + logf(L);
}

// Backward, part 1 (one block per query row): delta_i = Σ_c dO_ic·O_ic, dq_i = scale · Σ_j P_ij (dP_ij − delta_i) k_j.
extern "C" __global__ void attn_simple_bwd_dq(bf16* __restrict__ dq, float* __restrict__ delta,
                                              const bf16* __restrict__ dOut, const bf16* __restrict__ q,
                                              const bf16* __restrict__ k, const bf16* __restrict__ v,
                                              const bf16* __restrict__ out, const float* __restrict__ lse, int T, int H,
                                              int D) {
    STATIC_SHARED(float, sacc, [ATTN_WARPS][32 * ATTN_MAX_CHUNKS]);
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale = 1.0f / sqrtf((float)D);
    float qv[ATTN_MAX_CHUNKS], dov[ATTN_MAX_CHUNKS], acc[ATTN_MAX_CHUNKS];
    load_row(qv, head_row(q, b, i, h, T, H, D), lane, D, scale);
    load_row(dov, head_row(dOut, b, i, h, T, H, D), lane, D, 1.0f);
    const float di = dot_row(dov, head_row(out, b, i, h, T, H, D), lane, D);
    const long long statIdx = ((long long)b * H + h) * T + i;
    const float li = lse[statIdx];
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) acc[r] = 0.0f;
    for (int j = warp; j <= i; j += ATTN_WARPS) {
        const bf16* kr = head_row(k, b, j, h, T, H, D);
        const float p = expf(dot_row(qv, kr, lane, D) - li);
        const float ds = p * (dot_row(dov, head_row(v, b, j, h, T, H, D), lane, D) - di);
#pragma unroll
        for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
            const int c = lane + 32 * r;
            if (c < D) acc[r] += ds * to_f32(kr[c]);
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
        const int c = lane + 32 * r;
        if (c < D) sacc[warp][c] = acc[r];
    }
    __syncthreads();
    bf16* dqr = dq + ((long long)b * T + i) * ((long long)H * D) + (long long)h * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < ATTN_WARPS; ++w) s += sacc[w][c];
        dqr[c] = to_bf16(s * scale);
    }
    if (threadIdx.x == 0) delta[statIdx] = di;
}

// Backward, part 2 (one block per key row j): dv_j = Σ_{i>=j} P_ij dO_i, dk_j = scale · Σ_{i>=j} dS_ij q_i.
extern "C" __global__ void attn_simple_bwd_dkv(bf16* __restrict__ dk, bf16* __restrict__ dv,
                                               const float* __restrict__ delta, const bf16* __restrict__ dOut,
                                               const bf16* __restrict__ q, const bf16* __restrict__ k,
                                               const bf16* __restrict__ v, const float* __restrict__ lse, int T, int H,
                                               int D) {
    STATIC_SHARED(float, sk, [ATTN_WARPS][32 * ATTN_MAX_CHUNKS]);
    STATIC_SHARED(float, sv, [ATTN_WARPS][32 * ATTN_MAX_CHUNKS]);
    const int j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale = 1.0f / sqrtf((float)D);
    float kv[ATTN_MAX_CHUNKS], vv[ATTN_MAX_CHUNKS], dkacc[ATTN_MAX_CHUNKS], dvacc[ATTN_MAX_CHUNKS];
    load_row(kv, head_row(k, b, j, h, T, H, D), lane, D, scale);
    load_row(vv, head_row(v, b, j, h, T, H, D), lane, D, 1.0f);
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) { dkacc[r] = 0.0f; dvacc[r] = 0.0f; }
    const long long statBase = ((long long)b * H + h) * T;
    for (int i = j + warp; i < T; i += ATTN_WARPS) {
        const bf16* qr = head_row(q, b, i, h, T, H, D);
        const bf16* dor = head_row(dOut, b, i, h, T, H, D);
        const float p = expf(dot_row(kv, qr, lane, D) - lse[statBase + i]);
        const float ds = p * (dot_row(vv, dor, lane, D) - delta[statBase + i]);
#pragma unroll
        for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
            const int c = lane + 32 * r;
            if (c < D) {
                dvacc[r] += p * to_f32(dor[c]);
                dkacc[r] += ds * to_f32(qr[c]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_MAX_CHUNKS; ++r) {
        const int c = lane + 32 * r;
        if (c < D) { sk[warp][c] = dkacc[r]; sv[warp][c] = dvacc[r]; }
    }
    __syncthreads();
    const long long o = ((long long)b * T + j) * ((long long)H * D) + (long long)h * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float a = 0.0f, e = 0.0f;
        for (int w = 0; w < ATTN_WARPS; ++w) { a += sk[w][c]; e += sv[w][c]; }
        dk[o + c] = to_bf16(a * scale);
        dv[o + c] = to_bf16(e);
    }
}
