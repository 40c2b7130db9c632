package dev.patchcore.train;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.data.HuggingFaceBpeTokenizer;
import dev.patchcore.data.HuggingFaceBpeTokenizerTest;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.cli.Main;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Chat templates: the ids they write with a tokenizer's special tokens, the scored part of an example, refusals. */
class ChatFormatTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream out = console.out, err = console.err;

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

    /**
     * The SentencePiece-style test tokenizer (1000 pieces, byte fallback) in the newer layout: no normalizer, a Metaspace
     * pre-tokenizer with prepend_scheme "first", with {@code specials} at 1000, 1001, … (as chat_fixtures.js builds it).
     */
    static HuggingFaceBpeTokenizer metaspaceFirstWith(String... specials) {
        JsonObject root = JsonParser.parseString(new String(HuggingFaceBpeTokenizerTest.resource("spbpe-tokenizer.json"), StandardCharsets.UTF_8))
                .getAsJsonObject();
        root.add("normalizer", com.google.gson.JsonNull.INSTANCE);
        JsonObject meta = new JsonObject();
        meta.addProperty("type", "Metaspace");
        meta.addProperty("replacement", "\u2581");
        meta.addProperty("prepend_scheme", "first");
        meta.addProperty("split", false);
        root.add("pre_tokenizer", meta);
        root.getAsJsonObject("model").addProperty("ignore_merges", false);
        JsonArray added = root.getAsJsonArray("added_tokens");
        for (int i = 0; i < specials.length; i++) {
            JsonObject t = added.get(0).getAsJsonObject().deepCopy();
            t.addProperty("id", 1000 + i);
            t.addProperty("content", specials[i]);
            added.add(t);
        }
        return HuggingFaceBpeTokenizer.fromBytes(root.toString().getBytes(StandardCharsets.UTF_8), null, "metaspace-first fixture");
    }

    static HuggingFaceBpeTokenizer llama3Tokenizer() {
        return HuggingFaceBpeTokenizer.fromBytes(fixtureWith(LLAMA3_SPECIALS), null, "llama3 fixture");
    }

    private static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    /**
     * LLaMA-3's layout, id for id: the special tokens by their ids, the text between them encoded as one stretch each.
     * The ids of "user" (882) and "\n\n" (271) are those of LLaMA-3's vocabulary (the fixture is its first 3000
     * tokens); the special tokens sit at LLaMA-3's offsets from <|begin_of_text|> (128000 there, 3000 here).
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

    private static Instructions.Message msg(Instructions.Role role, String content) {
        return new Instructions.Message(role, content);
    }

    private static final Instructions.Role SYSTEM = Instructions.Role.SYSTEM, USER = Instructions.Role.USER,
            ASSISTANT = Instructions.Role.ASSISTANT;

    /** The scored tokens of an example, span by span. */
    private static int[][] scoredTokens(Instructions.Example e) {
        int[][] out = new int[e.scored().length / 2][];
        for (int i = 0; i < out.length; i++) out[i] = Arrays.copyOfRange(e.ids(), e.scored()[2 * i], e.scored()[2 * i + 1]);
        return out;
    }

    /**
     * A conversation in LLaMA-3's template, id for id: the system message and every turn under its header, trimmed;
     * each answer and its <|eot_id|> scored, nothing else; the generation prompt before each answer is the example's
     * tokens up to the answer.
     */
    @Test void llama3WritesConversations() {
        HuggingFaceBpeTokenizer tok = llama3Tokenizer();
        ChatFormat.Template t = ChatFormat.LLAMA3.with(tok);
        var messages = java.util.List.of(msg(SYSTEM, " Be brief. "), msg(USER, "Hi"), msg(ASSISTANT, "Hello!"), msg(USER, "2+2?"),
                msg(ASSISTANT, "4\n"));
        Instructions.Example e = t.example(new Instructions.Conversation(messages));
        int[] system = tok.encode("system"), user = tok.encode("user"), assistant = tok.encode("assistant");
        int[] first = concat(new int[] {BEGIN, START_HEADER}, system, new int[] {END_HEADER}, tok.encode("\n\nBe brief."), new int[] {EOT,
                START_HEADER}, user, new int[] {END_HEADER}, tok.encode("\n\nHi"), new int[] {EOT, START_HEADER}, assistant, new int[] {END_HEADER});
        int[] second = concat(new int[] {START_HEADER}, user, new int[] {END_HEADER}, tok.encode("\n\n2+2?"), new int[] {EOT, START_HEADER},
                assistant, new int[] {END_HEADER});
        assertArrayEquals(concat(first, tok.encode("\n\nHello!"), new int[] {EOT}, second, tok.encode("\n\n4"), new int[] {EOT}), e.ids());
        int[] hello = tok.encode("\n\nHello!"), four = tok.encode("\n\n4");
        assertEquals(271, hello[0]);
        assertEquals(271, four[0]);
        int[][] scored = scoredTokens(e);
        assertEquals(2, scored.length);
        assertArrayEquals(concat(Arrays.copyOfRange(hello, 1, hello.length), new int[] {EOT}), scored[0]);
        assertArrayEquals(concat(Arrays.copyOfRange(four, 1, four.length), new int[] {EOT}), scored[1]);
        // The generation prompt before each answer: the example up to its first scored token
        assertArrayEquals(Arrays.copyOf(e.ids(), e.scored()[0]), t.prompt(messages.subList(0, 2)));
        assertArrayEquals(Arrays.copyOf(e.ids(), e.scored()[2]), t.prompt(messages.subList(0, 4)));
        // A prompt/response record is the conversation of its user turn and its answer
        assertArrayEquals(t.example(new Instructions.Record("Hi", "Hello!")).ids(),
                t.example(new Instructions.Conversation(messages.subList(1, 3))).ids());
    }

    /** ChatML: <|im_start|>{role}\n{content}<|im_end|>\n per message, the \n between turns not scored. */
    @Test void chatmlWritesConversations() {
        Tokenizer tok = HuggingFaceBpeTokenizer.fromBytes(fixtureWith("<|im_start|>", "<|im_end|>"), null, "chatml fixture");
        int start = 3002, end = 3003;
        ChatFormat.Template t = ChatFormat.CHATML.with(tok);
        var messages = java.util.List.of(msg(SYSTEM, "Be brief."), msg(USER, " Hi"), msg(ASSISTANT, "Hello"), msg(USER, "More"),
                msg(ASSISTANT, " Bye "));
        Instructions.Example e = t.example(new Instructions.Conversation(messages));
        int[] nl = tok.encode("\n");
        int[] expected = concat(new int[] {start}, tok.encode("system\nBe brief."), new int[] {end}, nl, new int[] {start},
                tok.encode("user\n Hi"), new int[] {end}, nl, new int[] {start}, tok.encode("assistant\nHello"), new int[] {end}, nl,
                new int[] {start}, tok.encode("user\nMore"), new int[] {end}, nl, new int[] {start}, tok.encode("assistant\n Bye "),
                new int[] {end});
        assertArrayEquals(expected, e.ids());
        int[][] scored = scoredTokens(e);
        assertEquals(2, scored.length);
        assertEquals("Hello", tok.decode(Arrays.copyOf(scored[0], scored[0].length - 1)));
        assertEquals(end, scored[0][scored[0].length - 1]);
        assertEquals(" Bye ", tok.decode(Arrays.copyOf(scored[1], scored[1].length - 1)), "no trim in ChatML");
        assertArrayEquals(concat(Arrays.copyOf(expected, 4 + 2 * nl.length + tok.encode("system\nBe brief.").length + tok.encode("user\n Hi").length),
                new int[] {start}, tok.encode("assistant\n")), t.prompt(messages.subList(0, 2)), "system, user, then the assistant's header");
        assertArrayEquals(Arrays.copyOf(e.ids(), e.scored()[2]), Arrays.copyOf(t.prompt(messages.subList(0, 4)), e.scored()[2]));
    }

    /**
     * A conversation kept as tokens — the first prompt, an answer, the continuation after it — is the prompt of the whole
     * conversation, in both formats; an answer cut before its end of turn gets one.
     */
    @Test void continuationsExtendTheConversation() {
        Tokenizer chatml = HuggingFaceBpeTokenizer.fromBytes(fixtureWith("<|im_start|>", "<|im_end|>"), null, "chatml fixture");
        for (ChatFormat.Template t : new ChatFormat.Template[] {ChatFormat.LLAMA3.with(llama3Tokenizer()), ChatFormat.CHATML.with(chatml)}) {
            Tokenizer tok = t.format() == ChatFormat.LLAMA3 ? llama3Tokenizer() : chatml;
            var first = java.util.List.of(msg(SYSTEM, "Be brief."), msg(USER, "Hi"));
            int[] answer = concat(tok.encode("Hello there"), new int[] {t.endOfTurnId()});
            int[] kept = concat(t.prompt(first), answer, t.continuation(true, java.util.List.of(msg(USER, "And then?"))));
            assertArrayEquals(t.prompt(java.util.List.of(msg(SYSTEM, "Be brief."), msg(USER, "Hi"), msg(ASSISTANT, "Hello there"),
                    msg(USER, "And then?"))), kept, t.format().label());
            int[] cut = t.continuation(false, java.util.List.of(msg(USER, "And then?")));
            assertEquals(t.endOfTurnId(), cut[0], "an answer cut by the token limit is ended");
            assertArrayEquals(t.continuation(true, java.util.List.of(msg(USER, "And then?"))), Arrays.copyOfRange(cut, 1, cut.length));
        }
    }

    /**
     * The templates themselves agree: conversations rendered by Meta-Llama-3-8B-Instruct's and Hugging Face's ChatML
     * chat_template (Jinja, run by @huggingface/jinja) and tokenized by Hugging Face's tokenizers (Rust) with this
     * fixture tokenizer — apply_chat_template(tokenize=True) — are the ids ChatFormat writes: the generation prompt for
     * a conversation ending with a user turn, the fine-tuning example for one ending with an answer (in ChatML the
     * example ends at the last <|im_end|>, before the template's "\n" after it). ChatML also with a SentencePiece-style
     * tokenizer whose Metaspace "first" puts ▁ before the input's first text only (none after a special token).
     * tools/reference/hf-tokenizer/chat_fixtures.js wrote the fixture.
     */
    @Test void matchesTheTemplatesRenderedAndTokenizedByHuggingFace() {
        JsonArray cases = JsonParser.parseString(new String(HuggingFaceBpeTokenizerTest.resource("chat_templates.json"), StandardCharsets.UTF_8))
                .getAsJsonArray();
        Tokenizer chatml = HuggingFaceBpeTokenizer.fromBytes(fixtureWith("<|im_start|>", "<|im_end|>"), null, "chatml fixture");
        Map<String, ChatFormat.Template> templates = Map.of("llama3", ChatFormat.LLAMA3.with(llama3Tokenizer()), "chatml",
                ChatFormat.CHATML.with(chatml), "chatml-metaspace-first", ChatFormat.CHATML.with(metaspaceFirstWith("<|im_start|>", "<|im_end|>")));
        int checked = 0;
        for (var e : cases) {
            JsonObject c = e.getAsJsonObject();
            ChatFormat.Template t = templates.get(c.get("format").getAsString());
            java.util.List<Instructions.Message> messages = new java.util.ArrayList<>();
            for (var jm : c.getAsJsonArray("messages")) {
                JsonObject o = jm.getAsJsonObject();
                messages.add(msg(Instructions.Role.valueOf(o.get("role").getAsString().toUpperCase(java.util.Locale.ROOT)),
                        o.get("content").getAsString()));
            }
            int[] expected = new int[c.getAsJsonArray("ids").size()];
            for (int i = 0; i < expected.length; i++) expected[i] = c.getAsJsonArray("ids").get(i).getAsInt();
            String what = t.format().label() + " " + c.get("text").getAsString();
            if (c.get("generation_prompt").getAsBoolean()) {
                assertArrayEquals(expected, t.prompt(messages), what);
            } else {
                Instructions.Example ex = t.example(new Instructions.Conversation(messages));
                if (t.format() == ChatFormat.CHATML) {
                    int[] newline = t.tokenizer().encode("\n", false);
                    assertEquals(t.endOfTurnId(), expected[expected.length - newline.length - 1], what);
                    assertArrayEquals(newline, Arrays.copyOfRange(expected, expected.length - newline.length, expected.length),
                            "the template's \\n after the last <|im_end|>: " + what);
                    expected = Arrays.copyOf(expected, expected.length - newline.length);
                }
                assertArrayEquals(expected, ex.ids(), what);
                long answers = messages.stream().filter(x -> x.role() == ASSISTANT).count();
                assertEquals(2 * answers, ex.scored().length, what);
                for (int i = 1; i < ex.scored().length; i += 2) assertEquals(t.endOfTurnId(), ex.ids()[ex.scored()[i] - 1], what);
            }
            checked++;
        }
        assertEquals(21, checked);
    }

    /** Conversations: {"messages"} and ShareGPT's {"conversations"} records; they need --chat; roles are checked. */
    @Test void readsConversations(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("c.jsonl");
        Files.writeString(f, """
                {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "dropped"}]}
                {"conversations": [{"from": "human", "value": "U"}, {"from": "gpt", "value": "A"}]}
                {"prompt": "P", "response": "R"}
                """);
        var items = Instructions.read(f, "chatml");
        assertEquals(java.util.List.of(new Instructions.Conversation(java.util.List.of(msg(SYSTEM, "S"), msg(USER, "U1"), msg(ASSISTANT, "A1"))),
                new Instructions.Conversation(java.util.List.of(msg(USER, "U"), msg(ASSISTANT, "A"))), new Instructions.Record("P", "R")), items);
        var e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(f));
        assertEquals(f + " line 1 is a conversation {\"messages\": [...]}: give --chat llama3|chatml|template, the template its turns are written in",
                e.getMessage());
        String[][] bad = {
                {"{\"messages\": [{\"role\": \"user\", \"content\": \"U\"}, {\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}",
                        " line 1 messages[1]: a system message comes first, before the turns"},
                {"{\"messages\": [{\"role\": \"tool\", \"content\": \"T\"}]}",
                        " line 1 messages[0]: unknown role \"tool\" (expected system, user or assistant)"},
                {"{\"conversations\": [{\"from\": \"bot\", \"value\": \"T\"}]}",
                        " line 1 conversations[0]: unknown speaker \"from\": \"bot\" (expected system, human or gpt)"},
                {"{\"messages\": [{\"role\": \"user\", \"content\": \"U\"}]}", " line 1: no assistant turn, so nothing to learn from it"},
                {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}",
                        " line 1 messages[0]: field content must be a string, got an array"},
                {"{\"messages\": {\"role\": \"user\"}}", " line 1: field messages must be an array, got an object"},
                {"{\"messages\": [\"hi\"]}", " line 1 messages[0] is not an object"},
        };
        for (String[] b : bad) {
            Files.writeString(f, b[0] + "\n");
            e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(f, "llama3"), b[0]);
            assertEquals(f + b[1], e.getMessage());
        }
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
        assertEquals("unknown --chat format 'llama2': choose one of llama3, chatml or template (the model's own)", e.getMessage());
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
        assertEquals(java.util.Set.of("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                "<|eot_id|>"), hf.specialTokens());
        for (String s : hf.specialTokens()) assertTrue(hf.specialId(s) >= 0, s);
        assertEquals(java.util.Set.of(), Tokenizers.byName("byte").specialTokens());
    }

    @Test void pythonStripTakesPythonsWhitespace() {
        assertEquals("a b", ChatFormat.pythonStrip("\u00A0\u2007\u202F\u3000\u0085\u001C\t a b\n\r\u000B\u000C\u2028\u2029"));
        assertEquals("\u200Ba\u200B", ChatFormat.pythonStrip("\u200Ba\u200B"), "a zero-width space is not whitespace to Python");
        assertEquals("", ChatFormat.pythonStrip(" \n "));
    }

    /**
     * A Hugging Face folder of a model that writes " the" after any token but " the" and the end of turn after " the"
     * (a bigram model: each layer's output projections zero, so the last position's logits are the LM head times its
     * token's normalized embedding), with the LLaMA-3 fixture tokenizer. Returns the id of " the".
     */
    static int writeTheThenEndOfTurnModel(Path dir) throws IOException {
        return writeTheThenModel(dir, EOT);
    }

    /** As {@link #writeTheThenEndOfTurnModel}, the token after " the" being {@code next}. */
    static int writeTheThenModel(Path dir, int next) throws IOException {
        HuggingFaceBpeTokenizer tok = llama3Tokenizer();
        int the = tok.encode(" the")[0];
        assertEquals(279, the, "LLaMA-3's id of \" the\"");
        ModelConfig c = new ModelConfig("x", tok.vocabSize(), 32, 64, 1, 2, 64, 10000f, 1e-5f);
        Map<String, HuggingFaceModelTest.T> w = HuggingFaceModelTest.weights(c, "F32", 1);
        for (var e : w.entrySet()) Arrays.fill(e.getValue().values(), e.getKey().contains("norm") ? 1f : 0f);
        float[] embed = w.get("model.embed_tokens.weight").values(), head = w.get("lm_head.weight").values();
        for (int t = 0; t < c.vocabSize(); t++) embed[t * c.dim() + (t == the ? 1 : 0)] = 1f;
        head[the * c.dim()] = 10f;       // after any token but " the": " the"
        head[next * c.dim() + 1] = 10f;  // after " the": <|eot_id|> (or next)
        HuggingFaceModelTest.write(dir.resolve("model.safetensors"), w);
        Files.writeString(dir.resolve(HuggingFaceModel.CONFIG), HuggingFaceModelTest.config(c).toString());
        Files.write(dir.resolve("tokenizer.json"), fixtureWith(LLAMA3_SPECIALS));
        return the;
    }

    private void assertUserError(String expectedFragment, String... args) {
        console.assertUserError(expectedFragment, args);
    }

    /**
     * generate --chat: the prompt as one user turn (no second begin-of-text, though the tokenizer adds one to plain
     * prompts), the answer alone printed, and the generation stopped at <|eot_id|>, which the end of text is not.
     */
    @Test void generateStopsAtTheEndOfTurn(@TempDir Path dir) throws IOException {
        writeTheThenEndOfTurnModel(dir);
        int promptTokens = ChatFormat.LLAMA3.with(llama3Tokenizer()).prompt("Say the").length;
        assertEquals(0, Main.run("generate", dir.toString(), "--backend", "cpu", "--chat", "llama3", "--prompt", "Say the",
                "--tokens", "10", "--temperature", "0"), err.toString());
        assertEquals("the\n", out.toString(), "the answer alone, stopped at the end of turn");
        assertTrue(err.toString().contains("generate: 1 token and the end of turn in ") && err.toString().contains("(reading "
                + promptTokens + " prompt tokens)"), err.toString());
        // Without --chat the end of turn is a token like any other: the text goes on (printed as the tokenizer decodes it)
        out.reset();
        assertEquals(0, Main.run("generate", dir.toString(), "--backend", "cpu", "--prompt", "Say", "--tokens", "4", "--temperature", "0"),
                err.toString());
        assertEquals("Say the<|eot_id|> the<|eot_id|>\n", out.toString());

        assertUserError("--alpaca and --chat are two prompt formats: give one of them", "generate", dir.toString(), "--backend", "cpu",
                "--chat", "llama3", "--alpaca");
        assertUserError("--chat chatml needs the special token <|im_start|>, which tokenizer hf-bpe-", "generate", dir.toString(),
                "--backend", "cpu", "--chat", "chatml");
        assertUserError("unknown --chat format 'llama2': choose one of llama3, chatml or template (the model's own)", "generate", dir.toString(), "--backend", "cpu",
                "--chat", "llama2");
    }

    /**
     * finetune --chat: {"prompt", "response"} records posed in LLaMA-3's template train a checkpoint that generate --chat
     * reads (its tokenizer.json keeps the special tokens); Alpaca records and a tokenizer without the tokens are refused.
     */
    @Test void finetuneTrainsOnChatRecords(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("chat.jsonl"), tuned = dir.resolve("tuned");
        writeTheThenEndOfTurnModel(hf);
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 8; i++) jsonl.append("{\"prompt\": \"Say ").append(i).append("\", \"response\": \"").append(i).append("\"}\n");
        Files.writeString(data, jsonl.toString());
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--chat", "llama3", "--data", data.toString(),
                "--out", tuned.toString(), "--epochs", "1", "--batch", "2", "--accum", "2", "--val-fraction", "0"), err.toString());
        assertTrue(out.toString().contains("fine-tuned: 2 steps"), out.toString());
        out.reset();
        assertEquals(0, Main.run("generate", tuned.toString(), "--backend", "cpu", "--chat", "llama3", "--prompt", "Say 3",
                "--tokens", "2", "--temperature", "0"), err.toString());

        Path alpaca = dir.resolve("alpaca.json");
        Files.writeString(alpaca, "[{\"instruction\": \"Say 1\", \"input\": \"\", \"output\": \"1\"}]");
        assertUserError(alpaca + " record 1 is an Alpaca record {\"instruction\", \"input\", \"output\"}: --chat llama3 takes "
                + "{\"prompt\", \"response\"} records", "finetune", hf.toString(), "--backend", "cpu", "--chat", "llama3", "--data",
                alpaca.toString(), "--out", dir.resolve("t2").toString());
        assertUserError("--chat chatml needs the special token <|im_start|>", "finetune", hf.toString(), "--backend", "cpu", "--chat",
                "chatml", "--data", data.toString(), "--out", dir.resolve("t3").toString());
        assertFalse(Files.exists(dir.resolve("t3")), "a refused finetune leaves no folder");
    }

    /**
     * finetune --chat on conversations ({"messages"} with a system message, two answers each) records the format in its
     * checkpoints; generate names it when not given --chat, and --system puts a system message before the user's turn.
     */
    @Test void finetuneTrainsOnConversationsAndGenerateTakesASystemMessage(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("chat.jsonl"), tuned = dir.resolve("tuned");
        writeTheThenEndOfTurnModel(hf);
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 4; i++)
            jsonl.append("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Say ")
                    .append(i).append("\"}, {\"role\": \"assistant\", \"content\": \"").append(i)
                    .append("\"}, {\"role\": \"user\", \"content\": \"Again\"}, {\"role\": \"assistant\", \"content\": \"").append(i).append("\"}]}\n");
        Files.writeString(data, jsonl.toString());
        assertUserError(data + " line 1 is a conversation {\"messages\": [...]}: give --chat llama3|chatml|template", "finetune", hf.toString(),
                "--backend", "cpu", "--data", data.toString(), "--out", tuned.toString());
        assertFalse(Files.exists(tuned), "a refused finetune leaves no folder");
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--chat", "llama3", "--data", data.toString(),
                "--out", tuned.toString(), "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0"), err.toString());
        assertTrue(out.toString().contains("fine-tuned: 2 steps"), out.toString());
        assertEquals("llama3", Checkpoints.readMeta(Checkpoints.latest(tuned)).chat());
        assertNull(Checkpoints.readMeta(hf).chat());

        err.reset();
        out.reset();
        assertEquals(0, Main.run("generate", tuned.toString(), "--backend", "cpu", "--prompt", "Say", "--tokens", "1", "--temperature", "0"),
                err.toString());
        assertTrue(err.toString().contains("note: this checkpoint was fine-tuned with --chat llama3; give --chat llama3 to pose the prompt "
                + "as its user turn (without it the prompt is plain text to continue)"), err.toString());

        writeTheThenEndOfTurnModel(hf);  // the untuned weights again: " the", then the end of turn
        int promptTokens = ChatFormat.LLAMA3.with(llama3Tokenizer()).prompt(java.util.List.of(msg(SYSTEM, "Be brief."), msg(USER, "Say the")))
                .length;
        err.reset();
        out.reset();
        assertEquals(0, Main.run("generate", hf.toString(), "--backend", "cpu", "--chat", "llama3", "--system", "Be brief.", "--prompt",
                "Say the", "--tokens", "10", "--temperature", "0"), err.toString());
        assertEquals("the\n", out.toString());
        assertTrue(err.toString().contains("(reading " + promptTokens + " prompt tokens)"), err.toString());
        assertFalse(err.toString().contains("note:"), err.toString());
        assertUserError("--system is a chat template's system message: give it with --chat", "generate", hf.toString(), "--backend", "cpu",
                "--system", "Be brief.");
    }

    /**
     * generate --chat --interactive: each input line a user turn, each answer printed and kept; the second turn reads
     * only its own tokens (the KV cache holds the system message, the first turn and its answer).
     */
    @Test void interactiveGenerationKeepsTheConversation(@TempDir Path dir) throws IOException {
        writeTheThenEndOfTurnModel(dir);
        java.io.InputStream stdin = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream("\nAgain\n".getBytes(StandardCharsets.UTF_8)));
            assertEquals(0, Main.run("generate", dir.toString(), "--backend", "cpu", "--chat", "llama3", "--interactive", "--system", "S",
                    "--prompt", "Say", "--tokens", "10", "--temperature", "0"), err.toString());
        } finally {
            System.setIn(stdin);
        }
        assertEquals("the\nthe\n", out.toString(), "two answers");
        ChatFormat.Template t = ChatFormat.LLAMA3.with(llama3Tokenizer());
        int first = t.prompt(java.util.List.of(msg(SYSTEM, "S"), msg(USER, "Say"))).length;
        int second = t.continuation(true, java.util.List.of(msg(USER, "Again"))).length;  // the new tokens alone: the cache holds the rest
        java.util.List<String> speed = err.toString().lines().filter(l -> l.startsWith("generate: ")).toList();
        assertEquals(2, speed.size(), err.toString());
        assertTrue(speed.get(0).contains("(reading " + first + " prompt tokens)"), speed.get(0));
        assertTrue(speed.get(1).contains("(reading " + second + " prompt tokens)"), speed.get(1));
        assertUserError("--interactive is a conversation in a chat template: give it with --chat", "generate", dir.toString(),
                "--backend", "cpu", "--interactive");
    }

    /**
     * --interactive after an answer that ended with the end of text, not the end of turn: the conversation is read
     * again whole (the fixed format's continuation would put <|eot_id|> after the EOS the cache holds).
     */
    @Test void interactiveReadsTheConversationAgainAfterAnEndOfText(@TempDir Path dir) throws IOException {
        writeTheThenModel(dir, llama3Tokenizer().eosId());
        java.io.InputStream stdin = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream("Again\n".getBytes(StandardCharsets.UTF_8)));
            assertEquals(0, Main.run("generate", dir.toString(), "--backend", "cpu", "--chat", "llama3", "--interactive", "--prompt", "Say",
                    "--tokens", "10", "--temperature", "0"), err.toString());
        } finally {
            System.setIn(stdin);
        }
        assertEquals("the\nthe\n", out.toString());
        ChatFormat.Template t = ChatFormat.LLAMA3.with(llama3Tokenizer());
        int whole = t.prompt(java.util.List.of(msg(USER, "Say"), msg(ASSISTANT, " the"), msg(USER, "Again"))).length;
        java.util.List<String> speed = err.toString().lines().filter(l -> l.startsWith("generate: ")).toList();
        assertTrue(speed.get(1).contains("and the end of text") || speed.get(0).contains("and the end of text"), err.toString());
        assertTrue(speed.get(1).contains("(reading " + whole + " prompt tokens)"), speed.get(1));
    }

    /**
     * --interactive past the context: a turn that makes the window outgrow T restarts it from the last ⌈T/2⌉ tokens,
     * and the note says how many tokens that drops (not the conversation's length less T, which it would read).
     */
    @Test void interactiveNotesTheTokensItsWindowDrops(@TempDir Path dir) throws IOException {
        writeTheThenEndOfTurnModel(dir);
        String longTurn = "one two three four five six seven eight nine ten eleven twelve";
        java.io.InputStream stdin = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream((longTurn + "\nAgain\n").getBytes(StandardCharsets.UTF_8)));
            assertEquals(0, Main.run("generate", dir.toString(), "--backend", "cpu", "--chat", "llama3", "--interactive", "--context", "16",
                    "--tokens", "10", "--temperature", "0"), err.toString());
        } finally {
            System.setIn(stdin);
        }
        assertEquals("the\nthe\n", out.toString());
        ChatFormat.Template t = ChatFormat.LLAMA3.with(llama3Tokenizer());
        int first = t.prompt(java.util.List.of(msg(USER, longTurn))).length;
        int second = first + 2 + t.continuation(true, java.util.List.of(msg(USER, "Again"))).length;  // " the" and <|eot_id|> between
        assertTrue(first > 16 && second - 8 > first, first + ", " + second);
        java.util.List<String> notes = err.toString().lines().filter(l -> l.startsWith("note: ")).toList();
        assertEquals(java.util.List.of(
                "note: the conversation is " + first + " tokens, longer than the --context of 16: its first " + (first - 16) + " tokens are "
                        + "dropped, and with them perhaps the instruction; a longer --context reads more of it",
                "note: the conversation is " + second + " tokens, longer than the --context of 16: its first " + (second - 8) + " tokens are "
                        + "dropped, and with them perhaps the instruction; a longer --context reads more of it"), notes);
    }
}
