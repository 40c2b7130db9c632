package dev.patchcore.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Hugging Face tokenizer.json files. The ids expected here were written by Hugging Face's own {@code tokenizers} (the
 * Rust library, through its Node binding) for a small byte-level BPE (LLaMA-3's first 3000 tokens) under nine
 * pre-tokenizer / normalizer / model variants, on 151 texts: {@code tools/reference/hf-tokenizer/make_fixtures.js}.
 */
public class HuggingFaceBpeTokenizerTest {

    private static final JsonObject BASE = JsonParser.parseString(resourceText("tokenizer.json")).getAsJsonObject();

    @Test void encodesAndDecodesAsHuggingFaceTokenizersDoes() {
        JsonArray variants = JsonParser.parseString(resourceText("cases.json")).getAsJsonArray();
        assertEquals(9, variants.size());
        int checked = 0;
        for (JsonElement v : variants) {
            JsonObject variant = v.getAsJsonObject();
            String name = variant.get("name").getAsString();
            HuggingFaceBpeTokenizer tok = tokenizer(variant.get("tokenizer"), null, name);
            JsonArray prepended = variant.getAsJsonArray("prepended");
            assertEquals(prepended.isEmpty() ? -1 : prepended.get(0).getAsInt(), tok.bosId(), name + ": the post-processor's BOS");
            assertEquals(3001, tok.eosId(), name + ": <|end_of_text|>, found without a tokenizer_config.json");
            for (JsonElement c : variant.getAsJsonArray("cases")) {
                String text = c.getAsJsonObject().get("text").getAsString();
                int[] want = ints(c.getAsJsonObject().getAsJsonArray("ids"));
                String decoded = c.getAsJsonObject().get("decoded").getAsString();
                assertEquals(decoded, tok.decode(want), name + ": decode of " + quoted(text));
                int[] got = tok.encode(text);
                if (text.contains("<|end_of_text|>")) {  // tokenizers finds special tokens in text; patchcore never does
                    assertTrue(IntStream.of(got).noneMatch(id -> id == 3001), name + ": special-token text stays ordinary text");
                    String back = tok.decode(got);
                    assertEquals(text, name.contains("prefix-space") ? back.substring(1) : back, name);
                    continue;
                }
                assertArrayEquals(want, got, name + ": encode of " + quoted(text) + " = " + Arrays.toString(got));
                checked++;
            }
        }
        assertEquals(9 * 150, checked);
    }

    @Test void mergesSpelledAsStringsReadAsPairs() {
        JsonObject t = BASE.deepCopy();
        JsonArray strings = new JsonArray();
        for (JsonElement m : t.getAsJsonObject("model").getAsJsonArray("merges"))
            strings.add(m.getAsJsonArray().get(0).getAsString() + " " + m.getAsJsonArray().get(1).getAsString());
        t.getAsJsonObject("model").add("merges", strings);
        HuggingFaceBpeTokenizer pairs = tokenizer(null, null, "pairs"), spelled = of(t, null);
        for (String s : List.of("Hello world", "tokenizers 12345 ÿ 中文 😀", "  \n\n x"))
            assertArrayEquals(pairs.encode(s), spelled.encode(s), s);
        assertEquals(pairs.name(), tokenizer(null, null, "again").name(), "the name is the file's");
    }

    /**
     * An unpaired surrogate (a broken JSON escape) is U+FFFD, as the SentencePiece tokenizer reads it, not the '?'
     * Java's encoder would write (a real character, tokenized as one); a surrogate pair stays its one character.
     */
    @Test void anUnpairedSurrogateEncodesAsTheReplacementCharacter() {
        HuggingFaceBpeTokenizer tok = tokenizer(null, null, "t");
        String[][] cases = {{"a\uD83Eb", "a\uFFFDb"}, {"a \uDE00 b", "a \uFFFD b"}, {"end\uD83E", "end\uFFFD"},
                {"\uDE00\uD83E", "\uFFFD\uFFFD"}};
        for (String[] c : cases) {
            assertArrayEquals(tok.encode(c[1]), tok.encode(c[0]), quoted(c[0]));
            assertEquals(c[1], tok.decode(tok.encode(c[0])), quoted(c[0]));
        }
        assertFalse(Arrays.equals(tok.encode("a?b"), tok.encode("a\uD83Eb")), "not the '?' of String.getBytes");
        assertEquals("a\uD83E\uDD16b", tok.decode(tok.encode("a\uD83E\uDD16b")), "a pair is its character");
    }

    /** cl100k_base and o200k_base written as tokenizer.json (for checkpoints) read back with JTokkit's ids. */
    @Test void tiktokenEncodingsReadBackFromTheirTokenizerJson() throws IOException {
        String text = String.join("\n\n", BundledCorpus.documents().subList(0, 40)) + " 'S 'LL ﬁ Ⅻ ١٢٣ \u00a0\u3000 x\r\n\r\n  y 😀👍🏽 <|endoftext|>";
        for (String name : List.of("cl100k_base", "o200k_base")) {
            Tokenizer tiktoken = Tokenizers.byName(name);
            HuggingFaceBpeTokenizer hf = HuggingFaceBpeTokenizer.fromBytes(
                    HuggingFaceTokenizerFiles.tiktokenJson(name, tiktoken.eosId()), null, name);
            assertEquals(tiktoken.vocabSize(), hf.vocabSize(), name);
            assertEquals(tiktoken.eosId(), hf.eosId(), name);
            int[] want = tiktoken.encode(text);
            assertArrayEquals(want, hf.encode(text), name);
            assertEquals(tiktoken.decode(want), hf.decode(want), name);
            // Recognized as the built-in encoding, also as written before the other special tokens were listed.
            assertEquals(name, hf.tiktokenEquivalent());
            JsonObject older = JsonParser.parseString(new String(HuggingFaceTokenizerFiles.tiktokenJson(name, tiktoken.eosId()),
                    StandardCharsets.UTF_8)).getAsJsonObject();
            JsonArray endOfText = new JsonArray();
            endOfText.add(older.getAsJsonArray("added_tokens").get(0));
            older.add("added_tokens", endOfText);
            assertEquals(name, of(older, null).tiktokenEquivalent());
            JsonObject chat = older.deepCopy();
            chat.getAsJsonArray("added_tokens").add(JsonParser.parseString("{\"id\": " + (tiktoken.eosId() + 7)
                    + ", \"content\": \"<|im_start|>\", \"special\": false}"));
            assertNull(of(chat, null).tiktokenEquivalent(), "an added token it finds in text: not the built-in encoding");
            older.getAsJsonObject("model").add("ignore_merges", new com.google.gson.JsonPrimitive(false));
            assertNull(of(older, null).tiktokenEquivalent(), "another algorithm");
        }
        assertNull(tokenizer(null, null, "small").tiktokenEquivalent());
    }

    @Test void theEndOfTextComesFromTokenizerConfig() {
        byte[] asString = "{\"eos_token\": \"<|begin_of_text|>\"}".getBytes(StandardCharsets.UTF_8);
        byte[] asObject = "{\"eos_token\": {\"content\": \"ĠĠ\", \"__type\": \"AddedToken\"}}".getBytes(StandardCharsets.UTF_8);
        HuggingFaceBpeTokenizer plain = tokenizer(null, null, "plain"), bos = tokenizer(null, asString, "bos");
        assertEquals(3000, bos.eosId());
        assertEquals(256, tokenizer(null, asObject, "object").eosId(), "a vocabulary token may end the text too");
        assertNotEquals(plain.name(), bos.name(), "the end-of-text id is part of the name");
        assertEquals(plain.name(), tokenizer(null, "{}".getBytes(StandardCharsets.UTF_8), "empty").name());
        assertTrue(plain.name().matches("hf-bpe-[0-9a-f]{16}"), plain.name());
        String unknown = assertThrows(IllegalArgumentException.class, () -> tokenizer(null,
                "{\"eos_token\": \"<|eot_id|>\"}".getBytes(StandardCharsets.UTF_8), "t")).getMessage();
        assertEquals("t's tokenizer_config.json names eos_token \"<|eot_id|>\", which is not a token of the tokenizer", unknown);
        JsonObject none = BASE.deepCopy();
        none.add("added_tokens", new JsonArray());
        String missing = assertThrows(IllegalArgumentException.class, () -> of(none, null)).getMessage();
        assertTrue(missing.startsWith("t names no end-of-text token: put its tokenizer_config.json"), missing);
    }

    @Test void loadReadsTheConfigBesideTokenizerJsonOnly(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        byte[] json = resource("tokenizer.json");
        Files.write(dir.resolve("tokenizer.json"), json);
        Files.write(dir.resolve("other.json"), json);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|begin_of_text|>\"}");
        HuggingFaceBpeTokenizer beside = HuggingFaceBpeTokenizer.load(dir.resolve("tokenizer.json"));
        assertEquals(3000, beside.eosId());
        assertTrue(beside.hasConfig());
        assertEquals(List.of("tokenizer.json", "tokenizer_config.json"), beside.files().keySet().stream().sorted().toList());
        HuggingFaceBpeTokenizer other = HuggingFaceBpeTokenizer.load(dir.resolve("other.json"));
        assertEquals(3001, other.eosId());
        assertFalse(other.hasConfig());
        assertArrayEquals(json, other.files().get("tokenizer.json"));
    }

    @Test void idsOutsideTheVocabularyAreRefusedAndHolesDecodeToReplacement() {
        JsonObject holes = BASE.deepCopy();
        holes.getAsJsonArray("added_tokens").get(1).getAsJsonObject().addProperty("id", 3005);
        HuggingFaceBpeTokenizer t = of(holes, null);
        assertEquals(3006, t.vocabSize());
        assertEquals(3005, t.eosId());
        assertEquals("<|end_of_text|>", t.token(3005));
        assertEquals("<|end_of_text|>", t.decode(new int[] {3005}));
        assertNull(t.token(3003));
        assertEquals("\uFFFD", t.decode(new int[] {3003}));
        assertEquals("\u0120\u0120", t.token(256), "as the file spells it");
        assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {3006}));
        assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {-1}));
        assertEquals("\uFFFD", t.decode(new int[] {t.encode("\uD83D\uDE00")[0]}), "a quarter of a character");
    }

    @Test void whatIsNotReadIsRefusedInOneLine() {
        List<String> messages = new ArrayList<>();
        messages.add(refusal(t -> t.getAsJsonObject("model").addProperty("type", "WordPiece")));
        messages.add(refusal(t -> t.getAsJsonObject("model").addProperty("byte_fallback", true)));
        messages.add(refusal(t -> t.getAsJsonObject("model").addProperty("dropout", 0.1)));
        messages.add(refusal(t -> t.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Metaspace\", \"replacement\": \"▁\"}"))));
        messages.add(refusal(t -> t.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Digits\", \"individual_digits\": true}"))));
        messages.add(refusal(t -> t.add("normalizer", JsonParser.parseString("{\"type\": \"Prepend\", \"prepend\": \"▁\"}"))));
        messages.add(refusal(t -> t.getAsJsonObject("pre_tokenizer").getAsJsonArray("pretokenizers").get(0).getAsJsonObject()
                .addProperty("behavior", "Contiguous")));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonObject("vocab").remove("Ā")));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonArray("merges").add(JsonParser.parseString("[\"x\", \"yz\"]"))));
        List<String> expected = List.of(
                "t has a WordPiece model; patchcore reads byte-level BPE tokenizer.json files (for a SentencePiece model, give its tokenizer.model)",
                "t is a BPE with byte fallback (LLaMA-2 style); give the model's SentencePiece tokenizer.model instead",
                "t has BPE dropout 0.1; only deterministic BPE is supported",
                "t has a Metaspace pre-tokenizer, which is not supported (ByteLevel, Split, Digits and Sequence are)",
                "t has no ByteLevel pre-tokenizer; patchcore reads byte-level BPE tokenizers only (for a SentencePiece model, give its tokenizer.model)",
                "t has a Prepend normalizer, which is not supported (NFC, NFD, NFKC, NFKD, Lowercase and Sequence are; a Prepend/Replace "
                        + "normalizer means a SentencePiece-style tokenizer: give its tokenizer.model)",
                "t has a Split pre-tokenizer with behavior Contiguous (Isolated and Removed are supported)",
                "t has no token for byte 0 (\"Ā\"): it is not a byte-level BPE",
                "t merge 4438 (\"x yz\") names a token not in its vocab");
        assertEquals(expected, messages);
        String notJson = assertThrows(IllegalArgumentException.class,
                () -> HuggingFaceBpeTokenizer.fromBytes("{\"model\": ".getBytes(StandardCharsets.UTF_8), null, "t")).getMessage();
        assertTrue(notJson.startsWith("t is not valid JSON ("), notJson);
        assertFalse(notJson.contains("\n"), notJson);
    }

    /** Malformed files (wrong JSON types in the places a reader looks) are refused in one line too, never a crash. */
    @Test void malformedFilesAreRefusedInOneLine() {
        List<String> messages = new ArrayList<>();
        messages.add(refusal(t -> t.getAsJsonObject("post_processor").getAsJsonArray("processors").get(1).getAsJsonObject()
                .getAsJsonObject("special_tokens").addProperty("<|begin_of_text|>", 3000)));
        messages.add(refusal(t -> t.getAsJsonObject("post_processor").getAsJsonArray("processors").get(1).getAsJsonObject()
                .getAsJsonArray("single").set(0, JsonParser.parseString("{\"SpecialToken\": \"x\"}"))));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonArray("merges").set(3, JsonParser.parseString("[null, \"a\"]"))));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonArray("merges").set(3, JsonParser.parseString("[{\"x\": 1}, \"a\"]"))));
        messages.add(refusal(t -> t.getAsJsonObject("model").addProperty("dropout", "x")));
        messages.add(refusal(t -> t.getAsJsonArray("added_tokens").get(1).getAsJsonObject().addProperty("id", 900_000_000)));
        messages.add(assertThrows(IllegalArgumentException.class, () -> of(BASE, "{\"eos_token\": 5}".getBytes(StandardCharsets.UTF_8)))
                .getMessage());
        List<String> expected = List.of(
                "t's post-processor has a \"<|begin_of_text|>\" that is not an object",
                "t's post-processor has a \"SpecialToken\" that is not an object",
                "t has a merge that is not two tokens: [null,\"a\"]",
                "t has a merge that is not two tokens: [{\"x\":1},\"a\"]",
                "t has BPE dropout \"x\"; only deterministic BPE is supported",
                "t has token id 900000000, not a whole number below 2^24 (the largest vocabulary patchcore trains)",
                "t's tokenizer_config.json has an eos_token that is neither a string nor an object with its content: 5");
        assertEquals(expected, messages);
    }

    private static String refusal(java.util.function.Consumer<JsonObject> change) {
        JsonObject t = BASE.deepCopy();
        change.accept(t);
        return assertThrows(IllegalArgumentException.class, () -> of(t, null)).getMessage();
    }

    /** The fixture with a variant's top-level fields over it ({@code model} fields one by one; null removes one). */
    private static HuggingFaceBpeTokenizer tokenizer(JsonElement variant, byte[] config, String where) {
        JsonObject t = BASE.deepCopy();
        if (variant != null && variant.isJsonObject()) {
            for (var e : variant.getAsJsonObject().entrySet()) {
                if (!e.getKey().equals("model")) {
                    t.add(e.getKey(), e.getValue());
                    continue;
                }
                for (var m : e.getValue().getAsJsonObject().entrySet()) {
                    if (m.getValue().isJsonNull()) t.getAsJsonObject("model").remove(m.getKey());
                    else t.getAsJsonObject("model").add(m.getKey(), m.getValue());
                }
            }
        }
        return HuggingFaceBpeTokenizer.fromBytes(t.toString().getBytes(StandardCharsets.UTF_8), config, where);
    }

    private static HuggingFaceBpeTokenizer of(JsonObject t, byte[] config) {
        return HuggingFaceBpeTokenizer.fromBytes(t.toString().getBytes(StandardCharsets.UTF_8), config, "t");
    }

    private static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).getAsInt();
        return out;
    }

    private static String quoted(String s) {
        return '"' + s.replace("\n", "\\n").replace("\r", "\\r") + '"';
    }

    public static byte[] resource(String name) {
        try (InputStream in = HuggingFaceBpeTokenizerTest.class.getResourceAsStream("/hf-tokenizer/" + name)) {
            if (in == null) throw new IllegalStateException("test resource hf-tokenizer/" + name + " is missing");
            return in.readAllBytes();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static String resourceText(String name) {
        return new String(resource(name), StandardCharsets.UTF_8);
    }
}
