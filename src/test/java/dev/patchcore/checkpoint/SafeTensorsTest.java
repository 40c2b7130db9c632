package dev.patchcore.checkpoint;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

class SafeTensorsTest {
    /**
     * Entries are asked for their values one at a time, in file order, after the header is sized from the shapes, so a
     * checkpoint writer never holds more than one tensor on the host; the file reads back exactly, across the writer's
     * 4 MiB chunks.
     */
    @Test
    void lazyEntriesAreFetchedOneAtATimeAndReadBack(@TempDir Path dir) {
        float[] big = new float[(1 << 20) * 2 + 5];  // more than two write chunks
        for (int i = 0; i < big.length; i++) big[i] = i * 0.5f - 7;
        float[] small = {1f, -2f, 3.5f, Float.MIN_VALUE, -0f, 6f};
        List<String> fetched = new ArrayList<>();
        List<SafeTensors.Entry> entries = List.of(
                new SafeTensors.Entry("a.weight", new int[] {big.length}, () -> { fetched.add("a"); return big; }),
                new SafeTensors.Entry("b.weight", new int[] {2, 3}, () -> { fetched.add("b"); return small; }));
        Path file = dir.resolve("t.safetensors");
        SafeTensors.write(file, entries, Map.of("format", "pt"));
        assertEquals(List.of("a", "b"), fetched, "each entry fetched once, in order");
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            assertArrayEquals(big, r.read("a.weight"));
            assertArrayEquals(small, r.read("b.weight"));
            assertArrayEquals(new int[] {2, 3}, r.shape("b.weight"));
            assertEquals("pt", r.metadata().get("format"));
        }
    }

    /** An entry whose values do not match its shape fails the write and leaves neither the file nor a temporary one. */
    @Test
    void aShapeMismatchLeavesNoFile(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("bad.safetensors");
        List<SafeTensors.Entry> entries = List.of(new SafeTensors.Entry("w", new int[] {2, 2}, new float[3]));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SafeTensors.write(file, entries, Map.of()));
        assertTrue(e.getMessage().contains("w: 3 values for shape [2, 2]"), e.getMessage());
        try (Stream<Path> left = Files.list(dir)) {
            assertEquals(List.of(), left.toList());
        }
    }

    /** Metadata is written in key order, whatever the map's iteration order: equal checkpoints are equal files. */
    @Test
    void metadataIsWrittenInKeyOrder(@TempDir Path dir) throws IOException {
        List<SafeTensors.Entry> w = List.of(new SafeTensors.Entry("w", new int[] {2}, new float[] {1, 2}));
        java.util.LinkedHashMap<String, String> ab = new java.util.LinkedHashMap<>(), ba = new java.util.LinkedHashMap<>();
        ab.put("a", "1");
        ab.put("b", "2");
        ba.put("b", "2");
        ba.put("a", "1");
        SafeTensors.write(dir.resolve("1.safetensors"), w, ab);
        SafeTensors.write(dir.resolve("2.safetensors"), w, ba);
        assertArrayEquals(Files.readAllBytes(dir.resolve("1.safetensors")), Files.readAllBytes(dir.resolve("2.safetensors")));
    }

    /** A damaged file is one line naming it and what is wrong, never a bare "unexpected end of file". */
    @Test
    void damagedFilesAreNamed(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("m.safetensors");
        SafeTensors.write(file, List.of(new SafeTensors.Entry("w", new int[] {1000}, new float[1000])), Map.of());
        byte[] whole = Files.readAllBytes(file);
        Files.write(file, java.util.Arrays.copyOf(whole, whole.length - 100));
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> r.read("w"));
            assertTrue(e.getMessage().startsWith(file + " is cut short: tensor 'w' ends at byte"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> r.read("v"));
            assertEquals("tensor 'v' missing from " + file, e.getMessage());
        }
        Files.write(file, java.util.Arrays.copyOf(whole, 30));
        assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Reader(file), "header cut short");
        byte[] garbage = whole.clone();
        garbage[8] = '#';
        Files.write(file, garbage);
        var e = assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Reader(file));
        assertEquals(file + " is not a safetensors file (its header is not a JSON object)", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Reader(dir.resolve("none.safetensors")));
        assertEquals("cannot read " + dir.resolve("none.safetensors") + ": no such file", e.getMessage());
    }
    /** A file whose header is {@code header} (JSON) followed by {@code dataBytes} zero bytes. */
    private static void writeRaw(Path file, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8 + h.length + dataBytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(file, b.array());
    }

    /**
     * A header that lies (data offsets that do not span the bytes its dtype and shape need, offsets backwards or
     * negative, an entry without dtype, shape or offsets, metadata that is not text) is refused in one line naming the
     * file and the tensor: never read as zeros past the bytes, nor cut to them, nor a NullPointerException.
     */
    @Test
    void aHeaderThatLiesIsRefusedNamingTheTensor(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("m.safetensors");
        Map<String, String> bad = new java.util.LinkedHashMap<>();
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}", "w");  // 2 floats for 4
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", "w");  // 4 floats for 2
        bad.put("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,0]}}", "w");
        bad.put("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "w");
        bad.put("{\"w\":5}", "w");
        // The data has no gap and no overlap (safetensors' rule; transformers refuses such a file)
        bad.put("{\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "w");
        bad.put("{\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", "w");
        bad.put("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "w");
        bad.put("{\"__metadata__\":{\"a\":{\"b\":1}},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__");
        bad.put("{\"__metadata__\":[1],\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__");
        for (var c : bad.entrySet()) {
            writeRaw(file, c.getKey(), 64);
            var e = assertThrows(IllegalArgumentException.class, () -> {
                try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
                    r.shape("w");
                    r.read("w");
                    r.metadata();
                }
            }, c.getKey());
            assertTrue(e.getMessage().startsWith(file + " is not a safetensors file") && e.getMessage().contains("'" + c.getValue() + "'"),
                    c.getKey() + ": " + e.getMessage());
        }
        // Null metadata is none (the safetensors library reads it so)
        writeRaw(file, "{\"__metadata__\":null,\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            assertEquals(Map.of(), r.metadata());
            assertEquals(List.of("v"), r.names());
        }
        // A dtype patchcore does not read is said when the tensor is read (a file may hold tensors the model does not use)
        writeRaw(file, "{\"w\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]},\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8);
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            assertArrayEquals(new float[] {0f}, r.read("v"));
            var e = assertThrows(IllegalArgumentException.class, () -> r.read("w"));
            assertTrue(e.getMessage().contains("unsupported dtype I8"), e.getMessage());
        }
        // A file shorter than the header length's 8 bytes is named as no safetensors file
        Files.write(file, new byte[] {1, 2, 3});
        var e = assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Reader(file));
        assertTrue(e.getMessage().startsWith(file + " is not a safetensors file"), e.getMessage());
    }
    /**
     * BF16 and F16 tensors longer than the reader's 4 MiB pieces read back whole (a tensor is read in pieces, so one of
     * 2 GiB or more, an F32 embedding of a 128k vocabulary at 4096 wide, needs no buffer of its size).
     */
    @Test
    void halfPrecisionTensorsReadAcrossPieces(@TempDir Path dir) throws IOException {
        int n = (1 << 21) + 3;  // 4 MiB + 6 bytes
        Path file = dir.resolve("h.safetensors");
        String header = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[" + n + "],\"data_offsets\":[0," + 2 * n + "]},"
                + "\"h\":{\"dtype\":\"F16\",\"shape\":[" + n + "],\"data_offsets\":[" + 2 * n + "," + 4 * n + "]}}";
        byte[] h = header.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8 + h.length + 4 * n).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        float[] bf = new float[n], hf = new float[n];
        for (int i = 0; i < n; i++) {
            bf[i] = Float.intBitsToFloat((i * 7919) << 16);
            b.putShort((short) (i * 7919));
        }
        for (int i = 0; i < n; i++) {
            short bits = (short) ((i * 31) & 0x7bff);  // finite halves
            hf[i] = Float.float16ToFloat(bits);
            b.putShort(bits);
        }
        Files.write(file, b.array());
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            assertArrayEquals(bf, r.read("b"));
            assertArrayEquals(hf, r.read("h"));
        }
    }
}
