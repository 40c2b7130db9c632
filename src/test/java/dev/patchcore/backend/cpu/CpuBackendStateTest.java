package dev.patchcore.backend.cpu;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend.AdamWStep;
import dev.patchcore.backend.Backend.AttentionGrads;
import dev.patchcore.backend.Backend.AttentionOut;
import dev.patchcore.backend.Backend.AddRmsNormOut;
import dev.patchcore.backend.Backend.RmsNormOut;
import dev.patchcore.backend.Backend.SwiGluGrads;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.patchcore.backend.cpu.GradCheck.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Memory, accumulation and optimizer semantics: what persists, what adds up, what gets recycled. */
class CpuBackendStateTest {

    private static Tensor upload(CpuBackend be, float[] values, int... shape) {
        Tensor t = be.allocate(DType.F32, shape);
        be.upload(t, values);
        return t;
    }

    @Test
    void identity() {
        try (CpuBackend be = new CpuBackend(1)) {
            assertEquals("cpu", be.name());
            assertEquals(Device.CPU, be.device());
            assertEquals(DType.F32, be.activationType());
            assertEquals(1, be.threads());
        }
    }

    /** |x| > t as Java compares floats: NaN never, subnormals exactly, a negative threshold every non-NaN value. */
    @Test
    void countAbsAboveCountsExactly() {
        float[] v = {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 1e-39f, -1e-39f, 0.5f, -0.5f, 0.75f, -2f};
        float[] thresholds = {0.5f, 0f, -0f, -1f, 1e-39f, Float.POSITIVE_INFINITY, Float.NaN};
        long[] perCopy = {4, 8, 8, 10, 6, 0, 0};
        for (int threads : new int[] {1, 2}) {
            try (CpuBackend be = new CpuBackend(threads)) {
                float[] big = new float[v.length * 5000];  // split into several chunks
                for (int i = 0; i < big.length; i++) big[i] = v[i % v.length];
                Tensor x = upload(be, big, big.length);
                for (int i = 0; i < thresholds.length; i++)
                    assertEquals(perCopy[i] * 5000, be.countAbsAbove(x, thresholds[i]), "threshold " + thresholds[i]);
                assertEquals(4, be.countAbsAbove(x.reshape(big.length).rows(0, v.length), 0.5f), "a view counts its own elements");
            }
        }
    }

    @Test
    void allocateIsZeroFilledAndTransfersRoundTrip() {
        try (CpuBackend be = new CpuBackend(2)) {
            Tensor f = be.allocate(DType.F32, 3, 4);
            assertArrayEquals(new float[12], be.download(f));
            Tensor i = be.allocate(DType.I32, 5);
            assertArrayEquals(new int[5], be.downloadInts(i));
            be.uploadInts(i, new int[]{1, -2, 3, 1 << 20, 0});
            assertArrayEquals(new int[]{1, -2, 3, 1 << 20, 0}, be.downloadInts(i));
            assertArrayEquals(new float[]{1, -2, 3, 1 << 20, 0}, be.download(i));
            float[] v = randn(new Random(1), 12, 1);
            be.upload(f, v);
            Tensor g = be.allocate(DType.F32, 12);
            be.copy(f, g);
            assertArrayEquals(v, be.download(g));
            // Views honour their offset.
            assertArrayEquals(java.util.Arrays.copyOfRange(v, 4, 8), be.download(f.rows(1, 1)));
            be.zero(f.rows(1, 1));
            assertEquals(0f, be.download(f)[5]);
            assertEquals(v[3], be.download(f)[3]);
        }
    }

    /** Parameter gradients add up across calls (micro-batches) instead of being overwritten. */
    @Test
    void parameterGradientsAccumulate() {
        Random rnd = new Random(12);
        try (CpuBackend be = new CpuBackend(2)) {
            int n = 9, in = 20, out = 11, vocab = 6, k = 2;
            Tensor x = upload(be, randn(rnd, n * in, 1), n, in), w = upload(be, randn(rnd, out * in, 1), out, in);
            Tensor dy = upload(be, randn(rnd, n * out, 1), n, out);
            Tensor dW1 = be.allocate(DType.F32, out, in), dW2 = be.allocate(DType.F32, out, in);
            be.matmulBackward(dy, x, w, dW1, false);
            be.matmulBackward(dy, x, w, dW2, false);
            be.matmulBackward(dy, x, w, dW2, false);
            assertTwice(be.download(dW1), be.download(dW2));

            Tensor gain = upload(be, randn(rnd, in, 1), in);
            RmsNormOut r = be.rmsNorm(x, gain, 1e-5f);
            Tensor dG1 = be.allocate(DType.F32, in), dG2 = be.allocate(DType.F32, in);
            Tensor dyn = upload(be, randn(rnd, n * in, 1), n, in);
            be.rmsNormBackward(dyn, x, gain, r.rstd(), dG1);
            be.rmsNormBackward(dyn, x, gain, r.rstd(), dG2);
            be.rmsNormBackward(dyn, x, gain, r.rstd(), dG2);
            assertTwice(be.download(dG1), be.download(dG2));

            Tensor tokens = be.allocate(DType.I32, 1, n * k);
            int[] ids = new int[n * k];
            for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(vocab);
            be.uploadInts(tokens, ids);
            Tensor dOut = upload(be, randn(rnd, n * in, 1), n, in);
            Tensor dT1 = be.allocate(DType.F32, vocab, in), dT2 = be.allocate(DType.F32, vocab, in);
            be.patchEmbedBackward(dOut, tokens, k, dT1);
            be.patchEmbedBackward(dOut, tokens, k, dT2);
            be.patchEmbedBackward(dOut, tokens, k, dT2);
            assertTwice(be.download(dT1), be.download(dT2));
        }
    }

    private static void assertTwice(float[] once, float[] twice) {
        double norm = 0;
        for (int i = 0; i < once.length; i++) {
            assertEquals(2.0 * once[i], twice[i], 1e-5 * (1 + Math.abs(once[i])), "element " + i);
            norm += Math.abs(once[i]);
        }
        assertTrue(norm > 0);
    }

    @Test
    void adamWMatchesScalarReference() {
        Random rnd = new Random(21);
        int n = 1000;
        float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
        for (float wd : new float[]{0f, 0.1f}) {
            try (CpuBackend be = new CpuBackend(2)) {
                float[] w0 = randn(rnd, n, 1);
                Tensor w = upload(be, w0, n), m = be.allocate(DType.F32, n), v = be.allocate(DType.F32, n);
                Tensor grad = be.allocate(DType.F32, n), compute = be.allocate(DType.F32, n);
                double[] rw = GradCheck.toDouble(w0), rm = new double[n], rv = new double[n];
                for (int step = 1; step <= 4; step++) {
                    float[] g = randn(rnd, n, 2);
                    be.upload(grad, g);
                    float gradScale = step == 3 ? 0.25f : 1f; // clipping scales the gradient on some steps
                    be.adamW(w, grad, m, v, compute, new AdamWStep(lr, b1, b2, eps, wd, step, gradScale));
                    for (int i = 0; i < n; i++) {
                        double gi = (double) g[i] * gradScale;
                        rm[i] = b1 * rm[i] + (1 - b1) * gi;
                        rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
                        double mhat = rm[i] / (1 - Math.pow(b1, step)), vhat = rv[i] / (1 - Math.pow(b2, step));
                        rw[i] -= lr * (mhat / (Math.sqrt(vhat) + eps) + wd * rw[i]);
                    }
                }
                float[] got = be.download(w);
                for (int i = 0; i < n; i++) assertEquals(rw[i], got[i], 1e-5, "w[" + i + "] wd=" + wd);
                GradCheck.assertClose("m", be.download(m), rm, 1e-5);
                GradCheck.assertClose("v", be.download(v), rv, 1e-5);
                assertArrayEquals(got, be.download(compute), "compute copy follows the master");
            }
        }
    }

    /** A forward + backward sequence like one transformer block; after the first step the pool must not grow. */
    @Test
    void scratchPoolStopsGrowing() {
        Random rnd = new Random(2);
        try (CpuBackend be = new CpuBackend(2)) {
            int batch = 2, seqLen = 8, heads = 2, headDim = 8, d = heads * headDim, ffn = 24, vocab = 11, k = 2, n = batch * seqLen;
            Tensor table = upload(be, randn(rnd, vocab * d, 1), vocab, d), gain = upload(be, randn(rnd, d, 1), d);
            Tensor wq = upload(be, randn(rnd, d * d, 0.3), d, d), w1 = upload(be, randn(rnd, ffn * d, 0.3), ffn, d);
            Tensor w2 = upload(be, randn(rnd, d * ffn, 0.3), d, ffn), head = upload(be, randn(rnd, vocab * d, 0.3), vocab, d);
            Tensor dTable = be.allocate(DType.F32, vocab, d), dGain = be.allocate(DType.F32, d), dWq = be.allocate(DType.F32, d, d);
            Tensor dW1 = be.allocate(DType.F32, ffn, d), dW2 = be.allocate(DType.F32, d, ffn), dHead = be.allocate(DType.F32, vocab, d);
            Tensor tokens = be.allocate(DType.I32, batch, seqLen * k), targets = be.allocate(DType.I32, n, k);
            int[] ids = new int[n * k];
            for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(vocab);
            be.uploadInts(tokens, ids);
            be.uploadInts(targets, ids);

            long[] pooled = new long[4];
            for (int step = 0; step < pooled.length; step++) {
                Tensor x = be.patchEmbed(table, tokens, k);
                RmsNormOut nrm = be.rmsNorm(x, gain, 1e-5f);
                Tensor q = be.rope(be.matmul(nrm.y(), wq), seqLen, heads, Rope.of(1e4f));
                AttentionOut att = be.attention(q, q, nrm.y(), seqLen, heads);
                AddRmsNormOut an = be.addRmsNorm(x, att.out(), gain, 1e-5f);
                Tensor up = be.matmul(an.y(), w1);
                Tensor act = be.swiglu(up, up);
                Tensor h = be.add(an.sum(), be.matmul(act, w2));
                Tensor logits = be.matmul(h, head);
                be.crossEntropyK(logits, targets, logits.dim(1), 1f / n);

                Tensor dh = be.matmulBackward(logits, h, head, dHead, true);
                Tensor dAct = be.matmulBackward(dh, act, w2, dW2, true);
                SwiGluGrads sg = be.swigluBackward(dAct, up, up);
                be.addInPlace(sg.dGate(), sg.dUp());
                Tensor dY = be.matmulBackward(sg.dGate(), an.y(), w1, dW1, true);
                Tensor dSum = be.rmsNormBackward(dY, an.sum(), gain, an.rstd(), dGain);
                be.addInPlace(dSum, dh);
                AttentionGrads ag = be.attentionBackward(dSum, q, q, nrm.y(), att.out(), att.lse(), seqLen, heads);
                Tensor dq = be.ropeBackward(ag.dq(), seqLen, heads, Rope.of(1e4f));
                be.addInPlace(dq, ag.dk());
                Tensor dn = be.matmulBackward(dq, nrm.y(), wq, dWq, true);
                be.addInPlace(dn, ag.dv());
                Tensor dx = be.rmsNormBackward(dn, x, gain, nrm.rstd(), dGain);
                be.addInPlace(dx, dSum);
                be.patchEmbedBackward(dx, tokens, k, dTable);
                Tensor copy = be.scratch(DType.F32, n, d);
                be.copy(dx, copy);
                be.releaseScratch();
                pooled[step] = be.pooledBytes();
            }
            assertTrue(pooled[0] > 0);
            for (int s = 1; s < pooled.length; s++) assertEquals(pooled[0], pooled[s], "pool grew at step " + s);
            // Control: without releaseScratch the same requests do allocate, so the metric can move.
            for (int i = 0; i < 50; i++) be.matmul(be.patchEmbed(table, tokens, k), wq);
            assertTrue(be.pooledBytes() > pooled[0]);
        }
    }

    @Test
    void releasedScratchIsReused() {
        try (CpuBackend be = new CpuBackend(1)) {
            Tensor a = be.scratch(DType.F32, 4, 8);
            be.releaseScratch();
            Tensor b = be.scratch(DType.F32, 8, 4);
            assertTrue(a.storage() == b.storage(), "same element count must reuse the buffer");
            Tensor c = be.scratch(DType.F32, 32);
            assertNotSame(b.storage(), c.storage());
        }
    }

    /** Sizes that change every step (generation, fine-tuning) do not pile up: the pool stays within twice the peak. */
    @Test
    void scratchOfChangingSizesStaysBounded() {
        try (CpuBackend be = new CpuBackend(1)) {
            int width = 1000;
            for (int len = 1; len <= 300; len++) {
                be.scratch(DType.F32, len, width);
                be.scratch(DType.I32, len);
                be.releaseScratch();
            }
            long peak = 4L * 300 * (width + 1);
            assertTrue(be.pooledBytes() <= 2 * peak, "pool " + be.pooledBytes() + " bytes for a peak of " + peak);
            // Without the bound it would hold every size: 4 · (1 + … + 300) · 1001 bytes, 75 times the peak.
            long before = be.pooledBytes();
            Tensor a = be.scratch(DType.F32, 300, width);
            be.releaseScratch();
            assertTrue(a.storage() == be.scratch(DType.F32, 300, width).storage(), "the newest size is still served from the pool");
            be.releaseScratch();
            assertEquals(before, be.pooledBytes());
        }
    }
}
