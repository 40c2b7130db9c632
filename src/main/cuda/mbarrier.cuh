// Shared-memory mbarriers and bulk asynchronous copies (sm_90 and later): the helpers the flash attention TMA
// kernels (flash_wgmma.cu) and the bulk-copy RMSNorm backward (rmsnorm.cu) share. Addresses are 32-bit shared-window
// addresses (__cvta_generic_to_shared). Only compiled for device code of compute capability 9.0 or later, and for the
// CPU emulator.
#pragma once
#include <stdint.h>

#if defined(PATCHCORE_EMU)
// The CPU emulator (src/test/cuda/emu, emu.h) runs these as functions.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) { emu::mbar_init(bar, count); }
__device__ __forceinline__ void mbar_arrive(uint32_t bar) { emu::mbar_arrive(bar); }
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) { emu::mbar_wait(bar, parity); }
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t bar) { emu::cp_async_mbar_arrive(bar); }
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) { emu::mbar_arrive_expect_tx(bar, bytes); }
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    emu::bulk_load(dst, src, bytes, bar);
}
__device__ __forceinline__ void fence_proxy_async_shared() {}
__device__ __forceinline__ void fence_mbarrier_init() {}

#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
// Blocks until the barrier's phase of parity `parity` has completed (acquire).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "PP_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra PP_WAIT;\n"
        "}\n" ::"r"(bar), "r"(parity) : "memory");
}
// One arrive-on the barrier once all of this thread's earlier cp.async copies have landed (counted in the barrier's
// expected arrivals: .noinc).
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// One arrival on the barrier that also announces `bytes` more of asynchronous copies (its transaction count).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global memory to this CTA's shared memory by the
// bulk-copy engine, completing that many bytes of mbarrier bar's transaction count when they have landed.
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}
// Orders this thread's earlier generic-proxy accesses of shared memory before its later async-proxy ones (a bulk
// copy into a buffer the CTA's threads have just read).
__device__ __forceinline__ void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Makes initialized mbarriers visible to the asynchronous units (the bulk-copy engine, TMA).
__device__ __forceinline__ void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

#endif  // PATCHCORE_EMU, __CUDA_ARCH__ >= 900
