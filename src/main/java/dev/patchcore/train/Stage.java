package dev.patchcore.train;

/**
 * One training stage: patch size K, micro-batch and accumulation so that every optimizer step reads the same
 * number of tokens, and its own step budget. The token stage is K = 1.
 */
public record Stage(String name, int patchSize, int batch, int accum, long steps) {

    /** Builds the stages of a run: patch stage (if K > 1 and λ > 0 and it gets steps), then token stage. */
    public static java.util.List<Stage> plan(TrainConfig c) {
        java.util.List<Stage> stages = new java.util.ArrayList<>(2);
        if (c.patchSteps() > 0) {
            // Sequences per step shrink by K (each is K times longer); pick the fewest micro-batches of at most `batch`.
            int seqs = c.batch() * c.accum() / c.patchSize();
            int accum = 1;
            while (seqs % accum != 0 || seqs / accum > c.batch()) accum++;
            stages.add(new Stage("patch", c.patchSize(), seqs / accum, accum, c.patchSteps()));
        }
        if (c.tokenSteps() > 0) stages.add(new Stage("token", 1, c.batch(), c.accum(), c.tokenSteps()));
        return stages;
    }
}
