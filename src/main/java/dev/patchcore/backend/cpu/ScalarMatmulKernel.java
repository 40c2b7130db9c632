package dev.patchcore.backend.cpu;

/** Plain-Java kernels; the i-k-j order keeps the inner loop a contiguous axpy that C2 auto-vectorizes. */
final class ScalarMatmulKernel implements MatmulKernel {

    @Override
    public void gemm(float[] a, int aOff, int ar, int ac, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k) {
        for (int i = 0; i < m; i++) {
            int ci = cOff + i * ldc, ai = aOff + i * ar;
            for (int p = 0; p < k; p++) {
                float av = a[ai + p * ac];
                int bp = bOff + p * ldb;
                for (int j = 0; j < n; j++) c[ci + j] += av * b[bp + j];
            }
        }
    }

    @Override
    public double exp(float[] src, int sOff, float[] dst, int dOff, int n, float scale, float shift) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += dst[dOff + i] = FastExp.exp(Math.fma(scale, src[sOff + i], shift));
        return sum;
    }

    @Override public String name() { return "scalar"; }
}
