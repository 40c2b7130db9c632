// Warp-per-row pipelines for the row kernels (RMSNorm, RoPE): each warp walks its rows (grid-stride) through a ring of
// STAGES shared-memory slots filled by cp.async, so STAGES − 1 rows per warp are in flight while it computes on one.
// The rows in flight sit in shared memory, not in registers, so the bytes in flight per SM no longer depend on how
// many registers the row's math needs.
//
// A lane copies, and later reads, only its own 16-byte chunks: chunk k of a lane is columns (lane + 32k)·8 .. +7 of
// the row, stored at slot[k·32 + lane] (a warp's 32 copies or reads of one k are 512 contiguous bytes: no bank
// conflicts). `cp.async.wait_group` makes a thread's own completed copies visible to that thread, so no __syncwarp or
// barrier is needed between the copy and the read.
//
// Usage per warp (one commit group per row, empty groups past the last row, so the group count stays uniform):
//   prologue: for s < STAGES − 1: issue row (first + s·stride) into slot s; commit
//   loop i:   issue row (i + STAGES − 1) into slot (i + STAGES − 1) % STAGES; commit; wait<STAGES − 1>;
//             read slot i % STAGES into registers; compute; store
// The slot refilled in iteration i is the one read in iteration i − 1, whose values the lane has already consumed.
// That is what makes the refill safe without a barrier: every shared-memory read of a slot must feed computation in
// the iteration that reads it (never be deferred past the next issue), and a lane may only read chunks it copied.
#pragma once

#include "common.cuh"

namespace rowpipe {

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

#ifndef PATCHCORE_EMU
// 16-byte global → shared copy that bypasses L1 (each row is read once).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's most recent commit groups are still pending.
template <int N>
__device__ __forceinline__ void wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
#else
// The CPU emulator (src/test/cuda/emu): a copy lands when issued or at the wait that covers it (EMU_ASYNC).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) { emu::cp_async(dst, src, 16, 16); }
__device__ __forceinline__ void commit() { emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void wait() { emu::cp_async_wait(N); }
#endif

// Issues this lane's chunks of one row of width d (d % 8 == 0, d ≤ 256·G, 16-byte aligned row start).
template <int G>
__device__ __forceinline__ void issue_row(bf16x8* slot, const bf16* row, int lane, int d) {
#pragma unroll
    for (int k = 0; k < G; ++k) {
        const int c = (lane + 32 * k) * 8;
        if (c < d) cp_async16(slot + k * 32 + lane, row + c);
    }
}

// Reads this lane's chunks of a landed row back into registers (chunks past d are left unset and never used).
template <int G>
__device__ __forceinline__ void read_row(bf16x8 (&v)[G], const bf16x8* slot, int lane, int d) {
#pragma unroll
    for (int k = 0; k < G; ++k)
        if ((lane + 32 * k) * 8 < d) v[k] = slot[k * 32 + lane];
}

}  // namespace rowpipe
