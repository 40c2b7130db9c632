package dev.patchcore.data;

import java.io.IOException;
import java.io.InputStream;
import java.io.Reader;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Decodes UTF-8 bytes, turning each invalid sequence into one U+FFFD, as Hugging Face tokenizers and Python's
 * {@code errors="replace"} do for ordinary damage (the JDK's maximal-subpart rule: {@code \xff\xfe} is two; an encoded
 * surrogate, {@code ED A0 80}, is one here and three in Python), and counts the replacements
 * so the commands can say that a file was not clean UTF-8 instead of failing ({@code Input length = 1}) or staying
 * silent. A byte-order mark is kept as U+FEFF, as {@code InputStreamReader} keeps it.
 */
public final class Utf8Reader extends Reader {

    private final InputStream in;
    private final CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
    private final ByteBuffer bytes = ByteBuffer.allocate(1 << 16).flip();
    private final CharBuffer chars = CharBuffer.allocate(1 << 16).flip();  // decoded, not yet read
    private boolean endOfInput;
    private boolean finished;
    private long replaced;

    public Utf8Reader(InputStream in) {
        this.in = in;
    }

    /** A whole file's text and how many invalid sequences it held. */
    public record Text(String text, long replaced) {}

    /** Reads a whole file. */
    public static Text read(Path file) throws IOException {
        try (Utf8Reader r = new Utf8Reader(Files.newInputStream(file))) {
            StringBuilder out = new StringBuilder();
            char[] buf = new char[1 << 16];
            for (int n; (n = r.read(buf, 0, buf.length)) >= 0; ) out.append(buf, 0, n);
            return new Text(out.toString(), r.replaced());
        }
    }

    /** The one-line note for a file with {@code replaced} invalid sequences (without the "note: " prefix). */
    public static String note(String file, long replaced) {
        return file + ": " + Plural.of(replaced, "invalid UTF-8 sequence") + " replaced by U+FFFD";
    }

    /** Invalid UTF-8 sequences replaced by U+FFFD so far. */
    public long replaced() {
        return replaced;
    }

    @Override
    public int read(char[] cbuf, int off, int len) throws IOException {
        if (len == 0) return 0;
        if (!chars.hasRemaining()) {
            decodeMore();
            if (!chars.hasRemaining()) return -1;
        }
        int n = Math.min(len, chars.remaining());
        chars.get(cbuf, off, n);
        return n;
    }

    /**
     * Refills {@link #chars} with at least one char, unless the input is at its end. Decoding into a buffer of our own
     * keeps a surrogate pair whole whatever the caller's buffer size.
     */
    private void decodeMore() throws IOException {
        chars.clear();
        while (chars.position() == 0 && !finished) {
            CoderResult r = decoder.decode(bytes, chars, endOfInput);
            if (r.isError()) {
                if (!chars.hasRemaining()) break;  // no room for U+FFFD: the next refill meets the same bytes again
                chars.put('\uFFFD');
                bytes.position(bytes.position() + r.length());
                replaced++;
            } else if (r.isOverflow()) {
                break;
            } else if (endOfInput) {
                decoder.flush(chars);
                finished = true;
            } else if (chars.position() == 0) {
                fill();
            }
        }
        chars.flip();
    }

    private void fill() throws IOException {
        bytes.compact();
        int n = in.read(bytes.array(), bytes.position(), bytes.remaining());
        if (n < 0) endOfInput = true;
        else bytes.position(bytes.position() + n);
        bytes.flip();
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
