package dev.patchcore.data;

/**
 * Text to token ids and back. Implementations are immutable and thread-safe.
 *
 * <p>Token ids lie in {@code [0, vocabSize())}. {@link #encode} treats its input as
 * ordinary text: a literal {@code "<|endoftext|>"} in a document is encoded as the
 * characters it spells, never as the EOS id, so corpus text cannot forge document
 * boundaries.
 */
public interface Tokenizer {

    /** Canonical name, as stored in shard headers (e.g. {@code "byte"}, {@code "r50k_base"}). */
    String name();

    /** Size of the id space including special tokens: every id is below this. */
    int vocabSize();

    /** The end-of-text id that separates documents in a shard. */
    int eosId();

    int[] encode(String text);

    /**
     * {@link #encode(String)} of text that does ({@code beginsText}) or does not begin the input, as Hugging Face's
     * tokenizers encodes a rendered chat template: split at its special tokens, the text after one not at the start.
     * Only a SentencePiece-style {@code tokenizer.json} with a Metaspace pre-tokenizer of {@code prepend_scheme} "first"
     * tells them apart (its "▁" goes before the input's first text only); for every other tokenizer it is encode.
     */
    default int[] encode(String text, boolean beginsText) { return encode(text); }

    /**
     * The id of the special token spelled exactly {@code token} (a Hugging Face {@code tokenizer.json}'s added token
     * marked special, a SentencePiece control piece), or −1 where the tokenizer has none of that name (the byte and
     * tiktoken tokenizers name none here). Such a token is never found in text by {@link #encode}: a chat template puts
     * it in by this id.
     */
    default int specialId(String token) { return -1; }

    /** Every text {@link #specialId} knows (none for the byte and tiktoken tokenizers). */
    default java.util.Set<String> specialTokens() { return java.util.Set.of(); }

    /**
     * Whether special token {@code token}, found in text, takes the white space right {@code after} it (else: right
     * before it) with it, as a Hugging Face added token marked {@code rstrip} / {@code lstrip} does (Phi-3's
     * {@code <|end|>}); false for every other tokenizer.
     */
    default boolean specialAbsorbsWhitespace(String token, boolean after) { return false; }

    /**
     * Text for the given ids. The EOS id decodes to {@code "<|endoftext|>"}; byte sequences
     * that are not valid UTF-8 (e.g. a multi-byte character cut in half) and ids the
     * encoding leaves unassigned decode to U+FFFD.
     *
     * @throws IllegalArgumentException if an id lies outside {@code [0, vocabSize())}
     */
    String decode(int[] ids);
}
