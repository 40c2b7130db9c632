package dev.patchcore.data;

/**
 * How a token stream is cut into training windows for patch size K and block T patches.
 *
 * <p>A window is {@code K·(T+1)} consecutive tokens: the model reads the first {@code K·T}
 * (T patches) and predicts, at patch t, the K tokens of patch t+1 — tokens
 * {@code K .. K·(T+1)} of the window, i.e. paper App. A's {@code labels[..., K:].reshape(-1, K)}.
 * Window w starts at token {@code w·K·T}: the input parts tile the stream without overlap,
 * so one epoch feeds every token (but the short tail) to the model exactly once; the last
 * target patch of a window is the first input patch of the next.
 */
public record WindowLayout(int patchSize, int blockPatches) {

    public WindowLayout {
        if (patchSize <= 0) throw new IllegalArgumentException("patch size K must be >= 1, got " + patchSize);
        if (blockPatches <= 0) throw new IllegalArgumentException("block size T must be >= 1 patch, got " + blockPatches);
        if ((long) patchSize * (blockPatches + 1L) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("window K·(T+1) = " + (long) patchSize * (blockPatches + 1L) + " tokens is too long");
        }
    }

    /** {@code K·T}: model input tokens per sequence, and the stride between windows. */
    public int inputTokens() { return patchSize * blockPatches; }

    /** {@code K·(T+1)}: tokens a window spans. */
    public int windowTokens() { return patchSize * (blockPatches + 1); }

    /**
     * {@code B·K·T}: tokens in the input (and in the target) array of a batch.
     *
     * @throws IllegalArgumentException if B is not positive or the batch would not fit an int array
     */
    public int batchTokens(int batchSize) {
        if (batchSize <= 0) throw new IllegalArgumentException("micro-batch size B must be >= 1, got " + batchSize);
        long n = (long) batchSize * inputTokens();
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("a batch of B·K·T = " + n + " tokens is too large");
        return (int) n;
    }

    /**
     * The mixup arrangement of paper App. C: K token-level windows of T+1 tokens ({@code windows[j]} starting at
     * token {@code windows[j]·T}) mixed position by position, so patch t of sequence {@code row} holds token t of
     * each of the K windows and its target patch their tokens t+1.
     */
    public void fillMixed(TokenSequence data, long[] windows, int row, int[] inputs, int[] targets, int[] scratch) {
        int k = patchSize, t = blockPatches, base = row * k * t;
        if (windows.length != k) throw new IllegalArgumentException("mixup needs K = " + k + " windows, got " + windows.length);
        for (int j = 0; j < k; j++) {
            data.copy(windows[j] * t, scratch, 0, t + 1);
            for (int p = 0; p < t; p++) {
                inputs[base + p * k + j] = scratch[p];
                targets[base + p * k + j] = scratch[p + 1];
            }
        }
    }

    /** How many whole windows fit in {@code length} tokens. */
    public long windowCount(long length) {
        return length < windowTokens() ? 0 : (length - windowTokens()) / inputTokens() + 1;
    }

    /**
     * Copies window {@code w} as sequence {@code row} of a batch: inputs at
     * {@code inputs[row·K·T ..]} and targets at {@code targets[row·T·K ..]} (rows
     * {@code row·T .. row·T+T-1} of the {@code [B·T, K]} target matrix).
     */
    public void fill(TokenSequence data, long w, int row, int[] inputs, int[] targets) {
        long start = w * inputTokens();
        int n = inputTokens();
        data.copy(start, inputs, row * n, n);
        // Targets are the same stream shifted by one patch: [B·T, K] row-major is contiguous per sequence.
        data.copy(start + patchSize, targets, row * n, n);
    }
}
