// Standalone check and timing of the Hopper flash-attention kernels of src/main/cuda/flash_wgmma.cu (not part of the
// Maven build; flash_attention_test.cu does the same for the mma.sync kernels of flash_attention.cu). Every kernel is
// launched as CudaFlashAttention.java launches it: grid, block, dynamic shared memory, arguments, and for the TMA
// forwards the tensor maps of TensorMaps / ForwardWgmmaPersistent.map (4-D [B][T][H][D] bf16, boxes of 64 columns ×
// 1 head × 64 or 128 rows × 1 batch, 128-byte swizzle, zero fill), made by the driver's cuTensorMapEncodeTiled.
//
//   check    every forward — variant 3 (flash_attn_fwd_wgmma_d*), 4 (_pp_d*), 5 (_pp_persistent_d*), 6
//            (_pp_persistent_tma_d*), variant 7, three warpgroups at D = 64 (_pp3_persistent_tma_d64), and the D = 64
//            default, the same plus a producer warpgroup (_pp3_producer_tma_d64; where ptxas gave it too few
//            registers for its setmaxnreg split, variant 7's kernel instead, as CudaFlashAttention does) — and the
//            wgmma backward (prep, flash_attn_bwd_wgmma_d*, dq-convert, from the default forward's out and lse, as
//            training runs it) at D = 64 and 128, against a float64 reference (attention_reference.h), outputs
//            poisoned with NaN first; lse checked too. Exit status 0 only if every comparison passes.
//   timing   (GPU only) the D = 64 default, variants 7, 6 and 5 and the mma.sync fwd2 at B 4 H 16 T 2048, and D = 128's
//            default and variant 5 at H 8: per call, N back-to-back launches between two events ("stream": launched
//            from C++, no JVM in the loop) and the same N queued behind timing_spin_ns so the host is never the limit
//            ("kernel"), in TFLOP/s as FlashAttention counts them (2·B·H·T²·D); with the host's own time per launch.
//            What it answered (H100 run 16): from C++ the three-warpgroup kernel streams at 309 TFLOP/s, against
//            305-307 from the JVM, so the Java host path costs it about 1 %; its stream-vs-kernel gap was 1.9 µs per
//            call in one call (309 vs 315) and none in the next (309 vs 309). The producer warpgroup kernel: 353
//            stream, gap 0.3-1.0 µs, which made it the default.
//   all      (default) check, then timing if every check passed.
//   launches the launches check and timing would make, none made: for every problem of both check lists (the
//            emulator's and the GPU's, check's forwards, then the backward) and every timing row,
//            one line per kernel launch — problem, CudaFlashAttention's variant number (bwd: the backward), kernel,
//            grid, block, dynamic shared bytes, and the boxes of the TMA forwards' tensor maps. CudaFlashAttentionTest
//            makes the same launches through CudaFlashAttention and asserts the lines equal (so a launcher change
//            the harness misses fails the Maven suite). Works on the emulator build.
//
// On a GPU (sm_90a only: the other targets of flash_wgmma.cu trap), from the repository root, as tools/device/pack.sh
// builds it for gpu-check.sh's cuda-tests step (timing.cu for the spin kernel):
//
//   nvcc -O3 -std=c++17 -Isrc/main/cuda -gencode arch=compute_90a,code=sm_90a src/test/cuda/flash_wgmma_test.cu
//        src/main/cuda/flash_attention.cu src/main/cuda/flash_wgmma.cu src/main/cuda/timing.cu -o /tmp/wgmma_test
//   /tmp/wgmma_test [check | timing [N] | all | launches]
//
// cuTensorMapEncodeTiled comes through cudaGetDriverEntryPointByVersion, so nothing links against libcuda (the machine
// that builds the pack has no driver); the program needs only the driver where it runs.
// Without a GPU: `bash src/test/cuda/emu/run.sh BUILD_DIR flash_wgmma_test` builds it with g++ against the CPU
// emulator (src/test/cuda/emu, reporting compute capability 9.0; its cuTensorMapEncodeTiled writes the emulator's own
// encoding) and runs the checks on smaller problems; the Maven suite does, in CudaEmulatorTest.
//
// kernel-files: flash_attention flash_wgmma
#include "attention_reference.h"

#include <cuda.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

extern "C" {
__global__ void flash_attn_fwd_wgmma_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int);
__global__ void flash_attn_fwd_wgmma_d128(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int);
__global__ void flash_attn_fwd_wgmma_pp_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int);
__global__ void flash_attn_fwd_wgmma_pp_d128(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int);
__global__ void flash_attn_fwd_wgmma_pp_persistent_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int, int);
__global__ void flash_attn_fwd_wgmma_pp_persistent_d128(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int, int);
__global__ void flash_attn_fwd_wgmma_pp_persistent_tma_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int,
                                                           int, const __grid_constant__ CUtensorMap,
                                                           const __grid_constant__ CUtensorMap,
                                                           const __grid_constant__ CUtensorMap);
__global__ void flash_attn_fwd_wgmma_pp_persistent_tma_d128(const bf16*, const bf16*, const bf16*, bf16*, float*, int,
                                                            int, int, const __grid_constant__ CUtensorMap,
                                                            const __grid_constant__ CUtensorMap,
                                                            const __grid_constant__ CUtensorMap);
__global__ void flash_attn_fwd_wgmma_pp3_persistent_tma_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int,
                                                            int, int, const __grid_constant__ CUtensorMap,
                                                            const __grid_constant__ CUtensorMap,
                                                            const __grid_constant__ CUtensorMap);
__global__ void flash_attn_fwd_wgmma_pp3_producer_tma_d64(const bf16*, const bf16*, const bf16*, bf16*, float*, int,
                                                          int, int, const __grid_constant__ CUtensorMap,
                                                          const __grid_constant__ CUtensorMap,
                                                          const __grid_constant__ CUtensorMap);
__global__ void flash_attn_bwd_prep_d64(const bf16*, const bf16*, float*, float*, int, int, int);
__global__ void flash_attn_bwd_prep_d128(const bf16*, const bf16*, float*, float*, int, int, int);
__global__ void flash_attn_bwd_wgmma_d64(const bf16*, const bf16*, const bf16*, const bf16*, const float*, const float*,
                                         float*, bf16*, bf16*, int, int);
__global__ void flash_attn_bwd_wgmma_d128(const bf16*, const bf16*, const bf16*, const bf16*, const float*, const float*,
                                          float*, bf16*, bf16*, int, int);
__global__ void flash_attn_dq_convert(const float*, bf16*, long, float);
__global__ void flash_attn_fwd2_d64_m2_n64_q1(const bf16*, const bf16*, const bf16*, bf16*, float*, int, int);
#ifndef PATCHCORE_EMU
__global__ void timing_spin_ns(unsigned long long);  // timing.cu
#endif
}

static int ceil_div(long a, long b) { return static_cast<int>((a + b - 1) / b); }

// ---------------------------------------------------------------- launches mode: every launch printed, none made

static bool g_list_launches = false;
static std::string g_list_label;  // the problem and variant of the launches being listed
static std::string g_list_maps;   // the boxes of the tensor maps made for the next launch

#define NAMED_KERNEL(k) {reinterpret_cast<const void*>(&k), #k}
static const char* kernel_name(const void* kernel) {
    static const std::pair<const void*, const char*> names[] = {
        NAMED_KERNEL(flash_attn_fwd_wgmma_d64), NAMED_KERNEL(flash_attn_fwd_wgmma_d128),
        NAMED_KERNEL(flash_attn_fwd_wgmma_pp_d64), NAMED_KERNEL(flash_attn_fwd_wgmma_pp_d128),
        NAMED_KERNEL(flash_attn_fwd_wgmma_pp_persistent_d64), NAMED_KERNEL(flash_attn_fwd_wgmma_pp_persistent_d128),
        NAMED_KERNEL(flash_attn_fwd_wgmma_pp_persistent_tma_d64), NAMED_KERNEL(flash_attn_fwd_wgmma_pp_persistent_tma_d128),
        NAMED_KERNEL(flash_attn_fwd_wgmma_pp3_persistent_tma_d64), NAMED_KERNEL(flash_attn_fwd_wgmma_pp3_producer_tma_d64),
        NAMED_KERNEL(flash_attn_bwd_prep_d64), NAMED_KERNEL(flash_attn_bwd_prep_d128),
        NAMED_KERNEL(flash_attn_bwd_wgmma_d64), NAMED_KERNEL(flash_attn_bwd_wgmma_d128),
        NAMED_KERNEL(flash_attn_dq_convert), NAMED_KERNEL(flash_attn_fwd2_d64_m2_n64_q1)};
    for (const auto& n : names)
        if (n.first == kernel) return n.second;
    std::fprintf(stderr, "launches: a kernel without a name in kernel_name\n");
    std::exit(3);
}

// One launch line: "B=1 H=3 T=449 D=64 fwd 1: KERNEL grid X Y Z block X smem BYTES[ maps BOX BOX BOX]".
template <typename Kernel>
static void list_launch(Kernel kernel, dim3 grid, dim3 block, int smem) {
    std::printf("%s: %s grid %u %u %u block %u smem %d%s\n", g_list_label.c_str(),
                kernel_name(reinterpret_cast<const void*>(kernel)), grid.x, grid.y, grid.z, block.x, smem,
                g_list_maps.empty() ? "" : (" maps" + g_list_maps).c_str());
    g_list_maps.clear();
}

// A launch with no dynamic-shared-memory attribute to raise (the backward's prep pass and dQ conversion); listed instead
// in launches mode.
template <typename Kernel, typename... Args>
static void launch_static(Kernel kernel, dim3 grid, dim3 block, Args... args) {
    if (g_list_launches) return list_launch(kernel, grid, block, 0);
    KERNEL(kernel, grid, block)(args...);
    CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------- the launches of CudaFlashAttention.java

// The forwards, named by the variant that runs them (CudaFlashAttention.FORWARD_*).
enum class Fwd { V3, V4, V5, V6, V7, DEFAULT_D64, MMA_SYNC };
// Set once the producer kernel is found short of registers (producer_fits): the default then runs variant 7's kernel.
static bool g_producer_registers_short = false;
static const char* fwd_name(Fwd f, int D) {
    static char s[64];
    switch (f) {
        case Fwd::V3: std::snprintf(s, sizeof s, "v3 fwd_wgmma_d%d", D); break;
        case Fwd::V4: std::snprintf(s, sizeof s, "v4 fwd_wgmma_pp_d%d", D); break;
        case Fwd::V5: std::snprintf(s, sizeof s, "v5 pp_persistent_d%d", D); break;
        case Fwd::V6: std::snprintf(s, sizeof s, "v6 pp_persistent_tma_d%d%s", D, D == 128 ? " (default)" : ""); break;
        case Fwd::V7: std::snprintf(s, sizeof s, "v7 pp3_persistent_tma_d64"); break;
        case Fwd::DEFAULT_D64:
            std::snprintf(s, sizeof s, g_producer_registers_short ? "v1 pp3_persistent_tma_d64 (default's fallback)"
                                                                  : "v1 pp3_producer_tma_d64 (default)");
            break;
        case Fwd::MMA_SYNC: std::snprintf(s, sizeof s, "v2 fwd2_d%d (mma.sync)", D); break;
    }
    return s;
}

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled (on the emulator its stand-in), found once through the runtime.
static EncodeTiled encode_tiled() {
    static EncodeTiled fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult status;
        CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &status));
        if (p == nullptr || status != cudaDriverEntryPointSuccess) {
            std::fprintf(stderr, "the driver has no cuTensorMapEncodeTiled (status %d)\n", static_cast<int>(status));
            std::exit(3);
        }
        return reinterpret_cast<EncodeTiled>(p);
    }();
    return fn;
}

// TensorMaps.encode of CudaFlashAttention.ForwardWgmmaPersistent.map(t, B, T, H, rows): t [B·T, H·D] as 4-D [B][T][H][D]
// (sizes innermost first), a box of 64 columns × 1 head × `rows` × 1 batch, 128-byte swizzle, L2 promotion 256 B,
// rows past T zero.
static CUtensorMap tensor_map(const bf16* t, const Problem& p, int rows) {
    const cuuint64_t rowBytes = static_cast<cuuint64_t>(p.H) * p.D * 2;
    const cuuint64_t dims[4] = {static_cast<cuuint64_t>(p.D), static_cast<cuuint64_t>(p.H), static_cast<cuuint64_t>(p.T),
                                static_cast<cuuint64_t>(p.B)};
    const cuuint64_t strides[3] = {static_cast<cuuint64_t>(p.D) * 2, rowBytes, rowBytes * p.T};
    const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(rows), 1}, elementStrides[4] = {1, 1, 1, 1};
    CUtensorMap map;
    if (g_list_launches) {  // its box listed with the launch; nothing encoded (no device memory behind t)
        g_list_maps += " " + std::to_string(box[0]) + "x" + std::to_string(box[1]) + "x" + std::to_string(box[2]) + "x" +
                       std::to_string(box[3]);
        std::memset(&map, 0, sizeof map);
        return map;
    }
    const CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<bf16*>(t), dims, strides, box,
                                      elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        std::fprintf(stderr, "cuTensorMapEncodeTiled (rows %d): error %d\n", rows, static_cast<int>(r));
        std::exit(3);
    }
    return map;
}

// One forward's launch, ready to repeat (the timing mode launches it many times): kernel, grid, block, shared memory
// and arguments as CudaFlashAttention.forward picks them for the variant; the shared-memory limit raised and the
// tensor maps encoded once (the Java side caches both too), so that a launch is the launch alone.
struct ForwardLaunch {
    std::function<void()> run;
};

template <typename Kernel, typename... Args>
static ForwardLaunch prepared(Kernel kernel, dim3 grid, dim3 block, int smem, Args... args) {
    if (g_list_launches) {
        list_launch(kernel, grid, block, smem);
        return {[] {}};
    }
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return {[=] {
        KERNEL(kernel, grid, block, smem)(args...);
        CHECK(cudaGetLastError());
    }};
}

// Whether the producer kernel got the registers its setmaxnreg split takes (65 536 / 512 threads = 128 per thread):
// if not, its consumers' setmaxnreg.inc would wait forever, so the D = 64 default launches variant 7's kernel instead
// (as CudaFlashAttention does) and check fails, saying why (a build that lost the kernel's fastest form).
static bool producer_fits() {
#ifndef PATCHCORE_EMU
    if (!g_list_launches) {
        static const int regs = [] {
            cudaFuncAttributes a;
            CHECK(cudaFuncGetAttributes(&a, flash_attn_fwd_wgmma_pp3_producer_tma_d64));
            return a.numRegs;
        }();
        if (regs * 512 < 65536) {
            if (!g_producer_registers_short)
                std::printf("FAIL v1 pp3_producer_tma_d64: compiled with %d registers per thread, its setmaxnreg split "
                            "needs 128 (it would hang): variant 7's kernel runs as the default instead\n", regs);
            g_producer_registers_short = true;
            return false;
        }
    }
#endif
    return true;
}

static ForwardLaunch forward_launch(Fwd f, const Problem& p, int sms, const bf16* q, const bf16* k, const bf16* v,
                                    bf16* o, float* lse) {
    const int D = p.D, T = p.T, H = p.H, BH = p.B * p.H;
    if (f == Fwd::V3 || f == Fwd::V4) {  // ForwardWgmma / ForwardWgmmaPingPong: grid (B·H, ⌈T/128⌉), 256 threads
        const dim3 grid(BH, ceil_div(T, 128)), block(256);
        const int keyTile = D == 64 ? 64 : 128;
        const int smem = f == Fwd::V3 ? 1024 + 128 * D * 2 + 4 * keyTile * D * 2 : 1024 + 128 * D * 2 + 5 * 128 * D * 2 + 80;
        auto kernel = f == Fwd::V3 ? (D == 64 ? flash_attn_fwd_wgmma_d64 : flash_attn_fwd_wgmma_d128)
                                   : (D == 64 ? flash_attn_fwd_wgmma_pp_d64 : flash_attn_fwd_wgmma_pp_d128);
        return prepared(kernel, grid, block, smem, q, k, v, o, lse, T, H);
    }
    if (f == Fwd::MMA_SYNC) {  // Forward2.of(64): 4 warps × 32 rows, 64-key tiles, Q in registers
        const dim3 grid(BH, ceil_div(T, 128)), block(128);
        const int smem = (128 + 4 * 64) * (64 + 8) * 2;
        return prepared(flash_attn_fwd2_d64_m2_n64_q1, grid, block, smem, q, k, v, o, lse, T, H);
    }
    // ForwardWgmmaPersistent(D, warpgroups[, producer]): one CTA per SM over B·H·⌈T/rows⌉ items; the D = 64 default
    // adds a producer warpgroup (block 512) and an empty Q barrier per buffer to variant 7's three warpgroups.
    const bool producer = f == Fwd::DEFAULT_D64 && producer_fits();
    const int wg = f == Fwd::DEFAULT_D64 || f == Fwd::V7 ? 3 : 2, rows = 64 * wg, kStages = wg == 2 ? 3 : 4, vStages = wg == 2 ? 2 : 3;
    const int smem = 1024 + 2 * rows * D * 2 + (kStages + vStages) * 128 * D * 2
                     + 8 * (2 * kStages + 2 * vStages + 2 * wg + (producer ? 2 : 0));
    const dim3 grid(static_cast<unsigned>(std::min<long>(static_cast<long>(BH) * ceil_div(T, rows), sms))),
        block(128 * (wg + (producer ? 1 : 0)));
    if (f == Fwd::V5) {
        auto kernel = D == 64 ? flash_attn_fwd_wgmma_pp_persistent_d64 : flash_attn_fwd_wgmma_pp_persistent_d128;
        return prepared(kernel, grid, block, smem, q, k, v, o, lse, T, H, BH);
    }
    const CUtensorMap mq = tensor_map(q, p, 64), mk = tensor_map(k, p, 128), mv = tensor_map(v, p, 128);
    auto kernel = producer  ? flash_attn_fwd_wgmma_pp3_producer_tma_d64
                  : wg == 3 ? flash_attn_fwd_wgmma_pp3_persistent_tma_d64
                  : D == 64 ? flash_attn_fwd_wgmma_pp_persistent_tma_d64
                            : flash_attn_fwd_wgmma_pp_persistent_tma_d128;
    return prepared(kernel, grid, block, smem, q, k, v, o, lse, T, H, BH, mq, mk, mv);
}

// CudaFlashAttention.backward on compute capability 9.x at D = 64 / 128: the prep pass (D_i, zeroed dQ accumulator),
// BackwardWgmma (grid (B·H, ⌈T/128⌉), 256 threads), then dQ's conversion to bf16.
static void run_backward(const Problem& p, int sms, const bf16* dO, const bf16* q, const bf16* k, const bf16* v,
                         const bf16* o, const float* lse, float* rowDot, float* dqAcc, bf16* dq, bf16* dk, bf16* dv) {
    const int D = p.D;
    const long pairs = p.rows() * p.H;
    const int pairsPerWarp = 32 / (D / 8);  // CudaFlashAttention.prepPairsPerWarp
    auto prep = D == 64 ? flash_attn_bwd_prep_d64 : flash_attn_bwd_prep_d128;
    launch_static(prep, dim3(ceil_div(pairs, 8L * pairsPerWarp)), dim3(256), dO, o, rowDot, dqAcc,
                  static_cast<int>(p.rows()), p.T, p.H);
    const int smem = 1024 + 2 * 128 * D * 2 + 4 * 64 * D * 2 + 128 * 64 * 2 + 4 * 64 * 4 + 2 * 64 * 72 * 4;
    prepared(D == 64 ? flash_attn_bwd_wgmma_d64 : flash_attn_bwd_wgmma_d128, dim3(p.B * p.H, ceil_div(p.T, 128)),
             dim3(256), smem, q, k, v, dO, lse, static_cast<const float*>(rowDot), dqAcc, dk, dv, p.T, p.H)
        .run();
    const long n = p.n();
    launch_static(flash_attn_dq_convert, dim3(static_cast<int>(std::min<long>(ceil_div(n, 256), 16L * sms))), dim3(256),
                  static_cast<const float*>(dqAcc), dq, n, 1.f / std::sqrt(static_cast<float>(D)));
}

// ---------------------------------------------------------------- check

// The forwards check runs on p, in order (the default forward last: the backward runs from its out and lse, as in
// training).
static std::vector<Fwd> check_forwards(const Problem& p) {
    std::vector<Fwd> forwards = {Fwd::V3, Fwd::V4, Fwd::V5, Fwd::V6};
    if (p.D == 64) {
        forwards.push_back(Fwd::V7);
        forwards.push_back(Fwd::DEFAULT_D64);
    }
    return forwards;
}

static bool check(const Problem& p, int sms, std::mt19937& rng) {
    auto q = random_bf16(p.n(), 2.f, rng), k = random_bf16(p.n(), 2.f, rng);
    auto v = random_bf16(p.n(), 1.f, rng), dO = random_bf16(p.n(), 1.f, rng);
    const Reference ref = reference(p, to_double(q), to_double(k), to_double(v), to_double(dO));
    bf16 *qDev = device_copy(q), *kDev = device_copy(k), *vDev = device_copy(v), *dODev = device_copy(dO);
    bool ok = true;
    char shape[64];
    std::snprintf(shape, sizeof shape, "B=%d H=%d T=%d D=%d", p.B, p.H, p.T, p.D);
    const std::vector<Fwd> forwards = check_forwards(p);
    bf16* o = nullptr;
    float* lse = nullptr;
    for (Fwd f : forwards) {
        if (o != nullptr) {
            CHECK(cudaFree(o));
            CHECK(cudaFree(lse));
        }
        o = device_poisoned<bf16>(p.n());
        lse = device_poisoned<float>(p.nStat());
        forward_launch(f, p, sms, qDev, kDev, vDev, o, lse).run();
        CHECK(cudaDeviceSynchronize());
        const Error eo = compare(host_copy(o, p.n()), ref.out), el = compare(host_copy(lse, p.nStat()), ref.lse);
        const bool pass = forward_passes(eo, el);
        std::printf("%-36s %-22s out rel %.2e max %.2e | lse max %.2e  %s\n", fwd_name(f, p.D), shape, eo.rel, eo.maxAbs,
                    el.maxAbs, pass ? "ok" : "FAIL");
        ok &= pass;
    }
    float *rowDot = device_poisoned<float>(p.nStat()), *acc = device_poisoned<float>(p.n());
    bf16 *gq = device_poisoned<bf16>(p.n()), *gk = device_poisoned<bf16>(p.n()), *gv = device_poisoned<bf16>(p.n());
    run_backward(p, sms, dODev, qDev, kDev, vDev, o, lse, rowDot, acc, gq, gk, gv);
    CHECK(cudaDeviceSynchronize());
    const Error e1 = compare(host_copy(gq, p.n()), ref.dq), e2 = compare(host_copy(gk, p.n()), ref.dk),
                e3 = compare(host_copy(gv, p.n()), ref.dv);
    const bool bpass = backward_passes(e1, e2, e3);
    char name[40];
    std::snprintf(name, sizeof name, "bwd_wgmma_d%d", p.D);
    std::printf("%-36s %-22s dq %.2e dk %.2e dv %.2e (rel L2)  %s\n", name, shape, e1.rel, e2.rel, e3.rel,
                bpass ? "ok" : "FAIL");
    ok &= bpass;
    for (void* ptr : std::initializer_list<void*>{qDev, kDev, vDev, dODev, o, lse, rowDot, acc, gq, gk, gv}) CHECK(cudaFree(ptr));
    return ok;
}

// ---------------------------------------------------------------- the problems check runs

// Small enough for the CPU: T = 1; whole tiles (64, 128); tails of the 64-row Q boxes, 128-row items and key
// tiles and 192-row items (T = 17, 200, 130, 257, 385); several (batch, head) pairs; more items than the 4
// emulated SMs, so the persistent kernels' CTAs run several items each (rings and turns across items).
// Then shapes for the rings and Q buffers of the 192-row kernels (default D = 64, variant 7): odd B·H, T just
// past a 64-, 128- or 192-row boundary (65, 129, 193, 257, 449), a consumer's 64 rows all past T in the last
// query tile (65, 129, 193, 257, 449), and 9 to 18 items, so that on 4 SMs (or EMU_SMS 1–3) a CTA takes 3 or
// more items of different lengths (449: 4, 3 and 2 key tiles) and reuses each Q buffer.
static const std::vector<Problem>& emu_cases() {
    static const std::vector<Problem> cases = {
        {1, 1, 1, 64},   {1, 1, 1, 128}, {3, 1, 64, 64},  {1, 1, 128, 128}, {1, 1, 17, 128}, {2, 3, 200, 64}, {1, 2, 130, 128},
        {2, 2, 257, 128}, {1, 1, 385, 64}, {1, 3, 65, 64}, {3, 1, 129, 64},  {3, 3, 193, 64}, {1, 5, 257, 64}, {1, 3, 449, 64}};
    return cases;
}

// The same, and problems where every CTA of the persistent kernels takes several items on a 132-SM H100
// (B·H = 64), longer sequences and T = 2048.
static const std::vector<Problem>& gpu_cases() {
    static const std::vector<Problem> cases = {
        {1, 1, 1, 64},    {1, 1, 1, 128},  {3, 1, 64, 64},    {1, 1, 128, 128}, {1, 1, 17, 128},
        {2, 3, 200, 64},  {1, 2, 130, 128}, {2, 2, 257, 128}, {1, 1, 385, 64},  {2, 32, 400, 64},
        {2, 32, 300, 128}, {1, 2, 1000, 64}, {1, 2, 777, 128}, {1, 2, 2048, 64}, {1, 1, 2048, 128}};
    return cases;
}

// ---------------------------------------------------------------- timing (GPU only)

// The forwards timing measures, in order.
struct TimingRow {
    Fwd f;
    Problem p;
};
static const std::vector<TimingRow>& timing_rows() {
    static const Problem d64{4, 16, 2048, 64}, d128{4, 8, 2048, 128};
    static const std::vector<TimingRow> rows = {{Fwd::DEFAULT_D64, d64}, {Fwd::V7, d64}, {Fwd::V6, d64}, {Fwd::V5, d64},
                                                {Fwd::MMA_SYNC, d64},    {Fwd::V6, d128}, {Fwd::V5, d128}};
    return rows;
}

#ifndef PATCHCORE_EMU
// Per-call milliseconds of `reps` back-to-back launches between two events, the median of `samples`.
static float stream_ms(const std::function<void()>& launch, int reps, int samples) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int s = 0; s < samples; ++s) {
        CHECK(cudaEventRecord(a));
        for (int r = 0; r < reps; ++r) launch();
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / reps);
    }
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return median_ms(t);
}

struct Queued {
    float kernelMs, hostUsPerLaunch;  // per call; NaN kernel time when the host never got ahead of the spin
};

// CudaBackend.timeQueued / KernelBench.kernelMillis from C++: timing_spin_ns holds the stream while the host queues
// `reps` launches behind it, timed from an event right after the spin to one after the last launch; a sample counts
// only if the host had queued everything before the spin ended (else the hold doubles). Median of `samples`.
static Queued queued_ms(const std::function<void()>& launch, int reps, int samples) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    unsigned long long hold = 2000000;  // ns
    std::vector<float> t, host;
    for (int tries = 0; static_cast<int>(t.size()) < samples && tries < 4 * samples; ++tries) {
        CHECK(cudaDeviceSynchronize());
        const auto t0 = std::chrono::steady_clock::now();
        KERNEL(timing_spin_ns, 1, 1)(hold);
        CHECK(cudaEventRecord(a));
        const auto t1 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) launch();
        const auto t2 = std::chrono::steady_clock::now();
        CHECK(cudaEventRecord(b));
        const double queuedNs = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        CHECK(cudaEventSynchronize(b));
        if (queuedNs + 20000 >= hold) {  // a margin for the spin's own launch latency, as timeQueued
            hold *= 2;
            continue;
        }
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / reps);
        host.push_back(static_cast<float>(std::chrono::duration<double, std::micro>(t2 - t1).count() / reps));
    }
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    if (t.empty()) return {NAN, NAN};
    return {median_ms(t), median_ms(host)};
}

static void timing(int sms, int reps, std::mt19937& rng) {
    std::printf("timing: %d calls per sample, median of 20 samples; stream = back to back between two events, kernel = "
                "queued behind a spin (no host gaps); TFLOP/s of 2·B·H·T²·D\n", reps);
    for (const TimingRow& r : timing_rows()) {
        const Problem& p = r.p;
        auto q = random_bf16(p.n(), 2.f, rng), k = random_bf16(p.n(), 2.f, rng), v = random_bf16(p.n(), 1.f, rng);
        bf16 *qDev = device_copy(q), *kDev = device_copy(k), *vDev = device_copy(v), *o = device_poisoned<bf16>(p.n());
        float* lse = device_poisoned<float>(p.nStat());
        const ForwardLaunch l = forward_launch(r.f, p, sms, qDev, kDev, vDev, o, lse);
        for (int i = 0; i < 3; ++i) l.run();  // warm-up
        CHECK(cudaDeviceSynchronize());
        const float stream = stream_ms(l.run, reps, 20);
        const Queued kernel = queued_ms(l.run, reps, 20);
        const double gf = p.forwardFlops() / 1e9;
        std::printf("timing %-36s B=%d H=%2d T=%d D=%3d | stream %.4f ms %3.0f TFLOP/s | kernel %.4f ms %3.0f TFLOP/s | "
                    "gap %.1f us/call | host %.1f us/launch\n",
                    fwd_name(r.f, p.D), p.B, p.H, p.T, p.D, stream, gf / stream, kernel.kernelMs, gf / kernel.kernelMs,
                    1e3 * (stream - kernel.kernelMs), kernel.hostUsPerLaunch);
        for (void* ptr : std::initializer_list<void*>{qDev, kDev, vDev, o, lse}) CHECK(cudaFree(ptr));
    }
}
#endif

// ---------------------------------------------------------------- launches

// Every launch of check (both builds' problems, variant 7 included) and timing, listed (see the header); nothing runs.
static void list_launches(int sms) {
    auto forward = [&](Fwd f, const Problem& p) {
        static const int variant[] = {3, 4, 5, 6, 7, 1, 2};  // Fwd's CudaFlashAttention.FORWARD_* numbers
        char label[64];
        std::snprintf(label, sizeof label, "B=%d H=%d T=%d D=%d fwd %d", p.B, p.H, p.T, p.D, variant[static_cast<int>(f)]);
        g_list_label = label;
        forward_launch(f, p, sms, nullptr, nullptr, nullptr, nullptr, nullptr).run();
    };
    for (const auto* cases : {&emu_cases(), &gpu_cases()}) {
        for (const Problem& p : *cases) {
            for (Fwd f : check_forwards(p)) forward(f, p);
            char label[64];
            std::snprintf(label, sizeof label, "B=%d H=%d T=%d D=%d bwd", p.B, p.H, p.T, p.D);
            g_list_label = label;
            run_backward(p, sms, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                         nullptr);
        }
    }
    for (const TimingRow& r : timing_rows()) forward(r.f, r.p);
}

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "all";
    if (mode != "all" && mode != "check" && mode != "timing" && mode != "launches") {
        std::fprintf(stderr, "usage: %s [check | timing [CALLS_PER_SAMPLE] | all | launches]\n", argv[0]);
        return 2;
    }
    int dev = 0, sms = 0;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, dev));
    std::printf("device: %s, %d SMs, compute capability %d.%d\n", prop.name, sms, prop.major, prop.minor);
    if (prop.major != 9) {  // the kernels exist for sm_90a only (elsewhere they trap), as the launcher knows
        std::printf("check: not run (the wgmma kernels need compute capability 9.x)\n");
        return 2;
    }
    if (mode == "launches") {
        g_list_launches = true;
        list_launches(sms);
        return 0;
    }
    std::mt19937 rng(1234);
    bool ok = true;
    if (mode == "all" || mode == "check") {
#ifdef PATCHCORE_EMU
        const std::vector<Problem>& cases = emu_cases();
#else
        const std::vector<Problem>& cases = gpu_cases();
#endif
        for (const Problem& p : cases) ok &= check(p, sms, rng);
        ok &= !g_producer_registers_short;
        std::printf("check: %s\n", ok ? "ALL OK" : "FAILURES");
    }
    if (mode == "timing" || (mode == "all" && ok)) {
#ifdef PATCHCORE_EMU
        std::printf("timing: none under the emulator\n");
#else
        const int reps = mode == "timing" && argc > 2 ? std::max(1, std::atoi(argv[2])) : 20;
        timing(sms, reps, rng);
#endif
    }
    return ok ? 0 : 1;
}
