package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Size classes and the scratch pool's reuse, on a host fake of device memory. */
class DeviceAllocatorTest {
    /** Hands out fake addresses; can be told to run out of memory. */
    static final class FakeMemory implements DeviceMemory {
        final Map<Long, Long> live = new HashMap<>();
        long next = 1L << 32, limit = Long.MAX_VALUE, used, fills, zeros;

        @Override public long allocate(long bytes) {
            if (used + bytes > limit) throw new GpuOutOfMemoryException("fake out of memory");
            long a = next;
            next += (bytes + 255) / 256 * 256;
            live.put(a, bytes);
            used += bytes;
            return a;
        }

        @Override public void release(long address) {
            Long b = live.remove(address);
            if (b == null) throw new AssertionError("double free of " + address);
            used -= b;
        }

        @Override public void fill32(long address, int pattern, long count) {
            assertEquals(DeviceAllocator.NAN_PATTERN, pattern);
            assertTrue(count * 4 <= live.get(address));
            fills++;
        }

        @Override public void zero(long address, long bytes) { zeros++; }
    }

    @Test
    void sizeClassesAreMonotoneAlignedAndWasteAtMostAQuarter() {
        long prev = 0;
        for (long b = 0; b < (1L << 22); b += 97) {
            long c = SizeClasses.classOf(b);
            assertTrue(c >= b, "class holds the size");
            assertTrue(c >= prev, "monotone");
            assertEquals(0, c % 512, "512-byte granules");
            if (b > 4096) assertTrue(c <= b * 1.25 + 512, "waste bounded for " + b + " -> " + c);
            prev = c;
        }
        assertEquals(512, SizeClasses.classOf(1));
        assertEquals(1L << 20, SizeClasses.classOf(1L << 20));
        assertEquals((1L << 20) + (1L << 18), SizeClasses.classOf((1L << 20) + 1));
    }

    @Test
    void scratchIsReusedAfterReleaseWithoutNewDeviceAllocations() {
        FakeMemory mem = new FakeMemory();
        DeviceAllocator a = new DeviceAllocator(mem, false);
        Set<Long> first = new HashSet<>();
        for (int step = 0; step < 3; step++) {
            Set<Long> seen = new HashSet<>();
            for (int[] s : new int[][] {{4096, 1024}, {37, 129}, {1}, {4096, 1024}}) {
                Tensor t = a.scratch(DType.BF16, s);
                assertTrue(seen.add(CudaStorage.addressOf(t)), "two live scratch tensors never share a block");
            }
            if (step == 0) first.addAll(seen);
            else assertEquals(first, seen, "same blocks every step");
            a.releaseScratch();
        }
        assertEquals(4, a.stats().scratchDeviceAllocations(), "four live tensors per step: four blocks, allocated in step 1 only");
    }

    @Test
    void poisonFillsEveryScratchBlock() {
        FakeMemory mem = new FakeMemory();
        DeviceAllocator a = new DeviceAllocator(mem, true);
        a.scratch(DType.F32, 10);
        a.scratch(DType.BF16, 3);
        assertEquals(2, mem.fills);
        a.setPoison(false);
        a.scratch(DType.F32, 10);
        assertEquals(2, mem.fills);
    }

    @Test
    void persistentTensorsAreZeroedAndFreedOnce() {
        FakeMemory mem = new FakeMemory();
        DeviceAllocator a = new DeviceAllocator(mem, false);
        Tensor t = a.allocatePersistent(DType.F32, 3, 5);
        assertEquals(1, mem.zeros);
        assertEquals(60, a.stats().persistentBytes());
        a.freePersistent(t);
        assertEquals(0, a.stats().persistentBytes());
        assertThrows(IllegalArgumentException.class, () -> a.freePersistent(t));
    }

    @Test
    void outOfMemoryTrimsCachedScratchAndRetries() {
        FakeMemory mem = new FakeMemory();
        DeviceAllocator a = new DeviceAllocator(mem, false);
        a.scratch(DType.F32, 1 << 20); // 4 MiB
        a.releaseScratch();
        mem.limit = mem.used + (1 << 20); // the cached 4 MiB block is all that blocks the next allocation
        Tensor big = a.allocatePersistent(DType.F32, 1 << 20);
        assertNotEquals(0, CudaStorage.addressOf(big));
        assertEquals(0, a.stats().scratchReservedBytes());
        assertThrows(GpuOutOfMemoryException.class, () -> a.allocatePersistent(DType.F32, 1 << 22));
    }

    @Test
    void closeReleasesEverything() {
        FakeMemory mem = new FakeMemory();
        DeviceAllocator a = new DeviceAllocator(mem, false);
        a.allocatePersistent(DType.BF16, 100);
        a.scratch(DType.F32, 1000);
        a.scratch(DType.F32, 1000);
        a.close();
        assertTrue(mem.live.isEmpty());
        assertFalse(a.poison());
    }

    /** The scratch peak counts from a reset: a later, smaller phase gets its own peak. */
    @Test
    void scratchPeakRestartsFromWhatIsInUse() {
        DeviceAllocator a = new DeviceAllocator(new FakeMemory(), false);
        a.scratch(DType.F32, 1 << 20);
        a.scratch(DType.F32, 1 << 20);
        a.releaseScratch();
        assertEquals(8L << 20, a.stats().peakScratchInUseBytes());
        a.resetScratchPeak();
        assertEquals(0, a.stats().peakScratchInUseBytes());
        a.scratch(DType.F32, 1 << 18);
        assertEquals(1L << 20, a.stats().peakScratchInUseBytes());
    }

    /** A mark releases only the blocks handed out after it, and their bytes; the ones before stay in use. */
    @Test
    void releaseToAMarkKeepsWhatCameBefore() {
        DeviceAllocator a = new DeviceAllocator(new FakeMemory(), false);
        Tensor kept = a.scratch(DType.F32, 1 << 10);
        int mark = a.scratchMark();
        Tensor temp = a.scratch(DType.F32, 1 << 10);
        a.scratch(DType.F32, 1 << 12);
        a.releaseScratchTo(mark);
        assertEquals(mark, a.scratchMark());
        assertEquals(4L << 10, a.stats().scratchInUseBytes());
        Tensor again = a.scratch(DType.F32, 1 << 10);
        assertEquals(CudaStorage.addressOf(temp), CudaStorage.addressOf(again), "the released block is reused");
        assertNotEquals(CudaStorage.addressOf(kept), CudaStorage.addressOf(again));
        assertThrows(IllegalArgumentException.class, () -> a.releaseScratchTo(mark + 3));
    }
}
