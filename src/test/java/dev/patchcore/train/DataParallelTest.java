package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.data.PatchMode;
import dev.patchcore.model.LlamaModel;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Data parallelism over replicas (here CPU backends standing in for GPUs): a step dealt out over N replicas is the
 * step one backend takes (up to the order in which the micro-batches' gradients are added), the replicas' weights stay
 * bit for bit the primary's, and a data-parallel run resumes exactly.
 */
class DataParallelTest {
    @TempDir static Path shared;
    static Path dataset;

    @BeforeAll static void data() throws IOException {
        dataset = TestData.prepare(shared);
    }

    /** Micro-batch 1 × 8 accumulation: 8 micro-batches per token step, 2 per patch step (K = 4). */
    private static TrainConfig config(long steps, PatchOptions patch) {
        return new TrainConfig(TrainingTest.MICRO, 4, 0.5, steps, 1, 8, 3e-3f, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2, 0,
                1000, patch);
    }

    @Test void replicasTakeTheSingleBackendsStepsAndStayIdentical(@TempDir Path dir) throws IOException {
        for (PatchOptions p : List.of(PatchOptions.DEFAULT, new PatchOptions(PatchMode.CONSECUTIVE, true, true))) {
            TrainConfig cfg = config(8, p);
            Map<Long, Double> single = train(cfg, dir.resolve("single-" + p.projections()), 1, Long.MAX_VALUE);
            Map<Long, Double> two = train(cfg, dir.resolve("two-" + p.projections()), 2, Long.MAX_VALUE);
            assertEquals(single.keySet(), two.keySet());
            for (long step : single.keySet())
                assertEquals(single.get(step), two.get(step), 1e-6 * single.get(step), p + ", step " + step);
        }
    }

    /**
     * Three replicas, chunks of 1000 floats: every replica owns chunks (the reduce-scatter's owners rotate), each sums
     * its own copy first; the run still matches one backend's and the replicas stay identical.
     */
    @Test void threeReplicasOwningRotatingChunksMatchOneBackend(@TempDir Path dir) throws IOException {
        TrainConfig cfg = new TrainConfig(TrainingTest.MICRO, 4, 0.5, 6, 1, 12, 3e-3f, 0.1f, 2, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 99, 0, 2,
                0, 1000, PatchOptions.DEFAULT);  // 3 micro-batches per patch step, 12 per token step
        Map<Long, Double> single = train(cfg, dir.resolve("single"), 1, Long.MAX_VALUE);
        int saved = GradientSum.chunk;
        GradientSum.chunk = 1000;
        try {
            Map<Long, Double> three = train(cfg, dir.resolve("three"), 3, Long.MAX_VALUE);
            assertEquals(single.keySet(), three.keySet());
            for (long step : single.keySet()) assertEquals(single.get(step), three.get(step), 1e-6 * single.get(step), "step " + step);
        } finally {
            GradientSum.chunk = saved;
        }
    }

    /**
     * Gradients larger than the sum's buffer go through it in chunks (here 1000 floats: the embedding in 9, a ragged
     * last). With two replicas each chunk's sum is g0 + g1 whichever owns it (addition commutes), so the runs are equal.
     */
    @Test void chunkedGradientSumsGiveTheSameRun(@TempDir Path dir) throws IOException {
        TrainConfig cfg = config(4, PatchOptions.DEFAULT);
        Map<Long, Double> whole = train(cfg, dir.resolve("whole"), 2, Long.MAX_VALUE);
        int saved = GradientSum.chunk;
        GradientSum.chunk = 1000;
        try {
            assertEquals(whole, train(cfg, dir.resolve("chunked"), 2, Long.MAX_VALUE));
        } finally {
            GradientSum.chunk = saved;
        }
    }

    @Test void aDataParallelRunResumesExactly(@TempDir Path dir) throws IOException {
        TrainConfig cfg = config(8, PatchOptions.DEFAULT);
        Map<Long, Double> reference = train(cfg, dir.resolve("full"), 2, Long.MAX_VALUE);
        for (long stopAt : new long[] {2, 6}) {  // inside the patch stage, inside the token stage
            Path run = dir.resolve("stop" + stopAt);
            train(cfg, run, 2, stopAt);
            Path ckpt = Checkpoints.latest(run);
            Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
            runWithReplicas(meta.train(), run, 2, Long.MAX_VALUE, meta.state(), ckpt);
            assertEquals(reference, TrainingTest.losses(run), "interrupted after " + stopAt + " steps");
        }
    }

    /** bench speed --devices: the speed table's steps dealt out over replicas. */
    @Test void theSpeedTableTimesDataParallelSteps() {
        try (Backend a = new CpuBackend(); Backend b = new CpuBackend()) {
            var tiny = dev.patchcore.config.ModelConfig.preset("tiny").withContext(16);
            var out = new java.io.PrintStream(new java.io.ByteArrayOutputStream());
            List<dev.patchcore.bench.SpeedTable.Row> rows = new dev.patchcore.bench.SpeedTable(a, tiny, 2, 8, 4, 0, 1)
                    .withReplicas(List.of(b)).run(out);
            assertEquals(3, rows.size());
            assertEquals(1.0, rows.getFirst().speedup());
            for (var r : rows) assertTrue(r.tokensPerSecond() > 0, r.toString());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new dev.patchcore.bench.SpeedTable(a, tiny, 2, 4, 4, 0, 1).withReplicas(List.of(b)).run(out));
            assertTrue(e.getMessage().contains("2 devices need at least as many micro-batches"), e.getMessage());
        }
    }

    @Test void aReplicaNeedsAMicroBatchOfItsOwn() {
        try (Backend a = new CpuBackend(); Backend b = new CpuBackend()) {
            LlamaModel ma = new LlamaModel(a, TrainingTest.MICRO), mb = new LlamaModel(b, TrainingTest.MICRO);
            Stage st = new Stage("token", 1, 1, 1, 1, 16);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new StepRunner(List.of(new StepRunner.Replica(a, ma, null), new StepRunner.Replica(b, mb, null)), st));
            assertTrue(e.getMessage().contains("2 replicas need at least as many micro-batches per step"), e.getMessage());
        }
    }

    /**
     * finetune --devices: 3 replicas match one backend's fine-tuning, including a last step with fewer micro-batches
     * than replicas (8 examples, 2 per micro-batch, 3 micro-batches per step: each epoch's second step has 1), and stay identical.
     */
    @Test void fineTuningOverReplicasMatchesOneBackend(@TempDir Path dir) throws IOException {
        var c = dev.patchcore.model.ModelGradientTest.C;  // vocabulary 11, T = 5
        List<Instructions.Example> examples = new ArrayList<>();
        java.util.SplittableRandom r = new java.util.SplittableRandom(5);
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[2 + r.nextInt(5)];
            for (int j = 0; j < ids.length; j++) ids[j] = r.nextInt(10);
            ids[ids.length - 1] = 10;
            examples.add(new Instructions.Example(ids, 1 + r.nextInt(ids.length - 1)));
        }
        TrainConfig cfg = new TrainConfig(c, 1, 0, 4, 2, 3, 3e-3f, 0f, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 1f, 7, 0, 0, 0, 1);
        List<Map<Long, Double>> runs = new ArrayList<>();
        for (int n : new int[] {1, 3}) {
            List<Backend> backends = new ArrayList<>();
            try {
                for (int i = 0; i < n; i++) backends.add(new CpuBackend());
                Backend be = backends.getFirst();
                LlamaModel primary = new LlamaModel(be, c);
                primary.initialize(be, 3);
                List<StepRunner.Replica> others = new ArrayList<>();
                for (Backend b : backends.subList(1, n)) others.add(StepRunner.Replica.copyOf(be, primary, b));
                Path run = dir.resolve("ft" + n);
                FineTuner.Result res = new FineTuner(be, primary, cfg, 2, examples, examples.subList(0, 3), run, TrainingTest.quiet(), "x",
                        "byte", dev.patchcore.data.HuggingFaceTokenizerFiles.Checkpoint.NONE, 10).withReplicas(others).run();
                assertEquals(4, res.steps(), "2 epochs of 2 steps");
                runs.add(TrainingTest.losses(run));
                for (StepRunner.Replica o : others)
                    for (int i = 0; i < primary.parameters().size(); i++)
                        assertArrayEquals(be.download(primary.parameters().get(i).master()),
                                o.backend().download(o.model().parameters().get(i).master()), "replica weights");
            } finally {
                backends.forEach(Backend::close);
            }
        }
        assertEquals(4, runs.get(0).size());
        assertEquals(runs.get(0).keySet(), runs.get(1).keySet());
        for (long step : runs.get(0).keySet())
            assertEquals(runs.get(0).get(step), runs.get(1).get(step), 1e-6 * runs.get(0).get(step), "fine-tuning step " + step);
    }

    private static Map<Long, Double> train(TrainConfig cfg, Path run, int replicas, long stopAfter) throws IOException {
        runWithReplicas(cfg, run, replicas, stopAfter, RunState.start(), null);
        return TrainingTest.losses(run);
    }

    /** Trains on a primary CPU backend and {@code n - 1} more; at the end every replica's weights equal the primary's. */
    private static void runWithReplicas(TrainConfig cfg, Path run, int n, long stopAfter, RunState state, Path resumeFrom) {
        List<Backend> backends = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) backends.add(new CpuBackend());
            Backend be = backends.getFirst();
            LlamaModel primary = new LlamaModel(be, cfg.model());
            if (resumeFrom != null) Checkpoints.loadWeights(resumeFrom, primary, be);
            else primary.initialize(be, cfg.seed());
            List<StepRunner.Replica> others = new ArrayList<>();
            for (Backend b : backends.subList(1, n)) others.add(StepRunner.Replica.copyOf(be, primary, b));
            Trainer t = new Trainer(be, cfg, ShardTrainingData.open(dataset.toString()), run, TrainingTest.quiet(), false).withReplicas(others);
            t.stopAfter(stopAfter);
            t.run(primary, state, resumeFrom);
            for (StepRunner.Replica o : others)
                for (int i = 0; i < primary.parameters().size(); i++) {
                    Parameter p = primary.parameters().get(i), q = o.model().parameters().get(i);
                    assertArrayEquals(be.download(p.master()), o.backend().download(q.master()), p.name() + " differs on a replica");
                }
        } finally {
            backends.forEach(Backend::close);
        }
    }
}
