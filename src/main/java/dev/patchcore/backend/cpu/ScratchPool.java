package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import it.unimi.dsi.fastutil.longs.Long2ObjectOpenHashMap;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * Step-scoped buffers recycled by exact element count. A training step asks for the same sizes in the same
 * order every time, so after the first step every request is served from the free lists and nothing new is
 * allocated; {@link #pooledBytes()} makes that observable.
 *
 * <p>Callers whose sizes change from call to call (fine-tuning pads each micro-batch to its longest example; generation
 * runs one more position per token) would otherwise keep a set of buffers for every size ever seen. So the pool is
 * bounded: when a request finds no free buffer of its size and the pool would exceed twice the most scratch ever in use
 * at once, the least recently released free buffers are dropped (the garbage collector takes them) until it fits. A
 * training step of fixed shapes allocates nothing once its sizes are pooled; a run whose validation sizes differ
 * from its training sizes and whose peak is small (with {@code --recompute}) may drop and allocate a few buffers per
 * validation, which costs an allocation, not a result.
 */
final class ScratchPool {
    private final Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> freeF32 = new Long2ObjectOpenHashMap<>();
    private final Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> freeI32 = new Long2ObjectOpenHashMap<>();
    private long releases;  // buffers returned so far: each free buffer's releasedAt orders them for eviction
    private final ArrayList<CpuStorage> handedOut = new ArrayList<>();
    private long pooledBytes, inUseBytes, peakInUseBytes;

    CpuStorage take(DType dtype, long count) {
        Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> free = freeLists(dtype);
        ArrayDeque<CpuStorage> list = free.get(count);
        CpuStorage s = list == null ? null : list.pollFirst();
        if (s == null) {
            long bytes = 4 * count;
            peakInUseBytes = Math.max(peakInUseBytes, inUseBytes + bytes);
            dropLeastRecentlyReleasedAbove(2 * peakInUseBytes - bytes);
            s = CpuStorage.of(dtype, count);
            pooledBytes += s.bytes();
        }
        handedOut.add(s);
        inUseBytes += s.bytes();
        return s;
    }

    void releaseAll() { releaseTo(0); }

    /** How many buffers are handed out: a mark for {@link #releaseTo}. */
    int mark() { return handedOut.size(); }

    /** Returns the buffers handed out after {@code mark} to the free lists. */
    void releaseTo(int mark) {
        if (mark < 0 || mark > handedOut.size())
            throw new IllegalArgumentException("scratch mark " + mark + " is not in [0, " + handedOut.size() + "] (released already?)");
        for (int i = mark; i < handedOut.size(); i++) {
            CpuStorage s = handedOut.get(i);
            s.releasedAt = releases++;
            freeLists(s.dtype()).computeIfAbsent(s.length(), _ -> new ArrayDeque<>()).addLast(s);
            inUseBytes -= s.bytes();
        }
        handedOut.subList(mark, handedOut.size()).clear();
    }

    /** Bytes of the scratch buffers the pool holds (free plus handed out). */
    long pooledBytes() { return pooledBytes; }

    /**
     * Drops free buffers, least recently released first, until the pool holds at most {@code limit} bytes or none is
     * free. Each free list is in release order, so the oldest is at the head of one of them. (Only on an allocation
     * over the bound: the step's hot path takes and returns buffers without allocating.)
     */
    private void dropLeastRecentlyReleasedAbove(long limit) {
        while (pooledBytes > limit) {
            ArrayDeque<CpuStorage> oldest = null;
            for (var lists : List.of(freeF32, freeI32))
                for (ArrayDeque<CpuStorage> list : lists.values())
                    if (!list.isEmpty() && (oldest == null || list.peekFirst().releasedAt < oldest.peekFirst().releasedAt)) oldest = list;
            if (oldest == null) return;
            pooledBytes -= oldest.pollFirst().bytes();
        }
    }

    private Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> freeLists(DType dtype) {
        return switch (dtype) {
            case F32 -> freeF32;
            case I32 -> freeI32;
            case BF16 -> throw new IllegalArgumentException("the CPU backend computes in F32 and has no BF16 tensors");
        };
    }
}
