// Shared by the standalone flash-attention checks (flash_attention_test.cu: the mma.sync kernels; flash_wgmma_test.cu:
// the Hopper wgmma kernels): the float64 causal-attention reference and its gradient, error measures, and device
// buffers poisoned with NaN. Compiled by nvcc, or by g++ against the CPU emulator (src/test/cuda/emu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <vector>

// KERNEL(k, grid, block[, shared])(args...): k<<<grid, block, shared>>>(args...), spelled so that the CPU emulator
// (PATCHCORE_EMU) can launch it too.
#ifdef PATCHCORE_EMU
#define KERNEL(k, ...) emu::launcher(k, __VA_ARGS__)
#else
#define KERNEL(k, ...) k<<<__VA_ARGS__>>>
#endif

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            std::exit(3);                                                                            \
        }                                                                                            \
    } while (0)

typedef __nv_bfloat16 bf16;

// q, k, v, out and their gradients are bf16 [B·T, H·D]; lse fp32 [B, H, T].
struct Problem {
    int B, H, T, D;
    long rows() const { return static_cast<long>(B) * T; }
    long width() const { return static_cast<long>(H) * D; }
    long n() const { return rows() * width(); }
    long nStat() const { return static_cast<long>(B) * H * T; }
    // Causal forward FLOPs as FlashAttention counts them: half of 4·B·H·T²·D (the backward is 2.5× this).
    double forwardFlops() const { return 2.0 * B * H * static_cast<double>(T) * T * D; }
};

// Raises the kernel's dynamic shared memory limit (needed above 48 KB), then launches it.
template <typename Kernel, typename... Args>
static void launch_dynamic(Kernel kernel, dim3 grid, dim3 block, int smem, Args... args) {
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    KERNEL(kernel, grid, block, smem)(args...);
    CHECK(cudaGetLastError());
}

static std::vector<bf16> random_bf16(long n, float range, std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-range, range);
    std::vector<bf16> x(n);
    for (auto& e : x) e = __float2bfloat16(u(rng));
    return x;
}

static std::vector<double> to_double(const std::vector<bf16>& x) {
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = __bfloat162float(x[i]);
    return y;
}

struct Reference {
    std::vector<double> out, lse, dq, dk, dv;
};

// Plain float64 causal attention and its gradient from the bf16-rounded inputs.
static Reference reference(const Problem& p, const std::vector<double>& q, const std::vector<double>& k,
                           const std::vector<double>& v, const std::vector<double>& dO) {
    Reference r;
    r.out.assign(p.n(), 0);
    r.lse.assign(p.nStat(), 0);
    r.dq.assign(p.n(), 0);
    r.dk.assign(p.n(), 0);
    r.dv.assign(p.n(), 0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(p.D));
    const long W = p.width();
    std::vector<double> P(p.T), dP(p.T);
    for (int b = 0; b < p.B; ++b)
        for (int h = 0; h < p.H; ++h)
            for (int t = 0; t < p.T; ++t) {
                const long qi = (static_cast<long>(b) * p.T + t) * W + h * p.D;
                double mx = -INFINITY;
                for (int s = 0; s <= t; ++s) {
                    const long ki = (static_cast<long>(b) * p.T + s) * W + h * p.D;
                    double dot = 0;
                    for (int d = 0; d < p.D; ++d) dot += q[qi + d] * k[ki + d];
                    P[s] = dot * scale;
                    mx = std::max(mx, P[s]);
                }
                double sum = 0;
                for (int s = 0; s <= t; ++s) sum += std::exp(P[s] - mx);
                r.lse[(static_cast<long>(b) * p.H + h) * p.T + t] = mx + std::log(sum);
                for (int s = 0; s <= t; ++s) P[s] = std::exp(P[s] - mx) / sum;
                double Di = 0;
                for (int d = 0; d < p.D; ++d) {
                    double o = 0;
                    for (int s = 0; s <= t; ++s) o += P[s] * v[(static_cast<long>(b) * p.T + s) * W + h * p.D + d];
                    r.out[qi + d] = o;
                    Di += o * dO[qi + d];
                }
                for (int s = 0; s <= t; ++s) {
                    const long ki = (static_cast<long>(b) * p.T + s) * W + h * p.D;
                    double dot = 0;
                    for (int d = 0; d < p.D; ++d) dot += dO[qi + d] * v[ki + d];
                    const double dS = P[s] * (dot - Di);
                    for (int d = 0; d < p.D; ++d) {
                        r.dq[qi + d] += scale * dS * k[ki + d];
                        r.dk[ki + d] += scale * dS * q[qi + d];
                        r.dv[ki + d] += P[s] * dO[qi + d];
                    }
                }
            }
    return r;
}

struct Error {
    double rel, maxAbs;
    bool finite;
};

template <typename T>
static Error compare(const std::vector<T>& got, const std::vector<double>& ref) {
    double num = 0, den = 0, mx = 0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); ++i) {
        double g;
        if constexpr (std::is_same<T, bf16>::value) g = __bfloat162float(got[i]);
        else g = got[i];
        if (!std::isfinite(g)) finite = false;
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
        mx = std::max(mx, std::fabs(g - ref[i]));
    }
    // The denominator has a floor of 1e-3 RMS per element: where the reference is (nearly) all zero, the error is
    // measured against that instead of nothing. At T = 1, dq and dk are exactly 0 (one key: P = 1, dS = dP − Δ = 0);
    // on an H100 the kernels' fp32 rounding left ~3e-8 there, which divided by 1e-300 read as 2.8e+143 (run 16).
    const double floor = static_cast<double>(ref.size()) * 1e-6;
    return {std::sqrt(num / std::max(den, floor)), mx, finite};
}

// The pass criteria of both programs: relative L2 error < 1e-2 for bf16 tensors, |Δlse| < 2e-3, everything finite.
static bool forward_passes(const Error& out, const Error& lse) {
    return out.finite && lse.finite && out.rel < 1e-2 && lse.maxAbs < 2e-3;
}
static bool backward_passes(const Error& dq, const Error& dk, const Error& dv) {
    return dq.finite && dk.finite && dv.finite && dq.rel < 1e-2 && dk.rel < 1e-2 && dv.rel < 1e-2;
}

template <typename T>
static T* device_copy(const std::vector<T>& h) {
    T* d;
    CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
    CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
static T* device_poisoned(long n) {
    T* d;
    CHECK(cudaMalloc(&d, n * sizeof(T)));
    CHECK(cudaMemset(d, 0xFF, n * sizeof(T)));  // all-ones bytes: NaN in bf16 and fp32
    return d;
}

template <typename T>
static std::vector<T> host_copy(const T* d, long n) {
    std::vector<T> h(n);
    CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

[[maybe_unused]] static float median_ms(std::vector<float> t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}
