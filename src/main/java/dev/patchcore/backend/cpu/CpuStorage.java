package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Storage;
import dev.patchcore.tensor.Tensor;

/** Heap memory behind a CPU tensor: a float[] for F32 or an int[] for I32 (exactly one is non-null). */
public final class CpuStorage implements Storage {
    private final float[] floats;
    private final int[] ints;
    /** {@link ScratchPool}'s release count when this buffer last went back to a free list (its eviction order). */
    long releasedAt;

    private CpuStorage(float[] floats, int[] ints) {
        this.floats = floats;
        this.ints = ints;
    }

    /** Zero-filled storage for {@code count} elements of {@code dtype}; BF16 is rejected (the CPU computes in F32). */
    public static CpuStorage of(DType dtype, long count) {
        if (count < 0 || count > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException("CPU tensor of " + count + " elements exceeds the Java array limit");
        return switch (dtype) {
            case F32 -> new CpuStorage(new float[(int) count], null);
            case I32 -> new CpuStorage(null, new int[(int) count]);
            case BF16 -> throw new IllegalArgumentException("the CPU backend computes in F32 and has no BF16 tensors");
        };
    }

    public DType dtype() { return floats != null ? DType.F32 : DType.I32; }

    public int length() { return floats != null ? floats.length : ints.length; }

    public float[] floats() {
        if (floats == null) throw new IllegalArgumentException("expected an F32 tensor, got I32");
        return floats;
    }

    public int[] ints() {
        if (ints == null) throw new IllegalArgumentException("expected an I32 tensor, got F32");
        return ints;
    }

    @Override public Device device() { return Device.CPU; }

    @Override public long bytes() { return 4L * length(); }

    /** The float array behind an F32 CPU tensor (index with {@link #offset(Tensor)}). */
    public static float[] floats(Tensor t) {
        if (t.dtype() != DType.F32) throw new IllegalArgumentException("expected an F32 tensor, got " + t);
        return cpu(t).floats();
    }

    /** The int array behind an I32 CPU tensor (index with {@link #offset(Tensor)}). */
    public static int[] ints(Tensor t) {
        if (t.dtype() != DType.I32) throw new IllegalArgumentException("expected an I32 tensor, got " + t);
        return cpu(t).ints();
    }

    public static int offset(Tensor t) { return (int) t.offset(); }

    private static CpuStorage cpu(Tensor t) {
        if (!(t.storage() instanceof CpuStorage s)) throw new IllegalArgumentException("not a CPU tensor: " + t);
        return s;
    }
}
