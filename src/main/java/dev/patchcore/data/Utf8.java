package dev.patchcore.data;

import java.nio.charset.StandardCharsets;

/** UTF-8 encoding for the tokenizers. */
final class Utf8 {
    private Utf8() {}

    /**
     * UTF-8 of the text, an unpaired surrogate as U+FFFD (Java's encoder would write '?', a real character that would
     * then be tokenized as one).
     */
    static byte[] bytes(String text) {
        return wellFormed(text).getBytes(StandardCharsets.UTF_8);
    }

    /** The text with each unpaired surrogate as U+FFFD (as tiktoken encodes a Python str holding one). */
    static String wellFormed(String text) {
        for (int i = 0; i < text.length(); i++) {
            if (Character.isSurrogate(text.charAt(i))) {
                StringBuilder b = new StringBuilder(text.length());
                text.codePoints().forEach(cp -> b.appendCodePoint(cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp));
                return b.toString();
            }
        }
        return text;
    }
}
