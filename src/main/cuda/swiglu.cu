// SwiGLU: y = silu(a) · b with silu(a) = a · σ(a), bf16 in/out, fp32 math. Semantics: Backend.swiglu.
// Backward in one pass over dy, a, b:  dA = dy · b · σ(a) · (1 + a · (1 − σ(a))),  dB = dy · a · σ(a).
// Memory-bound: 16-byte accesses when every pointer is 16-byte aligned (bulk of 8-element groups + scalar tail),
// otherwise a scalar grid-stride loop. Precise expf (no fast-math) so σ matches the CPU reference to fp32 rounding.
#include "common.cuh"

namespace {

__device__ __forceinline__ float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

__device__ __forceinline__ float swiglu(float a, float b) { return a * sigmoid(a) * b; }

__device__ __forceinline__ void swiglu_grad(float dy, float a, float b, float* da, float* db) {
    const float s = sigmoid(a);
    *da = dy * b * s * (1.0f + a * (1.0f - s));
    *db = dy * a * s;
}

}  // namespace

// grid, block: any (grid-stride); n = element count.
extern "C" __global__ void swiglu_fwd_bf16(bf16* __restrict__ y, const bf16* __restrict__ a, const bf16* __restrict__ b,
                                           long long n) {
    long long done = 0;
    if (aligned16(y) && aligned16(a) && aligned16(b)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            float va[8], vb[8], vy[8];
            unpack8(reinterpret_cast<const bf16x8*>(a)[g], va);
            unpack8(reinterpret_cast<const bf16x8*>(b)[g], vb);
#pragma unroll
            for (int k = 0; k < 8; ++k) vy[k] = swiglu(va[k], vb[k]);
            reinterpret_cast<bf16x8*>(y)[g] = pack8(vy);
        }
        done = groups * 8;
    }
    GRID_STRIDE(i, n - done) {
        const long long j = done + i;
        y[j] = to_bf16(swiglu(to_f32(a[j]), to_f32(b[j])));
    }
}

extern "C" __global__ void swiglu_bwd_bf16(bf16* __restrict__ dA, bf16* __restrict__ dB, const bf16* __restrict__ dy,
                                           const bf16* __restrict__ a, const bf16* __restrict__ b, long long n) {
    long long done = 0;
    if (aligned16(dA) && aligned16(dB) && aligned16(dy) && aligned16(a) && aligned16(b)) {
        const long long groups = n / 8;
        GRID_STRIDE(g, groups) {
            float vd[8], va[8], vb[8], ga[8], gb[8];
            unpack8(reinterpret_cast<const bf16x8*>(dy)[g], vd);
            unpack8(reinterpret_cast<const bf16x8*>(a)[g], va);
            unpack8(reinterpret_cast<const bf16x8*>(b)[g], vb);
#pragma unroll
            for (int k = 0; k < 8; ++k) swiglu_grad(vd[k], va[k], vb[k], &ga[k], &gb[k]);
            reinterpret_cast<bf16x8*>(dA)[g] = pack8(ga);
            reinterpret_cast<bf16x8*>(dB)[g] = pack8(gb);
        }
        done = groups * 8;
    }
    GRID_STRIDE(i, n - done) {
        const long long j = done + i;
        float ga, gb;
        swiglu_grad(to_f32(dy[j]), to_f32(a[j]), to_f32(b[j]), &ga, &gb);
        dA[j] = to_bf16(ga);
        dB[j] = to_bf16(gb);
    }
}
