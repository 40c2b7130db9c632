package dev.patchcore.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TokenizerTest {

    private static final String SAMPLE = "Hello, world! Ünïcödé → 日本語 and emoji 🙂.\nSecond line\ttab.";

    @Test
    void byteTokenizerIdsAreUtf8Bytes() {
        Tokenizer t = Tokenizers.byName("byte");
        assertEquals("byte", t.name());
        assertEquals(257, t.vocabSize());
        assertEquals(256, t.eosId());
        assertArrayEquals(new int[]{65, 0xC3, 0xA9}, t.encode("Aé"));
        byte[] utf8 = SAMPLE.getBytes(StandardCharsets.UTF_8);
        int[] ids = t.encode(SAMPLE);
        assertEquals(utf8.length, ids.length);
        for (int i = 0; i < ids.length; i++) assertEquals(utf8[i] & 0xFF, ids[i]);
        assertEquals(SAMPLE, t.decode(ids));
    }

    @Test
    void byteTokenizerDecodesEosInPlaceAndRejectsOutOfRangeIds() {
        Tokenizer t = Tokenizers.byName("byte");
        assertEquals("ab<|endoftext|>c", t.decode(new int[]{97, 98, 256, 99}));
        // A multi-byte character cut in half decodes to U+FFFD rather than failing.
        assertEquals("\uFFFD", t.decode(new int[]{0xE6}));
        var e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[]{257}));
        assertTrue(e.getMessage().contains("257"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> t.decode(new int[]{-1}));
    }

    @Test
    void r50kKnownIdsAndRoundTrip() {
        Tokenizer t = Tokenizers.byName("r50k_base");
        assertSame(t, Tokenizers.byName("gpt2"));
        assertSame(t, Tokenizers.byName(" GPT2 "));
        assertEquals("r50k_base", t.name());
        assertArrayEquals(new int[]{15496, 995}, t.encode("Hello world"));
        assertEquals(SAMPLE, t.decode(t.encode(SAMPLE)));
        assertEquals(50_257, t.vocabSize());
        assertEquals(50_256, t.eosId());
    }

    @Test
    void cl100kAndO200kKnownIdsAndRoundTrip() {
        Tokenizer cl = Tokenizers.byName("cl100k_base");
        assertArrayEquals(new int[]{9906, 1917}, cl.encode("Hello world"));
        assertEquals(SAMPLE, cl.decode(cl.encode(SAMPLE)));
        Tokenizer o = Tokenizers.byName("o200k_base");
        assertArrayEquals(new int[]{13225, 2375}, o.encode("Hello world"));
        assertEquals(SAMPLE, o.decode(o.encode(SAMPLE)));
    }

    @Test
    void vocabSizeCoversSpecialTokensAndNothingMore() {
        // The last id of each id space is a special token; one past it is rejected.
        String[][] cases = {{"r50k_base", "<|endoftext|>"}, {"cl100k_base", "<|endofprompt|>"}, {"o200k_base", "<|endofprompt|>"}};
        for (String[] c : cases) {
            Tokenizer t = Tokenizers.byName(c[0]);
            assertEquals("<|endoftext|>", t.decode(new int[]{t.eosId()}), c[0]);
            assertEquals(c[1], t.decode(new int[]{t.vocabSize() - 1}), c[0]);
            assertThrows(IllegalArgumentException.class, () -> t.decode(new int[]{t.vocabSize()}), c[0]);
            for (int id : t.encode(SAMPLE)) assertTrue(id >= 0 && id < t.vocabSize());
        }
    }

    @Test
    void unassignedIdsInsideTheIdSpaceDecodeToReplacementChar() {
        Tokenizer cl = Tokenizers.byName("cl100k_base");
        // 100256 lies between the BPE ranks and <|endoftext|> and has no token.
        assertEquals("Hello\uFFFD world", cl.decode(new int[]{9906, 100_256, 1917}));
    }

    @Test
    void specialTokenTextInDocumentsIsOrdinaryText() {
        for (String name : new String[]{"byte", "r50k_base", "cl100k_base", "o200k_base"}) {
            Tokenizer t = Tokenizers.byName(name);
            int[] ids = t.encode("a<|endoftext|>b");
            for (int id : ids) assertNotEquals(t.eosId(), id, name);
            assertEquals("a<|endoftext|>b", t.decode(ids), name);
        }
    }

    /**
     * A lone surrogate (a broken JSON escape such as "\\ud800" in an eval --choices record) is encoded as U+FFFD, as
     * tiktoken encodes a Python str holding one (its encode falls back to errors="replace") and as the SentencePiece and
     * Hugging Face tokenizers here do; not as '?' (Java's encoder), nor as cl100k's bytes of the surrogate.
     */
    @Test
    void aLoneSurrogateIsEncodedAsTheReplacementCharacter() {
        for (String name : new String[]{"byte", "r50k_base", "cl100k_base", "o200k_base"}) {
            Tokenizer t = Tokenizers.byName(name);
            assertArrayEquals(t.encode("a\uFFFDb"), t.encode("a\uD800b"), name);
            assertArrayEquals(t.encode("a\uFFFD\uFFFD"), t.encode("a\uDE00\uD83D"), name);
            assertFalse(java.util.Arrays.equals(t.encode("\uFFFD"), t.encode("\uD83D\uDE00")), name);  // a pair is a character
        }
    }

    @Test
    void unknownNameListsTheChoices() {
        var e = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName("llama2"));
        assertTrue(e.getMessage().contains("llama2") && e.getMessage().contains("cl100k_base")
                && e.getMessage().contains("byte"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName(null));
    }

    @Test
    void sentencePieceModelsAreNamedByFileAndFoundAgainByTheirRecordedName(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("spm.model");
        Files.write(file, SentencePieceTokenizerTest.resource("bpe_rules.model"));
        Path copy = Files.createDirectories(dir.resolve("checkpoint"));
        Files.write(copy.resolve(SentencePieceTokenizer.FILE_NAME), SentencePieceTokenizerTest.resource("bpe_rules.model"));
        String name = SentencePieceTokenizer.fromBytes(Files.readAllBytes(file)).name();

        // Found by its name from a folder's copy (the first lookup in this JVM reads the file) ...
        Tokenizer recorded = Tokenizers.recorded(name, copy);
        assertEquals(name, recorded.name());
        assertArrayEquals(Files.readAllBytes(file), Tokenizers.files(recorded).get(SentencePieceTokenizer.FILE_NAME));
        // ... and by its path, the same instance.
        assertSame(recorded, Tokenizers.byName(file.toString()));
        assertTrue(Tokenizers.files(Tokenizers.byName("byte")).isEmpty());
        assertSame(Tokenizers.byName("byte"), Tokenizers.recorded("byte", dir), "built-in names need no file");

        // A folder whose copy is missing or is another model says so.
        var missing = assertThrows(IllegalArgumentException.class, () -> Tokenizers.recorded("sentencepiece-0123456789abcdef", dir));
        assertTrue(missing.getMessage().contains("has no tokenizer.model"), missing.getMessage());
        var other = assertThrows(IllegalArgumentException.class, () -> Tokenizers.recorded("sentencepiece-0123456789abcdef", copy));
        assertTrue(other.getMessage().contains("is " + name + ", not the model sentencepiece-0123456789abcdef"), other.getMessage());
        var noFile = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName(dir.resolve("none.model").toString()));
        assertTrue(noFile.getMessage().contains("does not exist"), noFile.getMessage());
        Path junk = dir.resolve("junk.model");
        Files.writeString(junk, "not a model");
        var bad = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName(junk.toString()));
        assertTrue(bad.getMessage().startsWith(junk.toString()) && bad.getMessage().contains("SentencePiece"), bad.getMessage());
        var unknown = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName("llama"));
        assertTrue(unknown.getMessage().contains(".model file"), unknown.getMessage());
    }

    @Test
    void huggingFaceTokenizersAreNamedByFileAndEndOfTextAndFoundAgainByTheirRecordedName(@TempDir Path dir) throws IOException {
        Path model = Files.createDirectories(dir.resolve("model")), copy = Files.createDirectories(dir.resolve("checkpoint"));
        byte[] json = HuggingFaceBpeTokenizerTest.resource("tokenizer.json");
        Files.write(model.resolve("tokenizer.json"), json);
        Files.writeString(model.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|begin_of_text|>\"}");
        Tokenizer byPath = Tokenizers.byName(model.resolve("tokenizer.json").toString());
        assertTrue(byPath.name().startsWith("hf-bpe-"), byPath.name());
        assertEquals(3000, byPath.eosId(), "from the tokenizer_config.json beside it");
        assertSame(byPath, Tokenizers.byName(byPath.name()), "a loaded tokenizer is found by its name");
        var folder = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName(model.toString()));
        assertEquals("--tokenizer " + model + " is a folder: give its tokenizer file, " + model.resolve("tokenizer.json"), folder.getMessage());

        // A folder keeps both files; with another end of text the same tokenizer.json is another tokenizer.
        for (var f : Tokenizers.files(byPath).entrySet()) Files.write(copy.resolve(f.getKey()), f.getValue());
        assertSame(byPath, Tokenizers.recorded(byPath.name(), copy));
        String plain = HuggingFaceBpeTokenizer.fromBytes(json, "{\"eos_token\": \"\u0120\u0120\"}".getBytes(StandardCharsets.UTF_8),
                "plain").name();  // not loaded by name in this JVM, so not cached
        assertNotEquals(plain, byPath.name());
        var other = assertThrows(IllegalArgumentException.class, () -> Tokenizers.recorded(plain, copy));
        assertTrue(other.getMessage().endsWith(" is " + byPath.name() + ", not the tokenizer " + plain + " that " + copy
                + " was written with"), other.getMessage());
        Files.delete(copy.resolve("tokenizer.json"));
        var missing = assertThrows(IllegalArgumentException.class, () -> Tokenizers.recorded(byPath.name(), copy));
        assertTrue(missing.getMessage().contains("has no tokenizer.json; copy the tokenizer.json (and its tokenizer_config.json)"),
                missing.getMessage());
        var unknown = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName("hf-bpe-0123456789abcdef"));
        assertTrue(unknown.getMessage().contains("give its tokenizer.json"), unknown.getMessage());
        var notBpe = assertThrows(IllegalArgumentException.class, () -> Tokenizers.byName(
                Files.writeString(dir.resolve("vocab.json"), "{\"a\": 0}").toString()));
        assertTrue(notBpe.getMessage().startsWith(dir.resolve("vocab.json") + " has no \"model\": it is not a Hugging Face tokenizer.json"),
                notBpe.getMessage());
    }

    /**
     * A tokenizer.json read under another file name reads no tokenizer_config.json beside it, and stays so where the
     * tokenizer of the same name, read earlier with that config, is cached: an instance is shared only when it was
     * read with the same config as the one just read.
     */
    @Test
    void aTokenizerReadWithoutAConfigIsNotTheCachedOneReadWithIt(@TempDir Path dir) throws IOException {
        // A byte of its own at the end: a name that no other test's tokenizer has in the cache.
        byte[] json = (new String(HuggingFaceBpeTokenizerTest.resource("tokenizer.json"), StandardCharsets.UTF_8) + "\n")
                .getBytes(StandardCharsets.UTF_8);
        Path a = Files.createDirectories(dir.resolve("a")), b = Files.createDirectories(dir.resolve("b"));
        for (Path d : List.of(a, b)) Files.writeString(d.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|end_of_text|>\"}");
        Files.write(a.resolve("tokenizer.json"), json);
        Files.write(b.resolve("other.json"), json);
        Tokenizer withConfig = Tokenizers.byName(a.resolve("tokenizer.json").toString());
        Tokenizer without = Tokenizers.byName(b.resolve("other.json").toString());
        assertEquals(withConfig.name(), without.name(), "the same file and end of text: the same name");
        assertEquals(List.of("tokenizer.json", "tokenizer_config.json"), List.copyOf(Tokenizers.files(withConfig).keySet()));
        assertEquals(List.of("tokenizer.json"), List.copyOf(Tokenizers.files(without).keySet()), "other.json was read without one");
        Path c = Files.createDirectories(dir.resolve("c"));
        Files.write(c.resolve("tokenizer.json"), json);
        Files.copy(a.resolve("tokenizer_config.json"), c.resolve("tokenizer_config.json"));
        assertSame(withConfig, Tokenizers.byName(c.resolve("tokenizer.json").toString()), "read with the same config: the cached one");
    }

    /** A checkpoint's cl100k_base tokenizer.json, copied out with it, names cl100k_base again (data prepared with it fits). */
    @Test
    void aTiktokenEncodingsTokenizerJsonIsThatEncoding(@TempDir Path dir) throws IOException {
        Tokenizer cl = Tokenizers.byName("cl100k_base");
        for (var f : HuggingFaceTokenizerFiles.of(cl, 64).entrySet()) Files.write(dir.resolve(f.getKey()), f.getValue());
        assertSame(cl, Tokenizers.byName(dir.resolve("tokenizer.json").toString()));
    }
}
