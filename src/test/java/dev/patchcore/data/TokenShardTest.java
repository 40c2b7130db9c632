package dev.patchcore.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class TokenShardTest {

    @TempDir Path dir;

    private Path write(Tokenizer tok, int[][] docs) throws IOException {
        Path p = dir.resolve(tok.name() + ".bin");
        try (ShardWriter w = new ShardWriter(p, tok)) {
            for (int[] d : docs) w.writeDocument(d);
        }
        return p;
    }

    private static int[][] randomDocs(int vocab, int eos, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[][] docs = new int[7][];
        for (int d = 0; d < docs.length; d++) {
            docs[d] = new int[r.nextInt(0, 3000)];
            for (int i = 0; i < docs[d].length; i++) {
                int t;
                do t = r.nextInt(vocab); while (t == eos);
                docs[d][i] = t;
            }
        }
        docs[0] = new int[]{vocab - 1, 0, vocab - 2}; // extremes of the id range
        return docs;
    }

    private static int[] concatWithEos(int[][] docs, int eos) {
        return Arrays.stream(docs).flatMapToInt(d -> java.util.stream.IntStream.concat(Arrays.stream(d),
                java.util.stream.IntStream.of(eos))).toArray();
    }

    @Test
    void uint16RoundTrip() throws IOException {
        Tokenizer tok = Tokenizers.byName("r50k_base");
        int[][] docs = randomDocs(tok.vocabSize(), tok.eosId(), 1);
        int[] expected = concatWithEos(docs, tok.eosId());
        Path p = write(tok, docs);
        assertEquals(ShardHeader.SIZE + 2L * expected.length, Files.size(p));
        try (TokenShard s = TokenShard.open(p)) {
            ShardHeader h = s.header();
            assertEquals(2, h.tokenBytes());
            assertEquals(50_257, h.vocabSize());
            assertEquals(50_256, h.eosId());
            assertEquals("r50k_base", h.tokenizerName());
            assertEquals(expected.length, h.tokenCount());
            assertEquals(docs.length, h.documentCount());
            int[] all = new int[expected.length];
            s.copy(0, all, 0, all.length);
            assertArrayEquals(expected, all);
            for (int i = 0; i < expected.length; i += 97) assertEquals(expected[i], s.token(i));
            int[] part = new int[13];
            s.copy(5, part, 2, 11);
            assertArrayEquals(Arrays.copyOfRange(expected, 5, 16), Arrays.copyOfRange(part, 2, 13));
            assertThrows(IndexOutOfBoundsException.class, () -> s.copy(expected.length - 3, new int[4], 0, 4));
        }
        // Tokens are little-endian uint16 right after the header (the documented layout).
        ByteBuffer raw = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(expected[0], Short.toUnsignedInt(raw.getShort(ShardHeader.SIZE)));
        assertEquals(50_256, Short.toUnsignedInt(raw.getShort(ShardHeader.SIZE + 2 * 3)));
    }

    @Test
    void uint32RoundTripForLargeVocabularies() throws IOException {
        Tokenizer tok = Tokenizers.byName("o200k_base");
        int[][] docs = randomDocs(tok.vocabSize(), tok.eosId(), 2);
        int[] expected = concatWithEos(docs, tok.eosId());
        Path p = write(tok, docs);
        try (TokenShard s = TokenShard.open(p)) {
            assertEquals(4, s.header().tokenBytes());
            int[] all = new int[expected.length];
            s.copy(0, all, 0, all.length);
            assertArrayEquals(expected, all);
            assertEquals(200_018, s.token(0));
        }
    }

    /** A damaged shard (an id past the vocabulary) is one error naming the file, where it is read. */
    @Test
    void anIdOutsideTheVocabularyIsRefusedWhereItIsRead() throws IOException {
        Path p = write(Tokenizers.byName("byte"), new int[][]{{1, 2, 3, 4, 5}});
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(0, (short) 0xFFFF), ShardHeader.SIZE + 2 * 3);
        }
        try (TokenShard s = TokenShard.open(p)) {
            int[] first = new int[3];
            s.copy(0, first, 0, 3);  // the ids before it read as before
            assertArrayEquals(new int[]{1, 2, 3}, first);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.copy(1, new int[4], 0, 4));
            assertEquals(p + " holds token id 65535 at token 3, outside its vocabulary of 257 (the file is damaged: prepare "
                    + "the dataset again)", e.getMessage());
        }
        // 4-byte ids: one of 2^31 or more (negative as a Java int) is named unsigned.
        Path q = write(Tokenizers.byName("o200k_base"), new int[][]{{1, 2, 3, 4, 5}});
        try (FileChannel ch = FileChannel.open(q, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 0xFFFFFFFF), ShardHeader.SIZE + 4 * 3);
        }
        try (TokenShard s = TokenShard.open(q)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.copy(0, new int[5], 0, 5));
            assertTrue(e.getMessage().startsWith(q + " holds token id 4294967295 at token 3, outside its vocabulary of "), e.getMessage());
        }
    }

    @Test
    void emptyShardOpens() throws IOException {
        Path p = write(Tokenizers.byName("byte"), new int[0][]);
        try (TokenShard s = TokenShard.open(p)) {
            assertEquals(0, s.length());
        }
    }

    @Test
    void readingAfterCloseFails() throws IOException {
        Path p = write(Tokenizers.byName("byte"), new int[][]{{1, 2, 3}});
        TokenShard s = TokenShard.open(p);
        s.close();
        assertThrows(IllegalStateException.class, () -> s.token(0));
    }

    @Test
    void writerRejectsIdsOutsideTheVocabulary() throws IOException {
        try (ShardWriter w = new ShardWriter(dir.resolve("x.bin"), Tokenizers.byName("byte"))) {
            var e = assertThrows(IllegalArgumentException.class, () -> w.writeDocument(new int[]{5, 257}));
            assertTrue(e.getMessage().contains("257"));
        }
    }

    @Test
    void headerValidationErrors() throws IOException {
        Path good = write(Tokenizers.byName("byte"), new int[][]{{10, 20, 30}, {40}});
        byte[] bytes = Files.readAllBytes(good);

        assertOpenFails(dir.resolve("missing.bin"), "not found");

        Path tiny = dir.resolve("tiny.bin");
        Files.write(tiny, new byte[]{1, 2, 3});
        assertOpenFails(tiny, "shorter than the 128-byte header");

        byte[] badMagic = bytes.clone();
        badMagic[0] = 'X';
        assertOpenFails(writeBytes("magic.bin", badMagic), "bad magic");

        byte[] badVersion = bytes.clone();
        ByteBuffer.wrap(badVersion).order(ByteOrder.LITTLE_ENDIAN).putInt(8, 99);
        assertOpenFails(writeBytes("version.bin", badVersion), "version 99");

        assertOpenFails(writeBytes("truncated.bin", Arrays.copyOf(bytes, bytes.length - 1)), "truncated");
        assertOpenFails(writeBytes("long.bin", Arrays.copyOf(bytes, bytes.length + 2)), "truncated or corrupt");

        byte[] badWidth = bytes.clone();
        ByteBuffer.wrap(badWidth).order(ByteOrder.LITTLE_ENDIAN).putInt(12, 4);
        assertOpenFails(writeBytes("width.bin", badWidth), "token width");

        byte[] badEos = bytes.clone();
        ByteBuffer.wrap(badEos).order(ByteOrder.LITTLE_ENDIAN).putInt(20, 300);
        assertOpenFails(writeBytes("eos.bin", badEos), "EOS id 300");
    }

    @Test
    void unclosedWriterLeavesAFileTheReaderRejects() throws IOException {
        Path p = dir.resolve("crashed.bin");
        ShardWriter w = new ShardWriter(p, Tokenizers.byName("byte"));
        w.writeDocument(new int[600_000]); // more than the write buffer, so bytes reach the file
        // No close(): as after a crash, the header still says 0 tokens.
        assertOpenFails(p, "truncated or corrupt");
        w.close();
        try (TokenShard s = TokenShard.open(p)) {
            assertEquals(600_001, s.length());
        }
    }

    private Path writeBytes(String name, byte[] content) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, content);
        return p;
    }

    private static void assertOpenFails(Path p, String fragment) {
        var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(p).close());
        assertTrue(e.getMessage().contains(fragment), () -> "expected '" + fragment + "' in: " + e.getMessage());
        assertTrue(e.getMessage().contains(p.getFileName().toString()), e.getMessage());
    }

    @Test
    void shardsLargerThanTwoGigabytesAreAddressable() throws IOException {
        // A sparse 3 GB file: the disk holds only the header and two marker pages.
        long tokens = 1_500_000_000L;
        long far = 1_400_000_000L; // byte offset 2.8 GB, past any int index
        Path p = dir.resolve("big.bin");
        ShardHeader header = ShardHeader.forTokenizer(Tokenizers.byName("r50k_base"), tokens, 1);
        try (FileChannel c = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE, StandardOpenOption.SPARSE)) {
            c.write(header.encode(), 0);
            ByteBuffer marker = ByteBuffer.allocate(6).order(ByteOrder.LITTLE_ENDIAN);
            marker.putShort((short) 50_000).putShort((short) 12_345).putShort((short) 50_256).flip();
            c.write(marker, ShardHeader.SIZE + 2 * far);
            c.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(0, (short) 50_256), ShardHeader.SIZE + 2 * (tokens - 1));
        }
        try (TokenShard s = TokenShard.open(p)) {
            assertEquals(tokens, s.length());
            assertEquals(50_000, s.token(far));
            int[] got = new int[4];
            s.copy(far - 1, got, 0, 4);
            assertArrayEquals(new int[]{0, 50_000, 12_345, 50_256}, got);
            assertEquals(50_256, s.token(tokens - 1));
            BatchSampler sampler = new BatchSampler(s, 4, 2048, 1, 1);
            assertEquals((tokens - 4 * 2049) / (4 * 2048) + 1, sampler.windowsPerEpoch());
        }
    }

    @Test
    void headerBytesMatchTheDocumentedLayout() throws IOException {
        Path p = write(Tokenizers.byName("cl100k_base"), new int[][]{{1, 2}});
        ByteBuffer h = ByteBuffer.allocate(ShardHeader.SIZE).order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel c = FileChannel.open(p, StandardOpenOption.READ)) {
            c.read(h);
        }
        byte[] magic = new byte[8];
        h.get(0, magic);
        assertEquals("PCTOKENS", new String(magic, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(1, h.getInt(8));
        assertEquals(4, h.getInt(12));
        assertEquals(100_277, h.getInt(16));
        assertEquals(100_257, h.getInt(20));
        assertEquals(3, h.getLong(24));
        assertEquals(1, h.getLong(32));
        assertEquals(128, h.getInt(40));
        assertEquals("cl100k_base".length(), h.getShort(48));
        assertEquals('c', h.get(50));
    }

    @org.junit.jupiter.api.Test
    void aPrefixedSequenceReadsItsFirstTokenThenTheRest() {
        TokenSequence p = TokenSequence.prefixed(9, TokenSequence.of(new int[] {1, 2, 3}));
        assertEquals(4, p.length());
        int[] all = new int[4], mid = new int[2], none = new int[0];
        p.copy(0, all, 0, 4);
        p.copy(2, mid, 0, 2);
        p.copy(0, none, 0, 0);
        assertArrayEquals(new int[] {9, 1, 2, 3}, all);
        assertArrayEquals(new int[] {2, 3}, mid);
        assertThrows(IndexOutOfBoundsException.class, () -> p.copy(3, mid, 0, 2));
    }
}
