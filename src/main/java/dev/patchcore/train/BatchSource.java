package dev.patchcore.train;

/**
 * Where a stage's micro-batches come from: {@code inputs} is [B, K·T] token ids, {@code targets} is [B·T, K]
 * (row b·T+t holds the tokens of patch t+1). The state is an opaque JSON string so checkpoints can restore it.
 */
public interface BatchSource {
    void next(int[] inputs, int[] targets);

    String state();

    void restore(String state);
}
