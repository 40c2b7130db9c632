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
    private final PatchMode mode;
    private final int batchSize;
    private final int batchCount;

    public ValidationBatches(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches) {
        this(data, patchSize, blockPatches, batchSize, maxBatches, PatchMode.CONSECUTIVE);
    }

    /** With {@link PatchMode#MIXUP}, sequence r of batch i mixes token-level windows (i·B + r)·K .. (i·B + r)·K + K−1. */
    public ValidationBatches(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches, PatchMode mode) {
        this.data = Objects.requireNonNull(data);
        this.layout = new WindowLayout(patchSize, blockPatches);
        this.mode = Objects.requireNonNull(mode);
        layout.batchTokens(batchSize); // validates B
        if (maxBatches < 0) throw new IllegalArgumentException("max validation batches must be >= 0, got " + maxBatches);
        this.batchSize = batchSize;
        this.batchCount = (int) Math.min(maxBatches, sequences(data.length(), layout, mode) / batchSize);
    }

    /** How many sequences of the layout a split of {@code length} tokens gives. */
    private static long sequences(long length, WindowLayout layout, PatchMode mode) {
        return mode == PatchMode.MIXUP
                ? new WindowLayout(1, layout.blockPatches()).windowCount(length) / layout.patchSize()
                : layout.windowCount(length);
    }

    /**
     * Batches of {@code batchSize} windows as the constructor's, except that a shard shorter than one batch but
     * holding at least one window gives one smaller batch of all its windows (a small validation split is still
     * scored).
     */
    public static ValidationBatches upTo(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches) {
        return upTo(data, patchSize, blockPatches, batchSize, maxBatches, PatchMode.CONSECUTIVE);
    }

    public static ValidationBatches upTo(TokenSequence data, int patchSize, int blockPatches, int batchSize, int maxBatches,
                                         PatchMode mode) {
        long windows = sequences(data.length(), new WindowLayout(patchSize, blockPatches), mode);
        return new ValidationBatches(data, patchSize, blockPatches, windows > 0 && windows < batchSize ? (int) windows : batchSize,
                maxBatches, mode);
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
        if (mode == PatchMode.MIXUP) {
            int k = layout.patchSize();
            long[] windows = new long[k];
            int[] scratch = new int[layout.blockPatches() + 1];
            for (int row = 0; row < batchSize; row++) {
                for (int j = 0; j < k; j++) windows[j] = ((long) i * batchSize + row) * k + j;
                layout.fillMixed(data, windows, row, inputs, targets, scratch);
            }
        } else {
            for (int row = 0; row < batchSize; row++) layout.fill(data, (long) i * batchSize + row, row, inputs, targets);
        }
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
