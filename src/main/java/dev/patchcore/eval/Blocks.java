package dev.patchcore.eval;

import dev.patchcore.data.Batch;
import dev.patchcore.data.Plural;
import dev.patchcore.data.TokenSequence;
import dev.patchcore.data.WindowLayout;

import java.util.AbstractList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Non-overlapping evaluation blocks (the paper's WikiText-103 protocol): block i reads tokens [i·T, i·T + T) and
 * predicts tokens [i·T + 1, i·T + T + 1). These are the K = 1 windows of {@link WindowLayout}; unlike validation
 * batches, a last partial batch is kept, and at K = 1 with no block limit the tokens after the last whole block form
 * one shorter block (the whole text, if it is shorter than a block), so every token after the first is scored exactly
 * once. (With K > 1 a tail shorter than K·T + K tokens is not scored: a shorter block would change the patches.)
 * The list makes each batch as it is read, so a long split costs no memory until it is scored.
 */
public final class Blocks {
    private Blocks() {}

    /**
     * Batches of up to {@code batch} blocks of K·T tokens read as T patches (block i: tokens [i·K·T, i·K·T + K·T),
     * predicting patches 1..T; K = 1 gives token-level blocks); {@code maxBlocks} ≤ 0 means all.
     */
    public static List<Batch> of(TokenSequence tokens, int patchSize, int contextLength, int batch, long maxBlocks) {
        return of("the text", tokens, patchSize, contextLength, batch, maxBlocks);
    }

    /** As above; {@code what} names the tokens in the error for too few of them ("--text notes.txt"). */
    public static List<Batch> of(String what, TokenSequence tokens, int patchSize, int contextLength, int batch, long maxBlocks) {
        WindowLayout layout = new WindowLayout(patchSize, contextLength);
        long blocks = layout.windowCount(tokens.length());
        if (maxBlocks > 0) blocks = Math.min(blocks, maxBlocks);
        boolean scoreTail = patchSize == 1 && (maxBlocks <= 0 || maxBlocks > layout.windowCount(tokens.length()));
        if (scoreTail && tokens.length() < 2)
            throw new IllegalArgumentException(what + " has " + Plural.of(tokens.length(), "token") + ": nothing to score (a "
                    + "token is scored by the tokens before it)");
        if (blocks < 1 && !scoreTail)  // at K = 1 a text shorter than a block is one shorter block
            throw new IllegalArgumentException(what + " has " + Plural.of(tokens.length(), "token") + ", fewer than the "
                    + layout.windowTokens() + " one block needs (its " + (layout.windowTokens() - patchSize) + " tokens and the "
                    + patchSize + " after them that it predicts)");
        long start = blocks * contextLength, tail = tokens.length() - start - 1;  // targets after the last whole block
        long all = blocks, whole = (blocks + batch - 1) / batch, count = whole + (scoreTail && tail > 0 ? 1 : 0);
        if (count > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException(what + " makes " + count + " batches of " + batch + " blocks: give a larger --batch");
        // Each batch is made when it is read: a long split (the validation split of a large corpus) is not held in
        // memory as int arrays, 8 bytes a token, all at once.
        return new AbstractList<>() {
            @Override public int size() { return (int) count; }

            @Override public Batch get(int i) {
                Objects.checkIndex(i, (int) count);
                if (i < whole) {
                    long b0 = (long) i * batch;
                    int n = (int) Math.min(batch, all - b0);
                    int[] in = new int[layout.batchTokens(n)], tg = new int[layout.batchTokens(n)];
                    for (int j = 0; j < n; j++) layout.fill(tokens, b0 + j, j, in, tg);
                    return new Batch(in, tg, n, patchSize, contextLength);
                }
                int t = (int) tail;
                int[] in = new int[t], tg = new int[t + 1];
                tokens.copy(start, tg, 0, t + 1);
                System.arraycopy(tg, 0, in, 0, t);
                return new Batch(in, Arrays.copyOfRange(tg, 1, t + 1), 1, 1, t);
            }
        };
    }
}
