// Fused K-target cross-entropy (paper Eq. 3, App. A), bf16 logits, fp32 math. Semantics: Backend.crossEntropyK.
//   loss_n = lse_n − (1/K) Σ_k logits[n, t_nk]        (= −(1/K) Σ_k log softmax(logits_n)[t_nk])
//   grad   = gradScale · (softmax(logits_n) − (1/K) Σ_k onehot(t_nk)), written over the logits (when gradScale ≠ 0).
// One block per row. Pass 1 reads the row once with an online max/sum (log2 domain: exp2f is a single MUFU op plus
// range handling, and exp(x − m) = 2^(x·log2e − m·log2e)); pass 2 re-reads it and writes the gradient in place.
// The K target logits are read into shared memory before pass 2 overwrites them; after pass 2 one thread per
// distinct target writes gradScale · (p − count/K), so a target repeated within a row counts once per occurrence.
// A target outside [0, vocab) makes the row's loss NaN (visible to the trainer) and adds no one-hot term.
// Columns [vocab, stride) are padding (the model pads its vocabulary to a multiple of 64): excluded from the
// softmax, gradient 0.
// Rows need not be 16-byte aligned (the stride may be odd): each row has a scalar head up to the first 16-byte boundary,
// a body of 16-byte groups and a scalar tail, each at most 7 elements.
#include "common.cuh"

namespace {

constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// Running max m (log2 domain) and s = Σ 2^(x·log2e − m) over the elements seen.
struct MaxSum {
    float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return {m, 0.f};  // nothing but −inf seen yet: avoid (−inf) − (−inf)
    return {m, a.s * exp2f(a.m - m) + b.s * exp2f(b.m - m)};
}

// Adds elements whose largest value is xmax (natural units) to the running state.
__device__ __forceinline__ void rescale(MaxSum& st, float xmax) {
    const float m = xmax * LOG2E;
    if (m > st.m) {
        st.s *= exp2f(st.m - m);  // st.m = −inf → ×0, st.s is 0 anyway
        st.m = m;
    }
}

__device__ __forceinline__ void accumulate(MaxSum& st, float x) {
    if (st.m != -INFINITY) st.s += exp2f(fmaf(x, LOG2E, -st.m));
}

// Every thread gets the block's combined state, combined in a fixed order (deterministic).
__device__ __forceinline__ MaxSum block_combine(MaxSum st, float* sm, float* ss) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        st = combine(st, {__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o)});
    __syncthreads();  // sm/ss may still be read by the previous row
    if (lane == 0) {
        sm[warp] = st.m;
        ss[warp] = st.s;
    }
    __syncthreads();
    MaxSum r = lane < warps ? MaxSum{sm[lane], ss[lane]} : MaxSum{-INFINITY, 0.f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        r = combine(r, {__shfl_xor_sync(0xffffffffu, r.m, o), __shfl_xor_sync(0xffffffffu, r.s, o)});
    return r;
}

}  // namespace

// 16-byte loads/stores with cache hints. Pass 2's re-read is the row's last use and the gradient is not read again
// before the next GEMM streams it from DRAM: both are marked evict-first (.cs) so they do not push rows that are
// still between their two passes out of L2.
__device__ __forceinline__ bf16x8 load_last(const bf16x8* p) {
    const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p));
    bf16x8 v;
    memcpy(&v, &u, sizeof v);
    return v;
}

__device__ __forceinline__ void store_streaming(bf16x8* p, const bf16x8& v) {
    uint4 u;
    memcpy(&u, &v, sizeof u);
    __stcs(reinterpret_cast<uint4*>(p), u);
}

// The kernel body. CACHE (variant 2, cross_entropy_fwd_smem_bf16): pass 1 also stores the row's 16-byte body groups
// in shared memory and pass 2 reads them from there, so the logits cross DRAM exactly once in and once out whatever
// the L2 holds; the arithmetic and the thread → column mapping are unchanged (bit-identical results). Without CACHE
// pass 2 re-reads the row from global memory, which is only free while the row is still in L2.
template <bool CACHE>
__device__ __forceinline__ void cross_entropy_rows(float* __restrict__ losses, bf16* __restrict__ logits,
                                                   const int* __restrict__ targets, int n, int stride, int vocab, int K,
                                                   float gradScale) {
    DYNAMIC_SHARED(int, tgt);  // [K] target ids, [K] floats: their logits, then (CACHE) the row's body groups
    float* xt = reinterpret_cast<float*>(tgt + K);
    bf16x8* cache = reinterpret_cast<bf16x8*>(tgt + 2 * ((K + 3) / 4) * 4);  // 16-byte aligned after 2K words
    STATIC_SHARED(float, redM, [32]);
    STATIC_SHARED(float, redS, [32]);
    const int tid = threadIdx.x, threads = blockDim.x;

    for (int row = blockIdx.x; row < n; row += gridDim.x) {
        bf16* p = logits + (size_t)row * stride;
        for (int k = tid; k < K; k += threads) {
            const int t = targets[(size_t)row * K + k];
            tgt[k] = t;
            xt[k] = (t >= 0 && t < vocab) ? __bfloat162float(p[t]) : __int_as_float(0x7fffffff);  // NaN
        }
        // Columns [0, vocab): head up to the first 16-byte boundary, then 16-byte groups, then the tail.
        const int head = min(vocab, (int)(((16u - (reinterpret_cast<uintptr_t>(p) & 15u)) & 15u) >> 1));
        const int groups = (vocab - head) >> 3;
        const int tail = head + groups * 8;
        const bf16x8* body = reinterpret_cast<const bf16x8*>(p + head);

        // Pass 1: online max / sum. Thread-private order is fixed, so the result is deterministic.
        MaxSum st{-INFINITY, 0.f};
        if (tid < head) {
            const float x = __bfloat162float(p[tid]);
            rescale(st, x);
            accumulate(st, x);
        }
#pragma unroll 4
        for (int g = tid; g < groups; g += threads) {
            float x[8];
            const bf16x8 v = body[g];
            if constexpr (CACHE) cache[g] = v;
            unpack8(v, x);
            float mx = x[0];
#pragma unroll
            for (int k = 1; k < 8; ++k) mx = fmaxf(mx, x[k]);
            rescale(st, mx);
#pragma unroll
            for (int k = 0; k < 8; ++k) accumulate(st, x[k]);
        }
        if (tail + tid < vocab) {
            const float x = __bfloat162float(p[tail + tid]);
            rescale(st, x);
            accumulate(st, x);
        }
        const MaxSum all = block_combine(st, redM, redS);  // its barriers also publish tgt / xt
        const float lse2 = all.m + log2f(all.s);            // log-sum-exp in log2 units

        if (tid == 0) {
            float mean = 0.f;
            for (int k = 0; k < K; ++k) mean += xt[k];
            losses[row] = lse2 * LN2 - mean / (float)K;
        }

        if (gradScale != 0.f) {
            // Pass 2: gradScale · softmax everywhere; the one-hot terms are fixed up below.
            if (tid < head) p[tid] = __float2bfloat16_rn(gradScale * exp2f(fmaf(__bfloat162float(p[tid]), LOG2E, -lse2)));
            bf16x8* wbody = reinterpret_cast<bf16x8*>(p + head);
#pragma unroll 2
            for (int g = tid; g < groups; g += threads) {
                float x[8];
                if constexpr (CACHE) unpack8(cache[g], x);
                else unpack8(load_last(wbody + g), x);
#pragma unroll
                for (int k = 0; k < 8; ++k) x[k] = gradScale * exp2f(fmaf(x[k], LOG2E, -lse2));
                store_streaming(wbody + g, pack8(x));
            }
            if (tail + tid < vocab)
                p[tail + tid] = __float2bfloat16_rn(gradScale * exp2f(fmaf(__bfloat162float(p[tail + tid]), LOG2E, -lse2)));
            for (int c = vocab + tid; c < stride; c += threads) p[c] = __float2bfloat16_rn(0.f);  // padding
            __syncthreads();  // every softmax write lands before the fix-ups overwrite K of them
            for (int k = tid; k < K; k += threads) {
                const int t = tgt[k];
                if (t < 0 || t >= vocab) continue;
                bool first = true;
                int count = 0;
                for (int j = 0; j < K; ++j) {
                    if (tgt[j] != t) continue;
                    ++count;
                    if (j < k) first = false;
                }
                if (first)
                    p[t] = __float2bfloat16_rn(gradScale * (exp2f(fmaf(xt[k], LOG2E, -lse2)) - (float)count / (float)K));
            }
        }
        __syncthreads();  // tgt / xt are reused by the next row
    }
}

// losses F32 [n]; logits bf16 [n, stride] (overwritten with the gradient when gradScale ≠ 0); targets I32 [n, K].
// Columns [vocab, stride) are padding: no part of the softmax, gradient written as 0 (only when gradScale ≠ 0).
// grid: any (grid-stride over rows; CudaCrossEntropy uses one block per row). block: multiple of 32, ≤ 1024.
// Dynamic shared memory: K ints (targets) + K floats (their logits).
extern "C" __global__ void __launch_bounds__(1024, 2)
cross_entropy_fwd_bf16(float* __restrict__ losses, bf16* __restrict__ logits, const int* __restrict__ targets, int n,
                       int stride, int vocab, int K, float gradScale) {
    cross_entropy_rows<false>(losses, logits, targets, n, stride, vocab, K, gradScale);
}

// Variant 2 (CudaCrossEntropy): the same, with the row's body cached in shared memory between the passes. Dynamic
// shared memory: 2·⌈K/4⌉·4 words, then ⌈vocab/8⌉ 16-byte groups (CudaCrossEntropy.smemBytes).
extern "C" __global__ void __launch_bounds__(1024, 2)
cross_entropy_fwd_smem_bf16(float* __restrict__ losses, bf16* __restrict__ logits, const int* __restrict__ targets,
                            int n, int stride, int vocab, int K, float gradScale) {
    cross_entropy_rows<true>(losses, logits, targets, n, stride, vocab, K, gradScale);
}
