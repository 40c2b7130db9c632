package dev.patchcore.eval;

import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GeneratorTest {
    @Test void greedyAndTopOneTakeTheArgmax() {
        float[] logits = {0.1f, 2.5f, -1f, 2.4f};
        SplittableRandom r = new SplittableRandom(1);
        assertEquals(1, Generator.sample(logits, 0f, 0, r));
        for (int i = 0; i < 100; i++) assertEquals(1, Generator.sample(logits, 1f, 1, r));
    }

    @Test void topKNeverLeavesTheTopKAndTemperatureFollowsTheSoftmax() {
        float[] logits = {0f, (float) Math.log(3), -5f, -6f};
        SplittableRandom r = new SplittableRandom(2);
        int[] hits = new int[4];
        for (int i = 0; i < 20000; i++) hits[Generator.sample(logits, 1f, 2, r)]++;
        assertEquals(0, hits[2] + hits[3]);
        double ratio = (double) hits[1] / hits[0]; // softmax over the top 2: 3 : 1
        assertTrue(Math.abs(ratio - 3) < 0.25, "ratio " + ratio);
    }

    /**
     * Greedy decoding picks, at each step, the argmax over the real vocabulary of the last position's logits in a
     * full forward pass of the sequence so far (the window sliding once it outgrows the context).
     */
    @Test void greedyDecodingFollowsTheLastPositionOfAFullForward() {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MultipleChoiceTest.MICRO);
            m.initialize(be, 11);
            int context = MultipleChoiceTest.MICRO.contextLength(), vocab = MultipleChoiceTest.MICRO.vocabSize();
            int[] prompt = new SplittableRandom(4).ints(context - 3, 0, vocab).toArray();
            int[] out = new Generator(be, m).generate(prompt, 6, 0f, 0, -1, 1);
            assertEquals(prompt.length + 6, out.length);
            Tape tape = new Tape(be);
            for (int len = prompt.length; len < out.length; len++) {
                int from = Math.max(0, len - context), t = len - from;
                Tensor tokens = be.scratch(DType.I32, 1, t);
                be.uploadInts(tokens, Arrays.copyOfRange(out, from, len));
                float[] all = be.download(m.forward(tape, tokens, 1, 1).value());
                tape.clear();
                be.releaseScratch();
                int stride = all.length / t, best = 0;
                for (int v = 1; v < vocab; v++) if (all[(t - 1) * stride + v] > all[(t - 1) * stride + best]) best = v;
                assertEquals(best, out[len], "token " + len);
            }
        }
    }
}
