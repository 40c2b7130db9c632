package dev.patchcore.backend.cuda;

/**
 * Size classes of the scratch pool: four classes per power of two (1, 1.25, 1.5, 1.75 × 2^e), so a recycled block
 * wastes at most 25 % while the same tensor shape always maps to the same class; 512 bytes minimum, 512-byte granules
 * (keeps every block 16-byte aligned for vector loads).
 */
public final class SizeClasses {
    public static final long MIN_BYTES = 512;

    private SizeClasses() {}

    /** The smallest class holding {@code bytes}. */
    public static long classOf(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative size " + bytes);
        if (bytes <= MIN_BYTES) return MIN_BYTES;
        int e = 63 - Long.numberOfLeadingZeros(bytes - 1); // 2^e < bytes <= 2^(e+1)
        long base = 1L << e;
        long step = Math.max(base / 4, MIN_BYTES);
        long cls = base + ((bytes - base + step - 1) / step) * step;
        return (cls + MIN_BYTES - 1) / MIN_BYTES * MIN_BYTES;
    }
}
