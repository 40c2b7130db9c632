package dev.patchcore.tensor;

import java.util.Arrays;

/**
 * A dense, row-major view: shape, dtype and an element offset into a backend's storage.
 * Tensors carry no gradient; the autograd tape pairs values with gradients.
 */
public final class Tensor {
    private final int[] shape;
    private final DType dtype;
    private final Storage storage;
    private final long offset;
    private final long numel;

    public Tensor(Storage storage, DType dtype, long offset, int... shape) {
        this.storage = storage;
        this.dtype = dtype;
        this.offset = offset;
        this.shape = shape.clone();
        long n = 1;
        for (int s : shape) {
            if (s < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            n *= s;
        }
        this.numel = n;
        if ((offset + n) * dtype.bytes() > storage.bytes())
            throw new IllegalArgumentException("view " + Arrays.toString(shape) + " at offset " + offset
                    + " exceeds storage of " + storage.bytes() + " bytes");
    }

    public Tensor(Storage storage, DType dtype, int... shape) { this(storage, dtype, 0, shape); }

    public int[] shape() { return shape.clone(); }
    public int dim(int i) { return shape[i < 0 ? shape.length + i : i]; }
    public int rank() { return shape.length; }
    public long numel() { return numel; }
    public DType dtype() { return dtype; }
    public Device device() { return storage.device(); }
    public Storage storage() { return storage; }
    /** Offset of the first element, in elements of {@link #dtype()}. */
    public long offset() { return offset; }
    public long bytes() { return numel * dtype.bytes(); }

    /** Same storage and offset, new shape with the same element count. */
    public Tensor reshape(int... newShape) {
        long n = 1;
        for (int s : newShape) n *= s;
        if (n != numel) throw new IllegalArgumentException("cannot reshape " + Arrays.toString(shape) + " to " + Arrays.toString(newShape));
        return new Tensor(storage, dtype, offset, newShape);
    }

    /** Rows [from, from+count) of the leading dimension. */
    public Tensor rows(int from, int count) {
        long rowSize = numel / shape[0];
        int[] s = shape.clone();
        s[0] = count;
        return new Tensor(storage, dtype, offset + from * rowSize, s);
    }

    public boolean sameShape(Tensor o) { return Arrays.equals(shape, o.shape); }

    /** Whether this and {@code o} are views of one storage that share at least one byte. */
    public boolean overlaps(Tensor o) {
        if (storage != o.storage || numel == 0 || o.numel == 0) return false;
        long from = offset * dtype.bytes(), oFrom = o.offset * o.dtype.bytes();
        return from < oFrom + o.bytes() && oFrom < from + bytes();
    }

    @Override public String toString() { return "Tensor" + Arrays.toString(shape) + ":" + dtype + "@" + device(); }
}
