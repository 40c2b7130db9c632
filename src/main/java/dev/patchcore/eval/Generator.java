package dev.patchcore.eval;

import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Token-level sampling from a trained model: each new token re-reads the last T tokens (no KV cache; fine for the
 * model sizes a CPU samples from), takes the logits of the last position over the real vocabulary, applies
 * temperature and top-k, and draws with a seeded generator. Temperature 0 is greedy decoding.
 */
public final class Generator {
    private final Backend be;
    private final LlamaModel model;
    private final Tape tape;

    public Generator(Backend be, LlamaModel model) {
        this.be = be;
        this.model = model;
        this.tape = new Tape(be);
    }

    /** Returns {@code prompt} followed by up to {@code count} sampled tokens, stopping after {@code stopId}. */
    public int[] generate(int[] prompt, int count, float temperature, int topK, int stopId, long seed) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
        if (temperature < 0 || topK < 0) throw new IllegalArgumentException("--temperature and --top-k must not be negative");
        int vocab = model.config().vocabSize(), context = model.config().contextLength();
        SplittableRandom rng = new SplittableRandom(seed);
        int[] seq = Arrays.copyOf(prompt, prompt.length + count);
        int len = prompt.length;
        for (int i = 0; i < count; i++) {
            int from = Math.max(0, len - context), t = len - from;
            Tensor tokens = be.scratch(DType.I32, 1, t);
            be.uploadInts(tokens, Arrays.copyOfRange(seq, from, len));
            Tensor logits = model.forward(tape, tokens, 1, 1).value();
            float[] lastRow = be.download(logits.rows(t - 1, 1));  // only the last position's row crosses to the host
            tape.clear();
            be.releaseScratch();
            float[] last = Arrays.copyOf(lastRow, vocab);  // the real vocabulary, without the padded columns
            int next = sample(last, temperature, topK, rng);
            seq[len++] = next;
            if (next == stopId) break;
        }
        return Arrays.copyOf(seq, len);
    }

    static int sample(float[] logits, float temperature, int topK, SplittableRandom rng) {
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
        for (int i = 0; i < logits.length; i++) {
            p[i] = logits[i] < cutoff ? 0 : Math.exp((logits[i] - logits[best]) / temperature);
            sum += p[i];
        }
        double u = rng.nextDouble() * sum;
        for (int i = 0; i < p.length; i++) {
            u -= p[i];
            if (u <= 0 && p[i] > 0) return i;
        }
        return best;
    }
}
