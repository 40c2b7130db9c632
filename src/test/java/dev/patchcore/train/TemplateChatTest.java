package dev.patchcore.train;

import dev.patchcore.cli.Main;
import dev.patchcore.data.HuggingFaceBpeTokenizer;
import dev.patchcore.data.SentencePieceTokenizer;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.testing.CapturedConsole;
import dev.patchcore.train.Instructions.Conversation;
import dev.patchcore.train.Instructions.Message;
import dev.patchcore.train.Instructions.Role;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/** --chat template: a model's own Jinja chat template, rendered and tokenized as transformers does. */
class TemplateChatTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();

    /** Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template and Hugging Face's generic ChatML one. */
    static final String LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
            + "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
            + "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
            + "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    static final String CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
            + "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    /** Mistral-7B-Instruct-v0.1's: [INST] markers are text; only <s> and </s> are special. */
    static final String MISTRAL = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == "
            + "'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
            + "eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    private static Message m(Role role, String content) {
        return new Message(role, content);
    }

    static final List<List<Message>> CONVERSATIONS = List.of(
            List.of(m(Role.USER, "Capital of France?"), m(Role.ASSISTANT, "Paris.")),
            List.of(m(Role.SYSTEM, " Be brief. "), m(Role.USER, "Hi"), m(Role.ASSISTANT, "Hello!"), m(Role.USER, "2+2?"), m(Role.ASSISTANT, "4\n")),
            List.of(m(Role.USER, "\u00a0Caf\u00e9 \u2014 na\u00efve?\t"), m(Role.ASSISTANT, " Oui, tr\u00e8s. ")));

    /**
     * The models' own templates give what the fixed formats give, token for token and span for span: the generation
     * prompt before every answer and the fine-tuning example (ChatML's "\n" after the last <|im_end|> left out of the
     * scored span, as the fixed format ends the example there).
     */
    @Test void theTemplatesOfTheFixedFormatsGiveTheirTokens() {
        HuggingFaceBpeTokenizer llama = ChatFormatTest.llama3Tokenizer(), chatml = HuggingFaceBpeTokenizer.fromBytes(
                ChatFormatTest.fixtureWith("<|im_start|>", "<|im_end|>"), null, "chatml fixture");
        check(new TemplateChat(LLAMA3, "llama3", llama, "<|begin_of_text|>", "<|eot_id|>", Set.of()), ChatFormat.LLAMA3.with(llama), 0);
        check(new TemplateChat(CHATML, "chatml", chatml, "", "<|im_end|>", Set.of()), ChatFormat.CHATML.with(chatml), chatml.encode("\n").length);
    }

    private static void check(TemplateChat t, ChatFormat.Template f, int trailing) {
        assertTrue(t.endsTurn(f.endOfTurnId()));
        for (List<Message> c : CONVERSATIONS) {
            Instructions.Example want = f.example(new Conversation(c)), got = t.example(new Conversation(c));
            assertArrayEquals(want.ids(), Arrays.copyOf(got.ids(), got.ids().length - trailing), c.toString());
            assertArrayEquals(want.scored(), got.scored(), c.toString());
            for (int i = 0; i < c.size(); i++)
                if (c.get(i).role() == Role.ASSISTANT) assertArrayEquals(f.prompt(c.subList(0, i)), t.prompt(c.subList(0, i)), c.subList(0, i).toString());
        }
    }

    /**
     * A template whose turn markers are text ([INST] … [/INST]) over a SentencePiece tokenizer: each answer is scored
     * with its </s>, the next [INST] not; roles out of order are the template's own error, naming where it came from.
     */
    @Test void mistralsTemplateScoresEachAnswerAndItsEos() throws IOException {
        SentencePieceTokenizer tok = SentencePieceTokenizer.fromBytes(dev.patchcore.data.SentencePieceTokenizerTest.resource("llama_bpe.model"));
        TemplateChat t = new TemplateChat(MISTRAL, "mistral", tok, "<s>", "</s>", Set.of());
        List<Message> c = List.of(m(Role.USER, "Hi there"), m(Role.ASSISTANT, "Hello, friend."), m(Role.USER, "Bye"), m(Role.ASSISTANT, "So long"));
        Instructions.Example e = t.example(new Conversation(c));
        int bos = tok.specialId("<s>"), eos = tok.specialId("</s>");
        assertEquals(bos, e.ids()[0]);
        assertEquals(4, e.scored().length);
        for (int s = 0; s < 4; s += 2) {
            int[] span = Arrays.copyOfRange(e.ids(), e.scored()[s], e.scored()[s + 1]);
            assertEquals(eos, span[span.length - 1], "an answer ends with its </s>");
            String text = tok.decode(Arrays.copyOf(span, span.length - 1));
            assertTrue(text.contains(s == 0 ? "Hello, friend." : "So long") && !text.contains("INST"), "'" + text + "'");
        }
        assertTrue(t.endsTurn(eos));
        var err = assertThrows(IllegalArgumentException.class, () -> t.prompt(List.of(m(Role.ASSISTANT, "x"))));
        assertEquals("mistral: Conversation roles must alternate user/assistant/user/assistant/...", err.getMessage());
    }

    /**
     * From a folder: chat_template.jinja before tokenizer_config.json's chat_template (a string or transformers' named
     * list), bos_token / eos_token (strings or AddedToken objects), generation_config.json's eos_token_id list; a folder
     * without a template is one clear error.
     */
    @Test void readsTheTemplateOfAFolder(@TempDir Path dir) throws IOException {
        Tokenizer tok = ChatFormatTest.llama3Tokenizer();
        var e = assertThrows(IllegalArgumentException.class, () -> TemplateChat.fromFolder(dir, tok));
        assertEquals(dir + " has no chat template (no chat_template.jinja, no chat_template in its tokenizer_config.json): give --chat "
                + "llama3|chatml instead", e.getMessage());
        Files.writeString(dir.resolve("tokenizer_config.json"), tokenizerConfig(LLAMA3, true));
        Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [3001, 3009]}");
        TemplateChat t = TemplateChat.fromFolder(dir, tok);
        List<Message> c = CONVERSATIONS.get(1);
        assertArrayEquals(ChatFormat.LLAMA3.with(tok).prompt(c.subList(0, 2)), t.prompt(c.subList(0, 2)));
        assertTrue(t.endsTurn(3009) && t.endsTurn(3001) && !t.endsTurn(3000));
        Files.writeString(dir.resolve("chat_template.jinja"), CHATML.replace("<|im_start|>", "<|start_header_id|>").replace("<|im_end|>", "<|eot_id|>"));
        assertTrue(TemplateChat.fromFolder(dir, tok).render(c.subList(0, 2), true).startsWith("<|start_header_id|>system\n Be brief. <|eot_id|>"),
                "chat_template.jinja first");
        Files.delete(dir.resolve("chat_template.jinja"));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": \"{% for m in messages %}{{ m.content | bogus }}{% endfor %}\"}");
        e = assertThrows(IllegalArgumentException.class, () -> TemplateChat.fromFolder(dir, tok));
        assertEquals(dir + ": chat template line 1, column 39: unknown filter 'bogus'", e.getMessage());
    }

    /**
     * generation_config.json's eos_token_id must be token ids (a whole number or a list of them): anything else (a null
     * in the list, a string, a fraction) is one clear error naming the file, not a crash or a guessed id.
     */
    @Test void aGenerationConfigWithOddStopIdsIsOneClearError(@TempDir Path dir) throws IOException {
        Tokenizer tok = ChatFormatTest.llama3Tokenizer();
        Files.writeString(dir.resolve("tokenizer_config.json"), tokenizerConfig(LLAMA3, false));
        for (String ids : new String[] {"[3009, null]", "\"3009\"", "3009.5", "[[3009]]", "{\"id\": 3009}"}) {
            Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": " + ids + "}");
            var e = assertThrows(IllegalArgumentException.class, () -> TemplateChat.fromFolder(dir, tok), ids);
            assertEquals(dir.resolve("generation_config.json") + ": eos_token_id must be a token id or a list of them, got "
                    + com.google.gson.JsonParser.parseString(ids), e.getMessage());
        }
        Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": null}");
        assertTrue(TemplateChat.fromFolder(dir, tok).endsTurn(ChatFormatTest.EOT), "no ids: the eos_token's");
    }

    /** tokenizer_config.json with {@code template} as its chat_template, as a string or in transformers' named list. */
    static String tokenizerConfig(String template, boolean named) {
        com.google.gson.JsonObject c = new com.google.gson.JsonObject();
        com.google.gson.JsonObject bos = new com.google.gson.JsonObject();
        bos.addProperty("content", "<|begin_of_text|>");
        c.add("bos_token", bos);
        c.addProperty("eos_token", "<|eot_id|>");
        if (named) {
            com.google.gson.JsonArray list = new com.google.gson.JsonArray();
            for (String name : new String[] {"tool_use", "default"}) {
                com.google.gson.JsonObject o = new com.google.gson.JsonObject();
                o.addProperty("name", name);
                o.addProperty("template", name.equals("default") ? template : "{{ raise_exception('not this one') }}");
                list.add(o);
            }
            c.add("chat_template", list);
        } else {
            c.addProperty("chat_template", template);
        }
        return c.toString();
    }

    /**
     * finetune --chat template on a folder whose tokenizer_config.json holds LLaMA-3's template: the checkpoints keep it
     * (chat_template.jinja) and record "template"; generate --chat template reads it back and stops at <|eot_id|>.
     */
    @Test void finetuneAndGenerateWithTheFoldersTemplate(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("chat.jsonl"), tuned = dir.resolve("tuned");
        ChatFormatTest.writeTheThenEndOfTurnModel(hf);
        Files.writeString(hf.resolve("tokenizer_config.json"), tokenizerConfig(LLAMA3, false));
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 4; i++)
            jsonl.append("{\"messages\": [{\"role\": \"user\", \"content\": \"Say ").append(i).append("\"}, {\"role\": \"assistant\", \"content\": \"")
                    .append(i).append("\"}]}\n");
        Files.writeString(data, jsonl.toString());
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--chat", "template", "--data", data.toString(),
                "--out", tuned.toString(), "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0"), console.err.toString());
        Path ckpt = Checkpoints.latest(tuned);
        // A record the template refuses (LLaMA-3's takes any role order; Mistral's does not) is named
        Path mistral = Files.createDirectories(dir.resolve("mistral"));
        for (String f : new String[] {HuggingFaceModel.CONFIG, "model.safetensors", "tokenizer.json"}) Files.copy(hf.resolve(f), mistral.resolve(f));
        Files.writeString(mistral.resolve("tokenizer_config.json"), tokenizerConfig(MISTRAL, false));
        Files.writeString(data, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n");
        console.err.reset();
        assertEquals(2, Main.run("finetune", mistral.toString(), "--backend", "cpu", "--chat", "template", "--data", data.toString(),
                "--out", dir.resolve("t2").toString()));
        assertEquals("error: " + data + " record 2: " + mistral + ": Conversation roles must alternate user/assistant/user/assistant/...",
                console.err.toString().strip());
        assertEquals("template", Checkpoints.readMeta(ckpt).chat());
        assertEquals(LLAMA3, Files.readString(ckpt.resolve(TemplateChat.TEMPLATE_FILE)));

        ChatFormatTest.writeTheThenEndOfTurnModel(hf);  // the untuned weights: " the", then the end of turn
        Files.writeString(hf.resolve("tokenizer_config.json"), tokenizerConfig(LLAMA3, false));
        console.out.reset();
        assertEquals(0, Main.run("generate", hf.toString(), "--backend", "cpu", "--chat", "template", "--prompt", "Say the", "--tokens", "10",
                "--temperature", "0"), console.err.toString());
        assertEquals("the\n", console.out.toString());
        assertTrue(console.err.toString().contains("1 token and the end of turn"), console.err.toString());

        // A conversation: the answer " the" renders back as "the" (LLaMA-3's template trims it), so the second turn does
        // not extend the tokens held and the conversation is read again whole: its prompt is the template's rendering
        console.out.reset();
        console.err.reset();
        java.io.InputStream stdin = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream("Again\n".getBytes(java.nio.charset.StandardCharsets.UTF_8)));
            assertEquals(0, Main.run("generate", hf.toString(), "--backend", "cpu", "--chat", "template", "--interactive", "--prompt", "Say",
                    "--tokens", "10", "--temperature", "0"), console.err.toString());
        } finally {
            System.setIn(stdin);
        }
        assertEquals("the\nthe\n", console.out.toString());
        TemplateChat t = TemplateChat.fromFolder(hf, ChatFormatTest.llama3Tokenizer());
        int whole = t.prompt(List.of(m(Role.USER, "Say"), m(Role.ASSISTANT, " the"), m(Role.USER, "Again"))).length;
        assertTrue(console.err.toString().contains("(reading " + whole + " prompt tokens)"), console.err.toString());
    }

    /**
     * The stops a folder's generation_config.json adds (original LLaMA-3-Instruct: eos_token <|end_of_text|>, eos_token_id
     * [<|end_of_text|>, <|eot_id|>]) stay with the fine-tuned checkpoint, whose --chat template must stop at <|eot_id|> too.
     */
    @Test void aFineTunedCheckpointKeepsTheGenerationStops(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("chat.jsonl"), tuned = dir.resolve("tuned");
        ChatFormatTest.writeTheThenEndOfTurnModel(hf);
        HuggingFaceBpeTokenizer tok = ChatFormatTest.llama3Tokenizer();
        int end = tok.specialId("<|end_of_text|>");
        assertTrue(end >= 0);
        Files.writeString(hf.resolve("tokenizer_config.json"), tokenizerConfig(LLAMA3, false).replace("<|eot_id|>", "<|end_of_text|>"));
        Files.writeString(hf.resolve("generation_config.json"), "{\"eos_token_id\": [" + end + ", " + ChatFormatTest.EOT + "]}");
        assertTrue(TemplateChat.fromFolder(hf, tok).endsTurn(ChatFormatTest.EOT));
        Files.writeString(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"Say\"}, {\"role\": \"assistant\", \"content\": \"the\"}]}\n"
                .repeat(2));
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--chat", "template", "--data", data.toString(),
                "--out", tuned.toString(), "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0"), console.err.toString());
        TemplateChat t = TemplateChat.fromFolder(Checkpoints.latest(tuned), tok);
        assertTrue(t.endsTurn(ChatFormatTest.EOT), "the fine-tuned checkpoint's template stops at <|eot_id|>");
        assertTrue(t.endsTurn(end));
    }

    /**
     * Special tokens marked rstrip / lstrip (Phi-3's <|end|> and <|assistant|>) take the white space after / before
     * them, as tokenizers 0.23.2 encodes the same text: ids [3002, 39, 72, 1070, 3003, 3002, 87, 3003] for
     * "<|user|>\nHi there  <|end|>\n<|user|> \u00a0x\t<|end|>" with <|user|> rstrip and <|end|> lstrip + rstrip.
     */
    @Test void specialTokensTakeTheWhiteSpaceTheirFlagsSay() {
        com.google.gson.JsonObject root = com.google.gson.JsonParser.parseString(new String(
                dev.patchcore.data.HuggingFaceBpeTokenizerTest.resource("tokenizer.json"), java.nio.charset.StandardCharsets.UTF_8)).getAsJsonObject();
        com.google.gson.JsonArray added = root.getAsJsonArray("added_tokens");
        for (String[] t : new String[][] {{"<|user|>", "false", "true"}, {"<|end|>", "true", "true"}}) {
            com.google.gson.JsonObject o = added.get(0).getAsJsonObject().deepCopy();
            o.addProperty("id", 3000 + added.size());
            o.addProperty("content", t[0]);
            o.addProperty("lstrip", Boolean.parseBoolean(t[1]));
            o.addProperty("rstrip", Boolean.parseBoolean(t[2]));
            added.add(o);
        }
        HuggingFaceBpeTokenizer tok = HuggingFaceBpeTokenizer.fromBytes(root.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8), null, "strip");
        TemplateChat t = new TemplateChat("{% for m in messages %}<|user|>\n{{ m.content }}<|end|>\n{% endfor %}", "strip", tok, "", "<|end|>", Set.of());
        assertArrayEquals(new int[] {3002, 39, 72, 1070, 3003, 3002, 87, 3003}, t.tokens("<|user|>\nHi there  <|end|>\n<|user|> \u00a0x\t<|end|>"));
        assertArrayEquals(new int[] {64, 3003, 65}, t.tokens("a <|end|>b"));
        assertTrue(tok.specialAbsorbsWhitespace("<|end|>", false) && !tok.specialAbsorbsWhitespace("<|user|>", false));
    }

    /**
     * A SentencePiece model (LLaMA-2 / Mistral: tokenizer.model, bos_token <s>) fine-tuned with its own template: the
     * checkpoint poses a conversation as the fine-tuning did, its template's bos_token still <s> (the configuration
     * patchcore writes for a tokenizer.model of its own makes the end of text the begin too).
     */
    @Test void aFineTunedSentencePieceCheckpointPosesConversationsAsTheFineTuningDid(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("chat.jsonl"), tuned = dir.resolve("tuned");
        SentencePieceTokenizer tok = writeSentencePieceFolder(hf);
        com.google.gson.JsonObject c = new com.google.gson.JsonObject();
        c.addProperty("bos_token", "<s>");
        c.addProperty("eos_token", "</s>");
        c.addProperty("chat_template", MISTRAL);
        Files.writeString(hf.resolve("tokenizer_config.json"), c.toString());
        Files.writeString(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"Say\"}, {\"role\": \"assistant\", \"content\": \"the\"}]}\n"
                .repeat(2));
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--chat", "template", "--data", data.toString(),
                "--out", tuned.toString(), "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0"), console.err.toString());
        List<Message> conversation = CONVERSATIONS.getFirst();
        TemplateChat before = TemplateChat.fromFolder(hf, tok), after = TemplateChat.fromFolder(Checkpoints.latest(tuned), tok);
        assertTrue(before.render(conversation, false).startsWith("<s>[INST] "), before.render(conversation, false));
        assertEquals(before.render(conversation, false), after.render(conversation, false));
        assertArrayEquals(before.prompt(conversation.subList(0, 1)), after.prompt(conversation.subList(0, 1)));
    }

    /**
     * A tokenizer.model folder whose tokenizer_config.json names no bos_token / eos_token renders LlamaTokenizer's
     * defaults, <s> and </s>, as transformers fills them in; an explicit null stays empty.
     */
    @Test void aSentencePieceFolderWithoutTokenNamesRendersLlamasDefaults(@TempDir Path dir) throws IOException {
        SentencePieceTokenizer tok = writeSentencePieceFolder(dir);
        List<Message> conversation = CONVERSATIONS.getFirst();
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": " + new com.google.gson.JsonPrimitive(MISTRAL) + "}");
        assertEquals("<s>[INST] Capital of France? [/INST]Paris.</s>", TemplateChat.fromFolder(dir, tok).render(conversation, false));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": null, \"eos_token\": \"</s>\", \"chat_template\": "
                + new com.google.gson.JsonPrimitive(MISTRAL) + "}");
        assertEquals("[INST] Capital of France? [/INST]Paris.</s>", TemplateChat.fromFolder(dir, tok).render(conversation, false));
    }

    /** A LLaMA-2-style Hugging Face folder: tokenizer.model (the 1000-piece test model), config.json with bos_token_id 1. */
    private static SentencePieceTokenizer writeSentencePieceFolder(Path hf) throws IOException {
        Files.move(dev.patchcore.data.SentencePieceFixture.model(hf), hf.resolve(SentencePieceTokenizer.FILE_NAME));
        SentencePieceTokenizer tok = SentencePieceTokenizer.load(hf.resolve(SentencePieceTokenizer.FILE_NAME));
        dev.patchcore.config.ModelConfig m = new dev.patchcore.config.ModelConfig("x", tok.vocabSize(), 32, 64, 1, 2, 64, 10000f, 1e-5f);
        HuggingFaceModelTest.write(hf.resolve("model.safetensors"), HuggingFaceModelTest.weights(m, "F32", 1));
        com.google.gson.JsonObject config = HuggingFaceModelTest.config(m);
        config.addProperty("bos_token_id", tok.specialId("<s>"));
        Files.writeString(hf.resolve(HuggingFaceModel.CONFIG), config.toString());
        return tok;
    }

    /**
     * Alpaca fine-tuning of a LLaMA-2-style folder (its tokenizer adds <s>, as Stanford Alpaca's script tokenizes): every
     * example starts with <s>, unscored, and the checkpoint records it, so generate and eval --bos put it first too and
     * the checkpoint's config tells transformers the same; fine-tuning that checkpoint again keeps it.
     */
    @Test void alpacaFineTuningOfAHuggingFaceModelKeepsItsBeginOfText(@TempDir Path dir) throws IOException {
        Path hf = Files.createDirectories(dir.resolve("hf")), data = dir.resolve("alpaca.json");
        SentencePieceTokenizer tok = writeSentencePieceFolder(hf);
        int bos = tok.specialId("<s>");
        assertEquals(1, bos);
        Instructions.Record r = new Instructions.Record("Say", " the");
        Instructions.Example plain = Instructions.encode(tok, r), withBos = Instructions.encode(tok, r, bos);
        assertEquals(bos, withBos.ids()[0]);
        assertArrayEquals(plain.ids(), Arrays.copyOfRange(withBos.ids(), 1, withBos.ids().length));
        assertEquals(plain.promptTokens() + 1, withBos.promptTokens(), "the begin of text is not scored");

        Files.writeString(data, "[{\"instruction\": \"Say\", \"input\": \"\", \"output\": \"the\"},"
                + " {\"instruction\": \"Say it\", \"input\": \"\", \"output\": \"the\"}]");
        Path tuned = dir.resolve("tuned"), again = dir.resolve("again");
        assertEquals(0, Main.run("finetune", hf.toString(), "--backend", "cpu", "--data", data.toString(), "--out", tuned.toString(),
                "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0", "--context", "160"), console.err.toString());
        Path ckpt = Checkpoints.latest(tuned);
        assertEquals(bos, Checkpoints.readMeta(ckpt).bos());
        assertEquals(bos, HuggingFaceModel.bosToPrepend(ckpt, Checkpoints.readMeta(ckpt), tok.vocabSize()));
        com.google.gson.JsonObject tc = com.google.gson.JsonParser.parseString(Files.readString(ckpt.resolve("tokenizer_config.json"))).getAsJsonObject();
        assertTrue(tc.get("add_bos_token").getAsBoolean(), tc.toString());
        assertEquals("<s>", tc.get("bos_token").getAsString());
        com.google.gson.JsonObject cfg = com.google.gson.JsonParser.parseString(Files.readString(ckpt.resolve("config.json"))).getAsJsonObject();
        assertEquals(bos, cfg.get("bos_token_id").getAsInt());
        assertEquals(tok.eosId(), cfg.get("eos_token_id").getAsInt());

        assertEquals(0, Main.run("finetune", ckpt.toString(), "--backend", "cpu", "--data", data.toString(), "--out", again.toString(),
                "--epochs", "1", "--batch", "2", "--accum", "1", "--val-fraction", "0"), console.err.toString());
        assertEquals(bos, Checkpoints.readMeta(Checkpoints.latest(again)).bos(), "a second fine-tuning keeps the begin of text");
        console.err.reset();
        assertEquals(0, Main.run("generate", ckpt.toString(), "--backend", "cpu", "--alpaca", "--prompt", "Say", "--tokens", "1",
                "--temperature", "0"), console.err.toString());
        int promptTokens = tok.encode(Instructions.alpacaPrompt("Say", null)).length + 1;
        assertTrue(console.err.toString().contains("(reading " + promptTokens + " prompt tokens)"), console.err.toString());
    }
}
