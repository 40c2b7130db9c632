package dev.patchcore.checkpoint;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.zip.CRC32C;

/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header mapping each
 * tensor name to dtype, shape and byte offsets (plus optional string metadata), then raw little-endian data.
 * Only F32 is written; F32, BF16 and F16 are read.
 */
public final class SafeTensors {
    private SafeTensors() {}

    /**
     * One tensor to write. Its values are asked for only when the writer reaches it and dropped after, so writing a
     * checkpoint holds one tensor's host copy at a time (a 2.7B model's weights and moments are 32 GB as float arrays:
     * more than a default Java heap, had they all been downloaded before writing).
     */
    public record Entry(String name, int[] shape, Supplier<float[]> data) {
        /** An entry whose values are already on the host. */
        public Entry(String name, int[] shape, float[] data) {
            this(name, shape, () -> data);
        }

        long numel() {
            long n = 1;
            for (int s : shape) n *= s;
            return n;
        }
    }

    /** Floats per bulk copy into the write buffer (4 MiB). */
    private static final int CHUNK = 1 << 20;

    /** Writes the file (atomically: under a temporary name, then renamed) and returns the CRC-32C of its bytes. */
    public static long write(Path file, List<Entry> entries, Map<String, String> metadata) {
        JsonObject header = new JsonObject();
        if (!metadata.isEmpty()) {
            JsonObject meta = new JsonObject();
            new java.util.TreeMap<>(metadata).forEach(meta::addProperty);  // sorted: the same bytes for the same checkpoint
            header.add("__metadata__", meta);
        }
        long offset = 0;
        for (Entry e : entries) {
            JsonObject t = new JsonObject();
            t.addProperty("dtype", "F32");
            JsonArray shape = new JsonArray();
            for (int s : e.shape()) shape.add(s);
            t.add("shape", shape);
            JsonArray off = new JsonArray();
            off.add(offset);
            offset += 4L * e.numel();
            off.add(offset);
            t.add("data_offsets", off);
            header.add(e.name(), t);
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7; // keeps tensor data 8-byte aligned, as the reference writer does
        CRC32C crc = new CRC32C();
        AtomicFiles.write(file, ch -> {
            ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
            head.putLong(padded).put(json);
            while (head.position() < head.capacity()) head.put((byte) ' ');
            head.flip();
            crc.update(head.duplicate());
            while (head.hasRemaining()) ch.write(head);
            ByteBuffer buf = ByteBuffer.allocateDirect(4 * CHUNK).order(ByteOrder.LITTLE_ENDIAN);
            FloatBuffer floats = buf.asFloatBuffer();
            for (Entry e : entries) {
                float[] data = e.data().get();
                if (data.length != e.numel())
                    throw new IllegalStateException("safetensors entry " + e.name() + ": " + data.length + " values for shape "
                            + java.util.Arrays.toString(e.shape()));
                for (int from = 0; from < data.length; from += CHUNK) {
                    int n = Math.min(CHUNK, data.length - from);
                    floats.clear();
                    floats.put(data, from, n);
                    buf.clear().limit(4 * n);
                    crc.update(buf.duplicate());
                    while (buf.hasRemaining()) ch.write(buf);
                }
            }
        });
        return crc.getValue();
    }

    /** The CRC-32C of a file's bytes (as {@link #write} returns it), read in pieces. */
    public static long crc32c(Path file) {
        CRC32C crc = new CRC32C();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.allocateDirect(4 * CHUNK);
            while (ch.read(buf.clear()) >= 0) crc.update(buf.flip());
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IllegalArgumentException("cannot read " + file + ": no such file");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        return crc.getValue();
    }

    /** Bytes per element of the safetensors dtypes. */
    private static final Map<String, Integer> DTYPE_BYTES = Map.ofEntries(Map.entry("F64", 8), Map.entry("F32", 4),
            Map.entry("F16", 2), Map.entry("BF16", 2), Map.entry("I64", 8), Map.entry("I32", 4), Map.entry("I16", 2),
            Map.entry("I8", 1), Map.entry("U64", 8), Map.entry("U32", 4), Map.entry("U16", 2), Map.entry("U8", 1),
            Map.entry("BOOL", 1), Map.entry("F8_E4M3", 1), Map.entry("F8_E5M2", 1));

    /** A read-only view of a safetensors file. */
    public static final class Reader implements AutoCloseable {
        private final Path file;
        private final FileChannel channel;
        private final long dataStart;
        private final JsonObject header;

        public Reader(Path file) {
            this.file = file;
            try {
                channel = FileChannel.open(file, StandardOpenOption.READ);
            } catch (java.nio.file.NoSuchFileException e) {
                throw new IllegalArgumentException("cannot read " + file + ": no such file");
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
            }
            try {
                if (channel.size() < 8) throw new IllegalArgumentException(file + " is not a safetensors file (shorter than its 8-byte header length)");
                ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
                readFully(0, len);
                long n = len.flip().getLong();
                if (n <= 0 || n > 100_000_000 || 8 + n > channel.size())
                    throw new IllegalArgumentException(file + " is not a safetensors file (bad header length)");
                ByteBuffer h = ByteBuffer.allocate((int) n);
                readFully(8, h);
                try {
                    header = new Gson().fromJson(new String(h.array(), StandardCharsets.UTF_8), JsonObject.class);
                } catch (com.google.gson.JsonParseException e) {
                    throw new IllegalArgumentException(file + " is not a safetensors file (its header is not a JSON object)");
                }
                if (header == null) throw new IllegalArgumentException(file + " is not a safetensors file (its header is not a JSON object)");
                dataStart = 8 + n;
                validate();
            } catch (IOException e) {
                close();
                throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        /**
         * Checks each header entry as the safetensors library does before any tensor is read: a dtype, a shape of sizes
         * ≥ 0 and data offsets 0 ≤ begin ≤ end spanning exactly the bytes of that shape (for the dtypes whose size is
         * known; another dtype is said when its tensor is read), the tensors' bytes one after another from byte 0, and
         * metadata of text values only. A header that lies about a tensor's bytes would otherwise read as zeros past
         * them, be cut to them, or read another tensor's.
         */
        private void validate() {
            java.util.TreeMap<Long, String> byBegin = new java.util.TreeMap<>();  // first byte → tensor (of those with bytes)
            for (var e : header.entrySet()) {
                String name = e.getKey();
                JsonElement v = e.getValue();
                if (name.equals("__metadata__")) {  // null: none, as the safetensors library reads it
                    if (!v.isJsonNull() && (!v.isJsonObject() || !v.getAsJsonObject().entrySet().stream()
                            .allMatch(m -> m.getValue().isJsonPrimitive() && m.getValue().getAsJsonPrimitive().isString())))
                        throw bad(name, "is not a map of strings");
                    continue;
                }
                if (!v.isJsonObject()) throw bad(name, "is not an object");
                JsonObject t = v.getAsJsonObject();
                JsonElement dtype = t.get("dtype"), shape = t.get("shape"), off = t.get("data_offsets");
                if (dtype == null || !dtype.isJsonPrimitive() || !dtype.getAsJsonPrimitive().isString()) throw bad(name, "has no dtype");
                if (shape == null || !shape.isJsonArray()) throw bad(name, "has no shape");
                if (off == null || !off.isJsonArray() || off.getAsJsonArray().size() != 2) throw bad(name, "has no data_offsets [begin, end]");
                long numel = 1;
                for (JsonElement s : shape.getAsJsonArray()) {
                    long size = whole(s);
                    if (size < 0 || size > Integer.MAX_VALUE) throw bad(name, "has shape " + shape + ", not sizes ≥ 0");
                    numel = size == 0 || numel <= Long.MAX_VALUE / size ? numel * size : Long.MAX_VALUE;
                }
                long begin = whole(off.getAsJsonArray().get(0)), end = whole(off.getAsJsonArray().get(1));
                if (begin < 0 || end < begin) throw bad(name, "has data_offsets " + off + ", not 0 ≤ begin ≤ end");
                Integer bytes = DTYPE_BYTES.get(dtype.getAsString());
                if (bytes != null && (numel > Long.MAX_VALUE / bytes || end - begin != numel * bytes))
                    throw bad(name, "has data_offsets " + off + " spanning " + (end - begin) + " bytes, but its shape " + shape + " of "
                            + dtype.getAsString() + " needs " + (numel > Long.MAX_VALUE / bytes ? "more" : Long.toString(numel * bytes)));
                if (end > begin && byBegin.put(begin, name) != null) throw overlap(name, off);
            }
            // The tensors' bytes follow one another from byte 0, with no gap and no overlap (so no byte is two tensors')
            long expect = 0;
            for (var t : byBegin.entrySet()) {
                JsonArray off = header.getAsJsonObject(t.getValue()).getAsJsonArray("data_offsets");
                if (t.getKey() != expect) throw overlap(t.getValue(), off);
                expect = whole(off.get(1));
            }
        }

        private IllegalArgumentException overlap(String name, JsonElement off) {
            return bad(name, "has data_offsets " + off + ", which leave a gap or overlap another tensor's (safetensors' data is "
                    + "the tensors' bytes one after another)");
        }

        /** A whole number of the header, or −1 for anything else (refused as a size or an offset). */
        private static long whole(JsonElement e) {
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) return -1;
            double d = e.getAsDouble();
            return d == Math.rint(d) && Math.abs(d) < 0x1p62 ? (long) d : -1;
        }

        private IllegalArgumentException bad(String name, String what) {
            return new IllegalArgumentException(file + " is not a safetensors file (its header's '" + name + "' " + what + ")");
        }

        private void readFully(long pos, ByteBuffer b) throws IOException {
            while (b.hasRemaining()) {
                int r = channel.read(b, pos);
                if (r < 0) throw new IOException("unexpected end of file");
                pos += r;
            }
        }

        public Map<String, String> metadata() {
            Map<String, String> m = new LinkedHashMap<>();
            JsonElement meta = header.get("__metadata__");
            if (meta != null && meta.isJsonObject()) meta.getAsJsonObject().entrySet().forEach(e -> m.put(e.getKey(), e.getValue().getAsString()));
            return m;
        }

        public boolean has(String name) { return header.has(name); }

        /** The tensors' names (not the metadata). */
        public List<String> names() {
            return header.keySet().stream().filter(k -> !k.equals("__metadata__")).toList();
        }

        public int[] shape(String name) {
            JsonArray a = entry(name).getAsJsonArray("shape");
            int[] s = new int[a.size()];
            for (int i = 0; i < s.length; i++) s[i] = a.get(i).getAsInt();
            return s;
        }

        private JsonObject entry(String name) {
            JsonElement e = header.get(name);
            if (e == null) throw new IllegalArgumentException("tensor '" + name + "' missing from " + file);
            return e.getAsJsonObject();
        }

        public float[] read(String name) {
            JsonObject e = entry(name);
            String dtype = e.get("dtype").getAsString();
            JsonArray off = e.getAsJsonArray("data_offsets");
            long begin = off.get(0).getAsLong(), end = off.get(1).getAsLong();
            try {
                if (dataStart + end > channel.size())
                    throw new IllegalArgumentException(file + " is cut short: tensor '" + name + "' ends at byte " + (dataStart + end)
                            + " of a file of " + channel.size() + " bytes");
                int width = switch (dtype) {
                    case "F32" -> 4;
                    case "BF16", "F16" -> 2;  // F16: Hugging Face weights saved in float16
                    default -> throw new IllegalArgumentException("tensor '" + name + "' in " + file + " has unsupported dtype " + dtype);
                };
                // Read in pieces: one buffer of the whole tensor would stop at 2 GiB (an F32 embedding of LLaMA-3 8B's
                // vocabulary is 2.1 GB, and so are a checkpoint's of such a model), where the float array does not.
                long count = (end - begin) / width;
                if (count > Integer.MAX_VALUE - 8)
                    throw new IllegalArgumentException("tensor '" + name + "' in " + file + " has " + count + " values, more than one array holds");
                float[] f = new float[(int) count];
                ByteBuffer b = ByteBuffer.allocate((int) Math.min(end - begin, 4L * CHUNK)).order(ByteOrder.LITTLE_ENDIAN);
                long pos = dataStart + begin;
                for (int at = 0; at < f.length; ) {
                    int n = Math.min(f.length - at, b.capacity() / width);
                    b.clear().limit(n * width);
                    readFully(pos, b);
                    pos += (long) n * width;
                    b.flip();
                    switch (dtype) {
                        case "F32" -> b.asFloatBuffer().get(f, at, n);
                        case "BF16" -> { for (int i = 0; i < n; i++) f[at + i] = Float.intBitsToFloat((b.getShort() & 0xffff) << 16); }
                        default -> { for (int i = 0; i < n; i++) f[at + i] = Float.float16ToFloat(b.getShort()); }
                    }
                    at += n;
                }
                return f;
            } catch (IOException ex) {
                throw new UncheckedIOException("cannot read " + file + ": " + ex.getMessage(), ex);
            }
        }

        @Override public void close() {
            try { channel.close(); } catch (IOException ignored) { /* read-only */ }
        }
    }

}
