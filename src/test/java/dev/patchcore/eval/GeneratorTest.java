package dev.patchcore.eval;

import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.KvCache;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
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

    /** Top-p keeps the most likely tokens until their probabilities reach p (the one reaching it included), in proportion. */
    @Test void topPKeepsTheNucleusInProportion() {
        float[] logits = {(float) Math.log(0.5), (float) Math.log(0.3), (float) Math.log(0.15), (float) Math.log(0.05)};
        for (float topP : new float[] {0.45f, 0.7f, 0.79f, 0.81f, 1f}) {  // not on a boundary (float rounding)
            SplittableRandom r = new SplittableRandom(3);
            int[] hits = new int[4];
            for (int i = 0; i < 40000; i++) hits[Generator.sample(logits, 1f, 0, topP, r)]++;
            int expectKept = topP < 0.5f ? 1 : topP < 0.8f ? 2 : topP < 1f ? 3 : 4;
            for (int t = 0; t < 4; t++) assertEquals(t < expectKept, hits[t] > 0, "top-p " + topP + ", token " + t + ": " + Arrays.toString(hits));
            if (expectKept >= 2) {
                double ratio = (double) hits[0] / hits[1];  // 0.5 : 0.3
                assertTrue(Math.abs(ratio - 5.0 / 3) < 0.12, "top-p " + topP + " ratio " + ratio);
            }
        }
        // After top-k 2: the nucleus is taken of what is left (0.5 and 0.3 of 0.8: p = 0.6 keeps only the first).
        SplittableRandom r = new SplittableRandom(4);
        for (int i = 0; i < 1000; i++) assertEquals(0, Generator.sample(logits, 1f, 2, 0.6f, r));
    }

    /**
     * Greedy decoding picks, at each step, the argmax over the real vocabulary of the last position's logits in a
     * full forward pass of the window the generator reads: re-reading the last T tokens (sliding), or with the KV cache
     * the tokens from the window's start, which restarts at the last ⌈T/2⌉ tokens once it would outgrow T. The prompt
     * starts 2 tokens longer than the context, so both the long-prompt start and a restart happen.
     */
    @Test void greedyDecodingFollowsTheLastPositionOfAFullForwardOfItsWindow() {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MultipleChoiceTest.MICRO);
            m.initialize(be, 11);
            int context = MultipleChoiceTest.MICRO.contextLength(), vocab = MultipleChoiceTest.MICRO.vocabSize();
            int[] prompt = new SplittableRandom(4).ints(context + 2, 0, vocab).toArray();
            for (boolean cached : new boolean[] {false, true}) {
                int count = context + 5;
                int[] out = new Generator(be, m, cached).generate(prompt, count, 0f, 0, -1, 1);
                assertEquals(prompt.length + count, out.length);
                Tape tape = new Tape(be);
                int from = prompt.length - context;
                for (int len = prompt.length; len < out.length; len++) {
                    if (!cached) from = Math.max(0, len - context);
                    else if (len - from > context) from = len - (context + 1) / 2;
                    assertEquals(greedyAfter(be, m, tape, out, from, len, vocab), out[len], (cached ? "cached" : "sliding") + ", token " + len);
                }
            }
        }
    }

    /**
     * A session that samples, takes more tokens and samples again (a conversation's turns) writes what one generation
     * from the whole sequence writes, greedy, with and without the cache: the cache kept between the calls reads the
     * second call's tokens after the first call's last sampled token. The second piece ends past the context, so the
     * cached window restarts during it.
     */
    @Test void aSessionContinuesAsOneGenerationFromTheWholeSequence() {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MultipleChoiceTest.MICRO);
            m.initialize(be, 11);
            int context = MultipleChoiceTest.MICRO.contextLength(), vocab = MultipleChoiceTest.MICRO.vocabSize();
            SplittableRandom r = new SplittableRandom(6);
            int[] first = r.ints(3, 0, vocab).toArray(), more = r.ints(context - 4, 0, vocab).toArray();
            for (boolean cached : new boolean[] {false, true}) {
                Generator g = new Generator(be, m, cached);
                try (Generator.Session session = g.session()) {
                    int[] a = session.generate(first, 4, 0f, 0, 1f, _ -> false, 1, _ -> {});
                    assertEquals(4, a.length);
                    int[] b = session.generate(more, 6, 0f, 0, 1f, _ -> false, 1, _ -> {});
                    int[] whole = session.sequence();
                    assertEquals(first.length + 4 + more.length + 6, whole.length);
                    assertEquals(Arrays.toString(Arrays.copyOfRange(g.generate(first, 4, 0f, 0, 1f, _ -> false, 1, _ -> {}), first.length, first.length + 4)),
                            Arrays.toString(a));
                    if (!cached) {  // the sliding window reads the last T tokens of the whole sequence either way
                        int[] prefix = Arrays.copyOf(whole, whole.length - 6);
                        assertEquals(Arrays.toString(Arrays.copyOfRange(g.generate(prefix, 6, 0f, 0, 1f, _ -> false, 1, _ -> {}), prefix.length,
                                prefix.length + 6)), Arrays.toString(b));
                    } else {
                        // The cache's window starts at token 0 and restarts at the last ⌈T/2⌉ once the sequence outgrows T:
                        // each sampled token is the argmax of a full forward of that window.
                        int prefix = first.length + 4 + more.length;
                        int[] calls = java.util.stream.IntStream.concat(java.util.stream.IntStream.range(first.length, first.length + 4),
                                java.util.stream.IntStream.range(prefix, prefix + 6)).toArray();
                        assertGreedyOverCachedWindow(be, m, whole, calls, prefix, context, vocab);
                    }
                }
            }
        }
    }

    /**
     * Tokens {@code from} on of {@code out} are the greedy choices of a full forward of the cached window before them,
     * the window read at the sequence lengths {@code calls} (it starts at 0 and restarts at the last ⌈T/2⌉ tokens when
     * a call's length would outgrow T).
     */
    private static void assertGreedyOverCachedWindow(Backend be, LlamaModel m, int[] out, int[] calls, int from, int context, int vocab) {
        Tape tape = new Tape(be);
        int start = 0;
        for (int len : calls) {
            if (len - start > context) start = len - (context + 1) / 2;
            if (len < from) continue;
            assertEquals(greedyAfter(be, m, tape, out, start, len, vocab), out[len], "token " + len);
        }
    }

    /** The most likely next token after {@code seq[from, len)} by a full forward of those tokens. */
    private static int greedyAfter(Backend be, LlamaModel m, Tape tape, int[] seq, int from, int len, int vocab) {
        int t = len - from;
        Tensor tokens = be.scratch(DType.I32, 1, t);
        be.uploadInts(tokens, Arrays.copyOfRange(seq, from, len));
        float[] all = be.download(m.forward(tape, tokens, 1, 1).value());
        tape.clear();
        be.releaseScratch();
        int stride = all.length / t, best = 0;
        for (int v = 1; v < vocab; v++) if (all[(t - 1) * stride + v] > all[(t - 1) * stride + best]) best = v;
        return best;
    }

    /**
     * The KV cache's logits are the full forward's last row, read in pieces of 1, 3 and 5 tokens (a prompt, then one
     * token at a time), within float rounding: RoPE at positions past 0, and attention over the cached keys and values.
     */
    @Test void decodingInPiecesMatchesTheFullForward() {
        decodingInPiecesMatchesTheFullForward(MultipleChoiceTest.MICRO);
    }

    /**
     * The same with grouped-query attention, the cache holding the key/value heads only: 2 query heads sharing 1
     * key/value head, and 4 query heads over 2 and over 1 (over 2, query heads 0, 1 read key/value head 0 and 2, 3 read
     * head 1: a mix-up of h / groups with h % kvHeads would show).
     */
    @Test void decodingWithGroupedQueryAttentionMatchesTheFullForward() {
        decodingInPiecesMatchesTheFullForward(MultipleChoiceTest.MICRO.withKvHeads(1));
        ModelConfig fourHeads = new ModelConfig("micro4", 257, 32, 88, 2, 4, 16, 10000f, 1e-5f);
        decodingInPiecesMatchesTheFullForward(fourHeads.withKvHeads(2));
        decodingInPiecesMatchesTheFullForward(fourHeads.withKvHeads(1));
    }

    private static void decodingInPiecesMatchesTheFullForward(ModelConfig config) {
        try (CpuBackend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, config);
            m.initialize(be, 12);
            int context = config.contextLength(), vocab = config.vocabSize();
            int[] seq = new SplittableRandom(5).ints(context, 0, vocab).toArray();
            Tape tape = new Tape(be);
            Tensor all = be.scratch(DType.I32, 1, context);
            be.uploadInts(all, seq);
            float[] full = be.download(m.forward(tape, all, 1, 1).value());
            tape.clear();
            int stride = full.length / context;
            try (KvCache cache = new KvCache(be, m.config())) {
                for (int piece : new int[] {1, 3, 5}) {
                    cache.clear();
                    for (int read = 0; read < context; read += piece) {
                        int n = Math.min(piece, context - read);
                        Tensor tokens = be.scratch(DType.I32, 1, n);
                        be.uploadInts(tokens, Arrays.copyOfRange(seq, read, read + n));
                        float[] logits = be.download(m.decode(be, cache, tokens));
                        int row = read + n - 1;
                        for (int v = 0; v < stride; v++)
                            assertEquals(full[row * stride + v], logits[v], 2e-5f * (1 + Math.abs(full[row * stride + v])),
                                    "pieces of " + piece + ", position " + row + ", logit " + v);
                    }
                    assertEquals(context, cache.length());
                    Tensor more = be.scratch(DType.I32, 1, 1);
                    assertThrows(IllegalArgumentException.class, () -> m.decode(be, cache, more), "a full cache");
                }
            }
        }
    }
}
