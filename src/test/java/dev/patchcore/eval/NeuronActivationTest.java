package dev.patchcore.eval;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.data.Batch;
import dev.patchcore.data.TokenSequence;
import dev.patchcore.model.LlamaModel;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class NeuronActivationTest {

    /**
     * The activated share counts FFN outputs above the threshold in every layer (all of them above 0, none above a
     * huge threshold, fewer as it rises); the loss of the same passes is LossEvaluator's, at K = 1 and K = 4.
     */
    @Test void countsFfnOutputsAboveTheThresholdAndScoresTheSamePasses() {
        int[] ids = new SplittableRandom(3).ints(2000, 0, 257).toArray();
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MultipleChoiceTest.MICRO);
            m.initialize(be, 5);
            for (int k : new int[] {1, 4}) {
                List<Batch> batches = Blocks.of(TokenSequence.of(ids), k, MultipleChoiceTest.MICRO.contextLength(), 3, 7);
                assertEquals(k, batches.getFirst().patchSize());
                NeuronActivation.Result all = NeuronActivation.measure(be, m, null, batches, 0f);
                NeuronActivation.Result some = NeuronActivation.measure(be, m, null, batches, 0.002f);  // a freshly initialized model's outputs are small
                NeuronActivation.Result none = NeuronActivation.measure(be, m, null, batches, 1e6f);
                assertEquals(MultipleChoiceTest.MICRO.layers(), all.activated().length);
                for (int l = 0; l < all.activated().length; l++) {
                    assertTrue(all.activated()[l] > 0.99, "layer " + l + ": " + all.activated()[l]);
                    assertEquals(0, none.activated()[l]);
                    assertTrue(some.activated()[l] < all.activated()[l] && some.activated()[l] > 0, "layer " + l + ": " + some.activated()[l]);
                }
                assertEquals(LossEvaluator.meanLoss(be, m, batches), all.loss(), 1e-9);
            }
        }
    }
}
