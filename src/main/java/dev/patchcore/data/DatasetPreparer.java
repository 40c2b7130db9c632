package dev.patchcore.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Turns corpus sources into a dataset directory: {@code train.bin}, {@code val.bin}
 * (token shards, each document followed by EOS) and {@code dataset.json}.
 *
 * <p>The split is by document and deterministic: document {@code i} (counted across all
 * sources in order) goes to validation when a hash of {@code (seed, i)} falls below the
 * validation fraction. The last document is held back until the end so that, with two or
 * more documents, train and validation each get at least one. Memory stays bounded: text
 * is read and tokenised a chunk of documents at a time (chunks are encoded in parallel,
 * written in order).
 */
public final class DatasetPreparer {

    public static final double DEFAULT_VAL_FRACTION = 0.02;
    public static final long DEFAULT_SEED = 1234;
    public static final String TRAIN_FILE = "train.bin";
    public static final String VAL_FILE = "val.bin";

    private static final int CHUNK_DOCUMENTS = 512;
    private static final long CHUNK_CHARS = 8L << 20;

    /** Called after each chunk with running totals (for console progress). */
    @FunctionalInterface
    public interface Progress {
        void update(long documents, long tokens);

        Progress NONE = (documents, tokens) -> { };
    }

    private final Tokenizer tokenizer;
    private final double valFraction;
    private final long seed;

    /** @throws IllegalArgumentException unless {@code 0 <= valFraction <= 0.5} */
    public DatasetPreparer(Tokenizer tokenizer, double valFraction, long seed) {
        if (!(valFraction >= 0 && valFraction <= 0.5)) {
            throw new IllegalArgumentException("--val-fraction must be in [0, 0.5], got " + valFraction);
        }
        this.tokenizer = tokenizer;
        this.valFraction = valFraction;
        this.seed = seed;
    }

    /** Prepares files; their formats come from their extensions ({@link CorpusSource#of}). */
    public DatasetInfo prepareFiles(List<Path> files, Path outDir, Progress progress) throws IOException {
        if (files.isEmpty()) throw new IllegalArgumentException("no input files given");
        List<CorpusSource> sources = new ArrayList<>();
        for (Path f : files) sources.add(CorpusSource.of(f));
        return prepare(sources, outDir, progress);
    }

    /**
     * Writes the dataset into {@code outDir} (created if needed; an older dataset there is
     * replaced). Nothing is left behind on failure except an absent {@code dataset.json}.
     *
     * @throws IllegalArgumentException for an empty corpus or malformed input
     */
    public DatasetInfo prepare(List<CorpusSource> sources, Path outDir, Progress progress) throws IOException {
        if (sources.isEmpty()) throw new IllegalArgumentException("no input files given");
        if (Files.exists(outDir) && !Files.isDirectory(outDir)) {
            throw new IllegalArgumentException("--out " + outDir + " exists and is not a directory");
        }
        Files.createDirectories(outDir);
        // Remove the completion marker first: a crash below must not leave an old summary
        // next to new shards.
        Files.deleteIfExists(outDir.resolve(DatasetInfo.FILE_NAME));
        Path trainTmp = outDir.resolve(TRAIN_FILE + ".tmp");
        Path valTmp = outDir.resolve(VAL_FILE + ".tmp");
        Split split;
        try {
            try (ShardWriter train = new ShardWriter(trainTmp, tokenizer);
                 ShardWriter val = new ShardWriter(valTmp, tokenizer)) {
                split = new Split(train, val);
                for (CorpusSource source : sources) split.addAll(source, progress);
                split.finish();
            }
            if (split.train.tokenCount() == 0) {
                throw new IllegalArgumentException("empty corpus: no text found in " + names(sources));
            }
            moveIntoPlace(trainTmp, outDir.resolve(TRAIN_FILE));
            moveIntoPlace(valTmp, outDir.resolve(VAL_FILE));
        } finally {
            Files.deleteIfExists(trainTmp);
            Files.deleteIfExists(valTmp);
        }
        // A SentencePiece model travels with the shards (training copies it into checkpoints from here).
        Path model = outDir.resolve(SentencePieceTokenizer.FILE_NAME);
        var file = Tokenizers.modelFile(tokenizer);
        if (file.isPresent()) dev.patchcore.checkpoint.AtomicFiles.writeBytes(model, file.get());
        else Files.deleteIfExists(model);
        DatasetInfo info = new DatasetInfo(DatasetInfo.FORMAT, DatasetInfo.VERSION, tokenizer.name(),
                tokenizer.vocabSize(), tokenizer.eosId(), valFraction, seed, names(sources),
                split.train.documentCount(), split.train.tokenCount(), split.val.documentCount(), split.val.tokenCount());
        info.write(outDir);
        return info;
    }

    private static List<String> names(List<CorpusSource> sources) {
        return sources.stream().map(CorpusSource::name).toList();
    }

    static void moveIntoPlace(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Routes documents to the two writers; holds back the latest one (see class doc). */
    private final class Split {
        final ShardWriter train;
        final ShardWriter val;
        private int[] pending;
        private long pendingIndex;
        private long documents;
        private long tokens;

        Split(ShardWriter train, ShardWriter val) {
            this.train = train;
            this.val = val;
        }

        void addAll(CorpusSource source, Progress progress) throws IOException {
            try (DocumentReader reader = unreadable(source, source::openDocuments)) {
                List<String> chunk = new ArrayList<>(CHUNK_DOCUMENTS);
                long chars = 0;
                String doc;
                while ((doc = unreadable(source, reader::next)) != null) {
                    chunk.add(doc);
                    chars += doc.length();
                    if (chunk.size() >= CHUNK_DOCUMENTS || chars >= CHUNK_CHARS) {
                        addChunk(chunk, progress);
                        chunk.clear();
                        chars = 0;
                    }
                }
                addChunk(chunk, progress);
            }
        }

        /**
         * A failure to read an input (a truncated .gz, a corrupt .zst, no zstd program) is bad input: an
         * UncheckedIOException naming the file, which the command line reports in one line with exit code 2. Failures
         * to write the dataset stay IOExceptions.
         */
        private static <T> T unreadable(CorpusSource source, Read<T> read) {
            try {
                return read.get();
            } catch (IOException e) {
                String why = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
                throw new UncheckedIOException("cannot read " + source.name() + ": " + why, e);
            }
        }

        @FunctionalInterface
        private interface Read<T> {
            T get() throws IOException;
        }

        private void addChunk(List<String> chunk, Progress progress) throws IOException {
            if (chunk.isEmpty()) return;
            List<int[]> encoded = chunk.parallelStream().map(tokenizer::encode).toList();
            for (int[] doc : encoded) {
                if (doc.length == 0) continue;
                if (pending != null) route(pending, hashSaysVal(pendingIndex));
                pending = doc;
                pendingIndex = documents++;
                tokens += doc.length + 1;
            }
            progress.update(documents, tokens);
        }

        void finish() throws IOException {
            if (pending == null) return;
            boolean toVal;
            if (train.documentCount() == 0) toVal = false;
            else if (valFraction > 0 && val.documentCount() == 0) toVal = true;
            else toVal = hashSaysVal(pendingIndex);
            route(pending, toVal);
            pending = null;
        }

        private boolean hashSaysVal(long index) {
            return new SplitMix64(SplitMix64.derive(seed, index)).nextDouble() < valFraction;
        }

        private void route(int[] doc, boolean toVal) throws IOException {
            (toVal ? val : train).writeDocument(doc);
        }
    }
}
