package dev.patchcore.train;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

class TrainingTest {
    static final ModelConfig MICRO = new ModelConfig("micro", 257, 32, 88, 2, 2, 16, 10000f, 1e-5f);
    @TempDir static Path shared;
    static Path dataset;

    @BeforeAll static void data() throws IOException {
        dataset = TestData.prepare(shared);
    }

    static TrainConfig config(long steps, double lambda, float lr) {
        return new TrainConfig(MICRO, 4, lambda, steps, 8, 1, lr, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2, 0, 1000);
    }

    private static TrainConfig config(long steps, double lambda, float lr, PatchOptions patch) {
        return new TrainConfig(MICRO, 4, lambda, steps, 8, 1, lr, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2, 0, 1000, patch);
    }

    /** One fixed batch, repeated: a correct forward/backward/optimizer drives the loss close to zero. */
    @Test void overfitsOneBatch() {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MICRO);
            m.initialize(be, 5);
            TrainConfig cfg = new TrainConfig(MICRO, 1, 0, 1, 4, 1, 1e-2f, 1f, 0, 0f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1);
            Stage st = new Stage("token", 1, 4, 1, 1, 16);
            java.util.SplittableRandom r = new java.util.SplittableRandom(3);
            int[] in = new int[4 * 16], tg = new int[4 * 16];
            for (int i = 0; i < in.length; i++) { in[i] = r.nextInt(257); tg[i] = r.nextInt(257); }
            BatchSource fixed = new BatchSource() {
                @Override public void next(int[] inputs, int[] targets) {
                    System.arraycopy(in, 0, inputs, 0, in.length);
                    System.arraycopy(tg, 0, targets, 0, tg.length);
                }
                @Override public String state() { return ""; }
                @Override public void restore(String s) { }
            };
            double first = Double.NaN, last = Double.NaN;
            try (AdamW opt = new AdamW(be, m.parameters(), cfg); StepRunner runner = new StepRunner(be, m, st)) {
                for (int i = 0; i < 150; i++) {
                    double loss = runner.step(fixed, opt, 1e-2f).loss();
                    if (i == 0) first = loss;
                    last = loss;
                }
            }
            assertTrue(first > 5, "initial loss near ln(257) = 5.55, was " + first);
            assertTrue(last < 0.1, "loss after 150 steps on one batch: " + last);
        }
    }

    @Test void twoStageRunLowersLossInBothStages(@TempDir Path run) {
        try (Backend be = new CpuBackend()) {
            TrainConfig cfg = config(60, 0.5, 3e-3f);
            LlamaModel m = new LlamaModel(be, MICRO);
            m.initialize(be, cfg.seed());
            Trainer t = new Trainer(be, cfg, ShardTrainingData.open(dataset.toString()), run, quiet(), false);
            List<Trainer.StageResult> r = t.run(m, RunState.start(), null);
            assertEquals(2, r.size());
            assertEquals("patch", r.get(0).stage());
            assertEquals("token", r.get(1).stage());
            for (Trainer.StageResult s : r) assertTrue(s.lastLoss() < s.firstLoss() - 0.2, s.toString());
            assertTrue(Checkpoints.exists(run));
            Path ckpt = Checkpoints.latest(run);
            var hf = com.google.gson.JsonParser.parseString(Files.readString(ckpt.resolve("config.json"))).getAsJsonObject();
            assertEquals("LlamaForCausalLM", hf.getAsJsonArray("architectures").get(0).getAsString());
            // The vocabulary's 257 rows (not the 320 of the padded matrices): a Hugging Face model read from the
            // checkpoint has no extra logits, so it scores text as patchcore does.
            assertEquals(MICRO.vocabSize(), hf.get("vocab_size").getAsInt());
            try (var st = new dev.patchcore.checkpoint.SafeTensors.Reader(ckpt.resolve(Checkpoints.MODEL))) {
                assertArrayEquals(new int[] {MICRO.vocabSize(), MICRO.dim()}, st.shape("lm_head.weight"));
                assertArrayEquals(new int[] {MICRO.vocabSize(), MICRO.dim()}, st.shape("model.embed_tokens.weight"));
                // Read back into a model: the same weights, padding rows zero.
                LlamaModel back = new LlamaModel(be, MICRO);
                Checkpoints.loadWeights(ckpt, back, be);
                for (int i = 0; i < m.parameters().size(); i++)
                    assertArrayEquals(be.download(m.parameters().get(i).master()), be.download(back.parameters().get(i).master()),
                            m.parameters().get(i).name());
                assertArrayEquals(new int[] {MICRO.ffnDim(), MICRO.dim()}, st.shape("model.layers.1.mlp.gate_proj.weight"));
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test void stagePlanKeepsTokensPerStep() {
        TrainConfig c = new TrainConfig(MICRO, 4, 2.0 / 3, 300, 16, 1, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1);
        List<Stage> plan = Stage.plan(c);
        assertEquals(200, plan.get(0).steps());
        assertEquals(100, plan.get(1).steps());
        for (Stage s : plan) assertEquals(16L * 16, (long) s.batch() * s.accum() * s.patchSize() * 16);
        // Table 6: accumulation 8 at K=1 becomes 2 at K=4 with the same micro-batch.
        TrainConfig paper = new TrainConfig(MICRO, 4, 2.0 / 3, 3, 4, 8, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1);
        assertEquals(new Stage("patch", 4, 4, 2, 2, MICRO.contextLength()), Stage.plan(paper).get(0));
        // §3.2's context ablation: the patch stage reads T tokens (T/K patches), as many sequences per step as the token stage.
        TrainConfig shortContext = new TrainConfig(MICRO, 4, 2.0 / 3, 3, 4, 8, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1,
                new PatchOptions(dev.patchcore.data.PatchMode.CONSECUTIVE, false, false, true));
        assertEquals(new Stage("patch", 4, 4, 8, 2, MICRO.contextLength() / 4), Stage.plan(shortContext).get(0));
        assertEquals(MICRO.contextLength(), Stage.plan(shortContext).get(1).blockPatches(), "the token stage reads T");
        assertEquals(List.of(new Stage("token", 1, 16, 1, 300, MICRO.contextLength())), Stage.plan(new TrainConfig(MICRO, 4, 0, 300, 16, 1, 3e-4f, 0.1f, -1, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1)));
    }

    /**
     * Older versions did not check the optimizer settings' ranges, and Gson reads their trainer.json through the
     * constructor: it accepts them; only a new run checks (checkRecipe).
     */
    @Test void recipeRangesAreCheckedForNewRunsOnly() {
        TrainConfig old = new TrainConfig(MICRO, 4, 0.5, 8, 4, 1, 3e-4f, 1.5f, -1, 0.1f, 0.9f, 0.95f, 0f, 1f, 1, 0, 0, 0, 0);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, old::checkRecipe);
        assertTrue(e.getMessage().contains("--min-lr-ratio"), e.getMessage());
    }

    @Test void scheduleWarmsUpThenDecays() {
        LrSchedule s = new LrSchedule(1f, 0.1f, 10, 110);
        assertEquals(0.1f, s.at(0), 1e-6);
        assertEquals(1f, s.at(9), 1e-6);
        assertEquals(1f, s.at(10), 1e-6);
        assertEquals(0.1f, s.at(109), 1e-6);
        assertTrue(s.at(60) < s.at(30));
        assertEquals(0.1f, new LrSchedule(1f, 0.1f, 2, 3).at(2), 1e-6, "a decay of one step is at the floor");
    }

    /**
     * A run stopped hard (no checkpoint of its last steps) logged steps it will take again: resuming drops them (and a
     * torn last line), so metrics.jsonl holds each step once and equals an uninterrupted run's.
     */
    @Test void resumeDropsMetricsLoggedAfterItsCheckpoint(@TempDir Path dir) throws IOException {
        TrainConfig cfg = config(8, 0.5, 3e-3f);
        Path full = dir.resolve("full"), run = dir.resolve("run");
        trainAndReadLosses(cfg, full, Long.MAX_VALUE);
        trainAndReadLosses(cfg, run, 5);
        Path metrics = run.resolve("metrics.jsonl");
        Files.writeString(metrics, "{\"type\":\"train\",\"global_step\":6,\"loss\":9.0}\n{\"type\":\"val\",\"global_step\":6}\n{\"type\":\"tra",
                java.nio.file.StandardOpenOption.APPEND);
        resume(cfg, run);
        assertEquals(Files.readAllLines(full.resolve("metrics.jsonl")).stream().map(TrainingTest::withoutTimes).toList(),
                Files.readAllLines(metrics).stream().map(TrainingTest::withoutTimes).toList());
    }

    /** A metrics line without its wall-clock fields. */
    private static String withoutTimes(String line) {
        var o = com.google.gson.JsonParser.parseString(line).getAsJsonObject();
        o.remove("tokens_per_s");
        o.remove("step_ms");
        o.remove("model_flops_per_s");
        return o.toString();
    }

    /** Interrupt (save + stop) at a step, resume from the folder, and compare every step's loss bit for bit. */
    @Test void resumeIsBitIdenticalInPatchAndTokenStage(@TempDir Path dir) throws IOException {
        TrainConfig cfg = config(12, 0.5, 3e-3f);
        Map<Long, Double> reference = trainAndReadLosses(cfg, dir.resolve("full"), Long.MAX_VALUE);
        assertEquals(12, reference.size());
        for (long stopAt : new long[] {3, 6, 9}) { // inside the patch stage, at the switch, inside the token stage
            Path run = dir.resolve("stop" + stopAt);
            trainAndReadLosses(cfg, run, stopAt);
            Map<Long, Double> resumed = resume(cfg, run);
            assertEquals(reference, resumed, "interrupted after " + stopAt + " steps");
        }
    }

    /**
     * The patch-stage variants resume exactly too: paper §3.7's projections (their weights and moments are in the
     * checkpoint) and App. C's mixup sampler (its state is). Their patch stages differ from the method's.
     */
    @Test void patchVariantsResumeBitIdenticallyAndTrain(@TempDir Path dir) throws IOException {
        Map<Long, Double> plain = trainAndReadLosses(config(8, 0.5, 3e-3f), dir.resolve("plain"), Long.MAX_VALUE);
        List<PatchOptions> variants = List.of(new PatchOptions(dev.patchcore.data.PatchMode.CONSECUTIVE, true, true),
                new PatchOptions(dev.patchcore.data.PatchMode.MIXUP, false, false),
                new PatchOptions(dev.patchcore.data.PatchMode.CONSECUTIVE, false, false, true));
        for (int v = 0; v < variants.size(); v++) {
            PatchOptions p = variants.get(v);
            TrainConfig cfg = config(8, 0.5, 3e-3f, p);
            Path full = dir.resolve("full-" + v);
            Map<Long, Double> reference = trainAndReadLosses(cfg, full, Long.MAX_VALUE);
            assertEquals(8, reference.size());
            assertNotEquals(plain.get(3L), reference.get(3L), p + " changes the patch stage");
            assertEquals(p.projections(), Checkpoints.hasProjections(full.resolve("checkpoints/step-00000004")),
                    "the patch stage's last checkpoint keeps the projections");
            assertFalse(Checkpoints.hasProjections(full.resolve("checkpoints/step-00000008")), "the token stage has none");
            Path run = dir.resolve("stop-" + v);
            trainAndReadLosses(cfg, run, 2);
            assertEquals(reference, resume(cfg, run), p + " interrupted after 2 steps");
        }
    }

    /** A stop asked for during a stage's last step ends the run at the switch: no token-stage step runs. */
    @Test void stopDuringThePatchStagesLastStepStopsAtTheSwitch(@TempDir Path run) throws IOException {
        TrainConfig cfg = config(2, 0.5, 3e-3f);  // one patch step, one token step
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MICRO);
            m.initialize(be, cfg.seed());
            Trainer t = new Trainer(be, cfg, ShardTrainingData.open(dataset.toString()), run, quiet(), false);
            t.requestStop();
            List<Trainer.StageResult> r = t.run(m, RunState.start(), null);
            assertEquals(List.of("patch"), r.stream().map(Trainer.StageResult::stage).toList());
        }
        assertEquals(List.of(1L), List.copyOf(losses(run).keySet()), "only the patch stage's step was trained");
        Checkpoints.Meta meta = Checkpoints.readMeta(Checkpoints.latest(run));
        assertEquals(1, meta.state().stageIndex(), "the saved state starts the token stage");
        assertEquals(2, resume(cfg, run).size(), "--resume trains the token stage's step");
    }

    /**
     * latest pointed back by hand: the checkpoints the run resumes from are kept, and a folder of a later step is
     * replaced whole when the run reaches that step again (no file of the abandoned one survives).
     */
    @Test void checkpointsAfterLatestWasPointedBack(@TempDir Path dir) throws IOException {
        TrainConfig cfg = new TrainConfig(MICRO, 4, 0.5, 8, 8, 1, 3e-3f, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2, 1, 1000);
        Path run = dir.resolve("run"), root = Checkpoints.root(run), aside = dir.resolve("aside");
        Map<Long, Double> reference = trainAndReadLosses(cfg, dir.resolve("reference"), Long.MAX_VALUE);
        trainAndReadLosses(cfg, run, 6);
        assertEquals(List.of("step-00000005", "step-00000006"), checkpointNames(root));
        copyTree(root, aside);
        resume(cfg, run);
        assertEquals(List.of("step-00000007", "step-00000008"), checkpointNames(root));
        copyTree(aside, root);  // step-5 and step-6 back, and latest → step-6
        Files.writeString(root.resolve("step-00000008/stale.txt"), "from the abandoned steps");

        Path ckpt = Checkpoints.latest(run);
        Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, cfg.model());
            Checkpoints.loadWeights(ckpt, m, be);
            Trainer t = new Trainer(be, cfg, ShardTrainingData.open(meta.dataset()), run, quiet(), false);
            t.stopAfter(7);
            t.run(m, meta.state(), ckpt);
        }
        assertEquals(List.of("step-00000006", "step-00000007", "step-00000008"), checkpointNames(root),
                "step 7 saved: the two newest up to it are kept, step 8 is left until the run gets there");
        assertTrue(Files.exists(root.resolve("step-00000008/stale.txt")));
        assertEquals(reference, resume(cfg, run));
        assertEquals(List.of("step-00000007", "step-00000008"), checkpointNames(root));
        assertFalse(Files.exists(root.resolve("step-00000008/stale.txt")), "step 8 was written into a cleared folder");

        // A folder of a step the resumed run passes without saving there (saves every 2 steps: 6, 8) is removed, not
        // kept as one of the two newest in place of the run's own.
        TrainConfig every2 = new TrainConfig(MICRO, 4, 0.5, 8, 8, 1, 3e-3f, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2, 2, 1000);
        Path run2 = dir.resolve("run2"), root2 = Checkpoints.root(run2);
        Map<Long, Double> reference2 = trainAndReadLosses(every2, run2, Long.MAX_VALUE);
        assertEquals(List.of("step-00000006", "step-00000008"), checkpointNames(root2));
        copyTree(root2.resolve("step-00000006"), root2.resolve("step-00000007"));  // stands for an abandoned step 7
        Files.writeString(root2.resolve("latest"), "step-00000006\n");
        assertEquals(reference2, resume(every2, run2));
        assertEquals(List.of("step-00000006", "step-00000008"), checkpointNames(root2));

        // latest pointed at a copy under another name: its step (from its trainer.json) bounds what lies in between.
        copyTree(root2.resolve("step-00000006"), root2.resolve("backup"));
        copyTree(root2.resolve("step-00000006"), root2.resolve("step-00000007"));
        Files.writeString(root2.resolve("latest"), "backup\n");
        assertEquals(reference2, resume(every2, run2));
        assertEquals(List.of("backup", "step-00000006", "step-00000008"), checkpointNames(root2));
    }

    /** Checkpoint folders are named in ASCII digits whatever the default locale (Arabic ones format %08d otherwise). */
    @Test void checkpointNamesDoNotDependOnTheLocale(@TempDir Path dir) throws IOException {
        java.util.Locale saved = java.util.Locale.getDefault();
        try {
            java.util.Locale.setDefault(java.util.Locale.forLanguageTag("ar-EG"));
            assertNotEquals("00000002", String.format("%08d", 2), "this locale must format digits of its own for the test to mean anything");
            Path run = dir.resolve("run");
            trainAndReadLosses(config(2, 0.5, 3e-3f), run, Long.MAX_VALUE);
            assertEquals(List.of("step-00000001", "step-00000002"), checkpointNames(Checkpoints.root(run)));
        } finally {
            java.util.Locale.setDefault(saved);
        }
    }

    private static List<String> checkpointNames(Path root) throws IOException {
        try (var s = Files.list(root)) {
            return s.filter(Files::isDirectory).map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (var s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path target = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(target);
                else Files.copy(p, target, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    private Map<Long, Double> trainAndReadLosses(TrainConfig cfg, Path run, long stopAfter) throws IOException {
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, MICRO);
            m.initialize(be, cfg.seed());
            Trainer t = new Trainer(be, cfg, ShardTrainingData.open(dataset.toString()), run, quiet(), false);
            t.stopAfter(stopAfter);
            t.run(m, RunState.start(), null);
        }
        return losses(run);
    }

    private Map<Long, Double> resume(TrainConfig cfg, Path run) throws IOException {
        Path ckpt = Checkpoints.latest(run);
        Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
        assertEquals(cfg, meta.train());
        try (Backend be = new CpuBackend()) {
            LlamaModel m = new LlamaModel(be, meta.train().model());
            Checkpoints.loadWeights(ckpt, m, be);
            new Trainer(be, meta.train(), ShardTrainingData.open(meta.dataset()), run, quiet(), false).run(m, meta.state(), ckpt);
        }
        return losses(run);
    }

    /** global step → training loss; a step logged twice (before and after an interruption) keeps its last value. */
    static Map<Long, Double> losses(Path run) throws IOException {
        Map<Long, Double> m = new TreeMap<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            var o = com.google.gson.JsonParser.parseString(line).getAsJsonObject();
            if (o.get("type").getAsString().equals("train")) m.put(o.get("global_step").getAsLong(), o.get("loss").getAsDouble());
        }
        return m;
    }

    static PrintStream quiet() { return new PrintStream(new ByteArrayOutputStream()); }
}
