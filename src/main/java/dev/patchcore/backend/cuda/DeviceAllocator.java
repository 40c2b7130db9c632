package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * Caching device allocator. Persistent tensors (parameters, optimizer state) get their own block and are freed
 * explicitly. Scratch tensors come from per-size-class free lists; {@link #releaseScratch()} returns every block
 * handed out since the last release, so after the first training step the same shapes reuse the same blocks and
 * no device allocation happens in the hot loop ({@link Stats#scratchDeviceAllocations()} stops growing).
 *
 * <p>With {@code poison} on, every scratch block is filled with NaN (0x7FC07FC0 is a NaN both as one F32 and as two
 * BF16 halves) before it is handed out, so a kernel that forgets to write part of its output is caught.
 */
public final class DeviceAllocator implements AutoCloseable {
    /** 0x7FC0 is a quiet bf16 NaN; 0x7FC07FC0 is a quiet f32 NaN. */
    static final int NAN_PATTERN = 0x7FC07FC0;

    private final DeviceMemory memory;
    private boolean poison;
    private final Map<Long, ArrayDeque<Long>> freeByClass = new HashMap<>();
    private final ArrayList<long[]> scratchInUse = new ArrayList<>(); // {address, classBytes}
    private final IdentityHashMap<Tensor, Long> persistent = new IdentityHashMap<>();
    private long persistentBytes, scratchReservedBytes, scratchInUseBytes, peakScratchInUseBytes, scratchDeviceAllocations;

    public record Stats(long persistentBytes, int persistentTensors, long scratchReservedBytes, long scratchInUseBytes,
                        long peakScratchInUseBytes, long scratchDeviceAllocations) {}

    DeviceAllocator(DeviceMemory memory, boolean poison) {
        this.memory = memory;
        this.poison = poison;
    }

    public void setPoison(boolean poison) { this.poison = poison; }

    public boolean poison() { return poison; }

    Tensor allocatePersistent(DType dtype, int... shape) {
        long bytes = Math.max(bytesOf(dtype, shape), 1);
        long address = allocateWithRetry(bytes);
        memory.zero(address, bytes);
        Tensor t = new Tensor(new CudaStorage(address, bytes), dtype, shape);
        persistent.put(t, address);
        persistentBytes += bytes;
        return t;
    }

    void freePersistent(Tensor t) {
        Long address = persistent.remove(t);
        if (address == null) throw new IllegalArgumentException("not a persistent tensor of this backend: " + t);
        persistentBytes -= t.storage().bytes();
        memory.release(address);
    }

    Tensor scratch(DType dtype, int... shape) {
        long cls = SizeClasses.classOf(bytesOf(dtype, shape));
        ArrayDeque<Long> free = freeByClass.get(cls);
        long address;
        if (free != null && !free.isEmpty()) {
            address = free.pop();
        } else {
            address = allocateWithRetry(cls);
            scratchReservedBytes += cls;
            scratchDeviceAllocations++;
        }
        scratchInUse.add(new long[] {address, cls});
        scratchInUseBytes += cls;
        peakScratchInUseBytes = Math.max(peakScratchInUseBytes, scratchInUseBytes);
        if (poison) memory.fill32(address, NAN_PATTERN, cls / 4);
        return new Tensor(new CudaStorage(address, cls), dtype, shape);
    }

    void releaseScratch() { releaseScratchTo(0); }

    /** How many scratch blocks are handed out: a mark for {@link #releaseScratchTo}. */
    int scratchMark() { return scratchInUse.size(); }

    /**
     * Returns the scratch blocks handed out after {@code mark} to the free lists. Later launches on the stream that
     * reuse them run after every earlier reader, so no wait is needed (as for {@link #releaseScratch}).
     */
    void releaseScratchTo(int mark) {
        if (mark < 0 || mark > scratchInUse.size())
            throw new IllegalArgumentException("scratch mark " + mark + " is not in [0, " + scratchInUse.size() + "] (released already?)");
        for (int i = mark; i < scratchInUse.size(); i++) {  // in hand-out order, as releaseScratch always did
            long[] block = scratchInUse.get(i);
            freeByClass.computeIfAbsent(block[1], c -> new ArrayDeque<>()).push(block[0]);
            scratchInUseBytes -= block[1];
        }
        scratchInUse.subList(mark, scratchInUse.size()).clear();
    }

    /** Returns cached scratch blocks that nobody holds to the device (after an out-of-memory, or on close). */
    void trimScratch() {
        for (var e : freeByClass.entrySet()) {
            for (long address : e.getValue()) {
                memory.release(address);
                scratchReservedBytes -= e.getKey();
            }
            e.getValue().clear();
        }
    }

    /** Starts a new peak: from now on {@link Stats#peakScratchInUseBytes} counts from what is in use now. */
    void resetScratchPeak() { peakScratchInUseBytes = scratchInUseBytes; }

    public Stats stats() {
        return new Stats(persistentBytes, persistent.size(), scratchReservedBytes, scratchInUseBytes, peakScratchInUseBytes,
                scratchDeviceAllocations);
    }

    private long allocateWithRetry(long bytes) {
        try {
            return memory.allocate(bytes);
        } catch (GpuOutOfMemoryException e) {
            trimScratch();
            return memory.allocate(bytes);
        }
    }

    static long bytesOf(DType dtype, int... shape) {
        long n = 1;
        for (int s : shape) {
            if (s < 0) throw new IllegalArgumentException("negative dimension " + s);
            n = Math.multiplyExact(n, s);
        }
        return n * dtype.bytes();
    }

    @Override
    public void close() {
        releaseScratch();
        trimScratch();
        for (long address : persistent.values()) memory.release(address);
        persistent.clear();
        persistentBytes = 0;
    }
}
