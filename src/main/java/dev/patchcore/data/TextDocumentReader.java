package dev.patchcore.data;

import java.io.BufferedReader;
import java.io.IOException;

/**
 * Plain text: documents are separated by one or more blank (whitespace-only) lines; the
 * newlines inside a document are kept. Malformed UTF-8 becomes U+FFFD.
 */
final class TextDocumentReader implements DocumentReader {

    private final Utf8Reader utf8;
    private final BufferedReader in;

    TextDocumentReader(CorpusSource source) throws IOException {
        this.utf8 = new Utf8Reader(source.opener().open());
        this.in = new BufferedReader(utf8, 1 << 16);
    }

    @Override
    public String next() throws IOException {
        StringBuilder doc = new StringBuilder();
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                if (!doc.isEmpty()) return doc.toString();
                continue;
            }
            if (!doc.isEmpty()) doc.append('\n');
            doc.append(line);
        }
        return doc.isEmpty() ? null : doc.toString();
    }

    @Override
    public long invalidUtf8() {
        return utf8.replaced();
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
