// The emulator's scheduler and runtime (see emu.h for the model): blocks on worker threads, each block's threads as
// fibers that switch only at barriers and warp-synchronous ops.
#include "cuda_runtime.h"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

// Switching fibers. On x86-64 a hand-written switch: save the callee-saved registers on the old stack, swap stack
// pointers, restore them from the new one (glibc's swapcontext also saves the signal mask, a system call per switch,
// which took half the run time). Elsewhere ucontext.
#if defined(__x86_64__)
extern "C" void emu_switch(void** saveSp, void* sp);
asm(R"(
    .pushsection .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .popsection
)");
struct Context {
    void* sp = nullptr;
};
// A fresh context on [stack, stack + bytes) that enters entry(), which must never return.
static void make_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
    auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
    auto* words = reinterpret_cast<void**>(top - 16);
    words[0] = reinterpret_cast<void*>(entry);  // where emu_switch's ret goes, leaving the stack as after a call
    words[1] = nullptr;
    c.sp = words - 6;                           // six callee-saved registers, popped as zeros
    std::memset(c.sp, 0, 6 * sizeof(void*));
}
static void switch_context(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};
static void make_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
static void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

namespace emu {
namespace {

constexpr size_t STACK_BYTES = 256 << 10;  // per fiber, with a guard page below it

std::mutex reporting;  // one report at a time: blocks on other workers may fail together

[[noreturn]] void fail(const char* what) {
    std::lock_guard<std::mutex> lock(reporting);
    std::fprintf(stderr, "emu: %s (block %u,%u,%u thread %u,%u,%u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z,
                 threadIdx.x, threadIdx.y, threadIdx.z);
    std::fflush(stderr);
    std::abort();
}

enum class Wait { NONE, BLOCK, NAMED, WARP, DONE };

// Which fiber runs first between two synchronization points (EMU_ORDER): a kernel that reads what another warp writes
// without a barrier in between gets the value in one order and not in the other, so running it both ways finds most
// missing barriers.
enum class Order { FORWARD, REVERSE, RANDOM };

Order order_from_environment() {
    const char* e = std::getenv("EMU_ORDER");
    if (!e || !std::strcmp(e, "forward")) return Order::FORWARD;
    if (!std::strcmp(e, "reverse")) return Order::REVERSE;
    if (!std::strcmp(e, "random")) return Order::RANDOM;
    std::fprintf(stderr, "emu: EMU_ORDER=%s is not forward, reverse or random\n", e);
    std::exit(2);
}

struct Fiber {
    Context ctx;
    Wait wait = Wait::NONE;
    unsigned mask = 0;           // WARP: the lanes that must arrive
    int barrier = 0, count = 0;  // NAMED: barrier id and its thread count
    uint64_t published = 0;      // WARP: this lane's value
    uint64_t received[32];       // WARP: every lane's value, copied at the release
};

// One OS thread of a launch (made for it, so memory is mapped once): runs blocks one after another, each block's
// threads as fibers.
struct Worker {
    std::vector<Fiber> fibers;
    Context scheduler;
    char* stacks = nullptr;
    size_t mapped = 0;
    int threads = 0, current = 0, done = 0, atBlock = 0;
    int named[16] = {};
    const Body* body = nullptr;
    char* shared = nullptr;  // dynamic shared memory: sharedBytes ending at an inaccessible page (overruns fault)
    char* sharedBase = nullptr;
    size_t sharedBytes = 0, sharedMapped = 0;
    Order order = Order::FORWARD;
    std::vector<int> sequence;  // the order in which the scheduler looks for a fiber to resume
    bool released = false;      // a barrier let fibers go since the scheduler last looked
    uint64_t state = 0x9e3779b97f4a7c15ull;

    uint64_t random() {  // xorshift64: the same schedule on every run of a given launch order
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }

    ~Worker() {
        if (stacks) munmap(stacks, mapped);
        if (sharedBase) munmap(sharedBase, sharedMapped);
    }

    void map_shared(size_t bytes) {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded = (bytes + 15) / 16 * 16;
        const size_t body = (rounded + page - 1) / page * page;
        void* p = mmap(nullptr, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) fail("cannot map dynamic shared memory");
        sharedBase = static_cast<char*>(p);
        sharedMapped = body + page;
        if (mprotect(sharedBase + body, page, PROT_NONE) != 0) fail("cannot protect dynamic shared memory's guard page");
        shared = sharedBase + body - rounded;  // 16-byte aligned, its end (rounded up to 16) at the guard page
        sharedBytes = bytes;
    }

    void prepare(int n, Order o) {
        threads = n;
        order = o;
        fibers.assign(n, Fiber{});
        sequence.resize(n);
        for (int i = 0; i < n; ++i) sequence[i] = o == Order::REVERSE ? n - 1 - i : i;
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        mapped = n * (STACK_BYTES + page);
        void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fail("cannot map fiber stacks");
        stacks = static_cast<char*>(p);
        for (int i = 0; i < n; ++i)  // overflow traps
            if (mprotect(stacks + i * (STACK_BYTES + page), page, PROT_NONE) != 0)
                fail("cannot protect a fiber stack's guard page (vm.max_map_count? set EMU_WORKERS lower)");
    }
};

thread_local Worker* tw = nullptr;

void set_thread_index(int i) {
    const unsigned bx = blockDim.x, by = blockDim.y;
    threadIdx = {i % bx, (i / bx) % by, i / (bx * by)};
}

// Back to the scheduler; returns when the fiber is released (the scheduler sets threadIdx before resuming it).
void yield() {
    Worker* w = tw;
    switch_context(w->fibers[w->current].ctx, w->scheduler);
}

void release_block_barrier_if_complete(Worker* w) {
    if (w->atBlock == 0 || w->atBlock != w->threads - w->done) return;
    for (Fiber& f : w->fibers)
        if (f.wait == Wait::BLOCK) f.wait = Wait::NONE;
    w->atBlock = 0;
    w->released = true;
}

void fiber_main() {
    Worker* w = tw;
    (*w->body)();
    w->fibers[w->current].wait = Wait::DONE;
    ++w->done;
    release_block_barrier_if_complete(w);
    switch_context(w->fibers[w->current].ctx, w->scheduler);
    fail("a finished fiber was resumed");
}

[[noreturn]] void deadlock(Worker* w) {
    std::lock_guard<std::mutex> lock(reporting);
    std::fprintf(stderr, "emu: deadlock in block %u,%u,%u: no thread can run; waiting threads:\n", blockIdx.x, blockIdx.y,
                 blockIdx.z);
    static const char* names[] = {"running", "__syncthreads", "named barrier", "warp-synchronous op", "exited"};
    for (int i = 0; i < w->threads; ++i) {
        const Fiber& f = w->fibers[i];
        if (f.wait == Wait::DONE) continue;
        std::fprintf(stderr, "  thread %d (warp %d lane %d): %s", i, i / 32, i % 32, names[(int)f.wait]);
        if (f.wait == Wait::WARP) std::fprintf(stderr, " mask %08x", f.mask);
        if (f.wait == Wait::NAMED) std::fprintf(stderr, " id %d count %d", f.barrier, f.count);
        std::fprintf(stderr, "\n");
    }
    std::fprintf(stderr, "(a warp-synchronous op whose mask names an exited lane, or a barrier not every thread reaches)\n");
    std::fflush(stderr);
    std::abort();
}

void run_block(Worker* w) {
    const int n = w->threads;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; ++i) {
        Fiber& f = w->fibers[i];
        f.wait = Wait::NONE;
        make_context(f.ctx, w->stacks + i * (STACK_BYTES + page) + page, STACK_BYTES, fiber_main);
    }
    w->done = 0;
    w->atBlock = 0;
    std::fill(std::begin(w->named), std::end(w->named), 0);
    if (w->sharedBytes) std::memset(w->shared, 0xff, w->sharedBytes);  // NaN: unwritten shared memory shows
    // Greedy: after each switch the scan goes on from where it was, but starts over from the first fiber of the order
    // when a barrier has released fibers, so the first warps run ahead as far as their barriers let them (a warp that
    // reuses shared memory before a slower warp has read it then shows), instead of all warps moving in lockstep.
    while (w->done < n) {
        bool ran = false;
        if (w->order == Order::RANDOM)
            for (int i = n - 1; i > 0; --i) std::swap(w->sequence[i], w->sequence[w->random() % (i + 1)]);
        for (int k = 0; k < n; ++k) {
            const int i = w->sequence[k];
            if (w->fibers[i].wait != Wait::NONE) continue;
            w->current = i;
            set_thread_index(i);
            w->released = false;
            switch_context(w->scheduler, w->fibers[i].ctx);
            ran = true;
            if (w->released && w->order != Order::RANDOM) k = -1;
        }
        if (!ran && w->done < n) deadlock(w);
    }
}

}  // namespace

int lane() { return tw->current & 31; }  // the fiber's index is the thread's linear index in the block

void* dynamic_shared() { return tw->shared; }

void spin() {
    if (tw) yield();  // stays runnable: the scheduler resumes the others first
}

void sync_block() {
    Worker* w = tw;
    w->fibers[w->current].wait = Wait::BLOCK;
    ++w->atBlock;
    release_block_barrier_if_complete(w);
    yield();
}

void sync_named(int id, int threads) {
    Worker* w = tw;
    if (id < 0 || id >= 16 || threads <= 0 || threads % 32 != 0 || threads > w->threads)
        fail("bar.sync with a bad id or thread count");
    Fiber& me = w->fibers[w->current];
    me.wait = Wait::NAMED;
    me.barrier = id;
    me.count = threads;
    if (++w->named[id] == threads) {
        for (Fiber& f : w->fibers)
            if (f.wait == Wait::NAMED && f.barrier == id) {
                if (f.count != threads) fail("bar.sync: threads of one barrier give different counts");
                f.wait = Wait::NONE;
            }
        w->named[id] = 0;
        w->released = true;
    }
    yield();
}

const uint64_t* exchange(unsigned mask, uint64_t mine, bool exitedLanesArrived) {
    Worker* w = tw;
    const int me = w->current, base = me & ~31;
    Fiber& f = w->fibers[me];
    if (!(mask >> (me & 31) & 1u)) fail("a warp-synchronous op whose mask leaves out the calling lane");
    f.wait = Wait::WARP;
    f.mask = mask;
    f.published = mine;
    bool complete = true;
    for (int l = 0; l < 32 && complete; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (base + l >= w->threads) fail("a warp-synchronous op whose mask names a lane past the block");
        const Fiber& o = w->fibers[base + l];
        complete = (o.wait == Wait::WARP && o.mask == mask) || (exitedLanesArrived && o.wait == Wait::DONE);
    }
    if (complete) {
        uint64_t all[32] = {};
        for (int l = 0; l < 32; ++l)
            if (mask >> l & 1u) all[l] = w->fibers[base + l].published;
        for (int l = 0; l < 32; ++l)
            if (mask >> l & 1u && w->fibers[base + l].wait == Wait::WARP) {
                Fiber& o = w->fibers[base + l];
                std::memcpy(o.received, all, sizeof all);
                o.wait = Wait::NONE;
            }
        w->released = true;
    }
    yield();
    return w->fibers[me].received;
}

void run_grid(dim3 grid, dim3 block, size_t sharedBytes, const Body& body, bool allResident) {
    const long long blocks = (long long)grid.x * grid.y * grid.z;
    const int threads = (int)(block.x * block.y * block.z);
    if (blocks <= 0 || threads <= 0 || threads > 1024 || grid.y > 65535 || grid.z > 65535 || block.z > 64)
        fail("launch: bad grid or block");
    if (sharedBytes > 227 * 1024) fail("launch: more than 227 KB of dynamic shared memory");
    int workers = (int)std::clamp(std::thread::hardware_concurrency(), 2u, 8u);
    if (const char* e = std::getenv("EMU_WORKERS")) workers = std::max(1, std::atoi(e));
    workers = allResident ? (int)std::min<long long>(blocks, 4096) : (int)std::min<long long>(workers, blocks);
    if (allResident && workers < blocks) fail("launch: a cooperative grid of more than 4096 blocks");
    static const Order order = order_from_environment();
    std::atomic<long long> next{0};
    auto work = [&] {
        Worker w;
        tw = &w;
        blockDim = block;
        gridDim = grid;
        w.body = &body;
        w.map_shared(sharedBytes);
        w.prepare(threads, order);
        for (long long b; (b = next.fetch_add(1)) < blocks;) {
            blockIdx = {(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((long long)grid.x * grid.y))};
            run_block(&w);
        }
        tw = nullptr;
    };
    if (workers == 1) {
        work();
        return;
    }
    std::vector<std::thread> pool;
    for (int i = 0; i < workers; ++i) pool.emplace_back(work);
    for (auto& t : pool) t.join();
}

}  // namespace emu

// A spinning thread lets the rest of its block run (and the OS the other workers), so a spin-wait ends as on a GPU.
void __nanosleep(unsigned) {
    emu::spin();
    sched_yield();
}

// ---------------------------------------------------------------- runtime API
struct EmuEvent {
    std::chrono::steady_clock::time_point at;
};

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
cudaError_t cudaMallocBytes(void** p, size_t bytes) {
    *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
    std::memset(p, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
    std::memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
    std::memset(prop, 0, sizeof *prop);
    std::snprintf(prop->name, sizeof prop->name, "CPU emulator (patchcore src/test/cuda/emu)");
    const char* sms = std::getenv("EMU_SMS");
    prop->multiProcessorCount = sms ? std::max(1, std::atoi(sms)) : 4;
    prop->major = 8;
    prop->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int threads, size_t) {
    *blocks = std::max(1, std::min(32, 2048 / std::max(1, threads)));  // an sm_80 SM's 2048 threads, registers not counted
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new EmuEvent{};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->at = std::chrono::steady_clock::now();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return cudaSuccess;
}
