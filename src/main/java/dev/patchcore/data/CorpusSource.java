package dev.patchcore.data;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.PushbackInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.zip.CRC32;
import java.util.zip.Inflater;
import java.util.zip.ZipException;

/**
 * One input of a corpus: a name for messages, its format, and a way to open its bytes.
 * Files ending in {@code .gz} are decompressed on the fly, files ending in {@code .zst} (the Pile's
 * {@code .jsonl.zst}) through the {@code zstd} program ({@code zstd -dc}), which must be on the PATH.
 */
public record CorpusSource(String name, Format format, Opener opener) {

    /** How documents are laid out in the bytes. */
    public enum Format {
        /** Plain UTF-8 text; blank lines separate documents. */
        TEXT,
        /** One JSON object per line with a string field {@code "text"} (the Pile's layout). */
        JSONL
    }

    /** Opens the (already decompressed) bytes. */
    @FunctionalInterface
    public interface Opener {
        InputStream open() throws IOException;
    }

    public static final String SUPPORTED = ".txt, .txt.gz, .txt.zst, .jsonl, .jsonl.gz, .jsonl.zst";

    /**
     * A file, with the format taken from its extension.
     *
     * @throws IllegalArgumentException if the file is missing, not a regular file, or of an unknown type
     */
    public static CorpusSource of(Path file) {
        if (!Files.exists(file)) throw new IllegalArgumentException(file + ": no such file");
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("input is not a regular file: " + file);
        String lower = file.getFileName().toString().toLowerCase(Locale.ROOT);
        boolean gzip = lower.endsWith(".gz"), zstd = lower.endsWith(".zst");
        String base = gzip ? lower.substring(0, lower.length() - 3) : zstd ? lower.substring(0, lower.length() - 4) : lower;
        Format format;
        if (base.endsWith(".txt")) format = Format.TEXT;
        else if (base.endsWith(".jsonl")) format = Format.JSONL;
        else throw new IllegalArgumentException("unsupported input type: " + file + " (expected " + SUPPORTED + ")");
        Opener raw = () -> Files.newInputStream(file);
        return new CorpusSource(file.toString(), format, gzip ? gunzip(raw) : zstd ? unzstd(file) : raw);
    }

    /**
     * The decompressed bytes of a zstd file, read from {@code zstd -dc} (no zstd decoder in the JDK, and the pure-Java
     * one on Maven Central warns about sun.misc.Unsafe on every run). A missing program, or zstd failing on a corrupt or
     * truncated file, is an IOException raised at open or at the end of the stream, never a silently short corpus.
     */
    public static Opener unzstd(Path file) {
        return () -> {
            Process p;
            try {
                p = new ProcessBuilder("zstd", "-dc", "--", file.toString()).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
            } catch (IOException e) {
                throw new IOException(".zst input needs the zstd program on the PATH (e.g. apt install zstd), or decompress it"
                        + " first with zstd -d", e);
            }
            return new java.io.FilterInputStream(p.getInputStream()) {
                private boolean checked;

                @Override public int read() throws IOException { return check(super.read()); }

                @Override public int read(byte[] b, int off, int len) throws IOException { return check(super.read(b, off, len)); }

                /** At the end of the output: zstd's exit status decides whether it was the whole file. */
                private int check(int r) throws IOException {
                    if (r >= 0 || checked) return r;
                    checked = true;
                    try {
                        int code = p.waitFor();
                        if (code != 0) {
                            String why = new String(p.getErrorStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).strip();
                            throw new IOException("zstd could not decompress it (exit " + code
                                    + (why.isEmpty() ? "" : ": " + why.lines().reduce((a, b) -> b).orElse(why)) + ")");
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IOException("interrupted", e);
                    }
                    return r;
                }

                @Override public void close() throws IOException {
                    try {
                        super.close();
                    } finally {
                        if (p.isAlive()) p.destroy();  // closed early: nothing more is wanted
                        p.getErrorStream().close();
                    }
                }
            };
        };
    }

    /** Wraps an opener so its bytes are gunzipped (every member, as {@code gzip -d} reads them). */
    public static Opener gunzip(Opener compressed) {
        return () -> {
            InputStream in = compressed.open();
            try {
                return new Gunzip(in);
            } catch (IOException | RuntimeException e) {
                in.close();
                throw e;
            }
        };
    }

    /**
     * The members of a gzip file, one after another. GZIPInputStream ends quietly where the bytes after a member are
     * no whole member header (a file cut short there, or trailing junk), which would make a dataset of part of an
     * input: here that is an IOException, as {@code gzip -t} and Python's {@code gzip} refuse such a file.
     */
    private static final class Gunzip extends InputStream {
        private final PushbackInputStream in;
        private final Inflater inflater = new Inflater(true);
        private final CRC32 crc = new CRC32();
        private final byte[] buf = new byte[1 << 16];
        private final byte[] one = new byte[1];
        private int filled;  // bytes last handed to the inflater
        private boolean done;

        Gunzip(InputStream raw) throws IOException {
            in = new PushbackInputStream(raw, buf.length);
            if (!header(true)) throw new EOFException();  // an empty file
        }

        /** Reads a member's header; false at the end of the file, where the next member would begin. */
        private boolean header(boolean first) throws IOException {
            int b0 = in.read();
            if (!first) while (b0 == 0) b0 = in.read();  // zeros after a member: padding, which gzip and Python skip
            if (b0 < 0) return false;
            if (b0 != 0x1f || in.read() != 0x8b)
                throw new ZipException(first ? "Not in GZIP format" : "bytes after the last gzip member that are no gzip member");
            if (u8() != 8) throw new ZipException("Unsupported compression method");
            int flags = u8();
            skip(6);                                        // mtime, xfl, os
            if ((flags & 4) != 0) skip(u8() | u8() << 8);   // FEXTRA
            if ((flags & 8) != 0) while (u8() != 0) { }     // FNAME
            if ((flags & 16) != 0) while (u8() != 0) { }    // FCOMMENT
            if ((flags & 2) != 0) skip(2);                  // FHCRC
            inflater.reset();
            crc.reset();
            return true;
        }

        private int u8() throws IOException {
            int b = in.read();
            if (b < 0) throw new EOFException();
            return b;
        }

        private void skip(int n) throws IOException {
            for (int i = 0; i < n; i++) u8();
        }

        @Override public int read() throws IOException {
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xFF;
        }

        @Override public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) return 0;
            while (!done) {
                int n;
                try {
                    n = inflater.inflate(b, off, len);
                } catch (java.util.zip.DataFormatException e) {
                    throw new ZipException(e.getMessage() == null ? "Invalid deflate data" : e.getMessage());
                }
                if (n > 0) {
                    crc.update(b, off, n);
                    return n;
                }
                if (inflater.finished()) {
                    endOfMember();
                } else if (inflater.needsDictionary()) {
                    throw new ZipException("Invalid deflate data (a preset dictionary)");
                } else if (inflater.needsInput()) {
                    filled = in.read(buf, 0, buf.length);
                    if (filled < 0) throw new EOFException();
                    inflater.setInput(buf, 0, filled);
                }
            }
            return -1;
        }

        /** Checks the member's trailer, then reads the next member's header or finds the end of the file. */
        private void endOfMember() throws IOException {
            int left = inflater.getRemaining();
            if (left > 0) in.unread(buf, filled - left, left);
            long crc32 = u8() | u8() << 8 | u8() << 16 | (long) u8() << 24, size = u8() | u8() << 8 | u8() << 16 | (long) u8() << 24;
            if (crc32 != crc.getValue() || size != (inflater.getBytesWritten() & 0xffffffffL))
                throw new ZipException("Corrupt GZIP trailer");
            done = !header(false);
        }

        @Override public void close() throws IOException {
            inflater.end();
            in.close();
        }
    }

    /** Opens a reader that yields this source's documents in order. */
    public DocumentReader openDocuments() throws IOException {
        return switch (format) {
            case TEXT -> new TextDocumentReader(this);
            case JSONL -> new JsonlDocumentReader(this);
        };
    }
}
