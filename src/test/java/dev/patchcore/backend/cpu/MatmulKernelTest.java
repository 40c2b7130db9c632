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
class MatmulKernelTest {
    private static final MatmulKernel SCALAR = new ScalarMatmulKernel();

    private static MatmulKernel vector() {
        // Surefire runs with --add-modules jdk.incubator.vector, so the SIMD kernel must have been chosen.
        assertTrue(ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent(), "tests must run with jdk.incubator.vector");
        MatmulKernel k = MatmulKernel.best();
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

    @Test
    void dotAndAxpyAgree() {
        Random rnd = new Random(99);
        MatmulKernel vec = vector();
        for (int n = 0; n <= 70; n++) {
            float[] x = randn(rnd, n + 3, 1), y = randn(rnd, n + 5, 1);
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                ref += (double) x[3 + i] * y[5 + i];
                mag += Math.abs((double) x[3 + i] * y[5 + i]);
            }
            assertEquals(ref, SCALAR.dot(x, 3, y, 5, n), 1e-6 * mag + 1e-30, "scalar dot n=" + n);
            assertEquals(ref, vec.dot(x, 3, y, 5, n), 1e-6 * mag + 1e-30, "vector dot n=" + n);
            float[] ys = y.clone(), yv = y.clone();
            SCALAR.axpy(0.75f, x, 3, ys, 5, n);
            vec.axpy(0.75f, x, 3, yv, 5, n);
            for (int i = 0; i < y.length; i++) {
                double expect = i >= 5 && i < 5 + n ? y[i] + 0.75 * x[i - 2] : y[i];
                assertEquals(expect, ys[i], 1e-6 * (1 + Math.abs(expect)));
                assertEquals(expect, yv[i], 1e-6 * (1 + Math.abs(expect)));
            }
        }
    }

    /** Whole-op equivalence: a backend on the scalar kernel and one on the SIMD kernel give the same matmul. */
    @Test
    void backendsOnBothKernelsAgree() {
        Random rnd = new Random(4);
        int n = 37, in = 130, out = 75;
        float[] x = randn(rnd, n * in, 1), w = randn(rnd, out * in, 1), dy = randn(rnd, n * out, 1);
        float[][] results = new float[2][];
        MatmulKernel[] kernels = {SCALAR, vector()};
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
     * The dot product gives the same bits before and after the JIT compiles it: the Vector API's lane reduction may
     * sum in a different order in its Java fallback than in the compiled intrinsic, which made attention outputs differ
     * in the last bit between an early call and a later one (the causality selftest saw it as a "changed" output).
     */
    @Test
    void dotIsTheSameInterpretedAndCompiled() {
        MatmulKernel k = vector();
        Random rnd = new Random(3);
        float[] a = randn(rnd, 4096, 1), b = randn(rnd, 4096, 1);
        int[] lengths = {16, 37, 64, 128, 300};
        float[] first = new float[lengths.length];
        for (int i = 0; i < lengths.length; i++) first[i] = k.dot(a, 7 * i, b, 11 * i, lengths[i]);
        for (int round = 0; round < 200_000; round++) {
            int i = round % lengths.length;
            float got = k.dot(a, 7 * i, b, 11 * i, lengths[i]);
            if (Float.floatToRawIntBits(got) != Float.floatToRawIntBits(first[i]))
                throw new AssertionError("dot of length " + lengths[i] + " changed from " + first[i] + " to " + got + " at call " + round);
        }
    }
}
