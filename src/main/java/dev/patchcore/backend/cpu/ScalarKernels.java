package dev.patchcore.backend.cpu;

/** Plain-Java kernels; the i-k-j order keeps the inner loop a contiguous axpy that C2 auto-vectorizes. */
final class ScalarKernels implements CpuKernels {

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

    @Override
    public void adamw(float[] w, int wo, float[] g, int go, float[] m, int mo, float[] v, int vo, int n,
                      float scale, float b1, float b2, float bc1, float bc2, float lr, float eps, float wd) {
        for (int i = 0; i < n; i++) w[wo + i] = adamw1(w[wo + i], g[go + i], m, mo + i, v, vo + i, scale, b1, b2, bc1, bc2, lr, eps, wd);
    }

    /** One element: updates m[mi], v[vi] and returns the new weight. */
    static float adamw1(float wi, float gRaw, float[] m, int mi, float[] v, int vi,
                        float scale, float b1, float b2, float bc1, float bc2, float lr, float eps, float wd) {
        float gi = gRaw * scale;
        float mNew = b1 * m[mi] + (1 - b1) * gi;
        float vNew = b2 * v[vi] + (1 - b2) * gi * gi;
        m[mi] = mNew;
        v[vi] = vNew;
        float mhat = mNew / bc1, vhat = vNew / bc2;
        // Decoupled weight decay (AdamW): decay acts on the weight, not through the moments.
        return wi - lr * (mhat / ((float) Math.sqrt(vhat) + eps) + wd * wi);
    }

    @Override public String name() { return "scalar"; }
}
