package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Arrays;
import java.util.Random;

import static dev.patchcore.backend.cpu.GradCheck.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The Vector API and plain-Java kernels agree with each other and with a float64 product (Lucene-style equivalence). */
class CpuKernelsTest {
    private static final CpuKernels SCALAR = new ScalarKernels();

    private static CpuKernels vector() {
        // Surefire runs with --add-modules jdk.incubator.vector, so the SIMD kernel must have been chosen.
        assertTrue(ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent(), "tests must run with jdk.incubator.vector");
        CpuKernels k = CpuKernels.best();
        assertTrue(k.name().startsWith("vector"), "expected the SIMD kernel, got " + k.name());
        return k;
    }

    @ParameterizedTest(name = "m={0} n={1} k={2}")
    @CsvSource({"1,1,1", "16,50,20", "4,32,8", "5,33,7", "3,17,129", "8,64,64", "13,100,37", "4,47,300", "9,16,1"})
    void gemmKernelsAgree(int m, int n, int k) {
        Random rnd = new Random(m * 7919L + n * 31L + k);
        int lda = k + 3, ldb = n + 5, ldc = n + 2, aOff = 2, bOff = 7, cOff = 1;
        float[] a = randn(rnd, aOff + m * lda, 1), b = randn(rnd, bOff + k * ldb, 1), c0 = randn(rnd, cOff + m * ldc, 1);
        float[] cs = c0.clone(), cv = c0.clone();
        SCALAR.gemm(a, aOff, lda, b, bOff, ldb, cs, cOff, ldc, m, n, k);
        vector().gemm(a, aOff, lda, b, bOff, ldb, cv, cOff, ldc, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double ref = c0[cOff + i * ldc + j];
                double mag = Math.abs(ref);
                for (int p = 0; p < k; p++) {
                    double t = (double) a[aOff + i * lda + p] * b[bOff + p * ldb + j];
                    ref += t;
                    mag += Math.abs(t);
                }
                int idx = cOff + i * ldc + j;
                assertEquals(ref, cs[idx], 1e-6 * mag, "scalar at " + i + "," + j);
                assertEquals(ref, cv[idx], 1e-6 * mag, "vector at " + i + "," + j);
            }
        // Elements outside the m×n block (padding of ldc and the offset) must be untouched.
        for (int i = 0; i < cs.length; i++) {
            int r = (i - cOff) / ldc, col = (i - cOff) % ldc;
            if (i < cOff || r >= m || col >= n) {
                assertEquals(c0[i], cs[i]);
                assertEquals(c0[i], cv[i]);
            }
        }
    }

    /** A read transposed in place (A(i, p) = a[aOff + i + p·lda]) gives Aᵀ·B, in both kernels. */
    @ParameterizedTest(name = "m={0} n={1} k={2}")
    @CsvSource({"1,1,1", "16,50,20", "5,33,7", "8,64,64", "13,100,37", "9,16,1"})
    void gemmWithTransposedA(int m, int n, int k) {
        Random rnd = new Random(m * 31L + n * 7L + k);
        int lda = m + 3, ldb = n + 5, ldc = n + 2, aOff = 2, bOff = 7, cOff = 1;
        float[] a = randn(rnd, aOff + k * lda, 1), b = randn(rnd, bOff + k * ldb, 1), c0 = randn(rnd, cOff + m * ldc, 1);
        float[] cs = c0.clone(), cv = c0.clone();
        SCALAR.gemm(a, aOff, 1, lda, b, bOff, ldb, cs, cOff, ldc, m, n, k);
        vector().gemm(a, aOff, 1, lda, b, bOff, ldb, cv, cOff, ldc, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double ref = c0[cOff + i * ldc + j], mag = Math.abs(ref);
                for (int p = 0; p < k; p++) {
                    double t = (double) a[aOff + p * lda + i] * b[bOff + p * ldb + j];
                    ref += t;
                    mag += Math.abs(t);
                }
                assertEquals(ref, cs[cOff + i * ldc + j], 1e-6 * mag, "scalar at " + i + "," + j);
                assertEquals(ref, cv[cOff + i * ldc + j], 1e-6 * mag, "vector at " + i + "," + j);
            }
    }

    /** The vector AdamW gives the scalar one's bits (lanes and tail), moments included. */
    @Test
    void adamwKernelsAgreeBitForBit() {
        Random rnd = new Random(17);
        for (int n : new int[] {1, 15, 16, 33, 1000}) {
            float[] w = randn(rnd, n + 2, 1), g = randn(rnd, n + 3, 3), m = randn(rnd, n + 1, 0.1), v = randn(rnd, n + 4, 0.1);
            for (int i = 0; i < v.length; i++) v[i] = v[i] * v[i];
            float[] ws = w.clone(), ms = m.clone(), vs = v.clone(), wv = w.clone(), mv = m.clone(), vv = v.clone();
            SCALAR.adamw(ws, 2, g, 3, ms, 1, vs, 4, n, 0.5f, 0.9f, 0.95f, 0.19f, 0.0975f, 3e-4f, 1e-8f, 0.1f);
            vector().adamw(wv, 2, g, 3, mv, 1, vv, 4, n, 0.5f, 0.9f, 0.95f, 0.19f, 0.0975f, 3e-4f, 1e-8f, 0.1f);
            assertArrayEquals(ws, wv, "w n=" + n);
            assertArrayEquals(ms, mv, "m n=" + n);
            assertArrayEquals(vs, vv, "v n=" + n);
            assertTrue(!Arrays.equals(ws, w), "the weights moved");
        }
    }

    /** FastExp against Math.exp: within 2 ulp over the whole normal range, and the edge cases. */
    @Test
    void fastExpIsAccurate() {
        double worst = 0;
        for (float x = -86.6f; x < 88.7f; x += 0.0137f) {
            double ref = Math.exp(x), got = FastExp.exp(x);
            worst = Math.max(worst, Math.abs(got - ref) / Math.ulp((float) ref));
        }
        assertTrue(worst <= 2, "max error " + worst + " ulp");
        assertEquals(1f, FastExp.exp(0f));
        assertEquals(0f, FastExp.exp(Float.NEGATIVE_INFINITY));
        assertEquals(0f, FastExp.exp(-100f));
        assertEquals(Float.POSITIVE_INFINITY, FastExp.exp(Float.POSITIVE_INFINITY));
        assertEquals(Float.POSITIVE_INFINITY, FastExp.exp(89f));
        assertTrue(Float.isNaN(FastExp.exp(Float.NaN)));
        assertEquals(Math.exp(88.7f), FastExp.exp(88.7f), 2 * Math.ulp((float) Math.exp(88.7f)), "n = 128 keeps a valid exponent");
    }

    /** Both kernels give FastExp's bits for every element (vector lanes and tails) and the same sum. */
    @Test
    void expKernelsAgreeBitForBit() {
        Random rnd = new Random(99);
        CpuKernels vec = vector();
        for (int n : new int[] {0, 1, 5, 16, 17, 255, 256, 257, 700, 5000}) {
            float[] x = randn(rnd, n + 3, 6);
            if (n > 0) x[3] = Float.NEGATIVE_INFINITY;
            float[] ds = new float[n + 5], dv = new float[n + 5];
            double ss = SCALAR.exp(x, 3, ds, 5, n, 0.5f, -1.25f), sv = vec.exp(x, 3, dv, 5, n, 0.5f, -1.25f);
            double ref = 0;
            for (int i = 0; i < n; i++) {
                float expect = FastExp.exp(Math.fma(0.5f, x[3 + i], -1.25f));
                assertEquals(Float.floatToRawIntBits(expect), Float.floatToRawIntBits(ds[5 + i]), "scalar n=" + n + " i=" + i);
                assertEquals(Float.floatToRawIntBits(expect), Float.floatToRawIntBits(dv[5 + i]), "vector n=" + n + " i=" + i);
                ref += expect;
            }
            assertEquals(ref, ss, 1e-12 * (1 + ref));
            assertEquals(ref, sv, 1e-6 * (1 + ref), "float lanes, then double");
            for (int i = 0; i < 5; i++) assertEquals(0f, dv[i], "nothing written before dOff");
        }
        float[] inPlace = {0f, 1f, -2f};
        SCALAR.exp(inPlace, 0, inPlace, 0, 3, 1f, 0f);
        assertEquals(FastExp.exp(1f), inPlace[1]);
    }
    /** Whole-op equivalence: a backend on the scalar kernel and one on the SIMD kernel give the same matmul. */
    @Test
    void backendsOnBothKernelsAgree() {
        Random rnd = new Random(4);
        int n = 37, in = 130, out = 75;
        float[] x = randn(rnd, n * in, 1), w = randn(rnd, out * in, 1), dy = randn(rnd, n * out, 1);
        float[][] results = new float[2][];
        CpuKernels[] kernels = {SCALAR, vector()};
        for (int i = 0; i < 2; i++) {
            try (CpuBackend be = new CpuBackend(2, kernels[i])) {
                Tensor xt = be.allocate(DType.F32, n, in), wt = be.allocate(DType.F32, out, in), g = be.allocate(DType.F32, n, out);
                be.upload(xt, x); be.upload(wt, w); be.upload(g, dy);
                Tensor dW = be.allocate(DType.F32, out, in);
                float[] y = be.download(be.matmul(xt, wt));
                float[] dx = be.download(be.matmulBackward(g, xt, wt, dW, true));
                float[] all = Arrays.copyOf(y, y.length + dx.length + out * in);
                System.arraycopy(dx, 0, all, y.length, dx.length);
                System.arraycopy(be.download(dW), 0, all, y.length + dx.length, out * in);
                results[i] = all;
            }
        }
        double err = GradCheck.relError(results[0], GradCheck.toDouble(results[1]));
        assertTrue(err < 1e-6, "scalar vs vector relative error " + err);
    }

    /** Output tiles are independent and each element is summed in k order, so the thread count cannot change bits. */
    @Test
    void matmulDoesNotDependOnThreadCount() {
        Random rnd = new Random(8);
        int n = 67, in = 300, out = 90;
        float[] x = randn(rnd, n * in, 1), w = randn(rnd, out * in, 1);
        float[][] y = new float[2][];
        int[] threads = {1, 3};
        for (int i = 0; i < 2; i++) {
            try (CpuBackend be = new CpuBackend(threads[i])) {
                Tensor xt = be.allocate(DType.F32, n, in), wt = be.allocate(DType.F32, out, in);
                be.upload(xt, x); be.upload(wt, w);
                y[i] = be.download(be.matmul(xt, wt));
            }
        }
        assertArrayEquals(y[0], y[1]);
    }

    /**
     * exp gives the same bits before and after the JIT compiles it. (The Vector API's own EXP does not: its compiled
     * SVML form and its Java fallback differ in the last bit; so did an earlier lane reduction, which made attention
     * outputs change in the last bit between an early call and a later one.)
     */
    @Test
    void expIsTheSameInterpretedAndCompiled() {
        CpuKernels k = vector();
        Random rnd = new Random(3);
        float[] a = randn(rnd, 4096, 4);
        int[] lengths = {16, 37, 64, 300};
        float[][] first = new float[lengths.length][];
        double[] firstSum = new double[lengths.length];
        for (int i = 0; i < lengths.length; i++) {
            first[i] = new float[lengths[i]];
            firstSum[i] = k.exp(a, 7 * i, first[i], 0, lengths[i], 1f, -0.5f);
        }
        float[] got = new float[300];
        for (int round = 0; round < 100_000; round++) {
            int i = round % lengths.length;
            double sum = k.exp(a, 7 * i, got, 0, lengths[i], 1f, -0.5f);
            if (sum != firstSum[i] || !Arrays.equals(Arrays.copyOf(got, lengths[i]), first[i]))
                throw new AssertionError("exp of length " + lengths[i] + " changed at call " + round);
        }
    }
}
