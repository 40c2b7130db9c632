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
}
