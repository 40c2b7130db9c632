package dev.patchcore.data;

import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Objects;

/**
 * Fixed validation batches: windows taken in order from the start of the shard (same
 * {@link WindowLayout} as training), B per batch, at most {@code maxBatches} full batches.
 * The same arguments always give the same batches, so losses are comparable across runs.
 * A shard too short for one full batch gives {@link #batchCount()} = 0 ({@link #upTo} scores it anyway).
 */
public final class ValidationBatches implements Iterable<Batch> {

    private final TokenSequence data;
    private final WindowLayout layout;
    private final int batchSize;
    private final int batchCount;

    public ValidationBatches(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches) {
        this.data = Objects.requireNonNull(data);
        this.layout = new WindowLayout(patchSize, blockPatches);
        layout.batchTokens(batchSize); // validates B
        if (maxBatches < 0) throw new IllegalArgumentException("max validation batches must be >= 0, got " + maxBatches);
        this.batchSize = batchSize;
        this.batchCount = (int) Math.min(maxBatches, layout.windowCount(data.length()) / batchSize);
    }

    /**
     * Batches of {@code batchSize} windows as the constructor's, except that a shard shorter than one batch but
     * holding at least one window gives one smaller batch of all its windows (a small validation split is still
     * scored).
     */
    public static ValidationBatches upTo(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches) {
        long windows = new WindowLayout(patchSize, blockPatches).windowCount(data.length());
        return new ValidationBatches(data, patchSize, blockPatches, windows > 0 && windows < batchSize ? (int) windows : batchSize, maxBatches);
    }

    public int batchCount() { return batchCount; }

    public int batchSize() { return batchSize; }

    public WindowLayout layout() { return layout; }

    /** Fills caller-owned arrays with batch {@code i}. */
    public void fill(int i, int[] inputs, int[] targets) {
        Objects.checkIndex(i, batchCount);
        int n = layout.batchTokens(batchSize);
        if (inputs.length != n || targets.length != n) {
            throw new IllegalArgumentException("batch arrays must hold B·K·T = " + n + " tokens");
        }
        for (int row = 0; row < batchSize; row++) layout.fill(data, (long) i * batchSize + row, row, inputs, targets);
    }

    public Batch batch(int i) {
        Batch b = Batch.allocate(batchSize, layout);
        fill(i, b.inputs(), b.targets());
        return b;
    }

    @Override
    public Iterator<Batch> iterator() {
        return new Iterator<>() {
            private int next;

            @Override public boolean hasNext() { return next < batchCount; }

            @Override
            public Batch next() {
                if (!hasNext()) throw new NoSuchElementException();
                return batch(next++);
            }
        };
    }
}
