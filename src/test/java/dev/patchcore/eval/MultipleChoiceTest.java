package dev.patchcore.eval;

import com.google.gson.JsonParser;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class MultipleChoiceTest {
    static final ModelConfig MICRO = new ModelConfig("micro", 257, 32, 88, 2, 2, 16, 10000f, 1e-5f);

    @Test void readsOurFieldsAndHellaSwagsAndNamesTheBadLine(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("q.jsonl");
        Files.writeString(f, """
                {"context": "The sky is", "choices": ["blue", "green"], "label": 0}

                {"ctx": "A man opens a door.", "endings": ["He walks in.", "He eats it.", "x", "y"], "label": "2", "ind": 7}
                {"query": "Q", "choices": ["a", "b"], "gold": 1}
                """);
        List<MultipleChoice.Question> qs = MultipleChoice.read(f, 0);
        assertEquals(3, qs.size());
        assertEquals(new MultipleChoice.Question("A man opens a door.", List.of("He walks in.", "He eats it.", "x", "y"), 2), qs.get(1));
        assertEquals(1, qs.get(2).label());
        assertEquals(2, MultipleChoice.read(f, 2).size(), "--max-questions");

        Files.writeString(f, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 0}\n{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 2}\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0));
        assertTrue(e.getMessage().contains("line 2") && e.getMessage().contains("label 2"), e.getMessage());
        Files.writeString(f, "{\"context\": \"a\", \"choices\": \"b\", \"label\": 0}\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage().contains("line 1"));
        Files.writeString(f, "not json\n");
        String notJson = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage();
        assertTrue(notJson.contains("line 1 is not valid JSON"), notJson);
        assertEquals(1, notJson.lines().count(), "one line, without the JSON library's own advice: " + notJson);
        assertThrows(IllegalArgumentException.class, () -> MultipleChoice.parse(JsonParser.parseString(
                "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": \"first\"}").getAsJsonObject()));
        Files.writeString(f, "\n");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage().contains("no questions"));
    }

    /** An empty choice is refused when the file is read, naming file and line; invalid UTF-8 is read as U+FFFD with a note. */
    @Test void emptyChoicesAndInvalidUtf8AreFoundWhenReading(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("q.jsonl");
        Files.writeString(f, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 0}\n\n"
                + "{\"context\": \"a\", \"choices\": [\"b\", \"\"], \"label\": 0}\n");
        assertEquals(f + " line 3: choice 1 is empty",
                assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage());
        assertEquals(dir + " is a folder, not a JSONL file",
                assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(dir, 0)).getMessage());
        Files.write(f, new byte[] {'{', '"', 'c', 'o', 'n', 't', 'e', 'x', 't', '"', ':', '"', (byte) 0xFF, '"', ',',
                '"', 'c', 'h', 'o', 'i', 'c', 'e', 's', '"', ':', '[', '"', 'b', '"', ',', '"', 'c', '"', ']', ',',
                '"', 'l', 'a', 'b', 'e', 'l', '"', ':', '0', '}', '\n'});
        List<String> notes = new java.util.ArrayList<>();
        List<MultipleChoice.Question> qs = MultipleChoice.read(f, 0, notes::add);
        assertEquals("\uFFFD", qs.get(0).context(0));
        assertEquals(List.of(f + ": 1 invalid UTF-8 sequence replaced by U+FFFD"), notes);
    }

    /** Records of the wrong shape say what is wrong where: the field, its JSON type, or a test split's empty label. */
    @Test void malformedRecordsSayWhatIsWrong(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("q.jsonl");
        String[][] cases = {
                {"{\"context\": \"a\", \"choices\": [\"b\", null], \"label\": 0}", "line 1: choices item 1 is a JSON null, not a string"},
                {"{\"context\": \"a\", \"choices\": [[\"b\"], \"c\"], \"label\": 0}", "line 1: choices item 0 is a JSON array, not a string"},
                {"{\"context\": {\"x\": 1}, \"choices\": [\"b\", \"c\"], \"label\": 0}", "line 1: context is a JSON object, not a string"},
                {"[1, 2, 3]", "line 1 is a JSON array, not an object"},
                {"{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"\"}",
                        "line 1: answer is empty: a record of a test split"},
                {"{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": null, \"label\": 0}", "line 1: "},
                {"{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": [1]}", "line 1: label is a JSON array, not a choice index"},
                {"{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": [\"A\", \"B\"]}, \"answerKey\": \"\"}",
                        "line 1: answerKey is empty: a record of a test split"}};
        for (String[] c : cases) {
            Files.writeString(f, c[0] + "\n");
            String m = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage();
            assertTrue(m.startsWith(f + " " + c[1]), m);
            assertEquals(1, m.lines().count(), m);
        }
        // AllenAI's ARC layout without its choices: said without the Java of the field that was looked up
        Files.writeString(f, "{\"question\": {\"stem\": \"q\"}, \"answerKey\": \"A\"}\n");
        String m = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.read(f, 0)).getMessage();
        assertTrue(m.startsWith(f + " line 1: a field is missing, null or of the wrong type") && !m.contains("Cannot invoke")
                && !m.contains("NullPointerException"), m);
    }

    /** A raw HellaSwag record becomes the harness's question: activity label, ctx_a + capitalized ctx_b, cleaned text. */
    @Test void hellaSwagRecordsGetTheHarnessPreprocessing() {
        MultipleChoice.Question q = MultipleChoice.parse(JsonParser.parseString("""
                {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow.",
                 "ctx_b": "then", "endings": [", the man [title] waits.  ok", " a [step] thing", "x", "y"], "label": "3"}
                """).getAsJsonObject());
        assertEquals("Removing ice from car: Then, the man writes over the snow. Then", q.context(0));
        assertEquals(List.of(", the man. waits. ok", "a thing", "x", "y"), q.choices());
        assertEquals(3, q.label());
        assertEquals("Ab cd", HarnessTasks.hellaSwagText("  Ab [header] cd "));
    }

    private static MultipleChoice.Question record(String json) {
        return MultipleChoice.parse(JsonParser.parseString(json).getAsJsonObject());
    }

    /** The other benchmarks of the paper, from their Hugging Face records, posed as lm-evaluation-harness poses them. */
    @Test void benchmarkRecordsGetTheHarnessPrompts() {
        MultipleChoice.Question piqa = record("""
                {"goal": "How do I ready a guinea pig cage for it's new occupants?",
                 "sol1": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips.",
                 "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material.",
                 "label": 0}""");
        assertEquals("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:", piqa.context(1));
        assertEquals(2, piqa.choices().size());
        assertEquals(0, piqa.label());

        MultipleChoice.Question arc = record("""
                {"id": "Mercury_7175875", "question": "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?",
                 "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.", "Planetary days will become shorter.", "Planetary gravity will become stronger."],
                             "label": ["A", "B", "C", "D"]}, "answerKey": "C"}""");
        assertTrue(arc.context(0).startsWith("Question: An astronomer") && arc.context(0).endsWith("rotation?\nAnswer:"), arc.context(0));
        assertEquals("Planetary days will become shorter.", arc.choices().get(arc.label()));
        MultipleChoice.Question arcNumbered = record("""
                {"question": {"stem": "Which is a gas?", "choices": [{"text": "ice", "label": "1"}, {"text": "steam", "label": "2"}, {"text": "rock", "label": "3"}]},
                 "answerKey": "2"}""");
        assertEquals("Question: Which is a gas?\nAnswer:", arcNumbered.context(0));
        assertEquals(List.of("ice", "steam", "rock"), arcNumbered.choices());
        assertEquals(1, arcNumbered.label());

        MultipleChoice.Question mmlu = record("""
                {"question": "Find the degree for the given field extension Q(sqrt(2)) over Q. ", "subject": "abstract_algebra",
                 "choices": ["0", "2", "1", "3"], "answer": 1}""");
        assertEquals("""
                The following are multiple choice questions (with answers) about abstract algebra.

                Find the degree for the given field extension Q(sqrt(2)) over Q.
                A. 0
                B. 2
                C. 1
                D. 3
                Answer:""", mmlu.context(3));
        assertEquals(List.of("A", "B", "C", "D"), mmlu.choices());
        assertEquals(1, mmlu.label());
        assertEquals(" B", MultipleChoice.continuation(mmlu.context(1), mmlu.choices().get(1)));

        // WinoGrande: the option goes into the blank of the context; the rest of the sentence is the scored continuation.
        MultipleChoice.Question wino = record("""
                {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
                 "option1": "Sarah", "option2": "Maria", "answer": "1"}""");
        assertEquals(List.of("Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"), wino.contexts());
        assertEquals(List.of("always got the harder cases.", "always got the harder cases."), wino.choices());
        assertEquals(0, wino.label());
        assertEquals(" always got the harder cases.", MultipleChoice.continuation(wino.context(0), wino.choices().get(0)));

        var bad = assertThrows(IllegalArgumentException.class, () -> record("""
                {"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}"""));
        assertTrue(bad.getMessage().contains("answerKey 'E'"), bad.getMessage());
        assertThrows(IllegalArgumentException.class, () -> record("""
                {"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}"""));
    }

    @Test void choicesJoinTheContextWithOneSpaceAtMost() {
        assertEquals(" blue", MultipleChoice.continuation("The sky is", "blue"));
        assertEquals(" blue", MultipleChoice.continuation("Answer: ", "blue"), "the context's trailing space moves here");
        assertEquals("\n blue", MultipleChoice.continuation("Q:\n ", "blue"));
        assertEquals(" blue", MultipleChoice.continuation("The sky is", " blue"));
        assertEquals("blue", MultipleChoice.continuation("", "blue"));
    }

    /**
     * With SentencePiece (which prefixes "▁" to every text it encodes) the choice's tokens must be those of the
     * joined text, as the harness takes them, not the choice encoded alone ("▁" + "▁mat" or similar).
     */
    @Test void choiceTokensAreTheJoinedTextsTokensPastTheContext() throws IOException {
        dev.patchcore.data.SentencePieceTokenizer sp;
        try (var in = getClass().getResourceAsStream("/sentencepiece/llama_bpe.model")) {
            sp = dev.patchcore.data.SentencePieceTokenizer.fromBytes(in.readAllBytes());
        }
        try (Backend be = new CpuBackend()) {
            MultipleChoice mc = new MultipleChoice(be, null, sp);
            for (String context : List.of("The cat sat on the", "The cat sat on the ")) {
                MultipleChoice.Encoded e = mc.encode(new MultipleChoice.Question(context, List.of("mat", "moon"), 0), 0);
                assertArrayEquals(sp.encode("The cat sat on the mat"), e.tokens(), context);
                int[] choice = Arrays.copyOfRange(e.tokens(), e.tokens().length - e.scored(), e.tokens().length);
                StringBuilder pieces = new StringBuilder();
                for (int id : choice) pieces.append(sp.piece(id));
                assertEquals("\u2581mat", pieces.toString(), "the choice's pieces spell ' mat', one space");
            }
            MultipleChoice.Encoded empty = mc.encode(new MultipleChoice.Question("", List.of("mat", "moon"), 0), 1);
            assertEquals(sp.eosId(), empty.tokens()[0], "an empty context is the end-of-text token");
            assertArrayEquals(sp.encode("moon"), Arrays.copyOfRange(empty.tokens(), 1, empty.tokens().length));
            // With a begin-of-text prefix (eval --choices --bos): the same tokens after it, the same ones scored.
            int bos = 1;
            assertEquals("<s>", sp.piece(bos), "LLaMA's begin of text");
            MultipleChoice prefixed = new MultipleChoice(be, null, sp, bos);
            MultipleChoice.Encoded plain = mc.encode(new MultipleChoice.Question("The cat sat on the", List.of("mat", "moon"), 0), 0);
            MultipleChoice.Encoded withBos = prefixed.encode(new MultipleChoice.Question("The cat sat on the", List.of("mat", "moon"), 0), 0);
            assertEquals(bos, withBos.tokens()[0]);
            assertArrayEquals(plain.tokens(), Arrays.copyOfRange(withBos.tokens(), 1, withBos.tokens().length));
            assertEquals(plain.scored(), withBos.scored());
            MultipleChoice.Encoded emptyWithBos = prefixed.encode(new MultipleChoice.Question("", List.of("mat", "moon"), 0), 1);
            assertEquals(bos, emptyWithBos.tokens()[0], "an empty context is the prefix alone");
            assertArrayEquals(sp.encode("moon"), Arrays.copyOfRange(emptyWithBos.tokens(), 1, emptyWithBos.tokens().length));
        }
    }

    @Test void accNormDividesByTheChoiceLength() {
        // Summed: choice 1 (−6) beats choice 0 (−8); per character choice 0 (−8/8 = −1) beats choice 1 (−6/3 = −2).
        assertArrayEquals(new int[] {1, 0}, MultipleChoice.picks(new double[] {-8, -6}, List.of("abcdefgh", "abc")));
        assertArrayEquals(new int[] {0, 0}, MultipleChoice.picks(new double[] {-2, -2}, List.of("ab", "ab")), "ties: the first");
        // Characters as Python counts them: "🙂🙂" is 2 (−4/2 = −2), not 4 UTF-16 units (−1); "abc" gives −3/3 = −1.
        assertArrayEquals(new int[] {1, 1}, MultipleChoice.picks(new double[] {-4, -3}, List.of("🙂🙂", "abc")));
    }

    /**
     * The batched, end-padded, left-truncated scores equal Σ log softmax read off the logits of each sequence run
     * alone: padding and batching change nothing, truncation keeps the last T + 1 tokens.
     */
    @Test void batchedScoresMatchEachSequenceScoredAlone() {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MICRO);
            m.initialize(be, 11);
            Tokenizer bytes = Tokenizers.byName("byte");
            MultipleChoice mc = new MultipleChoice(be, m, bytes);
            int[][] seqs = {bytes.encode("the cat sat"), bytes.encode("a dog"), bytes.encode("a rather long sentence here, past T")};
            int[] scored = {3, 4, 5};
            double[] ll = mc.logLikelihoods(seqs, scored);
            for (int i = 0; i < seqs.length; i++) {
                int[] s = seqs[i];
                int from = Math.max(0, s.length - MICRO.contextLength() - 1);
                double ref = reference(be, m, Arrays.copyOfRange(s, from, s.length), scored[i]);
                assertEquals(ref, ll[i], 1e-4 * Math.abs(ref), "sequence " + i);
                assertTrue(ll[i] < 0);
            }
            // A question: the choices' scores are these log-likelihoods of the joined text.
            MultipleChoice.Question q = new MultipleChoice.Question("the cat", List.of("sat", "ran on"), 0);
            double[] qll = mc.logLikelihoods(q);
            assertEquals(reference(be, m, bytes.encode("the cat sat"), 4), qll[0], 1e-4 * Math.abs(qll[0]));
            assertEquals(reference(be, m, bytes.encode("the cat ran on"), 7), qll[1], 1e-4 * Math.abs(qll[1]));
            // Trailing whitespace of the context is scored as part of the continuation (the harness's _encode_pair).
            double[] spaced = mc.logLikelihoods(new MultipleChoice.Question("the cat ", List.of("sat", "ran on"), 0));
            assertEquals(qll[0], spaced[0], 1e-9 * Math.abs(qll[0]), "'the cat ' + 'sat' scores ' sat' like 'the cat' + 'sat'");
            MultipleChoice.Result r = mc.evaluate(List.of(q, new MultipleChoice.Question("the cat", List.of("sat", "ran on"), 1)));
            assertEquals(2, r.questions());
            assertEquals(1, r.correct(), "the same scores, labels 0 and 1: exactly one is right");
            assertEquals(1, r.correctNorm());
        }
    }

    /** Σ over the last {@code scored} tokens of log softmax(logits)[next token], one unpadded sequence. */
    private static double reference(Backend be, LlamaModel m, int[] seq, int scored) {
        int t = seq.length - 1;
        Tape tape = new Tape(be);
        Tensor tokens = be.scratch(DType.I32, 1, t);
        be.uploadInts(tokens, Arrays.copyOf(seq, t));
        float[] logits = be.download(m.forward(tape, tokens, 1, 1).value());
        int stride = logits.length / t, vocab = MICRO.vocabSize();
        double sum = 0;
        for (int p = t - scored; p < t; p++) {
            double max = Double.NEGATIVE_INFINITY, z = 0;
            for (int v = 0; v < vocab; v++) max = Math.max(max, logits[p * stride + v]);
            for (int v = 0; v < vocab; v++) z += Math.exp(logits[p * stride + v] - max);
            sum += logits[p * stride + seq[p + 1]] - max - Math.log(z);
        }
        tape.clear();
        be.releaseScratch();
        return sum;
    }
}
