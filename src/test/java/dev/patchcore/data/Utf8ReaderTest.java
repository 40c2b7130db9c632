package dev.patchcore.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

@Timeout(60)  // a reader that returns 0 chars would loop forever
class Utf8ReaderTest {

    private static String decode(byte[] bytes, int chunk, long[] replaced) throws IOException {
        try (Utf8Reader r = new Utf8Reader(new ByteArrayInputStream(bytes))) {
            StringBuilder out = new StringBuilder();
            char[] buf = new char[chunk];
            for (int n; (n = r.read(buf, 0, chunk)) >= 0; ) out.append(buf, 0, n);
            replaced[0] = r.replaced();
            return out.toString();
        }
    }

    /** Each invalid sequence is one U+FFFD, exactly where the JDK's replacing decoder (Python's errors="replace") puts them. */
    @Test
    void decodesLikeTheReplacingDecoderAndCountsTheReplacements() throws IOException {
        long[] replaced = new long[1];
        byte[] bad = {'o', 'k', ' ', (byte) 0xFF, (byte) 0xFE, ' ', (byte) 0xE2, (byte) 0x82, ' ', 'e', 'n', 'd', (byte) 0xF0, (byte) 0x9F};
        assertEquals("ok \uFFFD\uFFFD \uFFFD end\uFFFD", decode(bad, 4096, replaced));
        assertEquals(4, replaced[0], "\\xff, \\xfe, a cut 3-byte character, a cut 4-byte character at the end");
        assertEquals("日本 🙂", decode("日本 🙂".getBytes(StandardCharsets.UTF_8), 1, replaced));
        assertEquals(0, replaced[0]);

        Random random = new Random(7);
        for (int trial = 0; trial < 40; trial++) {
            // Random bytes and text with multibyte characters cut at the 64 KiB buffer boundary, read in odd chunk sizes.
            byte[] bytes = trial % 2 == 0 ? new byte[random.nextInt(200_000)]
                    : "é日🙂x".repeat(20_000).getBytes(StandardCharsets.UTF_8);
            if (trial % 2 == 0) random.nextBytes(bytes);
            else for (int k = 0; k < 20; k++) bytes[random.nextInt(bytes.length)] = (byte) random.nextInt(256);
            String expected = new String(bytes, StandardCharsets.UTF_8);
            int chunk = 1 + random.nextInt(trial % 3 == 0 ? 3 : 10_000);
            assertEquals(expected, decode(bytes, chunk, replaced), "trial " + trial);
            String clean = new String(bytes, StandardCharsets.UTF_8).replace("\uFFFD", "");
            // Without the replacements (and any U+FFFD the bytes spelled themselves), the text is what was there.
            long spelled = countFffd(bytes);
            assertEquals(expected.length() - clean.length() - spelled, replaced[0], "trial " + trial);
        }
    }

    /** Valid EF BF BD sequences in the bytes: U+FFFD that was really there. */
    private static long countFffd(byte[] b) {
        long n = 0;
        for (int i = 0; i + 2 < b.length; i++) {
            if (b[i] == (byte) 0xEF && b[i + 1] == (byte) 0xBF && b[i + 2] == (byte) 0xBD) n++;
        }
        return n;
    }

    @Test
    void readsAWholeFileAndWordsTheNote(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("bad.txt");
        Files.write(f, new byte[] {'a', (byte) 0xFF, 'b'});
        Utf8Reader.Text t = Utf8Reader.read(f);
        assertEquals("a\uFFFDb", t.text());
        assertEquals(1, t.replaced());
        assertEquals("bad.txt: 1 invalid UTF-8 sequence replaced by U+FFFD", Utf8Reader.note("bad.txt", 1));
        assertEquals("bad.txt: 2 invalid UTF-8 sequences replaced by U+FFFD", Utf8Reader.note("bad.txt", 2));
    }
}
