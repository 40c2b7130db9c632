// Causal flash attention (FlashAttention-2, Dao 2023), forward and backward, on tensor cores
// (mma.sync m16n8k16 bf16 → fp32, operands through ldmatrix, tiles through cp.async).
//
// Layout (Backend.attention): q, k, v, out, dOut, dq, dk, dv are bf16 [B·T, H·D] row-major; head h of
// row b·T+t occupies columns h·D .. h·D+D−1. lse is fp32 [B, H, T], natural log of Σ exp(scaled scores).
// Scale 1/sqrt(D). Memory is linear in T: only lse (forward) and D_i plus an fp32 dQ accumulator
// (backward) are kept; no T×T buffer ever exists. Design notes and ptxas numbers: docs/attention.md.
//
// Fragment conventions of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), g = lane/4, c = lane%4:
//   A 16×16 (row-major): reg0 = A[g][2c..2c+1], reg1 = A[g+8][2c..], reg2 = A[g][2c+8..], reg3 = A[g+8][2c+8..]
//   B 16×8  (col-major): reg0 = B[2c..2c+1][g], reg1 = B[2c+8..2c+9][g]
//   C 16×8  (fp32):      c0,c1 = C[g][2c..2c+1], c2,c3 = C[g+8][2c..2c+1]
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8×8 matrix i, which lands in register i; without
// .trans lane l receives M[l/4][2(l%4)..+1], with .trans it receives M[2(l%4)..+1][l/4].
// Shared tiles are padded by 8 elements (16 bytes) per row, so the 8 row addresses of every ldmatrix hit 8
// distinct 16-byte bank groups for all head dims used here (row pitch 144, 176, 208, 272 bytes).

#include <cuda_bf16.h>
#include <stdint.h>

#include "shared_memory.cuh"
#include "softmax_exp.cuh"

namespace flash {

typedef __nv_bfloat16 bf16;

constexpr int KV_TILE = 64;          // key/value rows per tile (forward) and per CTA (backward)
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_size 0 zero-fills the destination (rows past T), so masked keys never meet
// stale shared memory (0·NaN would poison P·V).
// Under the CPU emulator (src/test/cuda/emu, PATCHCORE_EMU) each of these instructions is a call into it instead.
#ifndef PATCHCORE_EMU
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// C += A·B for one 16×8×16 tile.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#else
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    emu::cp_async(dst, src, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { emu::cp_async_commit(); }
__device__ __forceinline__ void cp_async_wait_all() { emu::cp_async_wait(0); }
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) { emu::ldmatrix(r, p, 4, false); }
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) { emu::ldmatrix(r, p, 4, true); }
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    emu::mma_m16n8k16_bf16(c, a, b0, b1);
}
#endif

// dst[0] += a, dst[1] += b in global memory (fp32 reduction; one vector instruction on Hopper).
__device__ __forceinline__ void add_f32x2(float* dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(a), "f"(b) : "memory");
#else
    atomicAdd(dst, a);
    atomicAdd(dst + 1, b);
#endif
}

// Two floats → one register holding bf16x2, lower column in the low half (the fragment order).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// The A fragment of a 16×16 block of a row-major shared tile (rows r0.., cols c0..).
__device__ __forceinline__ const bf16* a_frag_addr(const bf16* tile, int ld, int r0, int c0, int lane) {
    return tile + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + c0 + (lane >> 4) * 8;
}
// B fragments of two adjacent n8 tiles when B[k][n] = tile[n][k] (tile rows are n): regs {0,1} for n0..n0+7,
// {2,3} for n0+8..n0+15; load without .trans.
__device__ __forceinline__ const bf16* bt_frag_addr(const bf16* tile, int ld, int n0, int k0, int lane) {
    return tile + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
// B fragments of two adjacent n8 tiles when B[k][n] = tile[k][n] (tile rows are k); load with .trans.
__device__ __forceinline__ const bf16* b_frag_addr(const bf16* tile, int ld, int k0, int n0, int lane) {
    return tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}
// A fragment when A[m][k] = tile[k][m] (tile rows are k); load with .trans.
__device__ __forceinline__ const bf16* at_frag_addr(const bf16* tile, int ld, int m0, int k0, int lane) {
    return tile + (k0 + (lane & 7) + (lane >> 4) * 8) * ld + m0 + ((lane >> 3) & 1) * 8;
}

// Copies rows [0, ROWS) of a [*, ld] bf16 matrix into a shared tile with pitch D + 8; rows ≥ valid are zeros.
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, size_t ld, int valid, int tid) {
    constexpr int CHUNKS = D / 8;
    constexpr int TOTAL = ROWS * CHUNKS;
#pragma unroll
    for (int i0 = 0; i0 < TOTAL; i0 += THREADS) {
        const int i = i0 + tid;
        if (TOTAL % THREADS == 0 || i < TOTAL) {
            const int r = i / CHUNKS, c = i % CHUNKS;
            const bool ok = r < valid;
            cp_async16(dst + r * (D + 8) + c * 8, ok ? src + r * ld + c * 8 : src, ok);
        }
    }
}

// ---------------------------------------------------------------------------------------------- forward
// One CTA = WARPS·MT·16 query rows of one (batch, head); each warp owns MT·16 rows and keeps Q as A fragments
// in registers. With MT = 2 every K/V fragment read from shared memory feeds two MMAs, halving the shared
// memory traffic per FLOP (worth it where the registers allow: D = 64). Key/value tiles run from the
// diagonal down to 0, so only the first one or two need the causal mask; K and V have one buffer each and
// their loads overlap the other's matmul (load V_j during S = QK_jᵀ, K_{j-1} during O += P V_j), as in
// FlashAttention-2. Q is staged through the same shared memory first.
template <int D, int WARPS, int MT>
__device__ __forceinline__ void forward(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                        const bf16* __restrict__ V, bf16* __restrict__ O, float* __restrict__ LSE,
                                        int T, int H) {
    constexpr int THREADS = 32 * WARPS, WR = 16 * MT, BR = WR * WARPS, BC = KV_TILE, LDS = D + 8;
    constexpr int REGION_ROWS = BR > 2 * BC ? BR : 2 * BC;
    STATIC_SHARED(__align__(128) bf16, smem, [REGION_ROWS * LDS]);
    bf16* Ks = smem;
    bf16* Vs = smem + BC * LDS;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;  // longest rows first: better tail balance
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));

    load_tile<BR, D, THREADS>(smem, Q + base + q0 * ld, ld, T - q0, tid);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    uint32_t qf[MT][D / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
            ldsm_x4(qf[mt][kk], a_frag_addr(smem, LDS, warp * WR + mt * 16, kk * 16, lane));
    __syncthreads();

    const int qw = q0 + warp * WR;  // first query row of this warp
    const int nTiles = (min(q0 + BR, T) + BC - 1) / BC;
    float o[MT][D / 8][4];
    float rowMax[MT][2], rowSum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
        rowMax[mt][0] = rowMax[mt][1] = -INFINITY;
        rowSum[mt][0] = rowSum[mt][1] = 0.f;
    }

    load_tile<BC, D, THREADS>(Ks, K + base + static_cast<size_t>(nTiles - 1) * BC * ld, ld, T - (nTiles - 1) * BC, tid);
    cp_async_commit();

    for (int j = nTiles - 1; j >= 0; --j) {
        const int kv0 = j * BC;
        cp_async_wait_all();
        __syncthreads();  // K_j landed; every warp is done with V_{j+1}
        load_tile<BC, D, THREADS>(Vs, V + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
        cp_async_commit();

        // Warps whose rows all precede kv0 see only masked columns here.
        const bool active = kv0 <= qw + WR - 1;
        float s[MT][BC / 8][4];
        if (active) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int n = 0; n < BC / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
                for (int np = 0; np < BC / 16; ++np) {
                    uint32_t kb[4];
                    ldsm_x4(kb, bt_frag_addr(Ks, LDS, np * 16, kk * 16, lane));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma16816(s[mt][2 * np], qf[mt][kk], kb[0], kb[1]);
                        mma16816(s[mt][2 * np + 1], qf[mt][kk], kb[2], kb[3]);
                    }
                }
            }
            // Causal mask (col > row); it also hides columns ≥ T from every row < T.
            if (kv0 + BC - 1 > qw) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
                        for (int i = 0; i < 4; ++i) {
                            const int col = kv0 + n * 8 + (lane & 3) * 2 + (i & 1);
                            const int row = qw + mt * 16 + (lane >> 2) + (i >> 1) * 8;
                            if (col > row) s[mt][n][i] = -INFINITY;
                        }
            }
            // Online softmax: each thread holds rows g and g+8 of each 16-row block; a row is spread over the
            // 4 lanes of a quad.
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    float mx = rowMax[mt][r];
#pragma unroll
                    for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float mScaled = mx == -INFINITY ? 0.f : mx * scaleLog2;  // fully masked row: no NaN
                    const float alpha = exp2f(rowMax[mt][r] * scaleLog2 - mScaled);
                    rowMax[mt][r] = mx;
                    float sum = 0.f;
#pragma unroll
                    for (int n = 0; n < BC / 8; ++n) {
                        s[mt][n][2 * r] = exp2f(fmaf(s[mt][n][2 * r], scaleLog2, -mScaled));
                        s[mt][n][2 * r + 1] = exp2f(fmaf(s[mt][n][2 * r + 1], scaleLog2, -mScaled));
                        sum += s[mt][n][2 * r] + s[mt][n][2 * r + 1];
                    }
                    rowSum[mt][r] = rowSum[mt][r] * alpha + sum;
#pragma unroll
                    for (int n = 0; n < D / 8; ++n) {
                        o[mt][n][2 * r] *= alpha;
                        o[mt][n][2 * r + 1] *= alpha;
                    }
                }
        }

        cp_async_wait_all();
        __syncthreads();  // V_j landed; every warp is done with K_j
        if (j > 0) {
            load_tile<BC, D, THREADS>(Ks, K + base + static_cast<size_t>(kv0 - BC) * ld, ld, T - (kv0 - BC), tid);
            cp_async_commit();
        }
        if (active) {
            // The S accumulator layout of n-tiles 2kk, 2kk+1 is exactly the A fragment of P's k-block kk.
#pragma unroll
            for (int kk = 0; kk < BC / 16; ++kk) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t vb[4];
                    ldsm_x4_trans(vb, b_frag_addr(Vs, LDS, kk * 16, dp * 16, lane));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                        mma16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = rowSum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = qw + mt * 16 + (lane >> 2) + r * 8;
            if (row < T) {
                const float inv = l > 0.f ? 1.f / l : 0.f;
                bf16* dst = O + base + static_cast<size_t>(row) * ld + (lane & 3) * 2;
#pragma unroll
                for (int n = 0; n < D / 8; ++n)
                    *reinterpret_cast<uint32_t*>(dst + n * 8) =
                        pack_bf16(o[mt][n][2 * r] * inv, o[mt][n][2 * r + 1] * inv);
                if ((lane & 3) == 0)
                    LSE[static_cast<size_t>(bh) * T + row] = rowMax[mt][r] * scaleLog2 * LN2 + logf(l);
            }
        }
}

// --------------------------------------------------------------------------------------------- backward
// Pre-pass: D_i = Σ_d dO_i·O_i per (row, head) pair, and zero the fp32 dQ accumulator of that segment.
// Vector path (D/8 lanes per pair dividing 32: D = 64 → 4 pairs per warp, 128 → 2; 16-byte aligned tensors): a lane
// loads 8 elements of dO and of O with one 16-byte load each and zeroes its 8 accumulator floats with two 16-byte
// stores, the pair's lanes sum with D/8 − 1… shuffles. Otherwise one warp per pair, 4-byte accesses (the launch grid
// covers pairs / (8 · PREP_PAIRS_PER_WARP) blocks of 8 warps either way: CudaFlashAttention.prepPairsPerWarp).
template <int D>
struct Prep {
    static constexpr int LANES = D / 8;                                  // lanes per pair on the vector path
    static constexpr bool VECTOR = D % 8 == 0 && LANES >= 1 && LANES <= 32 && 32 % LANES == 0;
    static constexpr int PAIRS_PER_WARP = VECTOR ? 32 / LANES : 1;
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <int D>
__device__ __forceinline__ void backward_prep(const bf16* __restrict__ dO, const bf16* __restrict__ O,
                                              float* __restrict__ rowDot, float* __restrict__ dqAccum, int rows,
                                              int T, int H) {
    const int lane = threadIdx.x & 31;
    const long total = static_cast<long>(rows) * H;
    const long first = (static_cast<long>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5)) * Prep<D>::PAIRS_PER_WARP;
    if (first >= total) return;
    if constexpr (Prep<D>::VECTOR) {
        if (aligned16(dO) && aligned16(O) && aligned16(dqAccum)) {  // uniform
            constexpr int L = Prep<D>::LANES;
            const long pair = first + lane / L;
            const int sub = lane % L;
            float sum = 0.f;
            int row = 0, h = 0;
            if (pair < total) {
                row = static_cast<int>(pair / H), h = static_cast<int>(pair % H);
                const size_t off = static_cast<size_t>(row) * H * D + static_cast<size_t>(h) * D + sub * 8;
                const uint4 a = *reinterpret_cast<const uint4*>(dO + off), c = *reinterpret_cast<const uint4*>(O + off);
                const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, cw[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&aw[k]));
                    const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&cw[k]));
                    sum = fmaf(x.x, y.x, fmaf(x.y, y.y, sum));
                }
                float4* z = reinterpret_cast<float4*>(dqAccum + off);
                z[0] = make_float4(0.f, 0.f, 0.f, 0.f);
                z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
#pragma unroll
            for (int m = L / 2; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);  // within the pair's lanes
            if (pair < total && sub == 0) {
                const int b = row / T, t = row % T;
                rowDot[(static_cast<size_t>(b) * H + h) * T + t] = sum;
            }
            return;
        }
    }
    for (long pair = first; pair < first + Prep<D>::PAIRS_PER_WARP && pair < total; ++pair) {
        const int row = static_cast<int>(pair / H), h = static_cast<int>(pair % H);
        const size_t off = static_cast<size_t>(row) * H * D + static_cast<size_t>(h) * D;
        float sum = 0.f;
#pragma unroll
        for (int d = lane * 2; d < D; d += 64) {
            const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dO + off + d));
            const float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(O + off + d));
            sum = fmaf(a.x, c.x, fmaf(a.y, c.y, sum));
            *reinterpret_cast<float2*>(dqAccum + off + d) = make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
        if (lane == 0) {
            const int b = row / T, t = row % T;
            rowDot[(static_cast<size_t>(b) * H + h) * T + t] = sum;
        }
    }
}

// Main backward, FlashAttention-2 style: one CTA owns 64 key/value rows (4 warps × 16) of one (batch, head)
// and walks the query tiles from the diagonal to T. It works on the transposed scores Sᵀ = K Qᵀ so that each
// warp's accumulators are its own key rows: Pᵀ and dSᵀ are then A fragments for dV += Pᵀ dO and
// dK += dSᵀ Q straight from registers. dQ += dS K needs dS by query rows, so dSᵀ goes through shared
// memory and each CTA adds its part into an fp32 accumulator with atomics (order-dependent rounding, so dQ
// is not bitwise deterministic; dK and dV are). V lives in registers as A fragments of dPᵀ = V dOᵀ, which
// keeps shared memory under the 48 KB static limit for D = 128.
template <int D, int BQ>
__device__ __forceinline__ void backward(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                         const bf16* __restrict__ V, const bf16* __restrict__ dO,
                                         const float* __restrict__ LSE, const float* __restrict__ rowDot,
                                         float* __restrict__ dqAccum, bf16* __restrict__ dK, bf16* __restrict__ dV,
                                         int T, int H) {
    constexpr int THREADS = 128, BC = KV_TILE, LDS = D + 8, LDST = BQ + 8;
    static_assert(2 * BQ >= BC, "V is staged through the Q and dO tiles");
    STATIC_SHARED(__align__(128) bf16, Ks, [BC * LDS]);
    STATIC_SHARED(__align__(128) bf16, Qs, [2 * BQ * LDS]);  // Q tile, then the dO tile
    STATIC_SHARED(__align__(128) bf16, dSt, [BC * LDST]);    // dSᵀ [key][query]
    STATIC_SHARED(float, lse2, [BQ]);                        // lse·log2(e); +inf for rows ≥ T (P = 0)
    STATIC_SHARED(float, dots, [BQ]);
    bf16* dOs = Qs + BQ * LDS;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kv0 = blockIdx.x * BC;
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int kw = kv0 + warp * 16;  // first key row of this warp

    load_tile<BC, D, THREADS>(Ks, K + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    load_tile<BC, D, THREADS>(Qs, V + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    uint32_t vf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(vf[kk], a_frag_addr(Qs, LDS, warp * 16, kk * 16, lane));
    __syncthreads();

    // Q and dO go by cp.async; the per-row lse and D are read into registers when the load is issued and
    // written to shared memory only at the end of the step (store_stats), so no warp waits on them mid-step.
    float nextLse = 0.f, nextDot = 0.f;
    auto load_queries = [&](int q0) {
        load_tile<BQ, D, THREADS>(Qs, Q + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        load_tile<BQ, D, THREADS>(dOs, dO + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        cp_async_commit();
        if (tid < BQ) {
            const int row = q0 + tid;
            const bool ok = row < T;
            nextLse = ok ? LSE[static_cast<size_t>(bh) * T + row] * LOG2E : INFINITY;
            nextDot = ok ? rowDot[static_cast<size_t>(bh) * T + row] : 0.f;
        }
    };
    auto store_stats = [&]() {
        if (tid < BQ) {
            lse2[tid] = nextLse;
            dots[tid] = nextDot;
        }
    };

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.f;

    const int qFirst = kv0 / BQ, qTiles = (T + BQ - 1) / BQ;
    load_queries(qFirst * BQ);
    store_stats();
    for (int qt = qFirst; qt < qTiles; ++qt) {
        const int q0 = qt * BQ;
        cp_async_wait_all();
        __syncthreads();  // Q, dO, lse, D of this tile landed; every warp is done with the previous dSᵀ

        // Sᵀ = K Qᵀ → Pᵀ = exp(scale·Sᵀ − lse), causal: key ≤ query.
        float s[BQ / 8][4];
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t ka[4];
            ldsm_x4(ka, a_frag_addr(Ks, LDS, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < BQ / 16; ++np) {
                uint32_t qb[4];
                ldsm_x4(qb, bt_frag_addr(Qs, LDS, np * 16, kk * 16, lane));
                mma16816(s[2 * np], ka, qb[0], qb[1]);
                mma16816(s[2 * np + 1], ka, qb[2], qb[3]);
            }
        }
        const bool diagonal = q0 < kw + 15;
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int qc = n * 8 + (lane & 3) * 2 + (i & 1);
                const int key = kw + (lane >> 2) + (i >> 1) * 8;
                const float p = exp2f(fmaf(s[n][i], scaleLog2, -lse2[qc]));
                s[n][i] = diagonal && q0 + qc < key ? 0.f : p;
            }

        // dV += Pᵀ dO.
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t ob[4];
                ldsm_x4_trans(ob, b_frag_addr(dOs, LDS, kk * 16, dp * 16, lane));
                mma16816(dv[2 * dp], pa, ob[0], ob[1]);
                mma16816(dv[2 * dp + 1], pa, ob[2], ob[3]);
            }
        }

        // dPᵀ = V dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ − D_query) in place of Pᵀ.
        float dp[BQ / 8][4];
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < BQ / 16; ++np) {
                uint32_t ob[4];
                ldsm_x4(ob, bt_frag_addr(dOs, LDS, np * 16, kk * 16, lane));
                mma16816(dp[2 * np], vf[kk], ob[0], ob[1]);
                mma16816(dp[2 * np + 1], vf[kk], ob[2], ob[3]);
            }
        }
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) s[n][i] *= dp[n][i] - dots[n * 8 + (lane & 3) * 2 + (i & 1)];

        // dK += dSᵀ Q (the 1/sqrt(D) is applied once at the end), and dSᵀ → shared for dQ.
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            const uint32_t da[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dq = 0; dq < D / 16; ++dq) {
                uint32_t qb[4];
                ldsm_x4_trans(qb, b_frag_addr(Qs, LDS, kk * 16, dq * 16, lane));
                mma16816(dk[2 * dq], da, qb[0], qb[1]);
                mma16816(dk[2 * dq + 1], da, qb[2], qb[3]);
            }
            const int r = warp * 16 + (lane >> 2), c = kk * 16 + (lane & 3) * 2;
            *reinterpret_cast<uint32_t*>(dSt + r * LDST + c) = da[0];
            *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c) = da[1];
            *reinterpret_cast<uint32_t*>(dSt + r * LDST + c + 8) = da[2];
            *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c + 8) = da[3];
        }
        __syncthreads();  // dSᵀ complete; Q, dO, lse, D no longer read: prefetch the next query tile
        if (qt + 1 < qTiles) load_queries(q0 + BQ);

        // dQ (unscaled) += dS K over this CTA's 64 keys; warps split the BQ × D block into 16-row strips.
        constexpr int STRIPS = BQ / 16, DSPLIT = 4 / STRIPS, DW = D / DSPLIT;
        static_assert(DW % 16 == 0, "each warp's dQ column range must be whole 16-column blocks");
        const int qr = (warp % STRIPS) * 16, dc = (warp / STRIPS) * DW;
        float acc[DW / 8][4];
#pragma unroll
        for (int n = 0; n < DW / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            uint32_t sa[4];
            ldsm_x4_trans(sa, at_frag_addr(dSt, LDST, qr, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < DW / 16; ++np) {
                uint32_t kb[4];
                ldsm_x4_trans(kb, b_frag_addr(Ks, LDS, kk * 16, dc + np * 16, lane));
                mma16816(acc[2 * np], sa, kb[0], kb[1]);
                mma16816(acc[2 * np + 1], sa, kb[2], kb[3]);
            }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = q0 + qr + (lane >> 2) + r * 8;
            if (row < T) {
                float* dst = dqAccum + base + static_cast<size_t>(row) * ld + dc + (lane & 3) * 2;
#pragma unroll
                for (int n = 0; n < DW / 8; ++n) add_f32x2(dst + n * 8, acc[n][2 * r], acc[n][2 * r + 1]);
            }
        }
        store_stats();  // lse, D of the next tile; the barrier at the top of the loop publishes them
    }

    const float scale = rsqrtf(static_cast<float>(D));
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = kw + (lane >> 2) + r * 8;
        if (key < T) {
            const size_t off = base + static_cast<size_t>(key) * ld + (lane & 3) * 2;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                *reinterpret_cast<uint32_t*>(dK + off + n * 8) = pack_bf16(dk[n][2 * r] * scale, dk[n][2 * r + 1] * scale);
                *reinterpret_cast<uint32_t*>(dV + off + n * 8) = pack_bf16(dv[n][2 * r], dv[n][2 * r + 1]);
            }
        }
    }
}


// ====================================================================== pipelined kernels (fwd2, bwd2)
// Second generation: fwd2 is CudaFlashAttention's forward, bwd2 its backward with -Dpatchcore.flash.backward=2
// (bwd3 below is the default); the kernels above stay compiled as the fallback. Differences: dynamic shared memory above 48 KB (the runtime raises the
// function's limit), double-buffered K/V in the forward so tile j−1 loads during all of tile j's math with one
// barrier per tile, Q re-read from shared memory so every warp owns 32 query rows at every D, exp2 as one
// MUFU instruction, and grids ordered so that the longest CTAs of *all* (batch, head) pairs start first.

__device__ __forceinline__ bf16* dynamic_smem() {
#ifndef PATCHCORE_EMU
    extern __shared__ __align__(128) unsigned char flash_dynamic_smem[];
    return reinterpret_cast<bf16*>(flash_dynamic_smem);
#else
    return reinterpret_cast<bf16*>(emu::dynamic_shared());
#endif
}

// Shared memory of fwd2: Q [BR][D+8], then K [2][BC][D+8] and V [2][BC][D+8] (bf16). CudaFlashAttention.java
// computes the same number: (64·MT + 4·BC)·(D + 8)·2 bytes.
template <int D, int MT, int BC>
struct Fwd2Config {
    static constexpr int WARPS = 4, THREADS = 32 * WARPS, WR = 16 * MT, BR = WR * WARPS, LDS = D + 8;
    static constexpr int SMEM_BYTES = (BR + 4 * BC) * LDS * 2;
};

// One CTA = 4 warps × MT·16 query rows of one (batch, head); grid (B·H, query tiles), query tile index
// reversed so the tiles with the most key tiles are dispatched first across every (batch, head).
// QREG keeps Q as A fragments in registers (only where they fit: D = 64); otherwise Q fragments are re-read
// from shared memory per 16-column step, which costs 2 ldmatrix per 8·BC/16 MMAs.
// Pipeline: the K and V tiles of j−1 are issued right after the barrier that opens tile j (all warps are then
// done with tile j+1, whose buffers j−1 reuses) and land while tile j is computed.
template <int D, int MT, int BC, bool QREG>
__device__ __forceinline__ void forward2(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                         const bf16* __restrict__ V, bf16* __restrict__ O, float* __restrict__ LSE,
                                         int T, int H) {
    using C = Fwd2Config<D, MT, BC>;
    constexpr int THREADS = C::THREADS, WR = C::WR, BR = C::BR, LDS = C::LDS;
    static_assert(BC % 16 == 0 && D % 16 == 0, "whole 16×16 mma blocks");
    bf16* Qs = dynamic_smem();
    bf16* Kbuf = Qs + BR * LDS;       // [2][BC][LDS]
    bf16* Vbuf = Kbuf + 2 * BC * LDS;  // [2][BC][LDS]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BR;  // longest rows first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int nTiles = (min(q0 + BR, T) + BC - 1) / BC;

    auto load_kv = [&](int j) {
        const int kv0 = j * BC, buf = j & 1;
        load_tile<BC, D, THREADS>(Kbuf + buf * BC * LDS, K + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
        load_tile<BC, D, THREADS>(Vbuf + buf * BC * LDS, V + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    };
    load_tile<BR, D, THREADS>(Qs, Q + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
    load_kv(nTiles - 1);
    cp_async_commit();

    uint32_t qf[QREG ? MT : 1][QREG ? D / 16 : 1][4];
    if constexpr (QREG) {
        cp_async_wait_all();
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
                ldsm_x4(qf[mt][kk], a_frag_addr(Qs, LDS, warp * WR + mt * 16, kk * 16, lane));
    }

    const int qw = q0 + warp * WR;  // first query row of this warp
    float o[MT][D / 8][4];
    float rowMax[MT][2], rowSum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
        rowMax[mt][0] = rowMax[mt][1] = -INFINITY;
        rowSum[mt][0] = rowSum[mt][1] = 0.f;
    }

    for (int j = nTiles - 1; j >= 0; --j) {
        const int kv0 = j * BC;
        const bf16* Ks = Kbuf + (j & 1) * BC * LDS;
        const bf16* Vs = Vbuf + (j & 1) * BC * LDS;
        cp_async_wait_all();  // the only group in flight is tile j's (and Q's, the first time)
        __syncthreads();      // tile j visible to all; every warp is done with tile j+1, whose buffers j−1 takes
        if (j > 0) {
            load_kv(j - 1);
            cp_async_commit();
        }
        if (kv0 > qw + WR - 1) continue;  // every row of this warp precedes the tile: all masked

        float s[MT][BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int n = 0; n < BC / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (QREG) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) qa[mt][i] = qf[mt][kk][i];
                } else {
                    ldsm_x4(qa[mt], a_frag_addr(Qs, LDS, warp * WR + mt * 16, kk * 16, lane));
                }
            }
#pragma unroll
            for (int np = 0; np < BC / 16; ++np) {
                uint32_t kb[4];
                ldsm_x4(kb, bt_frag_addr(Ks, LDS, np * 16, kk * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    mma16816(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }
        // Causal mask (col > row); it also hides columns ≥ T from every row < T.
        if (kv0 + BC - 1 > qw) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int n = 0; n < BC / 8; ++n)
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const int col = kv0 + n * 8 + (lane & 3) * 2 + (i & 1);
                        const int row = qw + mt * 16 + (lane >> 2) + (i >> 1) * 8;
                        if (col > row) s[mt][n][i] = -INFINITY;
                    }
        }
        // Online softmax; a row is spread over the 4 lanes of a quad (rows g and g+8 of each 16-row block).
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = rowMax[mt][r];
#pragma unroll
                for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mScaled = mx == -INFINITY ? 0.f : mx * scaleLog2;  // fully masked row: no NaN
                const float alpha = exp2_ftz(rowMax[mt][r] * scaleLog2 - mScaled);
                rowMax[mt][r] = mx;
                float sum = 0.f;
#pragma unroll
                for (int n = 0; n < BC / 8; ++n) {
                    s[mt][n][2 * r] = exp2_ftz(fmaf(s[mt][n][2 * r], scaleLog2, -mScaled));
                    s[mt][n][2 * r + 1] = exp2_ftz(fmaf(s[mt][n][2 * r + 1], scaleLog2, -mScaled));
                    sum += s[mt][n][2 * r] + s[mt][n][2 * r + 1];
                }
                rowSum[mt][r] = rowSum[mt][r] * alpha + sum;
#pragma unroll
                for (int n = 0; n < D / 8; ++n) {
                    o[mt][n][2 * r] *= alpha;
                    o[mt][n][2 * r + 1] *= alpha;
                }
            }
        // O += P V; the S accumulator layout of n-tiles 2kk, 2kk+1 is exactly the A fragment of P's k-block kk.
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t vb[4];
                ldsm_x4_trans(vb, b_frag_addr(Vs, LDS, kk * 16, dp * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                    mma16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
    }

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = rowSum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = qw + mt * 16 + (lane >> 2) + r * 8;
            if (row < T) {
                const float inv = l > 0.f ? 1.f / l : 0.f;
                bf16* dst = O + base + static_cast<size_t>(row) * ld + (lane & 3) * 2;
#pragma unroll
                for (int n = 0; n < D / 8; ++n)
                    *reinterpret_cast<uint32_t*>(dst + n * 8) =
                        pack_bf16(o[mt][n][2 * r] * inv, o[mt][n][2 * r + 1] * inv);
                if ((lane & 3) == 0)
                    LSE[static_cast<size_t>(bh) * T + row] = rowMax[mt][r] * scaleLog2 * LN2 + logf(l);
            }
        }
}

// Shared memory of bwd2 (bf16 tiles, then fp32 row statistics): K [64][D+8], V [64][D+8] (only when V is not
// held in registers), Q [2][BQ][D+8], dO [2][BQ][D+8], dSᵀ [64][BQ+8], lse·log2(e) [2][BQ], D_i [2][BQ].
// CudaFlashAttention.java computes the same number.
template <int D, int BQ, bool VREG>
struct Bwd2Config {
    static constexpr int BC = KV_TILE, THREADS = 128, LDS = D + 8, LDST = BQ + 8;
    static constexpr int SMEM_BYTES = (BC * LDS * (VREG ? 1 : 2) + 4 * BQ * LDS + BC * LDST) * 2 + 4 * BQ * 4;
};

// Backward as flash::backward (64 keys per CTA, 16 per warp, transposed scores, dQ by fp32 atomics), with:
// Q/dO tiles (and their lse, D_i) double-buffered, so tile qt+1 is issued right after the barrier that opens
// tile qt and has the whole step to land; BQ = 64 at every D (dynamic shared memory), where VREG = false reads
// V's A fragments from shared memory instead of holding them in registers (that is what frees the registers
// for BQ = 64 at D = 96, 128); grid (B·H, key tiles) so key tile 0 (the most query tiles) of every
// (batch, head) is dispatched first; exp2 as one MUFU op.
template <int D, int BQ, bool VREG>
__device__ __forceinline__ void backward2(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                          const bf16* __restrict__ V, const bf16* __restrict__ dO,
                                          const float* __restrict__ LSE, const float* __restrict__ rowDot,
                                          float* __restrict__ dqAccum, bf16* __restrict__ dK, bf16* __restrict__ dV,
                                          int T, int H) {
    using C = Bwd2Config<D, BQ, VREG>;
    constexpr int THREADS = C::THREADS, BC = C::BC, LDS = C::LDS, LDST = C::LDST;
    static_assert(2 * BQ >= BC, "V is staged through the Q buffers");
    static_assert(BQ % 16 == 0 && BQ <= 128, "whole 16-row query blocks; the stats loaders use one thread per row");
    bf16* Ks = dynamic_smem();
    bf16* Vs = Ks + BC * LDS;                         // only read when !VREG
    bf16* Qbuf = Vs + (VREG ? 0 : BC * LDS);          // [2][BQ][LDS]
    bf16* dObuf = Qbuf + 2 * BQ * LDS;                // [2][BQ][LDS]
    bf16* dSt = dObuf + 2 * BQ * LDS;                 // [BC][LDST], dSᵀ [key][query]
    float* lseBuf = reinterpret_cast<float*>(dSt + BC * LDST);  // [2][BQ]; +inf for rows ≥ T (P = 0)
    float* dotBuf = lseBuf + 2 * BQ;                            // [2][BQ]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kv0 = blockIdx.y * BC;  // blockIdx.y = 0 (the longest key tile) is dispatched first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int kw = kv0 + warp * 16;  // first key row of this warp

    load_tile<BC, D, THREADS>(Ks, K + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    load_tile<BC, D, THREADS>(VREG ? Qbuf : Vs, V + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    cp_async_commit();
    uint32_t vf[VREG ? D / 16 : 1][4];
    if constexpr (VREG) {
        cp_async_wait_all();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(vf[kk], a_frag_addr(Qbuf, LDS, warp * 16, kk * 16, lane));
        __syncthreads();  // the Q buffers are free again
    }

    auto load_queries = [&](int qt) {
        const int q0 = qt * BQ, buf = qt & 1;
        load_tile<BQ, D, THREADS>(Qbuf + buf * BQ * LDS, Q + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        load_tile<BQ, D, THREADS>(dObuf + buf * BQ * LDS, dO + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        cp_async_commit();
    };
    // lse and D_i go through registers: read when the tile is issued, stored to the tile's buffer at the end of
    // the step (nobody reads that buffer before the next barrier), so no warp waits on the loads mid-step.
    float nextLse = 0.f, nextDot = 0.f;
    auto read_stats = [&](int qt) {
        if (tid < BQ) {
            const int row = qt * BQ + tid;
            const bool ok = row < T;
            nextLse = ok ? LSE[static_cast<size_t>(bh) * T + row] * LOG2E : INFINITY;
            nextDot = ok ? rowDot[static_cast<size_t>(bh) * T + row] : 0.f;
        }
    };
    auto store_stats = [&](int qt) {
        if (tid < BQ) {
            lseBuf[(qt & 1) * BQ + tid] = nextLse;
            dotBuf[(qt & 1) * BQ + tid] = nextDot;
        }
    };

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.f;

    const int qFirst = kv0 / BQ, qTiles = (T + BQ - 1) / BQ;
    load_queries(qFirst);
    read_stats(qFirst);
    store_stats(qFirst);
    for (int qt = qFirst; qt < qTiles; ++qt) {
        const int q0 = qt * BQ, buf = qt & 1;
        const bf16* Qs = Qbuf + buf * BQ * LDS;
        const bf16* dOs = dObuf + buf * BQ * LDS;
        const float* lse2 = lseBuf + buf * BQ;
        const float* dots = dotBuf + buf * BQ;
        cp_async_wait_all();  // the only group in flight is tile qt's (and K, V the first time)
        __syncthreads();      // tile qt and its stats visible; every warp is done with step qt−1 (its buffers, dSᵀ)
        if (qt + 1 < qTiles) {
            load_queries(qt + 1);
            read_stats(qt + 1);
        }

        // Sᵀ = K Qᵀ → Pᵀ = exp(scale·Sᵀ − lse), causal: key ≤ query.
        float s[BQ / 8][4];
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t ka[4];
            ldsm_x4(ka, a_frag_addr(Ks, LDS, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < BQ / 16; ++np) {
                uint32_t qb[4];
                ldsm_x4(qb, bt_frag_addr(Qs, LDS, np * 16, kk * 16, lane));
                mma16816(s[2 * np], ka, qb[0], qb[1]);
                mma16816(s[2 * np + 1], ka, qb[2], qb[3]);
            }
        }
        const bool diagonal = q0 < kw + 15;
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int qc = n * 8 + (lane & 3) * 2 + (i & 1);
                const int key = kw + (lane >> 2) + (i >> 1) * 8;
                const float p = exp2_ftz(fmaf(s[n][i], scaleLog2, -lse2[qc]));
                s[n][i] = diagonal && q0 + qc < key ? 0.f : p;
            }

        // dV += Pᵀ dO.
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t ob[4];
                ldsm_x4_trans(ob, b_frag_addr(dOs, LDS, kk * 16, dp * 16, lane));
                mma16816(dv[2 * dp], pa, ob[0], ob[1]);
                mma16816(dv[2 * dp + 1], pa, ob[2], ob[3]);
            }
        }

        // dPᵀ = V dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ − D_query) in place of Pᵀ.
        float dp[BQ / 8][4];
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t va[4];
            if constexpr (VREG) {
#pragma unroll
                for (int i = 0; i < 4; ++i) va[i] = vf[kk][i];
            } else {
                ldsm_x4(va, a_frag_addr(Vs, LDS, warp * 16, kk * 16, lane));
            }
#pragma unroll
            for (int np = 0; np < BQ / 16; ++np) {
                uint32_t ob[4];
                ldsm_x4(ob, bt_frag_addr(dOs, LDS, np * 16, kk * 16, lane));
                mma16816(dp[2 * np], va, ob[0], ob[1]);
                mma16816(dp[2 * np + 1], va, ob[2], ob[3]);
            }
        }
#pragma unroll
        for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) s[n][i] *= dp[n][i] - dots[n * 8 + (lane & 3) * 2 + (i & 1)];

        // dK += dSᵀ Q (the 1/sqrt(D) is applied once at the end), and dSᵀ → shared for dQ.
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            const uint32_t da[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dq = 0; dq < D / 16; ++dq) {
                uint32_t qb[4];
                ldsm_x4_trans(qb, b_frag_addr(Qs, LDS, kk * 16, dq * 16, lane));
                mma16816(dk[2 * dq], da, qb[0], qb[1]);
                mma16816(dk[2 * dq + 1], da, qb[2], qb[3]);
            }
            const int r = warp * 16 + (lane >> 2), c = kk * 16 + (lane & 3) * 2;
            *reinterpret_cast<uint32_t*>(dSt + r * LDST + c) = da[0];
            *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c) = da[1];
            *reinterpret_cast<uint32_t*>(dSt + r * LDST + c + 8) = da[2];
            *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c + 8) = da[3];
        }
        __syncthreads();  // dSᵀ complete

        // dQ (unscaled) += dS K over this CTA's 64 keys; warps split the BQ × D block into 16-row strips.
        constexpr int STRIPS = BQ / 16 < 4 ? BQ / 16 : 4, DSPLIT = 4 / STRIPS, DW = D / DSPLIT;
        static_assert(STRIPS * DSPLIT == 4 && (BQ / 16) % STRIPS == 0 && DW % 16 == 0,
                      "4 warps tile the dQ block in whole 16×16 blocks");
#pragma unroll
        for (int strip = 0; strip < BQ / 16; strip += STRIPS) {
            const int qr = (strip + warp % STRIPS) * 16, dc = (warp / STRIPS) * DW;
            float acc[DW / 8][4];
#pragma unroll
            for (int n = 0; n < DW / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BC / 16; ++kk) {
                uint32_t sa[4];
                ldsm_x4_trans(sa, at_frag_addr(dSt, LDST, qr, kk * 16, lane));
#pragma unroll
                for (int np = 0; np < DW / 16; ++np) {
                    uint32_t kb[4];
                    ldsm_x4_trans(kb, b_frag_addr(Ks, LDS, kk * 16, dc + np * 16, lane));
                    mma16816(acc[2 * np], sa, kb[0], kb[1]);
                    mma16816(acc[2 * np + 1], sa, kb[2], kb[3]);
                }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int row = q0 + qr + (lane >> 2) + r * 8;
                if (row < T) {
                    float* dst = dqAccum + base + static_cast<size_t>(row) * ld + dc + (lane & 3) * 2;
#pragma unroll
                    for (int n = 0; n < DW / 8; ++n) add_f32x2(dst + n * 8, acc[n][2 * r], acc[n][2 * r + 1]);
                }
            }
        }
        if (qt + 1 < qTiles) store_stats(qt + 1);  // buffer (qt+1)&1 was last read in step qt−1
    }

    const float scale = rsqrtf(static_cast<float>(D));
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = kw + (lane >> 2) + r * 8;
        if (key < T) {
            const size_t off = base + static_cast<size_t>(key) * ld + (lane & 3) * 2;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                *reinterpret_cast<uint32_t*>(dK + off + n * 8) = pack_bf16(dk[n][2 * r] * scale, dk[n][2 * r + 1] * scale);
                *reinterpret_cast<uint32_t*>(dV + off + n * 8) = pack_bf16(dv[n][2 * r], dv[n][2 * r + 1]);
            }
        }
    }
}


// ================================================================================ bwd3: 128-key CTAs
// Third backward generation (the default; CudaFlashAttention selects bwd2 / the first generation with
// -Dpatchcore.flash.backward=2 / =1). Per warp the math, fragment layouts and tails handling are bwd2's (16 key
// rows per warp, transposed scores, dK and dV in registers, Q/dO and their statistics double-buffered); what
// changes is the CTA: 8 warps own 128 keys, so
//   * every Q/dO tile fetched from L2 serves 128 keys instead of 64 (half the L2 → shared traffic per FLOP);
//   * each warp's dQ partial sums run over 128 keys before they are added to the fp32 accumulator: half the
//     global reductions per FLOP, and on sm_90 lane pairs swap halves of their C fragments so that every
//     reduction is one 16-byte red.global.add.v4.f32 (a quarter of bwd2's reduction instructions);
//   * a warp whose 16 keys all follow the query tile (the first tile of the upper key half) skips its math and
//     only writes zeros to its dSᵀ rows (dQ reads them).
// One CTA per SM (≤ 255 registers × 256 threads): the 8 warps of one CTA replace bwd2's 2 CTAs × 4 warps.

__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], const bf16* p) {
#ifndef PATCHCORE_EMU
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(p)));
#else
    emu::ldmatrix(r, p, 2, true);
#endif
}

// Adds one 16×8 fp32 C fragment (rows g, g+8, columns 2c, 2c+1) into a row-major global tile starting at
// `tile` (row pitch ld); only rows < rowsValid are written. Every lane of the warp must call it (shuffles).
__device__ __forceinline__ void red_c_frag(float* tile, size_t ld, const float (&c)[4], int rowsValid, int lane) {
    const int g = lane >> 2, q = lane & 3;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Even lane q takes row g, columns 2q..2q+3 (its own pair and its odd neighbour's); odd lane q takes row
    // g+8, columns 2q−2..2q+1 (its even neighbour's pair and its own).
    const bool odd = q & 1;
    const float r0 = __shfl_xor_sync(0xffffffffu, odd ? c[0] : c[2], 1);
    const float r1 = __shfl_xor_sync(0xffffffffu, odd ? c[1] : c[3], 1);
    const int row = odd ? g + 8 : g;
    if (row < rowsValid) {
        float* p = tile + static_cast<size_t>(row) * ld + (odd ? 2 * q - 2 : 2 * q);  // 16-byte aligned
        const float v0 = odd ? r0 : c[0], v1 = odd ? r1 : c[1], v2 = odd ? c[2] : r0, v3 = odd ? c[3] : r1;
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v0), "f"(v1), "f"(v2), "f"(v3)
                     : "memory");
    }
#else
    if (g < rowsValid) add_f32x2(tile + static_cast<size_t>(g) * ld + 2 * q, c[0], c[1]);
    if (g + 8 < rowsValid) add_f32x2(tile + static_cast<size_t>(g + 8) * ld + 2 * q, c[2], c[3]);
#endif
}

// Shared memory of bwd3 (bf16 tiles, then fp32 row statistics): K [128][D+8], V [128][D+8] (only when V is not
// held in registers), Q [2][BQ][D+8], dO [2][BQ][D+8], dSᵀ [128][BQ+8], lse·log2(e) [2][BQ], D_i [2][BQ].
// CudaFlashAttention.java computes the same number.
template <int D, int BQ, bool VREG>
struct Bwd3Config {
    static constexpr int WARPS = 8, THREADS = 32 * WARPS, BC = 16 * WARPS, LDS = D + 8, LDST = BQ + 8;
    static constexpr int SMEM_BYTES = (BC * LDS * (VREG ? 1 : 2) + 4 * BQ * LDS + BC * LDST) * 2 + 4 * BQ * 4;
};

template <int D, int BQ, bool VREG>
__device__ __forceinline__ void backward3(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                          const bf16* __restrict__ V, const bf16* __restrict__ dO,
                                          const float* __restrict__ LSE, const float* __restrict__ rowDot,
                                          float* __restrict__ dqAccum, bf16* __restrict__ dK, bf16* __restrict__ dV,
                                          int T, int H) {
    using C = Bwd3Config<D, BQ, VREG>;
    constexpr int WARPS = C::WARPS, THREADS = C::THREADS, BC = C::BC, LDS = C::LDS, LDST = C::LDST;
    static_assert(4 * BQ >= BC, "V is staged through the Q and dO buffers");
    static_assert(BQ % 16 == 0 && BC % BQ == 0 && BQ <= THREADS,
                  "whole 16-row query blocks, key tiles start on a query tile, one stats thread per row");
    bf16* Ks = dynamic_smem();
    bf16* Vs = Ks + BC * LDS;                         // only read when !VREG
    bf16* Qbuf = Vs + (VREG ? 0 : BC * LDS);          // [2][BQ][LDS]
    bf16* dObuf = Qbuf + 2 * BQ * LDS;                // [2][BQ][LDS], right after Qbuf (V staging uses both)
    bf16* dSt = dObuf + 2 * BQ * LDS;                 // [BC][LDST], dSᵀ [key][query]
    float* lseBuf = reinterpret_cast<float*>(dSt + BC * LDST);  // [2][BQ]; +inf for rows ≥ T (P = 0)
    float* dotBuf = lseBuf + 2 * BQ;                            // [2][BQ]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kv0 = blockIdx.y * BC;  // blockIdx.y = 0 (the longest key tile) is dispatched first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int kw = kv0 + warp * 16;  // first key row of this warp

    load_tile<BC, D, THREADS>(Ks, K + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    load_tile<BC, D, THREADS>(VREG ? Qbuf : Vs, V + base + static_cast<size_t>(kv0) * ld, ld, T - kv0, tid);
    cp_async_commit();
    uint32_t vf[VREG ? D / 16 : 1][4];
    if constexpr (VREG) {
        cp_async_wait_all();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(vf[kk], a_frag_addr(Qbuf, LDS, warp * 16, kk * 16, lane));
        __syncthreads();  // the Q and dO buffers are free again
    }

    auto load_queries = [&](int qt) {
        const int q0 = qt * BQ, buf = qt & 1;
        load_tile<BQ, D, THREADS>(Qbuf + buf * BQ * LDS, Q + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        load_tile<BQ, D, THREADS>(dObuf + buf * BQ * LDS, dO + base + static_cast<size_t>(q0) * ld, ld, T - q0, tid);
        cp_async_commit();
    };
    // lse and D_i go through registers: read when the tile is issued, stored to the tile's buffer at the end of
    // the step (nobody reads that buffer before the next barrier), so no warp waits on the loads mid-step.
    float nextLse = 0.f, nextDot = 0.f;
    auto read_stats = [&](int qt) {
        if (tid < BQ) {
            const int row = qt * BQ + tid;
            const bool ok = row < T;
            nextLse = ok ? LSE[static_cast<size_t>(bh) * T + row] * LOG2E : INFINITY;
            nextDot = ok ? rowDot[static_cast<size_t>(bh) * T + row] : 0.f;
        }
    };
    auto store_stats = [&](int qt) {
        if (tid < BQ) {
            lseBuf[(qt & 1) * BQ + tid] = nextLse;
            dotBuf[(qt & 1) * BQ + tid] = nextDot;
        }
    };

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.f;

    const int qFirst = kv0 / BQ, qTiles = (T + BQ - 1) / BQ;
    load_queries(qFirst);
    read_stats(qFirst);
    store_stats(qFirst);
    for (int qt = qFirst; qt < qTiles; ++qt) {
        const int q0 = qt * BQ, buf = qt & 1;
        const bf16* Qs = Qbuf + buf * BQ * LDS;
        const bf16* dOs = dObuf + buf * BQ * LDS;
        const float* lse2 = lseBuf + buf * BQ;
        const float* dots = dotBuf + buf * BQ;
        cp_async_wait_all();  // the only group in flight is tile qt's (and K, V the first time)
        __syncthreads();      // tile qt and its stats visible; every warp is done with step qt−1 (its buffers, dSᵀ)
        if (qt + 1 < qTiles) {
            load_queries(qt + 1);
            read_stats(qt + 1);
        }

        if (kw <= q0 + BQ - 1) {  // some key of this warp precedes or meets some query of the tile
            // Sᵀ = K Qᵀ → Pᵀ = exp(scale·Sᵀ − lse), causal: key ≤ query.
            float s[BQ / 8][4];
#pragma unroll
            for (int n = 0; n < BQ / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t ka[4];
                ldsm_x4(ka, a_frag_addr(Ks, LDS, warp * 16, kk * 16, lane));
#pragma unroll
                for (int np = 0; np < BQ / 16; ++np) {
                    uint32_t qb[4];
                    ldsm_x4(qb, bt_frag_addr(Qs, LDS, np * 16, kk * 16, lane));
                    mma16816(s[2 * np], ka, qb[0], qb[1]);
                    mma16816(s[2 * np + 1], ka, qb[2], qb[3]);
                }
            }
            const bool diagonal = q0 < kw + 15;
#pragma unroll
            for (int n = 0; n < BQ / 8; ++n) {
                const int qc = n * 8 + (lane & 3) * 2;  // this lane's query columns qc, qc+1
                const float2 l2 = *reinterpret_cast<const float2*>(lse2 + qc);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int key = kw + (lane >> 2) + (i >> 1) * 8;
                    const float p = exp2_ftz(fmaf(s[n][i], scaleLog2, -((i & 1) ? l2.y : l2.x)));
                    s[n][i] = diagonal && q0 + qc + (i & 1) < key ? 0.f : p;
                }
            }

            // dV += Pᵀ dO.
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                        pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t ob[4];
                    ldsm_x4_trans(ob, b_frag_addr(dOs, LDS, kk * 16, dp * 16, lane));
                    mma16816(dv[2 * dp], pa, ob[0], ob[1]);
                    mma16816(dv[2 * dp + 1], pa, ob[2], ob[3]);
                }
            }

            // dPᵀ = V dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ − D_query) in place of Pᵀ.
            float dp[BQ / 8][4];
#pragma unroll
            for (int n = 0; n < BQ / 8; ++n) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t va[4];
                if constexpr (VREG) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) va[i] = vf[kk][i];
                } else {
                    ldsm_x4(va, a_frag_addr(Vs, LDS, warp * 16, kk * 16, lane));
                }
#pragma unroll
                for (int np = 0; np < BQ / 16; ++np) {
                    uint32_t ob[4];
                    ldsm_x4(ob, bt_frag_addr(dOs, LDS, np * 16, kk * 16, lane));
                    mma16816(dp[2 * np], va, ob[0], ob[1]);
                    mma16816(dp[2 * np + 1], va, ob[2], ob[3]);
                }
            }
#pragma unroll
            for (int n = 0; n < BQ / 8; ++n) {
                const float2 d2 = *reinterpret_cast<const float2*>(dots + n * 8 + (lane & 3) * 2);
#pragma unroll
                for (int i = 0; i < 4; ++i) s[n][i] *= dp[n][i] - ((i & 1) ? d2.y : d2.x);
            }

            // dK += dSᵀ Q (the 1/sqrt(D) is applied once at the end), and dSᵀ → shared for dQ.
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                const uint32_t da[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                        pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int dq = 0; dq < D / 16; ++dq) {
                    uint32_t qb[4];
                    ldsm_x4_trans(qb, b_frag_addr(Qs, LDS, kk * 16, dq * 16, lane));
                    mma16816(dk[2 * dq], da, qb[0], qb[1]);
                    mma16816(dk[2 * dq + 1], da, qb[2], qb[3]);
                }
                const int r = warp * 16 + (lane >> 2), c = kk * 16 + (lane & 3) * 2;
                *reinterpret_cast<uint32_t*>(dSt + r * LDST + c) = da[0];
                *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c) = da[1];
                *reinterpret_cast<uint32_t*>(dSt + r * LDST + c + 8) = da[2];
                *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c + 8) = da[3];
            }
        } else {
            // All of this warp's keys follow every query of the tile: Pᵀ = dSᵀ = 0; dQ still reads its rows.
#pragma unroll
            for (int kk = 0; kk < BQ / 16; ++kk) {
                const int r = warp * 16 + (lane >> 2), c = kk * 16 + (lane & 3) * 2;
                *reinterpret_cast<uint32_t*>(dSt + r * LDST + c) = 0u;
                *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c) = 0u;
                *reinterpret_cast<uint32_t*>(dSt + r * LDST + c + 8) = 0u;
                *reinterpret_cast<uint32_t*>(dSt + (r + 8) * LDST + c + 8) = 0u;
            }
        }
        __syncthreads();  // dSᵀ complete

        // dQ (unscaled) += dS K over this CTA's 128 keys; the 8 warps split the BQ × D block into 16-row strips
        // × DW columns (DW a multiple of 8: an odd number of 8-column tiles ends with one ldmatrix.x2).
        constexpr int STRIPS = BQ / 16 < WARPS ? BQ / 16 : WARPS, DSPLIT = WARPS / STRIPS, DW = D / DSPLIT;
        static_assert(STRIPS * DSPLIT == WARPS && (BQ / 16) % STRIPS == 0 && DW * DSPLIT == D && DW % 8 == 0,
                      "8 warps tile the dQ block in 16-row × 8k-column pieces");
#pragma unroll
        for (int strip = 0; strip < BQ / 16; strip += STRIPS) {
            const int qr = (strip + warp % STRIPS) * 16, dc = (warp / STRIPS) * DW;
            float acc[DW / 8][4];
#pragma unroll
            for (int n = 0; n < DW / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BC / 16; ++kk) {
                uint32_t sa[4];
                ldsm_x4_trans(sa, at_frag_addr(dSt, LDST, qr, kk * 16, lane));
#pragma unroll
                for (int np = 0; np < DW / 16; ++np) {
                    uint32_t kb[4];
                    ldsm_x4_trans(kb, b_frag_addr(Ks, LDS, kk * 16, dc + np * 16, lane));
                    mma16816(acc[2 * np], sa, kb[0], kb[1]);
                    mma16816(acc[2 * np + 1], sa, kb[2], kb[3]);
                }
                if constexpr (DW % 16 != 0) {
                    uint32_t kb[2];
                    ldsm_x2_trans(kb, b_frag_addr(Ks, LDS, kk * 16, dc + DW - 8, lane));
                    mma16816(acc[DW / 8 - 1], sa, kb[0], kb[1]);
                }
            }
            float* tile = dqAccum + base + static_cast<size_t>(q0 + qr) * ld + dc;
#pragma unroll
            for (int n = 0; n < DW / 8; ++n) red_c_frag(tile + n * 8, ld, acc[n], T - (q0 + qr), lane);
        }
        if (qt + 1 < qTiles) store_stats(qt + 1);  // buffer (qt+1)&1 was last read in step qt−1
    }

    const float scale = rsqrtf(static_cast<float>(D));
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = kw + (lane >> 2) + r * 8;
        if (key < T) {
            const size_t off = base + static_cast<size_t>(key) * ld + (lane & 3) * 2;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                *reinterpret_cast<uint32_t*>(dK + off + n * 8) = pack_bf16(dk[n][2 * r] * scale, dk[n][2 * r + 1] * scale);
                *reinterpret_cast<uint32_t*>(dV + off + n * 8) = pack_bf16(dv[n][2 * r], dv[n][2 * r + 1]);
            }
        }
    }
}

}  // namespace flash

// ------------------------------------------------------------------------------------- exported kernels
// Names: flash_attn_fwd_d{D}_w{warps}_m{16-row blocks per warp}, flash_attn_bwd_prep_d{D}, flash_attn_bwd_d{D}, flash_attn_dq_convert.

#define FLASH_ATTN_FWD(D, W, MT)                                                                                \
    extern "C" __global__ void __launch_bounds__(32 * W) flash_attn_fwd_d##D##_w##W##_m##MT(                     \
        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, __nv_bfloat16* out, float* lse, \
        int T, int H) {                                                                                          \
        flash::forward<D, W, MT>(q, k, v, out, lse, T, H);                                                       \
    }

// BQ (query rows per backward step) is 64 where the tiles fit 48 KB of shared memory, 32 above.
#define FLASH_ATTN_BWD(D, BQ)                                                                                     \
    extern "C" __global__ void __launch_bounds__(256) flash_attn_bwd_prep_d##D(                                 \
        const __nv_bfloat16* dO, const __nv_bfloat16* o, float* rowDot, float* dqAccum, int rows, int T, int H) { \
        flash::backward_prep<D>(dO, o, rowDot, dqAccum, rows, T, H);                                            \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(128) flash_attn_bwd_d##D(                                      \
        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* dO,        \
        const float* lse, const float* rowDot, float* dqAccum, __nv_bfloat16* dk, __nv_bfloat16* dv, int T,     \
        int H) {                                                                                                \
        flash::backward<D, BQ>(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);                                \
    }

FLASH_ATTN_FWD(64, 4, 1)
FLASH_ATTN_FWD(64, 8, 1)
FLASH_ATTN_FWD(64, 4, 2)
FLASH_ATTN_FWD(80, 4, 1)
FLASH_ATTN_FWD(80, 8, 1)
FLASH_ATTN_FWD(96, 4, 1)
FLASH_ATTN_FWD(96, 8, 1)
FLASH_ATTN_FWD(128, 4, 1)
FLASH_ATTN_FWD(128, 8, 1)

FLASH_ATTN_BWD(64, 64)
FLASH_ATTN_BWD(80, 64)
FLASH_ATTN_BWD(96, 32)
FLASH_ATTN_BWD(128, 32)

// Pipelined kernels (see "pipelined kernels" above). Names encode the configuration CudaFlashAttention.java
// needs for the grid and the dynamic shared memory: fwd2 _m{16-row blocks per warp}_n{key tile}_q{Q in
// registers}, bwd2 _q{query tile}_v{V in registers}.
#define FLASH_ATTN_FWD2(D, MT, BC, QREG)                                                                       \
    extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd2_d##D##_m##MT##_n##BC##_q##QREG(            \
        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, __nv_bfloat16* out, float* lse, \
        int T, int H) {                                                                                          \
        flash::forward2<D, MT, BC, QREG != 0>(q, k, v, out, lse, T, H);                                           \
    }
#define FLASH_ATTN_BWD2(D, BQ, VREG)                                                                             \
    extern "C" __global__ void __launch_bounds__(128) flash_attn_bwd2_d##D##_q##BQ##_v##VREG(                    \
        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* dO,        \
        const float* lse, const float* rowDot, float* dqAccum, __nv_bfloat16* dk, __nv_bfloat16* dv, int T,     \
        int H) {                                                                                                \
        flash::backward2<D, BQ, VREG != 0>(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);                    \
    }

// Configurations without spills (ptxas, sm_80 and sm_90a); the first of each D is the one CudaFlashAttention
// launches, the others are alternatives the GPU harness times. Larger key tiles at D = 96/128 (forward) and
// BQ = 64 at D = 96/128 (backward) spill.
FLASH_ATTN_FWD2(64, 2, 64, 1)
FLASH_ATTN_FWD2(64, 2, 64, 0)
FLASH_ATTN_FWD2(80, 2, 64, 0)
FLASH_ATTN_FWD2(96, 2, 48, 0)
FLASH_ATTN_FWD2(96, 2, 32, 0)
FLASH_ATTN_FWD2(128, 2, 32, 0)

FLASH_ATTN_BWD2(64, 64, 1)
FLASH_ATTN_BWD2(64, 64, 0)
FLASH_ATTN_BWD2(80, 64, 0)
FLASH_ATTN_BWD2(96, 32, 1)
FLASH_ATTN_BWD2(96, 32, 0)
FLASH_ATTN_BWD2(128, 32, 0)

// bwd3 (128-key CTAs of 8 warps): _q{query tile}_v{V in registers}, launched with 256 threads.
#define FLASH_ATTN_BWD3(D, BQ, VREG)                                                                             \
    extern "C" __global__ void __launch_bounds__(256) flash_attn_bwd3_d##D##_q##BQ##_v##VREG(                    \
        const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* dO,        \
        const float* lse, const float* rowDot, float* dqAccum, __nv_bfloat16* dk, __nv_bfloat16* dv, int T,     \
        int H) {                                                                                                \
        flash::backward3<D, BQ, VREG != 0>(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);                    \
    }

FLASH_ATTN_BWD3(64, 64, 1)
FLASH_ATTN_BWD3(64, 64, 0)
FLASH_ATTN_BWD3(80, 64, 0)
FLASH_ATTN_BWD3(96, 32, 1)
FLASH_ATTN_BWD3(96, 32, 0)
FLASH_ATTN_BWD3(128, 32, 0)

// dq = scale · dqAccum, fp32 → bf16: eight elements per step (two 16-byte loads, one 16-byte store) when both are
// 16-byte aligned, the rest two at a time (the width H·D is even).
extern "C" __global__ void __launch_bounds__(256) flash_attn_dq_convert(const float* __restrict__ dqAccum,
                                                                      __nv_bfloat16* __restrict__ dq, long n,
                                                                      float scale) {
    const long stride = static_cast<long>(gridDim.x) * blockDim.x, start = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long done = 0;
    if (flash::aligned16(dqAccum) && flash::aligned16(dq)) {
        const long octets = n / 8;
        for (long i = start; i < octets; i += stride) {
            const float4 a = reinterpret_cast<const float4*>(dqAccum)[2 * i], b = reinterpret_cast<const float4*>(dqAccum)[2 * i + 1];
            const __nv_bfloat162 p0 = __floats2bfloat162_rn(a.x * scale, a.y * scale), p1 = __floats2bfloat162_rn(a.z * scale, a.w * scale);
            const __nv_bfloat162 p2 = __floats2bfloat162_rn(b.x * scale, b.y * scale), p3 = __floats2bfloat162_rn(b.z * scale, b.w * scale);
            uint4 o;
            o.x = *reinterpret_cast<const uint32_t*>(&p0);
            o.y = *reinterpret_cast<const uint32_t*>(&p1);
            o.z = *reinterpret_cast<const uint32_t*>(&p2);
            o.w = *reinterpret_cast<const uint32_t*>(&p3);
            reinterpret_cast<uint4*>(dq)[i] = o;
        }
        done = octets * 8;
    }
    const long pairs = (n - done) / 2;
    for (long i = start; i < pairs; i += stride) {
        const float2 a = reinterpret_cast<const float2*>(dqAccum + done)[i];
        reinterpret_cast<__nv_bfloat162*>(dq + done)[i] = __floats2bfloat162_rn(a.x * scale, a.y * scale);
    }
}
