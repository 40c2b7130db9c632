package dev.patchcore.cli;

import dev.patchcore.data.Tokenizer;
import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.io.PrintStream;
import java.util.Arrays;

/**
 * Prints a completion as its tokens arrive, so {@code generate} shows text while it samples, and prints what decoding
 * the whole sequence gives (the whole decoded minus the decoded prompt). The text of tokens [p, n) is taken as the
 * decoding of [from, n) minus that of [from, p), where the tokens from {@code from} on decode to something visible, so
 * decoding rules that look at neighbours hold: SentencePiece drops the leading space of a sequence's first visible
 * piece only, and a UTF-8 character split over byte tokens decodes as U+FFFD until it is whole. Up to three last
 * U+FFFD are therefore held back until a token follows them (or the end); the ones before them are invalid bytes and
 * print as they are. With {@code strip} (the {@code --alpaca} response) leading whitespace is never printed and trailing whitespace
 * only once text follows it, so the output is the stripped completion.
 */
final class TextStream {
    /** Tokens of context tried first before the ones to print (more while they decode to nothing visible). */
    static final int CONTEXT = 4, MAX_CONTEXT = 256;

    private final Tokenizer tok;
    private final PrintStream out;
    private final boolean strip;
    private final IntArrayList ids = new IntArrayList();
    /** Tokens before this one are printed whole; of the text of the tokens from it on, the first {@code shown} chars. */
    private int printed;
    /**
     * The last token seen that decodes, alone, to visible text: put before a look-back that reached its bound while
     * still blank, it stands for the visible text before (-1: none yet).
     */
    private int anchor = -1;
    private int shown;
    private boolean started;
    private final StringBuilder pendingSpace = new StringBuilder();

    TextStream(Tokenizer tok, int[] promptIds, boolean strip, PrintStream out) {
        this.tok = tok;
        this.out = out;
        this.strip = strip;
        ids.addElements(0, promptIds);
        printed = promptIds.length;
        for (int id : promptIds) noteAnchor(id);
    }

    /** The next generated token. */
    void accept(int id) {
        ids.add(id);
        flush(false);
        noteAnchor(id);
    }

    private void noteAnchor(int id) {
        String alone = tok.decode(new int[] {id});
        if (!alone.isBlank() && alone.indexOf('\uFFFD') < 0) anchor = id;
    }

    /** Prints what is held back and ends the output with a line break (with strip, trailing whitespace is dropped). */
    void finish() {
        flush(true);
        out.println();
        out.flush();
    }

    private void flush(boolean all) {
        int n = ids.size();
        String text = textOf(printed, n);
        int end = text.length();
        // An incomplete character at the end decodes as one U+FFFD per byte (SentencePiece) or one for all (Java's
        // decoder): up to three, held back until the next token says whether they were a character's start
        if (!all) for (int held = 0; held < 3 && end > 0 && text.charAt(end - 1) == '\uFFFD'; held++) end--;
        if (end > shown) emit(text.substring(shown, end));
        shown = Math.max(shown, end);
        if (shown >= text.length()) {
            printed = n;
            shown = 0;
            return;
        }
        // Held back: the tokens before the last three move out once all their text is printed, so a long run of
        // invalid bytes does not make every step decode all of it again.
        for (int j = n - 1; j >= Math.max(printed + 1, n - 3); j--) {
            String before = textOf(printed, j);
            if (shown >= before.length() && text.startsWith(before)) {
                printed = j;
                shown -= before.length();
                return;
            }
        }
    }

    /** The text of tokens [a, b) in the sequence's decoding. */
    private String textOf(int a, int b) {
        int from = Math.max(0, a - CONTEXT);
        String head = decode(from, a);
        // SentencePiece would drop the next piece's leading space; bounded, so a model emitting blank lines for ever
        // does not make each token decode everything before it
        while (from > 0 && head.isBlank() && a - from < MAX_CONTEXT) {
            from = Math.max(0, from - 4 * CONTEXT);
            head = decode(from, a);
        }
        String whole;
        if (from > 0 && head.isBlank() && anchor >= 0) {  // bound reached: the anchor stands for the text before
            head = decode(anchor, from, a);
            whole = decode(anchor, from, b);
        } else {
            whole = decode(from, b);
        }
        if (whole.startsWith(head)) return whole.substring(head.length());
        int common = 0;  // cannot be cut apart: what follows the common part
        while (common < head.length() && common < whole.length() && head.charAt(common) == whole.charAt(common)) common++;
        return whole.substring(common);
    }

    private void emit(String text) {
        if (strip) {
            if (!started) text = text.stripLeading();
            if (text.isEmpty()) return;
            int end = text.length();
            while (end > 0 && Character.isWhitespace(text.charAt(end - 1))) end--;
            if (end == 0) {
                pendingSpace.append(text);
                return;
            }
            out.print(pendingSpace);
            pendingSpace.setLength(0);
            out.print(text.substring(0, end));
            pendingSpace.append(text, end, text.length());
            started = true;
        } else {
            out.print(text);
        }
        out.flush();
    }

    private String decode(int from, int to) {
        return tok.decode(Arrays.copyOfRange(ids.elements(), from, to));
    }

    /** Token {@code first}, then tokens [from, to), decoded. */
    private String decode(int first, int from, int to) {
        int[] seq = new int[1 + to - from];
        seq[0] = first;
        System.arraycopy(ids.elements(), from, seq, 1, to - from);
        return tok.decode(seq);
    }
}
