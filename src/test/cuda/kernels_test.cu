// Standalone check of the RMSNorm, RoPE, SwiGLU, K-target cross-entropy, AdamW, decode-attention, head-repeat and
// activation-count kernels against plain host loops (double precision), plus a bandwidth table. Not part of the Maven
// build. On a GPU machine (tools/device/pack.sh builds it for gpu-check.sh's cuda-tests step):
//
//   nvcc -O3 -std=c++17 -Isrc/main/cuda -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80
//        src/test/cuda/kernels_test.cu src/main/cuda/{KERNEL FILES BELOW}.cu -o /tmp/kernels_test
//   /tmp/kernels_test            # correctness, then timings (add --no-bench to skip the timings)
//
// Without a GPU: `bash src/test/cuda/emu/run.sh` builds it with g++ against the CPU emulator there and runs the
// correctness part (the Maven suite does, in CudaEmulatorTest).
//
// kernel-files: rmsnorm rope swiglu cross_entropy adamw attention_decode repeat_heads elementwise
//
// Launch shapes mirror the Java launchers (CudaRmsNorm, CudaRope, CudaSwiGlu, CudaCrossEntropy, CudaAdamW,
// CudaDecodeAttention, CudaRepeatHeads, CudaBackend.countAbsAbove).
// Outputs are poisoned with NaN before each run; sizes include odd ones and deliberately misaligned base pointers
// (one element off) so both the 16-byte and the scalar paths run. Exit code 0 only if every check passes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>
#include <string>
#include <vector>

typedef __nv_bfloat16 bf16;

extern "C" {
__global__ void rmsnorm_fwd_bf16(bf16*, float*, const bf16*, const bf16*, int, int, float);
__global__ void rmsnorm_add_fwd_bf16(bf16*, bf16*, float*, const bf16*, const bf16*, const bf16*, int, int, float);
__global__ void rmsnorm_bwd_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_rows4_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_rows8_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_teams2_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_teams4_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_teams2_fused_bf16(bf16*, float*, float*, unsigned*, const bf16*, const bf16*, const bf16*,
                                              const float*, int, int, int);
__global__ void rmsnorm_bwd_teams2_prefetch_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_teams2_prefetch_fused_bf16(bf16*, float*, float*, unsigned*, const bf16*, const bf16*,
                                                       const bf16*, const float*, int, int, int);
__global__ void rmsnorm_bwd_bulk2_bf16(bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int);
__global__ void rmsnorm_bwd_gain_reduce(float*, const float*, int, int);
__global__ void rope_fwd_bf16(bf16*, const bf16*, int, int, int, int, int, float, const float*, int);
__global__ void rope_bwd_bf16(bf16*, const bf16*, int, int, int, int, int, float, const float*, int);
__global__ void swiglu_fwd_bf16(bf16*, const bf16*, const bf16*, long long);
__global__ void swiglu_bwd_bf16(bf16*, bf16*, const bf16*, const bf16*, const bf16*, long long);
__global__ void cross_entropy_fwd_bf16(float*, bf16*, const int*, int, int, int, int, float);
__global__ void adamw_step_f32(float*, const float*, float*, float*, bf16*, long long, float, float, float, float, float,
                               float, float);
__global__ void adamw_sumsq_partial_f32(float*, int, const float*, long long);
__global__ void adamw_sumsq_partial_bf16(float*, int, const bf16*, long long);
__global__ void adamw_sumsq_final(float*, const float*, int);
__global__ void attn_decode_partial(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g2(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g3(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g4(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g5(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g6(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g7(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_partial_g8(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
__global__ void attn_decode_combine(bf16*, const float*, const float2*, int, int, int);
__global__ void repeat_heads_bf16(bf16*, const bf16*, long long, int, int, int);
__global__ void repeat_heads_bwd_bf16(bf16*, const bf16*, long long, int, int, int);
__global__ void count_abs_above_bf16(unsigned long long*, const bf16*, long long, int);
__global__ void count_abs_above_f32(unsigned long long*, const float*, long long, int);
}

#define CHECK(call)                                                                                    \
    do {                                                                                               \
        cudaError_t e_ = (call);                                                                       \
        if (e_ != cudaSuccess) {                                                                       \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            std::exit(2);                                                                              \
        }                                                                                              \
    } while (0)
#define LAUNCHED() CHECK(cudaGetLastError())
// KERNEL(k, grid, block[, shared])(args...): k<<<grid, block, shared>>>(args...), spelled so that the CPU emulator
// (src/test/cuda/emu, PATCHCORE_EMU) can launch it too.
#ifdef PATCHCORE_EMU
#define KERNEL(k, ...) emu::launcher(k, __VA_ARGS__)
#else
#define KERNEL(k, ...) k<<<__VA_ARGS__>>>
#endif
// launch_cooperative(k, grid, block, shared, args...): cudaLaunchCooperativeKernel, for kernels whose blocks wait for
// each other (the whole grid resident at once, as CudaRmsNorm's launchCooperative).
template <class... P, class... A>
static void launch_cooperative(void (*k)(P...), dim3 grid, dim3 block, size_t shared, A... a) {
#ifdef PATCHCORE_EMU
    emu::cooperative_launcher(k, grid, block, shared)(a...);
#else
    std::tuple<P...> args(static_cast<P>(a)...);
    std::apply([&](auto&... v) {
        void* ptrs[] = {(void*)&v...};
        CHECK(cudaLaunchCooperativeKernel((const void*)k, grid, block, ptrs, shared, 0));
    }, args);
#endif
}

static int g_sms = 0;
static int g_cc_major = 0;  // compute capability major (variant 5 of the RMSNorm backward needs 9+)
// KERNELS_TEST_SKIP_RMSNORMBWD=6,8: leave out those RMSNorm backward variants (3-8; gpu-check.sh names the ones its
// canary saw fail or hang, so the other kernels' checks still run); KERNELS_TEST_SKIP_TEAMS set: all of 3-8.
static bool g_skip_bwd[9] = {};
static int g_failures = 0;
static std::mt19937 g_rng(1234);

// ------------------------------------------------------------------ host bf16 and buffers

static float bf16_round(float f) {  // round to nearest even, as __float2bfloat16_rn (NaN kept NaN)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
    return f;
}
static uint16_t bf16_bits(float f) {
    f = bf16_round(f);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
static float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

static std::vector<float> random_vec(size_t n, float lo, float hi, bool roundBf16) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = roundBf16 ? bf16_round(d(g_rng)) : d(g_rng);
    return v;
}

// A device buffer of `n` elements starting `shift` elements past a 256-byte aligned allocation (shift 1 makes the
// base pointer misaligned for 16-byte access), NaN-poisoned.
template <typename T>
struct Dev {
    char* raw = nullptr;
    T* p = nullptr;
    size_t n = 0;
    Dev(size_t count, int shift = 0) : n(count) {
        CHECK(cudaMalloc(&raw, (count + shift + 8) * sizeof(T) + 256));
        p = reinterpret_cast<T*>(raw) + shift;
        CHECK(cudaMemset(raw, 0xff, (count + shift + 8) * sizeof(T) + 256));  // 0xffff.. is NaN as f32 and bf16
    }
    ~Dev() { cudaFree(raw); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
};

static void upload_bf16(Dev<bf16>& d, const std::vector<float>& v) {
    std::vector<uint16_t> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = bf16_bits(v[i]);
    CHECK(cudaMemcpy(d.p, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
}
static std::vector<float> download_bf16(const Dev<bf16>& d) {
    std::vector<uint16_t> b(d.n);
    CHECK(cudaMemcpy(b.data(), d.p, b.size() * 2, cudaMemcpyDeviceToHost));
    std::vector<float> v(d.n);
    for (size_t i = 0; i < d.n; ++i) v[i] = bf16_value(b[i]);
    return v;
}
template <typename T>
static void upload(Dev<T>& d, const std::vector<T>& v) {
    CHECK(cudaMemcpy(d.p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T>
static std::vector<T> download(const Dev<T>& d) {
    std::vector<T> v(d.n);
    CHECK(cudaMemcpy(v.data(), d.p, v.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

// ‖out − ref‖ / ‖ref‖; NaN anywhere in `out` fails.
static void expect_close(const std::string& what, const std::vector<float>& out, const std::vector<double>& ref,
                         double tol) {
    double num = 0, den = 0;
    bool nan = false;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (std::isnan(out[i]) != std::isnan(ref[i])) nan = true;
        if (std::isnan(ref[i])) continue;
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = std::sqrt(num / std::max(den, 1e-300));
    bool ok = !nan && rel < tol;
    std::printf("  %-4s %-58s rel %.2e (tol %.0e)%s\n", ok ? "ok" : "FAIL", what.c_str(), rel, tol, nan ? " NaN" : "");
    if (!ok) ++g_failures;
}
static void expect(const std::string& what, bool ok) {
    std::printf("  %-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
    if (!ok) ++g_failures;
}

static int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

// ------------------------------------------------------------------ launchers (mirror the Java classes)

static void launch_rmsnorm_fwd(bf16* y, float* rstd, const bf16* x, const bf16* g, int n, int d, float eps) {
    KERNEL(rmsnorm_fwd_bf16, std::min(ceil_div(n, 8), 32 * g_sms), 256)(y, rstd, x, g, n, d, eps);
    LAUNCHED();
}
static void launch_rmsnorm_add(bf16* s, bf16* y, float* rstd, const bf16* a, const bf16* b, const bf16* g, int n, int d,
                               float eps) {
    KERNEL(rmsnorm_add_fwd_bf16, std::min(ceil_div(n, 8), 32 * g_sms), 256)(s, y, rstd, a, b, g, n, d, eps);
    LAUNCHED();
}
static bool al16(const void* p) { return ((uintptr_t)p & 15) == 0; }
// CudaRmsNorm.backward: warp-per-row kernels (groups = 4 or 8 per lane) for d % 8 == 0, d ≤ 2048 and aligned
// tensors; otherwise the block-per-row kernel (groups = 0).
struct RmsBwdShape {
    int groups, threads, blocks;
};
static RmsBwdShape rms_bwd_shape(int n, int d, bool aligned) {
    if (d % 8 == 0 && d <= 2048 && aligned) {
        int groups = d <= 1024 ? 4 : 8;
        return {groups, 256, std::min(ceil_div(n, 8), (groups == 4 ? 2 : 1) * g_sms)};
    }
    int threads = std::clamp(ceil_div(ceil_div(d, 8), 32) * 32, 64, 256);
    int blocks = std::min(n, g_sms * std::max(1, 1024 / threads));
    return {0, threads, blocks};
}
static RmsBwdShape rms_bwd_shape(int n, int d, const bf16* dx, const bf16* dy, const bf16* x, const bf16* g) {
    return rms_bwd_shape(n, d, al16(dx) && al16(dy) && al16(x) && al16(g));
}
static void launch_rmsnorm_bwd(bf16* dx, float* partial, float* dGain, const bf16* dy, const bf16* x, const bf16* g,
                               const float* rstd, int n, int d) {
    RmsBwdShape s = rms_bwd_shape(n, d, dx, dy, x, g);
    if (s.groups == 4) KERNEL(rmsnorm_bwd_rows4_bf16, s.blocks, s.threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d);
    else if (s.groups == 8) KERNEL(rmsnorm_bwd_rows8_bf16, s.blocks, s.threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d);
    else KERNEL(rmsnorm_bwd_bf16, s.blocks, s.threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d);
    LAUNCHED();
    KERNEL(rmsnorm_bwd_gain_reduce, ceil_div(d, 32), dim3(32, 32))(dGain, partial, s.blocks, d);
    LAUNCHED();
}
// CudaRmsNorm backward variants 3, 4, 6, 7 and 8 (teamBackward): teams of ceil(d / 256) warps, R = 4 rows per batch
// (variant 4) or 2, at most 12 (variants 4, 7, 8) or 16 warps and 8 teams per block, a grid of the resident blocks.
// Same shapes as the warp-per-row kernels. Variants 6 and 8 launch cooperatively and reduce into dGain in their last
// blocks (counter: 0 between launches; reducers as CudaRmsNorm.fusedReducers); the others are followed by the reduce
// kernel.
// Returns the grid (the partial rows written).
static int launch_rmsnorm_bwd_teams(int variant, bf16* dx, float* partial, float* dGain, unsigned* counter,
                                    const bf16* dy, const bf16* x, const bf16* g, const float* rstd, int n, int d) {
    const int R = variant == 4 ? 4 : 2, maxWarps = variant == 4 || variant >= 7 ? 12 : 16;
    const bool fused = variant == 6 || variant == 8;
    int teamWarps = ceil_div(d, 256), teams = std::min(8, maxWarps / teamWarps), threads = 32 * teamWarps * teams;
    const void* kernel = variant == 4   ? (const void*)rmsnorm_bwd_teams4_bf16
                         : variant == 6 ? (const void*)rmsnorm_bwd_teams2_fused_bf16
                         : variant == 7 ? (const void*)rmsnorm_bwd_teams2_prefetch_bf16
                         : variant == 8 ? (const void*)rmsnorm_bwd_teams2_prefetch_fused_bf16
                                        : (const void*)rmsnorm_bwd_teams2_bf16;
    int perSm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kernel, threads, d * sizeof(float)));
    int blocks = std::min(ceil_div(n, R * teams), std::max(1, perSm) * g_sms);
    switch (variant) {
        case 4: KERNEL(rmsnorm_bwd_teams4_bf16, blocks, threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d); break;
        case 6:
            launch_cooperative(rmsnorm_bwd_teams2_fused_bf16, blocks, threads, d * sizeof(float), dx, partial, dGain, counter,
                               dy, x, g, rstd, n, d, std::max(1, std::min(blocks / 2, d / 8)));
            break;
        case 7: KERNEL(rmsnorm_bwd_teams2_prefetch_bf16, blocks, threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d); break;
        case 8:
            launch_cooperative(rmsnorm_bwd_teams2_prefetch_fused_bf16, blocks, threads, d * sizeof(float), dx, partial, dGain,
                               counter, dy, x, g, rstd, n, d, std::max(1, std::min(blocks / 2, d / 8)));
            break;
        default: KERNEL(rmsnorm_bwd_teams2_bf16, blocks, threads, d * sizeof(float))(dx, partial, dy, x, g, rstd, n, d);
    }
    LAUNCHED();
    if (!fused) {
        KERNEL(rmsnorm_bwd_gain_reduce, ceil_div(d, 32), dim3(32, 32))(dGain, partial, blocks, d);
        LAUNCHED();
    }
    return blocks;
}
// CudaRmsNorm backward variant 5 (bulkBackward, compute capability 9+): variant 3's teams, each with a ring of 3 stages
// × 2 rows of dy and x in dynamic shared memory plus one mbarrier per stage. Returns the grid.
static int launch_rmsnorm_bwd_bulk(bf16* dx, float* partial, float* dGain, const bf16* dy, const bf16* x, const bf16* g,
                                   const float* rstd, int n, int d) {
    int teamWarps = ceil_div(d, 256), teams = std::min(8, 16 / teamWarps), threads = 32 * teamWarps * teams;
    int shared = d * 4 + teams * 3 * (2 * 2 * d * 2 + 8);
    CHECK(cudaFuncSetAttribute((const void*)rmsnorm_bwd_bulk2_bf16, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
    int perSm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, (const void*)rmsnorm_bwd_bulk2_bf16, threads, shared));
    int blocks = std::min(ceil_div(n, 2 * teams), std::max(1, perSm) * g_sms);
    KERNEL(rmsnorm_bwd_bulk2_bf16, blocks, threads, shared)(dx, partial, dy, x, g, rstd, n, d);
    LAUNCHED();
    KERNEL(rmsnorm_bwd_gain_reduce, ceil_div(d, 32), dim3(32, 32))(dGain, partial, blocks, d);
    LAUNCHED();
    return blocks;
}
// CudaRope: vector path (one warp per row, a (cos, sin) table of Dh/2 pairs per warp in shared memory) when
// Dh/2 % 8 == 0, Dh/2 ≤ 768 and both tensors are aligned; else one thread per (row, frequency).
static void launch_rope(bool inverse, bf16* out, const bf16* x, int rows, int seqLen, int heads, int dh, float theta,
                        int start = 0, const float* invFreq = nullptr) {
    int half = dh / 2;
    bool vector = half % 8 == 0 && half <= 768 && al16(out) && al16(x);
    long long work = vector ? (long long)rows * 32 : (long long)rows * half;
    int blocks = (int)std::min<long long>(ceil_div(work, 256), 32LL * g_sms);
    size_t table = vector ? (size_t)8 * half * 2 * sizeof(float) : 0;
    if (inverse) KERNEL(rope_bwd_bf16, blocks, 256, table)(out, x, rows, seqLen, start, heads, dh, theta, invFreq, vector ? 1 : 0);
    else KERNEL(rope_fwd_bf16, blocks, 256, table)(out, x, rows, seqLen, start, heads, dh, theta, invFreq, vector ? 1 : 0);
    LAUNCHED();
}
static int swiglu_blocks(long long n) {
    return (int)std::max(1LL, std::min<long long>(ceil_div((n + 7) / 8, 256), 8LL * g_sms));
}
// CudaCrossEntropy.threadsPerRow: ~8 groups per thread up to 512, 1024 when 4 resident rows per SM exceed 36 MiB.
static int ce_threads(int stride) {
    int threads = std::clamp((ceil_div(ceil_div(stride, 8), 8) + 31) / 32 * 32, 32, 512);
    long long resident = (long long)g_sms * (2048 / threads) * stride * 2;
    return resident > (36LL << 20) ? 1024 : threads;
}
static void launch_ce(float* losses, bf16* logits, const int* targets, int n, int stride, int vocab, int K,
                      float gradScale, int threads = 0) {
    if (threads == 0) threads = ce_threads(stride);
    KERNEL(cross_entropy_fwd_bf16, n, threads, K * 8)(losses, logits, targets, n, stride, vocab, K, gradScale);
    LAUNCHED();
}
struct AdamHyper {
    float lr, beta1, beta2, eps, wd;
    int step;
    float gradScale;
};
static void launch_adamw(float* w, const float* g, float* m, float* v, bf16* c, long long n, const AdamHyper& h) {
    double bc1 = 1.0 - std::pow((double)h.beta1, h.step), bc2 = 1.0 - std::pow((double)h.beta2, h.step);
    int blocks = (int)std::max(1LL, std::min<long long>(ceil_div((n + 3) / 4, 256), 8LL * g_sms));
    KERNEL(adamw_step_f32, blocks, 256)(w, g, m, v, c, n, h.beta1, h.beta2, h.eps, h.gradScale,
                                    (float)(1.0 - (double)h.lr * h.wd), (float)(h.lr / bc1), (float)(1.0 / std::sqrt(bc2)));
    LAUNCHED();
}
static int sumsq_blocks(long long n) { return (int)std::min<long long>(ceil_div(n, 256 * 16), 4LL * g_sms); }

// ------------------------------------------------------------------ correctness

static void test_rmsnorm(int n, int d, int shift) {
    char tag[96];
    std::snprintf(tag, sizeof tag, "rmsnorm n=%d d=%d shift=%d", n, d, shift);
    std::printf("%s\n", tag);
    const float eps = 1e-5f;
    size_t nd = (size_t)n * d;
    auto x = random_vec(nd, -2, 2, true), br = random_vec(nd, -1, 1, true), g = random_vec(d, 0.5f, 1.5f, true);
    auto dy = random_vec(nd, -1, 1, true), dg0 = random_vec(d, -1, 1, false);
    Dev<bf16> dX(nd, shift), dB(nd, shift), dG(d, shift), dY(nd, shift), dS(nd, shift), dDy(nd, shift), dDx(nd, shift);
    Dev<float> dR(n, shift), dDg(d, shift);
    upload_bf16(dX, x), upload_bf16(dB, br), upload_bf16(dG, g), upload_bf16(dDy, dy), upload(dDg, dg0);

    // Host reference on the bf16 inputs: forward of x, and of bf16(x + branch).
    auto ref_forward = [&](const std::vector<float>& in, std::vector<double>& y, std::vector<double>& r) {
        y.assign(nd, 0), r.assign(n, 0);
        for (int i = 0; i < n; ++i) {
            double ss = 0;
            for (int j = 0; j < d; ++j) ss += (double)in[(size_t)i * d + j] * in[(size_t)i * d + j];
            r[i] = 1.0 / std::sqrt(ss / d + eps);
            for (int j = 0; j < d; ++j) y[(size_t)i * d + j] = in[(size_t)i * d + j] * r[i] * g[j];
        }
    };
    std::vector<double> yRef, rRef;
    ref_forward(x, yRef, rRef);
    launch_rmsnorm_fwd(dY.p, dR.p, dX.p, dG.p, n, d, eps);
    expect_close("forward y", download_bf16(dY), yRef, 1e-2);
    expect_close("forward rstd", download(dR), rRef, 1e-5);

    std::vector<float> sum(nd);
    for (size_t i = 0; i < nd; ++i) sum[i] = bf16_round(x[i] + br[i]);
    ref_forward(sum, yRef, rRef);
    launch_rmsnorm_add(dS.p, dY.p, dR.p, dX.p, dB.p, dG.p, n, d, eps);
    auto sOut = download_bf16(dS);
    expect("addForward sum == bf16(residual + branch) bit for bit",
           std::memcmp(sOut.data(), sum.data(), nd * sizeof(float)) == 0);
    expect_close("addForward y", download_bf16(dY), yRef, 1e-2);
    expect_close("addForward rstd", download(dR), rRef, 1e-5);

    // Backward on x = sum with the device's rstd (as the tape does).
    auto rDev = download(dR);
    std::vector<double> dxRef(nd), dgRef(dg0.begin(), dg0.end());
    for (int i = 0; i < n; ++i) {
        double r = rDev[i], dot = 0;
        for (int j = 0; j < d; ++j) dot += (double)dy[(size_t)i * d + j] * g[j] * sum[(size_t)i * d + j];
        for (int j = 0; j < d; ++j) {
            size_t o = (size_t)i * d + j;
            dxRef[o] = r * (dy[o] * g[j] - sum[o] * r * r * dot / d);
            dgRef[j] += (double)dy[o] * sum[o] * r;
        }
    }
    RmsBwdShape shape = rms_bwd_shape(n, d, dDx.p, dDy.p, dS.p, dG.p);
    std::printf("  backward kernel: %s, %d blocks\n",
                shape.groups == 4 ? "rows4" : shape.groups == 8 ? "rows8" : "block per row", shape.blocks);
    Dev<float> partial((size_t)shape.blocks * d, shift);
    launch_rmsnorm_bwd(dDx.p, partial.p, dDg.p, dDy.p, dS.p, dG.p, dR.p, n, d);
    expect_close("backward dx", download_bf16(dDx), dxRef, 1e-2);
    auto dgOut = download(dDg);
    expect_close("backward dGain (accumulated onto non-zero)", dgOut, dgRef, 1e-5);
    // Determinism: the same accumulation again from the same start must give identical bits.
    upload(dDg, dg0);
    launch_rmsnorm_bwd(dDx.p, partial.p, dDg.p, dDy.p, dS.p, dG.p, dR.p, n, d);
    auto dgAgain = download(dDg);
    expect("backward dGain bit-identical on rerun", std::memcmp(dgOut.data(), dgAgain.data(), d * sizeof(float)) == 0);

    // The team kernels (backward variants 3, 4, 6, 7, 8) on the shapes the warp-per-row kernels take, against the same
    // reference; 6, 7 and 8 keep variant 3's arithmetic per row, so their dx must equal its bit for bit.
    if (shape.groups == 0) return;
    Dev<unsigned> counter(1);
    CHECK(cudaMemset(counter.p, 0, sizeof(unsigned)));
    std::vector<float> teams2Dx;
    for (int v : {3, 4, 6, 7, 8}) {
        if (g_skip_bwd[v]) continue;
        char what[64];
        Dev<float> teamPartial((size_t)16 * g_sms * d, shift);  // blocks ≥ 224 threads: ≤ 9 resident per SM
        upload(dDg, dg0);
        CHECK(cudaMemset(dDx.p, 0xff, nd * sizeof(bf16)));  // NaN again: a dx row the kernel skips must fail, not pass on the last kernel's values
        int blocks = launch_rmsnorm_bwd_teams(v, dDx.p, teamPartial.p, dDg.p, counter.p, dDy.p, dS.p, dG.p, dR.p, n, d);
        std::printf("  backward teams variant %d: %d blocks\n", v, blocks);
        auto teamDx = download_bf16(dDx);
        std::snprintf(what, sizeof what, "backward teams v%d dx", v);
        expect_close(what, teamDx, dxRef, 1e-2);
        if (v == 3) teams2Dx = teamDx;
        std::snprintf(what, sizeof what, "backward teams v%d dx bit-identical to v3's", v);
        if (v >= 6 && !g_skip_bwd[3]) expect(what, std::memcmp(teamDx.data(), teams2Dx.data(), nd * sizeof(float)) == 0);
        auto teamDg = download(dDg);
        std::snprintf(what, sizeof what, "backward teams v%d dGain", v);
        expect_close(what, teamDg, dgRef, 1e-5);
        upload(dDg, dg0);
        launch_rmsnorm_bwd_teams(v, dDx.p, teamPartial.p, dDg.p, counter.p, dDy.p, dS.p, dG.p, dR.p, n, d);
        std::snprintf(what, sizeof what, "backward teams v%d dGain bit-identical on rerun", v);
        expect(what, std::memcmp(teamDg.data(), download(dDg).data(), d * sizeof(float)) == 0);
    }
    if (g_cc_major >= 9 && !g_skip_bwd[5]) {  // variant 5: the same arithmetic as teams2, its inputs through bulk copies
        Dev<float> bulkPartial((size_t)16 * g_sms * d, shift);
        upload(dDg, dg0);
        CHECK(cudaMemset(dDx.p, 0xff, nd * sizeof(bf16)));
        int blocks = launch_rmsnorm_bwd_bulk(dDx.p, bulkPartial.p, dDg.p, dDy.p, dS.p, dG.p, dR.p, n, d);
        std::printf("  backward bulk: %d blocks\n", blocks);
        expect_close("backward bulk dx", download_bf16(dDx), dxRef, 1e-2);
        auto bulkDg = download(dDg);
        expect_close("backward bulk dGain", bulkDg, dgRef, 1e-5);
        upload(dDg, dg0);
        launch_rmsnorm_bwd_bulk(dDx.p, bulkPartial.p, dDg.p, dDy.p, dS.p, dG.p, dR.p, n, d);
        expect("backward bulk dGain bit-identical on rerun",
               std::memcmp(bulkDg.data(), download(dDg).data(), d * sizeof(float)) == 0);
    }
}

// scaled: frequencies from a table (as LLaMA-3's scaled RoPE passes them): theta's, the upper half divided by 8.
static void test_rope(int batch, int seqLen, int heads, int dh, int shift, int start = 0, bool scaled = false) {
    char tag[112];
    std::snprintf(tag, sizeof tag, "rope B=%d T=%d H=%d Dh=%d shift=%d start=%d%s", batch, seqLen, heads, dh, shift, start,
                  scaled ? " scaled" : "");
    std::printf("%s\n", tag);
    const float theta = 10000.f;
    int rows = batch * seqLen, width = heads * dh, half = dh / 2;
    size_t nw = (size_t)rows * width;
    auto x = random_vec(nw, -1, 1, true);
    Dev<bf16> dX(nw, shift), dO(nw, shift), dBack(nw, shift);
    upload_bf16(dX, x);
    std::vector<float> freq(half);
    for (int i = 0; i < half; ++i) freq[i] = (float)(std::pow((double)theta, -2.0 * i / dh) / (i >= half / 2 ? 8.0 : 1.0));
    Dev<float> dFreq(half);
    upload(dFreq, freq);
    const float* table = scaled ? dFreq.p : nullptr;
    std::vector<double> fwd(nw), inv(nw);
    for (int r = 0; r < rows; ++r)
        for (int h = 0; h < heads; ++h)
            for (int i = 0; i < half; ++i) {
                double a = (double)(start + r % seqLen) * (scaled ? (double)freq[i] : std::pow((double)theta, -2.0 * i / dh));
                double c = std::cos(a), s = std::sin(a);
                size_t o = (size_t)r * width + (size_t)h * dh + i;
                double lo = x[o], hi = x[o + half];
                fwd[o] = lo * c - hi * s, fwd[o + half] = hi * c + lo * s;
                inv[o] = lo * c + hi * s, inv[o + half] = hi * c - lo * s;
            }
    launch_rope(false, dO.p, dX.p, rows, seqLen, heads, dh, theta, start, table);
    expect_close("forward", download_bf16(dO), fwd, 1e-2);
    launch_rope(true, dBack.p, dX.p, rows, seqLen, heads, dh, theta, start, table);
    expect_close("backward (inverse rotation)", download_bf16(dBack), inv, 1e-2);
    launch_rope(true, dBack.p, dO.p, rows, seqLen, heads, dh, theta, start, table);
    std::vector<double> xd(x.begin(), x.end());
    expect_close("backward(forward(x)) == x", download_bf16(dBack), xd, 1e-2);
}

// CudaDecodeAttention: queries n at positions start … over a cache of `cap` rows whose rows past the last position hold
// values 30× larger (no query may see them); chunks of 128 keys, merged by a second kernel when there are several.
// kvHeads (0: heads) key/value heads, query head h reading key/value head h / (heads / kvHeads). Each run takes G query
// heads per block: G = 1 (attn_decode_partial, a block per query head) always, and for a grouped cache every divisor
// G ≤ 8 of the group (attn_decode_partial_gG; CudaDecodeAttention launches the largest), each checked against the host
// and bit for bit against G = 1 (the same arithmetic per head). Outputs and partials are poisoned before each run.
typedef void (*DecodePartial)(bf16*, float*, float2*, const bf16*, const bf16*, const bf16*, int, int, int, int, int);
static DecodePartial decode_partial_kernel(int g) {
    switch (g) {
        case 1: return attn_decode_partial;
        case 2: return attn_decode_partial_g2;
        case 3: return attn_decode_partial_g3;
        case 4: return attn_decode_partial_g4;
        case 5: return attn_decode_partial_g5;
        case 6: return attn_decode_partial_g6;
        case 7: return attn_decode_partial_g7;
        case 8: return attn_decode_partial_g8;
        default: std::fprintf(stderr, "no decode kernel for %d heads per block\n", g); std::exit(2);
    }
}
static void test_decode(int cap, int start, int n, int heads, int dh, int shift, float qScale = 1.f, int kvHeads = 0) {
    if (kvHeads == 0) kvHeads = heads;
    std::printf("attention decode cache=%d start=%d n=%d H=%d KH=%d Dh=%d shift=%d q×%g\n", cap, start, n, heads, kvHeads,
                dh, shift, qScale);
    int width = heads * dh, kvWidth = kvHeads * dh, groups = heads / kvHeads, seen = start + n;
    auto q = random_vec((size_t)n * width, -qScale, qScale, true);
    auto k = random_vec((size_t)cap * kvWidth, -1, 1, true), v = random_vec((size_t)cap * kvWidth, -1, 1, true);
    for (size_t i = (size_t)seen * kvWidth; i < k.size(); ++i) k[i] = bf16_round(30 * k[i]), v[i] = bf16_round(30 * v[i]);
    Dev<bf16> dQ((size_t)n * width), dK((size_t)cap * kvWidth, shift), dV((size_t)cap * kvWidth, shift), dO((size_t)n * width);
    upload_bf16(dQ, q), upload_bf16(dK, k), upload_bf16(dV, v);
    std::vector<double> ref((size_t)n * width, 0.0);
    for (int i = 0; i < n; ++i)
        for (int h = 0; h < heads; ++h) {
            int keys = start + i + 1;
            std::vector<double> sc(keys);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < keys; ++j) {
                double d = 0;
                for (int c = 0; c < dh; ++c) d += (double)q[(size_t)i * width + h * dh + c] * k[(size_t)j * kvWidth + h / groups * dh + c];
                sc[j] = d / std::sqrt((double)dh);
                mx = std::max(mx, sc[j]);
            }
            for (int j = 0; j < keys; ++j) sum += sc[j] = std::exp(sc[j] - mx);
            for (int j = 0; j < keys; ++j)
                for (int c = 0; c < dh; ++c) ref[(size_t)i * width + h * dh + c] += sc[j] / sum * v[(size_t)j * kvWidth + h / groups * dh + c];
        }
    int chunks = ceil_div(seen, 128);
    int vec = dh % 8 == 0 && al16(dK.p) ? 1 : 0;
    Dev<float> acc((size_t)n * heads * chunks * dh);
    Dev<float2> ml((size_t)n * heads * chunks);
    std::vector<uint16_t> first;  // G = 1's output bits
    for (int g = 1; g <= std::min(8, groups); ++g) {
        if (groups % g != 0) continue;
        CHECK(cudaMemset(dO.p, 0xff, dO.n * sizeof(bf16)));
        CHECK(cudaMemset(acc.p, 0xff, acc.n * sizeof(float)));
        CHECK(cudaMemset(ml.p, 0xff, ml.n * sizeof(float2)));
        KERNEL(decode_partial_kernel(g), dim3(chunks, heads / g, n), 128)(dO.p, chunks > 1 ? acc.p : nullptr,
                                                                          chunks > 1 ? ml.p : nullptr, dQ.p, dK.p, dV.p,
                                                                          start, heads, kvHeads, dh, vec);
        LAUNCHED();
        if (chunks > 1) {
            KERNEL(attn_decode_combine, dim3(heads, n), std::min(128, ceil_div(dh, 32) * 32))(dO.p, acc.p, ml.p, chunks, heads, dh);
            LAUNCHED();
        }
        std::string what = std::string(vec ? "output (16-byte key loads)" : "output (element loads)") + ", G=" + std::to_string(g);
        expect_close(what, download_bf16(dO), ref, 1e-2);
        std::vector<uint16_t> bits(dO.n);
        CHECK(cudaMemcpy(bits.data(), dO.p, bits.size() * 2, cudaMemcpyDeviceToHost));
        if (g == 1) first = bits;
        else expect("G=" + std::to_string(g) + " bit-identical to G=1", bits == first);
    }
}

// CudaRepeatHeads: x [rows, kvHeads·Dh] → [rows, kvHeads·groups·Dh] (head h = x's head h / groups), and the gradient
// (each kv head the fp32 sum of its group's heads in group order, then rounded: bit-exact against the host's same sum).
static void test_repeat_heads(int rows, int kvHeads, int groups, int dh, int shift) {
    std::printf("repeatHeads rows=%d kv=%d groups=%d Dh=%d shift=%d\n", rows, kvHeads, groups, dh, shift);
    const size_t in = (size_t)rows * kvHeads * dh, out = in * groups;
    auto x = random_vec(in, -2, 2, true), dy = random_vec(out, -1, 1, true);
    Dev<bf16> dX(in, shift), dOut(out, shift), dDy(out, shift), dDx(in, shift);
    upload_bf16(dX, x), upload_bf16(dDy, dy);
    std::vector<float> want(out), wantDx(in);
    for (int r = 0; r < rows; ++r)
        for (int h = 0; h < kvHeads * groups; ++h)
            for (int c = 0; c < dh; ++c) want[((size_t)r * kvHeads * groups + h) * dh + c] = x[((size_t)r * kvHeads + h / groups) * dh + c];
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < kvHeads; ++j)
            for (int c = 0; c < dh; ++c) {
                float sum = 0.f;
                for (int g = 0; g < groups; ++g) sum += dy[(((size_t)r * kvHeads + j) * groups + g) * dh + c];
                wantDx[((size_t)r * kvHeads + j) * dh + c] = bf16_round(sum);
            }
    auto blocks = [](size_t n) { return (int)std::max<long long>(1, std::min<long long>(ceil_div((long long)n, 256), 32LL * g_sms)); };
    KERNEL(repeat_heads_bf16, blocks(out), 256)(dOut.p, dX.p, (long long)rows, kvHeads, groups, dh);
    LAUNCHED();
    expect("forward: every head a copy of its key/value head", download_bf16(dOut) == want);
    KERNEL(repeat_heads_bwd_bf16, blocks(in), 256)(dDx.p, dDy.p, (long long)rows, kvHeads, groups, dh);
    LAUNCHED();
    expect("backward: each key/value head the sum of its group, bit for bit", download_bf16(dDx) == wantDx);
}
// CudaBackend.countAbsAbove (paper §3.8's activated FFN outputs): |x| > threshold counted on the bits (NaN never,
// subnormals exactly), threshold < 0 counting every non-NaN value; a u64 counter added to with one atomic per warp.
static void test_count_abs_above(long long n, int shift) {
    std::printf("countAbsAbove n=%lld shift=%d\n", n, shift);
    auto x = random_vec(n, -3, 3, false);
    const float specials[] = {NAN, INFINITY, -INFINITY, 0.f, -0.f, 1e-40f, -1e-40f, 1.5f, -1.5f, 0.5f, -0.5f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials && (long long)i * 7 < n; ++i) x[i * 7] = specials[i];
    std::vector<float> xb(n);
    for (long long i = 0; i < n; ++i) xb[i] = bf16_round(x[i]);
    Dev<float> dF(n, shift);
    Dev<bf16> dB(n, shift);
    Dev<unsigned long long> count(1);
    upload(dF, x), upload_bf16(dB, xb);
    int blocks = (int)std::max<long long>(1, std::min<long long>((n + 2047) / 2048, 8LL * g_sms));
    for (float threshold : {1.5f, 0.f, 1e-40f, 2.99f, -1.f}) {
        uint32_t bits;
        std::memcpy(&bits, &threshold, 4);
        const int limit = threshold < 0 ? -1 : (int)(bits & 0x7fffffffu);  // as CudaBackend.countAbsAbove passes it
        for (int bf : {0, 1}) {
            const std::vector<float>& v = bf ? xb : x;
            unsigned long long want = 0;
            for (float e : v) want += !std::isnan(e) && (threshold < 0 || std::fabs(e) > threshold);
            CHECK(cudaMemset(count.p, 0, 8));
            if (bf) KERNEL(count_abs_above_bf16, blocks, 256)(count.p, dB.p, n, limit);
            else KERNEL(count_abs_above_f32, blocks, 256)(count.p, dF.p, n, limit);
            LAUNCHED();
            unsigned long long got = download(count)[0];
            char what[120];
            std::snprintf(what, sizeof what, "%s |x| > %g: %llu (host %llu)", bf ? "bf16" : "f32", threshold, got, want);
            expect(what, got == want);
        }
    }
}
static void test_swiglu(long long n, int shift) {
    std::printf("swiglu n=%lld shift=%d\n", n, shift);
    auto a = random_vec(n, -6, 6, true), b = random_vec(n, -2, 2, true), dy = random_vec(n, -1, 1, true);
    Dev<bf16> dA(n, shift), dB(n, shift), dY(n, shift), dDy(n, shift), dGa(n, shift), dGb(n, shift);
    upload_bf16(dA, a), upload_bf16(dB, b), upload_bf16(dDy, dy);
    std::vector<double> y(n), ga(n), gb(n);
    for (long long i = 0; i < n; ++i) {
        double s = 1.0 / (1.0 + std::exp(-(double)a[i]));
        y[i] = a[i] * s * b[i];
        ga[i] = dy[i] * b[i] * s * (1 + a[i] * (1 - s));
        gb[i] = dy[i] * a[i] * s;
    }
    KERNEL(swiglu_fwd_bf16, swiglu_blocks(n), 256)(dY.p, dA.p, dB.p, n);
    LAUNCHED();
    expect_close("forward", download_bf16(dY), y, 1e-2);
    KERNEL(swiglu_bwd_bf16, swiglu_blocks(n), 256)(dGa.p, dGb.p, dDy.p, dA.p, dB.p, n);
    LAUNCHED();
    expect_close("backward dGate", download_bf16(dGa), ga, 1e-2);
    expect_close("backward dUp", download_bf16(dGb), gb, 1e-2);
}

// V = vocabulary, S = row stride (≥ V; columns [V, S) are padding: no part of the softmax, gradient exactly 0).
static void test_cross_entropy(int n, int V, int S, int K, int shift, bool badTarget) {
    char tag[112];
    std::snprintf(tag, sizeof tag, "crossEntropyK n=%d V=%d stride=%d K=%d shift=%d%s", n, V, S, K, shift,
                  badTarget ? " bad-target" : "");
    std::printf("%s\n", tag);
    const float gradScale = 0.37f;
    size_t ns = (size_t)n * S;
    auto logits = random_vec(ns, -8, 8, true);
    for (int i = 0; i < n; ++i)  // large padding values: they would dominate the softmax if they were included
        for (int j = V; j < S; ++j) logits[(size_t)i * S + j] = 60.f;
    std::vector<int> t((size_t)n * K);
    std::uniform_int_distribution<int> pick(0, V - 1);
    for (auto& x : t) x = pick(g_rng);
    if (K >= 3) t[1] = t[0], t[2] = t[0];  // a target repeated three times in row 0
    t[(size_t)(n - 1) * K] = V - 1;            // last column (possibly in the scalar tail)
    if (badTarget) t[K] = V;                   // row 1 invalid (a padding column)
    Dev<bf16> dL(ns, shift);
    Dev<int> dT(t.size(), shift);
    Dev<float> dLoss(n, shift);
    upload_bf16(dL, logits), upload(dT, t);
    std::vector<double> loss(n), grad(ns, 0.0);
    for (int i = 0; i < n; ++i) {
        const float* row = &logits[(size_t)i * S];
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; ++j) mx = std::max(mx, (double)row[j]);
        for (int j = 0; j < V; ++j) s += std::exp(row[j] - mx);
        double lse = mx + std::log(s), mean = 0;
        bool bad = false;
        for (int k = 0; k < K; ++k) {
            int tk = t[(size_t)i * K + k];
            if (tk < 0 || tk >= V) bad = true;
            else mean += row[tk];
        }
        loss[i] = bad ? NAN : lse - mean / K;
        for (int j = 0; j < V; ++j) grad[(size_t)i * S + j] = gradScale * std::exp(row[j] - lse);
        for (int k = 0; k < K; ++k) {
            int tk = t[(size_t)i * K + k];
            if (tk >= 0 && tk < V) grad[(size_t)i * S + tk] -= (double)gradScale / K;
        }
    }
    launch_ce(dLoss.p, dL.p, dT.p, n, S, V, K, 0.f);
    expect_close("loss (gradScale 0)", download(dLoss), loss, 1e-5);
    auto untouched = download_bf16(dL);
    expect("gradScale 0 leaves logits untouched", std::memcmp(untouched.data(), logits.data(), ns * sizeof(float)) == 0);
    launch_ce(dLoss.p, dL.p, dT.p, n, S, V, K, gradScale);
    expect_close("loss (with gradient)", download(dLoss), loss, 1e-5);
    auto gOut = download_bf16(dL);
    expect_close("gradient in place", gOut, grad, 1e-2);
    bool padZero = true;
    for (int i = 0; i < n; ++i)
        for (int j = V; j < S; ++j) padZero &= gOut[(size_t)i * S + j] == 0.f && !std::signbit(gOut[(size_t)i * S + j]);
    expect("padding columns hold exactly +0", padZero);
    if (K >= 3) {
        size_t o = (size_t)t[0];
        double want = grad[o];
        expect("triplicated target gets −3/K: " + std::to_string(gOut[o]) + " vs " + std::to_string(want),
               std::fabs(gOut[o] - want) <= 1e-2 * std::fabs(want) + 1e-6);
    }
    // The launcher picks 1024-thread blocks for wide rows: run that block size on these shapes too.
    upload_bf16(dL, logits);
    launch_ce(dLoss.p, dL.p, dT.p, n, S, V, K, gradScale, 1024);
    expect_close("loss, 1024-thread blocks", download(dLoss), loss, 1e-5);
    expect_close("gradient, 1024-thread blocks", download_bf16(dL), grad, 1e-2);
}

static void test_adamw(long long n, int shift, bool withCompute) {
    std::printf("adamW n=%lld shift=%d compute=%s\n", n, shift, withCompute ? "bf16" : "null");
    AdamHyper h{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 7, 0.5f};
    auto w = random_vec(n, -1, 1, false), g = random_vec(n, -2, 2, false), m = random_vec(n, -0.1f, 0.1f, false);
    auto v = random_vec(n, 0, 0.01f, false);
    Dev<float> dW(n, shift), dG(n, shift), dM(n, shift), dV(n, shift);
    Dev<bf16> dC(n, shift);
    upload(dW, w), upload(dG, g), upload(dM, m), upload(dV, v);
    std::vector<double> wr(n), mr(n), vr(n), cr(n);
    double bc1 = 1 - std::pow(0.9, 7), bc2 = 1 - std::pow(0.95, 7);
    for (long long i = 0; i < n; ++i) {
        double gi = (double)g[i] * h.gradScale;
        mr[i] = 0.9 * m[i] + 0.1 * gi;
        vr[i] = 0.95 * v[i] + 0.05 * gi * gi;
        double wi = w[i] * (1 - (double)h.lr * h.wd);
        wr[i] = wi - h.lr / bc1 * mr[i] / (std::sqrt(vr[i] / bc2) + h.eps);
        cr[i] = wr[i];
    }
    launch_adamw(dW.p, dG.p, dM.p, dV.p, withCompute ? dC.p : nullptr, n, h);
    expect_close("master", download(dW), wr, 1e-5);
    expect_close("m", download(dM), mr, 1e-5);
    expect_close("v", download(dV), vr, 1e-5);
    if (withCompute) expect_close("bf16 compute copy", download_bf16(dC), cr, 1e-2);
}

static void test_sumsq() {
    std::printf("sumOfSquares (f32 aligned, f32 shifted, bf16, empty)\n");
    std::vector<long long> sizes{1000003, 17, 777, 0};
    auto a = random_vec(sizes[0], -1, 1, false), b = random_vec(sizes[1], -3, 3, false);
    auto c = random_vec(sizes[2], -2, 2, true);
    Dev<float> dA(sizes[0]), dB(sizes[1], 1), dOut(1);
    Dev<bf16> dC(sizes[2], 1);
    upload(dA, a), upload(dB, b), upload_bf16(dC, c);
    double ref = 0;
    for (float x : a) ref += (double)x * x;
    for (float x : b) ref += (double)x * x;
    for (float x : c) ref += (double)x * x;
    int ba = sumsq_blocks(sizes[0]), bb = sumsq_blocks(sizes[1]), bc = sumsq_blocks(sizes[2]);
    Dev<float> partial(ba + bb + bc);
    auto run = [&] {
        KERNEL(adamw_sumsq_partial_f32, ba, 256)(partial.p, 0, dA.p, sizes[0]);
        KERNEL(adamw_sumsq_partial_f32, bb, 256)(partial.p, ba, dB.p, sizes[1]);
        KERNEL(adamw_sumsq_partial_bf16, bc, 256)(partial.p, ba + bb, dC.p, sizes[2]);
        KERNEL(adamw_sumsq_final, 1, 1024)(dOut.p, partial.p, ba + bb + bc);
        LAUNCHED();
        return download(dOut)[0];
    };
    float first = run(), second = run();
    expect_close("Σx² over three tensors", {first}, {ref}, 1e-5);
    expect("bit-identical on rerun", std::memcmp(&first, &second, 4) == 0);
    KERNEL(adamw_sumsq_final, 1, 1024)(dOut.p, partial.p, 0);
    LAUNCHED();
    expect("empty list gives 0", download(dOut)[0] == 0.f);
}

#ifdef PATCHCORE_EMU
// The emulator itself: static shared memory starts every block poisoned, as undefined as a GPU leaves it (where these
// kernels would read garbage: they run on the emulator only), and keeps what the block writes for the rest of the block.
// A device function's variable, passed twice by each thread of a block: n is the poison (-1) on the first pass, then
// what thread 0 wrote.
__device__ int emu_shared_step() {
    STATIC_SHARED(int, n);
    const int seen = n;
    __syncthreads();
    if (threadIdx.x == 0) n = seen + 1;
    __syncthreads();
    return seen;
}
__global__ void emu_static_shared_poison(unsigned* firstRead, int* steps) {
    STATIC_SHARED(float, s, [64]);
    firstRead[blockIdx.x * 64 + threadIdx.x] = __float_as_uint(s[threadIdx.x]);  // before any thread of the block writes
    __syncthreads();
    s[threadIdx.x] = (float)blockIdx.x;  // what a later block on this worker must not see
    const int first = emu_shared_step(), second = emu_shared_step();
    if (threadIdx.x == 0) steps[2 * blockIdx.x] = first, steps[2 * blockIdx.x + 1] = second;
}

static void test_emu_static_shared() {
    std::printf("emulator: static shared memory (STATIC_SHARED) at a block's start\n");
    const int blocks = 64;  // more than the workers, so each of several workers runs many blocks one after another
    Dev<unsigned> firstRead(blocks * 64);
    Dev<int> steps(2 * blocks);
    for (int launch = 0; launch < 2; ++launch) {  // the second on workers that may keep the first one's variables
        KERNEL(emu_static_shared_poison, blocks, 64)(firstRead.p, steps.p);
        LAUNCHED();
        const auto reads = download(firstRead);
        const auto counts = download(steps);
        bool poisoned = true, kept = true;
        for (unsigned r : reads) poisoned &= r == 0xffffffffu;
        for (int b = 0; b < blocks; ++b) poisoned &= counts[2 * b] == -1, kept &= counts[2 * b + 1] == 0;
        const std::string run = launch ? " (second launch)" : "";
        expect("every block reads 0xFF bytes before writing (NaN, -1), not a previous block's values" + run, poisoned);
        expect("a second pass through the declaration keeps what the block wrote" + run, kept);
    }
}

// A write `offset` elements past the thread's own element of a static shared array (main's --emu-overrun and
// --emu-underrun, CudaEmulatorTest): with offset ±1 the first or last thread writes just outside the array, which the
// emulator must report naming `guarded` when the block ends.
__global__ void emu_static_shared_overrun(float* out, int offset) {
    STATIC_SHARED(float, guarded, [64]);
    float* const p = guarded;  // through a pointer: the out-of-bounds index is the point, not for g++ to reason about
    p[(int)threadIdx.x + offset] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = guarded[threadIdx.x];
}

// Returns only if the emulator let the out-of-bounds write pass (a failure); the expected outcome is its error.
static int emu_static_shared_overrun_mode(int offset) {
    Dev<float> out(64);
    KERNEL(emu_static_shared_overrun, 4, 64)(out.p, 0);
    LAUNCHED();
    std::printf("emulator: static shared memory guards: the in-bounds launch passed; now one %s the array\n",
                offset > 0 ? "element past the end of" : "element before the start of");
    std::fflush(stdout);
    KERNEL(emu_static_shared_overrun, 4, 64)(out.p, offset);
    LAUNCHED();
    std::printf("FAIL: the emulator did not report the write outside `guarded`\n");
    return 1;
}
#endif

// ------------------------------------------------------------------ bandwidth

template <typename F>
static float median_ms(F launch, int reps = 20) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) launch();
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        CHECK(cudaEventRecord(a));
        launch();
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    LAUNCHED();
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[t.size() / 2];
}

static void row(const char* name, double bytes, float ms) {
    std::printf("  %-44s %9.3f ms %8.1f GB/s\n", name, ms, bytes / (ms * 1e-3) / 1e9);
}

static void bench() {
    std::printf("\nbandwidth (median of 20 after warm-up; bytes = compulsory DRAM traffic, see docs/kernels.md)\n");
    {
        size_t bytes = 1ull << 30;
        Dev<char> s(bytes), d(bytes);
        row("cudaMemcpy D2D 1 GiB (read + write)", 2.0 * bytes,
            median_ms([&] { CHECK(cudaMemcpyAsync(d.p, s.p, bytes, cudaMemcpyDeviceToDevice)); }));
    }
    const int n = 16384, d = 2048;
    size_t nd = (size_t)n * d;
    {
        Dev<bf16> x(nd), b(nd), g(d), y(nd), s(nd), dy(nd), dx(nd);
        Dev<float> r(n), dg(d);
        CHECK(cudaMemset(x.p, 0, nd * 2)); CHECK(cudaMemset(b.p, 0, nd * 2)); CHECK(cudaMemset(g.p, 0, d * 2));
        CHECK(cudaMemset(dy.p, 0, nd * 2)); CHECK(cudaMemset(dg.p, 0, d * 4));
        row("rmsnorm fwd 16384x2048", nd * 4.0 + n * 4.0, median_ms([&] { launch_rmsnorm_fwd(y.p, r.p, x.p, g.p, n, d, 1e-5f); }));
        row("rmsnorm add fwd 16384x2048", nd * 8.0 + n * 4.0,
            median_ms([&] { launch_rmsnorm_add(s.p, y.p, r.p, x.p, b.p, g.p, n, d, 1e-5f); }));
        RmsBwdShape sh = rms_bwd_shape(n, d, true);
        Dev<float> partial((size_t)sh.blocks * d);
        row("rmsnorm bwd 16384x2048 (+gain reduce)", nd * 6.0 + n * 4.0 + sh.blocks * d * 8.0,
            median_ms([&] { launch_rmsnorm_bwd(dx.p, partial.p, dg.p, dy.p, x.p, g.p, r.p, n, d); }));
        row("rope fwd 16384x(16x128)", nd * 4.0, median_ms([&] { launch_rope(false, y.p, x.p, n, 2048, 16, 128, 10000.f); }));
        row("rope bwd 16384x(16x128)", nd * 4.0, median_ms([&] { launch_rope(true, y.p, x.p, n, 2048, 16, 128, 10000.f); }));
        row("rope fwd 8192x(16x64) (370M)", 8192.0 * 1024 * 4, median_ms([&] { launch_rope(false, y.p, x.p, 8192, 2048, 16, 64, 10000.f); }));
    }
    {
        long long m = 16384LL * 5504;
        Dev<bf16> a(m), b(m), y(m), dy(m), da(m), db(m);
        CHECK(cudaMemset(a.p, 0, m * 2)); CHECK(cudaMemset(b.p, 0, m * 2)); CHECK(cudaMemset(dy.p, 0, m * 2));
        row("swiglu fwd 16384x5504", m * 6.0, median_ms([&] {
                KERNEL(swiglu_fwd_bf16, swiglu_blocks(m), 256)(y.p, a.p, b.p, m);
            }));
        row("swiglu bwd 16384x5504", m * 10.0, median_ms([&] {
                KERNEL(swiglu_bwd_bf16, swiglu_blocks(m), 256)(da.p, db.p, dy.p, a.p, b.p, m);
            }));
    }
    {
        const int rows = 8192, V = 32000, K = 4;
        size_t nv = (size_t)rows * V;
        Dev<bf16> l(nv);
        Dev<int> t((size_t)rows * K);
        Dev<float> loss(rows);
        CHECK(cudaMemset(l.p, 0, nv * 2)); CHECK(cudaMemset(t.p, 0, (size_t)rows * K * 4));
        // With gradScale 1 the logits become the gradient each run; the values stay bounded (softmax − onehot).
        row("crossEntropyK 8192x32000 K=4, loss only", nv * 2.0, median_ms([&] { launch_ce(loss.p, l.p, t.p, rows, V, V, K, 0.f); }));
        row("crossEntropyK 8192x32000 K=4, loss+grad", nv * 4.0, median_ms([&] { launch_ce(loss.p, l.p, t.p, rows, V, V, K, 1.f); }));
    }
    for (int stride : {50257, 50304}) {
        const int rows = 8192, V = 50257, K = 1;
        size_t ns = (size_t)rows * stride;
        Dev<bf16> l(ns);
        Dev<int> t((size_t)rows * K);
        Dev<float> loss(rows);
        CHECK(cudaMemset(l.p, 0, ns * 2)); CHECK(cudaMemset(t.p, 0, (size_t)rows * K * 4));
        for (int threads : {512, 1024}) {
            char name[80];
            std::snprintf(name, sizeof name, "crossEntropyK 8192x%d V=50257 K=1 loss+grad, %d thr", stride, threads);
            row(name, ns * 4.0, median_ms([&] { launch_ce(loss.p, l.p, t.p, rows, stride, V, K, 1.f, threads); }));
        }
    }
    {
        long long m = 100000000;
        Dev<float> w(m), g(m), mm(m), v(m);
        Dev<bf16> c(m);
        CHECK(cudaMemset(w.p, 0, m * 4)); CHECK(cudaMemset(g.p, 0, m * 4)); CHECK(cudaMemset(mm.p, 0, m * 4));
        CHECK(cudaMemset(v.p, 0, m * 4));
        AdamHyper h{1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 10, 1.f};
        row("adamW 100M params (+bf16 copy)", m * 30.0, median_ms([&] { launch_adamw(w.p, g.p, mm.p, v.p, c.p, m, h); }));
        int blocks = sumsq_blocks(m);
        Dev<float> partial(blocks), out(1);
        row("sumOfSquares 100M f32", m * 4.0, median_ms([&] {
                KERNEL(adamw_sumsq_partial_f32, blocks, 256)(partial.p, 0, g.p, m);
                KERNEL(adamw_sumsq_final, 1, 1024)(out.p, partial.p, blocks);
            }));
    }
}

int main(int argc, char** argv) {
    bool doBench = !(argc > 1 && std::strcmp(argv[1], "--no-bench") == 0);
#ifdef PATCHCORE_EMU
    // The emulator's own check of static shared memory bounds (CudaEmulatorTest): these runs must end in its error.
    if (argc > 1 && std::strcmp(argv[1], "--emu-overrun") == 0) return emu_static_shared_overrun_mode(1);
    if (argc > 1 && std::strcmp(argv[1], "--emu-underrun") == 0) return emu_static_shared_overrun_mode(-1);
#endif
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    g_sms = prop.multiProcessorCount;
    g_cc_major = prop.major;
    if (std::getenv("KERNELS_TEST_SKIP_TEAMS") != nullptr) for (int v = 3; v <= 8; ++v) g_skip_bwd[v] = true;
    if (const char* list = std::getenv("KERNELS_TEST_SKIP_RMSNORMBWD"))
        for (const char* c = list; *c; ++c)
            if (*c >= '3' && *c <= '8') g_skip_bwd[*c - '0'] = true;
    for (int v = 3; v <= 8; ++v)
        if (g_skip_bwd[v]) std::printf("RMSNorm backward variant %d left out (KERNELS_TEST_SKIP_TEAMS / _SKIP_RMSNORMBWD)\n", v);
    std::printf("device: %s, %d SMs\n", prop.name, g_sms);

    test_rmsnorm(37, 1024, 0);
    test_rmsnorm(8192, 1024, 0);  // 370M shape: rows4, ~4 rows per warp
    test_rmsnorm(65536, 1024, 0);  // ~31 batches per team of the team kernels: the bulk kernel's ring wraps 10 times
    test_rmsnorm(1001, 1536, 0);  // rows8 with lanes whose last groups are empty
    test_rmsnorm(50, 136, 0);     // rows4 with most groups empty
    test_rmsnorm(300, 2048, 0);
    // Team kernels (backward variants 3-8): teams of 3, 4 (last warp part-used), 5 and 7 warps; tails of 1-3 rows;
    // fewer rows than one block's teams take in one batch.
    test_rmsnorm(1003, 768, 0);
    test_rmsnorm(1002, 1000, 0);
    test_rmsnorm(41, 1280, 0);
    test_rmsnorm(29, 1792, 0);
    test_rmsnorm(3, 256, 0);
    test_rmsnorm(1, 8, 0);
    test_rmsnorm(19, 100, 0);   // width not a multiple of 8: scalar path
    test_rmsnorm(300, 100, 0);  // the same with more rows than blocks: the block-per-row kernel loops
    test_rmsnorm(23, 256, 1);   // misaligned base pointers: scalar path
    test_rmsnorm(7, 2560, 0);   // widest row the forward keeps in registers
    test_rmsnorm(6, 2568, 0);   // forward: vector two-pass path; backward: registers, 2 groups per thread
    test_rmsnorm(5, 4096, 0);   // more columns than threads × 8
    test_rmsnorm(3, 4104, 0);   // backward: vector path without the register cache
    test_rope(3, 16, 4, 64, 0);
    test_rope(2, 33, 2, 20, 0);  // half = 10: scalar path
    test_rope(2, 17, 3, 32, 1);  // misaligned: scalar path
    test_rope(1, 2048, 2, 128, 0);  // long positions: angle accuracy
    test_rope(3, 7, 5, 16, 0);      // Dh/2 = 8 < 32: most lanes compute no angle; 21 rows: last block part empty
    test_rope(2, 16, 3, 64, 0);     // 12 items per row: lanes without an item
    test_rope(2, 9, 40, 64, 0);     // 160 items per row: two chunks of the row per warp
    test_rope(2, 5, 32, 80, 0);     // 2.7B heads: Dh/2 = 40, 5 groups, 160 items, table of 40 pairs
    test_rope(1, 4, 2, 1536, 0);    // Dh/2 = 768: the largest per-warp table
    test_rope(1, 3, 1, 1552, 0);    // Dh/2 = 776 > 768: scalar path
    test_rope(1, 2 * 8 * 132 * 32 + 8, 1, 32, 0);  // more rows than the grid-stride cap: warps loop over rows
    test_rope(4, 2048, 16, 64, 0);  // the 370M shape
    test_rope(1, 3, 16, 64, 0, 2045);  // generation: positions from 2045 (DecodingBackend.ropeAt)
    test_rope(1, 1, 4, 20, 0, 100000);  // one row far out, scalar path
    test_rope(2, 300, 4, 64, 0, 0, true);  // scaled frequencies from a table: vector path
    test_rope(2, 33, 2, 20, 0, 7, true);   // and the scalar path
    for (int dh : {20, 32, 64, 80, 96, 128, 160, 256}) {
        test_decode(300, 0, 1, 3, dh, 0);     // one key
        test_decode(300, 127, 1, 3, dh, 0);   // 128 keys: one chunk, written directly
        test_decode(300, 128, 1, 3, dh, 0);   // 129 keys: two chunks, merged
        test_decode(300, 200, 7, 3, dh, 0);   // several queries, each its own causal limit
        test_decode(300, 100, 60, 3, dh, 0);  // the first queries see no key of the last chunk (a chunk with none)
        test_decode(300, 299, 1, 3, dh, 1);   // the whole cache, misaligned: element loads
    }
    test_decode(300, 250, 3, 4, 64, 0, 8.f);   // peaked scores
    test_decode(300, 250, 3, 2, 128, 0, 8.f);
    test_decode(2048, 2047, 1, 16, 64, 0);   // the 370M shape at the end of its context
    test_decode(2048, 1000, 3, 32, 80, 0);   // 2.7B heads
    test_decode(300, 200, 7, 6, 64, 0, 1.f, 2);    // grouped-query: 3 query heads per key/value head
    test_decode(300, 128, 1, 4, 20, 1, 1.f, 1);    // one key/value head for all, element loads
    test_decode(2048, 2047, 1, 32, 64, 0, 1.f, 8);  // LLaMA-3.2-1B's heads at the end of a 2048 context
    // Grouped-query, each group size 2 … 8 (and 12, 16: blocks of fewer heads than the group): odd contexts, start > 0,
    // one chunk and several, queries whose last chunk is empty, element loads, every head dim with groups of 8.
    for (int dh : {20, 32, 64, 80, 96, 128, 160, 256}) test_decode(300, 200, 7, 8, dh, 0, 1.f, 1);  // 201 … 207 keys
    test_decode(300, 0, 1, 8, 64, 0, 1.f, 1);       // one key
    test_decode(300, 126, 1, 8, 32, 0, 1.f, 1);     // 127 keys: one chunk
    test_decode(300, 100, 60, 8, 64, 0, 1.f, 1);    // the first queries see no key of the last chunk
    test_decode(300, 299, 1, 8, 256, 1, 1.f, 1);    // the whole cache at Dh 256, misaligned: element loads
    test_decode(300, 250, 3, 16, 128, 0, 8.f, 2);   // peaked scores, 2 groups of 8
    test_decode(700, 654, 3, 4, 64, 0, 1.f, 2);     // groups of 2: 655 … 657 keys, 6 chunks
    test_decode(300, 130, 3, 6, 20, 0, 1.f, 2);     // groups of 3, 131 … 133 keys
    test_decode(300, 77, 2, 8, 96, 0, 1.f, 2);      // groups of 4, 78 / 79 keys: one chunk
    test_decode(300, 160, 2, 10, 80, 1, 1.f, 2);    // groups of 5, misaligned
    test_decode(300, 200, 1, 12, 64, 0, 1.f, 2);    // groups of 6
    test_decode(300, 140, 2, 14, 32, 0, 1.f, 2);    // groups of 7
    test_decode(300, 170, 2, 12, 20, 0, 1.f, 1);    // a group of 12: G = 2, 3, 4, 6
    test_decode(300, 170, 2, 16, 64, 0, 1.f, 1);    // a group of 16: G = 2, 4, 8
    test_repeat_heads(37, 2, 4, 64, 0);
    test_repeat_heads(5, 3, 2, 20, 1);  // misaligned
    test_repeat_heads(300, 8, 4, 64, 0);  // LLaMA-3.2-1B's heads: 8 key/value heads, 4 query heads each
    test_repeat_heads(9, 1, 1, 8, 0);     // groups 1: a copy
    test_count_abs_above(1000003, 0);
    test_count_abs_above(77, 1);
    test_swiglu(1000003, 0);
    test_swiglu(4099, 1);
    test_cross_entropy(16, 32000, 32000, 4, 0, false);
    test_cross_entropy(9, 257, 257, 1, 0, false);  // odd V: misaligned rows, head + body + tail
    test_cross_entropy(7, 259, 259, 3, 1, true);   // misaligned base, invalid target → NaN loss
    test_cross_entropy(3, 5, 5, 2, 0, false);      // V smaller than one 16-byte group
    test_cross_entropy(4, 200019, 200019, 8, 0, false);
    test_cross_entropy(6, 50257, 50304, 4, 0, false);  // vocabulary padded to a multiple of 64
    test_cross_entropy(5, 50257, 50257, 2, 1, false);  // raw odd stride, misaligned base
    test_cross_entropy(4, 250, 320, 3, 0, true);       // padding wider than one 16-byte group; bad target = padding
    test_cross_entropy(3, 3, 64, 1, 1, false);         // vocabulary inside the first group
    test_adamw(100003, 0, true);
    test_adamw(1001, 1, true);
    test_adamw(4096, 0, false);
    test_sumsq();
#ifdef PATCHCORE_EMU
    test_emu_static_shared();
#endif
    CHECK(cudaDeviceSynchronize());
    std::printf("\n%s: %d failure(s)\n", g_failures ? "FAILED" : "ALL PASSED", g_failures);
    if (doBench && !g_failures) bench();
    return g_failures ? 1 : 0;
}
