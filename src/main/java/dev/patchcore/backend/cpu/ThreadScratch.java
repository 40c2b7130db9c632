package dev.patchcore.backend.cpu;

/**
 * One float array per thread, grown on demand and reused by every later call on that thread: the work space of
 * kernels whose tasks run on the backend's pool (attention tiles, a loss-only cross-entropy row). Contents are
 * whatever the thread's previous call left.
 */
final class ThreadScratch {
    private final ThreadLocal<float[][]> arrays = ThreadLocal.withInitial(() -> new float[1][0]);

    /** This thread's array, at least {@code n} floats long. */
    float[] floats(int n) {
        float[][] a = arrays.get();
        if (a[0].length < n) a[0] = new float[n];
        return a[0];
    }
}
