package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class FineTunerTest {
    static final dev.patchcore.config.ModelConfig C = dev.patchcore.model.ModelGradientTest.C;  // vocabulary 11, T = 5

    @Test void readsAlpacaArraysAndJsonlWithStanfordsTemplate(@TempDir Path dir) throws IOException {
        Path a = dir.resolve("a.json");
        Files.writeString(a, """
                [{"instruction": "Give three tips.", "input": "", "output": "1. Eat."},
                 {"instruction": "Translate.", "input": "Hallo", "output": "Hello"}]""");
        List<Instructions.Record> r = Instructions.read(a).stream().map(Instructions.Record.class::cast).toList();
        assertEquals("Below is an instruction that describes a task. Write a response that appropriately completes the request."
                + "\n\n### Instruction:\nGive three tips.\n\n### Response:", r.get(0).prompt());
        assertEquals("1. Eat.", r.get(0).response());
        assertTrue(r.get(1).prompt().contains("paired with an input") && r.get(1).prompt().endsWith("### Input:\nHallo\n\n### Response:"));
        Path b = dir.resolve("b.jsonl");
        Files.writeString(b, "{\"prompt\": \"Q: 2+2?\", \"response\": \" 4\"}\n\n{\"prompt\": \"x\", \"completion\": \"y\"}\n");
        assertEquals(List.of(new Instructions.Record("Q: 2+2?", " 4"), new Instructions.Record("x", "y")), Instructions.read(b));
        Files.writeString(b, "{\"question\": 1}\n");
        var e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(b));
        assertTrue(e.getMessage().contains("line 1"), e.getMessage());
        Files.writeString(b, "[{\"instruction\": \"a\"");
        assertThrows(IllegalArgumentException.class, () -> Instructions.read(b));
        // Invalid UTF-8 is read as U+FFFD (as prepare and eval read it), not an "Input length = 1" failure.
        Files.write(b, "{\"prompt\": \"Say hi.\", \"response\": \"Hi \u00ff!\"}\n".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1));
        assertEquals(List.of(new Instructions.Record("Say hi.", "Hi \uFFFD!")), Instructions.read(b));
        // Fields are strings, as prepare requires of "text"; only Alpaca's "input" may be null or absent.
        Files.writeString(b, "{\"prompt\": \"a\", \"response\": null}\n");
        e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(b));
        assertEquals(b + " line 1: field response must be a string, got null", e.getMessage());
        Files.writeString(b, "[{\"instruction\": \"a\", \"input\": null, \"output\": \"b\"}, {\"instruction\": \"a\", \"output\": 5}]");
        e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(b));
        assertEquals(b + " record 2: field output must be a string, got a number", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(dir));
        assertEquals(dir + " is a folder (expected a JSON or JSONL file of records)", e.getMessage());
    }

    /**
     * Records are JSON as Python's json (Stanford Alpaca's jload) and prepare read it: what only a lenient parser takes
     * (single quotes, unquoted words, a trailing comma, a comment) is refused naming the record's place, never trained on.
     */
    @Test void malformedJsonIsRefusedNotGuessed(@TempDir Path dir) throws IOException {
        Path b = dir.resolve("b.jsonl"), a = dir.resolve("a.json");
        for (String line : new String[] {"{'prompt': 'a', 'response': 'b'}", "{\"prompt\": a, \"response\": b}",
                "{\"prompt\": \"a\", \"response\": \"b\"} // c", "{prompt: \"a\", response: \"b\"}"}) {
            Files.writeString(b, "{\"prompt\": \"x\", \"response\": \"y\"}\n" + line + "\n");
            var e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(b), line);
            assertTrue(e.getMessage().startsWith(b + " line 2 is not valid JSON"), e.getMessage());
        }
        for (String array : new String[] {"[{\"prompt\": \"a\", \"response\": \"b\"},]", "[{'prompt': 'a', 'response': 'b'}]",
                "[{\"prompt\": \"a\", \"response\": \"b\"}] x"}) {
            Files.writeString(a, array);
            var e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(a), array);
            assertTrue(e.getMessage().startsWith(a + " is not valid JSON"), e.getMessage());
            assertFalse(e.getMessage().contains("setStrictness"), e.getMessage());
        }
    }

    /** A compressed file (prepare reads .gz and .zst; finetune does not) is said to be one, not "line 1 is not valid JSON" after a note. */
    @Test void aCompressedDataFileIsOneClearError(@TempDir Path dir) throws IOException {
        Path gz = dir.resolve("a.jsonl.gz"), zst = dir.resolve("a.json.zst");
        try (var out = new java.util.zip.GZIPOutputStream(Files.newOutputStream(gz))) {
            out.write("{\"prompt\": \"a\", \"response\": \"b\"}\n".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        }
        Files.write(zst, new byte[] {0x28, (byte) 0xB5, 0x2F, (byte) 0xFD, 0, 0x58, 0x11, 0});
        java.io.PrintStream err = System.err;
        java.io.ByteArrayOutputStream notes = new java.io.ByteArrayOutputStream();
        try {
            System.setErr(new java.io.PrintStream(notes, true, java.nio.charset.StandardCharsets.UTF_8));
            var e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(gz));
            assertEquals(gz + " is gzip-compressed: finetune reads a JSON or JSONL file as text; decompress it first", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> Instructions.read(zst));
            assertEquals(zst + " is zstd-compressed: finetune reads a JSON or JSONL file as text; decompress it first", e.getMessage());
        } finally {
            System.setErr(err);
        }
        assertEquals("", notes.toString(), "no note on invalid UTF-8 before the error");
    }

    /** A prompt whose last token merges into the response (" " + "Paris" → " Paris" in GPT-2 BPE) scores that token. */
    @Test void aPromptTokenMergedIntoTheResponseIsScored() {
        var tok = Tokenizers.byName("gpt2");
        Instructions.Example e = Instructions.encode(tok, new Instructions.Record("Q: the capital of France? A: ", "Paris"));
        int[] prompt = tok.encode("Q: the capital of France? A: ");
        assertEquals(prompt.length - 1, e.promptTokens(), "the trailing space token is not part of the whole text's tokens");
        assertEquals(" Paris", tok.decode(new int[] {e.ids()[e.promptTokens()]}));
    }

    /** Bytes: prompt "ab", response "cd" → ids a b c d EOS; targets from the prompt's last token on are scored. */
    @Test void onlyResponseTargetsAreScored() {
        var tok = Tokenizers.byName("byte");
        Instructions.Example e = Instructions.encode(tok, new Instructions.Record("ab", "cd"));
        assertArrayEquals(new int[] {'a', 'b', 'c', 'd', 256}, e.ids());
        assertEquals(2, e.promptTokens());
        assertEquals(3, e.scoredTargets(8), "c, d and EOS");
        assertEquals(2, e.scoredTargets(3), "cut to T + 1 = 4 tokens: c, d");
        int[] in = new int[2 * 8], tg = new int[2 * 8];
        int[] range = Instructions.fill(e, 1, 8, 256, in, tg);
        assertArrayEquals(new int[] {1, 4}, range, "targets 1..3 of the row: c, d, EOS");
        assertEquals('b', in[8 + 1]);
        assertEquals('c', tg[8 + 1]);
        assertEquals(256, tg[8 + 3]);
        assertEquals(256, in[8 + 6], "padding");
    }

    /**
     * The masked step's gradient is the gradient of the mean loss over response tokens only: it matches finite
     * differences of that loss (prompt and padding rows zeroed in the fused loss's in-place gradient).
     */
    @Test void maskedGradientIsTheResponseLossGradient() {
        int eos = 10;
        assertMaskedGradient(List.of(new Instructions.Example(new int[] {1, 2, 3, 4, eos}, 3),
                new Instructions.Example(new int[] {5, 6, 7, 8, 9, 1, 2, eos}, 2), new Instructions.Example(new int[] {3, 3, eos}, 1)), eos);
    }

    /**
     * Conversations score several spans (each assistant turn): the gradient is that of the mean loss over the spans'
     * tokens alone, one span cut by the context (T = 5: 6 tokens kept) and one past it.
     */
    @Test void maskedGradientOfSeveralSpans() {
        int eos = 10;
        assertMaskedGradient(List.of(new Instructions.Example(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9}, new int[] {2, 3, 4, 7, 8, 9}),
                new Instructions.Example(new int[] {5, 6, 7, 8}, new int[] {1, 2, 3, 4})), eos);
        Instructions.Example e = new Instructions.Example(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9}, new int[] {2, 3, 4, 7, 8, 9});
        int t = C.contextLength();
        assertEquals(1 + 2, e.scoredTargets(t), "3 and 5, 6 (7 and 9 lie past the T + 1 = 6 tokens kept)");
        int[] in = new int[2 * t], tg = new int[2 * t];
        assertArrayEquals(new int[] {1, 2, 3, 5}, Instructions.fill(e, 1, t, eos, in, tg), "targets 1 (3) and 3, 4 (5, 6) of the row");
        assertEquals(3, tg[t + 1]);
        assertEquals(5, tg[t + 3]);
        assertEquals(6, tg[t + 4]);
    }

    /** Spans must be ordered pairs inside the tokens. */
    @Test void scoredSpansAreChecked() {
        int[] ids = {1, 2, 3, 4};
        assertThrows(IllegalArgumentException.class, () -> new Instructions.Example(ids, new int[] {1}));
        assertThrows(IllegalArgumentException.class, () -> new Instructions.Example(ids, new int[] {2, 1}));
        assertThrows(IllegalArgumentException.class, () -> new Instructions.Example(ids, new int[] {1, 3, 2, 4}));
        assertThrows(IllegalArgumentException.class, () -> new Instructions.Example(ids, new int[] {1, 5}));
        assertEquals(4, new Instructions.Example(ids, new int[0]).promptTokens());
        assertEquals(0, new Instructions.Example(ids, new int[0]).scoredTargets(8));
    }

    /** Trains one micro-batch of the first two {@code examples} and checks its gradient against finite differences. */
    private static void assertMaskedGradient(List<Instructions.Example> examples, int eos) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, C);
            m.initialize(be, 3);
            SplittableRandom r = new SplittableRandom(9);
            for (Parameter p : m.parameters()) {
                float[] w = be.download(p.master());
                for (int i = 0; i < w.length; i++) w[i] = p.decay() ? (float) r.nextDouble(-0.5, 0.5) : (float) r.nextDouble(0.5, 1.5);
                p.load(be, w);
            }
            int t = C.contextLength();
            TrainConfig cfg = new TrainConfig(C, 1, 0, 1, 2, 1, 1e-3f, 0f, 0, 0f, 0.9f, 0.999f, 1e-8f, 1f, 1, 0, 0, 0, 1);
            FineTuner ft = new FineTuner(be, m, cfg, 1, examples, List.of(), Path.of("unused"), System.out, "x", "byte", dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint.NONE, eos);
            int[] order = java.util.stream.IntStream.range(0, examples.size()).toArray();
            long scored = examples.get(0).scoredTargets(t) + examples.get(1).scoredTargets(t);
            Tape tape = new Tape(be);
            double sum = ft.scoreMicroBatch(tape, examples, order, 0, 2);
            Tensor losses = be.allocate(DType.F32, 2 * t);
            int rows = ft.trainMicroBatch(tape, examples, order, 0, 2, 1f / scored, losses, 0);
            assertEquals(sum, be.sum(losses.rows(0, rows)), 1e-5 * sum, "the training pass's kept row losses are the scored ones");
            dev.patchcore.model.ModelGradientTest.assertGradientsMatchFiniteDifferences(be, m.parameters(), r,
                    () -> ft.scoreMicroBatch(tape, examples, order, 0, 2) / scored);
        }
    }

    /** A stop asked for (Ctrl-C, SIGTERM) ends the run after the current step with its weights saved. */
    @Test void aStopSavesTheWeightsOfTheStepDone(@TempDir Path dir) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, C);
            m.initialize(be, 3);
            FineTuner ft = twoEpochsOfThree(be, m, dir, List.of(), TrainingTest.quiet());
            ft.requestStop();
            FineTuner.Result r = ft.run();
            assertTrue(r.stopped());
            assertEquals(1, r.steps(), "one step of 6, then the stop");
            Path saved = Checkpoints.latest(dir);
            assertEquals("step-00000001", saved.getFileName().toString());
            LlamaModel loaded = new LlamaModel(be, C);
            Checkpoints.loadWeights(saved, loaded, be);
            for (int i = 0; i < m.parameters().size(); i++)
                assertArrayEquals(be.download(m.parameters().get(i).master()), be.download(loaded.parameters().get(i).master()),
                        "the checkpoint holds the weights after the step");
        }
    }

    /** A stop asked for during an epoch's validation ends the run with that epoch's checkpoint (no step of the next). */
    @Test void aStopDuringValidationEndsAfterTheEpochsCheckpoint(@TempDir Path dir) {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, C);
            m.initialize(be, 3);
            FineTuner[] ft = new FineTuner[1];
            // The console line of the first validation asks for the stop, as a Ctrl-C arriving then would.
            java.io.PrintStream console = new java.io.PrintStream(new java.io.ByteArrayOutputStream(), true) {
                @Override public java.io.PrintStream printf(java.util.Locale l, String format, Object... args) {
                    if (format.contains("val")) ft[0].requestStop();
                    return super.printf(l, format, args);
                }
            };
            ft[0] = twoEpochsOfThree(be, m, dir, List.of(STOP_EXAMPLES.getFirst()), console);
            FineTuner.Result r = ft[0].run();
            assertTrue(r.stopped());
            assertEquals(3, r.steps(), "the first epoch's 3 steps, none of the second");
            assertEquals("step-00000003", Checkpoints.latest(dir).getFileName().toString());
        }
    }

    /**
     * A step's model FLOPs count each example's own positions, with attention over its own length, not the padding to
     * the micro-batch's longest nor the context. C (V 11, d 8, ffn 12, 2 layers): N = 2·(4·8² + 3·8·12) + 11·8 = 1176, so
     * a position of a sequence of p costs 6N + 12·2·8·p = 7056 + 192·p. The three examples run 4, 5 (8 ids cut to
     * T + 1 = 6) and 2 positions, in one micro-batch of 3 padded to 5: 4·7824 + 5·8016 + 2·7440 = 86 256 FLOPs for 11
     * tokens (padded, 15·8016 = 120 240). --peak-tflops gives the MFU, named on a line before the steps.
     */
    @Test void modelFlopsCountTheExamplesOwnPositions(@TempDir Path dir) throws IOException {
        try (Backend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, C);
            m.initialize(be, 3);
            assertEquals(1176, ModelFlops.of(m).matmulParameters());
            java.io.ByteArrayOutputStream log = new java.io.ByteArrayOutputStream();
            TrainConfig cfg = new TrainConfig(C, 1, 0, 1, 3, 1, 1e-3f, 0f, 0, 0f, 0.9f, 0.999f, 1e-8f, 1f, 1, 0, 0, 0, 1);
            FineTuner.Result r = new FineTuner(be, m, cfg, 1, STOP_EXAMPLES, List.of(), dir, new java.io.PrintStream(log, true), "x", "byte",
                    dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint.NONE, 10).withPeakTflops(0.5).run();
            assertEquals(1, r.steps());
            var step = com.google.gson.JsonParser.parseString(Files.readAllLines(dir.resolve("metrics.jsonl")).getFirst()).getAsJsonObject();
            double flopsPerS = step.get("model_flops_per_s").getAsDouble();
            assertEquals(86_256.0 / 11, flopsPerS / step.get("tokens_per_s").getAsDouble(), 1e-9, step.toString());
            assertEquals(flopsPerS / 0.5e12, step.get("mfu").getAsDouble(), 1e-15, step.toString());
            String out = log.toString();
            assertTrue(out.contains("against a peak of 0.5 TFLOP/s (--peak-tflops)"), out);
            List<String> stepLines = out.lines().filter(l -> l.startsWith("finetune step")).toList();
            assertEquals(1, stepLines.size(), out);
            assertTrue(stepLines.stream().allMatch(l -> l.matches(".* \\| [0-9.]+ GFLOP/s \\([0-9.]+% MFU\\)")), out);
        }
    }

    private static final List<Instructions.Example> STOP_EXAMPLES = List.of(new Instructions.Example(new int[] {1, 2, 3, 4, 10}, 3),
            new Instructions.Example(new int[] {5, 6, 7, 8, 9, 1, 2, 10}, 2), new Instructions.Example(new int[] {3, 3, 10}, 1));

    /** Two epochs over three examples, one per step (6 steps), EOS 10, saving into {@code dir}. */
    private static FineTuner twoEpochsOfThree(Backend be, LlamaModel m, Path dir, List<Instructions.Example> val, java.io.PrintStream console) {
        TrainConfig cfg = new TrainConfig(C, 1, 0, 6, 1, 1, 1e-3f, 0f, 0, 0f, 0.9f, 0.999f, 1e-8f, 1f, 1, 0, 0, 0, 1);
        return new FineTuner(be, m, cfg, 2, STOP_EXAMPLES, val, dir, console, "x", "byte",
                dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint.NONE, 10);
    }
}
