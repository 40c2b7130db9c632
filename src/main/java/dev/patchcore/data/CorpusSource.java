package dev.patchcore.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.zip.GZIPInputStream;

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

    /** Wraps an opener so its bytes are gunzipped. */
    public static Opener gunzip(Opener compressed) {
        return () -> {
            InputStream in = compressed.open();
            try {
                return new GZIPInputStream(in, 1 << 16);
            } catch (IOException e) {
                in.close();
                throw e;
            }
        };
    }

    /** Opens a reader that yields this source's documents in order. */
    public DocumentReader openDocuments() throws IOException {
        return switch (format) {
            case TEXT -> new TextDocumentReader(this);
            case JSONL -> new JsonlDocumentReader(this);
        };
    }
}
