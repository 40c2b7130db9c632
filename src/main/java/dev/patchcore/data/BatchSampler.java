package dev.patchcore.data;

import java.util.Objects;

/**
 * Draws training batches of {@link WindowLayout windows} in a shuffled order, epoch after
 * epoch, and can be resumed exactly.
 *
 * <p>Each epoch visits every window once, in an order given by a Fisher–Yates shuffle
 * seeded from {@code (seed, epoch)}. A batch that runs past the end of an epoch takes its
 * remaining sequences from the next epoch's order, so every batch is full. Because the
 * order is a pure function of {@code (seed, epoch)}, the whole sampler state is
 * {@link State}: a few numbers a checkpoint can store.
 */
public final class BatchSampler {

    /**
     * Where a sampler stands. {@code position} is how many windows of epoch {@code epoch}'s
     * order have been consumed; {@code patchSize}, {@code blockPatches} and
     * {@code windowsPerEpoch} identify the data layout so a state cannot be restored onto
     * different data or a different K/T.
     */
    public record State(long seed, long epoch, long position, int patchSize, int blockPatches, long windowsPerEpoch,
                        PatchMode mode) {
        public State {
            if (mode == null) mode = PatchMode.CONSECUTIVE;  // a state saved before patch modes existed (Gson uses this constructor)
        }

        /** A consecutive-patch state. */
        public State(long seed, long epoch, long position, int patchSize, int blockPatches, long windowsPerEpoch) {
            this(seed, epoch, position, patchSize, blockPatches, windowsPerEpoch, PatchMode.CONSECUTIVE);
        }
    }

    private final TokenSequence data;
    private final WindowLayout layout;
    /** The windows drawn: {@link #layout}'s, or token-level windows of T+1 tokens that mixup mixes K at a time. */
    private final WindowLayout source;
    private final PatchMode mode;
    private final long[] mixWindows;
    private final int[] scratch;
    private final int batchSize;
    private final long seed;
    private final int windows;
    private final int[] order;
    private long epoch;
    private int position;

    /**
     * @throws IllegalArgumentException if K, T or B is not positive, or the data is shorter than one window
     */
    public BatchSampler(TokenSequence data, int patchSize, int blockPatches, int batchSize, long seed) {
        this(data, patchSize, blockPatches, batchSize, seed, PatchMode.CONSECUTIVE);
    }

    /**
     * A sampler for {@code mode}: with {@link PatchMode#MIXUP} every sequence of a batch mixes K token-level windows
     * (T+1 tokens each, {@link WindowLayout#fillMixed}), taken in the shuffled order as K consecutive draws (data of
     * fewer than K windows mixes a window with itself).
     */
    public BatchSampler(TokenSequence data, int patchSize, int blockPatches, int batchSize, long seed, PatchMode mode) {
        this.data = Objects.requireNonNull(data);
        this.mode = Objects.requireNonNull(mode);
        this.layout = new WindowLayout(patchSize, blockPatches);
        this.source = sourceOf(patchSize, blockPatches, mode);
        layout.batchTokens(batchSize); // validates B
        this.batchSize = batchSize;
        this.seed = seed;
        this.mixWindows = new long[patchSize];
        this.scratch = mode == PatchMode.MIXUP ? new int[blockPatches + 1] : null;
        requireWindow(data.length(), patchSize, blockPatches, mode);
        long count = source.windowCount(data.length());
        if (count > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("too many windows (" + count + ") for one shard; raise "
                    + (mode == PatchMode.MIXUP ? "T" : "K·T"));
        }
        this.windows = (int) count;
        this.order = new int[windows];
        startEpoch(0);
    }

    /**
     * Fails unless {@code length} tokens hold one window of a sampler for K, T and {@code mode} (what the constructor
     * checks first; callable before any sampler is made, e.g. to refuse a run before it prints its plan).
     */
    public static void requireWindow(long length, int patchSize, int blockPatches, PatchMode mode) {
        if (!holdsWindow(length, patchSize, blockPatches, mode))
            throw new IllegalArgumentException("training data has " + length + " tokens, shorter than "
                    + windowDescription(patchSize, blockPatches, mode));
    }

    /** Whether {@code length} tokens hold at least one window of a sampler for K, T and {@code mode}. */
    public static boolean holdsWindow(long length, int patchSize, int blockPatches, PatchMode mode) {
        return sourceOf(patchSize, blockPatches, mode).windowCount(length) > 0;
    }

    /** "one window of K·(T+1) = 260 tokens (K=4, T=64)": a window's length, for messages. */
    public static String windowDescription(int patchSize, int blockPatches, PatchMode mode) {
        return "one window of " + (mode == PatchMode.MIXUP ? "T+1 = " : "K·(T+1) = ")
                + sourceOf(patchSize, blockPatches, mode).windowTokens() + " tokens (K=" + patchSize + ", T=" + blockPatches + ")";
    }

    /** What a window is read as: K·(T+1) consecutive tokens, or for mixup one token-level window of T+1 (K are mixed). */
    private static WindowLayout sourceOf(int patchSize, int blockPatches, PatchMode mode) {
        return mode == PatchMode.MIXUP ? new WindowLayout(1, blockPatches) : new WindowLayout(patchSize, blockPatches);
    }

    /** A sampler positioned exactly where {@code state} was taken. */
    public static BatchSampler restore(TokenSequence data, int batchSize, State state) {
        BatchSampler s = new BatchSampler(data, state.patchSize(), state.blockPatches(), batchSize, state.seed(), state.mode());
        s.restore(state);
        return s;
    }

    /**
     * Moves to {@code state}. The micro-batch size may differ from the one the state was
     * taken with (positions count windows, not batches).
     *
     * @throws IllegalArgumentException if the state belongs to another seed, layout or data size
     */
    public void restore(State state) {
        if (state.seed() != seed || state.patchSize() != layout.patchSize() || state.blockPatches() != layout.blockPatches()
                || state.windowsPerEpoch() != windows || state.mode() != mode) {
            throw new IllegalArgumentException("sampler state " + state + " does not fit this data (seed " + seed + ", K="
                    + layout.patchSize() + ", T=" + layout.blockPatches() + ", " + windows + " windows per epoch, "
                    + mode.label() + " patches)");
        }
        if (state.epoch() < 0 || state.position() < 0 || state.position() >= windows) {
            throw new IllegalArgumentException("sampler state " + state + " has an impossible epoch or position");
        }
        startEpoch(state.epoch());
        position = (int) state.position();
    }

    public State state() {
        return new State(seed, epoch, position, layout.patchSize(), layout.blockPatches(), windows, mode);
    }

    private void startEpoch(long e) {
        epoch = e;
        position = 0;
        shuffle(order, seed, e);
    }

    /** Fills {@code order} with 0..n−1 in the Fisher–Yates order seeded from {@code (seed, index)} (an epoch's order). */
    public static void shuffle(int[] order, long seed, long index) {
        for (int i = 0; i < order.length; i++) order[i] = i;
        SplitMix64 rng = new SplitMix64(SplitMix64.derive(seed, index));
        for (int i = order.length - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }

    /** Fills caller-owned arrays (no allocation): inputs {@code [B, K·T]}, targets {@code [B·T, K]}. */
    public void next(int[] inputs, int[] targets) {
        int n = layout.batchTokens(batchSize);
        if (inputs.length != n || targets.length != n) {
            throw new IllegalArgumentException("batch arrays must hold B·K·T = " + n + " tokens");
        }
        for (int row = 0; row < batchSize; row++) {
            if (mode == PatchMode.MIXUP) {
                for (int j = 0; j < mixWindows.length; j++) mixWindows[j] = draw();
                layout.fillMixed(data, mixWindows, row, inputs, targets, scratch);
            } else {
                layout.fill(data, draw(), row, inputs, targets);
            }
        }
    }

    /** The next window of the shuffled order, moving to the next epoch after the last. */
    private int draw() {
        int w = order[position];
        if (++position == windows) startEpoch(epoch + 1);
        return w;
    }

    /** The next batch in fresh arrays. */
    public Batch next() {
        Batch b = Batch.allocate(batchSize, layout);
        next(b.inputs(), b.targets());
        return b;
    }

    public WindowLayout layout() { return layout; }

    public int batchSize() { return batchSize; }

    /** Completed epochs so far (the epoch now being read). */
    public long epoch() { return epoch; }

    /** Epochs consumed as a real number, e.g. 1.25 = a quarter into the second epoch. */
    public double epochProgress() { return epoch + (double) position / windows; }

    public long windowsPerEpoch() { return windows; }

    /** Input tokens one epoch feeds the model: windows · K·T (mixup: windows · T). */
    public long tokensPerEpoch() { return (long) windows * source.inputTokens(); }

    public PatchMode mode() { return mode; }
}
