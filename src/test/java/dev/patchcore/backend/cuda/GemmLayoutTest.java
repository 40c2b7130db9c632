package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The row-major → column-major mapping, checked by running a host emulation of cuBLAS's column-major GEMM. */
class GemmLayoutTest {
    private final Random random = new Random(7);

    /** What cublasLtMatmul computes: D(m×n, ld) = op(A)·op(B) with column-major A, B as described by the layout. */
    static float[] columnMajorGemm(GemmLayout l, float[] a, float[] b) {
        float[] d = new float[(int) (l.ldc() * l.n())];
        for (int i = 0; i < l.m(); i++) {
            for (int j = 0; j < l.n(); j++) {
                double s = 0;
                for (int p = 0; p < l.k(); p++) {
                    // op(A)[i,p]: A stored column-major aRows × aCols, element (r,c) at r + c·lda
                    float av = l.transA() ? a[(int) (p + i * l.lda())] : a[(int) (i + p * l.lda())];
                    float bv = l.transB() ? b[(int) (j + p * l.ldb())] : b[(int) (p + j * l.ldb())];
                    s += (double) av * bv;
                }
                d[(int) (i + j * l.ldc())] = (float) s;
            }
        }
        return d;
    }

    private float[] rand(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) random.nextGaussian();
        return v;
    }

    @Test
    void forwardIsXTimesWTransposed() {
        for (int[] s : new int[][] {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {8, 1, 4}}) {
            int n = s[0], in = s[1], out = s[2];
            float[] x = rand(n * in), w = rand(out * in);
            GemmLayout l = GemmLayout.forward(n, in, out);
            assertEquals(out, l.m());
            assertEquals(n, l.n());
            float[] y = columnMajorGemm(l, w, x); // cuBLAS operands: w first, x second (as CudaBackend passes them)
            float[] want = new float[n * out];
            for (int r = 0; r < n; r++)
                for (int o = 0; o < out; o++) {
                    double acc = 0;
                    for (int i = 0; i < in; i++) acc += (double) x[r * in + i] * w[o * in + i];
                    want[r * out + o] = (float) acc;
                }
            assertArrayEquals(want, y, 1e-4f);
            assertEquals(in, l.lda());
            assertEquals(in, l.ldb());
        }
    }

    @Test
    void backwardDataIsDyTimesW() {
        int n = 9, in = 13, out = 6;
        float[] dy = rand(n * out), w = rand(out * in);
        float[] dx = columnMajorGemm(GemmLayout.backwardData(n, in, out), w, dy);
        float[] want = new float[n * in];
        for (int r = 0; r < n; r++)
            for (int i = 0; i < in; i++) {
                double acc = 0;
                for (int o = 0; o < out; o++) acc += (double) dy[r * out + o] * w[o * in + i];
                want[r * in + i] = (float) acc;
            }
        assertArrayEquals(want, dx, 1e-4f);
    }

    @Test
    void backwardWeightIsDyTransposedTimesX() {
        int n = 11, in = 5, out = 7;
        float[] dy = rand(n * out), x = rand(n * in);
        float[] dW = columnMajorGemm(GemmLayout.backwardWeight(n, in, out), x, dy);
        float[] want = new float[out * in];
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double acc = 0;
                for (int r = 0; r < n; r++) acc += (double) dy[r * out + o] * x[r * in + i];
                want[o * in + i] = (float) acc;
            }
        assertArrayEquals(want, dW, 1e-4f);
    }

    @Test
    void mismatchedInnerDimensionIsRejected() {
        assertThrows(IllegalArgumentException.class, () -> GemmLayout.rowMajor(3, 4, false, 5, 6, true));
    }

    @Test
    void alignmentIsTheLargestPowerOfTwoUpTo256() {
        assertEquals(256, CublasLt.alignment(0x7f0000000000L));
        assertEquals(2, CublasLt.alignment(0x7f0000000002L));
        assertEquals(16, CublasLt.alignment(0x7f0000000110L));
    }
}
