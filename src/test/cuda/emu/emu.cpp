// The emulator's scheduler and runtime (see emu.h for the model): blocks on worker threads, each block's threads as
// fibers that switch only at barriers and warp-synchronous ops.
#include "cuda.h"
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

enum class Wait { NONE, BLOCK, NAMED, WARP, DONE, GROUP, REGS };

struct WgmmaOp;

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

// A cp.async not yet landed (EMU_ASYNC=late).
struct Copy {
    char* dst;
    const char* src;
    int bytes, srcBytes;
    void land() const {
        if (srcBytes) std::memcpy(dst, src, srcBytes);
        std::memset(dst + srcBytes, 0, bytes - srcBytes);
    }
};

struct Fiber {
    Context ctx;
    std::vector<Copy> copies;   // issued, not landed; the first groups.back() of them committed
    std::vector<size_t> groups;  // the end (in copies) of each committed group, oldest first
    std::vector<std::shared_ptr<WgmmaOp>> wgOps;  // wgmma issued, maybe not run (EMU_ASYNC=late)
    std::vector<size_t> wgGroups;                 // the end (in wgOps) of each committed wgmma group
    Wait wait = Wait::NONE;
    unsigned mask = 0;           // WARP: the lanes that must arrive
    int barrier = 0, count = 0;  // NAMED: barrier id and its thread count
    uint64_t published = 0;      // WARP: this lane's value; GROUP: its WgmmaLane's address; REGS: count·2 + inc
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
    int maxnreg[8] = {};  // per warpgroup: the register count its last setmaxnreg set (0: none yet in this block)
    const Body* body = nullptr;
    char* shared = nullptr;  // dynamic shared memory: sharedBytes ending at an inaccessible page (overruns fault)
    char* sharedBase = nullptr;
    size_t sharedBytes = 0, sharedMapped = 0;
    Order order = Order::FORWARD;
    std::vector<int> sequence;  // the order in which the scheduler looks for a fiber to resume
    // Copies that complete on an mbarrier, not landed yet (EMU_ASYNC=late): a cp.async.bulk (its bytes counted off the
    // barrier's transaction count), or a thread's cp.async copies with the arrival cp.async.mbarrier.arrive.noinc
    // promised once they land. They land when a thread waits on the barrier and its phase has not completed.
    struct Deferred {
        std::vector<Copy> copies;
        uint32_t bar, tx;
        bool arrive;
        int owner;  // the issuing thread
    };
    std::vector<Deferred> deferred;
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
        if (const char* e = std::getenv("EMU_SEED")) {  // EMU_ORDER=random: another fixed schedule per seed
            uint64_t z = std::strtoull(e, nullptr, 10) + 0x9e3779b97f4a7c15ull;  // splitmix64's finalizer
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            state = (z ^ (z >> 31)) | 1u;  // xorshift64 needs a nonzero state
        }
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
}  // namespace

thread_local unsigned long long block_serial = 0;

namespace {
// The guards of the static shared variables this worker's block has passed the declaration of (emu.h, StaticShared).
struct StaticGuard {
    unsigned char* bytes;
    size_t size;
    const char* name;
    bool after;
};
thread_local std::vector<StaticGuard> staticGuards;

// At the block's end: a guard byte that no longer holds its pattern is a write past the variable's end (or before
// its start), which on a GPU would land in another variable or fault.
void check_static_guards() {
    for (const StaticGuard& g : staticGuards) {
        size_t first = g.size, last = 0, count = 0;
        for (size_t i = 0; i < g.size; ++i)
            if (g.bytes[i] != guard_byte(i)) first = std::min(first, i), last = i, ++count;
        if (!count) continue;
        std::lock_guard<std::mutex> lock(reporting);
        std::fflush(stdout);  // the program's output so far (which check was running), not lost in the abort
        if (g.after)
            std::fprintf(stderr, "emu: static shared memory `%s` overrun: %zu guard byte(s) past its end written, at %zu..%zu "
                         "bytes after it (block %u,%u,%u)\n", g.name, count, first, last, blockIdx.x,
                         blockIdx.y, blockIdx.z);
        else
            std::fprintf(stderr, "emu: static shared memory `%s` underrun: %zu guard byte(s) before its start written, "
                         "at %zu..%zu bytes before it (block %u,%u,%u)\n", g.name, count, g.size - last,
                         g.size - first, blockIdx.x, blockIdx.y, blockIdx.z);
        std::fflush(stderr);
        std::abort();
    }
    staticGuards.clear();
}
}  // namespace

void arm_static_guard(unsigned char* guard, size_t bytes, const char* name, bool after) {
    for (size_t i = 0; i < bytes; ++i) guard[i] = guard_byte(i);
    staticGuards.push_back({guard, bytes, name, after});
}

namespace {

template <class Pick>
void land_deferred(Worker* w, Pick pick);

// EMU_ASYNC: eager (copies land when issued) or late (at the wait); default eager in forward order, late otherwise.
// configure()'s choices (−1: the environment's).
std::atomic<int> configuredOrder{-1}, configuredLate{-1};

bool async_late() {
    if (const int c = configuredLate.load(); c >= 0) return c != 0;
    static const bool late = [] {
        const char* e = std::getenv("EMU_ASYNC");
        if (!e) {
            const char* o = std::getenv("EMU_ORDER");
            return o && std::strcmp(o, "forward") != 0;
        }
        if (!std::strcmp(e, "eager")) return false;
        if (!std::strcmp(e, "late")) return true;
        std::fprintf(stderr, "emu: EMU_ASYNC=%s is not eager or late\n", e);
        std::exit(2);
    }();
    return late;
}

// Forgets the first `count` items of a thread's async queue (cp.async copies or wgmma) and the commit groups they end;
// the later groups' ends move down by `count`.
template <class T>
void retire(std::vector<T>& items, std::vector<size_t>& groups, size_t count) {
    items.erase(items.begin(), items.begin() + count);
    size_t kept = 0;
    for (size_t end : groups)
        if (end > count) groups[kept++] = end - count;
    groups.resize(kept);
}

// How many items of a queue `wait_group n` completes: those of every committed group but the n most recent.
size_t covered(const std::vector<size_t>& groups, int n) {
    return (int)groups.size() > n ? groups[groups.size() - 1 - n] : 0;
}

// Lands the first `count` copies of f (and forgets them and the groups they end).
void land_copies(Fiber& f, size_t count) {
    for (size_t i = 0; i < count; ++i) f.copies[i].land();
    retire(f.copies, f.groups, count);
}

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
    land_copies(w->fibers[w->current], w->fibers[w->current].copies.size());  // a thread's copies land even if unawaited
    wgmma_wait(0);                                                             // and its wgmmas run
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
    static const char* names[] = {"running", "__syncthreads", "named barrier", "warp-synchronous op", "exited",
                                  "warpgroup op (wgmma)", "warpgroup op (setmaxnreg)"};
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
    ++block_serial;  // static shared memory: poisoned (its guards armed) again on the first pass through its declaration
    const int n = w->threads;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; ++i) {
        Fiber& f = w->fibers[i];
        f.wait = Wait::NONE;
        f.copies.clear();
        f.groups.clear();
        f.wgOps.clear();
        f.wgGroups.clear();
        make_context(f.ctx, w->stacks + i * (STACK_BYTES + page) + page, STACK_BYTES, fiber_main);
    }
    w->done = 0;
    w->atBlock = 0;
    w->deferred.clear();
    std::fill(std::begin(w->named), std::end(w->named), 0);
    std::fill(std::begin(w->maxnreg), std::end(w->maxnreg), 0);
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
    check_static_guards();
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

// bar.sync (waiting) or bar.arrive (not): one more arrival of the `threads` the barrier waits for.
static void named_barrier(int id, int threads, bool waiting) {
    Worker* w = tw;
    if (id < 0 || id >= 16 || threads <= 0 || threads % 32 != 0 || threads > w->threads)
        fail("bar.sync or bar.arrive with a bad id or thread count");
    Fiber& me = w->fibers[w->current];
    if (waiting) {
        me.wait = Wait::NAMED;
        me.barrier = id;
        me.count = threads;
    }
    if (++w->named[id] == threads) {
        for (Fiber& f : w->fibers)
            if (f.wait == Wait::NAMED && f.barrier == id) {
                if (f.count != threads) fail("bar.sync: threads of one barrier give different counts");
                f.wait = Wait::NONE;
            }
        w->named[id] = 0;
        w->released = true;
    }
    if (waiting) yield();
}

void sync_named(int id, int threads) { named_barrier(id, threads, true); }
void arrive_named(int id, int threads) { named_barrier(id, threads, false); }

const uint64_t* exchange(unsigned mask, uint64_t mine, bool exitedLanesArrived, void (*atRelease)(const uint64_t* all)) {
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
        if (atRelease) atRelease(all);
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

// ---------------------------------------------------------------- inline PTX stand-ins (emu.h)
void cp_async(void* dst, const void* src, int bytes, int srcBytes) {
    if ((bytes != 4 && bytes != 8 && bytes != 16) || srcBytes < 0 || srcBytes > bytes)
        fail("cp.async: a size other than 4, 8 or 16 bytes, or a source size outside 0..size");
    if (reinterpret_cast<uintptr_t>(dst) % bytes || (srcBytes && reinterpret_cast<uintptr_t>(src) % bytes))
        fail("cp.async: an address not aligned to the copy size");
    const Copy c{static_cast<char*>(dst), static_cast<const char*>(src), bytes, srcBytes};
    if (async_late()) tw->fibers[tw->current].copies.push_back(c);
    else c.land();
}

void cp_async_commit() {
    Fiber& f = tw->fibers[tw->current];
    f.groups.push_back(f.copies.size());  // may repeat the previous end: an empty group
}

void cp_async_wait(int n) {
    Fiber& f = tw->fibers[tw->current];
    if (n < 0) fail("cp.async.wait_group with a negative count");
    const int me = tw->current;  // copies this thread handed to an mbarrier complete too
    land_deferred(tw, [me](const Worker::Deferred& d) { return d.owner == me && d.arrive; });
    land_copies(f, covered(f.groups, n));
}

namespace {
struct LdmatrixLane {
    const uint16_t* row;
    uint32_t* out;
    int count;
    bool trans;
};

void ldmatrix_release(const uint64_t* all) {
    const LdmatrixLane* lanes[32];
    for (int l = 0; l < 32; ++l) lanes[l] = reinterpret_cast<const LdmatrixLane*>(all[l]);
    const int count = lanes[0]->count;
    const bool trans = lanes[0]->trans;
    for (int l = 0; l < 32; ++l)
        if (lanes[l]->count != count || lanes[l]->trans != trans) fail("ldmatrix: lanes of one warp disagree on the shape");
    for (int l = 0; l < 8 * count; ++l)
        if (reinterpret_cast<uintptr_t>(lanes[l]->row) % 16) fail("ldmatrix: a row address not 16-byte aligned");
    for (int l = 0; l < 32; ++l)
        for (int i = 0; i < count; ++i) {
            uint16_t lo, hi;
            if (trans) {
                lo = lanes[8 * i + 2 * (l % 4)]->row[l / 4];
                hi = lanes[8 * i + 2 * (l % 4) + 1]->row[l / 4];
            } else {
                lo = lanes[8 * i + l / 4]->row[2 * (l % 4)];
                hi = lanes[8 * i + l / 4]->row[2 * (l % 4) + 1];
            }
            lanes[l]->out[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
}

struct MmaLane {
    float* c;
    const uint32_t* a;
    uint32_t b0, b1;
};

float bf16_lo(uint32_t r) { return __uint_as_float(r << 16); }
float bf16_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }

void mma_release(const uint64_t* all) {
    float A[16][16], B[16][8], C[16][8];
    const MmaLane* lanes[32];
    for (int l = 0; l < 32; ++l) {
        const MmaLane& m = *(lanes[l] = reinterpret_cast<const MmaLane*>(all[l]));
        const int g = l / 4, q = l % 4;
        for (int r = 0; r < 4; ++r) {  // a0: rows g, columns 2q; a1: g+8, 2q; a2: g, 2q+8; a3: g+8, 2q+8
            const int row = g + 8 * (r & 1), col = 2 * q + 8 * (r >> 1);
            A[row][col] = bf16_lo(m.a[r]);
            A[row][col + 1] = bf16_hi(m.a[r]);
        }
        B[2 * q][g] = bf16_lo(m.b0);
        B[2 * q + 1][g] = bf16_hi(m.b0);
        B[2 * q + 8][g] = bf16_lo(m.b1);
        B[2 * q + 9][g] = bf16_hi(m.b1);
        C[g][2 * q] = m.c[0];
        C[g][2 * q + 1] = m.c[1];
        C[g + 8][2 * q] = m.c[2];
        C[g + 8][2 * q + 1] = m.c[3];
    }
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
            float s = C[i][j];
            for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];  // bf16 × bf16 is exact in fp32
            C[i][j] = s;
        }
    for (int l = 0; l < 32; ++l) {
        const int g = l / 4, q = l % 4;
        float* c = lanes[l]->c;
        c[0] = C[g][2 * q];
        c[1] = C[g][2 * q + 1];
        c[2] = C[g + 8][2 * q];
        c[3] = C[g + 8][2 * q + 1];
    }
}
}  // namespace

void configure(int order, int late) {
    if (order < -1 || order > 2 || late < -1 || late > 1) fail("configure: order −1..2, late −1..1");
    configuredOrder = order;
    configuredLate = late;
}

// ---- the shared window and mbarriers
constexpr size_t WINDOW_BASE = 1024;

size_t shared_window_address(const void* p) {
    const Worker* w = tw;
    const char* c = static_cast<const char*>(p);
    if (!w || c < w->shared || c > w->shared + w->sharedBytes)
        fail("a shared-window address of memory outside the block's dynamic shared memory (the emulator's window holds "
             "only that)");
    return WINDOW_BASE + (size_t)(c - w->shared);
}

void* from_shared_window(uint32_t address, size_t bytes) {
    const Worker* w = tw;
    if (address < WINDOW_BASE || address - WINDOW_BASE + bytes > w->sharedBytes)
        fail("a shared-window address outside the block's dynamic shared memory");
    return w->shared + (address - WINDOW_BASE);
}

namespace {
struct Mbarrier {  // the emulator's format of an mbarrier's 8 bytes
    int16_t pending, expected;
    int32_t tx : 31;
    uint32_t phase : 1;
};
static_assert(sizeof(Mbarrier) == 8, "an mbarrier is 8 bytes");

Mbarrier& mbarrier(uint32_t bar) {
    if (bar % 8) fail("an mbarrier address not 8-byte aligned");
    return *static_cast<Mbarrier*>(from_shared_window(bar, 8));
}

// The phase completes when every expected arrival has come and every announced byte has landed.
void mbar_complete_if_done(Mbarrier& m) {
    if (m.pending == 0 && m.tx == 0) {
        m.phase ^= 1u;
        m.pending = m.expected;
    }
}

void mbar_arrive_on(Mbarrier& m) {
    if (m.expected <= 0) fail("mbarrier arrive on a barrier never initialized");
    if (--m.pending < 0) fail("mbarrier: more arrivals than its count in one phase");
    mbar_complete_if_done(m);
}

void land(const Worker::Deferred& d) {
    for (const Copy& c : d.copies) c.land();
    Mbarrier& m = mbarrier(d.bar);
    m.tx -= (int32_t)d.tx;
    if (d.arrive) mbar_arrive_on(m);
    else mbar_complete_if_done(m);
}

// Copies that complete on mbarrier d.bar: landed now (EMU_ASYNC eager) or when a waiter needs them (late).
void complete_on_barrier(Worker::Deferred&& d) {
    mbarrier(d.bar);  // checked now
    if (async_late()) tw->deferred.push_back(std::move(d));
    else land(d);
}

// Lands the deferred copies that `pick` selects, in issue order.
template <class Pick>
void land_deferred(Worker* w, Pick pick) {
    for (size_t i = 0; i < w->deferred.size();)
        if (pick(w->deferred[i])) {
            const Worker::Deferred d = std::move(w->deferred[i]);
            w->deferred.erase(w->deferred.begin() + i);
            land(d);
        } else {
            ++i;
        }
}
}  // namespace

void mbar_init(uint32_t bar, int count) {
    if (count <= 0 || count > 32767) fail("mbarrier.init with a count outside 1..32767");
    Mbarrier& m = mbarrier(bar);
    m.pending = m.expected = (int16_t)count;
    m.tx = 0;
    m.phase = 0;
}

void mbar_arrive(uint32_t bar) { mbar_arrive_on(mbarrier(bar)); }

void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    Mbarrier& m = mbarrier(bar);
    m.tx += (int32_t)bytes;
    mbar_arrive_on(m);
}

void mbar_wait(uint32_t bar, uint32_t parity) {
    Worker* w = tw;
    std::chrono::steady_clock::time_point since;
    for (long spins = 0;; ++spins) {
        if (mbarrier(bar).phase != (parity & 1u)) return;  // the phase of that parity has completed
        land_deferred(w, [bar](const Worker::Deferred& d) { return d.bar == bar; });  // it has not: they land now
        if (mbarrier(bar).phase != (parity & 1u)) return;  // the phase of that parity has completed
        if (spins % 4096 == 0) {  // every other thread of the block has had thousands of turns meanwhile
            const auto now = std::chrono::steady_clock::now();
            if (spins == 0) since = now;
            else if (now - since > std::chrono::seconds(20)) fail("an mbarrier wait that has not completed in 20 s");
        }
        spin();
    }
}

void cp_async_mbar_arrive(uint32_t bar) {
    Worker* w = tw;
    Fiber& f = w->fibers[w->current];
    complete_on_barrier({std::move(f.copies), bar, 0, true, w->current});
    f.copies.clear();
    f.groups.clear();
}

void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    if (bytes % 16 || dst % 16 || reinterpret_cast<uintptr_t>(src) % 16)
        fail("cp.async.bulk: a size or an address not a multiple of 16 bytes");
    Worker::Deferred d{{Copy{static_cast<char*>(from_shared_window(dst, bytes)), static_cast<const char*>(src), (int)bytes,
                             (int)bytes}},
                       bar, bytes, false, tw->current};
    complete_on_barrier(std::move(d));
}

void tma_load_4d(uint32_t dst, const void* mapBytes, uint32_t bar, int c0, int c1, int c2, int c3) {
    TensorMap map;
    std::memcpy(&map, mapBytes, sizeof map);
    if (map.magic != TENSOR_MAP_MAGIC) fail("cp.async.bulk.tensor: a tensor map not encoded by the emulator");
    if (map.rank != 4 || map.elementBytes != 2 || !map.swizzle128 || map.box[0] * 2 != 128)
        fail("cp.async.bulk.tensor: only rank-4 bf16 maps with 128-byte swizzled rows of 64 elements are emulated");
    if (dst % 1024) fail("cp.async.bulk.tensor: a 128-byte-swizzled destination not 1024-byte aligned");
    const int coord[4] = {c0, c1, c2, c3};
    Worker::Deferred d{{}, bar, 0, false, tw->current};
    const uint32_t rowsOfBox = map.box[1] * map.box[2] * map.box[3];
    for (uint32_t r = 0; r < rowsOfBox; ++r) {
        const long long i1 = coord[1] + (long long)(r % map.box[1]), i2 = coord[2] + (long long)(r / map.box[1] % map.box[2]),
                        i3 = coord[3] + (long long)(r / (map.box[1] * map.box[2]));
        const bool rowInside = i1 >= 0 && i1 < (long long)map.dims[1] && i2 >= 0 && i2 < (long long)map.dims[2] && i3 >= 0 &&
                               i3 < (long long)map.dims[3];
        for (int chunk = 0; chunk < 8; ++chunk) {
            uint32_t a = dst + r * 128 + chunk * 16;
            a ^= ((a >> 7) & 7) << 4;
            const long long col = coord[0] + chunk * 8LL;
            const bool inside = rowInside && col >= 0 && col + 8 <= (long long)map.dims[0];
            if (rowInside && col < (long long)map.dims[0] && !inside) fail("cp.async.bulk.tensor: a box row ending inside a 16-byte chunk");
            const char* src = inside ? reinterpret_cast<const char*>(map.address + col * 2 + i1 * map.strides[0] +
                                                                     i2 * map.strides[1] + i3 * map.strides[2])
                                     : nullptr;
            d.copies.push_back(Copy{static_cast<char*>(from_shared_window(a, 16)), src, 16, inside ? 16 : 0});
        }
    }
    d.tx = rowsOfBox * 128;
    complete_on_barrier(std::move(d));
}

// ---- wgmma
namespace {
struct WgmmaLane {
    float* d;
    const uint32_t* a;
    int n;
    uint64_t descA, descB;
    bool scaleD, transA, transB;
};

struct WgmmaOp {
    WgmmaLane lanes[128];
    bool done = false;
};

// The shared-window address of element (row-or-column `mn`, k) of the operand a descriptor describes (emu.h).
uint32_t wgmma_address(uint64_t desc, bool mnMajor, int mn, int k) {
    if ((desc >> 62) != 1) fail("wgmma: a descriptor without the 128-byte swizzle (the only mode emulated)");
    if ((desc >> 49 & 7) != 0) fail("wgmma: a descriptor with a matrix base offset (not emulated)");
    const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4, lbo = (uint32_t)(desc >> 16 & 0x3FFF) << 4,
                   sbo = (uint32_t)(desc >> 32 & 0x3FFF) << 4;
    const uint32_t a = mnMajor ? start + (mn / 64) * lbo + (k / 8) * sbo + (k % 8) * 128 + (mn % 64) * 2
                               : start + (mn / 8) * sbo + (mn % 8) * 128 + k * 2;
    return a ^ (((a >> 7) & 7) << 4);
}

float shared_bf16(uint32_t address) {
    uint16_t h;
    std::memcpy(&h, from_shared_window(address, 2), 2);
    return __uint_as_float((uint32_t)h << 16);
}

void run_wgmma(WgmmaOp& op) {
    if (op.done) return;
    op.done = true;
    const WgmmaLane& l0 = op.lanes[0];
    const int n = l0.n;
    static thread_local float A[64][16], B[16][256];
    for (int t = 0; t < 128; ++t) {
        const WgmmaLane& l = op.lanes[t];
        if (l.n != n || l.descB != l0.descB || l.scaleD != l0.scaleD || l.transB != l0.transB || (l.a == nullptr) != (l0.a == nullptr)
            || (!l.a && (l.descA != l0.descA || l.transA != l0.transA)))
            fail("wgmma: threads of one warpgroup disagree on the shape or the operands");
        if (l.a) {  // the mma.sync A fragment of rows 16·warp .. 16·warp + 15
            const int row = 16 * (t / 32) + (t % 32) / 4, col = 2 * (t % 4);
            for (int r = 0; r < 4; ++r) {
                const int rr = row + 8 * (r & 1), cc = col + 8 * (r >> 1);
                A[rr][cc] = __uint_as_float(l.a[r] << 16);
                A[rr][cc + 1] = __uint_as_float(l.a[r] & 0xffff0000u);
            }
        }
    }
    if (!l0.a)
        for (int m = 0; m < 64; ++m)
            for (int k = 0; k < 16; ++k) A[m][k] = shared_bf16(wgmma_address(l0.descA, l0.transA, m, k));
    for (int k = 0; k < 16; ++k)
        for (int c = 0; c < n; ++c) B[k][c] = shared_bf16(wgmma_address(l0.descB, l0.transB, c, k));
    for (int t = 0; t < 128; ++t) {
        float* d = op.lanes[t].d;
        const int row0 = 16 * (t / 32) + (t % 32) / 4, col0 = 2 * (t % 4);
        for (int j = 0; j < n / 8; ++j)
            for (int i = 0; i < 4; ++i) {
                const int row = row0 + 8 * (i / 2), col = 8 * j + col0 + i % 2;
                float acc = l0.scaleD ? d[4 * j + i] : 0.f;
                for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];  // bf16 products are exact in fp32
                d[4 * j + i] = acc;
            }
    }
}
}  // namespace

void wgmma(float* d, int n, const uint32_t* aRegs, uint64_t descA, uint64_t descB, bool scaleD, bool transA, bool transB) {
    Worker* w = tw;
    if (n < 8 || n > 256 || n % 8) fail("wgmma: N outside 8..256 or not a multiple of 8");
    const int me = w->current, base = me & ~127;
    if (base + 128 > w->threads) fail("wgmma: a warpgroup past the block's threads");
    Fiber& f = w->fibers[me];
    WgmmaLane mine{d, aRegs, n, descA, descB, scaleD, transA, transB};
    f.wait = Wait::GROUP;
    f.published = reinterpret_cast<uint64_t>(&mine);
    for (int t = 0; t < 128; ++t)
        if (w->fibers[base + t].wait != Wait::GROUP) {
            yield();  // the last of the warpgroup to arrive issues it, and lets the others go
            return;
        }
    auto op = std::make_shared<WgmmaOp>();
    for (int t = 0; t < 128; ++t) {
        Fiber& o = w->fibers[base + t];
        op->lanes[t] = *reinterpret_cast<const WgmmaLane*>(o.published);
        o.wait = Wait::NONE;
        if (async_late()) o.wgOps.push_back(op);
    }
    if (!async_late()) run_wgmma(*op);
    w->released = true;
    yield();
}

void setmaxnreg(int count, bool increase) {
    Worker* w = tw;
    if (count < 24 || count > 256 || count % 8) fail("setmaxnreg: a register count outside [24, 256] or not a multiple of 8");
    const int me = w->current, base = me & ~127;
    if (base + 128 > w->threads) fail("setmaxnreg: a warpgroup past the block's threads");
    Fiber& f = w->fibers[me];
    f.wait = Wait::REGS;
    f.published = (uint64_t)count * 2 + increase;
    for (int t = 0; t < 128; ++t) {
        const Fiber& o = w->fibers[base + t];
        if (o.wait == Wait::DONE) fail("setmaxnreg: a thread of the warpgroup has exited (all 128 must execute it)");
        if (o.wait == Wait::REGS && o.published != f.published)
            fail("setmaxnreg: threads of one warpgroup give different counts or directions");
    }
    for (int t = 0; t < 128; ++t)
        if (w->fibers[base + t].wait != Wait::REGS) {
            yield();  // the last of the warpgroup to arrive lets the others go
            return;
        }
    // Before its first setmaxnreg a warpgroup holds what ptxas gave the kernel: unknown here, but at most the block's
    // share of the 64K registers (a multiple of 8, at most 256), so a dec above that is wrong whatever ptxas did.
    int& current = w->maxnreg[base / 128];
    const int atMost = current ? current : std::min(256, 65536 / w->threads / 8 * 8);
    if (!increase && count > atMost) fail("setmaxnreg.dec above the warpgroup's register count");
    if (increase && current && count < current) fail("setmaxnreg.inc below the warpgroup's register count");
    current = count;
    for (int t = 0; t < 128; ++t) w->fibers[base + t].wait = Wait::NONE;
    w->released = true;
    yield();
}

void wgmma_commit() {
    Fiber& f = tw->fibers[tw->current];
    f.wgGroups.push_back(f.wgOps.size());
}

void wgmma_wait(int n) {
    Fiber& f = tw->fibers[tw->current];
    if (n < 0) fail("wgmma.wait_group with a negative count");
    const size_t end = covered(f.wgGroups, n);
    for (size_t i = 0; i < end; ++i) run_wgmma(*f.wgOps[i]);
    retire(f.wgOps, f.wgGroups, end);
}

void ldmatrix(uint32_t* out, const void* row, int count, bool trans) {
    if (count != 1 && count != 2 && count != 4) fail("ldmatrix: a count other than 1, 2 or 4");
    LdmatrixLane me{static_cast<const uint16_t*>(row), out, count, trans};
    exchange(0xffffffffu, reinterpret_cast<uint64_t>(&me), false, ldmatrix_release);
}

void mma_m16n8k16_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    MmaLane me{c, a, b0, b1};
    exchange(0xffffffffu, reinterpret_cast<uint64_t>(&me), false, mma_release);
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
    static const Order environmentOrder = order_from_environment();
    const int configured = configuredOrder.load();
    const Order order = configured >= 0 ? (Order)configured : environmentOrder;
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
    if (const char* cc = std::getenv("EMU_CC")) {  // e.g. 9.0: the host code of a test takes its sm_90 paths
        if (std::sscanf(cc, "%d.%d", &prop->major, &prop->minor) != 2) {
            std::fprintf(stderr, "emu: EMU_CC=%s is not MAJOR.MINOR\n", cc);
            std::exit(2);
        }
    }
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, device);
    if (attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
    *value = prop.multiProcessorCount;
    return cudaSuccess;
}
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

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** funcPtr, unsigned cudaVersion, unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
    const bool found = std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0, versionOk = cudaVersion >= 12000;
    *funcPtr = found && versionOk ? reinterpret_cast<void*>(&cuTensorMapEncodeTiled) : nullptr;
    if (status)
        *status = !found ? cudaDriverEntryPointSymbolNotFound
                  : !versionOk ? cudaDriverEntryPointVersionNotSufficent : cudaDriverEntryPointSuccess;
    return cudaSuccess;
}

// ---------------------------------------------------------------- driver API: tensor maps
CUresult cuTensorMapEncodeTiled(CUtensorMap* tensorMap, CUtensorMapDataType type, cuuint32_t rank, void* address,
                                const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                const cuuint32_t* elementStrides, CUtensorMapInterleave interleave,
                                CUtensorMapSwizzle swizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill fill) {
    const auto refuse = [](const char* why) {
        std::fprintf(stderr, "emu: cuTensorMapEncodeTiled: %s\n", why);
        return CUDA_ERROR_INVALID_VALUE;
    };
    if (type != CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 || rank != 4 || interleave != CU_TENSOR_MAP_INTERLEAVE_NONE ||
        swizzle != CU_TENSOR_MAP_SWIZZLE_128B || fill != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
        return refuse("only rank-4 bf16 maps, no interleave, the 128-byte swizzle and zero fill are emulated");
    if (reinterpret_cast<uintptr_t>(address) % 16) return refuse("the address is not 16-byte aligned");
    if (box[0] != 64) return refuse("a 128-byte-swizzled box row must be 64 bf16 here (128 bytes)");
    emu::TensorMap m{};
    m.magic = emu::TENSOR_MAP_MAGIC;
    m.address = reinterpret_cast<uint64_t>(address);
    for (uint32_t i = 0; i < 4; ++i) {
        if (dims[i] < 1 || box[i] < 1 || box[i] > 256 || elementStrides[i] != 1)
            return refuse("a size of 0, a box size outside 1..256 or an element stride other than 1");
        if (i < 3 && strides[i] % 16) return refuse("a stride that is not a multiple of 16 bytes");
        m.dims[i] = dims[i];
        m.box[i] = box[i];
        if (i < 3) m.strides[i] = strides[i];
    }
    m.rank = 4;
    m.elementBytes = 2;
    m.swizzle128 = 1;
    static_assert(sizeof m <= sizeof *tensorMap, "the emulator's encoding fits a CUtensorMap");
    std::memset(tensorMap, 0, sizeof *tensorMap);
    std::memcpy(tensorMap, &m, sizeof m);
    return CUDA_SUCCESS;
}
