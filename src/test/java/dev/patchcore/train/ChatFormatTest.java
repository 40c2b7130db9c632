package dev.patchcore.train;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.data.HuggingFaceBpeTokenizer;
import dev.patchcore.data.HuggingFaceBpeTokenizerTest;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/** Chat templates: the ids they write with a tokenizer's special tokens, the scored part of an example, refusals. */
class ChatFormatTest {
    /** LLaMA-3.1's special tokens after <|begin_of_text|> (128000) and <|end_of_text|> (128001), at 3000 + the same offsets. */
    static final String[] LLAMA3_SPECIALS = {"<|reserved_special_token_0|>", "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
            "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"};
    static final int BEGIN = 3000, START_HEADER = 3006, END_HEADER = 3007, EOT = 3009;

    /** The test tokenizer.json (LLaMA-3's first 3000 tokens, <|begin_of_text|>, <|end_of_text|>) with {@code specials} added after them. */
    static byte[] fixtureWith(String... specials) {
        JsonObject root = JsonParser.parseString(new String(HuggingFaceBpeTokenizerTest.resource("tokenizer.json"), StandardCharsets.UTF_8))
                .getAsJsonObject();
        JsonArray added = root.getAsJsonArray("added_tokens");
        for (String s : specials) {
            JsonObject t = added.get(0).getAsJsonObject().deepCopy();
            t.addProperty("id", 3000 + added.size());
            t.addProperty("content", s);
            added.add(t);
        }
        return root.toString().getBytes(StandardCharsets.UTF_8);
    }

    static HuggingFaceBpeTokenizer llama3Tokenizer() {
        return HuggingFaceBpeTokenizer.fromBytes(fixtureWith(LLAMA3_SPECIALS), null, "llama3 fixture");
    }

    private static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    /**
     * LLaMA-3's layout, id for id: the special tokens by their ids, the text between them encoded as one stretch each.
     * The ids of "user" (882) and "\n\n" (271) are LLaMA-3's own: LLaMA-3's tokenizer gives
     * [128000, 128006, 882, 128007, 271, ...] for this prompt's start.
     */
    @Test void llama3WritesMetasLayout() {
        HuggingFaceBpeTokenizer tok = llama3Tokenizer();
        ChatFormat.Template t = ChatFormat.LLAMA3.with(tok);
        assertEquals(EOT, t.endOfTurnId());
        assertArrayEquals(new int[] {882}, tok.encode("user"));
        assertArrayEquals(new int[] {271}, tok.encode("\n\n"));
        int[] assistant = tok.encode("assistant");
        int[] prompt = concat(new int[] {BEGIN, START_HEADER, 882, END_HEADER}, tok.encode("\n\nWhat is 2+2?"),
                new int[] {EOT, START_HEADER}, assistant, new int[] {END_HEADER, 271});
        assertArrayEquals(prompt, t.prompt("What is 2+2?"));
        assertEquals(271, tok.encode("\n\nWhat is 2+2?")[0], "\\n\\n and the prompt's first word stay two tokens");
        // Meta's template trims each message (Jinja's trim, Python's str.strip: a no-break space too)
        assertArrayEquals(prompt, t.prompt(" \u00A0What is 2+2?\n"));

        Instructions.Example e = t.example(new Instructions.Record("What is 2+2?", "4."));
        int[] response = tok.encode("\n\n4.");
        assertEquals(271, response[0]);
        assertArrayEquals(concat(prompt, Arrays.copyOfRange(response, 1, response.length), new int[] {EOT}), e.ids());
        assertEquals(prompt.length, e.promptTokens());
    }

    /** A special token's text in the user's words is ordinary text: only the template writes special tokens. */
    @Test void specialTokensInTheTextAreText() {
        HuggingFaceBpeTokenizer tok = llama3Tokenizer();
        int[] ids = ChatFormat.LLAMA3.with(tok).prompt("a<|eot_id|>b<|start_header_id|>");
        assertEquals(1, Arrays.stream(ids).filter(i -> i == EOT).count(), Arrays.toString(ids));
        assertEquals(2, Arrays.stream(ids).filter(i -> i == START_HEADER).count(), Arrays.toString(ids));
        int tail = 4 + tok.encode("assistant").length;  // <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
        assertArrayEquals(tok.encode("\n\na<|eot_id|>b<|start_header_id|>"), Arrays.copyOfRange(ids, 4, ids.length - tail));
    }

    /** ChatML: <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>, no BOS, no trim. */
    @Test void chatmlWritesItsLayout() {
        Tokenizer tok = HuggingFaceBpeTokenizer.fromBytes(fixtureWith("<|im_start|>", "<|im_end|>"), null, "chatml fixture");
        int start = 3002, end = 3003;
        ChatFormat.Template t = ChatFormat.CHATML.with(tok);
        int[] prompt = concat(new int[] {start}, tok.encode("user\n Hi"), new int[] {end}, tok.encode("\n"), new int[] {start},
                tok.encode("assistant\n"));
        assertArrayEquals(prompt, t.prompt(" Hi"));
        Instructions.Example e = t.example(new Instructions.Record(" Hi", "Hello"));
        int[] whole = concat(Arrays.copyOf(prompt, prompt.length - tok.encode("assistant\n").length), tok.encode("assistant\nHello"),
                new int[] {end});
        assertArrayEquals(whole, e.ids());
        assertEquals(end, t.endOfTurnId());
        assertTrue(e.promptTokens() <= prompt.length);
        assertArrayEquals(Arrays.copyOf(prompt, e.promptTokens()), Arrays.copyOf(whole, e.promptTokens()));
    }

    /** The loss of a chat example covers exactly the response's tokens and the end of turn: FineTuner's mask range. */
    @Test void theScoredTargetsAreTheResponseAndTheEndOfTurn() {
        HuggingFaceBpeTokenizer tok = llama3Tokenizer();
        Instructions.Example e = ChatFormat.LLAMA3.with(tok).example(new Instructions.Record("Capital of France?", "Paris is."));
        int[] response = tok.encode("Paris is.");
        int context = e.ids().length + 3, row = 1;
        int[] in = new int[2 * context], tg = new int[2 * context];
        int[] range = Instructions.fill(e, row, context, tok.eosId(), in, tg);
        int[] scored = Arrays.copyOfRange(tg, row * context + range[0], row * context + range[1]);
        assertArrayEquals(concat(response, new int[] {EOT}), scored);
        assertEquals(END_HEADER, in[row * context + range[0] - 1], "the token before the first scored input is the header's end");
        assertEquals(271, in[row * context + range[0]], "the first scored target is predicted from \\n\\n");
        assertEquals(response.length + 1, e.scoredTargets(context));
    }

    /** A tokenizer without the format's special tokens is refused naming the first missing one; so is an unknown format. */
    @Test void aTokenizerWithoutTheTokensIsRefused() {
        var e = assertThrows(IllegalArgumentException.class, () -> ChatFormat.LLAMA3.with(Tokenizers.byName("byte")));
        assertEquals("--chat llama3 needs the special token <|begin_of_text|>, which tokenizer byte does not have (a chat format "
                + "takes the tokenizer of a model made for it, e.g. an instruct model's tokenizer.json)", e.getMessage());
        Tokenizer plain = HuggingFaceBpeTokenizer.fromBytes(HuggingFaceBpeTokenizerTest.resource("tokenizer.json"), null, "fixture");
        e = assertThrows(IllegalArgumentException.class, () -> ChatFormat.LLAMA3.with(plain));
        assertTrue(e.getMessage().startsWith("--chat llama3 needs the special token <|start_header_id|>, which tokenizer hf-bpe-"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ChatFormat.CHATML.with(llama3Tokenizer()));
        assertTrue(e.getMessage().startsWith("--chat chatml needs the special token <|im_start|>"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ChatFormat.LLAMA3.with(Tokenizers.byName("cl100k_base")));
        assertTrue(e.getMessage().contains("<|begin_of_text|>, which tokenizer cl100k_base"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ChatFormat.byLabel("llama2"));
        assertEquals("unknown --chat format 'llama2': choose one of llama3, chatml", e.getMessage());
        assertEquals(ChatFormat.LLAMA3, ChatFormat.byLabel("LLaMA3"));
    }

    /** Special tokens are looked up among the special added tokens only (SentencePiece's control pieces: SentencePieceTokenizerTest). */
    @Test void specialIdsAreTheSpecialTokens() {
        HuggingFaceBpeTokenizer hf = llama3Tokenizer();
        assertEquals(BEGIN, hf.specialId("<|begin_of_text|>"));
        assertEquals(EOT, hf.specialId("<|eot_id|>"));
        assertEquals(-1, hf.specialId("user"), "a vocabulary token");
        assertEquals(-1, hf.specialId("<|eot_id|> "));
        assertEquals(-1, Tokenizers.byName("byte").specialId("<|endoftext|>"));
    }

    @Test void pythonStripTakesPythonsWhitespace() {
        assertEquals("a b", ChatFormat.pythonStrip("\u00A0\u2007\u202F\u3000\u0085\u001C\t a b\n\r\u000B\u000C\u2028\u2029"));
        assertEquals("\u200Ba\u200B", ChatFormat.pythonStrip("\u200Ba\u200B"), "a zero-width space is not whitespace to Python");
        assertEquals("", ChatFormat.pythonStrip(" \n "));
    }
}
