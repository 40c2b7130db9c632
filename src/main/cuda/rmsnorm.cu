// RMSNorm forward (plain, and fused with the residual add before it) and backward, bf16 in/out, fp32 math.
// Semantics: Backend.rmsNorm / addRmsNorm / rmsNormBackward. Launch shapes: CudaRmsNorm.java.
//
// Vector path: when the width is a multiple of 8 and every base pointer is 16-byte aligned, each row starts on a
// 16-byte boundary and all accesses are 16-byte (8 × bf16); otherwise a scalar path with the same arithmetic.
#include "common.cuh"

namespace {

constexpr int FWD_WARPS = 8;    // rows per forward block (CudaRmsNorm.FORWARD_WARPS)
constexpr int REDUCE_ROWS = 8;  // blockDim.y of the gain-gradient reduce (CudaRmsNorm.REDUCE_ROWS)
constexpr int BWD_CACHE_GROUPS = 2;  // backward: 16-byte groups per thread held in registers (d ≤ 16 · blockDim)

__device__ __forceinline__ void load8(const bf16* p, float* f) { unpack8(*reinterpret_cast<const bf16x8*>(p), f); }
__device__ __forceinline__ void store8(bf16* p, const float* f) { *reinterpret_cast<bf16x8*>(p) = pack8(f); }
__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// One warp per row. ADD: the row is bf16(residual + branch), stored to `sum`; rstd and y are computed from that
// stored (rounded) value, so the backward, which reads `sum`, differentiates exactly what the forward normalized.
//
// Rows up to CACHE_GROUPS · 256 wide (every preset) on the vector path keep the row in registers between the
// sum-of-squares and the scaling: one DRAM read per element, and all of a lane's 16-byte loads are in flight at
// once. Wider or unaligned rows re-read the row in the second pass (it is then usually still in L1/L2).
constexpr int CACHE_GROUPS = 10;

template <bool ADD>
__device__ __forceinline__ void rmsnorm_row_cached(bf16* __restrict__ sum, bf16* __restrict__ y, float* __restrict__ rstd,
                                                   const bf16* __restrict__ a, const bf16* __restrict__ b,
                                                   const bf16* __restrict__ gain, int row, int d, float eps) {
    const int lane = threadIdx.x & 31;
    const size_t base = (size_t)row * d;
    bf16x8 cache[CACHE_GROUPS];
#pragma unroll
    for (int k = 0; k < CACHE_GROUPS; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c < d) cache[k] = *reinterpret_cast<const bf16x8*>(a + base + c);
    }
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < CACHE_GROUPS; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c >= d) continue;
        float v[8];
        unpack8(cache[k], v);
        if (ADD) {
            float w[8];
            load8(b + base + c, w);
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
    for (int k = 0; k < CACHE_GROUPS; ++k) {
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
    extern __shared__ float dgain[];
    __shared__ float red[32];
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

// dGain[c] += Σ_b partial[b, c], b in a fixed order. block (32, REDUCE_ROWS): 32 columns; the y threads sum
// interleaved partial rows, then thread y = 0 adds the REDUCE_ROWS sums in order. grid: ceil(d / 32).
extern "C" __global__ void __launch_bounds__(32 * REDUCE_ROWS)
rmsnorm_bwd_gain_reduce(float* __restrict__ dGain, const float* __restrict__ partial, int blocks, int d) {
    __shared__ float s[REDUCE_ROWS][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.f;
    if (c < d)
        for (int b = threadIdx.y; b < blocks; b += REDUCE_ROWS) acc += partial[(size_t)b * d + c];
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < d) {
        float t = 0.f;
#pragma unroll
        for (int y = 0; y < REDUCE_ROWS; ++y) t += s[y][threadIdx.x];
        dGain[c] += t;
    }
}
