package dev.patchcore.data;

import dev.patchcore.checkpoint.AtomicFiles;
import dev.patchcore.train.RunLock;

import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

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

        /** Something the user should know about the result (an input that was not clean UTF-8, a forced split). */
        default void note(String message) { }

        Progress NONE = (documents, tokens) -> { };
    }

    private final Tokenizer tokenizer;
    private final double valFraction;
    private final long seed;
    private volatile boolean stopRequested;

    /** @throws IllegalArgumentException unless {@code 0 <= valFraction <= 0.5} */
    public DatasetPreparer(Tokenizer tokenizer, double valFraction, long seed) {
        if (!(valFraction >= 0 && valFraction <= 0.5)) {
            throw new IllegalArgumentException("--val-fraction must lie in [0, 0.5] (got " + valFraction + ")");
        }
        this.tokenizer = tokenizer;
        this.valFraction = valFraction;
        this.seed = seed;
    }

    /**
     * Asks a prepare in progress to stop (Ctrl-C, SIGTERM) before its next document: it then fails with an
     * InterruptedIOException as it fails on bad input, leaving no temporary files and an existing dataset as it was.
     * Once every input has been read, it finishes instead.
     */
    public void requestStop() {
        stopRequested = true;
    }

    /** Prepares files; their formats come from their extensions ({@link CorpusSource#of}). */
    public DatasetInfo prepareFiles(List<Path> files, Path outDir, Progress progress) throws IOException {
        if (files.isEmpty()) throw new IllegalArgumentException("no input files given");
        List<CorpusSource> sources = new ArrayList<>();
        for (Path f : files) sources.add(CorpusSource.of(f));
        return prepare(sources, outDir, progress);
    }

    /**
     * Writes the dataset into {@code outDir}: a new folder, an empty one, or one an earlier prepare wrote (whose dataset
     * is replaced). The new files are written under temporary names ({@code train.bin.tmp}, ...) and moved into place
     * only once the whole corpus has been read, so a failure (bad input, an empty corpus) leaves an older dataset there
     * intact, and removes the folder if this call created it.
     *
     * @throws IllegalArgumentException for an empty corpus, malformed input, or an {@code outDir} that holds other files
     */
    public DatasetInfo prepare(List<CorpusSource> sources, Path outDir, Progress progress) throws IOException {
        if (sources.isEmpty()) throw new IllegalArgumentException("no input files given");
        List<Path> created = createOutDir(outDir);
        // One prepare at a time per folder: a second would write the same temporary files (RunLock's OS lock, released
        // however the process ends; its file DIR/.lock stays, as a run folder's does).
        RunLock lock;
        try {
            lock = RunLock.acquire(outDir, "wait for it to finish");
        } catch (RuntimeException e) {
            removeIfEmpty(created);
            throw e;
        }
        Path trainTmp = temporary(outDir, TRAIN_FILE), valTmp = temporary(outDir, VAL_FILE);
        boolean done = false;
        try {
            Split split;
            try (ShardWriter train = new ShardWriter(trainTmp, tokenizer);
                 ShardWriter val = new ShardWriter(valTmp, tokenizer)) {
                split = new Split(train, val);
                for (CorpusSource source : sources) split.addAll(source, progress);
                split.finish(progress);
            }
            if (split.train.tokenCount() == 0) {
                throw new IllegalArgumentException("empty corpus: no text found in " + String.join(", ", names(sources)));
            }
            // A SentencePiece model or Hugging Face tokenizer travels with the shards (training copies it into
            // checkpoints from here).
            Map<String, byte[]> files = Tokenizers.files(tokenizer);
            for (var f : files.entrySet()) AtomicFiles.writeSynced(temporary(outDir, f.getKey()), AtomicFiles.bytesOf(f.getValue()));
            // The new dataset is complete: only now does the old one go, its summary first, so that a crash in
            // between leaves no summary next to shards it does not describe.
            Files.deleteIfExists(outDir.resolve(DatasetInfo.FILE_NAME));
            AtomicFiles.moveIntoPlace(trainTmp, outDir.resolve(TRAIN_FILE));
            AtomicFiles.moveIntoPlace(valTmp, outDir.resolve(VAL_FILE));
            for (String f : Tokenizers.FILE_NAMES) {
                if (files.containsKey(f)) AtomicFiles.moveIntoPlace(temporary(outDir, f), outDir.resolve(f));
                else Files.deleteIfExists(outDir.resolve(f));
            }
            DatasetInfo info = new DatasetInfo(DatasetInfo.FORMAT, DatasetInfo.VERSION, tokenizer.name(),
                    tokenizer.vocabSize(), tokenizer.eosId(), valFraction, seed, names(sources),
                    split.train.documentCount(), split.train.tokenCount(), split.val.documentCount(), split.val.tokenCount());
            info.write(outDir);
            done = true;
            return info;
        } finally {
            Files.deleteIfExists(trainTmp);
            Files.deleteIfExists(valTmp);
            for (String f : Tokenizers.FILE_NAMES) Files.deleteIfExists(temporary(outDir, f));
            boolean none = !done && !Files.exists(outDir.resolve(DatasetInfo.FILE_NAME));
            // No dataset here: the folder is left as it was found (or goes, if made here). The lock file goes while
            // the lock is held, so no other prepare locks it in between.
            try {
                if (none) RunLock.deleteFile(outDir);
            } finally {
                lock.close();
            }
            if (none) removeIfEmpty(created);
        }
    }

    /** The files a prepare writes into its folder; also under {@code NAME.tmp}, and {@code .NAME.tmp} (older versions). */
    static final List<String> FILES = Stream.concat(Stream.of(DatasetInfo.FILE_NAME, TRAIN_FILE, VAL_FILE),
            Tokenizers.FILE_NAMES.stream()).toList();

    private static Path temporary(Path dir, String name) {
        return dir.resolve(name + ".tmp");
    }

    private static boolean isDatasetFile(String name) {
        return name.equals(RunLock.FILE) || FILES.stream().anyMatch(f -> name.equals(f) || name.equals(f + ".tmp") || name.equals("." + f + ".tmp"));
    }

    /**
     * Checks that {@code dir} may receive a dataset (see {@link #prepare}) and creates it if missing. Returns the
     * folders created, the deepest last, so that a failed prepare can remove what it made and nothing else.
     */
    private static List<Path> createOutDir(Path dir) throws IOException {
        if (Files.isDirectory(dir)) {
            List<String> others;
            // Tokenizer files are a dataset's only beside its shards or summary: alone they are someone's tokenizer
            // (a prepare that uses another one would delete them).
            boolean prepared = Stream.of(DatasetInfo.FILE_NAME, TRAIN_FILE, VAL_FILE).anyMatch(f -> Files.exists(dir.resolve(f)));
            try (var entries = Files.list(dir)) {
                others = entries.filter(p -> !isDatasetFile(p.getFileName().toString())
                                || !prepared && Tokenizers.FILE_NAMES.contains(p.getFileName().toString()))
                        .map(p -> p.getFileName() + (Files.isDirectory(p) ? "/" : "")).sorted().toList();
            }
            // A run folder (checkpoints/, metrics.jsonl) or any other is not ours to write into.
            if (!others.isEmpty() && !holdsDatasetSummary(dir)) {
                String shown = String.join(", ", others.subList(0, Math.min(3, others.size()))) + (others.size() > 3 ? ", ..." : "");
                throw new IllegalArgumentException("--out " + dir + " is not a dataset folder (it holds " + shown
                        + "); give a new or empty folder, or one an earlier prepare wrote");
            }
            return List.of();
        }
        if (Files.exists(dir)) throw new IllegalArgumentException("--out " + dir + " is a file, not a folder");
        List<Path> missing = new ArrayList<>();
        for (Path p = dir.toAbsolutePath(); p != null && !Files.exists(p); p = p.getParent()) missing.addFirst(p);
        Files.createDirectories(dir);
        return missing;
    }

    private static boolean holdsDatasetSummary(Path dir) {
        try {
            DatasetInfo.read(dir);
            return true;
        } catch (IllegalArgumentException | IOException e) {
            return false;
        }
    }

    /** Removes the folders a failed prepare created, deepest first, as long as they are empty. */
    private static void removeIfEmpty(List<Path> created) {
        for (Path p : created.reversed()) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                return;  // not empty (someone else's file appeared): leave it and its parents
            }
        }
    }

    private static List<String> names(List<CorpusSource> sources) {
        return sources.stream().map(CorpusSource::name).toList();
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
                    if (stopRequested) throw new java.io.InterruptedIOException("prepare stopped before every input was read: nothing was written");
                    chunk.add(doc);
                    chars += doc.length();
                    if (chunk.size() >= CHUNK_DOCUMENTS || chars >= CHUNK_CHARS) {
                        addChunk(chunk, progress);
                        chunk.clear();
                        chars = 0;
                    }
                }
                addChunk(chunk, progress);
                if (reader.invalidUtf8() > 0) progress.note(Utf8Reader.note(source.name(), reader.invalidUtf8()));
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
                String why = e instanceof EOFException && e.getMessage() == null ? "truncated (unexpected end of file)"
                        : e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
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

        void finish(Progress progress) throws IOException {
            if (pending == null) return;
            boolean toVal;
            if (train.documentCount() == 0) {
                toVal = false;  // training needs data; validation can do without
            } else if (valFraction > 0 && val.documentCount() == 0) {
                toVal = true;
                if (!hashSaysVal(pendingIndex)) {  // say so: with few documents this holds out far more than asked
                    progress.note("--val-fraction " + java.math.BigDecimal.valueOf(valFraction).toPlainString()
                            + " picked no validation document, so the last document was held out for validation (1 of "
                            + documents + " documents); --val-fraction 0 gives no validation split");
                }
            } else {
                toVal = hashSaysVal(pendingIndex);
            }
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
