// AdamW (decoupled weight decay, PyTorch semantics) over fp32 master weights, and the deterministic global Σg²
// used for gradient-norm clipping. Semantics: Backend.adamW / Backend.sumOfSquares. Launch shapes: CudaAdamW.java.
//
// Per element, with g = grad · gradScale (gradScale carries the clip factor):
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   w ← w·(1 − lr·wd) − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 − β_i^step
// The host computes decay = 1 − lr·wd, stepSize = lr/bc1 and invSqrtBc2 = 1/sqrt(bc2) in double, as PyTorch does.
#include "common.cuh"

namespace {

// Four bf16 in one 8-byte store (the compute copy of four fp32 master weights); a plain uint2 so that it is copied
// as one st.v2.u32 (see bf16x8 in common.cuh).
struct __align__(8) bf16x4 {
    uint2 u;
};

__device__ __forceinline__ bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }

struct AdamW {
    float beta1, beta2, eps, gradScale, decay, stepSize, invSqrtBc2;

    __device__ __forceinline__ float update(float w, float g, float& m, float& v) const {
        g *= gradScale;
        m = fmaf(beta1, m, (1.0f - beta1) * g);
        v = fmaf(beta2, v, (1.0f - beta2) * g * g);
        return w * decay - stepSize * m / (sqrtf(v) * invSqrtBc2 + eps);
    }
};

}  // namespace

// master, grad, m, v: F32 [n]; compute: bf16 [n] or null. grid, block: any (grid-stride).
// 16-byte accesses (8-byte for compute) when every pointer allows it, with a scalar tail; else scalar.
extern "C" __global__ void adamw_step_f32(float* __restrict__ master, const float* __restrict__ grad,
                                          float* __restrict__ m, float* __restrict__ v, bf16* __restrict__ compute,
                                          long long n, float beta1, float beta2, float eps, float gradScale,
                                          float decay, float stepSize, float invSqrtBc2) {
    const AdamW opt{beta1, beta2, eps, gradScale, decay, stepSize, invSqrtBc2};
    long long done = 0;
    if (aligned16(master) && aligned16(grad) && aligned16(m) && aligned16(v) && aligned8(compute)) {
        const long long groups = n / 4;
        GRID_STRIDE(i, groups) {
            float4 w = reinterpret_cast<const float4*>(master)[i];
            const float4 g = reinterpret_cast<const float4*>(grad)[i];
            float4 mm = reinterpret_cast<const float4*>(m)[i];
            float4 vv = reinterpret_cast<const float4*>(v)[i];
            w.x = opt.update(w.x, g.x, mm.x, vv.x);
            w.y = opt.update(w.y, g.y, mm.y, vv.y);
            w.z = opt.update(w.z, g.z, mm.z, vv.z);
            w.w = opt.update(w.w, g.w, mm.w, vv.w);
            reinterpret_cast<float4*>(master)[i] = w;
            reinterpret_cast<float4*>(m)[i] = mm;
            reinterpret_cast<float4*>(v)[i] = vv;
            if (compute != nullptr) {
                bf16x4 c;
                c.u = make_uint2(pack_bf16x2(w.x, w.y), pack_bf16x2(w.z, w.w));
                reinterpret_cast<bf16x4*>(compute)[i] = c;
            }
        }
        done = groups * 4;
    }
    GRID_STRIDE(i, n - done) {
        const long long j = done + i;
        float mj = m[j], vj = v[j];
        const float w = opt.update(master[j], grad[j], mj, vj);
        master[j] = w;
        m[j] = mj;
        v[j] = vj;
        if (compute != nullptr) compute[j] = __float2bfloat16_rn(w);
    }
}

constexpr int SUMSQ_UNROLL = 4;  // loads in flight per thread in the sum-of-squares kernels

// Grid-stride over the 16-byte groups x[0, groups): add(group) for each of this thread's groups, SUMSQ_UNROLL loads
// issued before their adds (one load per iteration kept ~16 KB in flight per SM: 78 % of the copy bandwidth on an
// H100), the adds in index order.
template <class G, class Add>
__device__ __forceinline__ void sumsq_groups(const G* __restrict__ x, long long groups, Add add) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + (SUMSQ_UNROLL - 1) * stride < groups; i += SUMSQ_UNROLL * stride) {
        G q[SUMSQ_UNROLL];
#pragma unroll
        for (int u = 0; u < SUMSQ_UNROLL; ++u) q[u] = x[i + u * stride];
#pragma unroll
        for (int u = 0; u < SUMSQ_UNROLL; ++u) add(q[u]);
    }
    for (; i < groups; i += stride) add(x[i]);
}

// partial[slot + blockIdx.x] = Σ x² over this block's grid-stride share of x (F32 [n]). block: multiple of 32.
// Each thread sums in fp32 (at most a few hundred elements), the block combines in double in a fixed order.
extern "C" __global__ void adamw_sumsq_partial_f32(float* __restrict__ partial, int slot, const float* __restrict__ x,
                                                   long long n) {
    STATIC_SHARED(double, red, [32]);
    float acc = 0.f;
    long long done = 0;
    if (aligned16(x)) {
        const long long groups = n / 4;
        float a1 = 0.f, a2 = 0.f, a3 = 0.f;
        sumsq_groups(reinterpret_cast<const float4*>(x), groups, [&](const float4& q) {
            acc = fmaf(q.x, q.x, acc);
            a1 = fmaf(q.y, q.y, a1);
            a2 = fmaf(q.z, q.z, a2);
            a3 = fmaf(q.w, q.w, a3);
        });
        acc = (acc + a1) + (a2 + a3);
        done = groups * 4;
    }
    GRID_STRIDE(i, n - done) {
        const float q = x[done + i];
        acc = fmaf(q, q, acc);
    }
    const double total = block_sum((double)acc, red);
    if (threadIdx.x == 0) partial[slot + blockIdx.x] = (float)total;
}

// The same over a bf16 tensor (e.g. activation gradients), 16-byte groups of 8.
extern "C" __global__ void adamw_sumsq_partial_bf16(float* __restrict__ partial, int slot, const bf16* __restrict__ x,
                                                    long long n) {
    STATIC_SHARED(double, red, [32]);
    float acc = 0.f;
    long long done = 0;
    if (aligned16(x)) {
        const long long groups = n / 8;
        sumsq_groups(reinterpret_cast<const bf16x8*>(x), groups, [&](const bf16x8& g) {
            float q[8];
            unpack8(g, q);
            float s = 0.f;
#pragma unroll
            for (int k = 0; k < 8; ++k) s = fmaf(q[k], q[k], s);
            acc += s;
        });
        done = groups * 8;
    }
    GRID_STRIDE(i, n - done) {
        const float q = __bfloat162float(x[done + i]);
        acc = fmaf(q, q, acc);
    }
    const double total = block_sum((double)acc, red);
    if (threadIdx.x == 0) partial[slot + blockIdx.x] = (float)total;
}

// out[0] = Σ partial[0, count) in double, fixed order. Launch: one block, blockDim a multiple of 32 (≤ 1024).
extern "C" __global__ void adamw_sumsq_final(float* __restrict__ out, const float* __restrict__ partial, int count) {
    STATIC_SHARED(double, red, [32]);
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc, red);
    if (threadIdx.x == 0) out[0] = (float)acc;
}
