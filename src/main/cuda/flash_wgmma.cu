// Causal flash attention for Hopper (sm_90a) with warpgroup MMA (wgmma): CudaFlashAttention's forward variants 3
// (D = 64, 128), 4 (inter-warpgroup ping-pong, described above forward_wgmma_pingpong), 5 (the ping-pong made
// persistent), 6 (5 with TMA loads; the default at D = 128 since H100 run 12: 378 TFLOP/s, 1.14× the ping-pong
// kernel), 7 (D = 64: 6 with three warpgroups, the default from run 14 to run 16: 289-309 TFLOP/s), the D = 64
// default since run 16 (the three-warpgroup kernel plus a producer warpgroup, forward_wgmma_producer: 332-353), and
// the default backward at D = 64 (described above backward_wgmma_d64) and D = 128 (backward_wgmma_d128;
// H100 run 12: 275 TFLOP/s, 1.56× the mma.sync bwd3). Same semantics and outputs as flash_attn_fwd2_* (flash_attention.cu): out = softmax(Q Kᵀ / sqrt(D),
// causal) V in bf16, lse fp32 [B, H, T] (natural log), so the backward is unchanged.
//
// WRITTEN WITHOUT A GPU (2026-11-27); the first version passed the selftest on an H100. The forward's intra-warpgroup
// pipelining and its 128-key tiles at D = 128 were added later, again without a GPU: the selftest rows tagged
// [flashfwd v2] are their first check.
//
// CTA: 2 warpgroups (256 threads), 128 query rows of one (batch, head), 64 per warpgroup; key/value tiles of BC rows
// (64 at D = 64, 128 at D = 128), visited from the diagonal tile down to tile 0, double-buffered through cp.async
// (K one tile ahead of V). Per tile and warpgroup:
//   S[64×BC] = Q Kᵀ      wgmma m64nBCk16, A = Q and B = K from shared memory (K-major), D/16 steps;
//   online softmax       per warp on its 16 rows, in the accumulator layout (the same as mma.sync's m16n8 C layout);
//   O[64×D] += P V       wgmma m64nDk16, A = P from registers (the accumulator repacked to bf16 A fragments, as the
//                        mma.sync kernels do), B = V from shared memory, MN-major (transposed); BC/16 steps.
// Software-pipelined as FlashAttention-3 inside each warpgroup: the softmax of tile j runs while the tensor cores
// still compute the previous tile's P V (see forward_wgmma).
// Shared tiles use the 128-byte swizzle (16-byte chunk index XOR row index mod 8 inside each 8-row × 128-byte atom,
// atoms 1024-byte aligned), stored as [D/64 column blocks][rows][64 elements]: K-major for Q and K, and the same
// bytes are the MN-major layout wgmma wants for V. Descriptors: K-major SBO = 1024 (next 8 rows), LBO unused (16);
// MN-major (V) SBO = 1024 (next 8 key rows), LBO = BC·128 (next 64 columns).
// cp.async writes through the generic proxy and wgmma reads through the async proxy: every thread fences
// (fence.proxy.async.shared::cta) after its copies land and before the barrier that opens a tile.
#include <cuda.h>  // CUtensorMap (the persistent forward's TMA form)

#include "common.cuh"
#include "mbarrier.cuh"
#include "softmax_exp.cuh"

// The sm_90a code, compiled by nvcc for sm_90a and by the CPU emulator (src/test/cuda/emu, PATCHCORE_EMU), where every
// asm statement below has a twin that calls the emulator (TMA through the emulator's own tensor-map encoding).
#if (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)) || defined(PATCHCORE_EMU)
#define PATCHCORE_WGMMA 1
#endif
#ifdef PATCHCORE_EMU
#define WG_SMEM_RAW unsigned char* const wg_smem_raw = static_cast<unsigned char*>(emu::dynamic_shared())
#else
#define WG_SMEM_RAW extern __shared__ unsigned char wg_smem_raw[]
#endif

namespace {

constexpr int WG_THREADS = 256;  // two warpgroups

#ifdef PATCHCORE_WGMMA

constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;
constexpr int WG_BR = 128;  // query rows per CTA (CudaFlashAttention.ForwardWgmma.ROWS)

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Byte offset of 16-byte chunk `chunk` (0 .. D/8 − 1) of row r in a swizzled tile of `rows` rows (rows % 8 == 0).
__device__ __forceinline__ uint32_t sw128(int rows, int r, int chunk) {
    return static_cast<uint32_t>((chunk >> 3) * rows * 128 + r * 128 + (((chunk & 7) ^ (r & 7)) << 4));
}

__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, bool valid) {
#ifndef PATCHCORE_EMU
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
#else
    emu::cp_async(emu::from_shared_window(dst, 16), src, 16, valid ? 16 : 0);
#endif
}
// cp.async of rows [row0, row0 + rows) of one head (head base `src`, row stride ld) into a swizzled tile, by all
// WG_THREADS threads; rows past T are zero-filled (their source address is row 0's, never read).
template <int D>
__device__ __forceinline__ void load_tile_sw128(uint32_t tile, int rows, const bf16* src, size_t ld, int row0, int T, int tid) {
    constexpr int CH = D / 8;
    for (int i = tid; i < rows * CH; i += WG_THREADS) {
        const int r = i / CH, ch = i - r * CH;
        const bool valid = row0 + r < T;
        cp_async16_zfill(tile + sw128(rows, r, ch), src + static_cast<size_t>(valid ? row0 + r : 0) * ld + ch * 8, valid);
    }
}

#ifndef PATCHCORE_EMU
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
#else
__device__ __forceinline__ void cp_async_commit() { emu::cp_async_commit(); }
__device__ __forceinline__ void cp_async_wait_all() { emu::cp_async_wait(0); }
#endif

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) { return pack_bf16x2(lo, hi); }

// wgmma matrix descriptor: start address, leading and stride byte offsets (all >> 4), 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t leadingBytes, uint32_t strideBytes) {
    return static_cast<uint64_t>((addr >> 4) & 0x3FFF) | (static_cast<uint64_t>((leadingBytes >> 4) & 0x3FFF) << 16) |
           (static_cast<uint64_t>((strideBytes >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

#ifndef PATCHCORE_EMU
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else
__device__ __forceinline__ void wgmma_fence() {}
__device__ __forceinline__ void wgmma_commit() { emu::wgmma_commit(); }
__device__ __forceinline__ void wgmma_wait_all() { emu::wgmma_wait(0); }
__device__ __forceinline__ void fence_proxy_async() {}
#endif

// Keeps the compiler from moving reads or writes of accumulator (and A-fragment) registers across an asynchronous
// wgmma: PTX requires wgmma.fence between any other access to those registers and the wgmma that uses them.
#ifndef PATCHCORE_EMU
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}
#else
// The emulator's wgmma writes the registers through their addresses (which it holds): no compiler fence needed.
template <class R>
__device__ __forceinline__ void fence_regs(R&) {}
#endif

// D[64×64] (+)= A[64×16] · B[16×64], A and B from shared memory (descriptors), both K-major.
__device__ __forceinline__ void wgmma_ss_m64n64(float (&d)[32], uint64_t descA, uint64_t descB, int accumulate) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(descA), "l"(descB), "r"(accumulate));
#else
    emu::wgmma(d, 64, nullptr, descA, descB, accumulate != 0, false, false);
#endif
}

// D[64×64] (+)= A[64×16] · B[16×64], A from registers (the mma.sync A-fragment layout per warp), B from
// shared memory, MN-major (imm-trans-b = 1).
__device__ __forceinline__ void wgmma_rs_m64n64_tb(float (&d)[32], const uint32_t (&a)[4], uint64_t descB, int accumulate) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(accumulate));
#else
    emu::wgmma(d, 64, a, 0, descB, accumulate != 0, false, true);
#endif
}

// D[64×128] (+)= A[64×16] · B[16×128], A from registers (the mma.sync A-fragment layout per warp), B from
// shared memory, MN-major (imm-trans-b = 1).
__device__ __forceinline__ void wgmma_rs_m64n128_tb(float (&d)[64], const uint32_t (&a)[4], uint64_t descB, int accumulate) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(accumulate));
#else
    emu::wgmma(d, 128, a, 0, descB, accumulate != 0, false, true);
#endif
}

// D[64×64] (+)= A[64×16] · B[16×64], A and B from shared memory, both MN-major (imm-trans-a = imm-trans-b = 1).
__device__ __forceinline__ void wgmma_ss_m64n64_ta_tb(float (&d)[32], uint64_t descA, uint64_t descB, int accumulate) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(descA), "l"(descB), "r"(accumulate));
#else
    emu::wgmma(d, 64, nullptr, descA, descB, accumulate != 0, true, true);
#endif
}

// D[64×128] (+)= A[64×16] · B[16×128], A and B from shared memory (descriptors), both K-major.
__device__ __forceinline__ void wgmma_ss_m64n128(float (&d)[64], uint64_t descA, uint64_t descB, int accumulate) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(descA), "l"(descB), "r"(accumulate));
#else
    emu::wgmma(d, 128, nullptr, descA, descB, accumulate != 0, false, false);
#endif
}

// Waits until at most N of this thread's committed wgmma groups are still pending (the older ones are complete).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#ifndef PATCHCORE_EMU
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
    emu::wgmma_wait(N);
#endif
}

// Key rows per K/V tile of the forward (CudaFlashAttention.ForwardWgmma.keyTile): 64 at D = 64 (two CTAs per SM,
// ≤ 128 registers), 128 at D = 128 (one CTA per SM; S = Q Kᵀ as m64n128k16, half the tiles and barriers).
template <int D>
struct FwdWgmmaTile {
    static constexpr int BC = D == 64 ? 64 : 128;
};

// ---- per-warp pieces shared by the two wgmma forwards (forward_wgmma, forward_wgmma_pingpong)

// S = Q Kᵀ for this warpgroup's 64 query rows (tile sQ of ROWS rows) against a BC-key tile sK: D/16 steps along the
// head dim; step kk is 32 bytes into column block kk/4. Issued and committed, not waited for.
template <int D, int BC, int ROWS = WG_BR>
__device__ __forceinline__ void fwd_issue_s(float (&s)[BC / 2], uint32_t sQ, uint32_t sK, int wg) {
#pragma unroll
    for (int i = 0; i < BC / 2; ++i) s[i] = 0.f;
    fence_regs(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t qa = sQ + (kk >> 2) * (ROWS * 128) + wg * (64 * 128) + (kk & 3) * 32;
        const uint32_t kb = sK + (kk >> 2) * (BC * 128) + (kk & 3) * 32;
        if constexpr (BC == 64) wgmma_ss_m64n64(s, smem_desc(qa, 16, 1024), smem_desc(kb, 16, 1024), kk > 0 ? 1 : 0);
        else wgmma_ss_m64n128(s, smem_desc(qa, 16, 1024), smem_desc(kb, 16, 1024), kk > 0 ? 1 : 0);
    }
    wgmma_commit();
}

// The causal mask and the online softmax of the warp's 16 × BC block of S (keys from kv0, query rows from qw):
// s[4n + i] is row g + 8·(i/2), column 8n + 2c + (i % 2). S becomes P (unnormalized), rowMax and rowSum move to this
// tile, alpha[r] is the rescale of O for row half r. The mask also hides columns ≥ T from every row < T; only tiles
// reaching past the warp's first row are masked.
template <int BC>
__device__ __forceinline__ void fwd_softmax(float (&s)[BC / 2], float (&rowMax)[2], float (&rowSum)[2], float (&alpha)[2],
                                            int kv0, int qw, int g, int c, float scaleLog2) {
    fence_regs(s);
    if (kv0 + BC - 1 > qw) {
#pragma unroll
        for (int n = 0; n < BC / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int col = kv0 + n * 8 + c * 2 + (i & 1);
                const int row = qw + g + (i >> 1) * 8;
                if (col > row) s[4 * n + i] = -INFINITY;
            }
    }
    // A row is spread over the 4 lanes of a quad. O's rescale by α waits for the PV product (the caller's).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float mx = rowMax[r];
#pragma unroll
        for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mScaled = mx == -INFINITY ? 0.f : mx * scaleLog2;  // fully masked row: no NaN
        alpha[r] = exp2_ftz(rowMax[r] * scaleLog2 - mScaled);
        rowMax[r] = mx;
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < BC / 8; ++n) {
            s[4 * n + 2 * r] = exp2_ftz(fmaf(s[4 * n + 2 * r], scaleLog2, -mScaled));
            s[4 * n + 2 * r + 1] = exp2_ftz(fmaf(s[4 * n + 2 * r + 1], scaleLog2, -mScaled));
            sum += s[4 * n + 2 * r] + s[4 * n + 2 * r + 1];
        }
        rowSum[r] = rowSum[r] * alpha[r] + sum;
    }
}

// O (at the previous tile's running max) to the current tile's.
template <int D>
__device__ __forceinline__ void fwd_rescale_o(float (&o)[D / 2], const float (&alpha)[2]) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        o[4 * n + 0] *= alpha[0];
        o[4 * n + 1] *= alpha[0];
        o[4 * n + 2] *= alpha[1];
        o[4 * n + 3] *= alpha[1];
    }
}

// P as bf16 A fragments for the P·V wgmma: k-block kk = the accumulator's n8 blocks 2kk and 2kk+1.
template <int BC>
__device__ __forceinline__ void fwd_pack_p(uint32_t (&pa)[BC / 16][4], const float (&s)[BC / 2]) {
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
        pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
        pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// out = O / rowSum in bf16 and lse = ln-sum-exp of the warp's rows below T (row sums completed across the quad).
template <int D>
__device__ __forceinline__ void fwd_store(const float (&o)[D / 2], const float (&rowMax)[2], const float (&rowSum)[2],
                                          bf16* __restrict__ O, float* __restrict__ LSE, size_t base, size_t ld, int qw,
                                          int g, int c, int T, int bh, float scaleLog2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = rowSum[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = qw + g + r * 8;
        if (row < T) {
            const float inv = l > 0.f ? 1.f / l : 0.f;
            bf16* dst = O + base + static_cast<size_t>(row) * ld + c * 2;
#pragma unroll
            for (int n = 0; n < D / 8; ++n)
                *reinterpret_cast<uint32_t*>(dst + n * 8) = pack_bf16(o[4 * n + 2 * r] * inv, o[4 * n + 2 * r + 1] * inv);
            if (c == 0) LSE[static_cast<size_t>(bh) * T + row] = rowMax[r] * scaleLog2 * LN2 + logf(l);
        }
    }
}

// Forward, software-pipelined inside each warpgroup as FlashAttention-3 (intra-warpgroup overlap): the loop step for
// tile j issues S_j = Q K_jᵀ, then O += P_{j+1} V_{j+1} (P_{j+1} from the previous step, already bf16 fragments),
// waits for S_j only (wgmma.wait_group 1) and runs the mask and softmax of tile j while the tensor cores still work
// on P_{j+1} V_{j+1}; then waits for the PV product (wait_group 0), rescales O by tile j's α (O then holds the sum
// over tiles > j, moved from tile j+1's running max to tile j's, the max P_j was taken at) and repacks tile j's
// probabilities as the next step's A fragments. A warpgroup's first tile has no PV product to overlap; the last PV
// product (tile 0) runs after the loop.
// Loads: the step for tile j reads K_j and V_{j+1}, both from the cp.async group issued in step j+1, and issues
// K_{j−1} (buffer (j−1)&1, last read by S_{j+1} in step j+1) and V_j (buffer j&1, last read by P_{j+2} V_{j+2} in
// step j+1); both readers waited for their wgmma before the barrier that opens step j. V_0 gets a barrier of its own
// after the loop.
// BC: key rows per tile, FwdWgmmaTile's (64 at D = 64, 128 at D = 128). 128-key tiles at D = 64 (one CTA per SM) ran
// at 0.76× on an H100 (run 9) and were dropped.
template <int D, int BC>
__device__ __forceinline__ void forward_wgmma(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                              const bf16* __restrict__ V, bf16* __restrict__ O, float* __restrict__ LSE,
                                              int T, int H) {
    static_assert(D == 64 || D == 128, "wgmma forward: head dim 64 or 128");
    static_assert(BC == 64 || BC == 128, "wgmma forward: key tiles of 64 or 128 rows");
    static_assert(WG_BR % BC == 0, "a CTA's query rows start on a key tile boundary");
    constexpr int QBYTES = WG_BR * D * 2, KVBYTES = BC * D * 2;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sQ = (raw + 1023u) & ~1023u;     // swizzle atoms must be 1024-byte aligned
    const uint32_t sK0 = sQ + QBYTES, sV0 = sK0 + 2 * KVBYTES;  // K [2][BC][D], V [2][BC][D]

    // wg and warp through a lane-0 broadcast: ptxas then knows them (and jFirst, qw) to be warp-uniform, so the
    // branches on them below (the warpgroup's first tile, the mask) are not divergent paths, in which it would
    // serialize the wgmma still in flight (advisory C7518).
    const int tid = threadIdx.x, lane = tid & 31;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = __shfl_sync(0xffffffffu, (tid >> 5) & 3, 0);
    const int g = lane >> 2, c = lane & 3;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * WG_BR;  // longest rows first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int nTiles = (min(q0 + WG_BR, T) + BC - 1) / BC;

    auto load_rows = [&](uint32_t tile, int rows, const bf16* src, int row0) {
        load_tile_sw128<D>(tile, rows, src + base, ld, row0, T, tid);
    };
    load_rows(sQ, WG_BR, Q, q0);
    load_rows(sK0 + ((nTiles - 1) & 1) * KVBYTES, BC, K, (nTiles - 1) * BC);
    cp_async_commit();

    const int qwg = q0 + wg * 64;         // first query row of this warpgroup
    const int qw = qwg + warp * 16;       // first query row of this warp
    // This warpgroup's first (highest) tile: the ones above hold only keys after all of its rows (at BC = 64 the
    // CTA's top tile, for warpgroup 0). Warpgroup-uniform, and every warpgroup has one (tile 0 at the latest).
    const int jFirst = min(nTiles - 1, (qwg + 63) / BC);
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.f, 0.f};
    float alpha[2];               // the softmax's rescale of O for the running max of the current tile
    uint32_t pa[BC / 16][4];      // P of the previous tile, bf16 A fragments: k-block kk = n8 blocks 2kk, 2kk+1
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i) pa[kk][i] = 0u;

    // O += P V for the P in pa and the V tile at sV (BC/16 steps along the keys; step kk starts 16 key rows, 2 atoms,
    // further). Issued and committed, not waited for.
    auto issue_pv = [&](uint32_t sV) {
        fence_regs(o);
        fence_regs(pa);  // the bf16 packing of P and the rescale of O must stay ahead of the fence
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            const uint64_t vb = smem_desc(sV + kk * (16 * 128), BC * 128, 1024);
            if constexpr (D == 64) wgmma_rs_m64n64_tb(o, pa[kk], vb, 1);
            else wgmma_rs_m64n128_tb(o, pa[kk], vb, 1);
        }
        wgmma_commit();
    };

    for (int j = nTiles - 1; j >= 0; --j) {
        const int kv0 = j * BC;
        cp_async_wait_all();  // the only group in flight is step j+1's: K_j and V_{j+1} (Q and K_j the first time)
        fence_proxy_async();  // this thread's copies, visible to the async proxy (wgmma)
        __syncthreads();      // everyone's copies; both warpgroups are done with step j+1 (see above)
        if (j > 0) load_rows(sK0 + ((j - 1) & 1) * KVBYTES, BC, K, (j - 1) * BC);
        load_rows(sV0 + (j & 1) * KVBYTES, BC, V, kv0);
        cp_async_commit();
        if (j > jFirst) continue;  // warpgroup-uniform: every row of this warpgroup precedes the tile
        const uint32_t sK = sK0 + (j & 1) * KVBYTES;

        float s[BC / 2];
        auto issue_s = [&]() { fwd_issue_s<D, BC>(s, sQ, sK, wg); };
        auto softmax = [&]() { fwd_softmax<BC>(s, rowMax, rowSum, alpha, kv0, qw, g, c, scaleLog2); };
        if (j == jFirst) {  // the warpgroup's first tile: no PV product pending
            issue_s();
            wgmma_wait<0>();
            softmax();
        } else {
            issue_s();
            issue_pv(sV0 + ((j + 1) & 1) * KVBYTES);
            wgmma_wait<1>();  // S done; P_{j+1} V_{j+1} may still run during the softmax
            softmax();
            wgmma_wait<0>();  // P_{j+1} V_{j+1} done: O and pa are free again
            fence_regs(o);
            fence_regs(pa);
            // O (at tile j+1's running max) to tile j's. Here and not before the PV issue: between the S and PV
            // wgmmas, ptxas would wait for S before touching O (advisory C7517).
            fwd_rescale_o<D>(o, alpha);
        }
        // P_j as bf16 A fragments for the next step.
        fwd_pack_p<BC>(pa, s);
    }
    // P_0 V_0: V_0 was issued in the step for tile 0.
    cp_async_wait_all();
    fence_proxy_async();
    __syncthreads();
    issue_pv(sV0);
    wgmma_wait<0>();
    fence_regs(o);
    fence_regs(pa);

    fwd_store<D>(o, rowMax, rowSum, O, LSE, base, ld, qw, g, c, T, bh, scaleLog2);
}

// ------------------------------------------------------------------------------------- forward, ping-pong (variant 4)
// CudaFlashAttention's forward variant 4 (flash_attn_fwd_wgmma_pp_d64 / _d128): the arithmetic of forward_wgmma
// (tiles of 128 query rows, 2 warpgroups × 64 rows, the same intra-warpgroup overlap of tile j's softmax with
// P_{j+1} V_{j+1}, the same per-row operations) with 128-key tiles at both head dims, plus
//   - loads without a CTA-wide barrier: warpgroup 0 alone loads K (a 3-stage ring, one tile ahead: K_{j−1} at the
//     start of its step j), warpgroup 1 alone loads V (a 2-stage ring: V_j at the start of its step j; P_j V_j is
//     issued one step later). The loading threads signal a "full" mbarrier per stage with
//     cp.async.mbarrier.arrive.noinc (its arrive-on fires once their copies have landed); all 256 threads arrive on
//     the stage's "empty" mbarrier once the wgmma reading it has completed, and the loaders wait for that before
//     they overwrite the stage. The rings' depths keep those waits clear of the ping-pong: a warpgroup overwrites
//     only stages both warpgroups released at least a step earlier.
//   - FlashAttention-3's inter-warpgroup ping-pong: a warpgroup issues its wgmmas (S_j and P_{j+1} V_{j+1}) only on
//     its turn: bar.sync on its own named barrier (1 for warpgroup 0, 2 for warpgroup 1; 256 = its 128 threads plus
//     the other warpgroup's 128 arrivals), then passes the turn with bar.arrive on the other's. So the tensor cores
//     run warpgroup 0's GEMMs, then warpgroup 1's while warpgroup 0 does its softmax, and so on. Warpgroup 1 arrives
//     on barrier 1 once before its first tile (warpgroup 0 goes first); after the loop warpgroup 0 syncs barrier 1
//     once more to take warpgroup 1's last pass, so every barrier generation is complete at exit. Both warpgroups
//     visit the same nTiles tiles (with 128-key tiles neither warpgroup's rows all precede a tile of the CTA), so
//     the turns strictly alternate: a warpgroup's k-th pass always follows the completion of the other's (k−1)-th.
// Named barriers: 0 (__syncthreads, twice at the start), 1 and 2 (the turns).
// cp.async writes through the generic proxy and wgmma reads through the async proxy. The loaders cannot fence after
// their copies land (the arrive-on fires asynchronously), so every thread runs fence.proxy.async.shared::cta after its
// waits on full barriers and before the wgmma that reads the stages (copies → arrive-on (release) → try_wait
// (acquire) → proxy fence → wgmma: the order the PTX memory model asks for).
constexpr int PP_BC = 128;  // key rows per tile (CudaFlashAttention.ForwardWgmmaPingPong.KEY_TILE)
constexpr int PP_KS = 3;    // K stages
constexpr int PP_VS = 2;    // V stages
// (The mbarrier helpers, mbar_init / mbar_wait / mbar_arrive / cp_async_mbar_arrive / mbar_arrive_expect_tx, are in
// mbarrier.cuh.)

// Named barrier `id`, 256 threads. A register id (warp-uniform), so no branch sits between a wgmma and its wait.
#ifndef PATCHCORE_EMU
__device__ __forceinline__ void bar_sync_256(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void bar_arrive_256(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }
// Named barrier `id` for the 128 threads of one warpgroup.
__device__ __forceinline__ void bar_sync_128(int id) { asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory"); }
#else
__device__ __forceinline__ void bar_sync_256(int id) { emu::sync_named(id, 256); }
__device__ __forceinline__ void bar_arrive_256(int id) { emu::arrive_named(id, 256); }
__device__ __forceinline__ void bar_sync_128(int id) { emu::sync_named(id, 128); }
#endif

// cp.async of rows [row0, row0 + rows) into a swizzled tile by the 128 threads of one warpgroup (t = 0 .. 127), as
// load_tile_sw128.
template <int D>
__device__ __forceinline__ void load_tile_sw128_wg(uint32_t tile, int rows, const bf16* src, size_t ld, int row0, int T, int t) {
    constexpr int CH = D / 8;
    for (int i = t; i < rows * CH; i += 128) {
        const int r = i / CH, ch = i - r * CH;
        const bool valid = row0 + r < T;
        cp_async16_zfill(tile + sw128(rows, r, ch), src + static_cast<size_t>(valid ? row0 + r : 0) * ld + ch * 8, valid);
    }
}

// O += P V for one 128-key tile (A = P from registers, B = V MN-major), committed and not waited for: as
// forward_wgmma's.
template <int D>
__device__ __forceinline__ void fwd_issue_pv(float (&o)[D / 2], uint32_t (&pa)[PP_BC / 16][4], uint32_t sV) {
    fence_regs(o);
    fence_regs(pa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < PP_BC / 16; ++kk) {
        const uint64_t vb = smem_desc(sV + kk * (16 * 128), PP_BC * 128, 1024);
        if constexpr (D == 64) wgmma_rs_m64n64_tb(o, pa[kk], vb, 1);
        else wgmma_rs_m64n128_tb(o, pa[kk], vb, 1);
    }
    wgmma_commit();
}

// One turn of the ping-pong for key tile kv0 .. kv0 + 127: K in stage sK (landed, proxy-fenced), the previous
// tile's P (pa) to be multiplied by V in stage sV unless `first`. Waits for this warpgroup's turn, issues S (and
// the pending P V), hands the turn over, then the softmax; releases K (and V) through their empty barriers; leaves
// this tile's P in pa.
template <int D, int ROWS = WG_BR>
__device__ __forceinline__ void pingpong_step(float (&o)[D / 2], uint32_t (&pa)[PP_BC / 16][4], float (&rowMax)[2],
                                              float (&rowSum)[2], float (&alpha)[2], uint32_t sQ, uint32_t sK,
                                              uint32_t sV, bool first, uint32_t emptyK, uint32_t emptyV, int myTurn,
                                              int otherTurn, int wg, int kv0, int qw, int g, int c, float scaleLog2) {
    constexpr int BC = PP_BC;
    float s[BC / 2];
    if (first) {  // the first tile: no PV product pending
        bar_sync_256(myTurn);
        fwd_issue_s<D, BC, ROWS>(s, sQ, sK, wg);
        bar_arrive_256(otherTurn);
        wgmma_wait<0>();
        mbar_arrive(emptyK);  // K read
        fwd_softmax<BC>(s, rowMax, rowSum, alpha, kv0, qw, g, c, scaleLog2);
    } else {
        bar_sync_256(myTurn);
        fwd_issue_s<D, BC, ROWS>(s, sQ, sK, wg);
        fwd_issue_pv<D>(o, pa, sV);
        bar_arrive_256(otherTurn);
        wgmma_wait<1>();      // S done; the previous tile's P V may still run during the softmax
        mbar_arrive(emptyK);  // K read
        fwd_softmax<BC>(s, rowMax, rowSum, alpha, kv0, qw, g, c, scaleLog2);
        wgmma_wait<0>();      // P V done: O and pa are free again
        mbar_arrive(emptyV);  // V read
        fence_regs(o);
        fence_regs(pa);
        fwd_rescale_o<D>(o, alpha);  // O (at the previous tile's running max) to this tile's
    }
    fwd_pack_p<BC>(pa, s);  // this tile's P as bf16 A fragments for the next step
}

template <int D>
__device__ __forceinline__ void forward_wgmma_pingpong(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                                       const bf16* __restrict__ V, bf16* __restrict__ O,
                                                       float* __restrict__ LSE, int T, int H) {
    static_assert(D == 64 || D == 128, "wgmma forward: head dim 64 or 128");
    constexpr int BC = PP_BC;
    constexpr int QBYTES = WG_BR * D * 2, KVBYTES = BC * D * 2;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sQ = (raw + 1023u) & ~1023u;                    // swizzle atoms must be 1024-byte aligned
    const uint32_t sK0 = sQ + QBYTES, sV0 = sK0 + PP_KS * KVBYTES;  // K [3][BC][D], V [2][BC][D]
    // mbarriers, 8 bytes each: fullK[3], emptyK[3], fullV[2], emptyV[2] (80 bytes).
    const uint32_t bars = sV0 + PP_VS * KVBYTES;
    auto fullK = [&](int s) { return bars + 8u * s; };
    auto emptyK = [&](int s) { return bars + 24u + 8u * s; };
    auto fullV = [&](int s) { return bars + 48u + 8u * s; };
    auto emptyV = [&](int s) { return bars + 64u + 8u * s; };

    const int tid = threadIdx.x, lane = tid & 31;
    // wg and warp through a lane-0 broadcast, so ptxas knows them to be warp-uniform (see forward_wgmma).
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = __shfl_sync(0xffffffffu, (tid >> 5) & 3, 0);
    const int g = lane >> 2, c = lane & 3;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * WG_BR;  // longest rows first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int nTiles = (min(q0 + WG_BR, T) + BC - 1) / BC;  // q0 / 128 + 1: every tile meets both warpgroups

    // Load index i of tile t: i = nTiles − 1 − t (tiles are visited from the diagonal down). K load i goes to stage
    // i % 3, V load i to stage i % 2; a full barrier's phase n is the stage's n-th load landing, an empty barrier's
    // phase n its n-th load released. A loader reusing a stage (i ≥ stages) waits for the release of load
    // i − stages first.
    auto load_k = [&](int t) {  // warpgroup 0
        const int i = nTiles - 1 - t, st = i % PP_KS;
        if (i >= PP_KS) mbar_wait(emptyK(st), (i / PP_KS - 1) & 1);
        load_tile_sw128_wg<D>(sK0 + st * KVBYTES, BC, K + base, ld, t * BC, T, tid & 127);
        cp_async_mbar_arrive(fullK(st));
    };
    auto load_v = [&](int t) {  // warpgroup 1
        const int i = nTiles - 1 - t, st = i % PP_VS;
        if (i >= PP_VS) mbar_wait(emptyV(st), (i / PP_VS - 1) & 1);
        load_tile_sw128_wg<D>(sV0 + st * KVBYTES, BC, V + base, ld, t * BC, T, tid & 127);
        cp_async_mbar_arrive(fullV(st));
    };

    if (tid == 0) {
        for (int st = 0; st < PP_KS; ++st) {
            mbar_init(fullK(st), 128);         // one cp.async arrive-on per thread of warpgroup 0
            mbar_init(emptyK(st), WG_THREADS);  // every thread, once its S wgmma has completed
        }
        for (int st = 0; st < PP_VS; ++st) {
            mbar_init(fullV(st), 128);         // warpgroup 1
            mbar_init(emptyV(st), WG_THREADS);  // every thread, once its P V wgmma has completed
        }
    }
    __syncthreads();  // the initialized barriers, visible to every thread
    if (wg == 0) load_k(nTiles - 1);
    load_tile_sw128<D>(sQ, WG_BR, Q + base, ld, q0, T, tid);
    cp_async_commit();
    cp_async_wait_all();
    fence_proxy_async();
    __syncthreads();  // Q visible to both warpgroups (the only CTA-wide wait on data)

    const int myTurn = 1 + wg, otherTurn = 2 - wg;  // named barrier ids of the ping-pong
    if (wg == 1) bar_arrive_256(1);                  // warpgroup 0 takes the first turn

    const int qwg = q0 + wg * 64;    // first query row of this warpgroup
    const int qw = qwg + warp * 16;  // first query row of this warp
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.f, 0.f};
    float alpha[2];            // the softmax's rescale of O for the running max of the current tile
    uint32_t pa[BC / 16][4];   // P of the previous tile, bf16 A fragments
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i) pa[kk][i] = 0u;

    for (int j = nTiles - 1; j >= 0; --j) {
        const int i = nTiles - 1 - j;              // K_j is K load i; V_{j+1}, read in this step, is V load i − 1
        const int ks = i % PP_KS, vs = (i + 1) & 1;  // (i − 1) % 2
        // This step's loads (no wgmma in flight here): K_{j−1} by warpgroup 0, V_j by warpgroup 1.
        if (wg == 0) {
            if (j > 0) load_k(j - 1);
        } else {
            load_v(j);
        }
        mbar_wait(fullK(ks), (i / PP_KS) & 1);
        if (i > 0) mbar_wait(fullV(vs), ((i - 1) / PP_VS) & 1);
        fence_proxy_async();  // the landed copies, visible to the async proxy (see above)
        pingpong_step<D>(o, pa, rowMax, rowSum, alpha, sQ, sK0 + ks * KVBYTES, sV0 + vs * KVBYTES, i == 0, emptyK(ks),
                         emptyV(vs), myTurn, otherTurn, wg, j * BC, qw, g, c, scaleLog2);
    }
    // P_0 V_0: V_0 is V load nTiles − 1, issued in the step for tile 0; outside the turns (nothing follows it).
    {
        const int i = nTiles - 1, vs = i & 1;
        mbar_wait(fullV(vs), (i / PP_VS) & 1);
        fence_proxy_async();
        fwd_issue_pv<D>(o, pa, sV0 + vs * KVBYTES);
        wgmma_wait<0>();
        fence_regs(o);
        fence_regs(pa);
    }
    if (wg == 0) bar_sync_256(1);  // warpgroup 1's last pass: barrier 1's final generation completes

    fwd_store<D>(o, rowMax, rowSum, O, LSE, base, ld, qw, g, c, T, bh, scaleLog2);
}

// -------------------------------------------------------------------- forward, persistent ping-pong (variant 5)
// CudaFlashAttention forward variants 5 and 6 (flash_attn_fwd_wgmma_pp_persistent[_tma]_d{64,128}). Written without a
// GPU; H100 run 12 passed the selftest and timed them at D = 128: 348 (v5) and 378 (v6) TFLOP/s against the ping-pong
// kernel's 331, so variant 6 is the default there; at D = 64 they run at 256 and 249 (mma.sync: 266).
// forward_wgmma_pingpong's work with one CTA per SM looping over work items, so that a CTA's start (Q and the first K
// tile loaded while the SM idles: one CTA per SM) and its end are paid once per SM instead of once per 128 query rows
// (at T = 2048, B 4, H 8: 512 CTAs of 8.5 key tiles on average, about 4 per SM). Items are (query tile, batch·head)
// pairs, query tile major from the last (the most key tiles) to the first, in snake_item's order: no counter, and
// every thread knows the CTA's items.
// Across items nothing restarts:
//   - K and V keep their rings; a load's sequence number counts the CTA's K (or V) tiles over all its items, and
//     stages and barrier phases follow from it. Warpgroup 0 loads one K tile ahead across the item boundary (in the
//     last step of an item, the next item's first K tile); every consumed K and V tile is released on its empty
//     barrier, the last V of an item too (the single-item kernel skips that release: nothing reuses the stage).
//   - The turns go on alternating: the last warpgroup (1, or 2 with three) arrives on barrier 1 once at the start,
//     warpgroup 0 syncs it once at the very end.
//   - Q is double-buffered by item parity, and each warpgroup loads its own 64 rows (the only rows its S reads) of
//     the next item's Q at the start of an item, into the buffer whose previous item it has finished with; a full
//     barrier per (buffer, warpgroup) with 128 arrivals says they landed.
// With two warpgroups: grid min(items, SMs), items = B·H·⌈T/128⌉; block 256; dynamic shared memory 1024 + 2·128·D·2 +
// (3 + 2)·128·D·2 + 112 (14 mbarriers) = 230 512 bytes at D = 128 (CudaFlashAttention.ForwardWgmmaPersistent.sharedBytes);
// with three (D = 64, TMA only) see flash_attn_fwd_wgmma_pp3_persistent_tma_d64 below.
// The persistent kernels' static schedule: CTA `cta` of a grid of G takes items cta, 2G − 1 − cta, 2G + cta,
// 4G − 1 − cta, … (a "snake": with items ordered longest first, each round's long items meet the next round's
// short ones). Counted in tiles it is within 1.5 % of a greedy scheduler at the bench shapes of both kernels, and
// every thread knows the CTA's next item from the start, so no counter or ticket is needed.
__device__ __forceinline__ int snake_item(int n, int G, int cta) { return n * G + ((n & 1) ? G - 1 - cta : cta); }

template <int D, int ROWS = WG_BR>
__device__ __forceinline__ void load_q_half_wg(uint32_t sQ, int wg, const bf16* src, size_t ld, int q0, int T, int t) {
    constexpr int CH = D / 8;
    for (int i = t; i < 64 * CH; i += 128) {
        const int r = 64 * wg + i / CH, ch = i % CH;
        const bool valid = q0 + r < T;
        cp_async16_zfill(sQ + sw128(ROWS, r, ch), src + static_cast<size_t>(valid ? q0 + r : 0) * ld + ch * 8, valid);
    }
}

// Ring depths of the persistent forward: K 3 and V 2 stages with 2 warpgroups (as the ping-pong kernel); with 3
// (D = 64) one more each, since a stage is released only when the third warpgroup's wgmma reading it is
// done, a turn later than the second's.
template <int NWG>
struct PersistentRings {
    static constexpr int KS = NWG == 2 ? PP_KS : PP_KS + 1;
    static constexpr int VS = NWG == 2 ? PP_VS : PP_VS + 1;
};

// TMA form (variant 6, TMA = true): Q, K and V tiles come from the tensor memory accelerator instead of cp.async
// by 128 threads. One thread per load (thread 0 of warpgroup 0 for K, of warpgroup 1 for V, of each warpgroup for
// its Q rows) waits for the stage to be free, announces the bytes (mbarrier.arrive.expect_tx) and issues one
// cp.async.bulk.tensor per 64-column block; the full barriers then expect one arrival plus the bytes. The maps
// (CudaFlashAttention.TensorMaps) view q, k, v as 4-D [B][T][H][D] bf16 tensors with a box of 64 columns × 1 head ×
// rows × 1 batch and the 128-byte swizzle — the layout the cp.async loaders write — and zero-fill rows past T.
// Why: a 128 × 128 tile is 2048 16-byte copies, 16 per thread with their address arithmetic, issued by the same
// warpgroups whose softmax is the critical path; with TMA the copies cost them two instructions per tile.

// One box of a 4-D tensor map into shared memory at dst (1024-byte aligned for the 128-byte swizzle), completing
// `bytes` of the transaction count of mbarrier bar. Coordinates innermost first: column, head, row, batch.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int col, int head, int row,
                                            int batch) {
#ifndef PATCHCORE_EMU
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(head), "r"(row), "r"(batch), "r"(bar)
        : "memory");
#else
    emu::tma_load_4d(dst, map, bar, col, head, row, batch);
#endif
}

template <int D, bool TMA = false, int NWG = 2>
__device__ __forceinline__ void forward_wgmma_pingpong_persistent(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                                                  const bf16* __restrict__ V, bf16* __restrict__ O,
                                                                  float* __restrict__ LSE, int T, int H, int BH,
                                                                  const CUtensorMap* tmQ = nullptr,
                                                                  const CUtensorMap* tmK = nullptr,
                                                                  const CUtensorMap* tmV = nullptr) {
    static_assert(NWG == 2 || (NWG == 3 && D == 64 && TMA), "2 warpgroups, or 3 at D = 64 with TMA loads");
    constexpr int BC = PP_BC;
    constexpr int ROWS = 64 * NWG;                  // query rows per item
    constexpr int KS = PersistentRings<NWG>::KS, VS = PersistentRings<NWG>::VS;
    constexpr int QBYTES = ROWS * D * 2, KVBYTES = BC * D * 2, THREADS = 128 * NWG;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sQ0 = (raw + 1023u) & ~1023u;                        // Q [2][ROWS][D]
    const uint32_t sK0 = sQ0 + 2 * QBYTES, sV0 = sK0 + KS * KVBYTES;  // K [KS][BC][D], V [VS][BC][D]
    // mbarriers, 8 bytes each: fullK[KS], emptyK[KS], fullV[VS], emptyV[VS], fullQ[2 buffers][NWG warpgroups]
    // (112 bytes for 2 warpgroups, 160 for 3).
    const uint32_t bars = sV0 + VS * KVBYTES;
    auto fullK = [&](int st) { return bars + 8u * st; };
    auto emptyK = [&](int st) { return bars + 8u * (KS + st); };
    auto fullV = [&](int st) { return bars + 8u * (2 * KS + st); };
    auto emptyV = [&](int st) { return bars + 8u * (2 * KS + VS + st); };
    auto fullQ = [&](int buf, int w) { return bars + 8u * (2 * KS + 2 * VS + NWG * buf + w); };

    const int tid = threadIdx.x, lane = tid & 31;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = __shfl_sync(0xffffffffu, (tid >> 5) & 3, 0);
    const int g = lane >> 2, c = lane & 3;
    const size_t ld = static_cast<size_t>(H) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int qTiles = (T + ROWS - 1) / ROWS, items = BH * qTiles, G = gridDim.x, cta = blockIdx.x;
    if (cta >= items) return;  // the launcher's grid is at most the item count; a larger one must not hang

    // The CTA's n-th item (≥ items: none), and what an item is.
    auto itemAt = [&](int n) { return snake_item(n, G, cta); };
    struct Item {
        int q0, bh, nTiles;
        size_t base;
    };
    auto decode = [&](int it) {
        Item x;
        x.bh = it % BH;
        x.q0 = (qTiles - 1 - it / BH) * ROWS;
        x.nTiles = (min(x.q0 + ROWS, T) + BC - 1) / BC;  // all warpgroups visit them all (masked where past their rows)
        x.base = static_cast<size_t>(x.bh / H) * T * ld + static_cast<size_t>(x.bh % H) * D;
        return x;
    };
    const bool loader = (tid & 127) == 0;  // TMA: the thread of each warpgroup that issues its loads
    // Rows [row0, row0 + box rows) of one (batch, head) of a 4-D map into a [D/64][strideRows][64] tile at dst, one
    // box per 64-column block (TMA form).
    auto tma_rows = [&](uint32_t dst, const CUtensorMap* map, uint32_t bar, const Item& x, int row0, int strideRows) {
#pragma unroll
        for (int cb = 0; cb < D / 64; ++cb)
            tma_load_4d(dst + cb * strideRows * 128, map, bar, cb * 64, x.bh % H, row0, x.bh / H);
    };
    // K or V tile t of `x` as the CTA's load number `seq` of that ring: stage seq % stages; a stage is reused once its
    // previous load (seq − stages) has been released by all THREADS threads.
    auto load_ring = [&](int stages, uint32_t ring, auto full, auto empty, const bf16* src, const CUtensorMap* map,
                         const Item& x, int t, int seq) {
        const int st = seq % stages;
        if constexpr (TMA) {
            if (!loader) return;
        }
        if (seq >= stages) mbar_wait(empty(st), (seq / stages - 1) & 1);
        if constexpr (TMA) {
            mbar_arrive_expect_tx(full(st), KVBYTES);
            tma_rows(ring + st * KVBYTES, map, full(st), x, t * BC, BC);
        } else {
            load_tile_sw128_wg<D>(ring + st * KVBYTES, BC, src + x.base, ld, t * BC, T, tid & 127);
            cp_async_mbar_arrive(full(st));
        }
    };
    auto load_k = [&](const Item& x, int t, int seq) { load_ring(KS, sK0, fullK, emptyK, K, tmK, x, t, seq); };  // warpgroup 0
    auto load_v = [&](const Item& x, int t, int seq) { load_ring(VS, sV0, fullV, emptyV, V, tmV, x, t, seq); };  // warpgroup 1
    auto load_q = [&](const Item& x, int buf) {  // this warpgroup's 64 rows
        if constexpr (TMA) {
            if (!loader) return;
            if (x.q0 + wg * 64 >= T) {  // every row past T: nothing to load (those rows' S, P and O are never stored)
                mbar_arrive(fullQ(buf, wg));
                return;
            }
            mbar_arrive_expect_tx(fullQ(buf, wg), QBYTES / NWG);
            tma_rows(sQ0 + buf * QBYTES + wg * (64 * 128), tmQ, fullQ(buf, wg), x, x.q0 + wg * 64, ROWS);
        } else {
            load_q_half_wg<D, ROWS>(sQ0 + buf * QBYTES, wg, Q + x.base, ld, x.q0, T, tid & 127);
            cp_async_mbar_arrive(fullQ(buf, wg));
        }
    };

    if (tid == 0) {
        const int loads = TMA ? 1 : 128;  // arrivals a full barrier expects: the TMA issuer's, or each copier's
        for (int st = 0; st < KS; ++st) {
            mbar_init(fullK(st), loads);
            mbar_init(emptyK(st), THREADS);
        }
        for (int st = 0; st < VS; ++st) {
            mbar_init(fullV(st), loads);
            mbar_init(emptyV(st), THREADS);
        }
        for (int b = 0; b < 2; ++b)
            for (int w = 0; w < NWG; ++w) mbar_init(fullQ(b, w), loads);
        if constexpr (TMA) fence_mbarrier_init();  // visible to the TMA unit
    }
    __syncthreads();  // the initialized barriers, visible to every thread

    Item cur = decode(itemAt(0));  // exists: cta < items
    load_q(cur, 0);
    if (wg == 0) load_k(cur, cur.nTiles - 1, 0);
    if constexpr (TMA) __syncwarp();  // lane 0 of each warpgroup's first warp issued the loads alone: the warps meet again here
    // The turns go round the warpgroups in order: warpgroup w waits on barrier 1 + w (its 128 threads and the 128
    // arrivals of its predecessor) and passes the turn on barrier 1 + (w + 1) % NWG. Named barriers 1 + NWG + w keep
    // a warpgroup's warps together before it overwrites its Q rows.
    const int myTurn = 1 + wg, otherTurn = 1 + (wg + 1) % NWG;
    if (wg == NWG - 1) bar_arrive_256(1);  // warpgroup 0 takes the first turn

    int seq0 = 0;  // load number of the current item's first K / V tile
    for (int n = 0;; ++n) {
        const int nextIt = itemAt(n + 1);
        const bool more = nextIt < items;
        const Item next = decode(more ? nextIt : 0);
        // The next item's Q rows of this warpgroup, into the buffer it finished reading with item n − 1. Each of its
        // threads (or its one TMA issuer) writes rows that all four warps' parts of item n − 1's last S wgmma read,
        // and each warp's wgmma.wait_group covers only its own part: the warpgroup meets on named barrier
        // 1 + NWG + wg first, so no warp overwrites Q while another may still read it.
        if (more) {
            bar_sync_128(1 + NWG + wg);
            load_q(next, (n + 1) & 1);
        }
        if constexpr (TMA) __syncwarp();
        mbar_wait(fullQ(n & 1, wg), (n >> 1) & 1);
        const uint32_t sQ = sQ0 + (n & 1) * QBYTES;

        const int qw = cur.q0 + wg * 64 + warp * 16;  // first query row of this warp
        float o[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
        float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.f, 0.f}, alpha[2];
        uint32_t pa[BC / 16][4];
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i) pa[kk][i] = 0u;

        for (int j = cur.nTiles - 1; j >= 0; --j) {
            const int i = cur.nTiles - 1 - j, seq = seq0 + i;  // K_j is load seq; V_{j+1}, read here, load seq − 1
            const int ks = seq % KS, vs = static_cast<int>(static_cast<unsigned>(seq + VS - 1) % VS);  // V load seq − 1's stage
            if (wg == 0) {
                if (j > 0) load_k(cur, j - 1, seq + 1);
                else if (more) load_k(next, next.nTiles - 1, seq + 1);  // one ahead, across the item boundary
            } else if (wg == 1) {  // (a third warpgroup loads only its Q rows)
                load_v(cur, j, seq);
            }
            if constexpr (TMA) __syncwarp();  // before the warp-collective turn barrier and wgmma
            mbar_wait(fullK(ks), (seq / KS) & 1);
            if (i > 0) mbar_wait(fullV(vs), ((seq - 1) / VS) & 1);
            fence_proxy_async();  // the landed copies (Q's too), visible to the async proxy
            pingpong_step<D, ROWS>(o, pa, rowMax, rowSum, alpha, sQ, sK0 + ks * KVBYTES, sV0 + vs * KVBYTES, i == 0,
                             emptyK(ks), emptyV(vs), myTurn, otherTurn, wg, j * BC, qw, g, c, scaleLog2);
        }
        // P_0 V_0 (outside the turns), then its V stage released: a later load reuses it.
        {
            const int seq = seq0 + cur.nTiles - 1, vs = static_cast<int>(static_cast<unsigned>(seq) % VS);
            mbar_wait(fullV(vs), (seq / VS) & 1);
            fence_proxy_async();
            fwd_issue_pv<D>(o, pa, sV0 + vs * KVBYTES);
            wgmma_wait<0>();
            fence_regs(o);
            fence_regs(pa);
            mbar_arrive(emptyV(vs));
        }
        fwd_store<D>(o, rowMax, rowSum, O, LSE, cur.base, ld, qw, g, c, T, cur.bh, scaleLog2);
        if (!more) break;
        seq0 += cur.nTiles;
        cur = next;
    }
    if (wg == 0) bar_sync_256(1);  // warpgroup NWG − 1's last pass: barrier 1's final generation completes
}

// ------------------------------------------------------------- forward with a producer warpgroup (variant 7, D = 64)
// FlashAttention-3's warp specialization for head dim 64: the three-warpgroup persistent kernel above, with its loads
// moved to a fourth warpgroup. Warpgroup 0 is the producer: it gives registers away (setmaxnreg.dec to PRODUCER_REGS)
// and one thread of it issues every TMA load of the CTA — each item's Q rows (one box per consumer warpgroup, into
// the buffer of the item's parity), then per key tile K and V into their rings — waiting on the stage's empty
// mbarrier before each refill. Warpgroups 1–3 are the consumers (setmaxnreg.inc to CONSUMER_REGS): consumer
// c = wg − 1 owns rows 64c .. 64c + 63 of each 192-row item and runs the turns of the three-warpgroup kernel
// (pingpong_step, named barriers 1 + c), but issues no load and never waits for a stage to be free.
// Why: in the three-warpgroup kernel one thread of each consumer warpgroup waits on empty barriers and issues TMA
// between its turns, which delays its own wgmma issue, and every consumer thread carries the loaders' registers.
// Barriers (mbarriers): full K/V per stage (1 arrival: the producer's expect_tx, plus the bytes), empty K/V per stage
// (384: every consumer thread once its wgmma reading the stage has completed), full Q per (buffer, consumer) as in
// the three-warpgroup kernel, and empty Q per buffer (384: every consumer thread once the item's last S completed).
// Replaces that kernel's Q-reuse meeting (named barriers 4–6): a producer does not share the consumers' waits, so
// their release is an mbarrier arrival, and the producer waits for all of them.
// Producer order per item: its K and V tiles, then the next item's Q (into the buffer of the item before, which every
// consumer must have finished: issued after the tiles, that wait seldom stalls them, where after the first tile it
// held back the rest of the item's loads until the slowest consumer had finished the item before). Every wait of the
// producer is on a release that needs no later load: a stage or buffer it refills was read by a step (or an item)
// that every consumer reaches with the loads issued before it.
// Registers per thread after setmaxnreg (FlashAttention-3's split for three consumer warpgroups): 32 · 128 + 160 · 384 =
// 65 536, the whole register file. ptxas allocates each region within its count: the consumers' code needs about the
// three-warpgroup kernel's 158 (at 152 it spills 32 bytes), the producer's loop more than 24 (48 bytes of spills).
constexpr int PRODUCER_REGS = 32;
constexpr int CONSUMER_REGS = 160;
static_assert(PRODUCER_REGS * 128 + CONSUMER_REGS * 384 <= 65536, "the register split must fit one SM's 64K registers");

// setmaxnreg.{dec,inc}.sync.aligned.u32: warpgroup-collective (all 128 threads, the same immediate count, a multiple
// of 8 in [24, 256]). The emulator checks that and changes nothing else.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg: a multiple of 8 in [24, 256]");
#ifndef PATCHCORE_EMU
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#else
    emu::setmaxnreg(N, false);
#endif
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg: a multiple of 8 in [24, 256]");
#ifndef PATCHCORE_EMU
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#else
    emu::setmaxnreg(N, true);
#endif
}

template <int D>
__device__ __forceinline__ void forward_wgmma_producer(bf16* __restrict__ O, float* __restrict__ LSE, int T, int H, int BH,
                                                       const CUtensorMap* tmQ, const CUtensorMap* tmK,
                                                       const CUtensorMap* tmV) {
    static_assert(D == 64, "the producer forward exists at D = 64");
    constexpr int NC = 3;  // consumer warpgroups
    constexpr int BC = PP_BC, ROWS = 64 * NC;
    constexpr int KS = PersistentRings<NC>::KS, VS = PersistentRings<NC>::VS;
    constexpr int QBYTES = ROWS * D * 2, KVBYTES = BC * D * 2, CONSUMERS = 128 * NC;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sQ0 = (raw + 1023u) & ~1023u;                        // Q [2][ROWS][D]
    const uint32_t sK0 = sQ0 + 2 * QBYTES, sV0 = sK0 + KS * KVBYTES;  // K [KS][BC][D], V [VS][BC][D]
    // mbarriers, 8 bytes each: fullK[KS], emptyK[KS], fullV[VS], emptyV[VS], fullQ[2 buffers][NC], emptyQ[2] (176 bytes).
    const uint32_t bars = sV0 + VS * KVBYTES;
    auto fullK = [&](int st) { return bars + 8u * st; };
    auto emptyK = [&](int st) { return bars + 8u * (KS + st); };
    auto fullV = [&](int st) { return bars + 8u * (2 * KS + st); };
    auto emptyV = [&](int st) { return bars + 8u * (2 * KS + VS + st); };
    auto fullQ = [&](int buf, int c) { return bars + 8u * (2 * KS + 2 * VS + NC * buf + c); };
    auto emptyQ = [&](int buf) { return bars + 8u * (2 * KS + 2 * VS + 2 * NC + buf); };

    const int tid = threadIdx.x;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0);
    const int qTiles = (T + ROWS - 1) / ROWS, items = BH * qTiles, G = gridDim.x, cta = blockIdx.x;
    if (cta >= items) return;  // the launcher's grid is at most the item count; a larger one must not hang

    auto itemAt = [&](int n) { return snake_item(n, G, cta); };
    const size_t ld = static_cast<size_t>(H) * D;
    struct Item {
        int q0, bh, nTiles;
    };
    auto decode = [&](int it) {
        Item x;
        x.bh = it % BH;
        x.q0 = (qTiles - 1 - it / BH) * ROWS;
        x.nTiles = (min(x.q0 + ROWS, T) + BC - 1) / BC;  // every consumer visits them all (masked past its rows)
        return x;
    };

    if (tid == 0) {
        for (int st = 0; st < KS; ++st) {
            mbar_init(fullK(st), 1);
            mbar_init(emptyK(st), CONSUMERS);
        }
        for (int st = 0; st < VS; ++st) {
            mbar_init(fullV(st), 1);
            mbar_init(emptyV(st), CONSUMERS);
        }
        for (int b = 0; b < 2; ++b) {
            for (int c = 0; c < NC; ++c) mbar_init(fullQ(b, c), 1);
            mbar_init(emptyQ(b), CONSUMERS);
        }
        fence_mbarrier_init();  // visible to the TMA unit
    }
    __syncthreads();  // the initialized barriers, visible to every thread (the last CTA-wide barrier)

    if (wg == 0) {  // ---- the producer
        setmaxnreg_dec<PRODUCER_REGS>();
        if (tid != 0) return;
        // Load number `seq` of a ring into stage seq % stages, once that stage's previous load (seq − stages) has
        // been released by every consumer thread.
        auto load_ring = [&](int stages, uint32_t ring, auto full, auto empty, const CUtensorMap* map, const Item& x,
                             int t, int seq) {
            const int st = seq % stages;
            if (seq >= stages) mbar_wait(empty(st), (seq / stages - 1) & 1);
            mbar_arrive_expect_tx(full(st), KVBYTES);
            tma_load_4d(ring + st * KVBYTES, map, full(st), 0, x.bh % H, t * BC, x.bh / H);
        };
        // Item n's Q into buffer n & 1, once item n − 2 (its previous user) has been released; one box per consumer.
        auto load_q = [&](const Item& x, int n) {
            const int buf = n & 1;
            if (n >= 2) mbar_wait(emptyQ(buf), ((n >> 1) - 1) & 1);
            for (int c = 0; c < NC; ++c) {
                if (x.q0 + 64 * c >= T) {  // every row past T: nothing to load (never stored)
                    mbar_arrive(fullQ(buf, c));
                    continue;
                }
                mbar_arrive_expect_tx(fullQ(buf, c), QBYTES / NC);
                tma_load_4d(sQ0 + buf * QBYTES + c * (64 * 128), tmQ, fullQ(buf, c), 0, x.bh % H, x.q0 + 64 * c, x.bh / H);
            }
        };
        int seq = 0;
        Item cur = decode(itemAt(0));
        load_q(cur, 0);
        for (int n = 0;; ++n) {
            const int nextIt = itemAt(n + 1);
            for (int i = 0; i < cur.nTiles; ++i, ++seq) {
                const int j = cur.nTiles - 1 - i;  // tiles from the diagonal down, as the consumers visit them
                load_ring(KS, sK0, fullK, emptyK, tmK, cur, j, seq);
                load_ring(VS, sV0, fullV, emptyV, tmV, cur, j, seq);
            }
            if (nextIt >= items) return;
            load_q(decode(nextIt), n + 1);
            cur = decode(nextIt);
        }
    }

    // ---- the consumers
    setmaxnreg_inc<CONSUMER_REGS>();
    const int cw = wg - 1, lane = tid & 31, warp = __shfl_sync(0xffffffffu, (tid >> 5) & 3, 0);
    const int g = lane >> 2, c = lane & 3;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    // The turns go round the consumers as in the three-warpgroup kernel: consumer c waits on barrier 1 + c and passes
    // the turn on 1 + (c + 1) % 3; the last one arrives once first, so consumer 0 goes first.
    const int myTurn = 1 + cw, otherTurn = 1 + (cw + 1) % NC;
    if (cw == NC - 1) bar_arrive_256(1);

    int seq0 = 0;  // load number of the current item's first K / V tile
    for (int n = 0;; ++n) {
        const int it = itemAt(n);
        if (it >= items) break;
        const Item cur = decode(it);
        const size_t base = static_cast<size_t>(cur.bh / H) * T * ld + static_cast<size_t>(cur.bh % H) * D;
        mbar_wait(fullQ(n & 1, cw), (n >> 1) & 1);
        const uint32_t sQ = sQ0 + (n & 1) * QBYTES;

        const int qw = cur.q0 + cw * 64 + warp * 16;  // first query row of this warp
        float o[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
        float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.f, 0.f}, alpha[2];
        uint32_t pa[BC / 16][4];
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i) pa[kk][i] = 0u;

        for (int j = cur.nTiles - 1; j >= 0; --j) {
            const int i = cur.nTiles - 1 - j, seq = seq0 + i;  // K_j is load seq; V_{j+1}, read here, load seq − 1
            const int ks = seq % KS, vs = static_cast<int>(static_cast<unsigned>(seq + VS - 1) % VS);
            mbar_wait(fullK(ks), (seq / KS) & 1);
            if (i > 0) mbar_wait(fullV(vs), ((seq - 1) / VS) & 1);
            fence_proxy_async();  // the landed tiles (Q's too), visible to the async proxy
            pingpong_step<D, ROWS>(o, pa, rowMax, rowSum, alpha, sQ, sK0 + ks * KVBYTES, sV0 + vs * KVBYTES, i == 0,
                                   emptyK(ks), emptyV(vs), myTurn, otherTurn, cw, j * BC, qw, g, c, scaleLog2);
        }
        // Every S of the item has completed (pingpong_step waited for it): this thread is done with the Q buffer.
        mbar_arrive(emptyQ(n & 1));
        // P_0 V_0 (outside the turns), then its V stage released.
        {
            const int seq = seq0 + cur.nTiles - 1, vs = static_cast<int>(static_cast<unsigned>(seq) % VS);
            mbar_wait(fullV(vs), (seq / VS) & 1);
            fence_proxy_async();
            fwd_issue_pv<D>(o, pa, sV0 + vs * KVBYTES);
            wgmma_wait<0>();
            fence_regs(o);
            fence_regs(pa);
            mbar_arrive(emptyV(vs));
        }
        fwd_store<D>(o, rowMax, rowSum, O, LSE, base, ld, qw, g, c, T, cur.bh, scaleLog2);
        seq0 += cur.nTiles;
    }
    if (cw == 0) bar_sync_256(1);  // the last consumer's last pass: barrier 1's final generation completes
}

// ------------------------------------------------------------------------------------------------ backward (D = 64)
// CudaFlashAttention backward variant 2. Same contract as flash_attn_bwd3_* (flash_attention.cu): after
// flash_attn_bwd_prep_d64 (rowDot = D_i, dqAccum zeroed), it writes dK, dV (bf16) and adds the unscaled dQ into the
// fp32 accumulator that flash_attn_dq_convert scales; the arithmetic follows bwd3 (lse·log2e in shared memory, +inf
// for query rows ≥ T; Pᵀ = 2^(scale·log2e·Sᵀ − lse·log2e), zero where key > query; dSᵀ = Pᵀ ∘ (dPᵀ − D); dK scaled
// by 1/sqrt(D) once at the end).
//
// CTA: 2 warpgroups, 128 keys of one (batch, head), 64 per warpgroup; query tiles of BQ = 64 rows from the diagonal
// to T, Q and dO double-buffered through cp.async. Per tile and warpgroup, on its 64 keys:
//   Sᵀ = K Qᵀ and dPᵀ = V dOᵀ   two wgmma m64n64k16 chains (A = K / V, B = Q / dO, all K-major), one commit group;
//   Pᵀ, dSᵀ                      in the accumulator layout (row = key, column = query);
//   dV += Pᵀ dO, dK += dSᵀ Q      wgmma with A from registers, B = dO / Q as MN-major (the same swizzled bytes);
//   dQ_tile = dS K                dSᵀ stored to this warpgroup's shared buffer ([key][query], swizzled), then
//                                 wgmma with A = that buffer MN-major (imm-trans-a) and B = K MN-major; the two
//                                 warpgroups' tiles are summed in shared memory and added into dqAccum with
//                                 red.global.add.v4.f32 (one reduction per 128 keys, as bwd3).
// A warpgroup whose 64 keys all follow every query of the tile skips it (no contribution).
constexpr int WB_BQ = 64;   // query rows per tile
constexpr int WB_BC = 128;  // keys per CTA (2 warpgroups × 64)

// The 128 threads of warpgroup wg meet (barrier 1 or 2; 0 is __syncthreads). Immediate ids, so ptxas reserves 3
// barriers instead of all 16 for a register id.
__device__ __forceinline__ void named_barrier_wg(int wg) {
#ifndef PATCHCORE_EMU
    if (wg == 0) asm volatile("bar.sync 1, 128;\n" ::: "memory");
    else asm volatile("bar.sync 2, 128;\n" ::: "memory");
#else
    emu::sync_named(wg == 0 ? 1 : 2, 128);
#endif
}

__device__ __forceinline__ void red_add_v4(float* addr, float4 v) {
#ifndef PATCHCORE_EMU
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(addr), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
#else
    atomicAdd(addr, v.x);
    atomicAdd(addr + 1, v.y);
    atomicAdd(addr + 2, v.z);
    atomicAdd(addr + 3, v.w);
#endif
}

// st.shared of 4 bytes, and of 16 zero bytes, at a shared-window address.
__device__ __forceinline__ void st_shared_u32(uint32_t at, uint32_t v) {
#ifndef PATCHCORE_EMU
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(at), "r"(v) : "memory");
#else
    emu::st_shared(at, v);
#endif
}
__device__ __forceinline__ void st_shared_zero16(uint32_t at) {
#ifndef PATCHCORE_EMU
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(at), "r"(0u) : "memory");
#else
    emu::st_shared(at, uint4{0, 0, 0, 0});
#endif
}

constexpr int WB_DQ_LD = 72;  // floats per row of the dQ staging tiles (64 + 8: conflict-free float2 stores)

// ---- per-warp pieces shared by the two wgmma backwards (backward_wgmma_d64, backward_wgmma_d128)

// Pᵀ and dSᵀ of the warp's 16 keys × WB_BQ queries in the accumulator layout (s[4n + i]: key kw + g + 8·(i/2), query
// q0 + 8n + 2c + (i % 2)): s (Sᵀ) becomes Pᵀ = 2^(scale·log2e·Sᵀ − lse·log2e), zero where key > query, and dp (dPᵀ)
// becomes dSᵀ = Pᵀ ∘ (dPᵀ − D); lse2 and dots are the tile's lse·log2e and D_i.
__device__ __forceinline__ void bwd_p_and_ds(float (&s)[WB_BQ / 2], float (&dp)[WB_BQ / 2], const float* lse2,
                                             const float* dots, int q0, int kw, int g, int c, float scaleLog2) {
    const bool diagonal = q0 < kw + 15;
#pragma unroll
    for (int n = 0; n < WB_BQ / 8; ++n) {
        const int qc = n * 8 + c * 2;
        const float2 l2 = *reinterpret_cast<const float2*>(lse2 + qc);
        const float2 d2 = *reinterpret_cast<const float2*>(dots + qc);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int key = kw + g + (i >> 1) * 8;
            const float p = exp2_ftz(fmaf(s[4 * n + i], scaleLog2, -((i & 1) ? l2.y : l2.x)));
            s[4 * n + i] = diagonal && q0 + qc + (i & 1) < key ? 0.f : p;
            dp[4 * n + i] = s[4 * n + i] * (dp[4 * n + i] - ((i & 1) ? d2.y : d2.x));  // dSᵀ
        }
    }
}

// Pᵀ and dSᵀ as bf16 A fragments (k-block kk = the accumulator's n8 blocks 2kk and 2kk+1) for dV += Pᵀ dO, dK += dSᵀ Q.
__device__ __forceinline__ void bwd_pack_p_ds(uint32_t (&pa)[WB_BQ / 16][4], uint32_t (&da)[WB_BQ / 16][4],
                                              const float (&s)[WB_BQ / 2], const float (&dp)[WB_BQ / 2]) {
#pragma unroll
    for (int kk = 0; kk < WB_BQ / 16; ++kk) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            pa[kk][i] = pack_bf16(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
            da[kk][i] = pack_bf16(dp[8 * kk + 2 * i], dp[8 * kk + 2 * i + 1]);
        }
    }
}

// dK (scaled by 1/sqrt(D)) and dV of the warp's keys below T, bf16.
template <int D>
__device__ __forceinline__ void bwd_store_dk_dv(const float (&dk)[D / 2], const float (&dv)[D / 2], bf16* __restrict__ dK,
                                                bf16* __restrict__ dV, size_t base, size_t ld, int kw, int g, int c, int T) {
    const float scale = rsqrtf(static_cast<float>(D));
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
        const int key = kw + g + hh * 8;
        if (key < T) {
            const size_t off = base + static_cast<size_t>(key) * ld + c * 2;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                *reinterpret_cast<uint32_t*>(dK + off + n * 8) = pack_bf16(dk[4 * n + 2 * hh] * scale, dk[4 * n + 2 * hh + 1] * scale);
                *reinterpret_cast<uint32_t*>(dV + off + n * 8) = pack_bf16(dv[4 * n + 2 * hh], dv[4 * n + 2 * hh + 1]);
            }
        }
    }
}

// The query side of the wgmma backwards: tile qt's Q and dO rows (WB_BQ each, buffer qt & 1, swizzled, cp.async) and
// its rows' lse·log2e and D_i, read into registers when the copies are issued and stored to the stats buffer at the
// end of the step before their use (as bwd3). Rows past T get lse = +inf (P = 0) and D = 0.
template <int D>
struct BwdQueryTiles {
    static constexpr int QBYTES = WB_BQ * D * 2;
    const bf16* Q;
    const bf16* dO;
    const float* LSE;
    const float* rowDot;
    size_t base, ld;
    int T, bh, tid;
    uint32_t sQ0, sdO0;
    float* stats;  // lse·log2e [2][WB_BQ], then D [2][WB_BQ]
    float nextLse = 0.f, nextDot = 0.f;

    __device__ __forceinline__ void load(int qt) { load(qt, qt & 1); }

    // Tile qt into buffer buf.
    __device__ __forceinline__ void load(int qt, int buf) {
        const int q0 = qt * WB_BQ;
        load_tile_sw128<D>(sQ0 + buf * QBYTES, WB_BQ, Q + base, ld, q0, T, tid);
        load_tile_sw128<D>(sdO0 + buf * QBYTES, WB_BQ, dO + base, ld, q0, T, tid);
        cp_async_commit();
        if (tid < WB_BQ) {
            const int row = q0 + tid;
            const bool ok = row < T;
            nextLse = ok ? LSE[static_cast<size_t>(bh) * T + row] * LOG2E : INFINITY;
            nextDot = ok ? rowDot[static_cast<size_t>(bh) * T + row] : 0.f;
        }
    }

    __device__ __forceinline__ void store(int qt) { store_to(qt & 1); }

    __device__ __forceinline__ void store_to(int buf) {
        if (tid < WB_BQ) {
            stats[buf * WB_BQ + tid] = nextLse;
            stats[2 * WB_BQ + buf * WB_BQ + tid] = nextDot;
        }
    }
};

// One query tile (rows q0 .. q0 + 63) of the D = 64 backward for the CTA's 128 keys: the tile's Q, dO (sQ, sdO) and
// stats (lse2, dots) are loaded and the CTA has met at the barrier that opens the tile; sK, sV hold the CTA's keys,
// kwg and kw are the first keys of this warpgroup and warp. Adds into dk, dv (registers) and dqAccum (global).
__device__ __forceinline__ void bwd_d64_tile(float (&dk)[32], float (&dv)[32], uint32_t sK, uint32_t sV, uint32_t sQ,
                                             uint32_t sdO, uint32_t sdS, const float* lse2, const float* dots,
                                             float* dqStage, float* __restrict__ dqAccum, size_t base, size_t ld, int q0,
                                             int kwg, int kw, int T, int tid, int wg, int warp, int g, int c,
                                             float scaleLog2) {
    constexpr int D = 64;
    float dq[D / 2];  // this warpgroup's dS·K for the tile (zero when it skips the tile)
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dq[i] = 0.f;
    if (kwg <= q0 + WB_BQ - 1) {  // warpgroup-uniform: some key of this warpgroup meets some query of the tile
        // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, one commit group.
        float s[WB_BQ / 2], dp[WB_BQ / 2];
#pragma unroll
        for (int i = 0; i < WB_BQ / 2; ++i) s[i] = dp[i] = 0.f;  // not read (scale-d = 0 first), but defined
        fence_regs(s);
        fence_regs(dp);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const uint64_t q = smem_desc(sQ + kk * 32, 16, 1024), o = smem_desc(sdO + kk * 32, 16, 1024);
            wgmma_ss_m64n64(s, smem_desc(sK + wg * (64 * 128) + kk * 32, 16, 1024), q, kk > 0 ? 1 : 0);
            wgmma_ss_m64n64(dp, smem_desc(sV + wg * (64 * 128) + kk * 32, 16, 1024), o, kk > 0 ? 1 : 0);
        }
        wgmma_commit();
        wgmma_wait_all();
        fence_regs(s);
        fence_regs(dp);

        bwd_p_and_ds(s, dp, lse2, dots, q0, kw, g, c, scaleLog2);
        uint32_t pa[WB_BQ / 16][4], da[WB_BQ / 16][4];
        bwd_pack_p_ds(pa, da, s, dp);
        // dSᵀ → this warpgroup's buffer: key row r (0..63), query column q; 4-byte pairs into the swizzle.
#pragma unroll
        for (int n = 0; n < WB_BQ / 8; ++n) {
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int r = warp * 16 + g + hh * 8, q = n * 8 + c * 2;
                const uint32_t at = sdS + r * 128 + ((((q >> 3) ^ (r & 7))) << 4) + (q & 7) * 2;
                st_shared_u32(at, da[n >> 1][(n & 1) * 2 + hh]);
            }
        }
        fence_proxy_async();  // the generic-proxy stores above, ordered before the wgmma below reads them
        named_barrier_wg(wg);

        // dV += Pᵀ dO, dK += dSᵀ Q (B MN-major: 16 query rows per step), dQ_tile = dS K (A = dSᵀ MN-major:
        // 16 keys per step; B = K MN-major: 16 keys per step).
        fence_regs(dv);
        fence_regs(dk);
        fence_regs(dq);
        fence_regs(pa);
        fence_regs(da);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WB_BQ / 16; ++kk) {
            wgmma_rs_m64n64_tb(dv, pa[kk], smem_desc(sdO + kk * (16 * 128), WB_BQ * 128, 1024), 1);
            wgmma_rs_m64n64_tb(dk, da[kk], smem_desc(sQ + kk * (16 * 128), WB_BQ * 128, 1024), 1);
        }
#pragma unroll
        for (int kk = 0; kk < 64 / 16; ++kk)
            wgmma_ss_m64n64_ta_tb(dq, smem_desc(sdS + kk * (16 * 128), 64 * 128, 1024),
                                  smem_desc(sK + wg * (64 * 128) + kk * (16 * 128), WB_BC * 128, 1024), kk > 0 ? 1 : 0);
        wgmma_commit();
        wgmma_wait_all();
        fence_regs(dv);
        fence_regs(dk);
        fence_regs(dq);
        fence_regs(pa);
        fence_regs(da);
    }
    // The two warpgroups' dQ tiles meet in shared memory; dq[4n + i] is query 16·warp + g + 8·(i/2) of the tile,
    // column 8n + 2c + (i % 2). Then every thread adds four 16-byte groups of their sum into the accumulator
    // (a warp covers two whole 256-byte rows): one reduction per 128 keys, as bwd3, not one per warpgroup.
    {
        float* mine = dqStage + wg * (64 * WB_DQ_LD);
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh)
                *reinterpret_cast<float2*>(mine + (warp * 16 + g + hh * 8) * WB_DQ_LD + n * 8 + c * 2) =
                    make_float2(dq[4 * n + 2 * hh], dq[4 * n + 2 * hh + 1]);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int r = (tid >> 4) + 16 * k, col = (tid & 15) * 4, row = q0 + r;
        if (row < T) {
            const float4 a = *reinterpret_cast<const float4*>(dqStage + r * WB_DQ_LD + col);
            const float4 b = *reinterpret_cast<const float4*>(dqStage + 64 * WB_DQ_LD + r * WB_DQ_LD + col);
            red_add_v4(dqAccum + base + static_cast<size_t>(row) * ld + col, make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w));
        }
    }
}

__device__ __forceinline__ void backward_wgmma_d64(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                                   const bf16* __restrict__ V, const bf16* __restrict__ dO,
                                                   const float* __restrict__ LSE, const float* __restrict__ rowDot,
                                                   float* __restrict__ dqAccum, bf16* __restrict__ dK,
                                                   bf16* __restrict__ dV, int T, int H) {
    constexpr int D = 64;
    constexpr int KVBYTES = WB_BC * D * 2, QBYTES = WB_BQ * D * 2, DSBYTES = 64 * WB_BQ * 2;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sK = (raw + 1023u) & ~1023u;       // K [128][64]
    const uint32_t sV = sK + KVBYTES;                  // V [128][64]
    const uint32_t sQ0 = sV + KVBYTES;                 // Q [2][64][64]
    const uint32_t sdO0 = sQ0 + 2 * QBYTES;            // dO [2][64][64]
    const uint32_t sdS0 = sdO0 + 2 * QBYTES;           // dSᵀ [2 warpgroups][64 keys][64 queries]
    float* stats = reinterpret_cast<float*>(wg_smem_raw + (sdS0 + 2 * DSBYTES - raw));  // lse·log2e [2][64], D [2][64]
    float* dqStage = stats + 4 * WB_BQ;                // [2 warpgroups][64 queries][WB_DQ_LD]

    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, c = lane & 3;
    const int kv0 = blockIdx.y * WB_BC;  // blockIdx.y = 0 (the most query tiles) is dispatched first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int kwg = kv0 + wg * 64;           // first key of this warpgroup
    const int kw = kwg + warp * 16;          // first key of this warp

    auto load_rows = [&](uint32_t tile, int rows, const bf16* src, int row0) {
        load_tile_sw128<D>(tile, rows, src + base, ld, row0, T, tid);
    };
    load_rows(sK, WB_BC, K, kv0);
    load_rows(sV, WB_BC, V, kv0);
    BwdQueryTiles<D> queries{Q, dO, LSE, rowDot, base, ld, T, bh, tid, sQ0, sdO0, stats};

    float dk[D / 2], dv[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;

    const int qFirst = kv0 / WB_BQ, qTiles = (T + WB_BQ - 1) / WB_BQ;
    queries.load(qFirst);  // also commits K and V
    queries.store(qFirst);
    for (int qt = qFirst; qt < qTiles; ++qt) {
        const int q0 = qt * WB_BQ, buf = qt & 1;
        const uint32_t sQ = sQ0 + buf * QBYTES, sdO = sdO0 + buf * QBYTES, sdS = sdS0 + wg * DSBYTES;
        const float* lse2 = stats + buf * WB_BQ;
        const float* dots = stats + 2 * WB_BQ + buf * WB_BQ;
        cp_async_wait_all();
        fence_proxy_async();
        __syncthreads();  // tile qt and its stats visible; both warpgroups are done with step qt−1
        if (qt + 1 < qTiles) queries.load(qt + 1);
        bwd_d64_tile(dk, dv, sK, sV, sQ, sdO, sdS, lse2, dots, dqStage, dqAccum, base, ld, q0, kwg, kw, T, tid, wg, warp, g, c,
                     scaleLog2);
        if (qt + 1 < qTiles) queries.store(qt + 1);  // buffer (qt+1)&1 was last read in step qt−1
    }

    bwd_store_dk_dv<D>(dk, dv, dK, dV, base, ld, kw, g, c, T);
}

// ----------------------------------------------------------------------------------------------- backward (D = 128)
// CudaFlashAttention's default backward at D = 128 (flash_attn_bwd_wgmma_d128). Written without a GPU; H100 run 12
// passed the selftest and timed it at 275 TFLOP/s (bwd3: 175). Same contract and arithmetic as backward_wgmma_d64
// (and bwd3); only the split of the dQ product differs.
//
// CTA: 2 warpgroups, 128 keys of one (batch, head), 64 per warpgroup; query tiles of BQ = 64 rows from the diagonal
// to T, Q and dO double-buffered through cp.async. Shared tiles in the D = 128 layout of the forward: [2 column
// blocks of 64][rows][64] with the 128-byte swizzle. Per tile:
//   Sᵀ = K Qᵀ, dPᵀ = V dOᵀ      per warpgroup on its 64 keys: two wgmma m64n64k16 chains (8 steps along the head
//                                dim; A = K / V rows of the warpgroup, B = Q / dO, all K-major), one commit group;
//   Pᵀ, dSᵀ                      in the accumulator layout (row = key, column = query), as backward_wgmma_d64;
//   dV += Pᵀ dO, dK += dSᵀ Q      wgmma m64n128k16, A from registers, B = dO / Q MN-major (LBO = the next 64
//                                columns), committed and not waited for;
//   dQ_tile = dS K                dSᵀ of both warpgroups stored to one shared buffer [128 keys][64 queries] (a CTA
//                                barrier, since dQ sums over all 128 keys); warpgroup w computes dQ columns
//                                [64w, 64w + 64) over the 128 keys: wgmma m64n64k16, 8 steps, A = the buffer MN-major
//                                (imm-trans-a), B = K's column block w MN-major. Each warpgroup adds its own 64 columns
//                                into dqAccum (through a shared staging tile, red.global.add.v4.f32): one reduction per
//                                128 keys, as bwd3, with no sum of the two warpgroups in shared memory.
// Registers: dK and dV accumulators 64 + 64 per thread; Sᵀ and dPᵀ 32 + 32 (dead once packed to the bf16 A
// fragments, 16 + 16, which stay live until their wgmma completes); the dQ accumulator 32. The D = 64 kernel's split
// (each warpgroup a 64 × 128 dQ over its own keys) would need 64 dQ registers on top of dK and dV.
// Warpgroup 1 has no query of the first (diagonal) tile to meet: it skips Sᵀ, dPᵀ, dV and dK there and writes zeros to
// its half of the dSᵀ buffer, which the dQ product still reads. (Warpgroup 0 always meets the tile.)
// Barriers per tile: 0 (__syncthreads) at the top (tile loaded; both warpgroups done with the previous step) and after
// the dSᵀ stores (each thread fences the async proxy first); 1 + wg (128 threads) between this warpgroup's staging
// writes and reads of its dQ columns.
constexpr int WB128_DQ_LD = 72;  // floats per row of a warpgroup's dQ staging tile (64 + 8, as WB_DQ_LD)

__device__ __forceinline__ void backward_wgmma_d128(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                                    const bf16* __restrict__ V, const bf16* __restrict__ dO,
                                                    const float* __restrict__ LSE, const float* __restrict__ rowDot,
                                                    float* __restrict__ dqAccum, bf16* __restrict__ dK,
                                                    bf16* __restrict__ dV, int T, int H) {
    constexpr int D = 128;
    constexpr int KVBYTES = WB_BC * D * 2, QBYTES = WB_BQ * D * 2, DSBYTES = WB_BC * WB_BQ * 2;
    WG_SMEM_RAW;
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sK = (raw + 1023u) & ~1023u;       // K [2 column blocks][128][64]
    const uint32_t sV = sK + KVBYTES;                  // V [2][128][64]
    const uint32_t sQ0 = sV + KVBYTES;                 // Q [2 buffers][2][64][64]
    const uint32_t sdO0 = sQ0 + 2 * QBYTES;            // dO [2 buffers][2][64][64]
    const uint32_t sdS = sdO0 + 2 * QBYTES;            // dSᵀ [128 keys][64 queries] (warpgroup w: rows 64w ..)
    float* stats = reinterpret_cast<float*>(wg_smem_raw + (sdS + DSBYTES - raw));  // lse·log2e [2][64], D [2][64]
    float* dqStage = stats + 4 * WB_BQ;                // [2 warpgroups][64 queries][WB128_DQ_LD]

    // wg and warp through a lane-0 broadcast, as forward_wgmma: ptxas then knows the branches on them to be
    // warp-uniform (no wgmma serialization on divergent paths).
    const int tid = threadIdx.x, lane = tid & 31;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = __shfl_sync(0xffffffffu, (tid >> 5) & 3, 0);
    const int g = lane >> 2, c = lane & 3;
    const int kv0 = blockIdx.y * WB_BC;  // blockIdx.y = 0 (the most query tiles) is dispatched first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int kwg = kv0 + wg * 64;           // first key of this warpgroup
    const int kw = kwg + warp * 16;          // first key of this warp

    auto load_rows = [&](uint32_t tile, int rows, const bf16* src, int row0) {
        load_tile_sw128<D>(tile, rows, src + base, ld, row0, T, tid);
    };
    load_rows(sK, WB_BC, K, kv0);
    load_rows(sV, WB_BC, V, kv0);
    BwdQueryTiles<D> queries{Q, dO, LSE, rowDot, base, ld, T, bh, tid, sQ0, sdO0, stats};

    float dk[D / 2], dv[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;

    const int qFirst = kv0 / WB_BQ, qTiles = (T + WB_BQ - 1) / WB_BQ;
    queries.load(qFirst);  // also commits K and V
    queries.store(qFirst);
    for (int qt = qFirst; qt < qTiles; ++qt) {
        const int q0 = qt * WB_BQ, buf = qt & 1;
        const uint32_t sQ = sQ0 + buf * QBYTES, sdO = sdO0 + buf * QBYTES;
        const float* lse2 = stats + buf * WB_BQ;
        const float* dots = stats + 2 * WB_BQ + buf * WB_BQ;
        cp_async_wait_all();
        fence_proxy_async();
        __syncthreads();  // tile qt and its stats visible; both warpgroups are done with step qt−1
        if (qt + 1 < qTiles) queries.load(qt + 1);

        // Pᵀ and dSᵀ as bf16 A fragments: k-block kk = queries 16kk .. 16kk + 15. Live until the dV / dK wgmma
        // that reads them completes (the wait at the end of the step), so declared here.
        uint32_t pa[WB_BQ / 16][4], da[WB_BQ / 16][4];
#pragma unroll
        for (int kk = 0; kk < WB_BQ / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i) pa[kk][i] = da[kk][i] = 0u;
        if (kwg <= q0 + WB_BQ - 1) {  // warpgroup-uniform: some key of this warpgroup meets some query of the tile
            // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, one commit group; step kk is 32 bytes into column block kk/4.
            float s[WB_BQ / 2], dp[WB_BQ / 2];
#pragma unroll
            for (int i = 0; i < WB_BQ / 2; ++i) s[i] = dp[i] = 0.f;  // not read (scale-d = 0 first), but defined
            fence_regs(s);
            fence_regs(dp);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const uint32_t colBlock = (kk >> 2), step = (kk & 3) * 32;
                const uint64_t q = smem_desc(sQ + colBlock * (WB_BQ * 128) + step, 16, 1024);
                const uint64_t o = smem_desc(sdO + colBlock * (WB_BQ * 128) + step, 16, 1024);
                const uint32_t rows = colBlock * (WB_BC * 128) + wg * (64 * 128) + step;
                wgmma_ss_m64n64(s, smem_desc(sK + rows, 16, 1024), q, kk > 0 ? 1 : 0);
                wgmma_ss_m64n64(dp, smem_desc(sV + rows, 16, 1024), o, kk > 0 ? 1 : 0);
            }
            wgmma_commit();
            wgmma_wait_all();
            fence_regs(s);
            fence_regs(dp);

            bwd_p_and_ds(s, dp, lse2, dots, q0, kw, g, c, scaleLog2);
            bwd_pack_p_ds(pa, da, s, dp);
            // dSᵀ → the shared buffer: key row r (0..127), query column q; 4-byte pairs into the swizzle.
#pragma unroll
            for (int n = 0; n < WB_BQ / 8; ++n) {
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) {
                    const int r = wg * 64 + warp * 16 + g + hh * 8, q = n * 8 + c * 2;
                    const uint32_t at = sdS + r * 128 + ((((q >> 3) ^ (r & 7))) << 4) + (q & 7) * 2;
                    st_shared_u32(at, da[n >> 1][(n & 1) * 2 + hh]);
                }
            }

            // dV += Pᵀ dO, dK += dSᵀ Q: B MN-major, 16 query rows (2 atoms) per step, LBO = the next 64 columns.
            fence_regs(dv);
            fence_regs(dk);
            fence_regs(pa);
            fence_regs(da);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < WB_BQ / 16; ++kk) {
                wgmma_rs_m64n128_tb(dv, pa[kk], smem_desc(sdO + kk * (16 * 128), WB_BQ * 128, 1024), 1);
                wgmma_rs_m64n128_tb(dk, da[kk], smem_desc(sQ + kk * (16 * 128), WB_BQ * 128, 1024), 1);
            }
            wgmma_commit();  // waited for at the end of the step
        } else {
            // Warpgroup 1 on the diagonal tile: its keys follow every query, so its dSᵀ rows are zero.
            const uint32_t zeros = sdS + 64 * 128 + (tid & 127) * 16;
#pragma unroll
            for (int i = 0; i < 4; ++i)
                st_shared_zero16(zeros + i * 2048);
        }
        fence_proxy_async();  // the generic-proxy dSᵀ stores above, ordered before the dQ wgmma below reads them
        __syncthreads();      // both warpgroups' dSᵀ rows stored

        // dQ_tile[:, 64wg ..] = dS K: A = dSᵀ MN-major (16 keys per step), B = K column block wg MN-major.
        float dq[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) dq[i] = 0.f;  // not read (scale-d = 0 first), but defined
        fence_regs(dq);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WB_BC / 16; ++kk)
            wgmma_ss_m64n64_ta_tb(dq, smem_desc(sdS + kk * (16 * 128), WB_BQ * 128, 1024),
                                  smem_desc(sK + wg * (WB_BC * 128) + kk * (16 * 128), WB_BC * 128, 1024), kk > 0 ? 1 : 0);
        wgmma_commit();
        wgmma_wait_all();  // also dV and dK
        fence_regs(dv);
        fence_regs(dk);
        fence_regs(dq);
        fence_regs(pa);
        fence_regs(da);

        // dq[4n + i]: query 16·warp + g + 8·(i/2) of the tile, column 64·wg + 8n + 2c + (i % 2). Through this
        // warpgroup's staging tile, then each thread adds eight 16-byte groups (a warp covers two 256-byte rows).
        float* mine = dqStage + wg * (64 * WB128_DQ_LD);
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh)
                *reinterpret_cast<float2*>(mine + (warp * 16 + g + hh * 8) * WB128_DQ_LD + n * 8 + c * 2) =
                    make_float2(dq[4 * n + 2 * hh], dq[4 * n + 2 * hh + 1]);
        named_barrier_wg(wg);
        const int t = tid & 127;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const int r = (t >> 4) + 8 * k, col = (t & 15) * 4, row = q0 + r;
            if (row < T) {
                const float4 a = *reinterpret_cast<const float4*>(mine + r * WB128_DQ_LD + col);
                red_add_v4(dqAccum + base + static_cast<size_t>(row) * ld + wg * 64 + col, a);
            }
        }
        if (qt + 1 < qTiles) queries.store(qt + 1);  // buffer (qt+1)&1 was last read in step qt−1
    }

    bwd_store_dk_dv<D>(dk, dv, dK, dV, base, ld, kw, g, c, T);
}

#endif  // sm_90a

}  // namespace

// q, k, v, out: bf16 [B·T, H·D]; lse: fp32 [B, H, T]. grid (B·H, ⌈T/128⌉), block 256, dynamic shared memory
// 1024 + 128·D·2 + 4·BC·D·2 bytes, BC = 64 at D = 64 (50 176), 128 at D = 128 (164 864)
// (CudaFlashAttention.ForwardWgmma.sharedBytes). Two CTAs per SM at D = 64 (≤ 128 registers), one at D = 128. sm_90a only: the other targets of
// the fatbin get a body that traps, and the launcher picks this kernel only on compute capability 9.x.
#define FLASH_ATTN_FWD_WGMMA(D, MIN_BLOCKS)                                                                      \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, MIN_BLOCKS) flash_attn_fwd_wgmma_d##D(             \
        const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T, int H) {                       \
        FWD_WGMMA_BODY(D)                                                                                        \
    }

#ifdef PATCHCORE_WGMMA
#define FWD_WGMMA_BODY(D) forward_wgmma<D, FwdWgmmaTile<D>::BC>(q, k, v, out, lse, T, H);
#else
#define FWD_WGMMA_BODY(D) __trap();
#endif

FLASH_ATTN_FWD_WGMMA(64, 2)
FLASH_ATTN_FWD_WGMMA(128, 1)

// Variant 4, ping-pong (forward_wgmma_pingpong): grid (B·H, ⌈T/128⌉), block 256, dynamic shared memory
// 1024 + 128·D·2 + (3 + 2)·128·D·2 + 80 (mbarriers): 99 408 at D = 64, 197 712 at D = 128
// (CudaFlashAttention.ForwardWgmmaPingPong.sharedBytes). One CTA per SM.
#ifdef PATCHCORE_WGMMA
#define FWD_WGMMA_PP_BODY(D) forward_wgmma_pingpong<D>(q, k, v, out, lse, T, H);
#else
#define FWD_WGMMA_PP_BODY(D) __trap();
#endif
#define FLASH_ATTN_FWD_WGMMA_PP(D)                                                                               \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) flash_attn_fwd_wgmma_pp_d##D(                    \
        const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T, int H) {                       \
        FWD_WGMMA_PP_BODY(D)                                                                                     \
    }

FLASH_ATTN_FWD_WGMMA_PP(64)
FLASH_ATTN_FWD_WGMMA_PP(128)

// Variant 5, persistent ping-pong (forward_wgmma_pingpong_persistent): args as flash_attn_fwd_wgmma_pp_d* plus
// BH = B·H. grid min(B·H·⌈T/128⌉, SMs), block 256, dynamic shared memory 1024 + 2·128·D·2 + (3 + 2)·128·D·2 + 112:
// 115 824 bytes at D = 64, 230 512 at D = 128 (CudaFlashAttention.ForwardWgmmaPersistent.sharedBytes).
// Variant 6, the same with TMA loads (forward_wgmma_pingpong_persistent<D, true>): plus the tensor maps of q, k and v
// (CudaFlashAttention.ForwardWgmmaPersistent.map: 4-D [B][T][H][D], boxes of 64 columns × 1 × 64 rows for Q and 128
// rows for K and V, 128-byte swizzle), passed by value as grid constants.
#ifdef PATCHCORE_WGMMA
#define FWD_PERSISTENT_BODY(D) forward_wgmma_pingpong_persistent<D>(q, k, v, out, lse, T, H, BH);
#define FWD_PERSISTENT_TMA_BODY(D) forward_wgmma_pingpong_persistent<D, true>(q, k, v, out, lse, T, H, BH, &tmQ, &tmK, &tmV);
#else
#define FWD_PERSISTENT_BODY(D) __trap();
#define FWD_PERSISTENT_TMA_BODY(D) __trap();
#endif
#define FLASH_ATTN_FWD_WGMMA_PERSISTENT(D)                                                                       \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) flash_attn_fwd_wgmma_pp_persistent_d##D(        \
        const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T, int H, int BH) {               \
        FWD_PERSISTENT_BODY(D)                                                                                   \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) flash_attn_fwd_wgmma_pp_persistent_tma_d##D(    \
        const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T, int H, int BH,                 \
        const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,                         \
        const __grid_constant__ CUtensorMap tmV) {                                                               \
        FWD_PERSISTENT_TMA_BODY(D)                                                                               \
    }

FLASH_ATTN_FWD_WGMMA_PERSISTENT(64)
FLASH_ATTN_FWD_WGMMA_PERSISTENT(128)

// Variant 7 at D = 64 on Hopper (the default from H100 run 14 to run 16, and the default's fallback where ptxas gives
// the producer kernel too few registers): the persistent kernel with 3 warpgroups
// (forward_wgmma_pingpong_persistent<64, TMA, 3>): items of 192 query rows, the turns going round three warpgroups, so
// that two warpgroups' GEMMs can cover each softmax (at D = 64 a tile's exponentials take as long as its two GEMMs;
// H100 run 13's profile of the two-warpgroup kernel showed 0.47 eligible warps per scheduler). Args as variants 5 / 6.
// grid min(B·H·⌈T/192⌉, SMs), block 384, dynamic shared memory
// 1024 + 2·192·64·2 + (4 + 3)·128·64·2 + 160 = 165 024 bytes (CudaFlashAttention.ForwardWgmmaPersistent.sharedBytes). Written without a GPU; H100 run 14 passed the
// selftest and timed it at 289 TFLOP/s (stream; 309 kernel time) against mma.sync's 267 (271) and the two-warpgroup
// kernel's 261 (284).
constexpr int PP3_THREADS = 384;
// Only the TMA form exists: without tensor maps variants 1 and 7 at D = 64 run the mma.sync forward (CudaFlashAttention),
// so a cp.async form would never be run, let alone checked.
#ifdef PATCHCORE_WGMMA
#define FWD_PP3_TMA_BODY forward_wgmma_pingpong_persistent<64, true, 3>(q, k, v, out, lse, T, H, BH, &tmQ, &tmK, &tmV);
#else
#define FWD_PP3_TMA_BODY __trap();
#endif
extern "C" __global__ void __launch_bounds__(PP3_THREADS, 1)
flash_attn_fwd_wgmma_pp3_persistent_tma_d64(const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T,
                                            int H, int BH, const __grid_constant__ CUtensorMap tmQ,
                                            const __grid_constant__ CUtensorMap tmK,
                                            const __grid_constant__ CUtensorMap tmV) {
    FWD_PP3_TMA_BODY
}

// The default at D = 64 on Hopper since H100 run 16 (written without a GPU as opt-in variant 7; run 16: 332-334 TFLOP/s
// in bench kernels, 1.09x the three-warpgroup kernel, 353 timed from C++): the three-warpgroup kernel's consumers plus a
// producer warpgroup that issues every TMA load (forward_wgmma_producer, setmaxnreg 32 / 160). Args as flash_attn_fwd_wgmma_pp3_persistent_tma_d64
// (q, k and v are read through the maps only). grid min(B·H·⌈T/192⌉, SMs), block 512, dynamic shared memory
// 1024 + 2·192·64·2 + (4 + 3)·128·64·2 + 176 (22 mbarriers) = 165 040 bytes
// (CudaFlashAttention.ForwardWgmmaPersistent.sharedBytes with a producer).
constexpr int PRODUCER_THREADS = 512;  // 1 producer + 3 consumer warpgroups
#ifdef PATCHCORE_WGMMA
#define FWD_PRODUCER_BODY forward_wgmma_producer<64>(out, lse, T, H, BH, &tmQ, &tmK, &tmV);
#else
#define FWD_PRODUCER_BODY __trap();
#endif
extern "C" __global__ void __launch_bounds__(PRODUCER_THREADS, 1)
flash_attn_fwd_wgmma_pp3_producer_tma_d64(const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T,
                                          int H, int BH, const __grid_constant__ CUtensorMap tmQ,
                                          const __grid_constant__ CUtensorMap tmK,
                                          const __grid_constant__ CUtensorMap tmV) {
    FWD_PRODUCER_BODY
}

// Backward (D = 64): args as flash_attn_bwd3_*. grid (B·H, ⌈T/128⌉), block 256, dynamic shared memory
// 1024 + 2·128·64·2 + 4·64·64·2 + 2·64·64·2 + 4·64·4 + 2·64·72·4 = 120 832 bytes
// (CudaFlashAttention.BackwardWgmma.sharedBytes).
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1)
flash_attn_bwd_wgmma_d64(const bf16* q, const bf16* k, const bf16* v, const bf16* dO, const float* lse,
                         const float* rowDot, float* dqAccum, bf16* dk, bf16* dv, int T, int H) {
#ifdef PATCHCORE_WGMMA
    backward_wgmma_d64(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);
#else
    __trap();
#endif
}

// Backward (D = 128): args as flash_attn_bwd3_*. grid (B·H, ⌈T/128⌉), block 256, dynamic shared memory
// 1024 + 2·128·128·2 + 4·64·128·2 + 128·64·2 + 4·64·4 + 2·64·72·4 = 186 368 bytes
// (CudaFlashAttention.BackwardWgmma.sharedBytes).
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1)
flash_attn_bwd_wgmma_d128(const bf16* q, const bf16* k, const bf16* v, const bf16* dO, const float* lse,
                          const float* rowDot, float* dqAccum, bf16* dk, bf16* dv, int T, int H) {
#ifdef PATCHCORE_WGMMA
    backward_wgmma_d128(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);
#else
    __trap();
#endif
}
