package dev.patchcore.backend.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Tensor maps for the Hopper tensor memory accelerator (TMA), made by the driver's {@code cuTensorMapEncodeTiled}:
 * JCuda 12.6 does not wrap it, so it is bound from {@code libcuda.so.1} through FFM (as GPU.md advises for calls JCuda
 * lacks). A map is the 128-byte {@code CUtensorMap} a kernel takes by value ({@code const __grid_constant__
 * CUtensorMap}); {@link KernelArgs} passes it as such. Enum values from CUDA 13's {@code cuda.h}
 * ({@code CUtensorMapDataType}, {@code CUtensorMapSwizzle}, {@code CUtensorMapL2promotion}); stable ABI.
 */
final class TensorMaps {
    static final int CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9;
    static final int CU_TENSOR_MAP_INTERLEAVE_NONE = 0;
    static final int CU_TENSOR_MAP_SWIZZLE_128B = 3;
    static final int CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3;
    static final int CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0;  // out-of-bounds elements read as zero
    static final int BYTES = 128;

    /** A CUtensorMap's bytes, passed to a kernel by value. */
    record TensorMap(byte[] bytes) {
        TensorMap {
            if (bytes.length != BYTES) throw new IllegalArgumentException("a CUtensorMap has " + BYTES + " bytes, got " + bytes.length);
        }

        @Override public String toString() { return "TensorMap[" + BYTES + " bytes]"; }
    }

    /**
     * The shape of a bf16 tensor map: sizes innermost first, byte strides of dimensions 1 … rank − 1 (multiples of
     * 16), the box copied per request, with the 128-byte swizzle (so box[0] · 2 ≤ 128).
     */
    record Bf16Tiled(long address, long[] dims, long[] strideBytes, int[] box) {
        Bf16Tiled {
            int rank = dims.length;
            if (rank < 1 || rank > 5 || strideBytes.length != rank - 1 || box.length != rank)
                throw new IllegalArgumentException("tensor map: rank " + rank + " with " + strideBytes.length + " strides and a "
                        + box.length + "-dimensional box");
            if ((address & 15) != 0) throw new IllegalArgumentException("tensor map: the address must be 16-byte aligned");
            for (long s : strideBytes)
                if (s % 16 != 0) throw new IllegalArgumentException("tensor map: stride " + s + " bytes is not a multiple of 16");
            for (int b : box)
                if (b < 1 || b > 256) throw new IllegalArgumentException("tensor map: box size " + b + " outside 1..256");
            if (box[0] * 2 > 128) throw new IllegalArgumentException("tensor map: a 128-byte-swizzled box row is at most 64 bf16");
        }
    }

    private final MethodHandle encode;  // null when the driver lacks the call
    private final String missing;

    TensorMaps() {
        MethodHandle h = null;
        String why = null;
        try {
            SymbolLookup driver = SymbolLookup.libraryLookup("libcuda.so.1", Arena.global());
            h = driver.find("cuTensorMapEncodeTiled").map(s -> Linker.nativeLinker().downcallHandle(s, FunctionDescriptor.of(JAVA_INT,
                    ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT))).orElse(null);
            if (h == null) why = "libcuda.so.1 has no cuTensorMapEncodeTiled (driver older than CUDA 12)";
        } catch (IllegalArgumentException | UnsatisfiedLinkError e) {
            why = "cannot open libcuda.so.1: " + e.getMessage();
        }
        encode = h;
        missing = why;
    }

    /** Whether maps can be made (the driver exports cuTensorMapEncodeTiled). */
    boolean available() { return encode != null; }

    /** Why maps cannot be made; null when they can. */
    String unavailableReason() { return missing; }

    /**
     * cuTensorMapEncodeTiled for {@code t}: bf16, no interleave, 128-byte swizzle, L2 promotion 256 B, zero fill. A map
     * depends only on the request, and a training step asks for the same few (its scratch addresses repeat from step
     * to step), so the last {@link #CACHED} maps are kept rather than encoded again on every attention call.
     */
    TensorMap encode(Bf16Tiled t) {
        if (encode == null) throw new CudaUnavailableException(missing);
        Key key = new Key(t);
        TensorMap cached = recent.get(key);
        if (cached != null) return cached;
        TensorMap made = encodeNow(t);
        recent.put(key, made);
        return made;
    }

    static final int CACHED = 64;

    /** A request by value (Bf16Tiled's arrays compare by identity); no strings built: a lookup is on every attention call. */
    private static final class Key {
        private final Bf16Tiled spec;
        private final int hash;

        Key(Bf16Tiled spec) {
            this.spec = spec;
            this.hash = ((Long.hashCode(spec.address()) * 31 + Arrays.hashCode(spec.dims())) * 31 + Arrays.hashCode(spec.strideBytes())) * 31
                    + Arrays.hashCode(spec.box());
        }

        @Override public boolean equals(Object o) {
            return o instanceof Key k && k.hash == hash && k.spec.address() == spec.address() && Arrays.equals(k.spec.dims(), spec.dims())
                    && Arrays.equals(k.spec.strideBytes(), spec.strideBytes()) && Arrays.equals(k.spec.box(), spec.box());
        }

        @Override public int hashCode() { return hash; }
    }

    private final Map<Key, TensorMap> recent = new LinkedHashMap<>(16, 0.75f, true) {
        @Override protected boolean removeEldestEntry(Map.Entry<Key, TensorMap> eldest) { return size() > CACHED; }
    };

    private TensorMap encodeNow(Bf16Tiled t) {
        int rank = t.dims().length;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment map = a.allocate(BYTES, 128);
            MemorySegment dims = a.allocate(JAVA_LONG, rank), strides = a.allocate(JAVA_LONG, Math.max(1, rank - 1));
            MemorySegment box = a.allocate(JAVA_INT, rank), elementStrides = a.allocate(JAVA_INT, rank);
            for (int i = 0; i < rank; i++) {
                dims.setAtIndex(JAVA_LONG, i, t.dims()[i]);
                box.setAtIndex(JAVA_INT, i, t.box()[i]);
                elementStrides.setAtIndex(JAVA_INT, i, 1);
            }
            for (int i = 0; i < rank - 1; i++) strides.setAtIndex(JAVA_LONG, i, t.strideBytes()[i]);
            int r = (int) encode.invokeExact(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rank, MemorySegment.ofAddress(t.address()), dims,
                    strides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
            DriverCalls.check(r, "cuTensorMapEncodeTiled(dims " + Arrays.toString(t.dims()) + ", box " + Arrays.toString(t.box()) + ")");
            return new TensorMap(map.toArray(JAVA_BYTE));
        } catch (CudaException | CudaUnavailableException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }
}
