package dev.patchcore.backend.cpu;

import dev.patchcore.backend.Backend.AttentionGrads;
import dev.patchcore.backend.Backend.AttentionOut;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static dev.patchcore.backend.cpu.GradCheck.assertClose;
import static dev.patchcore.backend.cpu.GradCheck.randn;
import static dev.patchcore.backend.cpu.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The tiled online-softmax attention against a plain implementation that materializes each T×T probability
 * matrix, forward and backward, at sequence lengths that are shorter than, equal to and ragged across the tiles.
 */
class FlashAttentionTest {
    private static CpuBackend be;

    @BeforeAll
    static void open() {
        be = new CpuBackend(2);
        be.poisonScratch(true);
    }

    @AfterAll
    static void close() { be.close(); }

    /** Plain backward: P = softmax(S), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(P∘dP)), dQ = dS·K/√d, dK = dSᵀ·Q/√d. */
    static double[][] plainBackward(double[] q, double[] k, double[] v, double[] dOut, int batch, int seqLen, int heads, int headDim) {
        int width = heads * headDim;
        double scale = 1 / Math.sqrt(headDim);
        double[] dq = new double[q.length], dk = new double[q.length], dv = new double[q.length];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++) {
                double[][] p = new double[seqLen][seqLen], dp = new double[seqLen][seqLen];
                for (int i = 0; i < seqLen; i++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double s = 0;
                        for (int c = 0; c < headDim; c++) s += q[at(b, i, h, c, seqLen, width, headDim)] * k[at(b, j, h, c, seqLen, width, headDim)];
                        p[i][j] = s * scale;
                        max = Math.max(max, p[i][j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= i; j++) z += p[i][j] = Math.exp(p[i][j] - max);
                    for (int j = 0; j <= i; j++) p[i][j] /= z;
                    for (int j = 0; j <= i; j++)
                        for (int c = 0; c < headDim; c++) dp[i][j] += dOut[at(b, i, h, c, seqLen, width, headDim)] * v[at(b, j, h, c, seqLen, width, headDim)];
                }
                for (int i = 0; i < seqLen; i++) {
                    double rowDot = 0;
                    for (int j = 0; j <= i; j++) rowDot += p[i][j] * dp[i][j];
                    for (int j = 0; j <= i; j++) {
                        double ds = p[i][j] * (dp[i][j] - rowDot) * scale;
                        for (int c = 0; c < headDim; c++) {
                            int ic = at(b, i, h, c, seqLen, width, headDim), jc = at(b, j, h, c, seqLen, width, headDim);
                            dv[jc] += p[i][j] * dOut[ic];
                            dq[ic] += ds * k[jc];
                            dk[jc] += ds * q[ic];
                        }
                    }
                }
            }
        return new double[][]{dq, dk, dv};
    }

    private static int at(int b, int t, int h, int c, int seqLen, int width, int headDim) {
        return (b * seqLen + t) * width + h * headDim + c;
    }

    @ParameterizedTest(name = "T={0} Dh={1}")
    @CsvSource({"1,8", "1,16", "1,64", "17,8", "17,16", "17,64", "64,8", "64,16", "64,64", "130,8", "130,16", "130,64"})
    void tiledMatchesPlain(int seqLen, int headDim) {
        int batch = 2, heads = 2, width = heads * headDim, n = batch * seqLen;
        Random rnd = new Random(seqLen * 1000L + headDim);
        float[] q = randn(rnd, n * width, 1), k = randn(rnd, n * width, 1), v = randn(rnd, n * width, 1), dOut = randn(rnd, n * width, 1);
        Tensor qt = upload(q, n, width), kt = upload(k, n, width), vt = upload(v, n, width), gt = upload(dOut, n, width);

        try (CpuBackend fresh = new CpuBackend(2)) {
            // The only scratch the forward takes is its two results: no score matrix hides in the pool.
            fresh.attention(qt, kt, vt, seqLen, heads);
            assertEquals(4L * (n * width + batch * heads * seqLen), fresh.pooledBytes());
        }
        AttentionOut o = be.attention(qt, kt, vt, seqLen, heads);

        double[] lse = new double[batch * heads * seqLen];
        double[] ref = Reference.attention(toDouble(q), toDouble(k), toDouble(v), batch, seqLen, heads, headDim, lse);
        assertClose("out", be.download(o.out()), ref, 2e-6);
        assertClose("lse", be.download(o.lse()), lse, 2e-6);

        AttentionGrads g = be.attentionBackward(gt, qt, kt, vt, o.out(), o.lse(), seqLen, heads);
        double[][] expected = plainBackward(toDouble(q), toDouble(k), toDouble(v), toDouble(dOut), batch, seqLen, heads, headDim);
        if (seqLen == 1) {
            // One visible key: the softmax is the constant 1, so neither q nor k can influence the output.
            for (float x : be.download(g.dq())) assertEquals(0f, x, 1e-7f);
            for (float x : be.download(g.dk())) assertEquals(0f, x, 1e-7f);
        } else {
            assertClose("dq", be.download(g.dq()), expected[0], 2e-5);
            assertClose("dk", be.download(g.dk()), expected[1], 2e-5);
        }
        assertClose("dv", be.download(g.dv()), expected[2], 2e-5);
        be.releaseScratch();
    }

    private static Tensor upload(float[] values, int... shape) {
        Tensor t = be.allocate(DType.F32, shape);
        be.upload(t, values);
        return t;
    }
}
