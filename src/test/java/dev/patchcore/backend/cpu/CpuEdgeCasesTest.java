package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Settings the per-op tests do not reach: thread counts of the reductions, extreme logits. */
class CpuEdgeCasesTest {

    private static Tensor tensor(CpuBackend be, float[] values, int... shape) {
        Tensor t = be.allocate(DType.F32, shape);
        be.upload(t, values);
        return t;
    }

    /**
     * docs/training.md: "multi-threaded over independent output blocks (so the thread count never changes a bit)". The
     * gradient norm (clipping) and the step loss are such reductions; their chunking must not follow the thread count.
     * One large square beside many small ones makes the double sum depend on where chunks begin.
     */
    @Test
    void sumAndSumOfSquaresDoNotDependOnTheThreadCount() {
        int n = 8 << 14;
        float[] a = new float[n];
        Random rnd = new Random(1);
        for (int i = 1; i < n; i++) a[i] = (float) rnd.nextGaussian();
        a[0] = 1e8f;
        double ss1, s1;
        try (CpuBackend be = new CpuBackend(1)) {
            Tensor x = tensor(be, a, n);
            ss1 = be.sumOfSquares(List.of(x));
            s1 = be.sum(x);
        }
        for (int threads : new int[]{2, 3, 8}) {
            try (CpuBackend be = new CpuBackend(threads)) {
                Tensor x = tensor(be, a, n);
                assertEquals(ss1, be.sumOfSquares(List.of(x)), 0.0, "sum of squares with " + threads + " threads");
                assertEquals(s1, be.sum(x), 0.0, "sum with " + threads + " threads");
            }
        }
    }

    /**
     * All-equal logits give every token probability 1/V, whatever their value: the loss is log V. Written as
     * (K·lse − Σ targets) / K, the log V vanished in the cancellation of two numbers near K·z once |z| ≥ ~1e16.
     */
    @Test
    void crossEntropyOfHugeEqualLogitsIsLogV() {
        try (CpuBackend be = new CpuBackend(1)) {
            for (float z : new float[]{1e16f, 1e20f, -1e30f, 3e38f}) {
                int vocab = 5, k = 3;
                float[] logits = new float[2 * vocab];
                java.util.Arrays.fill(logits, z);
                Tensor zt = tensor(be, logits, 2, vocab), tg = be.allocate(DType.I32, 2, k);
                be.uploadInts(tg, new int[]{0, 1, 2, 4, 4, 3});
                float[] loss = be.download(be.crossEntropyK(zt, tg, vocab, 0f));
                for (float l : loss) assertEquals(Math.log(vocab), l, 1e-6, "logits all " + z);
                loss = be.download(be.crossEntropyK(zt, tg, vocab, 1f));
                for (float l : loss) assertEquals(Math.log(vocab), l, 1e-6, "logits all " + z + ", with the gradient");
                float[] g = be.download(zt);
                // softmax 1/5 everywhere minus 1/K per target occurrence
                assertEquals(0.2f - 1f / 3, g[0], 1e-6f);
                assertEquals(0.2f - 2f / 3, g[vocab + 4], 1e-6f);
                be.releaseScratch();
            }
        }
    }
}
