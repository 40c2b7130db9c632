// RMSNorm forward (plain, and fused with the residual add before it) and backward, bf16 in/out, fp32 math.
// Semantics: Backend.rmsNorm / addRmsNorm / rmsNormBackward. Launch shapes: CudaRmsNorm.java.
//
// Vector path: when the width is a multiple of 8 and every base pointer is 16-byte aligned, each row starts on a
// 16-byte boundary and all accesses are 16-byte (8 × bf16); otherwise a scalar path with the same arithmetic.
#include "common.cuh"
#include "mbarrier.cuh"
#include "row_pipeline.cuh"

namespace {

constexpr int FWD_WARPS = 8;    // rows per forward block (CudaRmsNorm.FORWARD_WARPS)
constexpr int REDUCE_ROWS = 32;  // blockDim.y of the gain-gradient reduce (CudaRmsNorm.REDUCE_ROWS)
constexpr int BWD_WARPS = 8;     // rows in flight per block of the warp-per-row backward (CudaRmsNorm.BACKWARD_WARPS)
constexpr int BWD_CACHE_GROUPS = 2;  // backward: 16-byte groups per thread held in registers (d ≤ 16 · blockDim)

__device__ __forceinline__ void load8(const bf16* p, float* f) { unpack8(*reinterpret_cast<const bf16x8*>(p), f); }
__device__ __forceinline__ void store8(bf16* p, const float* f) { *reinterpret_cast<bf16x8*>(p) = pack8(f); }
__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
// o += the 8 bf16 of a, in float: the accumulating backwards (Backend.rmsNormBackwardAccumulate) add the dx group
// they loaded to the new one before its single rounding store. In place is safe: each thread reads only the groups it
// then writes, before writing them.
__device__ __forceinline__ void add8(float* o, const bf16x8& a) {
    float f[8];
    unpack8(a, f);
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j] += f[j];
}

// A backward's 16-byte dx group out: stored, or with ACC first added to the group already there (add8).
template <bool ACC>
__device__ __forceinline__ void store_dx8(bf16* p, float* o) {
    if (ACC) add8(o, *reinterpret_cast<const bf16x8*>(p));
    store8(p, o);
}

// One warp per row. ADD: the row is bf16(residual + branch), stored to `sum`; rstd and y are computed from that
// stored (rounded) value, so the backward, which reads `sum`, differentiates exactly what the forward normalized.
//
// Rows up to CACHE_GROUPS · 256 wide (every preset) on the vector path keep the row in registers between the
// sum-of-squares and the scaling: one DRAM read per element, and all of a lane's 16-byte loads are in flight at
// once. Wider or unaligned rows re-read the row in the second pass (it is then usually still in L1/L2).
constexpr int CACHE_GROUPS = 10;

// The register part of a cached forward row: `cache` holds the lane's 16-byte groups of `a` (columns
// (lane + 32k)·8 .. +7, k < G, those below d), `other` those of `b` when ADD. Writes sum (ADD), rstd and y.
// Shared by the register-cached kernels and the pipelined ones (which fill the registers from shared memory).
template <bool ADD, int G>
__device__ __forceinline__ void rmsnorm_row_from_regs(bf16x8 (&cache)[G], const bf16x8 (&other)[ADD ? G : 1],
                                                      bf16* __restrict__ sum, bf16* __restrict__ y,
                                                      float* __restrict__ rstd, const bf16* __restrict__ gain,
                                                      long long row, int d, float eps) {
    const int lane = threadIdx.x & 31;
    const size_t base = (size_t)row * d;
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < G; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c >= d) continue;
        float v[8];
        unpack8(cache[k], v);
        if (ADD) {
            float w[8];
            unpack8(other[ADD ? k : 0], w);
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] += w[j];
            cache[k] = pack8(v);  // rounds to the stored bf16 value
            *reinterpret_cast<bf16x8*>(sum + base + c) = cache[k];
            unpack8(cache[k], v);
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) ss = fmaf(v[j], v[j], ss);
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (lane == 0) rstd[row] = r;
#pragma unroll
    for (int k = 0; k < G; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c >= d) continue;
        float v[8], g[8];
        unpack8(cache[k], v);
        load8(gain + c, g);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = v[j] * r * g[j];
        store8(y + base + c, v);
    }
}

template <bool ADD>
__device__ __forceinline__ void rmsnorm_row_cached(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                                                   const bf16* __restrict__ a, const bf16* __restrict__ b,
                                                   const bf16* __restrict__ gain, int row, int d, float eps) {
    const int lane = threadIdx.x & 31;
    const size_t base = (size_t)row * d;
    // ADD: both inputs' loads are issued before the first add, so a lane has all of them in flight at once (loading
    // `b` inside the add loop below made one DRAM round trip per group).
    bf16x8 cache[CACHE_GROUPS], other[ADD ? CACHE_GROUPS : 1];
#pragma unroll
    for (int k = 0; k < CACHE_GROUPS; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c < d) {
            cache[k] = *reinterpret_cast<const bf16x8*>(a + base + c);
            if (ADD) other[k] = *reinterpret_cast<const bf16x8*>(b + base + c);
        }
    }
    rmsnorm_row_from_regs<ADD, CACHE_GROUPS>(cache, other, sum, y, rstd, gain, row, d, eps);
}

template <bool ADD>
__device__ __forceinline__ void rmsnorm_row_two_pass(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                                                     const bf16* __restrict__ a, const bf16* __restrict__ b,
                                                     const bf16* __restrict__ gain, int row, int d, float eps, bool vec) {
    const int lane = threadIdx.x & 31;
    const size_t base = (size_t)row * d;
    float ss = 0.f;
    if (vec) {
        for (int c = lane * 8; c < d; c += 32 * 8) {
            float v[8];
            load8(a + base + c, v);
            if (ADD) {
                float w[8];
                load8(b + base + c, w);
#pragma unroll
                for (int k = 0; k < 8; ++k) v[k] = round_bf16(v[k] + w[k]);
                store8(sum + base + c, v);
            }
#pragma unroll
            for (int k = 0; k < 8; ++k) ss = fmaf(v[k], v[k], ss);
        }
    } else {
        for (int c = lane; c < d; c += 32) {
            float v = __bfloat162float(a[base + c]);
            if (ADD) {
                v = round_bf16(v + __bfloat162float(b[base + c]));
                sum[base + c] = __float2bfloat16_rn(v);
            }
            ss = fmaf(v, v, ss);
        }
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (lane == 0) rstd[row] = r;
    // ADD re-reads what this same lane stored above (same addresses, program order), never `a`.
    const bf16* x = ADD ? static_cast<const bf16*>(sum) : a;
    if (vec) {
        for (int c = lane * 8; c < d; c += 32 * 8) {
            float v[8], g[8];
            load8(x + base + c, v);
            load8(gain + c, g);
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = v[k] * r * g[k];
            store8(y + base + c, v);
        }
    } else {
        for (int c = lane; c < d; c += 32)
            y[base + c] = __float2bfloat16_rn(__bfloat162float(x[base + c]) * r * __bfloat162float(gain[c]));
    }
}

template <bool ADD>
__device__ __forceinline__ void rmsnorm_forward(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                                                const bf16* __restrict__ a, const bf16* __restrict__ b,
                                                const bf16* __restrict__ gain, int n, int d, float eps) {
    const bool vec = d % 8 == 0 && aligned16(y) && aligned16(a) && aligned16(gain) &&
                     (!ADD || (aligned16(b) && aligned16(sum)));
    const bool cached = vec && d <= CACHE_GROUPS * 32 * 8;
    for (int row = blockIdx.x * FWD_WARPS + (threadIdx.x >> 5); row < n; row += gridDim.x * FWD_WARPS) {
        if (cached) rmsnorm_row_cached<ADD>(sum, y, rstd, a, b, gain, row, d, eps);
        else rmsnorm_row_two_pass<ADD>(sum, y, rstd, a, b, gain, row, d, eps, vec);
    }
}

// One turn of the ordered sum that ends the backward kernels: a thread adds its 8 gain-gradient accumulators (float4
// columns q, q + 1) to what the members before it left in the shared row acc4 (nothing if it is the first), and writes
// the total either back to acc4 or, if it is the last member, to the block's partial row `out`.
__device__ __forceinline__ void add_to_block_partial(const float (&acc)[8], int q, bool first, bool last, float4* acc4,
                                                     float4* __restrict__ out) {
    float4 a = make_float4(acc[0], acc[1], acc[2], acc[3]);
    float4 b = make_float4(acc[4], acc[5], acc[6], acc[7]);
    if (!first) {
        const float4 pa = acc4[q], pb = acc4[q + 1];
        a = make_float4(pa.x + a.x, pa.y + a.y, pa.z + a.z, pa.w + a.w);
        b = make_float4(pb.x + b.x, pb.y + b.y, pb.z + b.z, pb.w + b.w);
    }
    if (last) {
        out[q] = a;
        out[q + 1] = b;
    } else {
        acc4[q] = a;
        acc4[q + 1] = b;
    }
}

// The end of the warp-per-row backwards: the block's warps add their register accumulators (columns
// (lane + 32k)·8 .. +7 of the gain gradient) into the shared row acc4 (d floats) in warp order 0, 1, … — a fixed
// order, so deterministic — and the last warp writes the block's partial row. Every warp must call it (it has
// block barriers); warps that saw no rows pass zeros.
template <int G>
__device__ __forceinline__ void write_block_partial(const float (&acc)[G][8], float4* acc4, float* __restrict__ partial,
                                                    int d) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float4* out = reinterpret_cast<float4*>(partial + (size_t)blockIdx.x * d);
    for (int w = 0; w < warps; ++w) {
        if (warp == w) {
#pragma unroll
            for (int k = 0; k < G; ++k) {
                const int q = 2 * (lane + 32 * k);  // float4 index of column (lane + 32k)·8
                if (q * 4 < d) add_to_block_partial(acc[k], q, w == 0, w == warps - 1, acc4, out);
            }
        }
        if (w + 1 < warps) __syncthreads();
    }
}

// The register part of a warp-per-row backward row: the lane's groups of dy and x (columns (lane + 32k)·8 .. +7,
// k < G, those below d) → the row's dx (dxRow = dx + row·d) and the lane's share of the gain gradient, accumulated
// into acc. ACC: dx is added to what dxRow holds (add8). Shared by the register-loading and the pipelined kernels.
template <int G, bool ACC>
__device__ __forceinline__ void rmsnorm_backward_row_from_regs(const bf16x8 (&cdy)[G], const bf16x8 (&cx)[G], float r,
                                                               float (&acc)[G][8], bf16* __restrict__ dxRow,
                                                               const bf16* __restrict__ gain, int d) {
    const int lane = threadIdx.x & 31;
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < G; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c >= d) continue;
        float g[8], u[8], v[8];
        unpack8(cdy[k], u);
        unpack8(cx[k], v);
        load8(gain + c, g);
#pragma unroll
        for (int j = 0; j < 8; ++j) dot = fmaf(u[j] * g[j], v[j], dot);
    }
    // ACC: the lane's groups of the row's dx, loaded here so that all are in flight at once (loaded at each store, each
    // load would wait for the store before it: the compiler cannot prove that they do not overlap). No spills.
    bf16x8 cacc[ACC ? G : 1];
    if (ACC) {
#pragma unroll
        for (int k = 0; k < G; ++k)
            if ((lane + 32 * k) * 8 < d) cacc[ACC ? k : 0] = *reinterpret_cast<const bf16x8*>(dxRow + (lane + 32 * k) * 8);
    }
    dot = warp_sum(dot);
    const float coef = r * r * dot / (float)d;
#pragma unroll
    for (int k = 0; k < G; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c >= d) continue;
        float g[8], u[8], v[8], o[8];
        unpack8(cdy[k], u);
        unpack8(cx[k], v);
        load8(gain + c, g);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            o[j] = r * (u[j] * g[j] - v[j] * coef);
            acc[k][j] += u[j] * v[j] * r;
        }
        if (ACC) add8(o, cacc[ACC ? k : 0]);
        store8(dxRow + c, o);
    }
}

// Backward, one warp per row, for rows of at most 256·G columns on the vector path (the launcher checks d % 8 == 0,
// the alignment and the width; the kernel re-checks and does nothing otherwise). A lane owns the columns
// (lane + 32k)·8 .. +7, k < G, of every row it visits: it holds that row's dy and x groups in registers between the
// dot product (a warp shuffle sum, no block barrier) and the dx output, and accumulates its columns' share of the
// gain gradient in registers across all its rows. At the end the block's warps add their accumulators into one
// shared row in warp order (fixed, so deterministic) and the last warp writes the block's partial row.
// Why: the block-per-row kernel below needs two block barriers per row, and its ~1000 blocks left a 4 MB partial
// buffer for the reduce; here ~2 blocks per SM leave ~1 MB, and a row costs one DRAM round trip.
// H100 run 13's profile (ncu) of this loop: 114 registers, 16 warps per SM, 0.57 eligible warps per scheduler, half of
// the stall cycles waiting on the row loads, 53 % of DRAM bandwidth. Loading each warp's next row during the current
// row's arithmetic (127 registers, the same 16 warps) ran at 0.96× in run 14, as had a two-pass split (0.73×, run 12)
// and twice the warps with the gain gradient in shared memory (0.98×, run 8): all removed.
// ACC: dx is added in place to what dx holds (Backend.rmsNormBackwardAccumulate).
// Returns false (having done nothing) for a shape it does not take.
template <int G, bool ACC>
__device__ __forceinline__ bool rmsnorm_backward_rows(bf16* __restrict__ dx, float* __restrict__ partial,
                                                      const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                      const bf16* __restrict__ gain, const float* __restrict__ rstd,
                                                      int n, int d) {
    DYNAMIC_SHARED(float4, acc4);  // d floats: the block's gain gradient while warps add into it
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (d % 8 != 0 || d > 256 * G || !aligned16(dx) || !aligned16(dy) || !aligned16(x) || !aligned16(gain) ||
        !aligned16(partial))
        return false;  // uniform: the launcher never sends such a shape here
    float acc[G][8];
#pragma unroll
    for (int k = 0; k < G; ++k)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[k][j] = 0.f;

    for (int row = blockIdx.x * warps + warp; row < n; row += gridDim.x * warps) {
        const size_t base = (size_t)row * d;
        bf16x8 cdy[G], cx[G];
#pragma unroll
        for (int k = 0; k < G; ++k) {
            const int c = (lane + 32 * k) * 8;
            if (c < d) {
                cdy[k] = *reinterpret_cast<const bf16x8*>(dy + base + c);
                cx[k] = *reinterpret_cast<const bf16x8*>(x + base + c);
            }
        }
        rmsnorm_backward_row_from_regs<G, ACC>(cdy, cx, rstd[row], acc, dx + base, gain, d);
    }

    write_block_partial<G>(acc, acc4, partial, d);
    return true;
}

// The gain-gradient reduce of backward variants 2, 6 and 8, at the end of the warp-per-row (2) or team (6, 8) kernel
// instead of a second kernel.
// Every block has written its partial row; it makes that row visible device-wide and takes a ticket from `counter`.
// The last `reducers` blocks to arrive stay: once all gridDim.x blocks have arrived, reducer number s (ticket order)
// sums the partial rows of float4 columns [s·S, (s+1)·S), S = ceil(d/4 / reducers), into dGain. A column's sum has
// the same order whichever block computes it (thread layout and tree depend only on d, the grid, the block and
// `reducers`), so results are deterministic. The last reducer to finish puts the counter back to 0 for the next
// launch (kernels on one stream never overlap). Progress: at most `reducers` - 1 blocks spin at once while the other
// blocks (non-reducers exit after their ticket) may still need SM slots. The launcher sizes the grid to full
// residency, keeps `reducers` ≤ half the grid and launches cooperatively (cuLaunchCooperativeKernel), so the whole
// grid is resident at once: where this context cannot hold it (MPS limits, a green context) the launch fails with a
// named error instead of spinning forever.
__device__ __forceinline__ unsigned load_acquire_gpu(const unsigned* p) {
#ifndef PATCHCORE_EMU
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
#else
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);  // the CPU emulator (src/test/cuda/emu)
#endif
}

// The body, with its shared ticket and tree row (≥ blockDim.x float4) passed in: the warp-per-row kernels' blocks
// (256 threads) and the team kernels' (up to 512; the prefetching one's up to 384) need trees of different sizes.
__device__ __forceinline__ void reduce_gain_in_last_blocks_with(unsigned& ticket, float4* red, float* __restrict__ dGain,
                                                                const float* __restrict__ partial,
                                                                unsigned* __restrict__ counter, int d, int reducers) {
    const unsigned blocks = gridDim.x;
    __threadfence();  // this block's partial row (written by its last warp) ...
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();  // ... and, in the thread that takes the ticket, a release fence before the ticket
        ticket = atomicAdd(counter, 1u);
    }
    __syncthreads();
    if (ticket + reducers < blocks) return;  // not one of the last `reducers` to arrive (uniform per block)
    const int slice = (int)(ticket + reducers - blocks);
    if (threadIdx.x == 0)
        while (load_acquire_gpu(counter) < blocks) __nanosleep(32);
    __syncthreads();

    const int quads = d / 4, per = (quads + reducers - 1) / reducers;
    const int q0 = slice * per, q1 = min(quads, q0 + per);
    const int width = min(per, (int)blockDim.x);     // float4 columns per pass
    const int groups = blockDim.x / width;          // partial-row groups: thread (g, c) sums rows b ≡ g (mod groups)
    const int g = threadIdx.x / width, c = threadIdx.x % width;
    int pow2 = 1;
    while (pow2 < groups) pow2 <<= 1;
    const float4* p4 = reinterpret_cast<const float4*>(partial);
    for (int base = q0; base < q1; base += width) {
        const int q = base + c;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        if (g < groups && q < q1) {
#pragma unroll 4
            for (unsigned b = g; b < blocks; b += groups) {
                const float4 v = __ldcg(p4 + (size_t)b * quads + q);  // L2: written by other SMs in this launch
                a.x += v.x; a.y += v.y; a.z += v.z; a.w += v.w;
            }
        }
        red[threadIdx.x] = a;
        __syncthreads();
        for (int half = pow2 >> 1; half > 0; half >>= 1) {  // fixed pairing: rows ≥ groups count as zero
            if (g < half && g + half < groups) {
                const float4 o = red[threadIdx.x + half * width];
                float4& m = red[threadIdx.x];
                m.x += o.x; m.y += o.y; m.z += o.z; m.w += o.w;
            }
            __syncthreads();
        }
        if (g == 0 && q < q1) {
            const float4 t = red[threadIdx.x];
            float* o = dGain + 4 * q;
            o[0] += t.x; o[1] += t.y; o[2] += t.z; o[3] += t.w;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0 && atomicAdd(counter, 1u) == blocks + reducers - 1) atomicExch(counter, 0u);
}

__device__ __forceinline__ void reduce_gain_in_last_blocks(float* __restrict__ dGain, const float* __restrict__ partial,
                                                           unsigned* __restrict__ counter, int d, int reducers) {
    STATIC_SHARED(unsigned, ticket);
    STATIC_SHARED(float4, red, [32 * BWD_WARPS]);
    reduce_gain_in_last_blocks_with(ticket, red, dGain, partial, counter, d, reducers);
}

// ---------------------------------------------------------------------------------------------------------------------
// Pipelined forward (CudaRmsNorm variant 1, the default since H100 run 6: 1.08× plain, 1.06× fused add): the same
// arithmetic as the register-cached forward — results are bit-identical to it — but each warp keeps PIPE_STAGES − 1 further rows in flight in shared
// memory (row_pipeline.cuh) while it works on one, with a persistent grid (≈ 2 blocks per SM) so that every warp has
// several rows to overlap. Why: in the unpipelined kernels a warp's loads are in flight only between its load burst
// and its first use; during the reduction, the math and the stores nothing of that warp is in flight, and the bytes in
// flight per SM are capped by the registers that hold them. Widths: d % 8 == 0 and d ≤ 256·G (G = 4: d ≤ 1024, three
// stages; G = 8: d ≤ 2048, two stages), 16-byte aligned tensors; the launcher sends nothing else (the kernel re-checks
// and does nothing). Dynamic shared memory: PIPE_WARPS · stages · inputs · G · 512 bytes, see
// CudaRmsNorm.pipeSharedBytes. (A backward built the same way measured 0.89× the warp-per-row one and was removed.)

constexpr int PIPE_WARPS = 8;  // CudaRmsNorm.PIPE_WARPS

template <int G>
struct PipeStages {
    static constexpr int value = G <= 4 ? 3 : 2;  // CudaRmsNorm.pipeStages
};

template <bool ADD, int G>
__device__ __forceinline__ void rmsnorm_forward_pipe(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                                                     const bf16* __restrict__ a, const bf16* __restrict__ b,
                                                     const bf16* __restrict__ gain, int n, int d, float eps) {
    constexpr int S = PipeStages<G>::value, NIN = ADD ? 2 : 1, ROW = G * 32;  // ROW: chunks per row
    DYNAMIC_SHARED(bf16x8, ring);
    if (d % 8 != 0 || d > 256 * G || !aligned16(y) || !aligned16(a) || !aligned16(gain) ||
        (ADD && (!aligned16(b) || !aligned16(sum))))
        return;  // uniform: the launcher never sends such a shape here
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    bf16x8* mine = ring + (size_t)warp * S * NIN * ROW;
    const long long first = (long long)blockIdx.x * PIPE_WARPS + warp, stride = (long long)gridDim.x * PIPE_WARPS;
    auto issue = [&](long long row, int slot) {
        if (row < n) {
            rowpipe::issue_row<G>(mine + slot * NIN * ROW, a + (size_t)row * d, lane, d);
            if constexpr (ADD) rowpipe::issue_row<G>(mine + slot * NIN * ROW + ROW, b + (size_t)row * d, lane, d);
        }
        rowpipe::commit();  // possibly empty: one group per row keeps the wait count uniform
    };
#pragma unroll
    for (int s = 0; s < S - 1; ++s) issue(first + s * stride, s);
    int slot = 0;
    for (long long row = first; row < n; row += stride) {
        issue(row + (S - 1) * stride, slot == 0 ? S - 1 : slot - 1);
        rowpipe::wait<S - 1>();  // this row's group (the oldest pending) has landed
        bf16x8 cache[G], other[ADD ? G : 1];
        rowpipe::read_row<G>(cache, mine + slot * NIN * ROW, lane, d);
        if constexpr (ADD) rowpipe::read_row<G>(other, mine + slot * NIN * ROW + ROW, lane, d);
        rmsnorm_row_from_regs<ADD, G>(cache, other, sum, y, rstd, gain, row, d, eps);
        slot = slot + 1 == S ? 0 : slot + 1;
    }
    rowpipe::wait<0>();  // no copy may outlive the block (the trailing groups are empty, but keep it strict)
}

// ---------------------------------------------------------------------------------------------------------------------
// Team backward (CudaRmsNorm.BACKWARD_TEAMS_R2 / _R4, variants 3 and 4; written without a GPU after H100 run 15; run 16:
// 1.09x and 1.06x variant 1 at 8192 x 1024). A team of tw = ceil(d / 256) warps covers a row, 8 columns per lane, and takes R consecutive rows at a time;
// a block holds several teams. Why, from run 13's profile of the warp-per-row kernel (one row per warp, 32 columns per
// lane): a warp spends as long on its row's dependent arithmetic as on waiting for it (the 32-long dot-product chain,
// the shuffles, two L1 gain loads per group, 618 instructions), and nothing of its own is in flight meanwhile. Here a
// lane's share of a batch is R rows × 8 columns: R independent dot products of 8 terms, R shuffle sums interleaved,
// the lane's 8 gain values and 8 gain-gradient accumulators in registers for the whole kernel (no gain loads per row,
// 8 accumulators instead of 32), and far fewer registers, so more warps per SM overlap each other's arithmetic with
// their loads. The price is one named barrier per batch (per team, not per block) to add the team's warp sums, whose
// slots are double-buffered by batch parity so that one barrier suffices. The block's teams add their accumulators in
// team order at the end (deterministic) into the block's partial row; rmsnorm_bwd_gain_reduce sums those as for the
// other kernels. dx is computed exactly as there; the dot product's summation order and the gain gradient's rounding
// (one fma instead of two products and an add: fewer registers live) differ.
constexpr int TEAM_MAX_WARPS = 16;  // block ≤ 512 threads (CudaRmsNorm.TEAM_R2_MAX_WARPS)
constexpr int TEAM_MAX_TEAMS = 8;   // named barriers 1 … 8 (0 is __syncthreads)
constexpr int TEAM_R4_WARPS = 12;   // R = 4: block ≤ 384 threads, so two blocks (≤ 80 registers) share an SM (TEAM_R4_MAX_WARPS)

__device__ __forceinline__ void team_barrier(int id, int threads) {
#ifndef PATCHCORE_EMU
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
#else
    emu::sync_named(id, threads);  // the CPU emulator (src/test/cuda/emu)
#endif
}

// Where a lane of a team sits: its team, the team's first warp in the block, its 8 columns, and whether they are
// below d. valid: the launch shape is one the team kernels take (uniform; the launchers never send another).
struct TeamLane {
    int lane, warp, tw, teams, team, first, c;
    bool active, valid;
};

__device__ __forceinline__ TeamLane team_lane(int d, int maxWarps) {
    TeamLane t;
    t.lane = threadIdx.x & 31;
    t.warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    t.tw = (d + 255) / 256;
    t.teams = t.tw > 0 ? warps / t.tw : 0;
    t.valid = d % 8 == 0 && t.tw > 0 && warps <= maxWarps && t.teams > 0 && t.teams <= TEAM_MAX_TEAMS &&
              t.teams * t.tw == warps;
    t.team = t.warp / max(t.tw, 1);
    t.first = t.warp - t.warp % max(t.tw, 1);
    t.c = ((t.warp - t.first) * 32 + t.lane) * 8;
    t.active = t.valid && t.c < d;
    return t;
}

// One batch of a team, once the lane's dy and x groups of the batch's R rows (zeros past n) and their rstd are in
// registers: the R dot products (8 terms per lane, then the warp's shuffles, then — teams of several warps — the
// warps' sums through `red` and the team's named barrier), then dx for the live rows (dx + base: the lane's columns
// of the batch's first row) and the lane's gain-gradient columns. `exchanged` runs once every lane of the team is past reading its inputs of this batch (after the barrier;
// with one-warp teams, after the shuffles): the bulk-copy kernel refills the batch's buffer there.
// ACC: dx is added in place to what dx holds (Backend.rmsNormBackwardAccumulate), each row's group loaded at its store
// (store_dx8), so one dependent load per row of the batch: loading the batch's groups together, before the dot products
// or after the barrier, kept 4·R more registers live and ptxas spilled 36–156 bytes (sm_90a) where the twins spill 4–12.
template <int R, bool ACC, typename Exchanged>
__device__ __forceinline__ void team_batch(const TeamLane& t, bf16x8 (&cdy)[R], bf16x8 (&cx)[R], const float (&rs)[R],
                                           int rows, const float (&g)[8], float (&acc)[8],
                                           float (&red)[2][R][TEAM_MAX_WARPS], int& parity, bf16* __restrict__ dx,
                                           size_t base, int d, Exchanged exchanged) {
    float dot[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float u[8], v[8], even = 0.f, odd = 0.f;
        unpack8(cdy[r], u);
        unpack8(cx[r], v);
#pragma unroll
        for (int j = 0; j < 8; j += 2) {
            even = fmaf(u[j] * g[j], v[j], even);
            odd = fmaf(u[j + 1] * g[j + 1], v[j + 1], odd);
        }
        dot[r] = even + odd;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int r = 0; r < R; ++r) dot[r] += __shfl_xor_sync(0xffffffffu, dot[r], o);
    if (t.tw > 1) {
        if (t.lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r) red[parity][r][t.warp] = dot[r];
        team_barrier(1 + t.team, 32 * t.tw);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float sum = 0.f;
            for (int w = 0; w < t.tw; ++w) sum += red[parity][r][t.first + w];  // warp order: the same in every lane
            dot[r] = sum;
        }
        parity ^= 1;
    }
    exchanged();
    // Unpack dy and x again below rather than keep the 16 R floats of the dot products live across the shuffles
    // and the barrier: the empty asm hides that the packed words are unchanged (without it ptxas kept the floats: at
    // R = 4 under a 128-register bound, 121 registers instead of 109).
#pragma unroll
    for (int r = 0; r < R; ++r) {
        asm volatile("" : "+r"(cdy[r].u.x), "+r"(cdy[r].u.y), "+r"(cdy[r].u.z), "+r"(cdy[r].u.w));
        asm volatile("" : "+r"(cx[r].u.x), "+r"(cx[r].u.y), "+r"(cx[r].u.z), "+r"(cx[r].u.w));
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float coef = rs[r] * rs[r] * dot[r] / (float)d;
        float u[8], v[8], o[8];
        unpack8(cdy[r], u);
        unpack8(cx[r], v);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            o[j] = rs[r] * (u[j] * g[j] - v[j] * coef);
            acc[j] = fmaf(u[j] * rs[r], v[j], acc[j]);  // zero for rows past n and inactive lanes
        }
        if (t.active && r < rows) store_dx8<ACC>(dx + base + r * d, o);
    }
}

// The end of the team kernels: the block's teams add their accumulators in team order (deterministic); the last one
// writes the block's partial row. accs4: d floats of shared memory.
__device__ __forceinline__ void teams_write_partial(const TeamLane& t, const float (&acc)[8], float4* accs4,
                                                    float* __restrict__ partial, int d) {
    float4* out = reinterpret_cast<float4*>(partial + (size_t)blockIdx.x * d);
    for (int k = 0; k < t.teams; ++k) {
        if (t.team == k && t.active) add_to_block_partial(acc, t.c / 4, k == 0, k == t.teams - 1, accs4, out);
        if (k + 1 < t.teams) __syncthreads();
    }
}

// The lane's dy and x groups and the rstd of batch row0's rows below n (zeros past n and in inactive lanes), loads
// issued together so that they are in flight at once. row0 ≥ n gives an all-zero batch and loads nothing.
template <int R>
__device__ __forceinline__ void load_team_batch(const TeamLane& t, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                const float* __restrict__ rstd, unsigned row0, int n, int d,
                                                bf16x8 (&cdy)[R], bf16x8 (&cx)[R], float (&rs)[R]) {
    const int rows = row0 < (unsigned)n ? min(R, n - (int)row0) : 0;
    const size_t base = (size_t)row0 * d + t.c;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const bool live = t.active && r < rows;
        cdy[r] = live ? *reinterpret_cast<const bf16x8*>(dy + base + r * d) : bf16x8{};
        cx[r] = live ? *reinterpret_cast<const bf16x8*>(x + base + r * d) : bf16x8{};
        rs[r] = r < rows ? rstd[row0 + r] : 0.f;
    }
}

// load_team_batch in two parts, for the prefetching kernel: the dy and x groups, and the rstd (zeros past n). (Not
// load_team_batch's body: calling these two from it moves the rstd loads and changes variants 3 and 4's PTX, which run
// 16 measured.)
template <int R>
__device__ __forceinline__ void load_team_rows(const TeamLane& t, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                               unsigned row0, int n, int d, bf16x8 (&cdy)[R], bf16x8 (&cx)[R]) {
    const int rows = row0 < (unsigned)n ? min(R, n - (int)row0) : 0;
    const size_t base = (size_t)row0 * d + t.c;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const bool live = t.active && r < rows;
        cdy[r] = live ? *reinterpret_cast<const bf16x8*>(dy + base + r * d) : bf16x8{};
        cx[r] = live ? *reinterpret_cast<const bf16x8*>(x + base + r * d) : bf16x8{};
    }
}

template <int R>
__device__ __forceinline__ void load_team_rstd(const float* __restrict__ rstd, unsigned row0, int n, float (&rs)[R]) {
#pragma unroll
    for (int r = 0; r < R; ++r) rs[r] = row0 + r < (unsigned)n ? rstd[row0 + r] : 0.f;
}

// Whether the team kernels take this launch (uniform; the launchers never send another shape).
__device__ __forceinline__ bool team_launch_ok(const TeamLane& t, const bf16* dx, const float* partial, const bf16* dy,
                                               const bf16* x, const bf16* gain) {
    return t.valid && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(gain) && aligned16(partial);
}

template <int R, bool ACC>
__device__ __forceinline__ void rmsnorm_backward_teams(bf16* __restrict__ dx, float* __restrict__ partial,
                                                       const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                       const bf16* __restrict__ gain, const float* __restrict__ rstd,
                                                       int n, int d) {
    DYNAMIC_SHARED(float4, accs4);                      // d floats: the teams' gain gradients, added in team order
    STATIC_SHARED(float, red, [2][R][TEAM_MAX_WARPS]);  // per batch parity, row and warp: the warp's dot-product sum
    const TeamLane t = team_lane(d, R == 4 ? TEAM_R4_WARPS : TEAM_MAX_WARPS);
    if (!team_launch_ok(t, dx, partial, dy, x, gain)) return;
    float g[8], acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = acc[j] = 0.f;
    if (t.active) load8(gain + t.c, g);

    // 32-bit row indices (ptxas: 13 registers fewer at R = 4 than with 64-bit ones): row0 < n < 2^31 and the stride
    // is far below 2^31, so row0 + stride cannot wrap an unsigned.
    const unsigned stride = gridDim.x * t.teams * R;
    int parity = 0;
    for (unsigned row0 = (blockIdx.x * t.teams + t.team) * R; row0 < (unsigned)n; row0 += stride) {
        const int rows = min(R, n - (int)row0);  // rows of this batch below n
        bf16x8 cdy[R], cx[R];
        float rs[R];
        load_team_batch<R>(t, dy, x, rstd, row0, n, d, cdy, cx, rs);
        team_batch<R, ACC>(t, cdy, cx, rs, rows, g, acc, red, parity, dx, (size_t)row0 * d + t.c, d, [] {});
    }
    teams_write_partial(t, acc, accs4, partial, d);
}

// ---------------------------------------------------------------------------------------------------------------------
// Prefetching team backward (CudaRmsNorm.BACKWARD_TEAMS_PREFETCH, variant 7; written without a GPU after H100 run 16).
// Variant 3's teams and arithmetic (team_batch), but software-pipelined in registers: at the top of batch b the lane
// already holds b's dy, x and rstd (loaded during batch b − 1) and issues b + 1's loads into a second register set
// before b's dot products, shuffles, team barrier, dx and stores, so each team always has its next batch in flight
// (b + 1's rstd, needed only after b + 1's barrier, is loaded after b's stores).
// Why: run 16's profile of variant 3 had a third of its stall samples waiting on the team's own loads (21 % at the
// first unpack of a batch), with one batch of 2 rows in flight per team. The second set costs 16 registers, so the
// block is at most TEAM_PF_WARPS warps (3 teams at d = 1024) and two share an SM under 80 registers: 24 warps per SM
// (variant 3: 32), but 2 batches in flight per team, 24 rows per SM against variant 3's 16. dx is bitwise variant
// 3's; the gain-gradient partials are per block of 3 teams instead of 4, so their sum is in another fixed order.
constexpr int TEAM_PF_WARPS = 12;  // block ≤ 384 threads (CudaRmsNorm.TEAM_PF_MAX_WARPS)

template <int R, bool ACC>
__device__ __forceinline__ void rmsnorm_backward_teams_prefetch(bf16* __restrict__ dx, float* __restrict__ partial,
                                                                const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                                const bf16* __restrict__ gain,
                                                                const float* __restrict__ rstd, int n, int d) {
    DYNAMIC_SHARED(float4, accs4);                      // d floats: the teams' gain gradients, added in team order
    STATIC_SHARED(float, red, [2][R][TEAM_MAX_WARPS]);  // per batch parity, row and warp: the warp's dot-product sum
    const TeamLane t = team_lane(d, TEAM_PF_WARPS);
    if (!team_launch_ok(t, dx, partial, dy, x, gain)) return;
    float g[8], acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = acc[j] = 0.f;
    if (t.active) load8(gain + t.c, g);

    const unsigned stride = gridDim.x * t.teams * R;  // 32-bit rows as in rmsnorm_backward_teams
    int parity = 0;
    unsigned row0 = (blockIdx.x * t.teams + t.team) * R;
    bf16x8 cdy[R], cx[R];
    float rs[R];
    load_team_rows<R>(t, dy, x, row0, n, d, cdy, cx);
    load_team_rstd<R>(rstd, row0, n, rs);
    for (; row0 < (unsigned)n; row0 += stride) {
        const int rows = min(R, n - (int)row0);
        bf16x8 ndy[R], nx[R];
        load_team_rows<R>(t, dy, x, row0 + stride, n, d, ndy, nx);  // zeros, and no loads, past the last batch
        team_batch<R, ACC>(t, cdy, cx, rs, rows, g, acc, red, parity, dx, (size_t)row0 * d + t.c, d, [] {});
#pragma unroll
        for (int r = 0; r < R; ++r) {
            cdy[r] = ndy[r];
            cx[r] = nx[r];
        }
        // The next batch's rstd only now: it is first used after that batch's barrier, and loading it with the rows
        // kept 2 more registers live through this batch (16 bytes spilled instead of 8 under the 80-register bound).
        load_team_rstd<R>(rstd, row0 + stride, n, rs);
    }
    teams_write_partial(t, acc, accs4, partial, d);
}

// ---------------------------------------------------------------------------------------------------------------------
// Bulk-copy team backward (CudaRmsNorm.BACKWARD_BULK, variant 5; sm_90 and later; written without a GPU after H100
// run 15; run 16: 0.99x variant 1). The team kernel's arithmetic, but each team's batches reach shared memory by the bulk-copy
// engine (cp.async.bulk: a batch's R rows of dy, and of x, are one contiguous range each) through a ring of
// BULK_STAGES batches: one thread of the team issues two copies per batch, BULK_STAGES − 1 batches ahead of the one
// the team computes, and an mbarrier per stage says when a batch has landed. Why: the warp-per-row kernels have their
// next rows in flight only while they hold them in registers; here up to BULK_STAGES batches per team are in flight
// at no register cost and for two instructions each, so 2 blocks × 4 teams × 3 stages × 2 rows = 48 rows per SM can
// be in flight against the default's 16. A stage is refilled as soon as every lane of the team has read it (the
// team's barrier of that batch, which the arithmetic needs anyway). Dynamic shared memory: d floats (the teams'
// gain gradients) + teams · BULK_STAGES · 2 · R · d bf16 (the rings) + teams · BULK_STAGES mbarriers
// (CudaRmsNorm.bulkSharedBytes).
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900) || defined(PATCHCORE_EMU)
constexpr int BULK_STAGES = 3;  // CudaRmsNorm.BULK_STAGES
#endif

template <int R>
__device__ __forceinline__ void rmsnorm_backward_bulk(bf16* __restrict__ dx, float* __restrict__ partial,
                                                      const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                      const bf16* __restrict__ gain, const float* __restrict__ rstd,
                                                      int n, int d) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900) || defined(PATCHCORE_EMU)
    DYNAMIC_SHARED(float4, accs4);  // d floats, then the teams' rings, then their mbarriers
    STATIC_SHARED(float, red, [2][R][TEAM_MAX_WARPS]);
    const TeamLane t = team_lane(d, TEAM_MAX_WARPS);
    if (!t.valid || !aligned16(dx) || !aligned16(dy) || !aligned16(x) || !aligned16(gain) || !aligned16(partial))
        return;  // uniform: the launcher never sends such a shape here
    const size_t batchElems = (size_t)R * d;  // one tensor's batch in the ring
    bf16* ring = reinterpret_cast<bf16*>(reinterpret_cast<float*>(accs4) + d) + (size_t)t.team * BULK_STAGES * 2 * batchElems;
    uint64_t* bars = reinterpret_cast<uint64_t*>(reinterpret_cast<bf16*>(reinterpret_cast<float*>(accs4) + d) +
                                                 (size_t)t.teams * BULK_STAGES * 2 * batchElems) + t.team * BULK_STAGES;
    const bool producer = t.warp == t.first && t.lane == 0;
    if (producer) {
        for (int s = 0; s < BULK_STAGES; ++s) mbar_init((uint32_t)__cvta_generic_to_shared(bars + s), 1);
        fence_mbarrier_init();  // visible to the bulk-copy unit
    }
    __syncthreads();

    const unsigned stride = gridDim.x * t.teams * R, start = (blockIdx.x * t.teams + t.team) * R;
    // Batch row0 into stage s: R rows of dy then of x (fewer at the end), one arrival plus their bytes on bars[s].
    auto issue = [&](unsigned row0, int s) {
        if (row0 >= (unsigned)n) return;
        const uint32_t bytes = (uint32_t)min(R, n - (int)row0) * d * 2, bar = (uint32_t)__cvta_generic_to_shared(bars + s);
        mbar_arrive_expect_tx(bar, 2 * bytes);
        bulk_load((uint32_t)__cvta_generic_to_shared(ring + (2 * s) * batchElems), dy + (size_t)row0 * d, bytes, bar);
        bulk_load((uint32_t)__cvta_generic_to_shared(ring + (2 * s + 1) * batchElems), x + (size_t)row0 * d, bytes, bar);
    };
    if (producer)
        for (int s = 0; s < BULK_STAGES; ++s) issue(start + s * stride, s);

    float g[8], acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = acc[j] = 0.f;
    if (t.active) load8(gain + t.c, g);
    int parity = 0, stage = 0;
    uint32_t phase = 0;
    for (unsigned row0 = start; row0 < (unsigned)n; row0 += stride) {
        const int rows = min(R, n - (int)row0);
        float rs[R];
#pragma unroll
        for (int r = 0; r < R; ++r) rs[r] = r < rows ? rstd[row0 + r] : 0.f;  // before the wait: its latency hides
        mbar_wait((uint32_t)__cvta_generic_to_shared(bars + stage), phase);
        const bf16* sdy = ring + (2 * stage) * batchElems;
        const bf16* sx = sdy + batchElems;
        bf16x8 cdy[R], cx[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const bool live = t.active && r < rows;
            cdy[r] = live ? *reinterpret_cast<const bf16x8*>(sdy + r * d + t.c) : bf16x8{};
            cx[r] = live ? *reinterpret_cast<const bf16x8*>(sx + r * d + t.c) : bf16x8{};
        }
        const int filled = stage;
        team_batch<R, false>(t, cdy, cx, rs, rows, g, acc, red, parity, dx, (size_t)row0 * d + t.c, d, [&] {
            if (t.tw == 1) __syncwarp();  // a one-warp team has no barrier: its lanes' reads of the stage are done
            if (producer) {
                fence_proxy_async_shared();  // the team's reads of the stage before the copy that overwrites it
                issue(row0 + BULK_STAGES * stride, filled);
            }
        });
        if (++stage == BULK_STAGES) {
            stage = 0;
            phase ^= 1;
        }
    }
    teams_write_partial(t, acc, accs4, partial, d);
#endif
}

}  // namespace

// y = x · rstd · gain, rstd = 1/sqrt(mean(x²) + eps). grid: any (grid-stride over rows); block: 32 · FWD_WARPS.
extern "C" __global__ void __launch_bounds__(32 * FWD_WARPS, 2)
rmsnorm_fwd_bf16(bf16* __restrict__ y, float* __restrict__ rstd, const bf16* __restrict__ x,
                 const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward<false>(nullptr, y, rstd, x, nullptr, gain, n, d, eps);
}

// sum = residual + branch; y = rmsnorm(sum). One pass over residual and branch.
extern "C" __global__ void __launch_bounds__(32 * FWD_WARPS, 2)
rmsnorm_add_fwd_bf16(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                     const bf16* __restrict__ residual, const bf16* __restrict__ branch,
                     const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward<true>(sum, y, rstd, residual, branch, gain, n, d, eps);
}

// dx = rstd · (dy·g − x · rstd² · mean(dy·g·x)); partial[blockIdx.x, :] = Σ_{this block's rows} dy · x · rstd.
// One block per row at a time (grid-stride, so the rows of each block are fixed by the grid size: deterministic).
// blockDim.x: multiple of 32, ≤ 1024. Dynamic shared memory: d floats (this block's gain gradient). Every thread
// owns fixed columns of it, so it is updated without atomics or barriers; the vector path stores column 8·q + k at
// [k · d/8 + q] so that a warp's 32 threads hit 32 different banks.
extern "C" __global__ void __launch_bounds__(256)
rmsnorm_bwd_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                 const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                 int n, int d) {
    DYNAMIC_SHARED(float, dgain);
    STATIC_SHARED(float, red, [32]);
    const int tid = threadIdx.x, threads = blockDim.x;
    const bool vec = d % 8 == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(gain) &&
                     aligned16(partial + (size_t)blockIdx.x * d);
    const int quads = d / 8;  // 16-byte groups per row (vector path)
    for (int c = tid; c < d; c += threads) dgain[c] = 0.f;
    __syncthreads();  // the vector path's columns are not the ones each thread zeroed

    const bool cached = vec && quads <= BWD_CACHE_GROUPS * threads;

    for (int row = blockIdx.x; row < n; row += gridDim.x) {
        const size_t base = (size_t)row * d;
        const float r = rstd[row];
        if (cached) {
            // The row's dy and x stay in registers between the two passes (each read from DRAM once).
            bf16x8 cdy[BWD_CACHE_GROUPS], cx[BWD_CACHE_GROUPS];
#pragma unroll
            for (int j = 0; j < BWD_CACHE_GROUPS; ++j) {
                const int q = tid + j * threads;
                if (q < quads) {
                    cdy[j] = *reinterpret_cast<const bf16x8*>(dy + base + 8 * q);
                    cx[j] = *reinterpret_cast<const bf16x8*>(x + base + 8 * q);
                }
            }
            float dot = 0.f;
#pragma unroll
            for (int j = 0; j < BWD_CACHE_GROUPS; ++j) {
                const int q = tid + j * threads;
                if (q >= quads) continue;
                float g[8], u[8], v[8];
                unpack8(cdy[j], u);
                unpack8(cx[j], v);
                load8(gain + 8 * q, g);
#pragma unroll
                for (int k = 0; k < 8; ++k) dot = fmaf(u[k] * g[k], v[k], dot);
            }
            dot = block_sum(dot, red);
            const float coef = r * r * dot / (float)d;
#pragma unroll
            for (int j = 0; j < BWD_CACHE_GROUPS; ++j) {
                const int q = tid + j * threads;
                if (q >= quads) continue;
                float g[8], u[8], v[8], o[8];
                unpack8(cdy[j], u);
                unpack8(cx[j], v);
                load8(gain + 8 * q, g);
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    o[k] = r * (u[k] * g[k] - v[k] * coef);
                    dgain[k * quads + q] += u[k] * v[k] * r;
                }
                store8(dx + base + 8 * q, o);
            }
            continue;
        }
        float dot = 0.f;
        if (vec) {
            for (int q = tid; q < quads; q += threads) {
                float g[8], u[8], v[8];
                load8(dy + base + 8 * q, u);
                load8(x + base + 8 * q, v);
                load8(gain + 8 * q, g);
#pragma unroll
                for (int k = 0; k < 8; ++k) dot = fmaf(u[k] * g[k], v[k], dot);
            }
        } else {
            for (int c = tid; c < d; c += threads)
                dot = fmaf(__bfloat162float(dy[base + c]) * __bfloat162float(gain[c]), __bfloat162float(x[base + c]), dot);
        }
        dot = block_sum(dot, red);
        const float coef = r * r * dot / (float)d;
        if (vec) {
            for (int q = tid; q < quads; q += threads) {
                float g[8], u[8], v[8], o[8];
                load8(dy + base + 8 * q, u);
                load8(x + base + 8 * q, v);
                load8(gain + 8 * q, g);
#pragma unroll
                for (int k = 0; k < 8; ++k) {
                    o[k] = r * (u[k] * g[k] - v[k] * coef);
                    dgain[k * quads + q] += u[k] * v[k] * r;
                }
                store8(dx + base + 8 * q, o);
            }
        } else {
            for (int c = tid; c < d; c += threads) {
                const float u = __bfloat162float(dy[base + c]), v = __bfloat162float(x[base + c]);
                dx[base + c] = __float2bfloat16_rn(r * (u * __bfloat162float(gain[c]) - v * coef));
                dgain[c] += u * v * r;
            }
        }
    }

    float* out = partial + (size_t)blockIdx.x * d;
    if (vec) {
        for (int q = tid; q < quads; q += threads) {
            float4* o = reinterpret_cast<float4*>(out + 8 * q);
            o[0] = make_float4(dgain[q], dgain[quads + q], dgain[2 * quads + q], dgain[3 * quads + q]);
            o[1] = make_float4(dgain[4 * quads + q], dgain[5 * quads + q], dgain[6 * quads + q], dgain[7 * quads + q]);
        }
    } else {
        for (int c = tid; c < d; c += threads) out[c] = dgain[c];
    }
}

// Warp-per-row backward (rmsnorm_backward_rows): grid any (grid-stride over rows), block 32·BWD_WARPS, dynamic shared
// memory d floats; partial is F32 [gridDim.x, d]. rows4: d ≤ 1024, rows8: d ≤ 2048 (d % 8 == 0, 16-byte aligned).
extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 2)
rmsnorm_bwd_rows4_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                       const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                       int n, int d) {
    rmsnorm_backward_rows<4, false>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 1)
rmsnorm_bwd_rows8_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                       const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                       int n, int d) {
    rmsnorm_backward_rows<8, false>(dx, partial, dy, x, gain, rstd, n, d);
}

// Backward variant 2 (CudaRmsNorm.BACKWARD_FUSED_REDUCE): the warp-per-row kernels with the gain-gradient reduce
// done by their last blocks (reduce_gain_in_last_blocks): one launch instead of two. Extra arguments: dGain (F32 [d],
// added to), counter (one u32, 0 between launches), reducers (1 ≤ reducers ≤ gridDim.x).
extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 2)
rmsnorm_bwd_fused4_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                        unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                        const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d, int reducers) {
    if (rmsnorm_backward_rows<4, false>(dx, partial, dy, x, gain, rstd, n, d))
        reduce_gain_in_last_blocks(dGain, partial, counter, d, reducers);
}

extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 1)
rmsnorm_bwd_fused8_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                        unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                        const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d, int reducers) {
    if (rmsnorm_backward_rows<8, false>(dx, partial, dy, x, gain, rstd, n, d))
        reduce_gain_in_last_blocks(dGain, partial, counter, d, reducers);
}

// Backward variants 3 and 4 (rmsnorm_backward_teams, R = 2 and 4 rows per batch): grid any (persistent: the launcher
// sizes it to the resident blocks), block 32·tw·teams ≤ 512 threads (tw = ceil(d / 256), teams ≤ 8), dynamic shared
// memory d floats; partial is F32 [gridDim.x, d]. d % 8 == 0, 16-byte aligned tensors.
extern "C" __global__ void __launch_bounds__(32 * TEAM_MAX_WARPS, 2)
rmsnorm_bwd_teams2_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                        const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                        int n, int d) {
    rmsnorm_backward_teams<2, false>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_R4_WARPS, 2)
rmsnorm_bwd_teams4_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                        const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                        int n, int d) {
    rmsnorm_backward_teams<4, false>(dx, partial, dy, x, gain, rstd, n, d);
}

// Backward variants 6 and 8: a team kernel (variant 3's, or with Prefetch variant 7's) whose last blocks sum the
// partial rows into dGain (reduce_gain_in_last_blocks_with, as rmsnorm_bwd_fused{4,8}_bf16; cooperative launch), its
// tree one float4 per thread of a block of up to 32·Warps threads. Arguments as rmsnorm_bwd_fused{4,8}_bf16's.
template <bool Prefetch, int Warps, bool ACC>
__device__ __forceinline__ void rmsnorm_backward_teams_fused(bf16* __restrict__ dx, float* __restrict__ partial,
                                                             float* __restrict__ dGain, unsigned* __restrict__ counter,
                                                             const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                                             const bf16* __restrict__ gain, const float* __restrict__ rstd,
                                                             int n, int d, int reducers) {
    STATIC_SHARED(unsigned, ticket);
    STATIC_SHARED(float4, red, [32 * Warps]);
    if (Prefetch) rmsnorm_backward_teams_prefetch<2, ACC>(dx, partial, dy, x, gain, rstd, n, d);
    else rmsnorm_backward_teams<2, ACC>(dx, partial, dy, x, gain, rstd, n, d);
    if (team_launch_ok(team_lane(d, Warps), dx, partial, dy, x, gain))
        reduce_gain_in_last_blocks_with(ticket, red, dGain, partial, counter, d, reducers);
}

// Backward variant 6: variant 3's kernel, reducing in its last blocks; shapes as teams2's.
extern "C" __global__ void __launch_bounds__(32 * TEAM_MAX_WARPS, 2)
rmsnorm_bwd_teams2_fused_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                              unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                              const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d, int reducers) {
    rmsnorm_backward_teams_fused<false, TEAM_MAX_WARPS, false>(dx, partial, dGain, counter, dy, x, gain, rstd, n, d, reducers);
}

// Backward variant 7 (rmsnorm_backward_teams_prefetch, R = 2): as teams2, block ≤ 32·TEAM_PF_WARPS threads.
extern "C" __global__ void __launch_bounds__(32 * TEAM_PF_WARPS, 2)
rmsnorm_bwd_teams2_prefetch_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                                 const bf16* __restrict__ x, const bf16* __restrict__ gain,
                                 const float* __restrict__ rstd, int n, int d) {
    rmsnorm_backward_teams_prefetch<2, false>(dx, partial, dy, x, gain, rstd, n, d);
}

// Backward variant 8: variant 7's prefetching team kernel, reducing in its last blocks; shapes as variant 7's (block
// ≤ 32·TEAM_PF_WARPS threads).
extern "C" __global__ void __launch_bounds__(32 * TEAM_PF_WARPS, 2)
rmsnorm_bwd_teams2_prefetch_fused_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                                       unsigned* __restrict__ counter, const bf16* __restrict__ dy,
                                       const bf16* __restrict__ x, const bf16* __restrict__ gain,
                                       const float* __restrict__ rstd, int n, int d, int reducers) {
    rmsnorm_backward_teams_fused<true, TEAM_PF_WARPS, false>(dx, partial, dGain, counter, dy, x, gain, rstd, n, d, reducers);
}

// Backward variant 5 (rmsnorm_backward_bulk, R = 2, sm_90+): as the team kernels, with dynamic shared memory
// CudaRmsNorm.bulkSharedBytes. Compiled empty for older GPUs (the launcher sends it only to compute capability ≥ 9).
extern "C" __global__ void __launch_bounds__(32 * TEAM_MAX_WARPS, 2)
rmsnorm_bwd_bulk2_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                       const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                       int n, int d) {
    rmsnorm_backward_bulk<2>(dx, partial, dy, x, gain, rstd, n, d);
}

// dGain[c] += Σ_b partial[b, c], b in a fixed order. block (32, REDUCE_ROWS): 32 columns; the y threads sum
// interleaved partial rows, then thread y = 0 adds the REDUCE_ROWS sums in order. grid: ceil(d / 32).
extern "C" __global__ void __launch_bounds__(32 * REDUCE_ROWS)
rmsnorm_bwd_gain_reduce(float* __restrict__ dGain, const float* __restrict__ partial, int blocks, int d) {
    STATIC_SHARED(float, s, [REDUCE_ROWS][33]);
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.f;
    // 32 partial-row groups per column: ~8 loads per thread at 264 partial rows, unrolled so they are in flight together.
    if (c < d) {
#pragma unroll 4
        for (int b = threadIdx.y; b < blocks; b += REDUCE_ROWS) acc += partial[(size_t)b * d + c];
    }
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < d) {
        float t = 0.f;
#pragma unroll
        for (int y = 0; y < REDUCE_ROWS; ++y) t += s[y][threadIdx.x];
        dGain[c] += t;
    }
}

// Pipelined forward (see rmsnorm_forward_pipe): grid any, persistent (≈ 2 blocks per SM for G = 4, 1 for G = 8: each
// warp should get several rows); block 32·PIPE_WARPS; dynamic shared memory from CudaRmsNorm.pipeSharedBytes.
extern "C" __global__ void __launch_bounds__(32 * PIPE_WARPS, 2)
rmsnorm_fwd_pipe4_bf16(bf16* __restrict__ y, float* __restrict__ rstd, const bf16* __restrict__ x,
                       const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward_pipe<false, 4>(nullptr, y, rstd, x, nullptr, gain, n, d, eps);
}

extern "C" __global__ void __launch_bounds__(32 * PIPE_WARPS, 1)
rmsnorm_fwd_pipe8_bf16(bf16* __restrict__ y, float* __restrict__ rstd, const bf16* __restrict__ x,
                       const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward_pipe<false, 8>(nullptr, y, rstd, x, nullptr, gain, n, d, eps);
}

extern "C" __global__ void __launch_bounds__(32 * PIPE_WARPS, 2)
rmsnorm_add_fwd_pipe4_bf16(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                           const bf16* __restrict__ residual, const bf16* __restrict__ branch,
                           const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward_pipe<true, 4>(sum, y, rstd, residual, branch, gain, n, d, eps);
}

extern "C" __global__ void __launch_bounds__(32 * PIPE_WARPS, 1)
rmsnorm_add_fwd_pipe8_bf16(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                           const bf16* __restrict__ residual, const bf16* __restrict__ branch,
                           const bf16* __restrict__ gain, int n, int d, float eps) {
    rmsnorm_forward_pipe<true, 8>(sum, y, rstd, residual, branch, gain, n, d, eps);
}

// Backend.rmsNormBackwardAccumulate: the kernels of variants 1–4 and 6–8 above with ACC, which add dx in place to what
// dx holds (read first, by the thread that then writes it: one rounding, no scratch dx, no add kernel after). Arguments,
// shapes and grids as their twins'. Variant 5 and the block-per-row kernel have none (CudaRmsNorm falls back to a
// backward into scratch and an add).
extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 2)
rmsnorm_bwd_rows4_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                           const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                           int n, int d) {
    rmsnorm_backward_rows<4, true>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 1)
rmsnorm_bwd_rows8_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                           const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                           int n, int d) {
    rmsnorm_backward_rows<8, true>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 2)
rmsnorm_bwd_fused4_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                            unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                            const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d, int reducers) {
    if (rmsnorm_backward_rows<4, true>(dx, partial, dy, x, gain, rstd, n, d))
        reduce_gain_in_last_blocks(dGain, partial, counter, d, reducers);
}

extern "C" __global__ void __launch_bounds__(32 * BWD_WARPS, 1)
rmsnorm_bwd_fused8_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                            unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                            const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d, int reducers) {
    if (rmsnorm_backward_rows<8, true>(dx, partial, dy, x, gain, rstd, n, d))
        reduce_gain_in_last_blocks(dGain, partial, counter, d, reducers);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_MAX_WARPS, 2)
rmsnorm_bwd_teams2_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                            const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                            int n, int d) {
    rmsnorm_backward_teams<2, true>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_R4_WARPS, 2)
rmsnorm_bwd_teams4_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                            const bf16* __restrict__ x, const bf16* __restrict__ gain, const float* __restrict__ rstd,
                            int n, int d) {
    rmsnorm_backward_teams<4, true>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_MAX_WARPS, 2)
rmsnorm_bwd_teams2_fused_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                                  unsigned* __restrict__ counter, const bf16* __restrict__ dy, const bf16* __restrict__ x,
                                  const bf16* __restrict__ gain, const float* __restrict__ rstd, int n, int d,
                                  int reducers) {
    rmsnorm_backward_teams_fused<false, TEAM_MAX_WARPS, true>(dx, partial, dGain, counter, dy, x, gain, rstd, n, d, reducers);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_PF_WARPS, 2)
rmsnorm_bwd_teams2_prefetch_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, const bf16* __restrict__ dy,
                                     const bf16* __restrict__ x, const bf16* __restrict__ gain,
                                     const float* __restrict__ rstd, int n, int d) {
    rmsnorm_backward_teams_prefetch<2, true>(dx, partial, dy, x, gain, rstd, n, d);
}

extern "C" __global__ void __launch_bounds__(32 * TEAM_PF_WARPS, 2)
rmsnorm_bwd_teams2_prefetch_fused_acc_bf16(bf16* __restrict__ dx, float* __restrict__ partial, float* __restrict__ dGain,
                                           unsigned* __restrict__ counter, const bf16* __restrict__ dy,
                                           const bf16* __restrict__ x, const bf16* __restrict__ gain,
                                           const float* __restrict__ rstd, int n, int d, int reducers) {
    rmsnorm_backward_teams_fused<true, TEAM_PF_WARPS, true>(dx, partial, dGain, counter, dy, x, gain, rstd, n, d, reducers);
}
