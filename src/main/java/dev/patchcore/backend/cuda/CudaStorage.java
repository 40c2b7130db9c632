package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Storage;
import dev.patchcore.tensor.Tensor;

/** A block of device memory: raw address and size. */
public record CudaStorage(long address, long bytes) implements Storage {
    @Override public Device device() { return Device.CUDA; }

    /** Device address of a tensor's first element. */
    public static long addressOf(Tensor t) {
        if (!(t.storage() instanceof CudaStorage s)) throw new IllegalArgumentException("not a CUDA tensor: " + t);
        return s.address + t.offset() * t.dtype().bytes();
    }
}
