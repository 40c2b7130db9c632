package dev.patchcore.data;

/**
 * One micro-batch of B sequences (see {@link WindowLayout}).
 *
 * @param inputs  {@code int[B·K·T]}, row-major {@code [B, K·T]}: token ids the model reads
 * @param targets {@code int[B·T·K]}, row-major {@code [B·T, K]}: row {@code b·T+t} holds the
 *                K tokens of patch t+1 of sequence b
 */
public record Batch(int[] inputs, int[] targets, int batchSize, int patchSize, int blockPatches) {

    public Batch {
        long n = (long) batchSize * patchSize * blockPatches;
        if (inputs.length != n || targets.length != n) {
            throw new IllegalArgumentException("batch arrays must hold B·K·T = " + n + " tokens, got "
                    + inputs.length + " and " + targets.length);
        }
    }

    static Batch allocate(int batchSize, WindowLayout layout) {
        int n = layout.batchTokens(batchSize);
        return new Batch(new int[n], new int[n], batchSize, layout.patchSize(), layout.blockPatches());
    }

    /** Tokens the model reads in this batch: {@code B·K·T}. */
    public int tokenCount() { return inputs.length; }
}
