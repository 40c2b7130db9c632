package dev.patchcore.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * patchcore's SentencePiece reader against the reference library: src/test/resources/sentencepiece holds small
 * models trained on the bundled corpus and what sentencepiece's own encode/decode returned for a set of texts
 * (written by tools/sentencepiece/make_fixtures.py). Every id must match.
 */
public class SentencePieceTokenizerTest {

    public static byte[] resource(String name) throws IOException {
        try (InputStream in = SentencePieceTokenizerTest.class.getResourceAsStream("/sentencepiece/" + name)) {
            assertNotNull(in, "missing test resource sentencepiece/" + name);
            return in.readAllBytes();
        }
    }

    static SentencePieceTokenizer model(String name) throws IOException {
        return SentencePieceTokenizer.fromBytes(resource(name + ".model"));
    }

    private static JsonObject expected() throws IOException {
        try (InputStream in = SentencePieceTokenizerTest.class.getResourceAsStream("/sentencepiece/expected.json")) {
            return JsonParser.parseReader(new InputStreamReader(in, StandardCharsets.UTF_8)).getAsJsonObject();
        }
    }

    private static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).getAsInt();
        return out;
    }

    @TestFactory
    Stream<DynamicTest> encodesAndDecodesAsTheReferenceLibrary() throws IOException {
        JsonObject models = expected().getAsJsonObject("models");
        List<DynamicTest> tests = new ArrayList<>();
        for (Map.Entry<String, JsonElement> e : models.entrySet()) {
            String name = e.getKey();
            JsonObject m = e.getValue().getAsJsonObject();
            tests.add(DynamicTest.dynamicTest(name, () -> {
                SentencePieceTokenizer tok = model(name);
                assertEquals(m.get("vocab").getAsInt(), tok.vocabSize());
                assertEquals(m.get("eos").getAsInt(), tok.eosId());
                int checked = 0;
                for (JsonElement c : m.getAsJsonArray("encode")) {
                    JsonObject o = c.getAsJsonObject();
                    String text = o.get("text").getAsString();
                    int[] want = ints(o.getAsJsonArray("ids"));
                    int[] got = tok.encode(text);
                    assertArrayEquals(want, got, () -> name + " encode(" + text + "): want " + pieces(tok, want)
                            + ", got " + pieces(tok, got) + " (normalized '" + tok.normalize(text) + "')");
                    assertEquals(o.get("decoded").getAsString(), tok.decode(got), () -> name + " decode of " + text);
                    checked++;
                }
                for (JsonElement c : m.getAsJsonArray("decode")) {
                    int[] ids = ints(c.getAsJsonObject().getAsJsonArray("ids"));
                    assertEquals(c.getAsJsonObject().get("text").getAsString(), tok.decode(ids),
                            () -> name + " decode " + Arrays.toString(ids) + " = " + pieces(tok, ids));
                }
                assertTrue(checked >= 100, "fixture has " + checked + " texts");
            }));
        }
        assertEquals(7, tests.size(), "fixture models");
        return tests.stream();
    }

    private static List<String> pieces(SentencePieceTokenizer tok, int[] ids) {
        return Arrays.stream(ids).mapToObj(tok::piece).toList();
    }

    @Test
    void eosDecodesAsItsPieceSoDocumentBoundariesStayVisible() throws IOException {
        SentencePieceTokenizer tok = model("llama_bpe");
        int[] a = tok.encode("first document"), b = tok.encode("second");
        int[] ids = new int[a.length + 1 + b.length];
        System.arraycopy(a, 0, ids, 0, a.length);
        ids[a.length] = tok.eosId();
        System.arraycopy(b, 0, ids, a.length + 1, b.length);
        assertEquals("first document</s> second", tok.decode(ids));
        assertEquals("</s>", tok.piece(tok.eosId()));
        var e = assertThrows(IllegalArgumentException.class, () -> tok.decode(new int[]{tok.vocabSize()}));
        assertTrue(e.getMessage().contains(tok.name()), e.getMessage());
    }

    @Test
    void nameIsTheFileHashSoACopyCanBeChecked() throws IOException {
        SentencePieceTokenizer a = model("llama_bpe"), b = model("llama_bpe"), c = model("bpe_unused");
        assertEquals(a.name(), b.name());
        assertNotEquals(a.name(), c.name());
        assertTrue(a.name().matches("sentencepiece-[0-9a-f]{16}"), a.name());
        assertArrayEquals(resource("llama_bpe.model"), a.file());
    }

    @Test
    void malformedFilesAreRefusedWithAReason() throws IOException {
        var e = assertThrows(IllegalArgumentException.class,
                () -> SentencePieceTokenizer.fromBytes("not a model at all".getBytes(StandardCharsets.UTF_8)));
        assertTrue(e.getMessage().contains("SentencePiece"), e.getMessage());
        byte[] file = resource("llama_bpe.model");
        assertThrows(IllegalArgumentException.class,
                () -> SentencePieceTokenizer.fromBytes(Arrays.copyOf(file, file.length / 2)));
        assertThrows(IllegalArgumentException.class, () -> SentencePieceTokenizer.fromBytes(new byte[0]));
    }

    /** One more piece record appended to a model file (protobuf allows a repeated field anywhere). */
    private static byte[] withPiece(byte[] model, String text, int type) {
        byte[] t = text.getBytes(StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream piece = new java.io.ByteArrayOutputStream();
        piece.write(0x0A);
        piece.write(t.length);
        piece.writeBytes(t);
        piece.writeBytes(new byte[] {0x15, 0, 0, 0, 0, 0x18, (byte) type});  // score 0, type
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        out.writeBytes(model);
        out.write(0x0A);
        out.write(piece.size());
        out.writeBytes(piece.toByteArray());
        return out.toByteArray();
    }

    /** The library's load-time checks (model_interface.cc InitializePieces): what it refuses is refused here. */
    @Test
    void modelsTheLibraryRefusesAreRefused() throws IOException {
        byte[] bpe = resource("llama_bpe.model"), unigram = resource("unigram_nfkc.model");
        assertNotNull(SentencePieceTokenizer.fromBytes(withPiece(bpe, "zzqq", 1)), "an extra normal piece is fine");
        String[][] cases = {
                {"llama_bpe", "\u2581the", "1", "defined twice"},
                {"llama_bpe", "", "1", "empty"},
                {"llama_bpe", "<0x0a>", "6", "not <0xXX>"},
                {"llama_bpe", "<unk2>", "2", "two unknown pieces"},
                {"unigram_nfkc", "<0x41>", "6", "without byte_fallback"},
        };
        for (String[] c : cases) {
            byte[] file = withPiece(c[0].equals("llama_bpe") ? bpe : unigram, c[1], Integer.parseInt(c[2]));
            var e = assertThrows(IllegalArgumentException.class, () -> SentencePieceTokenizer.fromBytes(file), c[1]);
            assertTrue(e.getMessage().contains(c[3]), e.getMessage());
        }
        // An unpaired surrogate (a broken JSON escape) is U+FFFD, not the '?' Java's encoder would write.
        SentencePieceTokenizer tok = model("llama_bpe");
        assertArrayEquals(tok.encode("a\uFFFDb"), tok.encode("a\uD83Eb"));
    }

    /** Corrupted model files are refused with an IllegalArgumentException (one error line), never another exception. */
    @Test
    void corruptedFilesFailCleanly() throws IOException {
        java.util.Random r = new java.util.Random(1);
        for (String name : List.of("llama_bpe", "unigram_nfkc", "bpe_rules")) {
            byte[] base = resource(name + ".model");
            for (int it = 0; it < 150; it++) {
                byte[] b = base.clone();
                for (int k = 0, n = 1 + r.nextInt(8); k < n; k++) b[r.nextInt(b.length)] = (byte) r.nextInt(256);
                if (r.nextInt(4) == 0) b = Arrays.copyOf(b, r.nextInt(b.length));
                try {
                    SentencePieceTokenizer t = SentencePieceTokenizer.fromBytes(b);
                    t.decode(t.encode("Hello wörld 🦙 ＡＢＣ  x\tq ﬁ…"));
                } catch (IllegalArgumentException expected) {
                    // refused, with a reason
                }
            }
        }
    }

    /** A 200 KB document in one piece (the BPE merge loop over one long symbol list; a quadratic one shows as a slow suite). */
    @Test
    void roundTripsALargeDocument() throws IOException {
        SentencePieceTokenizer tok = model("llama_bpe");
        String text = "The quick brown fox jumps over the lazy dog 1234. ".repeat(4000);
        int[] ids = tok.encode(text);
        assertEquals(text, tok.decode(ids));
        int[] first = tok.encode(text.substring(0, 49));  // the first sentence, without the space that joins the next
        assertArrayEquals(first, java.util.Arrays.copyOf(ids, first.length), "the document's first sentence encodes as it does alone");
    }

    /** A chat template's special tokens are control pieces, by their exact text: not normal pieces, not the unknown one. */
    @Test void specialIdsAreControlPieces() throws IOException {
        SentencePieceTokenizer tok = model("llama_bpe");
        assertEquals(tok.eosId(), tok.specialId("</s>"));
        assertEquals(1, tok.specialId("<s>"));
        assertEquals(-1, tok.specialId("\u2581the"), "a normal piece");
        assertEquals(-1, tok.specialId("<unk>"), "the unknown piece");
        assertEquals(-1, tok.specialId("<0x0A>"), "a byte piece");
        assertEquals(java.util.Set.of("<s>", "</s>"), tok.specialTokens());
    }
}
