package dev.patchcore.model;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** Paper §3.7's input/output projections: they start as the plain patch model, and their gradients are right. */
class PatchProjectionsTest {
    static final int B = 2;

    private static Tensor[] batch(Backend be, int k, SplittableRandom r) {
        int t = ModelGradientTest.C.contextLength(), v = ModelGradientTest.C.vocabSize();
        int[] in = new int[B * k * t], tg = new int[B * t * k];
        for (int i = 0; i < in.length; i++) in[i] = r.nextInt(v);
        for (int i = 0; i < tg.length; i++) tg[i] = r.nextInt(v);
        Tensor tokens = be.allocate(DType.I32, B, k * t), targets = be.allocate(DType.I32, B * t, k);
        be.uploadInts(tokens, in);
        be.uploadInts(targets, tg);
        return new Tensor[] {tokens, targets};
    }

    private static double loss(Backend be, LlamaModel m, PatchProjections p, Tape tape, Tensor[] data, int k) {
        var logits = m.forward(tape, data[0], B, k, null, p);
        double s = be.sum(tape.crossEntropyK(logits, LlamaModel.lossTargets(data[1], p), ModelGradientTest.C.vocabSize(), 0f));
        tape.clear();
        be.releaseScratch();
        return s / (p == null ? 1 : p.rowsPerPatch());
    }

    /** Initialized as the mean embedding and K copies of the representation, the variant's loss is the plain model's. */
    @ParameterizedTest
    @CsvSource({"2, true, false", "3, false, true", "4, true, true"})
    void startsAsThePlainPatchModel(int k, boolean in, boolean out) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, ModelGradientTest.C);
            m.initialize(be, 3);
            PatchProjections p = new PatchProjections(be, ModelGradientTest.C, k, in, out);
            p.initialize(be);
            Tensor[] data = batch(be, k, new SplittableRandom(k));
            Tape tape = new Tape(be);
            double plain = loss(be, m, null, tape, data, k), variant = loss(be, m, p, tape, data, k);
            assertEquals(plain, variant, 1e-5 * Math.abs(plain));
            assertEquals(out ? k : 1, p.rowsPerPatch());
            assertThrows(IllegalArgumentException.class, () -> m.forward(tape, data[0], B, 1, null, p), "K must match");
        }
    }

    /** Every parameter's gradient, the projections' included, matches central finite differences. */
    @ParameterizedTest
    @CsvSource({"2, true, false", "3, false, true", "2, true, true"})
    void gradientsMatchFiniteDifferences(int k, boolean in, boolean out) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, ModelGradientTest.C);
            m.initialize(be, 17);
            PatchProjections p = new PatchProjections(be, ModelGradientTest.C, k, in, out);
            SplittableRandom r = new SplittableRandom(7);
            List<Parameter> all = new ArrayList<>(m.parameters());
            all.addAll(p.parameters());
            for (Parameter q : all) {
                float[] w = be.download(q.master());
                for (int i = 0; i < w.length; i++) w[i] = q.decay() ? (float) r.nextDouble(-0.5, 0.5) : (float) r.nextDouble(0.5, 1.5);
                q.load(be, w);
            }
            Tensor[] data = batch(be, k, r);
            Tape tape = new Tape(be);
            tape.crossEntropyK(m.forward(tape, data[0], B, k, null, p), LlamaModel.lossTargets(data[1], p),
                    ModelGradientTest.C.vocabSize(), 1f / p.rowsPerPatch());
            tape.backward();
            be.releaseScratch();
            ModelGradientTest.assertGradientsMatchFiniteDifferences(be, all, r, () -> loss(be, m, p, tape, data, k));
        }
    }
}
