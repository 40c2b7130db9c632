package dev.patchcore.eval;

import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.model.KvCache;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;
import java.util.function.IntPredicate;

/**
 * Token-level sampling from a trained model: the logits of the last position over the real vocabulary, temperature and
 * top-k, drawn with a seeded generator (temperature 0 is greedy decoding).
 *
 * <p>The model reads a window of at most T (its context) tokens, positions 0 … from its first token. On a backend that
 * is a {@link DecodingBackend} (both are) the window's keys and values are kept in a {@link KvCache}, so each new token
 * costs one position's forward; when the window would outgrow T it restarts from the last ⌈T/2⌉ tokens, read again.
 * Otherwise (and in tests, to compare) every token re-reads the window, sliding it by one token once it is full: O(T)
 * positions per token.
 */
public final class Generator {
    private final Backend be;
    private final LlamaModel model;
    /** The backend as one that decodes with a KV cache, or null: every token re-reads the window. */
    private final DecodingBackend decoder;

    public Generator(Backend be, LlamaModel model) {
        this(be, model, true);
    }

    /** With {@code cached} false, every token re-reads the window even where the backend could keep a cache. */
    Generator(Backend be, LlamaModel model, boolean cached) {
        this.be = be;
        this.model = model;
        this.decoder = cached && be instanceof DecodingBackend d ? d : null;
    }

    /** Refuses a generation longer than a sequence (an int-indexed array) can hold. */
    public static void requireRoom(int promptTokens, long count) {
        if (count > Integer.MAX_VALUE - 16L - promptTokens)
            throw new IllegalArgumentException("--tokens " + count + " is more than a sequence can hold");
    }

    /** Returns {@code prompt} followed by up to {@code count} sampled tokens, stopping after {@code stopId}. */
    public int[] generate(int[] prompt, long count, float temperature, int topK, int stopId, long seed) {
        return generate(prompt, count, temperature, topK, 1f, id -> id == stopId, seed, _ -> {});
    }

    /**
     * As above with nucleus sampling ({@code topP} in (0, 1]; 1 = off), stopping after the first token that {@code stop}
     * accepts (the end of text, or a chat format's end of turn), and handing each sampled token to {@code onToken} as it
     * is drawn (to print it).
     */
    public int[] generate(int[] prompt, long count, float temperature, int topK, float topP, IntPredicate stop, long seed,
                          IntConsumer onToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
        try (Session session = session()) {
            session.generate(prompt, count, temperature, topK, topP, stop, seed, onToken);
            return session.sequence();
        }
    }

    /** A sequence that grows over several generations (a conversation), its window (and KV cache) kept between them. */
    public Session session() {
        return new Session();
    }

    /**
     * A growing sequence and the window that reads it: each {@link #generate} appends its tokens and samples after them,
     * so a cached window reads only what it has not seen (the new tokens, and the last token sampled before them).
     */
    public final class Session implements AutoCloseable {
        private final IntArrayList seq = new IntArrayList();  // grows as tokens come: a large count allocates nothing up front
        private final Window window = decoder != null ? new CachedWindow() : new SlidingWindow();

        /** The tokens so far: every appended and sampled one. */
        public int[] sequence() { return seq.toIntArray(); }

        public int length() { return seq.size(); }

        /**
         * Where the window starts that reads this sequence with {@code more} tokens appended: the tokens before it are
         * dropped (the last T of a first prompt; once the window would outgrow T, all but the last ⌈T/2⌉).
         */
        public int windowStart(int more) { return window.start(seq.size() + more); }

        /**
         * Appends {@code more} and samples up to {@code count} tokens after them, as {@link Generator#generate}; returns
         * the sampled ones (the last one the stop token if one stopped them).
         */
        public int[] generate(int[] more, long count, float temperature, int topK, float topP, IntPredicate stop, long seed,
                              IntConsumer onToken) {
            if (seq.isEmpty() && more.length == 0) throw new IllegalArgumentException("the prompt is empty");
            if (temperature < 0 || topK < 0) throw new IllegalArgumentException("--temperature and --top-k must not be negative");
            if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("--top-p must lie in (0, 1], got " + topP);
            requireRoom(seq.size() + more.length, count);
            seq.addElements(seq.size(), more);
            int start = seq.size(), vocab = model.config().vocabSize();
            SplittableRandom rng = new SplittableRandom(seed);
            for (long i = 0; i < count; i++) {
                float[] last = Arrays.copyOf(window.lastLogits(seq.elements(), seq.size()), vocab);  // without the padded columns
                int next = sample(last, temperature, topK, topP, rng);
                seq.add(next);
                onToken.accept(next);
                if (stop.test(next)) break;
            }
            return Arrays.copyOfRange(seq.elements(), start, seq.size());
        }

        @Override public void close() { window.close(); }
    }

    /** How the model reads the sequence for each new token. */
    private interface Window extends AutoCloseable {
        /** The logits (padded vocabulary) of the last of seq's first {@code len} tokens, read in this window. */
        float[] lastLogits(int[] seq, int len);

        /** The first of seq's first {@code len} tokens that {@link #lastLogits} reads. */
        int start(int len);

        @Override void close();
    }

    /** Re-reads the last min(len, T) tokens for every new token. */
    private final class SlidingWindow implements Window {
        private final Tape tape = new Tape(be);

        @Override public int start(int len) { return Math.max(0, len - model.config().contextLength()); }

        @Override public float[] lastLogits(int[] seq, int len) {
            int from = start(len), t = len - from;
            Tensor tokens = be.scratch(DType.I32, 1, t);
            be.uploadInts(tokens, Arrays.copyOfRange(seq, from, len));
            Tensor logits = model.forward(tape, tokens, 1, 1).value();
            float[] lastRow = be.download(logits.rows(t - 1, 1));  // only the last position's row crosses to the host
            tape.clear();
            be.releaseScratch();
            return lastRow;
        }

        @Override public void close() {}
    }

    /** Reads only the tokens the cache has not seen; restarts from the last ⌈T/2⌉ tokens when it is full. */
    private final class CachedWindow implements Window {
        private final KvCache cache = new KvCache(decoder, model.config());
        /** The window's first token: the cache holds tokens from … from + cache.length() − 1. */
        private int from = -1;

        @Override public int start(int len) {
            int context = cache.capacity();
            if (from < 0) return Math.max(0, len - context);  // the prompt's last T tokens
            return len - from > context ? len - (context + 1) / 2 : from;
        }

        @Override public float[] lastLogits(int[] seq, int len) {
            int start = start(len);
            if (from >= 0 && start != from) cache.clear();  // outgrown: restart from the last ⌈T/2⌉ tokens
            from = start;
            int read = from + cache.length();
            Tensor tokens = be.scratch(DType.I32, 1, len - read);
            be.uploadInts(tokens, Arrays.copyOfRange(seq, read, len));
            float[] lastRow = be.download(model.decode(decoder, cache, tokens));
            be.releaseScratch();
            return lastRow;
        }

        @Override public void close() { cache.close(); }
    }

    static int sample(float[] logits, float temperature, int topK, SplittableRandom rng) {
        return sample(logits, temperature, topK, 1f, rng);
    }

    /**
     * A token drawn from softmax(logits / temperature) restricted to the top k (0: all) and then to the nucleus of
     * probability {@code topP} (the most likely tokens whose probabilities first add up to at least topP of what top-k
     * left, as Hugging Face's TopPLogitsWarper keeps them; 1: all); temperature 0 is the argmax.
     */
    static int sample(float[] logits, float temperature, int topK, float topP, SplittableRandom rng) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        if (temperature == 0) return best;
        float cutoff = Float.NEGATIVE_INFINITY;
        if (topK > 0 && topK < logits.length) {
            float[] sorted = logits.clone();
            Arrays.sort(sorted);
            cutoff = sorted[sorted.length - topK];
        }
        double[] p = new double[logits.length];
        double sum = 0;
        int kept = 0;
        for (int i = 0; i < logits.length; i++) {
            p[i] = logits[i] < cutoff ? 0 : Math.exp((logits[i] - logits[best]) / temperature);
            sum += p[i];
            if (p[i] > 0) kept++;
        }
        if (topP < 1f) {
            // The nucleus: the largest probabilities, in order, until they reach topP of the sum; the one that reaches
            // it is kept. Sorting only the kept values keeps this cheap after top-k.
            double[] values = new double[kept];
            for (int i = 0, j = 0; i < p.length; i++) if (p[i] > 0) values[j++] = p[i];
            Arrays.sort(values);
            double acc = 0, threshold = values[values.length - 1];
            for (int j = values.length - 1; j >= 0; j--) {
                acc += values[j];
                threshold = values[j];
                if (acc >= topP * sum) break;
            }
            sum = 0;
            for (int i = 0; i < p.length; i++) {
                if (p[i] < threshold) p[i] = 0;
                sum += p[i];
            }
        }
        double u = rng.nextDouble() * sum;
        for (int i = 0; i < p.length; i++) {
            u -= p[i];
            if (u <= 0 && p[i] > 0) return i;
        }
        return best;
    }
}
