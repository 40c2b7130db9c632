package dev.patchcore.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import it.unimi.dsi.fastutil.ints.IntArrayList;
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

    private static final JsonObject SP_BASE = JsonParser.parseString(resourceText("spbpe-tokenizer.json")).getAsJsonObject();

    /**
     * SentencePiece-style (LLaMA-2, Mistral) tokenizer.json files: the test model llama_bpe.model converted as
     * transformers' LlamaConverter does, in LLaMA-2's layout (Prepend/Replace normalizer) and the newer one (Metaspace
     * pre-tokenizer) and their variants, against the ids and decodings of Hugging Face's tokenizers
     * ({@code tools/reference/hf-tokenizer/make_spbpe_fixtures.js}).
     */
    @Test void sentencePieceStyleFilesEncodeAndDecodeAsHuggingFaceTokenizersDoes() {
        JsonArray variants = JsonParser.parseString(resourceText("spbpe-cases.json")).getAsJsonArray();
        assertEquals(10, variants.size());
        int checked = 0, decodes = 0;
        for (JsonElement v : variants) {
            JsonObject variant = v.getAsJsonObject();
            String name = variant.get("name").getAsString();
            HuggingFaceBpeTokenizer tok = spVariant(variant, name);
            assertEquals(1, tok.bosId(), name + ": <s>, from the post-processor");
            assertEquals(ints(variant.getAsJsonArray("prepended"))[0], tok.bosId(), name);
            assertEquals(2, tok.eosId(), name + ": </s>");
            assertEquals(name.contains("added-words") ? 1002 : 1000, tok.vocabSize(), name);
            for (JsonElement c : variant.getAsJsonArray("cases")) {
                String text = c.getAsJsonObject().get("text").getAsString();
                int[] want = ints(c.getAsJsonObject().getAsJsonArray("ids"));
                assertEquals(c.getAsJsonObject().get("decoded").getAsString(), tok.decode(want), name + ": decode of " + quoted(text));
                int[] got = tok.encode(text);
                if (text.matches("(?s).*(<s>|</s>|<unk>).*")) {  // tokenizers finds special tokens in text; patchcore never does
                    assertTrue(IntStream.of(got).noneMatch(id -> id == 1 || id == 2 || id == 0 && !name.contains("unk")),
                            name + ": special-token text stays ordinary text: " + Arrays.toString(got));
                    if (name.equals("legacy")) assertEquals(text, tok.decode(got), name);
                    continue;
                }
                assertArrayEquals(want, got, name + ": encode of " + quoted(text) + " = " + Arrays.toString(got));
                checked++;
            }
            // Token sequences drawn at random: decoded as tokenizers does, except where a run of byte tokens is not
            // UTF-8 (there each malformed byte is one U+FFFD, tokenizers makes the whole run U+FFFD: see HuggingFaceDecoder)
            // and for ids no token has (U+FFFD, as the Tokenizer contract says; tokenizers leaves them out).
            for (JsonElement c : variant.getAsJsonArray("decodes")) {
                int[] ids = ints(c.getAsJsonObject().getAsJsonArray("ids"));
                if (!byteRunsAreUtf8(tok, ids) || IntStream.of(ids).anyMatch(id -> tok.token(id) == null)) continue;
                assertEquals(c.getAsJsonObject().get("decoded").getAsString(), tok.decode(ids), name + ": decode of " + Arrays.toString(ids));
                decodes++;
            }
        }
        assertEquals(10 * 145, checked);
        assertEquals(316, decodes, "decodes checked (the others hold malformed byte runs or ids without a token)");
    }

    /**
     * LLaMA-2's layout of tokenizer.json is what transformers converts a LLaMA tokenizer.model to: read here, it gives
     * the SentencePiece reader's ids for the model itself (each checked against the sentencepiece library) on the
     * fixture's texts and the bundled corpus, and decodes them to the same text.
     */
    @Test void aLlamaTokenizerJsonEncodesAsItsTokenizerModel() throws IOException {
        SentencePieceTokenizer model = SentencePieceTokenizer.fromBytes(SentencePieceTokenizerTest.resource("llama_bpe.model"));
        HuggingFaceBpeTokenizer json = HuggingFaceBpeTokenizer.fromBytes(resource("spbpe-tokenizer.json"), null, "legacy");
        List<String> texts = new ArrayList<>();
        for (JsonElement c : JsonParser.parseString(resourceText("spbpe-cases.json")).getAsJsonArray().get(0).getAsJsonObject()
                .getAsJsonArray("cases")) texts.add(c.getAsJsonObject().get("text").getAsString());
        texts.addAll(BundledCorpus.documents().subList(0, 300));
        int tokens = 0;
        for (String text : texts) {
            int[] want = model.encode(text);
            assertArrayEquals(want, json.encode(text), quoted(text));
            if (!text.matches("(?s).*(<s>|</s>|<unk>).*")) assertEquals(model.decode(want), json.decode(want), quoted(text));
            tokens += want.length;
        }
        assertTrue(tokens > 100_000, tokens + " tokens");
    }

    /**
     * Text after a special token (a chat template puts it in by id, then encodes the text after it alone): tokenizers,
     * given the whole, puts Metaspace's "first" "▁" before the text at the start only, LLaMA-2's Prepend normalizer before
     * every stretch. {@code encode(text, false)} gives the ids of the stretches after the first.
     */
    @Test void textAfterASpecialTokenEncodesAsInTheWhole() {
        JsonArray variants = JsonParser.parseString(resourceText("spbpe-cases.json")).getAsJsonArray();
        String text = "<s> and </s> and <unk> are ordinary text";
        for (JsonElement v : variants) {
            String name = v.getAsJsonObject().get("name").getAsString();
            if (name.contains("unk")) continue;
            HuggingFaceBpeTokenizer tok = spVariant(v.getAsJsonObject(), name);
            int[] want = null;
            for (JsonElement c : v.getAsJsonObject().getAsJsonArray("cases"))
                if (c.getAsJsonObject().get("text").getAsString().equals(text)) want = ints(c.getAsJsonObject().getAsJsonArray("ids"));
            IntArrayList got = new IntArrayList();
            got.add(1);
            got.addElements(got.size(), tok.encode(" and ", false));
            got.add(2);
            got.addElements(got.size(), tok.encode(" and ", false));
            got.add(0);
            got.addElements(got.size(), tok.encode(" are ordinary text", false));
            assertArrayEquals(want, got.toIntArray(), name);
        }
        HuggingFaceBpeTokenizer first = spVariant(variants.get(1).getAsJsonObject(), "metaspace-first");
        assertFalse(Arrays.equals(first.encode("and", false), first.encode("and")), "\"first\" puts \u2581 before the start only");
    }

    /** A character cut short in byte tokens (as while generating) decodes to U+FFFD per byte after what is whole. */
    @Test void partialCharactersDecodeAsTheTextStreamExpects() {
        HuggingFaceBpeTokenizer tok = HuggingFaceBpeTokenizer.fromBytes(resource("spbpe-tokenizer.json"), null, "legacy");
        int[] ids = tok.encode("x\u4e2d\u6587");
        assertEquals("x\u4e2d\u6587", tok.decode(ids));
        int k = ids.length - 6;  // "x" as the model spells it, then the six bytes of the two characters
        assertEquals("<0xE4>", tok.token(ids[k]));
        String[] bytes = {"", "\uFFFD", "\uFFFD\uFFFD", "\u4e2d", "\u4e2d\uFFFD", "\u4e2d\uFFFD\uFFFD", "\u4e2d\u6587"};
        for (int n = 0; n <= 6; n++)  // tokenizers gives "x" and four U+FFFD for four bytes: a character taken back
            assertEquals("x" + bytes[n], tok.decode(Arrays.copyOf(ids, k + n)), n + " bytes");
        int[] withSpecials = IntStream.concat(IntStream.concat(IntStream.of(1), IntStream.of(ids)), IntStream.of(2)).toArray();
        assertEquals("<s> x\u4e2d\u6587</s>", tok.decode(withSpecials), "special tokens as their text, as tokenizers decodes them");
    }

    /** The SentencePiece-style fixture under a variant of spbpe-cases.json. */
    private static HuggingFaceBpeTokenizer spVariant(JsonObject variant, String where) {
        return HuggingFaceBpeTokenizer.fromBytes(apply(SP_BASE, variant.get("tokenizer")).toString().getBytes(StandardCharsets.UTF_8), null, where);
    }

    private static boolean byteRunsAreUtf8(HuggingFaceBpeTokenizer tok, int[] ids) {
        java.io.ByteArrayOutputStream run = new java.io.ByteArrayOutputStream();
        for (int i = 0; i <= ids.length; i++) {
            String t = i < ids.length ? tok.token(ids[i]) : null;
            if (t != null && t.matches("<0x[0-9A-F]{2}>")) {
                run.write(Integer.parseInt(t.substring(3, 5), 16));
                continue;
            }
            try {
                StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(run.toByteArray()));
            } catch (java.nio.charset.CharacterCodingException e) {
                return false;
            }
            run.reset();
        }
        return true;
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
        messages.add(refusal(t -> t.getAsJsonObject("pre_tokenizer").getAsJsonArray("pretokenizers")
                .add(JsonParser.parseString("{\"type\": \"Metaspace\", \"replacement\": \"\u2581\"}"))));
        messages.add(refusal(t -> t.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Digits\", \"individual_digits\": true}"))));
        messages.add(refusal(t -> t.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Whitespace\"}"))));
        messages.add(refusal(t -> t.add("normalizer", JsonParser.parseString("{\"type\": \"BertNormalizer\"}"))));
        messages.add(refusal(t -> t.getAsJsonObject("pre_tokenizer").getAsJsonArray("pretokenizers").get(0).getAsJsonObject()
                .addProperty("behavior", "Contiguous")));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonObject("vocab").remove("Ā")));
        messages.add(refusal(t -> t.getAsJsonObject("model").getAsJsonArray("merges").add(JsonParser.parseString("[\"x\", \"yz\"]"))));
        List<String> expected = List.of(
                "t has a WordPiece model; patchcore reads BPE tokenizer.json files, byte-level or SentencePiece-style with byte fallback "
                        + "(for a SentencePiece model, give its tokenizer.model)",
                "t has a ByteLevel pre-tokenizer and a BPE with byte fallback, which do not go together; it is not supported",
                "t has BPE dropout 0.1; only deterministic BPE is supported",
                "t has both a ByteLevel and a Metaspace pre-tokenizer; it is not supported",
                "t has no ByteLevel pre-tokenizer and no byte fallback; patchcore reads byte-level BPE and SentencePiece-style BPE with "
                        + "byte_fallback (for a SentencePiece model, give its tokenizer.model)",
                "t has a Whitespace pre-tokenizer, which is not supported (ByteLevel, Metaspace, Split, Digits and Sequence are)",
                "t has a BertNormalizer normalizer, which is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace and Sequence are)",
                "t has a Split pre-tokenizer with behavior Contiguous (Isolated and Removed are supported)",
                "t has no token for byte 0 (\"\u0100\"): it is not a byte-level BPE",
                "t merge 4438 (\"x yz\") names a token not in its vocab");
        assertEquals(expected, messages);
        String notJson = assertThrows(IllegalArgumentException.class,
                () -> HuggingFaceBpeTokenizer.fromBytes("{\"model\": ".getBytes(StandardCharsets.UTF_8), null, "t")).getMessage();
        assertTrue(notJson.startsWith("t is not valid JSON ("), notJson);
        assertFalse(notJson.contains("\n"), notJson);
        // A binary file (a SentencePiece model named .json): where it fails, without Gson's advice to its programmer
        String binary = assertThrows(IllegalArgumentException.class,
                () -> HuggingFaceBpeTokenizer.fromBytes(new byte[] {0x0a, 0x0b, 0x0a, 0x05, 0x3c}, null, "t")).getMessage();
        assertTrue(binary.startsWith("t is not valid JSON (") && !binary.contains("JsonReader"), binary);
    }

    /** What a SentencePiece-style file may hold that is not read: one line naming the file, as for byte-level ones. */
    @Test void sentencePieceStyleFilesAreRefusedInOneLineWhereNotRead() {
        String metaspace = "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"first\", \"split\": false}";
        List<String> messages = new ArrayList<>();
        messages.add(refusal(SP_BASE, t -> t.getAsJsonObject("model").addProperty("type", "Unigram")));
        messages.add(refusal(SP_BASE, t -> t.getAsJsonObject("model").addProperty("byte_fallback", false)));
        messages.add(refusal(SP_BASE, t -> t.getAsJsonObject("model").addProperty("unk_token", "<oov>")));
        messages.add(refusal(SP_BASE, t -> t.add("decoder", JsonParser.parseString("{\"type\": \"WordPiece\", \"prefix\": \"##\"}"))));
        messages.add(refusal(SP_BASE, t -> t.add("decoder", JsonParser.parseString("{\"type\": \"ByteLevel\"}"))));
        messages.add(refusal(SP_BASE, t -> t.add("pre_tokenizer", JsonParser.parseString(metaspace.replace("\u2581\"", "__\"")))));
        messages.add(refusal(SP_BASE, t -> t.add("pre_tokenizer", JsonParser.parseString(metaspace.replace("first", "sometimes")))));
        messages.add(refusal(SP_BASE, t -> t.add("pre_tokenizer",
                JsonParser.parseString("{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"add_prefix_space\": false}"))));
        messages.add(refusal(SP_BASE, t -> t.add("pre_tokenizer", JsonParser.parseString(metaspace.replace("false}", "\"no\"}")))));
        List<String> expected = List.of(
                "t has a Unigram model; patchcore reads BPE tokenizer.json files, byte-level or SentencePiece-style with byte fallback "
                        + "(for a SentencePiece model, give its tokenizer.model)",
                "t has no ByteLevel pre-tokenizer and no byte fallback; patchcore reads byte-level BPE and SentencePiece-style BPE with "
                        + "byte_fallback (for a SentencePiece model, give its tokenizer.model)",
                "t names unk_token \"<oov>\", which is not in its vocab",
                "t has a WordPiece decoder, which is not supported with a SentencePiece-style BPE (Replace, ByteFallback, Fuse, Strip, "
                        + "Metaspace and Sequence are)",
                "t has a ByteLevel decoder, which is not supported with a SentencePiece-style BPE (Replace, ByteFallback, Fuse, Strip, "
                        + "Metaspace and Sequence are)",
                "t has a Metaspace whose replacement is not one character",
                "t has a Metaspace with prepend_scheme \"sometimes\" (always, first and never are read)",
                "t has a Metaspace with add_prefix_space false and no prepend_scheme, which tokenizers refuses too",
                "t has a \"split\" that is not true or false");
        assertEquals(expected, messages);
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
        messages.add(refusal(SP_BASE, t -> t.getAsJsonObject("normalizer").getAsJsonArray("normalizers").get(1).getAsJsonObject()
                .getAsJsonObject("pattern").add("String", com.google.gson.JsonNull.INSTANCE)));
        List<String> expected = List.of(
                "t's post-processor has a \"<|begin_of_text|>\" that is not an object",
                "t's post-processor has a \"SpecialToken\" that is not an object",
                "t has a merge that is not two tokens: [null,\"a\"]",
                "t has a merge that is not two tokens: [{\"x\":1},\"a\"]",
                "t has BPE dropout \"x\"; only deterministic BPE is supported",
                "t has token id 900000000, not a whole number below 2^24 (the largest vocabulary patchcore trains)",
                "t's tokenizer_config.json has an eos_token that is neither a string nor an object with its content: 5",
                "t has a Replace normalizer pattern that is neither Regex nor String");
        assertEquals(expected, messages);
    }

    private static String refusal(java.util.function.Consumer<JsonObject> change) {
        return refusal(BASE, change);
    }

    private static String refusal(JsonObject base, java.util.function.Consumer<JsonObject> change) {
        JsonObject t = base.deepCopy();
        change.accept(t);
        return assertThrows(IllegalArgumentException.class, () -> of(t, null)).getMessage();
    }

    /** The fixture with a variant's top-level fields over it ({@code model} fields one by one; null removes one). */
    private static HuggingFaceBpeTokenizer tokenizer(JsonElement variant, byte[] config, String where) {
        return HuggingFaceBpeTokenizer.fromBytes(apply(BASE, variant).toString().getBytes(StandardCharsets.UTF_8), config, where);
    }

    /**
     * {@code base} with a variant's top-level fields over it ({@code model} fields one by one; null removes one,
     * {@code remove_vocab} lists tokens taken out of the vocabulary).
     */
    private static JsonObject apply(JsonObject base, JsonElement variant) {
        JsonObject t = base.deepCopy();
        if (variant != null && variant.isJsonObject()) {
            for (var e : variant.getAsJsonObject().entrySet()) {
                if (!e.getKey().equals("model")) {
                    t.add(e.getKey(), e.getValue());
                    continue;
                }
                JsonObject model = t.getAsJsonObject("model");
                for (var m : e.getValue().getAsJsonObject().entrySet()) {
                    if (m.getKey().equals("remove_vocab")) m.getValue().getAsJsonArray().forEach(r -> model.getAsJsonObject("vocab").remove(r.getAsString()));
                    else if (m.getValue().isJsonNull()) model.remove(m.getKey());
                    else model.add(m.getKey(), m.getValue());
                }
            }
        }
        return t;
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
