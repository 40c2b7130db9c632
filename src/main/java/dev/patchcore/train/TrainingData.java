package dev.patchcore.train;

import dev.patchcore.data.Batch;
import dev.patchcore.data.PatchMode;

import java.util.List;

/** The corpus a run trains on, as the trainer sees it. */
public interface TrainingData {
    /** Where it comes from (a path or "bundled"), recorded in checkpoints. */
    String description();

    String tokenizer();

    /**
     * Tokenizer files saved into every checkpoint (file name → contents; {@link dev.patchcore.data.HuggingFaceTokenizerFiles}):
     * a SentencePiece model, so the checkpoint is evaluated and sampled without the dataset, and what Hugging Face's
     * {@code AutoTokenizer} reads. Empty when there are none.
     */
    default dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles(int contextLength) {
        return dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint.NONE;
    }

    int vocabSize();

    /**
     * What tells this data from other data under the same name (a folder prepared again): recorded in checkpoints and
     * compared on resume. Null when there is nothing to compare.
     */
    default String fingerprint() { return null; }

    /** Whether this is the data a checkpoint recorded by {@code fingerprint} (true if it recorded none: older versions). */
    default boolean isRecordedAs(String fingerprint) { return fingerprint == null || fingerprint.equals(fingerprint()); }

    /** Tokens in the training split. */
    long trainTokens();

    /** Tokens in the validation split (0 for a dataset prepared with {@code --val-fraction 0}). */
    long valTokens();

    /**
     * Micro-batches of {@code batch} windows of K·(T+1) tokens, drawn in a seeded shuffled order from the part
     * [from, to) (fractions of the training split) — the patch stage reads the first λ of the data and the token
     * stage the rest, as in the paper; in multi-epoch mode both read all of it.
     */
    BatchSource trainBatches(int patchSize, int contextLength, int batch, long seed, double from, double to, PatchMode mode);

    /** Fails as {@link #trainBatches} would for the same part and layout if it holds no window (without making batches). */
    void requireTrainWindow(int patchSize, int contextLength, double from, double to, PatchMode mode);

    /**
     * Up to {@code maxBatches} fixed, non-overlapping validation micro-batches of {@code batch} windows; a split
     * shorter than one batch gives one batch of all its windows, a split shorter than one window none.
     */
    List<Batch> validation(int patchSize, int contextLength, int batch, int maxBatches, PatchMode mode);
}
