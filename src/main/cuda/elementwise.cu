// nvcc-flags: --use_fast_math
// Element-wise ops: residual add, gradient accumulation, dtype casts, a deterministic F32 sum and a count of |x| above a
// threshold.
// All are memory-bound: each thread moves 16 bytes per access when every pointer is 16-byte aligned
// (the common case: tensors start at allocator blocks), with a scalar tail; otherwise a scalar grid-stride loop.
// fast-math is safe here: only adds and conversions, no transcendental functions or divisions.
#include "common.cuh"

// Each thread handles ADD_UNROLL 16-byte groups per grid-stride step (groups g, g + S, g + 2S, … with S the grid's
// thread count, so a warp's accesses stay contiguous) and issues all their loads before the first store: 2·16·4 =
// 128 bytes in flight per thread, 128 KB per SM. CudaElementwise sizes the grid for one step per thread, capped at
// the blocks that are resident at once, so there is never a second partial wave of blocks.
constexpr int ADD_UNROLL = 4;         // CudaElementwise.ADD_UNROLL
constexpr int ADD_THREADS = 256;      // CudaElementwise.THREADS
constexpr int ADD_BLOCKS_PER_SM = 4;  // CudaElementwise.ADD_BLOCKS_PER_SM: ≤ 64 registers, 1024 threads per SM

__device__ __forceinline__ bf16x8 add8(const bf16x8& x, const bf16x8& y) {
    float a[8], b[8];
    unpack8(x, a);
    unpack8(y, b);
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] += b[i];
    return pack8(a);
}

__device__ __forceinline__ f32x4 add4(const f32x4& a, const f32x4& b) {
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// out[g] = x[g] + y[g] for g in [0, count) over 16-byte vectors V. out may be x (in-place accumulation): every group
// is loaded before it is stored by the same thread, and no two threads touch the same group.
template <typename V, typename Add>
__device__ __forceinline__ void add_groups(V* out, const V* x, const V* y, long long count, Add add) {
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long g0 = (long long)blockIdx.x * blockDim.x + threadIdx.x; g0 < count; g0 += step * ADD_UNROLL) {
        V a[ADD_UNROLL], b[ADD_UNROLL];
#pragma unroll
        for (int u = 0; u < ADD_UNROLL; ++u) {
            const long long g = g0 + u * step;
            if (g < count) {
                a[u] = x[g];
                b[u] = y[g];
            }
        }
#pragma unroll
        for (int u = 0; u < ADD_UNROLL; ++u) {
            const long long g = g0 + u * step;
            if (g < count) out[g] = add(a[u], b[u]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(ADD_THREADS, ADD_BLOCKS_PER_SM) add_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ y,
                                    long long n) {
    if (aligned16(out) && aligned16(x) && aligned16(y)) {
        const long long groups = n / 8;
        add_groups(reinterpret_cast<bf16x8*>(out), reinterpret_cast<const bf16x8*>(x),
                   reinterpret_cast<const bf16x8*>(y), groups, add8);
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            out[j] = to_bf16(to_f32(x[j]) + to_f32(y[j]));
        }
    } else {
        GRID_STRIDE(i, n) out[i] = to_bf16(to_f32(x[i]) + to_f32(y[i]));
    }
}

extern "C" __global__ void __launch_bounds__(ADD_THREADS, ADD_BLOCKS_PER_SM) add_f32(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ y,
                                   long long n) {
    if (aligned16(out) && aligned16(x) && aligned16(y)) {
        const long long groups = n / 4;
        add_groups(reinterpret_cast<f32x4*>(out), reinterpret_cast<const f32x4*>(x),
                   reinterpret_cast<const f32x4*>(y), groups, add4);
        GRID_STRIDE(i, n - groups * 4) {
            const long long j = groups * 4 + i;
            out[j] = x[j] + y[j];
        }
    } else {
        GRID_STRIDE(i, n) out[i] = x[i] + y[i];
    }
}

// acc += x with acc and x both bf16 (activation gradients at fan-out points). acc may alias nothing else.
extern "C" __global__ void __launch_bounds__(ADD_THREADS, ADD_BLOCKS_PER_SM) add_inplace_bf16(bf16* __restrict__ acc, const bf16* __restrict__ x, long long n) {
    if (aligned16(acc) && aligned16(x)) {
        const long long groups = n / 8;
        add_groups(reinterpret_cast<bf16x8*>(acc), reinterpret_cast<const bf16x8*>(acc),
                   reinterpret_cast<const bf16x8*>(x), groups, add8);
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            acc[j] = to_bf16(to_f32(acc[j]) + to_f32(x[j]));
        }
    } else {
        GRID_STRIDE(i, n) acc[i] = to_bf16(to_f32(acc[i]) + to_f32(x[i]));
    }
}

extern "C" __global__ void __launch_bounds__(ADD_THREADS, ADD_BLOCKS_PER_SM) add_inplace_f32(float* __restrict__ acc, const float* __restrict__ x, long long n) {
    if (aligned16(acc) && aligned16(x)) {
        const long long groups = n / 4;
        add_groups(reinterpret_cast<f32x4*>(acc), reinterpret_cast<const f32x4*>(acc),
                   reinterpret_cast<const f32x4*>(x), groups, add4);
        GRID_STRIDE(i, n - groups * 4) {
            const long long j = groups * 4 + i;
            acc[j] += x[j];
        }
    } else {
        GRID_STRIDE(i, n) acc[i] += x[i];
    }
}

// F32 accumulator += bf16 addend (e.g. summing bf16 gradient pieces into an fp32 buffer).
extern "C" __global__ void add_inplace_f32_bf16(float* __restrict__ acc, const bf16* __restrict__ x, long long n) {
    GRID_STRIDE(i, n) acc[i] += to_f32(x[i]);
}

extern "C" __global__ void cast_f32_to_bf16(bf16* __restrict__ out, const float* __restrict__ in, long long n) {
    if (aligned16(out) && aligned16(in)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            const f32x4 a = reinterpret_cast<const f32x4*>(in)[2 * g], b = reinterpret_cast<const f32x4*>(in)[2 * g + 1];
            const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            reinterpret_cast<bf16x8*>(out)[g] = pack8(v);
        }
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            out[j] = to_bf16(in[j]);
        }
    } else {
        GRID_STRIDE(i, n) out[i] = to_bf16(in[i]);
    }
}

extern "C" __global__ void cast_bf16_to_f32(float* __restrict__ out, const bf16* __restrict__ in, long long n) {
    if (aligned16(out) && aligned16(in)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            float v[8];
            unpack8(reinterpret_cast<const bf16x8*>(in)[g], v);
            reinterpret_cast<f32x4*>(out)[2 * g] = make_float4(v[0], v[1], v[2], v[3]);
            reinterpret_cast<f32x4*>(out)[2 * g + 1] = make_float4(v[4], v[5], v[6], v[7]);
        }
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            out[j] = to_f32(in[j]);
        }
    } else {
        GRID_STRIDE(i, n) out[i] = to_f32(in[i]);
    }
}

// Deterministic sum of an F32 tensor in double: a fixed grid (chosen by the host, independent of the device)
// writes one partial per block, then one block adds the partials in order. Launch with 256 threads.
extern "C" __global__ void sum_f32_partials(const float* __restrict__ x, long long n, double* __restrict__ partials) {
    STATIC_SHARED(double, shared, [32]);
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += (double)x[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void sum_f64_final(const double* __restrict__ partials, int count, double* __restrict__ out) {
    STATIC_SHARED(double, shared, [32]);
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) *out = acc;
}

// How many elements have |x| > threshold (NaN never does), compared exactly on the bits (this file is built with
// --use_fast_math, whose flush-to-zero would count a subnormal |x| as 0): with a = |x|'s bits, x counts when it is not a
// NaN (a ≤ 0x7f800000) and a > limit, where the host passes limit = the bits of |threshold|, or −1 for a negative
// threshold (every non-NaN value). Each thread counts its elements, the warp adds its counts and one lane adds the
// warp's to *count (integer atomics: the total does not depend on their order). Any grid, blockDim a multiple of 32;
// *count (u64) zeroed by the caller. Backend.countAbsAbove: paper §3.8's activated FFN outputs.
__device__ __forceinline__ uint32_t abs_bits(float v) { return __float_as_uint(v) & 0x7fffffffu; }
__device__ __forceinline__ uint32_t abs_bits(bf16 v) { return ((uint32_t)__bfloat16_as_ushort(v) << 16) & 0x7fffffffu; }

template <typename T>
__device__ __forceinline__ void count_abs_above(unsigned long long* __restrict__ count, const T* __restrict__ x, long long n,
                                                int limit) {
    unsigned c = 0;
    GRID_STRIDE(i, n) {
        const uint32_t a = abs_bits(x[i]);
        c += a <= 0x7f800000u && (int)a > limit ? 1u : 0u;
    }
    c = __reduce_add_sync(0xffffffffu, c);
    if ((threadIdx.x & 31) == 0 && c != 0) atomicAdd(count, (unsigned long long)c);
}

extern "C" __global__ void count_abs_above_bf16(unsigned long long* __restrict__ count, const bf16* __restrict__ x, long long n,
                                                int limit) {
    count_abs_above(count, x, n, limit);
}

extern "C" __global__ void count_abs_above_f32(unsigned long long* __restrict__ count, const float* __restrict__ x, long long n,
                                               int limit) {
    count_abs_above(count, x, n, limit);
}
