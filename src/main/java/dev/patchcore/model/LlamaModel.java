package dev.patchcore.model;

import dev.patchcore.config.Rope;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Tape.AddNorm;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * LLaMA-style decoder: pre-norm RMSNorm, SwiGLU MLP, RoPE, untied input and output embeddings (or one matrix for both
 * where the config ties them: then {@code lm_head.weight} is not a parameter of its own), no biases; multi-head
 * attention, or grouped-query attention when the config has fewer key/value heads (each repeated for its group of
 * query heads before attention, as Hugging Face's repeat_kv).
 * Parameter names are those of Hugging Face {@code LlamaForCausalLM}.
 *
 * <p>The same forward serves both stages: with patch size K the embedding averages K token embeddings
 * (paper Eq. 2) and RoPE positions are patch indices; with K = 1 it is the ordinary token-level model.
 */
public final class LlamaModel {
    private final ModelConfig config;
    private final Rope rope;  // config.rope(), made once: every layer of every forward reads it
    private final Parameter embed;
    private final List<Layer> layers = new ArrayList<>();
    private final Parameter finalNorm;
    private final Parameter lmHead;
    private final List<Parameter> parameters = new ArrayList<>();
    private boolean recompute;

    private record Layer(Parameter inputNorm, Parameter q, Parameter k, Parameter v, Parameter o,
                         Parameter postNorm, Parameter gate, Parameter up, Parameter down) {}

    /**
     * The parameters with a row per vocabulary entry, padded to {@link ModelConfig#paddedVocab()} rows in memory (the
     * padding rows stay zero: no token reads them and the loss leaves their logits out). Checkpoints hold only the
     * vocabulary's rows, so a Hugging Face model read from them has no extra logits taking probability mass.
     */
    public static final Set<String> VOCABULARY_ROWS = Set.of("model.embed_tokens.weight", "lm_head.weight");

    public LlamaModel(Backend backend, ModelConfig c) {
        this(backend, c, true);
    }

    /**
     * A model for forward passes only (eval, generate): its parameters hold the compute copy alone, no fp32 master
     * or gradient (see {@link Parameter#forInference}); a backward pass over it fails.
     */
    public static LlamaModel forInference(Backend backend, ModelConfig c) {
        return new LlamaModel(backend, c, false);
    }

    private LlamaModel(Backend backend, ModelConfig c, boolean trainable) {
        this.config = c;
        this.rope = c.rope();
        int d = c.dim(), f = c.ffnDim();
        ParameterMaker make = (name, decay, shape) -> add(trainable ? new Parameter(backend, name, decay, shape)
                : Parameter.forInference(backend, name, decay, shape));
        embed = make.of("model.embed_tokens.weight", true, c.paddedVocab(), d);
        for (int i = 0; i < c.layers(); i++) {
            String p = "model.layers." + i + ".";
            layers.add(new Layer(
                    make.of(p + "input_layernorm.weight", false, d),
                    make.of(p + "self_attn.q_proj.weight", true, d, d),
                    make.of(p + "self_attn.k_proj.weight", true, c.kvDim(), d),
                    make.of(p + "self_attn.v_proj.weight", true, c.kvDim(), d),
                    make.of(p + "self_attn.o_proj.weight", true, d, d),
                    make.of(p + "post_attention_layernorm.weight", false, d),
                    make.of(p + "mlp.gate_proj.weight", true, f, d),
                    make.of(p + "mlp.up_proj.weight", true, f, d),
                    make.of(p + "mlp.down_proj.weight", true, d, f)));
        }
        finalNorm = make.of("model.norm.weight", false, d);
        // Tied: the head is the embedding's Parameter, whose gradient both uses add to (patchEmbedBackward and
        // matmulBackward accumulate).
        lmHead = c.tiedEmbeddings() ? embed : make.of("lm_head.weight", true, c.paddedVocab(), d);
    }

    @FunctionalInterface
    private interface ParameterMaker {
        Parameter of(String name, boolean decay, int... shape);
    }

    private Parameter add(Parameter p) {
        parameters.add(p);
        return p;
    }

    public ModelConfig config() { return config; }

    /** All parameters in a fixed order (the checkpoint order). */
    public List<Parameter> parameters() { return Collections.unmodifiableList(parameters); }

    /** Hugging Face's initialization: N(0, 0.02) for matrices, ones for norm gains; padding rows of the vocabulary are 0. */
    public void initialize(Backend backend, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        for (Parameter p : parameters) {
            float[] w = new float[Math.toIntExact(p.numel())];
            if (p.shape().length == 2) {  // a matrix (a norm gain is a vector)
                int used = p == embed || p == lmHead ? config.vocabSize() * config.dim() : w.length;
                for (int i = 0; i < used; i++) w[i] = (float) (gaussian(rng) * 0.02);
            } else {
                Arrays.fill(w, 1f);
            }
            p.load(backend, w);
        }
    }

    private static double gaussian(SplittableRandom r) {
        // Box–Muller from a splittable generator, so initialization is reproducible across JDKs.
        double u1 = r.nextDouble(), u2 = r.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
    }

    /**
     * Forward pass over {@code tokens} (I32 [B, K·T]) read as T patches of K tokens; returns logits [B·T, Vpad]
     * where row b·T+t predicts the K tokens of patch t+1 (columns ≥ vocabSize are padding; see
     * {@link ModelConfig#paddedVocab()}).
     */
    public Var forward(Tape tape, Tensor tokens, int batch, int k) {
        return forward(tape, tokens, batch, k, null, null);
    }

    /** Sees each layer's FFN output (the down projection's result, [B·T, d]) during a forward pass. */
    @FunctionalInterface
    public interface FfnObserver {
        void ffnOutput(int layer, Tensor output);
    }

    /**
     * The forward pass, handing each layer's FFN output to {@code observer} (may be null), with paper §3.7's patch
     * projections (may be null): with an input projection the patch
     * embedding is {@code concat(K token embeddings) · w_inᵀ}; with an output projection the logits are
     * {@code [B·T·K, Vpad]}, row (b·T + t)·K + j predicting token j of patch t+1 alone — score them against the
     * targets as {@link #lossTargets} shapes them.
     */
    public Var forward(Tape tape, Tensor tokens, int batch, int k, FfnObserver observer, PatchProjections proj) {
        if (proj != null && proj.patchSize() != k)
            throw new IllegalArgumentException("patch projections for K=" + proj.patchSize() + " used at K=" + k);
        int seqTokens = Math.toIntExact(tokens.numel() / batch);
        if (seqTokens % k != 0) throw new IllegalArgumentException("sequence of " + seqTokens + " tokens is not a multiple of K=" + k);
        int t = seqTokens / k;
        float eps = config.normEps();

        int d = config.dim();
        Var x = proj != null && proj.input() != null
                ? tape.linear(tape.reshape(tape.patchEmbed(embed, tokens, 1), batch * t, k * d), proj.input())
                : tape.patchEmbed(embed, tokens, k);
        Var normed = tape.rmsNorm(x, layers.getFirst().inputNorm, eps);
        for (int i = 0; i < layers.size(); i++) {
            int index = i;
            Tape.Segment layer = (tp, residual, norm, again) -> layer(tp, index, residual, norm, t, again ? null : observer);
            AddNorm out = recompute ? tape.checkpoint(x, normed, layer) : layer.apply(tape, x, normed, false);
            x = out.sum();
            normed = out.normed();
        }
        if (proj != null && proj.output() != null)
            return tape.linear(tape.reshape(tape.linear(normed, proj.output()), batch * t * k, d), lmHead);
        return tape.linear(normed, lmHead);
    }

    /** Layer {@code i} from its input (residual stream, normalized copy) to the next layer's (or the final norm's). */
    private AddNorm layer(Tape tape, int i, Var x, Var normed, int t, FfnObserver observer) {
        Layer l = layers.get(i);
        float eps = config.normEps();
        int h = config.heads(), kvh = config.kvHeads(), groups = config.groups();
        Var q = tape.rope(tape.linear(normed, l.q), t, h, rope);
        Var kk = tape.repeatHeads(tape.rope(tape.linear(normed, l.k), t, kvh, rope), kvh, groups);
        Var v = tape.repeatHeads(tape.linear(normed, l.v), kvh, groups);
        Var attn = tape.linear(tape.attention(q, kk, v, t, h), l.o);
        AddNorm mid = tape.addRmsNorm(x, attn, l.postNorm, eps);
        Var mlp = tape.linear(tape.swiglu(tape.linear(mid.normed(), l.gate), tape.linear(mid.normed(), l.up)), l.down);
        if (observer != null) observer.ffnOutput(i, mlp.value());
        Parameter nextNorm = i + 1 < layers.size() ? layers.get(i + 1).inputNorm : finalNorm;
        return tape.addRmsNorm(mid.sum(), mlp, nextNorm, eps);
    }

    /**
     * Reads {@code tokens} (I32 [1, n], one sequence's next n tokens) at positions cache.length() onward at token
     * level, appending their keys and values to {@code cache}, and returns the logits of the last of them ([1, Vpad]):
     * the last row of {@link #forward} over every token the cache has read, up to rounding (another summation order).
     * Inference only: nothing is recorded for a backward pass.
     */
    public Tensor decode(DecodingBackend be, KvCache cache, Tensor tokens) {
        int n = Math.toIntExact(tokens.numel()), start = cache.length();
        if (n < 1 || start + n > cache.capacity())
            throw new IllegalArgumentException(n + " tokens after " + start + " do not fit a cache of " + cache.capacity());
        float eps = config.normEps();
        int h = config.heads(), kvh = config.kvHeads();
        Tensor x = be.patchEmbed(embed.compute(), tokens, 1);
        Tensor normed = be.rmsNorm(x, layers.getFirst().inputNorm.compute(), eps).y();
        for (int i = 0; i < layers.size(); i++) {
            Layer l = layers.get(i);
            Tensor q = be.ropeAt(be.matmul(normed, l.q.compute()), start, h, rope);
            Tensor k = be.ropeAt(be.matmul(normed, l.k.compute()), start, kvh, rope), v = be.matmul(normed, l.v.compute());
            be.copy(k, cache.keys(i).rows(start, n));  // kvh heads, not repeated: query head j reads head j / groups
            be.copy(v, cache.values(i).rows(start, n));
            Tensor attn = be.matmul(be.attendCached(q, cache.keys(i), cache.values(i), start, h, kvh), l.o.compute());
            Backend.AddRmsNormOut mid = be.addRmsNorm(x, attn, l.postNorm.compute(), eps);
            Tensor mlp = be.matmul(be.swiglu(be.matmul(mid.y(), l.gate.compute()), be.matmul(mid.y(), l.up.compute())),
                    l.down.compute());
            Parameter nextNorm = i + 1 < layers.size() ? layers.get(i + 1).inputNorm : finalNorm;
            Backend.AddRmsNormOut out = be.addRmsNorm(mid.sum(), mlp, nextNorm.compute(), eps);
            x = out.sum();
            normed = out.y();
        }
        cache.advance(n);
        return be.matmul(normed.rows(n - 1, 1), lmHead.compute());
    }

    /**
     * Activation recompute per layer (off by default): the forward keeps each layer's two inputs only, and the backward
     * runs each layer again before going back through it ({@link Tape#checkpoint}). Saves all but one layer's
     * activations for a third more compute; gradients are unchanged.
     */
    public void setRecompute(boolean on) { this.recompute = on; }

    public boolean recompute() { return recompute; }

    /**
     * The targets ({@code [B·T, K]}) as the logits of {@link #forward(Tape, Tensor, int, int, FfnObserver,
     * PatchProjections)} predict them: unchanged, or {@code [B·T·K, 1]} (one target per row) with an output projection.
     */
    public static Tensor lossTargets(Tensor targets, PatchProjections proj) {
        return proj != null && proj.output() != null ? targets.reshape((int) targets.numel(), 1) : targets;
    }
}
