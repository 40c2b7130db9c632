// Standalone GPU check of src/main/cuda/flash_attention.cu (not part of the Maven build): forward and backward
// at several (B, H, T, D) against a float64 host reference, outputs poisoned with NaN first; then a timing
// table at T = 2048. Build and run from the repository root:
//
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/fa_test src/test/cuda/flash_attention_test.cu && /tmp/fa_test
//
// Every kernel generation is checked and timed: flash_attn_fwd/bwd_*, the pipelined flash_attn_fwd2/bwd2_* and the
// 128-key backward flash_attn_bwd3_*.
// Exit code 0 only if every comparison passes (relative L2 error < 1e-2 for bf16 tensors, |Δlse| < 2e-3).
// "/tmp/fa_test check" runs only the comparisons, "/tmp/fa_test bench" only the timings.
//
// Without a GPU: `bash src/test/cuda/emu/run.sh BUILD_DIR flash_attention_test` builds it with g++ against the CPU
// emulator (src/test/cuda/emu) and runs the comparisons on smaller problems (every kernel, every head dimension, tails
// of every tile size); the Maven suite does, in CudaEmulatorTest. The sm_90 branches (red.global.add.v2/v4) are
// compiled only by nvcc, so the emulator checks their atomicAdd twins.

#include "../../main/cuda/flash_attention.cu"

#include "attention_reference.h"

#include <cstring>
#include <string>

struct FwdVariant {
    int warps, mt;  // warps per CTA, 16-row blocks per warp
};
static const FwdVariant FWD_VARIANTS[] = {{4, 1}, {8, 1}, {4, 2}};
static bool has_variant(int D, FwdVariant f) { return f.mt == 1 || D == 64; }

// Kernel launch with the exact grids CudaFlashAttention.java uses.
static void run_forward(const Problem& p, FwdVariant f, const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse) {
    const int rowsPerCta = 16 * f.warps * f.mt;
    dim3 grid((p.T + rowsPerCta - 1) / rowsPerCta, p.B * p.H);
    dim3 block(32 * f.warps);
#define FWD_CASE(D_, W_, M_) \
    if (p.D == D_ && f.warps == W_ && f.mt == M_) KERNEL(flash_attn_fwd_d##D_##_w##W_##_m##M_, grid, block)(q, k, v, o, lse, p.T, p.H);
    FWD_CASE(64, 4, 1) FWD_CASE(64, 8, 1) FWD_CASE(64, 4, 2) FWD_CASE(80, 4, 1) FWD_CASE(80, 8, 1)
    FWD_CASE(96, 4, 1) FWD_CASE(96, 8, 1) FWD_CASE(128, 4, 1) FWD_CASE(128, 8, 1)
#undef FWD_CASE
    CHECK(cudaGetLastError());
}

// Pipelined kernels (fwd2 / bwd2): grid (B·H, tiles), dynamic shared memory, as CudaFlashAttention.java launches them.
struct Fwd2Variant {
    int D, mt, bc, qreg;
};
static const Fwd2Variant FWD2_VARIANTS[] = {{64, 2, 64, 1}, {64, 2, 64, 0}, {80, 2, 64, 0},
                                            {96, 2, 48, 0}, {96, 2, 32, 0}, {128, 2, 32, 0}};
struct Bwd2Variant {
    int D, bq, vreg;
};
static const Bwd2Variant BWD2_VARIANTS[] = {{64, 64, 1}, {64, 64, 0}, {80, 64, 0},
                                            {96, 32, 1}, {96, 32, 0}, {128, 32, 0}};
// bwd3 variants have the same parameters (head dim, query tile, V in registers); 128 keys and 256 threads per CTA.
static const Bwd2Variant BWD3_VARIANTS[] = {{64, 64, 1}, {64, 64, 0}, {80, 64, 0},
                                            {96, 32, 1}, {96, 32, 0}, {128, 32, 0}};

static void run_forward2(const Problem& p, Fwd2Variant f, const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse) {
    dim3 grid(p.B * p.H, (p.T + 64 * f.mt - 1) / (64 * f.mt)), block(128);
#define FWD2_CASE(D_, M_, N_, Q_)                                                                                  \
    if (f.D == D_ && f.mt == M_ && f.bc == N_ && f.qreg == Q_)                                                     \
        launch_dynamic(flash_attn_fwd2_d##D_##_m##M_##_n##N_##_q##Q_, grid, block,                                 \
                       flash::Fwd2Config<D_, M_, N_>::SMEM_BYTES, q, k, v, o, lse, p.T, p.H);
    FWD2_CASE(64, 2, 64, 1) FWD2_CASE(64, 2, 64, 0) FWD2_CASE(80, 2, 64, 0) FWD2_CASE(96, 2, 48, 0)
    FWD2_CASE(96, 2, 32, 0) FWD2_CASE(128, 2, 32, 0)
#undef FWD2_CASE
}

static void run_backward2(const Problem& p, Bwd2Variant v2, const bf16* dO, const bf16* q, const bf16* k, const bf16* v,
                          const bf16* o, const float* lse, float* rowDot, float* dqAcc, bf16* dq, bf16* dk, bf16* dv,
                          int sms) {
    const long pairs = p.rows() * p.H;
    dim3 prepGrid(static_cast<unsigned>((pairs + 7) / 8)), prepBlock(256);
    dim3 grid(p.B * p.H, (p.T + 63) / 64), block(128);
#define BWD2_CASE(D_, Q_, V_)                                                                                      \
    if (v2.D == D_ && v2.bq == Q_ && v2.vreg == V_) {                                                              \
        KERNEL(flash_attn_bwd_prep_d##D_, prepGrid, prepBlock)(dO, o, rowDot, dqAcc, static_cast<int>(p.rows()), p.T, p.H); \
        CHECK(cudaGetLastError());                                                                               \
        launch_dynamic(flash_attn_bwd2_d##D_##_q##Q_##_v##V_, grid, block,                                        \
                       flash::Bwd2Config<D_, Q_, V_ != 0>::SMEM_BYTES, q, k, v, dO, lse,                          \
                       static_cast<const float*>(rowDot), dqAcc, dk, dv, p.T, p.H);                              \
    }
    BWD2_CASE(64, 64, 1) BWD2_CASE(64, 64, 0) BWD2_CASE(80, 64, 0) BWD2_CASE(96, 32, 1) BWD2_CASE(96, 32, 0)
    BWD2_CASE(128, 32, 0)
#undef BWD2_CASE
    const long n = p.n();
    const int blocks = static_cast<int>(std::min<long>((n + 255) / 256, 16L * sms));
    KERNEL(flash_attn_dq_convert, blocks, 256)(dqAcc, dq, n, 1.f / std::sqrt(static_cast<float>(p.D)));
    CHECK(cudaGetLastError());
}

static void run_backward3(const Problem& p, Bwd2Variant v3, const bf16* dO, const bf16* q, const bf16* k, const bf16* v,
                          const bf16* o, const float* lse, float* rowDot, float* dqAcc, bf16* dq, bf16* dk, bf16* dv,
                          int sms) {
    const long pairs = p.rows() * p.H;
    dim3 prepGrid(static_cast<unsigned>((pairs + 7) / 8)), prepBlock(256);
    dim3 grid(p.B * p.H, (p.T + 127) / 128), block(256);
#define BWD3_CASE(D_, Q_, V_)                                                                                      \
    if (v3.D == D_ && v3.bq == Q_ && v3.vreg == V_) {                                                              \
        KERNEL(flash_attn_bwd_prep_d##D_, prepGrid, prepBlock)(dO, o, rowDot, dqAcc, static_cast<int>(p.rows()), p.T, p.H); \
        CHECK(cudaGetLastError());                                                                               \
        launch_dynamic(flash_attn_bwd3_d##D_##_q##Q_##_v##V_, grid, block,                                        \
                       flash::Bwd3Config<D_, Q_, V_ != 0>::SMEM_BYTES, q, k, v, dO, lse,                          \
                       static_cast<const float*>(rowDot), dqAcc, dk, dv, p.T, p.H);                              \
    }
    BWD3_CASE(64, 64, 1) BWD3_CASE(64, 64, 0) BWD3_CASE(80, 64, 0) BWD3_CASE(96, 32, 1) BWD3_CASE(96, 32, 0)
    BWD3_CASE(128, 32, 0)
#undef BWD3_CASE
    const long n = p.n();
    const int blocks = static_cast<int>(std::min<long>((n + 255) / 256, 16L * sms));
    KERNEL(flash_attn_dq_convert, blocks, 256)(dqAcc, dq, n, 1.f / std::sqrt(static_cast<float>(p.D)));
    CHECK(cudaGetLastError());
}

static void run_backward(const Problem& p, const bf16* dO, const bf16* q, const bf16* k, const bf16* v, const bf16* o,
                         const float* lse, float* rowDot, float* dqAcc, bf16* dq, bf16* dk, bf16* dv, int sms) {
    const long pairs = p.rows() * p.H;
    dim3 prepGrid(static_cast<unsigned>((pairs + 7) / 8)), prepBlock(256);
    dim3 grid((p.T + 63) / 64, p.B * p.H), block(128);
#define BWD_CASE(D_)                                                                                           \
    if (p.D == D_) {                                                                                          \
        KERNEL(flash_attn_bwd_prep_d##D_, prepGrid, prepBlock)(dO, o, rowDot, dqAcc, static_cast<int>(p.rows()), p.T, p.H); \
        CHECK(cudaGetLastError());                                                                            \
        KERNEL(flash_attn_bwd_d##D_, grid, block)(q, k, v, dO, lse, rowDot, dqAcc, dk, dv, p.T, p.H);               \
        CHECK(cudaGetLastError());                                                                            \
    }
    BWD_CASE(64) BWD_CASE(80) BWD_CASE(96) BWD_CASE(128)
#undef BWD_CASE
    const long n = p.n();
    const int blocks = static_cast<int>(std::min<long>((n + 255) / 256, 16L * sms));
    KERNEL(flash_attn_dq_convert, blocks, 256)(dqAcc, dq, n, 1.f / std::sqrt(static_cast<float>(p.D)));
    CHECK(cudaGetLastError());
}

static bool check(const Problem& p, int sms, std::mt19937& rng) {
    auto q = random_bf16(p.n(), 2.f, rng), k = random_bf16(p.n(), 2.f, rng);
    auto v = random_bf16(p.n(), 1.f, rng), dO = random_bf16(p.n(), 1.f, rng);
    Reference ref = reference(p, to_double(q), to_double(k), to_double(v), to_double(dO));
    bf16 *dq_ = device_copy(q), *dk_ = device_copy(k), *dv_ = device_copy(v), *ddO = device_copy(dO);
    bool ok = true;
    char name[96];
    for (FwdVariant f : FWD_VARIANTS) {
        if (!has_variant(p.D, f)) continue;
        bf16* o = device_poisoned<bf16>(p.n());
        float* lse = device_poisoned<float>(p.nStat());
        run_forward(p, f, dq_, dk_, dv_, o, lse);
        CHECK(cudaDeviceSynchronize());
        Error eo = compare(host_copy(o, p.n()), ref.out), el = compare(host_copy(lse, p.nStat()), ref.lse);
        const bool pass = forward_passes(eo, el);
        std::snprintf(name, sizeof name, "fwd w%d m%d B=%d H=%d T=%d D=%d", f.warps, f.mt, p.B, p.H, p.T, p.D);
        std::printf("%-36s out rel %.2e max %.2e | lse max %.2e  %s\n", name, eo.rel, eo.maxAbs, el.maxAbs,
                    pass ? "ok" : "FAIL");
        ok &= pass;
        if (f.warps == 4 && f.mt == 1) {  // backward from the forward's own out and lse, as training does
            float *rowDot = device_poisoned<float>(p.nStat()), *acc = device_poisoned<float>(p.n());
            bf16 *gq = device_poisoned<bf16>(p.n()), *gk = device_poisoned<bf16>(p.n()), *gv = device_poisoned<bf16>(p.n());
            run_backward(p, ddO, dq_, dk_, dv_, o, lse, rowDot, acc, gq, gk, gv, sms);
            CHECK(cudaDeviceSynchronize());
            Error e1 = compare(host_copy(gq, p.n()), ref.dq), e2 = compare(host_copy(gk, p.n()), ref.dk),
                  e3 = compare(host_copy(gv, p.n()), ref.dv);
            const bool bpass = backward_passes(e1, e2, e3);
            std::snprintf(name, sizeof name, "bwd B=%d H=%d T=%d D=%d", p.B, p.H, p.T, p.D);
            std::printf("%-36s dq %.2e dk %.2e dv %.2e (rel L2)  %s\n", name, e1.rel, e2.rel, e3.rel,
                        bpass ? "ok" : "FAIL");
            ok &= bpass;
            CHECK(cudaFree(rowDot)); CHECK(cudaFree(acc)); CHECK(cudaFree(gq)); CHECK(cudaFree(gk)); CHECK(cudaFree(gv));
        }
        CHECK(cudaFree(o));
        CHECK(cudaFree(lse));
    }
    // Pipelined kernels: every fwd2 variant of this D, then every bwd2 variant from the first fwd2's out and lse.
    bf16* o2 = nullptr;
    float* lse2 = nullptr;
    for (Fwd2Variant f : FWD2_VARIANTS) {
        if (f.D != p.D) continue;
        bf16* o = device_poisoned<bf16>(p.n());
        float* lse = device_poisoned<float>(p.nStat());
        run_forward2(p, f, dq_, dk_, dv_, o, lse);
        CHECK(cudaDeviceSynchronize());
        Error eo = compare(host_copy(o, p.n()), ref.out), el = compare(host_copy(lse, p.nStat()), ref.lse);
        const bool pass = forward_passes(eo, el);
        std::snprintf(name, sizeof name, "fwd2 m%d n%d q%d B=%d H=%d T=%d D=%d", f.mt, f.bc, f.qreg, p.B, p.H, p.T, p.D);
        std::printf("%-36s out rel %.2e max %.2e | lse max %.2e  %s\n", name, eo.rel, eo.maxAbs, el.maxAbs,
                    pass ? "ok" : "FAIL");
        ok &= pass;
        if (o2 == nullptr) {
            o2 = o;
            lse2 = lse;
        } else {
            CHECK(cudaFree(o));
            CHECK(cudaFree(lse));
        }
    }
    for (int gen = 2; gen <= 3; ++gen)
        for (Bwd2Variant v2 : gen == 2 ? BWD2_VARIANTS : BWD3_VARIANTS) {
            if (v2.D != p.D || o2 == nullptr) continue;
            float *rowDot = device_poisoned<float>(p.nStat()), *acc = device_poisoned<float>(p.n());
            bf16 *gq = device_poisoned<bf16>(p.n()), *gk = device_poisoned<bf16>(p.n()), *gv = device_poisoned<bf16>(p.n());
            if (gen == 2) run_backward2(p, v2, ddO, dq_, dk_, dv_, o2, lse2, rowDot, acc, gq, gk, gv, sms);
            else run_backward3(p, v2, ddO, dq_, dk_, dv_, o2, lse2, rowDot, acc, gq, gk, gv, sms);
            CHECK(cudaDeviceSynchronize());
            Error e1 = compare(host_copy(gq, p.n()), ref.dq), e2 = compare(host_copy(gk, p.n()), ref.dk),
                  e3 = compare(host_copy(gv, p.n()), ref.dv);
            const bool bpass = backward_passes(e1, e2, e3);
            std::snprintf(name, sizeof name, "bwd%d q%d v%d B=%d H=%d T=%d D=%d", gen, v2.bq, v2.vreg, p.B, p.H, p.T,
                          p.D);
            std::printf("%-36s dq %.2e dk %.2e dv %.2e (rel L2)  %s\n", name, e1.rel, e2.rel, e3.rel,
                        bpass ? "ok" : "FAIL");
            ok &= bpass;
            CHECK(cudaFree(rowDot)); CHECK(cudaFree(acc)); CHECK(cudaFree(gq)); CHECK(cudaFree(gk)); CHECK(cudaFree(gv));
        }
    if (o2 != nullptr) {
        CHECK(cudaFree(o2));
        CHECK(cudaFree(lse2));
    }
    CHECK(cudaFree(dq_)); CHECK(cudaFree(dk_)); CHECK(cudaFree(dv_)); CHECK(cudaFree(ddO));
    return ok;
}

template <typename F>
static float time_ms(F f, int reps) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) f();
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        CHECK(cudaEventRecord(a));
        f();
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return median_ms(t);
}

// Causal attention FLOPs: forward 2 matmuls of 2·T²·D/2 each per (b, h); backward 5 matmuls (2.5× forward).
[[maybe_unused]] static void bench(const Problem& p, int sms, std::mt19937& rng) {
    auto q = random_bf16(p.n(), 2.f, rng), k = random_bf16(p.n(), 2.f, rng);
    auto v = random_bf16(p.n(), 1.f, rng), dO = random_bf16(p.n(), 1.f, rng);
    bf16 *dq_ = device_copy(q), *dk_ = device_copy(k), *dv_ = device_copy(v), *ddO = device_copy(dO);
    bf16 *o = device_poisoned<bf16>(p.n()), *gq = device_poisoned<bf16>(p.n()), *gk = device_poisoned<bf16>(p.n()),
         *gv = device_poisoned<bf16>(p.n());
    float *lse = device_poisoned<float>(p.nStat()), *rowDot = device_poisoned<float>(p.nStat()),
          *acc = device_poisoned<float>(p.n());
    const double fwdFlops = 4.0 * p.B * p.H * static_cast<double>(p.T) * p.T * p.D / 2;
    float best = 1e30f;
    std::printf("B=%d H=%2d T=%d D=%3d | fwd", p.B, p.H, p.T, p.D);
    for (FwdVariant f : FWD_VARIANTS) {
        if (!has_variant(p.D, f)) continue;
        const float ms = time_ms([&] { run_forward(p, f, dq_, dk_, dv_, o, lse); }, 20);
        std::printf(" w%dm%d %.3f ms %.0f TF/s,", f.warps, f.mt, ms, fwdFlops / ms / 1e9);
        best = std::min(best, ms);
    }
    for (Fwd2Variant f : FWD2_VARIANTS) {
        if (f.D != p.D) continue;
        const float ms = time_ms([&] { run_forward2(p, f, dq_, dk_, dv_, o, lse); }, 20);
        std::printf(" fwd2 m%dn%dq%d %.3f ms %.0f TF/s,", f.mt, f.bc, f.qreg, ms, fwdFlops / ms / 1e9);
        best = std::min(best, ms);
    }
    run_forward(p, FWD_VARIANTS[0], dq_, dk_, dv_, o, lse);
    float bwd = time_ms([&] { run_backward(p, ddO, dq_, dk_, dv_, o, lse, rowDot, acc, gq, gk, gv, sms); }, 20);
    std::printf(" | bwd %.3f ms %.0f TF/s,", bwd, 2.5 * fwdFlops / bwd / 1e9);
    for (Bwd2Variant v2 : BWD2_VARIANTS) {
        if (v2.D != p.D) continue;
        const float ms =
            time_ms([&] { run_backward2(p, v2, ddO, dq_, dk_, dv_, o, lse, rowDot, acc, gq, gk, gv, sms); }, 20);
        std::printf(" bwd2 q%dv%d %.3f ms %.0f TF/s,", v2.bq, v2.vreg, ms, 2.5 * fwdFlops / ms / 1e9);
        bwd = std::min(bwd, ms);
    }
    for (Bwd2Variant v3 : BWD3_VARIANTS) {
        if (v3.D != p.D) continue;
        const float ms =
            time_ms([&] { run_backward3(p, v3, ddO, dq_, dk_, dv_, o, lse, rowDot, acc, gq, gk, gv, sms); }, 20);
        std::printf(" bwd3 q%dv%d %.3f ms %.0f TF/s,", v3.bq, v3.vreg, ms, 2.5 * fwdFlops / ms / 1e9);
        bwd = std::min(bwd, ms);
    }
    std::printf(" | best fwd+bwd %.0f TF/s\n", 3.5 * fwdFlops / (best + bwd) / 1e9);
    for (void* ptr : std::initializer_list<void*>{dq_, dk_, dv_, ddO, o, gq, gk, gv, lse, rowDot, acc}) CHECK(cudaFree(ptr));
}

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "all";
    int dev = 0, sms = 0;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, dev));
    std::printf("device: %s, %d SMs\n", prop.name, sms);
    std::mt19937 rng(1234);
    bool ok = true;
    if (mode == "all" || mode == "check") {
#ifdef PATCHCORE_EMU
        // Small enough for the CPU: every head dimension, T = 1, tails of the 32-, 48-, 64- and 128-row tiles, several
        // (batch, head) pairs and more than one tile of every kernel.
        const Problem cases[] = {{1, 1, 1, 64}, {1, 1, 17, 128}, {2, 3, 200, 64}, {1, 2, 129, 80},
                                 {2, 2, 130, 96}, {1, 1, 161, 128}, {2, 2, 31, 80}, {1, 1, 97, 96}};
#else
        const Problem cases[] = {{1, 1, 1, 64},   {1, 1, 17, 128},  {2, 3, 200, 64}, {1, 2, 64, 64},
                                 {1, 2, 257, 80}, {2, 2, 130, 96},  {1, 2, 333, 128}, {1, 1, 512, 128},
                                 {1, 1, 300, 96}, {2, 1, 129, 80}, {1, 2, 1000, 64}, {1, 2, 777, 128},
                                 {1, 1, 555, 96},  {2, 2, 31, 80},   {1, 2, 100, 64}, {1, 1, 191, 128},
                                 {2, 1, 383, 96},  {1, 1, 1025, 64}, {1, 1, 1100, 80}, {1, 1, 2048, 128}};
#endif
        for (const Problem& p : cases) ok &= check(p, sms, rng);
        std::printf("check: %s\n", ok ? "ALL OK" : "FAILURES");
    }
#ifdef PATCHCORE_EMU
    if (mode == "bench") std::printf("bench: no timings under the emulator\n");
#else
    if (mode == "all" || mode == "bench") {
        for (int D : {64, 80, 96, 128}) bench({8, 1024 / D, 2048, D}, sms, rng);
        bench({4, 16, 2048, 64}, sms, rng);  // the shapes of `bench kernels`
        bench({4, 8, 2048, 128}, sms, rng);
        bench({4, 16, 8192, 64}, sms, rng);
    }
#endif
    return ok ? 0 : 1;
}
