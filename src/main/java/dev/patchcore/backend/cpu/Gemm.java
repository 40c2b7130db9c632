package dev.patchcore.backend.cpu;

/**
 * Cache-blocked, multi-threaded C[M×N] (+)= A[M×K] · B[K×N] on row-major arrays, driving a {@link CpuKernels}.
 * C is cut into independent MC×NC tiles (one task each, so no two threads write the same element and the result
 * does not depend on scheduling); inside a tile K is walked in KC slices so the B slice (KC×NC) stays in L2 and
 * the 4×KC strip of A in L1 while the micro-kernel sweeps it.
 */
final class Gemm {
    private static final int KC = 256;
    private static final int NC = 256;

    private Gemm() {}

    static void multiply(Parallel par, CpuKernels kernel, boolean accumulate,
                         float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc,
                         int m, int n, int k) {
        multiply(par, kernel, accumulate, a, aOff, lda, 1, b, bOff, ldb, c, cOff, ldc, m, n, k);
    }

    /** The same with A(i, p) = a[aOff + i·ar + p·ac] ({@link CpuKernels#gemm(float[], int, int, int, float[], int, int, float[], int, int, int, int, int)}). */
    static void multiply(Parallel par, CpuKernels kernel, boolean accumulate,
                         float[] a, int aOff, int ar, int ac, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc,
                         int m, int n, int k) {
        if (m == 0 || n == 0) return;
        int nc = Math.min(NC, n);
        int colTiles = ceilDiv(n, nc);
        // Enough row tiles to give every thread several tasks, but never thinner than 16 rows.
        // Multiples of 8 keep the widest micro-kernel busy.
        int mc = roundUp(Math.max(16, Math.min(128, ceilDiv(m * colTiles, par.threads() * 4))), 8);
        mc = Math.min(mc, roundUp(m, 8));
        int rowTiles = ceilDiv(m, mc);
        final int mcF = mc;
        par.forEach(rowTiles * colTiles, t -> {
            int i0 = (t / colTiles) * mcF, j0 = (t % colTiles) * nc;
            int mm = Math.min(mcF, m - i0), nn = Math.min(nc, n - j0);
            int ct = cOff + i0 * ldc + j0;
            if (!accumulate) for (int i = 0; i < mm; i++) java.util.Arrays.fill(c, ct + i * ldc, ct + i * ldc + nn, 0f);
            for (int p0 = 0; p0 < k; p0 += KC) {
                int kk = Math.min(KC, k - p0);
                kernel.gemm(a, aOff + i0 * ar + p0 * ac, ar, ac, b, bOff + p0 * ldb + j0, ldb, c, ct, ldc, mm, nn, kk);
            }
        });
    }

    /**
     * dst[cols×rows] = src[rows×cols]ᵀ, in 32×32 blocks so both sides stay in cache, writing dst contiguously. (The
     * other loop order writes 32 dst rows `rows` floats apart; at a power-of-two row count such as 1024 they are 4 KB
     * apart, all in one L1 set, and the transpose ran 6–7× slower: 3 ns per element, more time than the GEMMs it
     * fed.)
     */
    static void transpose(Parallel par, float[] src, int sOff, int rows, int cols, float[] dst, int dOff) {
        final int bs = 32;
        int colBlocks = ceilDiv(cols, bs);
        par.forEach(colBlocks, cb -> {
            int c0 = cb * bs, c1 = Math.min(cols, c0 + bs);
            for (int r0 = 0; r0 < rows; r0 += bs) {
                int r1 = Math.min(rows, r0 + bs);
                for (int c = c0; c < c1; c++)
                    for (int r = r0; r < r1; r++) dst[dOff + c * rows + r] = src[sOff + r * cols + c];
            }
        });
    }

    private static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    private static int roundUp(int a, int m) { return ceilDiv(a, m) * m; }
}
