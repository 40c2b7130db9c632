package dev.patchcore.data;

import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.IntArrayList;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/** An OpenAI BPE encoding (r50k_base, cl100k_base, o200k_base) through JTokkit. */
final class TiktokenTokenizer implements Tokenizer {

    private final Encoding encoding;
    private final int vocabSize;
    private final int eosId;

    /**
     * @param vocabSize the largest special-token id + 1 (JTokkit does not expose it; the
     *                  values are tiktoken's {@code n_vocab} and are checked by the tests)
     */
    TiktokenTokenizer(Encoding encoding, int vocabSize, int eosId) {
        this.encoding = encoding;
        this.vocabSize = vocabSize;
        this.eosId = eosId;
    }

    @Override public String name() { return encoding.getName(); }

    @Override public int vocabSize() { return vocabSize; }

    @Override public int eosId() { return eosId; }

    @Override
    public int[] encode(String text) {
        // encodeOrdinary: special-token text inside documents stays ordinary text (and
        // JTokkit's encode() would throw on it). An unpaired surrogate is U+FFFD, as tiktoken encodes one (JTokkit
        // would give '?' or, in cl100k_base, tokens of the surrogate's own bytes).
        return encoding.encodeOrdinary(Utf8.wellFormed(text)).toArray();
    }

    @Override
    public String decode(int[] ids) {
        IntArrayList list = new IntArrayList(ids.length);
        for (int id : ids) {
            if (id < 0 || id >= vocabSize) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + vocabSize
                        + ") of tokenizer '" + name() + "'");
            }
            list.add(id);
        }
        try {
            return encoding.decode(list);
        } catch (RuntimeException unassignedId) {
            return decodeSkippingUnassigned(ids);
        }
    }

    /** Slow path: some ids inside the id space have no token (e.g. 100256 in cl100k_base). */
    private String decodeSkippingUnassigned(int[] ids) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        IntArrayList one = new IntArrayList(1);
        for (int id : ids) {
            one.clear();
            one.add(id);
            byte[] piece;
            try {
                piece = encoding.decodeBytes(one);
            } catch (RuntimeException unassigned) {
                piece = "\uFFFD".getBytes(StandardCharsets.UTF_8);
            }
            bytes.writeBytes(piece);
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }

    /** The bytes of token {@code id}, or null for an id the encoding leaves unassigned. */
    byte[] tokenBytes(int id) {
        IntArrayList one = new IntArrayList(1);
        one.add(id);
        try {
            return encoding.decodeBytes(one);
        } catch (RuntimeException unassigned) {
            return null;
        }
    }

    @Override public String toString() { return name(); }
}
