// A CPU emulator for patchcore's CUDA kernels, so that the kernel test programs run (and check them against
// their host references) on a machine without a GPU. Compiled with g++ instead of nvcc (src/test/cuda/emu/run.sh):
// this directory is on the include path, so `#include <cuda_runtime.h>` and `<cuda_bf16.h>` find the stand-ins here,
// and the kernel sources see PATCHCORE_EMU where they use inline PTX.
//
// Model of execution. A launch runs its blocks on a few OS threads (workers); a worker runs one block at a time, every
// thread of the block a fiber (ucontext) on that worker. A fiber runs until it reaches a barrier (__syncthreads, a
// named barrier, or a warp-synchronous op: __syncwarp, shuffles, votes) and then yields; the barrier releases once
// every thread that must arrive has arrived. So the block's threads interleave only at synchronization points, which
// any race-free kernel must tolerate. The order in which they run between two such points is EMU_ORDER (forward:
// thread 0 first, reverse, or random; random's schedule is fixed, another one per EMU_SEED, an unsigned integer): a
// missing barrier often shows in one of them, but this is no race checker.
// Shared memory is per worker, that is per resident block, and starts every block poisoned (bytes 0xFF: NaN as a float
// or bf16, -1 as an integer), as undefined as a GPU leaves it, so a kernel that reads it before writing it fails here
// instead of reading the previous block's leftovers: dynamic shared memory is a buffer poisoned at each block's start
// that ends at an inaccessible page; a static one (STATIC_SHARED) a `static thread_local` variable between guard bytes,
// poisoned (its guards filled with a pattern) when the block's first thread to get there passes its declaration (no
// thread of the block can touch it before), its guards checked when the block ends, so a write past its end (or before
// its start) is an error naming it, not a silent write into other data. Blocks of one
// launch run concurrently on different workers with real atomics and fences, so kernels whose blocks wait for each
// other (the RMSNorm backward's last-block reduce) work when the grid fits the workers (EMU_WORKERS).
// Inline PTX: the kernels' asm statements have `#ifdef PATCHCORE_EMU` twins that call the functions below (cp.async,
// ldmatrix, mma.sync m16n8k16 bf16, wgmma, setmaxnreg, mbarriers, bulk and TMA copies, ex2.approx), so every kernel runs here,
// the flash-attention ones and the RMSNorm backward's bulk variant included. What it does not model: memory coherence
// beyond the C++ model, the async proxy, warp divergence costs, timing. Warp-synchronous ops require every lane of their mask
// to arrive (as on sm_70+); a lane of the mask that has exited is reported as an error.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------- CUDA keywords
#define PATCHCORE_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
// Shared memory is declared through the macros of shared_memory.cuh, which are `extern __shared__` and `__shared__`
// declarations under nvcc and these here. `extern __shared__ T name[]` has no C++ spelling. A static variable is the
// member v of a local struct (name##_emu_var, which keeps T's alignment, an __align__ in T included) inside a
// `static thread_local` emu::StaticShared slot (name##_emu_slot) that puts guard bytes before and after it; `name` is a
// reference to v (an array's type and sizeof stay those of the array). emu::static_shared poisons v and arms the guards
// on the first pass of each block through the declaration, and the worker checks them when the block ends (an overrun
// is an error that names the variable). A bare `__shared__` would not be poisoned, so it does not compile.
#define DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(emu::dynamic_shared())
#define STATIC_SHARED(T, name, ...)                                      \
    struct name##_emu_var {                                              \
        T v __VA_ARGS__;                                                 \
    };                                                                   \
    static thread_local emu::StaticShared<name##_emu_var> name##_emu_slot; \
    auto& name = emu::static_shared(name##_emu_slot, #name).v
#define __shared__ static_assert(false, "declare shared memory with STATIC_SHARED (shared_memory.cuh), which the emulator poisons at each block's start");

// ---------------------------------------------------------------- vector types and built-in variables
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }

extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace emu {
void* dynamic_shared();
// The blocks this OS thread has run, counted from 1 (0 before its first). Not reset between launches: the
// `static thread_local` copies of static shared memory, and the blocks that last poisoned them, live as long as the thread.
extern thread_local unsigned long long block_serial;
// A static shared variable (V: STATIC_SHARED's struct, its one member v the variable) between guard bytes: `before`
// (at least 64 bytes, a multiple of V's alignment, so v follows it directly) and, from v's last byte on, V's tail
// padding and `after` (at least 64 bytes, at least v's size: an overrun by up to the variable's own size stays inside
// the guard instead of overwriting other data). The guards hold guard_byte(i), their i-th byte, from the block's first
// pass through the declaration until the block ends; then the worker checks them (emu.cpp).
template <class V>
struct StaticShared {
    static constexpr size_t BEFORE = alignof(V) > 64 ? alignof(V) : 64;
    static constexpr size_t AFTER = sizeof(V) > 64 ? sizeof(V) : 64;
    unsigned char before[BEFORE];
    V var;
    unsigned char after[AFTER];
    unsigned long long poisonedIn;  // the block (block_serial) that last poisoned var and armed the guards
};
// The guards' pattern: not a repeated byte, so that neither the poison nor a typical constant overwrites it unchanged.
constexpr unsigned char guard_byte(size_t i) { return (unsigned char)(0xA5u ^ (i * 29u)); }
// Fills a guard of `bytes` bytes with the pattern and adds it to the guards the worker checks at the block's end (name:
// the variable; after: whether it follows the variable or precedes it).
void arm_static_guard(unsigned char* guard, size_t bytes, const char* name, bool after);
// STATIC_SHARED's pass through its declaration: the first in a block poisons the variable's bytes and arms its guards.
template <class V>
V& static_shared(StaticShared<V>& s, const char* name) {
    if (s.poisonedIn != block_serial) {
        static_assert(sizeof(StaticShared<V>) >= StaticShared<V>::BEFORE + sizeof(V) + StaticShared<V>::AFTER,
                      "a guard slot with no room for its guards");
        unsigned char* const v = reinterpret_cast<unsigned char*>(&s.var.v);
        if (v != s.before + StaticShared<V>::BEFORE || v + sizeof(V) != s.after ||
            reinterpret_cast<uintptr_t>(v) % alignof(V) != 0) {
            std::fprintf(stderr, "emu: static shared memory `%s` is not laid out between its guards or not aligned\n",
                         name);
            std::abort();
        }
        std::memset(v, 0xff, sizeof s.var.v);
        arm_static_guard(s.before, StaticShared<V>::BEFORE, name, false);
        // from the variable's end: V's tail padding (an __align__ larger than the variable's size) is guard too
        arm_static_guard(v + sizeof s.var.v, sizeof(V) - sizeof s.var.v + StaticShared<V>::AFTER, name, true);
        s.poisonedIn = block_serial;
    }
    return s.var;
}
// Barriers: the calling fiber waits until the others that must arrive have (see emu.cpp).
void sync_block();
void sync_named(int id, int threads);
// Warp exchange: every lane of `mask` publishes 8 bytes and gets every lane's (all[32]); one warp barrier. Lanes of the
// mask that have exited count as arrived only where CUDA allows it (__syncwarp); for data exchanges they are an error.
// atRelease, if given, runs once, in the last lane to arrive, before any lane goes on: a warp-collective instruction
// (ldmatrix, mma) computes every lane's result there, through pointers into the waiting lanes' stacks that they
// published, so it sees the operands all at one instant as the hardware does.
const uint64_t* exchange(unsigned mask, uint64_t mine, bool exitedLanesArrived = false,
                         void (*atRelease)(const uint64_t* all) = nullptr);
// Back to the scheduler, still runnable (a spin-wait's __nanosleep).
void spin();
int lane();

template <class T>
uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffled types are at most 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// The schedule of later launches, overriding EMU_ORDER and EMU_ASYNC: order 0 forward, 1 reverse, 2 random; late 0 or 1
// (when async copies and wgmma complete); −1 gives a setting back to the environment. Not during a launch.
void configure(int order, int late);

using Body = std::function<void()>;
// Runs body() as every thread of every block. allResident: a worker per block (a grid whose blocks wait for one another,
// as a cooperative launch guarantees); else EMU_WORKERS of them, default the cores (at least 2).
void run_grid(dim3 grid, dim3 block, size_t sharedBytes, const Body& body, bool allResident = false);

// KERNEL(k, grid, block[, shared]) (args...) in kernels_test.cu: the emulated `k<<<grid, block, shared>>>(args...)`;
// cooperative_launcher: the emulated cudaLaunchCooperativeKernel (every block resident at once).
template <class... P>
struct Launch {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t shared;
    bool allResident = false;
    template <class... A>
    void operator()(A&&... a) const {
        const std::tuple<P...> args(static_cast<P>(std::forward<A>(a))...);
        const auto k = kernel;
        run_grid(grid, block, shared, [&] { std::apply(k, args); }, allResident);
    }
};
template <class... P>
Launch<P...> launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared = 0) {
    return {kernel, grid, block, shared};
}
template <class... P>
Launch<P...> cooperative_launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared = 0) {
    return {kernel, grid, block, shared, true};
}
}  // namespace emu

// ---------------------------------------------------------------- synchronization and warp intrinsics
inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::exchange(mask, 0, true); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __nanosleep(unsigned ns);

// Shuffles within segments of `width` lanes (a power of two ≤ 32); a source outside the caller's segment (later ones
// for xor and down, earlier ones for up) gives the caller its own value, as the CUDA documentation specifies.
inline void check_width(int width) {
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        std::fprintf(stderr, "emu: shuffle width %d is not a power of two ≤ 32\n", width);
        std::abort();
    }
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    check_width(width);
    const uint64_t* all = emu::exchange(mask, emu::to_bits(v));
    const int l = emu::lane();
    return emu::from_bits<T>(all[(l & ~(width - 1)) + (src & (width - 1))]);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
    check_width(width);
    const uint64_t* all = emu::exchange(mask, emu::to_bits(v));
    const unsigned l = (unsigned)emu::lane(), src = l ^ (unsigned)laneMask, end = (l & ~(unsigned)(width - 1)) + width;
    return emu::from_bits<T>(all[src >= end ? l : src]);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    check_width(width);
    const uint64_t* all = emu::exchange(mask, emu::to_bits(v));
    const long long l = emu::lane(), src = l - (long long)delta, begin = l & ~(long long)(width - 1);
    return emu::from_bits<T>(all[src < begin ? l : src]);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    check_width(width);
    const uint64_t* all = emu::exchange(mask, emu::to_bits(v));
    const long long l = emu::lane(), src = l + (long long)delta, end = (l & ~(long long)(width - 1)) + width;
    return emu::from_bits<T>(all[src >= end ? l : src]);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    const uint64_t* all = emu::exchange(mask, pred != 0);
    unsigned r = 0;
    for (int i = 0; i < 32; ++i)
        if ((mask >> i & 1u) && all[i]) r |= 1u << i;
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
template <class T>
unsigned __match_any_sync(unsigned mask, T v) {
    const uint64_t* all = emu::exchange(mask, emu::to_bits(v));
    const uint64_t mine = all[emu::lane()];
    unsigned r = 0;
    for (int i = 0; i < 32; ++i)
        if ((mask >> i & 1u) && all[i] == mine) r |= 1u << i;
    return r;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
    const uint64_t* all = emu::exchange(mask, v);
    unsigned r = 0;
    for (int i = 0; i < 32; ++i)
        if (mask >> i & 1u) r += (unsigned)all[i];
    return r;
}

// ---------------------------------------------------------------- the inline PTX of the kernels, as functions
// The kernel sources call these in their `#ifdef PATCHCORE_EMU` branches (flash_attention.cu, row_pipeline.cuh,
// softmax_exp.cuh), in place of the asm statements.
namespace emu {
// cp.async of `bytes` (4, 8 or 16) from global to shared memory, the first srcBytes of them copied and the rest zeroed
// (src is not read when srcBytes is 0). When the copy lands is EMU_ASYNC: `eager` at once, `late` at the issuing
// thread's cp.async.wait that covers it (a read before the wait sees the NaN poison or stale data); the default is
// eager under EMU_ORDER=forward and late otherwise, so the two orders the tests run try both.
void cp_async(void* dst, const void* src, int bytes, int srcBytes);
void cp_async_commit();
// cp.async.wait_group n: every copy of this thread's groups but the n most recent has landed.
void cp_async_wait(int n);
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16: lanes 8i..8i+7 give the rows of 8×8 matrix i (16-byte
// aligned); out[i] of lane l is M_i[l/4][2(l%4)..+1], with trans M_i[2(l%4)..+1][l/4]. All 32 lanes must call it.
void ldmatrix(uint32_t* out, const void* row, int count, bool trans);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, c += a·b on the fragments of the PTX ISA's "Matrix fragments for
// mma.m16n8k16" (g = lane/4, q = lane%4): a0 = A[g][2q..], a1 = A[g+8][2q..], a2 = A[g][2q+8..], a3 = A[g+8][2q+8..];
// b0 = B[2q..][g], b1 = B[2q+8..][g]; c0,c1 = C[g][2q..], c2,c3 = C[g+8][2q..]. Products exact, sums in fp32.
void mma_m16n8k16_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
// mbarrier (sm_90), addressed by 32-bit shared-window addresses: init, arrive, arrive with expected transaction bytes,
// wait for the phase of a parity to complete. The state lives in the barrier's 8 bytes, in the emulator's own format.
void mbar_init(uint32_t bar, int count);
void mbar_arrive(uint32_t bar);
void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes);
void mbar_wait(uint32_t bar, uint32_t parity);
// cp.async.mbarrier.arrive.noinc: this thread's earlier cp.async copies land, then one arrival.
void cp_async_mbar_arrive(uint32_t bar);
// cp.async.bulk global → shared completing `bytes` of bar's transaction count; lands at once (EMU_ASYNC eager) or when
// a thread first waits on bar (late).
void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar);
// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 (sm_90a), called by all 128 threads of a warpgroup: d (this
// thread's N/2 accumulators, the m16n8 C layout per warp: d[4j + i] is row 16·warp + lane/4 + 8·(i/2), column
// 8j + 2·(lane%4) + i%2) = (scaleD ? d : 0) + A·B. A is aRegs (this thread's mma.sync A fragment of rows 16·warp ..)
// or, when aRegs is null, the shared-memory matrix of descA; B that of descB. Descriptors: 128-byte swizzle only;
// K-major (trans 0): element (row r, k) at start + (r/8)·SBO + (r%8)·128 + 2k; MN-major (trans 1): element (mn, k)
// at start + (mn/64)·LBO + (k/8)·SBO + (k%8)·128 + 2·(mn%64); the swizzle then XORs address bits 4-6 with bits 7-9.
// It runs at once (EMU_ASYNC eager) or at the wgmma.wait_group that covers it (late: reading d or changing an operand
// before the wait shows).
void wgmma(float* d, int n, const uint32_t* aRegs, uint64_t descA, uint64_t descB, bool scaleD, bool transA, bool transB);
void wgmma_commit();
// cp.async.bulk.tensor.4d tile load: the box of `map` at coordinates (innermost first) c0..c3 into shared memory at dst
// (1024-byte aligned), rows of 128 bytes with the 128-byte swizzle, elements outside the tensor zero; completes the
// box's bytes on mbarrier bar. Landing as bulk_load's. The map's 128 bytes are the emulator's encoding (TensorMap).
struct TensorMap {
    uint64_t magic;  // TENSOR_MAP_MAGIC
    uint64_t address;
    uint64_t dims[4];     // innermost first
    uint64_t strides[3];  // bytes, of dimensions 1..3
    uint32_t box[4];
    uint32_t rank, elementBytes, swizzle128;
};
constexpr uint64_t TENSOR_MAP_MAGIC = 0x50414d54554d45ull;  // "EMUTMAP"
void tma_load_4d(uint32_t dst, const void* map, uint32_t bar, int c0, int c1, int c2, int c3);
void wgmma_wait(int n);
// setmaxnreg.{inc,dec}.sync.aligned.u32 count (sm_90a): warpgroup-collective like wgmma, so all 128 threads of the
// warpgroup must execute it with the same count and direction (a thread that exits or stops at another collective op
// instead is an error or a deadlock); the count must be a multiple of 8 in [24, 256]; an inc may not lower the
// warpgroup's count nor a dec raise it (before its first setmaxnreg the count is taken to be at most 65536 / threads
// of the block). No other effect: the emulator has no register file.
void setmaxnreg(int count, bool increase);
// bar.arrive id, threads: counts toward the named barrier without waiting for it.
void arrive_named(int id, int threads);
// ex2.approx.ftz.f32: 2^x, results below 2^-126 flushed to +0.
inline float ex2_approx_ftz(float x) {
    const float y = std::exp2(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}
}  // namespace emu

// ---------------------------------------------------------------- atomics (blocks run concurrently: real ones)
template <class T>
T atomicAdd(T* p, T v) {
    if constexpr (std::is_floating_point_v<T>) {
        T old;
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        for (T sum = old + v; !__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);)
            sum = old + v;
        return old;
    } else {
        return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
    }
}
template <class T>
T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
template <class T>
T atomicCAS(T* p, T expected, T desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
template <class T>
T atomicMax(T* p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {}
    return old;
}

// ---------------------------------------------------------------- cache-hinted loads and stores, address spaces
template <class T>
T __ldg(const T* p) { return *p; }
template <class T>
T __ldcg(const T* p) { return *p; }
template <class T>
T __ldcs(const T* p) { return *p; }
template <class T>
void __stcs(T* p, T v) { *p = v; }
template <class T>
void __stcg(T* p, T v) { *p = v; }
// The 32-bit shared window: the emulator maps the block's dynamic shared memory at window address 1024 (the 1 KB below
// it is reserved, as on sm_90); other pointers have no window address here (an error).
namespace emu {
size_t shared_window_address(const void* p);
void* from_shared_window(uint32_t address, size_t bytes);
}  // namespace emu
inline size_t __cvta_generic_to_shared(const void* p) { return emu::shared_window_address(p); }
namespace emu {
// st.shared through a 32-bit shared-window address.
template <class T>
void st_shared(uint32_t address, T v) { std::memcpy(from_shared_window(address, sizeof(T)), &v, sizeof(T)); }
}  // namespace emu

// ---------------------------------------------------------------- math and bit intrinsics
template <class A, class B>
constexpr std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <class A, class B>
constexpr std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
