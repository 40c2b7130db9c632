package dev.patchcore.cli;

import dev.patchcore.data.SentencePieceTokenizer;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TextStreamTest {
    static final String TEXT = "  Grüße aus Köln — 東京 and 🙂 emoji,\n  a\ttab   and spaces   \n\n";

    /** What generate printed before it streamed: the whole sequence decoded minus the decoded prompt. */
    static String completion(Tokenizer tok, int[] promptIds, int[] all) {
        String whole = tok.decode(all), head = tok.decode(promptIds);
        return whole.startsWith(head) ? whole.substring(head.length())
                : tok.decode(Arrays.copyOfRange(all, promptIds.length, all.length));
    }

    private static String stream(Tokenizer tok, int[] prompt, int[] generated, boolean strip) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
        TextStream s = new TextStream(tok, prompt, strip, out);
        for (int id : generated) s.accept(id);
        s.finish();
        return bytes.toString(StandardCharsets.UTF_8);
    }

    /**
     * Token by token, the stream prints the whole completion's text (with --alpaca, stripped): multi-byte characters
     * split over byte tokens, SentencePiece's spaces and byte fallback, GPT-2's byte-level pieces, and random token
     * sequences (which decode to broken UTF-8), after prompts of 1 to 6 tokens.
     */
    @Test void printsTheCompletionPieceByPiece() throws IOException {
        byte[] model;
        try (var in = getClass().getResourceAsStream("/sentencepiece/llama_bpe.model")) {
            model = in.readAllBytes();
        }
        List<Tokenizer> tokenizers = List.of(Tokenizers.byName("byte"), Tokenizers.byName("gpt2"), SentencePieceTokenizer.fromBytes(model));
        SplittableRandom rng = new SplittableRandom(7);
        for (Tokenizer tok : tokenizers) {
            int[] ids = tok.encode("Hello" + TEXT + "the end");
            for (int promptLen = 1; promptLen <= 6; promptLen++) {
                int[] prompt = Arrays.copyOf(ids, promptLen);
                int[] random = rng.ints(40, 0, Math.min(tok.vocabSize(), 300)).filter(i -> i != tok.eosId()).toArray();
                for (int[] generated : List.of(Arrays.copyOfRange(ids, promptLen, ids.length), random)) {
                    int[] all = new int[prompt.length + generated.length];
                    System.arraycopy(prompt, 0, all, 0, prompt.length);
                    System.arraycopy(generated, 0, all, prompt.length, generated.length);
                    String expected = completion(tok, prompt, all);
                    String what = tok.name() + ", prompt of " + promptLen + ", " + (generated == random ? "random" : "text");
                    assertEquals(expected + "\n", stream(tok, prompt, generated, false), what);
                    assertEquals(expected.strip() + "\n", stream(tok, prompt, generated, true), what + ", stripped");
                }
            }
        }
    }

    /**
     * The work per token is bounded: a model emitting blank lines for ever (undertrained ones do) must not make each
     * token decode everything before it (it did: a cubic cost, minutes for a few thousand tokens).
     */
    @Test void blankOutputDecodesABoundedContextPerToken() {
        Tokenizer bytes = Tokenizers.byName("byte");
        long[] decoded = {0};
        Tokenizer counting = new Tokenizer() {
            @Override public String name() { return bytes.name(); }
            @Override public int vocabSize() { return bytes.vocabSize(); }
            @Override public int eosId() { return bytes.eosId(); }
            @Override public int[] encode(String text) { return bytes.encode(text); }
            @Override public String decode(int[] ids) {
                decoded[0] += ids.length;
                return bytes.decode(ids);
            }
        };
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        TextStream s = new TextStream(counting, new int[] {'H', 'i'}, false, new PrintStream(sink));
        int n = 4000;
        for (int i = 0; i < n; i++) s.accept('\n');
        s.finish();
        assertEquals("\n".repeat(n + 1), sink.toString());
        assertTrue(decoded[0] < (long) n * 20 * TextStream.MAX_CONTEXT, decoded[0] + " tokens decoded for " + n);
    }

    /**
     * Past the look-back's bound, a run of invisible pieces still prints as the whole text does: SentencePiece decodes
     * whitespace and control pieces by whether visible text came before, which the last visible token stands for.
     */
    @Test void longInvisibleRunsPastTheLookBackPrintAsTheWholeText() throws IOException {
        for (String m : List.of("llama_bpe", "unigram_nfkc", "bpe_rules", "unigram_user")) {
            Tokenizer tok;
            try (var in = getClass().getResourceAsStream("/sentencepiece/" + m + ".model")) {
                tok = SentencePieceTokenizer.fromBytes(in.readAllBytes());
            }
            int[] word = tok.encode("the");
            for (int id = 0; id < Math.min(tok.vocabSize(), 1000); id++) {
                if (!tok.decode(new int[] {id}).isBlank()) continue;  // invisible pieces only: controls, whitespace
                int[] generated = new int[300 + word.length];
                Arrays.fill(generated, 0, 300, id);
                System.arraycopy(word, 0, generated, 300, word.length);
                int[] prompt = tok.encode("Hi"), all = new int[prompt.length + generated.length];
                System.arraycopy(prompt, 0, all, 0, prompt.length);
                System.arraycopy(generated, 0, all, prompt.length, generated.length);
                assertEquals(completion(tok, prompt, all) + "\n", stream(tok, prompt, generated, false), m + ", 300 × piece " + id);
            }
        }
    }

    /**
     * Token runs that decode to nothing visible (control pieces, SentencePiece's whitespace pieces, which it drops or
     * merges where no visible piece precedes them) and runs of invalid bytes before a valid character: thousands of
     * random sequences over such pieces, each printed piece by piece as the whole decoding prints it.
     */
    @Test void invisibleRunsAndInvalidBytesPrintAsTheWholeText() throws IOException {
        List<Tokenizer> tokenizers = new java.util.ArrayList<>(List.of(Tokenizers.byName("byte")));
        for (String m : List.of("llama_bpe", "unigram_nfkc", "unigram_bytes", "bpe_rules"))
            try (var in = getClass().getResourceAsStream("/sentencepiece/" + m + ".model")) {
                tokenizers.add(SentencePieceTokenizer.fromBytes(in.readAllBytes()));
            }
        Tokenizer bytes = tokenizers.getFirst();
        // The reviewer's cases: a valid character after seven invalid bytes; a word after four <s>
        assertEquals("Hi" + bytes.decode(new int[] {255, 255, 255, 255, 255, 255, 255, 218, 157, 65}) + "\n",
                "Hi" + stream(bytes, new int[] {'H', 'i'}, new int[] {255, 255, 255, 255, 255, 255, 255, 218, 157, 65}, false));
        SplittableRandom rng = new SplittableRandom(11);
        for (Tokenizer tok : tokenizers) {
            List<Integer> invisible = new java.util.ArrayList<>(), visible = new java.util.ArrayList<>();
            for (int id = 0; id < Math.min(tok.vocabSize(), 1000); id++)
                (tok.decode(new int[] {id}).isBlank() ? invisible : visible).add(id);
            for (int trial = 0; trial < 1500; trial++) {
                int[] seq = new int[1 + rng.nextInt(16)];
                for (int i = 0; i < seq.length; i++) {
                    int r = rng.nextInt(10);
                    seq[i] = r < 5 && !invisible.isEmpty() ? invisible.get(rng.nextInt(invisible.size()))
                            : r < 7 ? 128 + rng.nextInt(Math.min(128, tok.vocabSize() - 128)) : visible.get(rng.nextInt(visible.size()));
                }
                // The prompt is text a user typed: tokens that decode to whole characters
                int[] prompt = tok.encode(List.of("Hi", "The jury", "x ", "東京").get(rng.nextInt(4))), generated = seq;
                int[] all = new int[prompt.length + seq.length];
                System.arraycopy(prompt, 0, all, 0, prompt.length);
                System.arraycopy(seq, 0, all, prompt.length, seq.length);
                String expected = completion(tok, prompt, all), what = tok.name() + " " + Arrays.toString(seq) + " after " + Arrays.toString(prompt);
                assertEquals(expected + "\n", stream(tok, prompt, generated, false), what);
                assertEquals(expected.strip() + "\n", stream(tok, prompt, generated, true), what + ", stripped");
            }
        }
    }
}
