package dev.patchcore.data;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/** UTF-8 bytes as tokens: ids 0..255 are byte values, 256 is EOS (vocabulary 257). */
public final class ByteTokenizer implements Tokenizer {

    public static final String NAME = "byte";
    public static final int EOS = 256;
    static final String EOS_TEXT = "<|endoftext|>";

    static final ByteTokenizer INSTANCE = new ByteTokenizer();

    private ByteTokenizer() {}

    @Override public String name() { return NAME; }

    @Override public int vocabSize() { return 257; }

    @Override public int eosId() { return EOS; }

    @Override
    public int[] encode(String text) {
        byte[] bytes = Utf8.bytes(text);  // an unpaired surrogate as U+FFFD, not '?'
        int[] ids = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) ids[i] = bytes[i] & 0xFF;
        return ids;
    }

    @Override
    public String decode(int[] ids) {
        StringBuilder out = new StringBuilder(ids.length);
        ByteArrayOutputStream run = new ByteArrayOutputStream(ids.length);
        for (int id : ids) {
            if (id < 0 || id > EOS) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, 257) of tokenizer 'byte'");
            }
            if (id == EOS) {
                // Flush pending bytes first so EOS lands where it was in the id sequence.
                out.append(run.toString(StandardCharsets.UTF_8));
                run.reset();
                out.append(EOS_TEXT);
            } else {
                run.write(id);
            }
        }
        return out.append(run.toString(StandardCharsets.UTF_8)).toString();
    }

    @Override public String toString() { return NAME; }
}
