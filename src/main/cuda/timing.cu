// Benchmark support: a one-thread kernel that holds the stream for a given time, so that the launches queued behind
// it run back to back, with no host gaps between them, when it ends. `bench kernels` times those launches between
// two events (the first recorded right after this kernel) to separate the kernels' own time from the host's launch
// overhead. Launch: grid 1, block 1. Semantics: KernelBench / CudaBackend.timeQueued.
#include "common.cuh"

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Returns once the GPU's global timer has advanced by `ns` nanoseconds from the kernel's start.
extern "C" __global__ void __launch_bounds__(1) timing_spin_ns(unsigned long long ns) {
    const unsigned long long start = global_ns();
    while (global_ns() - start < ns) __nanosleep(2000);
}
