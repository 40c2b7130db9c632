package dev.patchcore.train;

/**
 * One training stage: patch size K, micro-batch and accumulation so that every optimizer step reads the same
 * number of tokens, its own step budget, and the patches per sequence (the model's context T, or T/K for
 * {@code --short-patch-context}). The token stage is K = 1.
 */
public record Stage(String name, int patchSize, int batch, int accum, long steps, int blockPatches) {

    /** Builds the stages of a run: patch stage (if K > 1 and λ > 0 and it gets steps), then token stage. */
    public static java.util.List<Stage> plan(TrainConfig c) {
        java.util.List<Stage> stages = new java.util.ArrayList<>(2);
        if (c.patchSteps() > 0 && c.patch().shortContext()) {
            // Paper §3.2's ablation: sequences of T tokens (T/K patches), so as many sequences per step as the token stage.
            stages.add(new Stage("patch", c.patchSize(), c.batch(), c.accum(), c.patchSteps(), c.model().contextLength() / c.patchSize()));
        } else if (c.patchSteps() > 0) {
            // Sequences per step shrink by K (each is K times longer); pick the fewest micro-batches of at most `batch`.
            int seqs = c.batch() * c.accum() / c.patchSize();
            int accum = 1;
            while (seqs % accum != 0 || seqs / accum > c.batch()) accum++;
            stages.add(new Stage("patch", c.patchSize(), seqs / accum, accum, c.patchSteps(), c.model().contextLength()));
        }
        if (c.tokenSteps() > 0) stages.add(new Stage("token", 1, c.batch(), c.accum(), c.tokenSteps(), c.model().contextLength()));
        return stages;
    }
}
