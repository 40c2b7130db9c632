package dev.patchcore.train;

import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.PatchMode;

/**
 * The training recipe. Defaults are the paper's (§3.1): AdamW β = (0.9, 0.95), ε = 1e-8, weight decay 0.1,
 * clipping at 1.0, peak lr 3e-4 with linear warmup then cosine decay; K = 4, λ = 2/3.
 *
 * @param steps          total optimizer steps over both stages (patch stage gets round(λ·steps))
 * @param batch          micro-batch in sequences for the token stage
 * @param accum          gradient-accumulation micro-batches per step in the token stage
 * @param warmup         warmup steps per stage; negative = automatic (min(2000, stage steps / 10))
 * @param minLrRatio     cosine decays to peak·minLrRatio
 * @param patch          patch formation (consecutive, or the mixup baseline of App. C) and §3.7's projections
 */
public record TrainConfig(ModelConfig model, int patchSize, double lambda, long steps, int batch, int accum,
                          float lr, float minLrRatio, int warmup, float weightDecay, float beta1, float beta2,
                          float eps, float clip, long seed, int evalEvery, int evalBatches, int saveEvery,
                          int logEvery, PatchOptions patch) {

    /** A run whose patch stage groups consecutive tokens (the method). */
    public TrainConfig(ModelConfig model, int patchSize, double lambda, long steps, int batch, int accum,
                       float lr, float minLrRatio, int warmup, float weightDecay, float beta1, float beta2,
                       float eps, float clip, long seed, int evalEvery, int evalBatches, int saveEvery, int logEvery) {
        this(model, patchSize, lambda, steps, batch, accum, lr, minLrRatio, warmup, weightDecay, beta1, beta2, eps, clip,
                seed, evalEvery, evalBatches, saveEvery, logEvery, PatchOptions.DEFAULT);
    }

    /** How the patch stage forms patches. */
    public PatchMode patchMode() { return patch().mode(); }

    public TrainConfig {
        if (patch == null) patch = PatchOptions.DEFAULT;  // trainer.json of runs saved before these options (Gson builds records through this constructor)
        if (patchSize < 1) throw new IllegalArgumentException("--patch-size must be at least 1 (got " + patchSize + ")");
        if (!(lambda >= 0 && lambda <= 1)) throw new IllegalArgumentException("--lambda must lie in [0, 1] (got " + lambda + ")");
        if (steps < 1) throw new IllegalArgumentException("the training budget must be at least one step (got " + steps + ")");
        if (batch < 1 || accum < 1) throw new IllegalArgumentException("--batch and --accum must be positive");
        requireStepFits(batch, accum, model.contextLength());
        if (!(lr > 0)) throw new IllegalArgumentException("--lr must be positive");
        if (clip < 0 || weightDecay < 0) throw new IllegalArgumentException("--clip and --weight-decay must not be negative");
        if (evalEvery < 0 || evalBatches < 0 || saveEvery < 0)
            throw new IllegalArgumentException("--eval-every, --eval-batches and --save-every must not be negative (0 = never)");
        if (!patch.equals(PatchOptions.DEFAULT) && (patchSize == 1 || Math.round(lambda * steps) == 0))
            throw new IllegalArgumentException("--patch-mode mixup, --input-proj, --output-proj and --short-patch-context change the patch stage, "
                    + "and this run has none (K = " + patchSize + ", λ = " + lambda + ")");
        if (patch.shortContext() && model.contextLength() % patchSize != 0)
            throw new IllegalArgumentException("--short-patch-context needs the context T = " + model.contextLength()
                    + " divisible by K = " + patchSize);
        if (patchSize > 1 && lambda > 0 && ((long) batch * accum) % patchSize != 0 && !patch.shortContext())
            throw new IllegalArgumentException("batch×accum (" + batch + "×" + accum + ") must be divisible by K=" + patchSize
                    + " so both stages see the same tokens per step");
    }

    /** Refuses a step of more than 2^31 − 1 tokens (its buffers are indexed by int): batch × accum × context. */
    public static void requireStepFits(int batch, int accum, int context) {
        long tokens = (long) batch * accum * context;
        if (tokens > Integer.MAX_VALUE)
            throw new IllegalArgumentException("--batch " + batch + " × --accum " + accum + " × the context of " + context + " is "
                    + tokens + " tokens per step, more than 2^31 − 1");
    }

    public long patchSteps() { return patchSize == 1 ? 0 : Math.round(lambda * steps); }

    public long tokenSteps() { return steps - patchSteps(); }

    /**
     * For a new run (not in the constructor: checkpoints of older versions, which did not check these, are read through
     * it): the optimizer settings in their ranges.
     */
    public TrainConfig checkRecipe() {
        if (!Float.isFinite(lr)) throw new IllegalArgumentException("--lr must be a positive number (got " + lr + ")");
        if (!(minLrRatio >= 0 && minLrRatio <= 1))
            throw new IllegalArgumentException("--min-lr-ratio must lie in [0, 1]: the cosine decays to lr × it (got " + minLrRatio + ")");
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new IllegalArgumentException("--beta1 and --beta2 must lie in [0, 1) (got " + beta1 + ", " + beta2 + ")");
        if (!(eps > 0) || !Float.isFinite(eps)) throw new IllegalArgumentException("--eps must be a positive number (got " + eps + ")");
        if (!Float.isFinite(clip) || !Float.isFinite(weightDecay)) throw new IllegalArgumentException("--clip and --weight-decay must be numbers");
        if (logEvery < 1) throw new IllegalArgumentException("--log-every must be at least 1 (got " + logEvery + ")");
        return this;
    }

    /**
     * For a new run (not in the constructor: checkpoints of older runs are read through it): refuses a budget that
     * rounds one of two requested stages (0 < λ < 1) down to no steps.
     */
    public TrainConfig requireBothStages() {
        if (patchSize > 1 && lambda > 0 && lambda < 1 && (patchSteps() == 0 || tokenSteps() == 0))
            throw new IllegalArgumentException("a budget of " + dev.patchcore.data.Plural.of(steps, "step") + " leaves one stage none at λ = "
                    + String.format(java.util.Locale.ROOT, "%.3f", lambda) + " (patch stage " + patchSteps() + ", token stage " + tokenSteps() + "); raise --steps, --tokens or --epochs, "
                    + "or choose --lambda 0 or 1");
        return this;
    }

    /**
     * The same run validating, checkpointing and logging every so many steps (what --resume may change: none of it
     * touches the weights or the data order).
     */
    public TrainConfig withCadence(int evalEvery, int saveEvery, int logEvery) {
        if (logEvery < 1) throw new IllegalArgumentException("--log-every must be at least 1 (got " + logEvery + ")");
        return new TrainConfig(model, patchSize, lambda, steps, batch, accum, lr, minLrRatio, warmup, weightDecay, beta1, beta2, eps,
                clip, seed, evalEvery, evalBatches, saveEvery, logEvery, patch);
    }

    /** The same recipe with {@code accum} micro-batches per token-stage step. */
    public TrainConfig withAccum(int accum) {
        return new TrainConfig(model, patchSize, lambda, steps, batch, accum, lr, minLrRatio, warmup, weightDecay, beta1, beta2, eps,
                clip, seed, evalEvery, evalBatches, saveEvery, logEvery, patch);
    }

    /** Tokens per optimizer step, identical in both stages (paper Table 6: fewer accumulation steps at K·T). */
    public long tokensPerStep() { return (long) batch * accum * model.contextLength(); }
}
