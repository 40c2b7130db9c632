package dev.patchcore.backend.cuda;

/** Raw device memory operations the allocator needs; a real device or a host fake in tests. */
interface DeviceMemory {
    /** Allocates {@code bytes}; throws {@link GpuOutOfMemoryException} when the device is full. */
    long allocate(long bytes);

    void release(long address);

    /** Fills {@code count} 32-bit words at {@code address} with {@code pattern} (asynchronously on the stream). */
    void fill32(long address, int pattern, long count);

    /** Fills bytes with zero (asynchronously on the stream). */
    void zero(long address, long bytes);
}
