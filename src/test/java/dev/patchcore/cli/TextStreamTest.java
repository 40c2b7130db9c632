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
}
