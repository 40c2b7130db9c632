// Causal flash attention forward for Hopper (sm_90a) with warpgroup MMA (wgmma): CudaFlashAttention's forward
// variant 2. Same semantics and outputs as flash_attn_fwd2_* (flash_attention.cu): out = softmax(Q Kᵀ / sqrt(D),
// causal) V in bf16, lse fp32 [B, H, T] (natural log), so the backward is unchanged.
//
// WRITTEN WITHOUT A GPU (2026-11-27) and not yet run: the selftest rows tagged [flashfwd v2] are its first check.
//
// CTA: 2 warpgroups (256 threads), 128 query rows of one (batch, head), 64 per warpgroup; key/value tiles of BC = 64
// rows, visited from the diagonal tile down to tile 0, double-buffered through cp.async. Per tile and warpgroup:
//   S[64×64] = Q Kᵀ      wgmma m64n64k16, A = Q and B = K from shared memory (K-major), D/16 steps;
//   online softmax       per warp on its 16 rows, in the accumulator layout (the same as mma.sync's m16n8 C layout);
//   O[64×D] += P V       wgmma m64nDk16, A = P from registers (the accumulator repacked to bf16 A fragments, as the
//                        mma.sync kernels do), B = V from shared memory, MN-major (transposed); BC/16 steps.
// Shared tiles use the 128-byte swizzle (16-byte chunk index XOR row index mod 8 inside each 8-row × 128-byte atom,
// atoms 1024-byte aligned), stored as [D/64 column blocks][rows][64 elements]: K-major for Q and K, and the same
// bytes are the MN-major layout wgmma wants for V. Descriptors: K-major SBO = 1024 (next 8 rows), LBO unused (16);
// MN-major (V) SBO = 1024 (next 8 key rows), LBO = BC·128 (next 64 columns).
// cp.async writes through the generic proxy and wgmma reads through the async proxy: every thread fences
// (fence.proxy.async.shared::cta) after its copies land and before the barrier that opens a tile.
#include "common.cuh"

namespace {

constexpr int WG_THREADS = 256;  // two warpgroups

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;
constexpr int WG_BR = 128;  // query rows per CTA (CudaFlashAttention.ForwardWgmma.ROWS)
constexpr int WG_BC = 64;   // key rows per tile

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Byte offset of 16-byte chunk `chunk` (0 .. D/8 − 1) of row r in a swizzled tile of `rows` rows (rows % 8 == 0).
__device__ __forceinline__ uint32_t sw128(int rows, int r, int chunk) {
    return static_cast<uint32_t>((chunk >> 3) * rows * 128 + r * 128 + (((chunk & 7) ^ (r & 7)) << 4));
}

__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) { return pack_bf16x2(lo, hi); }

// wgmma matrix descriptor: start address, leading and stride byte offsets (all >> 4), 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t leadingBytes, uint32_t strideBytes) {
    return static_cast<uint64_t>((addr >> 4) & 0x3FFF) | (static_cast<uint64_t>((leadingBytes >> 4) & 0x3FFF) << 16) |
           (static_cast<uint64_t>((strideBytes >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving reads or writes of accumulator (and A-fragment) registers across an asynchronous
// wgmma: PTX requires wgmma.fence between any other access to those registers and the wgmma that uses them.
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

// D[64×64] (+)= A[64×16] · B[16×64], A and B from shared memory (descriptors), both K-major.
__device__ __forceinline__ void wgmma_ss_m64n64(float (&d)[32], uint64_t descA, uint64_t descB, int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(descA), "l"(descB), "r"(accumulate));
}

// D[64×64] (+)= A[64×16] · B[16×64], A from registers (the mma.sync A-fragment layout per warp), B from
// shared memory, MN-major (imm-trans-b = 1).
__device__ __forceinline__ void wgmma_rs_m64n64_tb(float (&d)[32], const uint32_t (&a)[4], uint64_t descB, int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(accumulate));
}

// D[64×128] (+)= A[64×16] · B[16×128], A from registers (the mma.sync A-fragment layout per warp), B from
// shared memory, MN-major (imm-trans-b = 1).
__device__ __forceinline__ void wgmma_rs_m64n128_tb(float (&d)[64], const uint32_t (&a)[4], uint64_t descB, int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB), "r"(accumulate));
}


template <int D>
__device__ __forceinline__ void forward_wgmma(const bf16* __restrict__ Q, const bf16* __restrict__ K,
                                              const bf16* __restrict__ V, bf16* __restrict__ O, float* __restrict__ LSE,
                                              int T, int H) {
    static_assert(D == 64 || D == 128, "wgmma forward: head dim 64 or 128");
    constexpr int CH = D / 8;                       // 16-byte chunks per row
    constexpr int QBYTES = WG_BR * D * 2, KVBYTES = WG_BC * D * 2;
    extern __shared__ unsigned char wg_smem_raw[];
    const uint32_t raw = smem_u32(wg_smem_raw);
    const uint32_t sQ = (raw + 1023u) & ~1023u;     // swizzle atoms must be 1024-byte aligned
    const uint32_t sK0 = sQ + QBYTES, sV0 = sK0 + 2 * KVBYTES;  // K [2][BC][D], V [2][BC][D]

    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, c = lane & 3;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * WG_BR;  // longest rows first
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const size_t ld = static_cast<size_t>(H) * D;
    const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * D;
    const float scaleLog2 = LOG2E * rsqrtf(static_cast<float>(D));
    const int nTiles = (min(q0 + WG_BR, T) + WG_BC - 1) / WG_BC;

    auto load_rows = [&](uint32_t tile, int rows, const bf16* src, int row0) {
        for (int i = tid; i < rows * CH; i += WG_THREADS) {
            const int r = i / CH, ch = i - r * CH;
            const bool valid = row0 + r < T;  // rows past T are zero-filled (their address is row 0's)
            const bf16* from = src + base + static_cast<size_t>(valid ? row0 + r : 0) * ld + ch * 8;
            cp_async16_zfill(tile + sw128(rows, r, ch), from, valid);
        }
    };
    auto load_kv = [&](int j) {
        const int buf = j & 1;
        load_rows(sK0 + buf * KVBYTES, WG_BC, K, j * WG_BC);
        load_rows(sV0 + buf * KVBYTES, WG_BC, V, j * WG_BC);
    };
    load_rows(sQ, WG_BR, Q, q0);
    load_kv(nTiles - 1);
    cp_async_commit();

    const int qwg = q0 + wg * 64;         // first query row of this warpgroup
    const int qw = qwg + warp * 16;       // first query row of this warp
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.f, 0.f};

    for (int j = nTiles - 1; j >= 0; --j) {
        const int kv0 = j * WG_BC;
        cp_async_wait_all();  // the only group in flight is tile j's (and Q's, the first time)
        fence_proxy_async();  // this thread's copies, visible to the async proxy (wgmma)
        __syncthreads();      // everyone's copies; both warpgroups are done with tile j+1, whose buffers j−1 takes
        if (j > 0) {
            load_kv(j - 1);
            cp_async_commit();
        }
        if (kv0 > qwg + 63) continue;  // warpgroup-uniform: every row of this warpgroup precedes the tile
        const uint32_t sK = sK0 + (j & 1) * KVBYTES, sV = sV0 + (j & 1) * KVBYTES;

        // S = Q Kᵀ: D/16 steps along the head dim; step kk is 32 bytes into column block kk/4.
        float s[WG_BC / 2];
#pragma unroll
        for (int i = 0; i < WG_BC / 2; ++i) s[i] = 0.f;
        fence_regs(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const uint32_t qa = sQ + (kk >> 2) * (WG_BR * 128) + wg * (64 * 128) + (kk & 3) * 32;
            const uint32_t kb = sK + (kk >> 2) * (WG_BC * 128) + (kk & 3) * 32;
            wgmma_ss_m64n64(s, smem_desc(qa, 16, 1024), smem_desc(kb, 16, 1024), kk > 0 ? 1 : 0);
        }
        wgmma_commit();
        wgmma_wait_all();
        fence_regs(s);

        // Causal mask (col > row); it also hides columns ≥ T from every row < T. s[4n + i]: row g + 8·(i/2),
        // column 8n + 2c + (i % 2) of the warp's 16 × 64 block.
        if (kv0 + WG_BC - 1 > qw) {
#pragma unroll
            for (int n = 0; n < WG_BC / 8; ++n)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int col = kv0 + n * 8 + c * 2 + (i & 1);
                    const int row = qw + g + (i >> 1) * 8;
                    if (col > row) s[4 * n + i] = -INFINITY;
                }
        }
        // Online softmax; a row is spread over the 4 lanes of a quad.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = rowMax[r];
#pragma unroll
            for (int n = 0; n < WG_BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mScaled = mx == -INFINITY ? 0.f : mx * scaleLog2;  // fully masked row: no NaN
            const float alpha = exp2_ftz(rowMax[r] * scaleLog2 - mScaled);
            rowMax[r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int n = 0; n < WG_BC / 8; ++n) {
                s[4 * n + 2 * r] = exp2_ftz(fmaf(s[4 * n + 2 * r], scaleLog2, -mScaled));
                s[4 * n + 2 * r + 1] = exp2_ftz(fmaf(s[4 * n + 2 * r + 1], scaleLog2, -mScaled));
                sum += s[4 * n + 2 * r] + s[4 * n + 2 * r + 1];
            }
            rowSum[r] = rowSum[r] * alpha + sum;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[4 * n + 2 * r] *= alpha;
                o[4 * n + 2 * r + 1] *= alpha;
            }
        }
        // P as bf16 A fragments: k-block kk is the accumulator's n8 blocks 2kk and 2kk+1.
        uint32_t pa[WG_BC / 16][4];
#pragma unroll
        for (int kk = 0; kk < WG_BC / 16; ++kk) {
            pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
            pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
            pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
            pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
        }
        // O += P V: BC/16 steps along the keys; step kk starts 16 key rows (2 atoms) further.
        fence_regs(o);
        fence_regs(pa);  // the bf16 packing of P must stay ahead of the fence
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WG_BC / 16; ++kk) {
            const uint64_t vb = smem_desc(sV + kk * (16 * 128), WG_BC * 128, 1024);
            if constexpr (D == 64) wgmma_rs_m64n64_tb(o, pa[kk], vb, 1);
            else wgmma_rs_m64n128_tb(o, pa[kk], vb, 1);
        }
        wgmma_commit();
        wgmma_wait_all();
        fence_regs(o);
        fence_regs(pa);
    }

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

#endif  // sm_90a

}  // namespace

// q, k, v, out: bf16 [B·T, H·D]; lse: fp32 [B, H, T]. grid (B·H, ⌈T/128⌉), block 256, dynamic shared memory
// 1024 + 128·D·2 + 4·64·D·2 bytes (CudaFlashAttention.ForwardWgmma.sharedBytes). sm_90a only: the other targets of
// the fatbin get a body that traps, and the launcher picks this kernel only on compute capability 9.x.
#define FLASH_ATTN_FWD_WGMMA(D, MIN_BLOCKS)                                                                      \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, MIN_BLOCKS) flash_attn_fwd_wgmma_d##D(             \
        const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int T, int H) {                       \
        FWD_WGMMA_BODY(D)                                                                                        \
    }

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FWD_WGMMA_BODY(D) forward_wgmma<D>(q, k, v, out, lse, T, H);
#else
#define FWD_WGMMA_BODY(D) __trap();
#endif

FLASH_ATTN_FWD_WGMMA(64, 2)
FLASH_ATTN_FWD_WGMMA(128, 1)
