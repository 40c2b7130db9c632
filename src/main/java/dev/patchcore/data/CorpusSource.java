package dev.patchcore.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.zip.GZIPInputStream;

/**
 * One input of a corpus: a name for messages, its format, and a way to open its bytes.
 * Files ending in {@code .gz} are decompressed on the fly.
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

    public static final String SUPPORTED = ".txt, .txt.gz, .jsonl, .jsonl.gz";

    /**
     * A file, with the format taken from its extension.
     *
     * @throws IllegalArgumentException if the file is missing, not a regular file, or of an unknown type
     */
    public static CorpusSource of(Path file) {
        if (!Files.exists(file)) throw new IllegalArgumentException("input file not found: " + file);
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("input is not a regular file: " + file);
        String lower = file.getFileName().toString().toLowerCase(Locale.ROOT);
        boolean gzip = lower.endsWith(".gz");
        String base = gzip ? lower.substring(0, lower.length() - 3) : lower;
        Format format;
        if (base.endsWith(".txt")) format = Format.TEXT;
        else if (base.endsWith(".jsonl")) format = Format.JSONL;
        else throw new IllegalArgumentException("unsupported input type: " + file + " (expected " + SUPPORTED + ")");
        Opener raw = () -> Files.newInputStream(file);
        return new CorpusSource(file.toString(), format, gzip ? gunzip(raw) : raw);
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
