package dev.patchcore.train;

import com.google.gson.Gson;
import dev.patchcore.data.Batch;
import dev.patchcore.data.BatchSampler;
import dev.patchcore.data.BundledCorpus;
import dev.patchcore.data.PatchMode;
import dev.patchcore.data.PreparedDataset;
import dev.patchcore.data.TokenSequence;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.data.ValidationBatches;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;

/** Training data from a prepared dataset folder (memory-mapped shards), or the bundled corpus prepared on first use. */
public final class ShardTrainingData implements TrainingData, AutoCloseable {
    public static final String BUNDLED = "bundled";
    private static final Gson GSON = new Gson();
    private final String description;
    private final PreparedDataset dataset;

    private ShardTrainingData(String description, PreparedDataset dataset) {
        this.description = description;
        this.dataset = dataset;
    }

    /** Opens {@code "bundled"} (the corpus in the jar, byte tokenizer, cached under ~/.cache/patchcore) or a dataset folder. */
    public static ShardTrainingData open(String where) {
        try {
            Path dir;
            if (BUNDLED.equals(where)) {
                dir = bundledDirectory();
            } else {
                dir = Path.of(where);  // PreparedDataset.open says what is wrong with a file or a missing folder
            }
            return new ShardTrainingData(where, PreparedDataset.open(dir));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open dataset " + where + ": " + e.getMessage(), e);
        }
    }

    /**
     * The splits' token counts and a hash of the tokenizer and of 16 samples of 1024 tokens spread over each split
     * (cheap on a 360B-token shard, and different for data prepared again with another seed or from other files).
     */
    @Override public String fingerprint() {
        if (fingerprint == null) fingerprint = computeFingerprint();
        return fingerprint;
    }

    private String fingerprint;

    private String computeFingerprint() {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(dataset.info().tokenizer().getBytes(StandardCharsets.UTF_8));
            int[] sample = new int[1024];
            ByteBuffer bytes = ByteBuffer.allocate(4 * sample.length);
            for (TokenSequence split : List.of(dataset.train(), dataset.val())) {
                long len = split.length();
                int n = (int) Math.min(sample.length, len);
                for (int i = 0; i < 16 && n > 0; i++) {
                    split.copy((len - n) * i / 15, sample, 0, n);
                    bytes.clear();
                    bytes.asIntBuffer().put(sample, 0, n);
                    sha.update(bytes.array(), 0, 4 * n);
                }
            }
            return String.format(Locale.ROOT, "train %d tokens, val %d tokens, sha256 %s", dataset.train().length(),
                    dataset.val().length(), HexFormat.of().formatHex(sha.digest(), 0, 8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);  // every JVM has SHA-256
        }
    }

    /** Closes the dataset's shard files. */
    @Override public void close() { dataset.close(); }

    /** The bundled corpus prepared with the byte tokenizer, in its cache folder (prepared there on first use). */
    public static Path bundledDirectory() throws IOException {
        var tok = Tokenizers.byName("byte");
        Path dir = BundledCorpus.defaultDirectory(tok);
        if (!PreparedDataset.isValid(dir)) System.out.println("preparing the bundled corpus into " + dir + " (once)");
        BundledCorpus.prepare(dir, tok);
        return dir;
    }

    @Override public String description() { return description; }

    @Override public String tokenizer() { return dataset.info().tokenizer(); }

    @Override public dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles(int contextLength) {
        return dev.patchcore.data.HuggingFaceTokenizerFiles.checkpoint(dataset.tokenizer(), contextLength);
    }

    @Override public int vocabSize() { return dataset.info().vocabSize(); }

    @Override public long trainTokens() { return dataset.train().length(); }

    @Override public long valTokens() { return dataset.val().length(); }

    @Override
    public BatchSource trainBatches(int patchSize, int contextLength, int batch, long seed, double from, double to, PatchMode mode) {
        BatchSampler sampler = new BatchSampler(trainPart(from, to), patchSize, contextLength, batch, seed, mode);
        return new BatchSource() {
            @Override public void next(int[] inputs, int[] targets) { sampler.next(inputs, targets); }

            @Override public String state() { return GSON.toJson(sampler.state()); }

            @Override public void restore(String state) { sampler.restore(GSON.fromJson(state, BatchSampler.State.class)); }
        };
    }

    @Override
    public void requireTrainWindow(int patchSize, int contextLength, double from, double to, PatchMode mode) {
        long all = dataset.train().length(), part = trainPart(from, to).length();
        // Data too short as a whole is said as such; a part too short is named with the whole it was cut from, so the
        // number does not contradict the token count `prepare` printed.
        if (part == all || !BatchSampler.holdsWindow(all, patchSize, contextLength, mode)) {
            BatchSampler.requireWindow(all, patchSize, contextLength, mode);
            return;
        }
        if (BatchSampler.holdsWindow(part, patchSize, contextLength, mode)) return;
        throw new IllegalArgumentException(String.format(Locale.ROOT, "the %s stage reads the %s %.0f%% of the training "
                        + "split in a single pass (%d of its %d tokens, its share of the steps), shorter than %s; prepare more "
                        + "text, or train with --epochs N (both stages then read all of it)", from == 0 ? "patch" : "token",
                from == 0 ? "first" : "last", 100 * (to - from), part, all,
                BatchSampler.windowDescription(patchSize, contextLength, mode)));
    }

    /** The part [from, to) of the training split, as fractions of its tokens. */
    private TokenSequence trainPart(double from, double to) {
        TokenSequence all = dataset.train();
        return all.slice((long) Math.floor(from * all.length()), (long) Math.floor(to * all.length()));
    }

    @Override
    public List<Batch> validation(int patchSize, int contextLength, int batch, int maxBatches, PatchMode mode) {
        ValidationBatches v = ValidationBatches.upTo(dataset.val(), patchSize, contextLength, batch, maxBatches, mode);
        List<Batch> out = new ArrayList<>(v.batchCount());
        for (int i = 0; i < v.batchCount(); i++) out.add(v.batch(i));
        return out;
    }
}
