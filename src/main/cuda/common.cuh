// Shared helpers for patchcore kernels: bf16 <-> fp32, 16-byte vector access, grid-stride loops, reductions.
// Every kernel is extern "C" so the Java side finds it by its plain name (KernelContext.launch).
#pragma once

#include <cuda_bf16.h>
#include <stdint.h>

#include "shared_memory.cuh"

typedef __nv_bfloat16 bf16;

// Eight bf16 values in one 16-byte load/store. Held as a plain uint4 (element 2i in the low half of word i, element
// 2i + 1 in the high half — the memory order on a little-endian GPU): a struct of four __nv_bfloat162, which have
// user-defined copy operations, was copied member by member, so every "16-byte" access compiled to four 4-byte
// memory instructions (PTX ld.global.nc.u32 or ld.global.nc.v2.u16, st.global.u32); a uint4 copies as one
// ld/st .v4.u32.
struct __align__(16) bf16x8 {
    uint4 u;
};
// Four floats in one 16-byte load/store.
typedef float4 f32x4;

__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(float x) { return x; }
// Round-to-nearest-even, the same rounding the CPU reference applies when it emulates bf16.
__device__ __forceinline__ bf16 to_bf16(float x) { return __float2bfloat16_rn(x); }

// bf16 → fp32 is exact: the bf16 bits are the fp32 value's upper 16 bits.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// Two floats rounded to nearest-even bf16 (the intrinsic's NaN and overflow handling), as one 32-bit word: a in the
// low half (the lower address), b in the high half.
__device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    uint32_t w;
    memcpy(&w, &h, sizeof w);
    return w;
}

__device__ __forceinline__ void unpack8(const bf16x8& v, float* out) {
    const uint32_t w[4] = {v.u.x, v.u.y, v.u.z, v.u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        out[2 * i] = bf16_lo(w[i]);
        out[2 * i + 1] = bf16_hi(w[i]);
    }
}

__device__ __forceinline__ bf16x8 pack8(const float* in) {
    bf16x8 v;
    v.u = make_uint4(pack_bf16x2(in[0], in[1]), pack_bf16x2(in[2], in[3]), pack_bf16x2(in[4], in[5]),
                     pack_bf16x2(in[6], in[7]));
    return v;
}

// True when a pointer is 16-byte aligned, so the vector path may be used on it.
__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Grid-stride loop over [0, n) with 64-bit indices (tensors may exceed 2^31 elements).
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum in a fixed order (deterministic). blockDim.x must be a multiple of 32, at most 1024;
// `shared` holds at least 32 values. All threads receive the result.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // `shared` may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T r = lane < warps ? shared[lane] : T(0);
    return warp_sum(r);
}
