package dev.patchcore.backend.cpu;

/**
 * The inner loops the CPU backend spends its time in (Lucene-style: one small interface, a plain-Java and a
 * Vector API implementation, chosen once at class-init). Arrays are row-major with explicit leading dimensions.
 */
interface CpuKernels {

    /** C[m×n] += A[m×k] · B[k×n], all row-major; one cache block of a larger product (see {@link Gemm}). */
    default void gemm(float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k) {
        gemm(a, aOff, lda, 1, b, bOff, ldb, c, cOff, ldc, m, n, k);
    }

    /**
     * The same with A(i, p) = a[aOff + i·ar + p·ac]: (lda, 1) for row-major A, (1, lda) for an A stored transposed
     * (so Aᵀ·B needs no transposed copy).
     */
    void gemm(float[] a, int aOff, int ar, int ac, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k);

    /**
     * dst[i] = e^(scale·src[i] + shift) for i in [0, n) ({@link FastExp}: the same bits in every kernel, interpreted
     * or compiled), returning Σ dst[i]; src and dst may be the same range. The sum is meant for softmax-sized terms
     * (≤ 1 after the max is subtracted): the vector kernel adds a chunk of 256 terms in float lanes (16 per lane with
     * 512-bit vectors, 32 with 256-bit, 64 with 128-bit) before the double total, so terms near the float maximum
     * could overflow there.
     */
    double exp(float[] src, int sOff, float[] dst, int dOff, int n, float scale, float shift);

    /**
     * One AdamW update of elements [0, n) ({@link CpuBackend#adamW}'s arithmetic: g·scale, moments, bias corrections
     * bc1 and bc2 as divisors, decoupled weight decay), written so that every kernel gives the same bits (no fused
     * multiply-add; IEEE division and square root).
     */
    void adamw(float[] w, int wo, float[] g, int go, float[] m, int mo, float[] v, int vo, int n,
               float scale, float b1, float b2, float bc1, float bc2, float lr, float eps, float wd);

    String name();

    /** The fastest kernel this JVM can run: SIMD when jdk.incubator.vector is present, otherwise plain Java. */
    static CpuKernels best() { return Chooser.BEST; }

    final class Chooser {
        static final CpuKernels BEST = choose();

        private Chooser() {}

        private static CpuKernels choose() {
            // -Dpatchcore.cpu.scalar=true forces the fallback (to compare speed or isolate a SIMD problem).
            if (Boolean.getBoolean("patchcore.cpu.scalar")) return new ScalarKernels();
            if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) return new ScalarKernels();
            try {
                // Loaded reflectively so this class never links against the incubator module when it is absent.
                Class<?> c = Class.forName("dev.patchcore.backend.cpu.VectorKernels");
                return (CpuKernels) c.getDeclaredConstructor().newInstance();
            } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
                return new ScalarKernels();
            }
        }
    }
}
