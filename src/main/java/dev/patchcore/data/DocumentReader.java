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

    @Override
    void close() throws IOException;
}
