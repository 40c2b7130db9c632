package dev.patchcore.model;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.List;
import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole model on the tape: the gradient the backward pass leaves in every parameter matches central finite
 * differences of the loss, for the token stage (K = 1) and the patch stage (K = 2, 3). This checks the wiring —
 * fan-out accumulation, the fused add+norm, the in-place loss gradient — on top of the per-op checks.
 */
public class ModelGradientTest {
    public static final ModelConfig C = new ModelConfig("grad", 11, 8, 12, 2, 2, 5, 10000f, 1e-5f);

    /** Grouped-query attention: 4 query heads of Dh 4 sharing 2 key/value heads. */
    public static final ModelConfig GQA = new ModelConfig("grad-gqa", 11, 16, 12, 2, 4, 5, 10000f, 1e-5f, 2);

    @ParameterizedTest @ValueSource(ints = {1, 2, 3})
    void parameterGradientsMatchFiniteDifferences(int k) {
        parameterGradientsMatchFiniteDifferences(C, k);
    }

    @ParameterizedTest @ValueSource(ints = {1, 2})
    void groupedQueryAttentionGradientsMatchFiniteDifferences(int k) {
        parameterGradientsMatchFiniteDifferences(GQA, k);
    }

    private static void parameterGradientsMatchFiniteDifferences(ModelConfig C, int k) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, C);
            m.initialize(be, 17);
            // Larger weights than the 0.02 init so every path carries signal.
            SplittableRandom r = new SplittableRandom(5);
            for (Parameter p : m.parameters()) {
                float[] w = be.download(p.master());
                for (int i = 0; i < w.length; i++) w[i] = p.decay() ? (float) (r.nextDouble(-0.5, 0.5)) : (float) r.nextDouble(0.5, 1.5);
                p.load(be, w);
            }
            int b = 2, t = C.contextLength();
            int[] in = new int[b * k * t], tg = new int[b * t * k];
            for (int i = 0; i < in.length; i++) in[i] = r.nextInt(C.vocabSize());
            for (int i = 0; i < tg.length; i++) tg[i] = r.nextInt(C.vocabSize());
            Tensor tokens = be.allocate(DType.I32, b, k * t), targets = be.allocate(DType.I32, b * t, k);
            be.uploadInts(tokens, in);
            be.uploadInts(targets, tg);

            Tape tape = new Tape(be);
            tape.crossEntropyK(m.forward(tape, tokens, b, k), targets, C.vocabSize(), 1f);
            tape.backward();
            be.releaseScratch();

            assertGradientsMatchFiniteDifferences(be, m.parameters(), r, () -> loss(be, m, tape, tokens, targets, b, k, C.vocabSize()));
        }
    }

    @ParameterizedTest @ValueSource(ints = {1, 2})
    void tiedEmbeddingGradientsMatchFiniteDifferences(int k) {
        parameterGradientsMatchFiniteDifferences(C.withTiedEmbeddings(true), k);
    }

    /**
     * A tied model is the untied one whose LM head equals its embedding: the same loss, and the one matrix's gradient
     * is the sum of the two matrices' gradients (both uses add to it), in the patch stage (K = 2) and at K = 1.
     */
    @ParameterizedTest @ValueSource(ints = {1, 2})
    void aTiedMatrixGetsTheSumOfBothGradients(int k) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel tied = new LlamaModel(be, C.withTiedEmbeddings(true)), two = new LlamaModel(be, C);
            assertEquals(two.parameters().size() - 1, tied.parameters().size());
            assertTrue(tied.parameters().stream().noneMatch(p -> p.name().equals("lm_head.weight")));
            assertEquals(C.parameterCount() - (long) C.vocabSize() * C.dim(), C.withTiedEmbeddings(true).parameterCount());
            SplittableRandom r = new SplittableRandom(8);
            float[] embed = null;
            for (Parameter p : tied.parameters()) {
                float[] w = be.download(p.master());
                int used = p.name().equals("model.embed_tokens.weight") ? C.vocabSize() * C.dim() : w.length;
                for (int i = 0; i < used; i++) w[i] = p.decay() ? (float) r.nextDouble(-0.5, 0.5) : (float) r.nextDouble(0.5, 1.5);
                p.load(be, w);
                if (p.name().equals("model.embed_tokens.weight")) embed = w;
            }
            for (Parameter p : two.parameters()) {
                String from = p.name().equals("lm_head.weight") ? "model.embed_tokens.weight" : p.name();
                p.load(be, be.download(tied.parameters().stream().filter(q -> q.name().equals(from)).findFirst().orElseThrow().master()));
            }
            int b = 2, t = C.contextLength();
            Tensor tokens = be.allocate(DType.I32, b, k * t), targets = be.allocate(DType.I32, b * t, k);
            be.uploadInts(tokens, r.ints((long) b * k * t, 0, C.vocabSize()).toArray());
            be.uploadInts(targets, r.ints((long) b * t * k, 0, C.vocabSize()).toArray());
            double[] losses = new double[2];
            LlamaModel[] models = {tied, two};
            for (int i = 0; i < 2; i++) {
                Tape tape = new Tape(be);
                losses[i] = be.sum(tape.crossEntropyK(models[i].forward(tape, tokens, b, k), targets, C.vocabSize(), 1f));
                tape.backward();
                be.releaseScratch();
            }
            assertEquals(losses[1], losses[0], 1e-9 * Math.abs(losses[1]), "the same function");
            float[] gTied = be.download(tied.parameters().getFirst().grad());
            float[] gEmbed = be.download(two.parameters().getFirst().grad()), gHead = be.download(two.parameters().getLast().grad());
            assertEquals("lm_head.weight", two.parameters().getLast().name());
            for (int i = 0; i < gTied.length; i++) assertEquals(gEmbed[i] + gHead[i], gTied[i], 1e-5f, "element " + i);
            assertTrue(embed != null && java.util.stream.IntStream.range(0, gHead.length).anyMatch(i -> gHead[i] != 0f));
        }
    }

    /**
     * Grouped-query attention is multi-head attention whose key and value projections repeat each key/value head's
     * rows for its group of query heads: the GQA model's logits equal those of that MHA model (Hugging Face's
     * repeat_kv semantics: query head h reads key/value head h / groups).
     */
    @org.junit.jupiter.api.Test
    void groupedQueryAttentionIsMultiHeadAttentionWithRepeatedKeyValueRows() {
        ModelConfig mha = new ModelConfig("mha", GQA.vocabSize(), GQA.dim(), GQA.ffnDim(), GQA.layers(), GQA.heads(),
                GQA.contextLength(), GQA.ropeTheta(), GQA.normEps());
        try (Backend be = new CpuBackend(1)) {
            LlamaModel g = new LlamaModel(be, GQA), m = new LlamaModel(be, mha);
            g.initialize(be, 3);
            int dh = GQA.headDim(), groups = GQA.groups();
            for (int i = 0; i < g.parameters().size(); i++) {
                Parameter from = g.parameters().get(i), to = m.parameters().get(i);
                float[] w = be.download(from.master());
                if (from.name().endsWith("k_proj.weight") || from.name().endsWith("v_proj.weight")) {
                    int d = GQA.dim();
                    float[] rep = new float[d * d];
                    for (int h = 0; h < GQA.heads(); h++)
                        System.arraycopy(w, h / groups * dh * d, rep, h * dh * d, dh * d);
                    w = rep;
                }
                to.load(be, w);
            }
            int t = GQA.contextLength();
            Tensor tokens = be.allocate(DType.I32, 2, t);
            be.uploadInts(tokens, new SplittableRandom(9).ints(2 * t, 0, GQA.vocabSize()).toArray());
            float[] a = be.download(g.forward(new Tape(be), tokens, 2, 1).value()), b = be.download(m.forward(new Tape(be), tokens, 2, 1).value());
            for (int i = 0; i < a.length; i++)
                assertTrue(Math.abs(a[i] - b[i]) <= 1e-5f * (1 + Math.abs(b[i])), "logit " + i + ": " + a[i] + " vs " + b[i]);
        }
    }

    /**
     * For 3 random elements of each parameter: the gradient its backward left matches the central difference of
     * {@code loss} (h = 1e-2, relative error < 2 %).
     */
    public static void assertGradientsMatchFiniteDifferences(Backend be, List<Parameter> params, SplittableRandom r, DoubleSupplier loss) {
        for (Parameter p : params) {
            float[] g = be.download(p.grad()), w = be.download(p.master());
            for (int probe = 0; probe < 3; probe++) {
                int i = r.nextInt(w.length);
                float h = 1e-2f, orig = w[i];
                w[i] = orig + h;
                p.load(be, w);
                double up = loss.getAsDouble();
                w[i] = orig - h;
                p.load(be, w);
                double down = loss.getAsDouble();
                w[i] = orig;
                p.load(be, w);
                double fd = (up - down) / (2 * h);
                double err = Math.abs(fd - g[i]) / Math.max(1e-2, Math.abs(fd) + Math.abs(g[i]));
                assertTrue(err < 2e-2, p.name() + "[" + i + "]: backward " + g[i] + " vs finite difference " + fd);
            }
        }
    }

    private static double loss(Backend be, LlamaModel m, Tape tape, Tensor tokens, Tensor targets, int b, int k, int vocab) {
        double s = be.sum(tape.crossEntropyK(m.forward(tape, tokens, b, k), targets, vocab, 0f));
        tape.clear();
        be.releaseScratch();
        return s;
    }
}
