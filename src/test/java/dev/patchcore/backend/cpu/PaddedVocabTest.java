package dev.patchcore.backend.cpu;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Padding columns of the logits take no part in the K-target loss and get exactly zero gradient. */
class PaddedVocabTest {
    @Test void paddingColumnsAreIgnored() {
        int n = 5, vocab = 37, stride = 64, k = 3;
        SplittableRandom r = new SplittableRandom(9);
        float[] padded = new float[n * stride], plain = new float[n * vocab];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < stride; c++) {
                float v = (float) r.nextGaussian() * 3 + (c >= vocab ? 50 : 0); // large padding logits would dominate a softmax
                padded[i * stride + c] = v;
                if (c < vocab) plain[i * vocab + c] = v;
            }
        int[] targets = new int[n * k];
        for (int i = 0; i < targets.length; i++) targets[i] = r.nextInt(vocab);
        try (CpuBackend be = new CpuBackend(1)) {
            Tensor zp = be.allocate(DType.F32, n, stride), z = be.allocate(DType.F32, n, vocab), t = be.allocate(DType.I32, n, k);
            be.upload(zp, padded);
            be.upload(z, plain);
            be.uploadInts(t, targets);
            float[] lossPadded = be.download(be.crossEntropyK(zp, t, vocab, 0.5f));
            float[] loss = be.download(be.crossEntropyK(z, t, vocab, 0.5f));
            assertArrayEquals(loss, lossPadded);
            float[] gp = be.download(zp), g = be.download(z);
            for (int i = 0; i < n; i++)
                for (int c = 0; c < stride; c++)
                    assertEquals(c < vocab ? g[i * vocab + c] : 0f, gp[i * stride + c], "row " + i + " column " + c);
        }
    }
}
