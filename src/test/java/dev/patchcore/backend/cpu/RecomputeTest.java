package dev.patchcore.backend.cpu;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Activation recompute ({@link LlamaModel#setRecompute}, {@link Tape#checkpoint}) against the plain tape on the CPU
 * backend with NaN-poisoned scratch: a scratch buffer used after its release would carry NaN into the results.
 */
class RecomputeTest {
    private static final ModelConfig CONFIG = new ModelConfig("t", 97, 64, 96, 3, 4, 16, 10000f, 1e-5f);

    /** Row losses and every parameter gradient of one micro-batch (two backward passes accumulated), and the scratch pooled. */
    private record Run(float[] losses, List<float[]> grads, long pooledBytes) {}

    private static Run run(boolean recompute, int k) {
        try (CpuBackend be = new CpuBackend(2)) {
            be.poisonScratch(true);
            LlamaModel model = new LlamaModel(be, CONFIG);
            model.initialize(be, 5);
            model.setRecompute(recompute);
            int batch = 2, patches = CONFIG.contextLength() / 2;
            Random rng = new Random(11);
            int[] ids = new int[batch * patches * k], targets = new int[batch * patches * k];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = rng.nextInt(CONFIG.vocabSize());
                targets[i] = rng.nextInt(CONFIG.vocabSize());
            }
            Tensor tokens = be.allocate(DType.I32, batch, patches * k), tg = be.allocate(DType.I32, batch * patches, k);
            be.uploadInts(tokens, ids);
            be.uploadInts(tg, targets);
            Tape tape = new Tape(be);
            float[] losses = null;
            for (int pass = 0; pass < 2; pass++) {  // gradients accumulate over micro-batches
                Var logits = model.forward(tape, tokens, batch, k, null, null);
                Tensor rowLoss = tape.crossEntropyK(logits, tg, CONFIG.vocabSize(), 1f / (batch * patches));
                losses = be.download(rowLoss);
                tape.backward();
                be.releaseScratch();
            }
            List<float[]> grads = new ArrayList<>();
            for (Parameter p : model.parameters()) grads.add(be.download(p.grad()));
            return new Run(losses, grads, be.pooledBytes());
        }
    }

    @Test
    void gradientsAreBitwiseThoseOfThePlainTapeWithLessScratch() {
        for (int k : new int[] {1, 4}) {
            Run plain = run(false, k), again = run(true, k);
            assertArrayEquals(plain.losses(), again.losses(), "K=" + k + " row losses");
            for (int i = 0; i < plain.grads().size(); i++) {
                float[] a = plain.grads().get(i), b = again.grads().get(i);
                assertArrayEquals(a, b, "K=" + k + " gradient of parameter " + i);
                for (float v : b) assertTrue(Float.isFinite(v), "K=" + k + " parameter " + i + ": no released scratch read");
            }
            assertTrue(again.pooledBytes() < plain.pooledBytes(),
                    "K=" + k + ": recompute pools " + again.pooledBytes() + " bytes of scratch, the plain tape " + plain.pooledBytes());
        }
    }

    @Test
    void marksReleaseOnlyWhatCameAfterThem() {
        try (CpuBackend be = new CpuBackend(1)) {
            be.poisonScratch(true);
            Tensor before = be.scratch(DType.F32, 4);
            be.zero(before);
            long mark = be.scratchMark();
            be.scratch(DType.F32, 4);
            be.scratch(DType.F32, 8);
            be.releaseScratchTo(mark);
            assertEquals(mark, be.scratchMark());
            Tensor reused = be.scratch(DType.F32, 4);  // the released buffer of 4, not the one still held
            assertNotSame(before.storage(), reused.storage());
            assertArrayEquals(new float[4], be.download(before), "the tensor from before the mark is untouched");
            assertThrows(IllegalArgumentException.class, () -> be.releaseScratchTo(mark + 5));
        }
    }
}
