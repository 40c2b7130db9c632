package dev.patchcore.cli;

import dev.patchcore.data.Tokenizer;
import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.io.PrintStream;
import java.util.Arrays;

/**
 * Prints a completion as its tokens arrive, so {@code generate} shows text while it samples. Each token's text is the
 * decoding of a few tokens up to it minus the decoding of those before it (the whole sequence decoded minus the decoded
 * prompt, taken piece by piece), so decoding rules that look at neighbours hold: a UTF-8
 * character split over byte tokens is held back until it is whole (up to {@link #HOLD} tokens), and SentencePiece's
 * leading-space rule applies to the sequence's start only. With {@code strip} (the {@code --alpaca} response) leading
 * whitespace is never printed and trailing whitespace only once text follows it, so the output is the stripped
 * completion. Work per token is bounded, however long the generation.
 */
final class TextStream {
    /** Tokens of context decoded before the ones to print, and the most held back for an incomplete character. */
    static final int CONTEXT = 4, HOLD = 8;

    private final Tokenizer tok;
    private final PrintStream out;
    private final boolean strip;
    private final IntArrayList ids = new IntArrayList();
    private final int promptTokens;
    /** Tokens before this one have been printed (or, with strip, are whitespace held back in {@link #pendingSpace}). */
    private int printed;
    private boolean started;
    private final StringBuilder pendingSpace = new StringBuilder();

    TextStream(Tokenizer tok, int[] promptIds, boolean strip, PrintStream out) {
        this.tok = tok;
        this.out = out;
        this.strip = strip;
        ids.addElements(0, promptIds);
        promptTokens = promptIds.length;
        printed = promptIds.length;
    }

    /** The next generated token. */
    void accept(int id) {
        ids.add(id);
        int from = Math.max(0, printed - CONTEXT);
        String head = decode(from, printed), all = decode(from, ids.size());
        String text;
        if (all.startsWith(head)) {
            text = all.substring(head.length());
            if (text.endsWith("\uFFFD") && ids.size() - printed < HOLD) return;  // perhaps the start of a character
        } else {
            text = decode(printed, ids.size());  // cannot be cut apart: these tokens' own decoding
        }
        printed = ids.size();
        emit(text);
    }

    /** Ends the output with a line break (with strip, the held-back trailing whitespace is dropped). */
    void finish() {
        if (printed < ids.size()) emit(decode(printed, ids.size()));
        out.println();
        out.flush();
    }

    /** Tokens generated so far. */
    int generated() { return ids.size() - promptTokens; }

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
}
