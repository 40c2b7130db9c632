// nvcc-flags: --use_fast_math
// Element-wise ops: residual add, gradient accumulation, dtype casts and a deterministic F32 sum.
// All are memory-bound: each thread moves 16 bytes per access when every pointer is 16-byte aligned
// (the common case: tensors start at allocator blocks), with a scalar tail; otherwise a scalar grid-stride loop.
// fast-math is safe here: only adds and conversions, no transcendental functions or divisions.
#include "common.cuh"

extern "C" __global__ void add_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ y,
                                    long long n) {
    if (aligned16(out) && aligned16(x) && aligned16(y)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            float a[8], b[8];
            unpack8(reinterpret_cast<const bf16x8*>(x)[g], a);
            unpack8(reinterpret_cast<const bf16x8*>(y)[g], b);
#pragma unroll
            for (int i = 0; i < 8; ++i) a[i] += b[i];
            reinterpret_cast<bf16x8*>(out)[g] = pack8(a);
        }
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            out[j] = to_bf16(to_f32(x[j]) + to_f32(y[j]));
        }
    } else {
        GRID_STRIDE(i, n) out[i] = to_bf16(to_f32(x[i]) + to_f32(y[i]));
    }
}

extern "C" __global__ void add_f32(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ y,
                                   long long n) {
    if (aligned16(out) && aligned16(x) && aligned16(y)) {
        const long long groups = n / 4;
        GRID_STRIDE(g, groups) {
            f32x4 a = reinterpret_cast<const f32x4*>(x)[g], b = reinterpret_cast<const f32x4*>(y)[g];
            reinterpret_cast<f32x4*>(out)[g] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        }
        GRID_STRIDE(i, n - groups * 4) {
            const long long j = groups * 4 + i;
            out[j] = x[j] + y[j];
        }
    } else {
        GRID_STRIDE(i, n) out[i] = x[i] + y[i];
    }
}

// acc += x with acc and x both bf16 (activation gradients at fan-out points). acc may alias nothing else.
extern "C" __global__ void add_inplace_bf16(bf16* __restrict__ acc, const bf16* __restrict__ x, long long n) {
    if (aligned16(acc) && aligned16(x)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            float a[8], b[8];
            unpack8(reinterpret_cast<const bf16x8*>(acc)[g], a);
            unpack8(reinterpret_cast<const bf16x8*>(x)[g], b);
#pragma unroll
            for (int i = 0; i < 8; ++i) a[i] += b[i];
            reinterpret_cast<bf16x8*>(acc)[g] = pack8(a);
        }
        GRID_STRIDE(i, n - groups * 8) {
            const long long j = groups * 8 + i;
            acc[j] = to_bf16(to_f32(acc[j]) + to_f32(x[j]));
        }
    } else {
        GRID_STRIDE(i, n) acc[i] = to_bf16(to_f32(acc[i]) + to_f32(x[i]));
    }
}

extern "C" __global__ void add_inplace_f32(float* __restrict__ acc, const float* __restrict__ x, long long n) {
    if (aligned16(acc) && aligned16(x)) {
        const long long groups = n / 4;
        GRID_STRIDE(g, groups) {
            f32x4 a = reinterpret_cast<const f32x4*>(acc)[g], b = reinterpret_cast<const f32x4*>(x)[g];
            reinterpret_cast<f32x4*>(acc)[g] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        }
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
    __shared__ double shared[32];
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += (double)x[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void sum_f64_final(const double* __restrict__ partials, int count, double* __restrict__ out) {
    __shared__ double shared[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) *out = acc;
}
