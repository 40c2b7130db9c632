package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import it.unimi.dsi.fastutil.longs.Long2ObjectOpenHashMap;

import java.util.ArrayDeque;
import java.util.ArrayList;

/**
 * Step-scoped buffers recycled by exact element count. A training step asks for the same sizes in the same
 * order every time, so after the first step every request is served from the free lists and nothing new is
 * allocated; {@link #pooledBytes()} makes that observable.
 */
final class ScratchPool {
    private final Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> freeF32 = new Long2ObjectOpenHashMap<>();
    private final Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> freeI32 = new Long2ObjectOpenHashMap<>();
    private final ArrayList<CpuStorage> handedOut = new ArrayList<>();
    private long pooledBytes;

    CpuStorage take(DType dtype, long count) {
        Long2ObjectOpenHashMap<ArrayDeque<CpuStorage>> free = switch (dtype) {
            case F32 -> freeF32;
            case I32 -> freeI32;
            case BF16 -> throw new IllegalArgumentException("the CPU backend computes in F32 and has no BF16 tensors");
        };
        ArrayDeque<CpuStorage> list = free.get(count);
        CpuStorage s = list == null ? null : list.pollFirst();
        if (s == null) {
            s = CpuStorage.of(dtype, count);
            pooledBytes += s.bytes();
        }
        handedOut.add(s);
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
            var free = s.dtype() == DType.F32 ? freeF32 : freeI32;
            free.computeIfAbsent(s.length(), _ -> new ArrayDeque<>()).addLast(s);
        }
        handedOut.subList(mark, handedOut.size()).clear();
    }

    /** Bytes of every scratch buffer ever created (free plus handed out). */
    long pooledBytes() { return pooledBytes; }
}
