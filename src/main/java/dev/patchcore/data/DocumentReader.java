package dev.patchcore.data;

import java.io.IOException;

/** Pulls documents out of one {@link CorpusSource}, in order, one at a time. */
public interface DocumentReader extends AutoCloseable {

    /**
     * The next non-empty document, or {@code null} at the end.
     *
     * @throws IllegalArgumentException for malformed input, naming the source and line
     */
    String next() throws IOException;

    /** Invalid UTF-8 sequences read so far, each replaced by U+FFFD ({@link Utf8Reader}). */
    long invalidUtf8();

    @Override
    void close() throws IOException;
}
