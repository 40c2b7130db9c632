package dev.patchcore.model;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

/** A model for forward passes only holds its compute copies alone, and computes what the trainable model does. */
class InferenceModelTest {
    @Test void anInferenceModelHasNoGradientsAndTheSameForward() {
        ModelConfig c = new ModelConfig("inf", 50, 32, 40, 2, 4, 12, 10000f, 1e-5f, 2);
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel train = new LlamaModel(be, c), infer = LlamaModel.forInference(be, c);
            train.initialize(be, 4);
            for (int i = 0; i < train.parameters().size(); i++) {
                Parameter p = infer.parameters().get(i);
                assertNull(p.grad(), p.name());
                assertSame(p.master(), p.compute(), p.name());
                p.load(be, be.download(train.parameters().get(i).master()));
            }
            Tensor tokens = be.scratch(DType.I32, 2, c.contextLength());
            be.uploadInts(tokens, new SplittableRandom(2).ints(2L * c.contextLength(), 0, c.vocabSize()).toArray());
            assertArrayEquals(be.download(train.forward(new Tape(be), tokens, 2, 1).value()),
                    be.download(infer.forward(new Tape(be), tokens, 2, 1).value()));
            infer.parameters().forEach(p -> p.free(be));
        }
    }
}
