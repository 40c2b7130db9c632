package dev.patchcore.train;

import com.google.gson.JsonObject;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.data.Batch;
import dev.patchcore.data.HuggingFaceTokenizerFiles;
import dev.patchcore.data.PatchMode;
import dev.patchcore.data.Plural;
import dev.patchcore.eval.LossEvaluator;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Two-stage patch-level training (paper §2): the patch stage (K > 1, context K·T read as T patches) on the first
 * λ of the budget, then the token stage (K = 1) on the rest. Only the parameters carry over: each stage gets a
 * fresh AdamW (moments, step counter) and its own warmup + cosine schedule.
 */
public final class Trainer {
    private final Backend be;
    private final TrainConfig cfg;
    private final TrainingData data;
    /** The tokenizer files every checkpoint keeps a copy of (a SentencePiece model, Hugging Face's files). */
    private final HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles;
    /** The current patch stage's projections (paper §3.7), or null. */
    private PatchProjections proj;
    private final Path runDir;
    private final PrintStream console;
    private final boolean multiEpoch;
    private final AtomicBoolean stopRequested = new AtomicBoolean();
    /** Data-parallel replicas besides the primary model (each a model on its own backend), or none. */
    private List<StepRunner.Replica> others = List.of();
    private long stopAfterGlobalStep = Long.MAX_VALUE;
    /** --peak-tflops: each device's peak for the MFU, or NaN to ask the backends ({@link Backend#peakTflops}). */
    private double peakTflopsPerDevice = Double.NaN;

    /**
     * What a stage achieved: {@code valLoss} is the last validation's token loss (in the patch stage: its weights read
     * at K = 1, on the blocks the token stage validates on), {@code patchValLoss} the patch stage's K-target loss (NaN in
     * the token stage); {@code tokensPerSecond} counts training steps only, from the second on.
     */
    public record StageResult(String stage, long steps, long fromStep, double firstLoss, double lastLoss, double valLoss,
                              double patchValLoss, double tokensPerSecond) {
        /** "N steps", or for a stage resumed inside, "steps A–B (resumed)": the steps this command trained. */
        public String stepsText() {
            return fromStep == 0 ? Plural.of(steps, "step")
                    : "steps " + (fromStep + 1) + "–" + (fromStep + steps) + " (resumed)";
        }

        /** "val token loss X (patch loss Y)", or "no validation". */
        public String validationText() {
            String s = validationText(valLoss, patchValLoss);
            return s.isEmpty() ? "no validation" : s;
        }

        static String validationText(double tokenLoss, double patchLoss) {
            if (Double.isNaN(tokenLoss) && Double.isNaN(patchLoss)) return "";
            return String.format(Locale.ROOT, "val token loss %.4f", tokenLoss)
                    + (Double.isNaN(patchLoss) ? "" : String.format(Locale.ROOT, " (patch loss %.4f)", patchLoss));
        }
    }

    public Trainer(Backend be, TrainConfig cfg, TrainingData data, Path runDir, PrintStream console, boolean multiEpoch) {
        this.be = be;
        this.cfg = cfg;
        this.data = data;
        this.tokenizerFiles = data.tokenizerFiles(cfg.model().contextLength());
        this.runDir = runDir;
        this.console = console;
        this.multiEpoch = multiEpoch;
        if (data.vocabSize() != cfg.model().vocabSize())
            throw new IllegalArgumentException("data vocabulary (" + data.vocabSize() + ", tokenizer " + data.tokenizer()
                    + ") does not match the model's vocabulary (" + cfg.model().vocabSize() + ")");
    }

    /** Stops (after saving a checkpoint) once this many steps have completed overall: simulates an interruption. */
    public void stopAfter(long globalStep) { this.stopAfterGlobalStep = globalStep; }

    /**
     * Trains data-parallel with these replicas beside the primary model (models of the same config on other backends,
     * their weights already equal to the primary's): each step's micro-batches are dealt out over all of them
     * ({@link StepRunner}). The primary validates and saves; the replicas' weights stay identical to it.
     */
    public Trainer withReplicas(List<StepRunner.Replica> replicas) {
        this.others = List.copyOf(replicas);
        return this;
    }

    /** Reports the MFU against this peak per device (TFLOP/s) instead of the backends' own ({@code --peak-tflops}). */
    public Trainer withPeakTflops(double perDevice) {
        this.peakTflopsPerDevice = perDevice;
        return this;
    }

    /** This run's devices: the primary backend, then the replicas'. */
    private List<Backend> devices() {
        List<Backend> all = new ArrayList<>(List.of(be));
        for (StepRunner.Replica r : others) all.add(r.backend());
        return all;
    }

    /** Asks the loop to save and stop at the end of the current step (e.g. from a Ctrl-C handler). */
    public void requestStop() { stopRequested.set(true); }

    /** Trains from {@code state} (RunState.start() for a new run), loading the checkpoint's weights first when resuming. */
    public List<StageResult> run(LlamaModel model, RunState state, Path resumeFrom) {
        List<Stage> stages = Stage.plan(cfg);
        List<StageResult> results = new ArrayList<>();
        if (resumeFrom != null) {
            int dropped = Metrics.dropAfter(runDir.resolve("metrics.jsonl"), state.globalStep());
            if (dropped > 0)
                console.printf("metrics.jsonl: %d records after step %d dropped (logged before the run stopped without a "
                        + "checkpoint of them; those steps run again)%n", dropped, state.globalStep());
        }
        String peakLine = ModelFlops.peakLine(peakTflopsPerDevice, devices());
        if (peakLine != null) console.println(peakLine);
        try (Metrics metrics = new Metrics(runDir.resolve("metrics.jsonl"))) {
            for (int si = state.stageIndex(); si < stages.size(); si++) {
                Stage st = stages.get(si);
                boolean resumingHere = si == state.stageIndex() && resumeFrom != null && state.stepInStage() > 0;
                BatchSource source = trainBatches(st, si);
                // Paper §3.7's projections live for the patch stage only: created (or restored) here, freed after it.
                proj = st.patchSize() > 1 && cfg.patch().projections() ? newProjections(be, st) : null;
                if (proj != null) {
                    if (resumingHere) Checkpoints.loadProjections(resumeFrom, proj, be);
                    else proj.initialize(be);
                }
                // The replicas: the primary first, then the others, each with its own copy of the projections.
                List<StepRunner.Replica> replicas = new ArrayList<>(List.of(new StepRunner.Replica(be, model, proj)));
                List<AdamW> opts = new ArrayList<>();
                StageEnd end;
                try {
                    for (StepRunner.Replica o : others) {
                        PatchProjections p = proj == null ? null : newProjections(o.backend(), st);
                        replicas.add(new StepRunner.Replica(o.backend(), o.model(), p));
                        if (p != null) StepRunner.Replica.copyWeights(be, proj.parameters(), o.backend(), p.parameters());
                    }
                    for (StepRunner.Replica rep : replicas) opts.add(optimizerOf(rep));
                    RunState from = new RunState(si, 0, state.globalStep(), null, state.tokensSeen());  // the stage's first step
                    if (resumingHere) {
                        Checkpoints.loadOptimizer(resumeFrom, opts, Checkpoints.readMeta(resumeFrom).optimizerStep());
                        if (state.samplerState() != null) restoreSampler(source, state.samplerState());
                        from = state;
                    }
                    end = runStage(model, stages, from, source, replicas, opts, metrics);
                } finally {
                    opts.forEach(AdamW::close);
                    for (StepRunner.Replica rep : replicas) if (rep.proj() != null) rep.proj().free(rep.backend());
                    proj = null;
                }
                if (end.stopped()) return results;  // inside the stage: its checkpoint is saved
                results.add(end.result());
                state = end.next();
                // A stop asked for during the stage's last step (or a --stop-after at its end) stops at the switch:
                // the stage-end checkpoint is saved, and the next stage starts on --resume.
                if (stopping(state.globalStep()) && si + 1 < stages.size()) {
                    printStopped(state.globalStep());
                    return results;
                }
            }
        }
        return results;
    }

    /**
     * The stage's training batches: in a single pass the patch stage reads the first part of the training split (its
     * share of the steps) and the token stage the rest; in multi-epoch mode both read all of it.
     */
    private BatchSource trainBatches(Stage st, int si) {
        double[] part = dataPart(cfg, st, multiEpoch);
        return data.trainBatches(st.patchSize(), st.blockPatches(), st.batch(), cfg.seed() + si, part[0], part[1], modeOf(cfg, st));
    }

    /** The part [from, to) of the training split a stage reads, as fractions. */
    private static double[] dataPart(TrainConfig cfg, Stage st, boolean multiEpoch) {
        double split = multiEpoch ? 0 : (double) cfg.patchSteps() / cfg.steps();
        return new double[] {multiEpoch || st.patchSize() > 1 ? 0 : split, multiEpoch || st.patchSize() == 1 ? 1 : split};
    }

    /**
     * Fails, as the stage would once it starts, if the part of the data a stage from {@code fromStage} on reads holds
     * no window: for a command to refuse such data before it prints its plan.
     */
    public static void requireTrainingWindows(TrainConfig cfg, TrainingData data, boolean multiEpoch, int fromStage) {
        List<Stage> stages = Stage.plan(cfg);
        for (int si = fromStage; si < stages.size(); si++) {
            Stage st = stages.get(si);
            double[] part = dataPart(cfg, st, multiEpoch);
            data.requireTrainWindow(st.patchSize(), st.blockPatches(), part[0], part[1], modeOf(cfg, st));
        }
    }

    private PatchProjections newProjections(Backend b, Stage st) {
        return new PatchProjections(b, cfg.model(), st.patchSize(), cfg.patch().inputProjection(), cfg.patch().outputProjection());
    }

    /** A fresh AdamW over the replica's model and projections. */
    private AdamW optimizerOf(StepRunner.Replica rep) {
        List<Parameter> trained = new ArrayList<>(rep.model().parameters());
        if (rep.proj() != null) trained.addAll(rep.proj().parameters());
        return new AdamW(rep.backend(), trained, cfg);
    }

    private void restoreSampler(BatchSource source, String samplerState) {
        try {
            source.restore(samplerState);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("dataset " + data.description() + " is not the data this run was "
                    + "trained on (its training split no longer matches the checkpoint's position in it); resume "
                    + "on that data, or start a new run from the checkpoint with --init-from " + runDir, e);
        }
    }

    /** Whether the run is to stop now that {@code globalStep} steps are done (--stop-after, or a stop requested). */
    private boolean stopping(long globalStep) { return globalStep >= stopAfterGlobalStep || stopRequested.get(); }

    private void printStopped(long globalStep) {
        console.printf("stopped after %s; checkpoint saved in %s (continue with --resume %s)%n",
                Plural.of(globalStep, "step"), Checkpoints.root(runDir), runDir);
    }

    /** What one validation sequence of the stage spans: K·(T+1) tokens, or K windows of T+1 tokens for mixup. */
    private String sequenceText(Stage st) {
        int t = st.blockPatches(), k = st.patchSize();
        return modeOf(st) == PatchMode.MIXUP ? k + " windows of " + (t + 1) + " tokens" : k * (t + 1) + " tokens";
    }

    private String projectionNote() {
        if (proj == null) return "";
        return proj.input() != null && proj.output() != null ? " with input and output projections"
                : proj.input() != null ? " with an input projection" : " with an output projection";
    }

    /** The patch stage forms patches as configured; the token stage has none to form. */
    private PatchMode modeOf(Stage st) { return modeOf(cfg, st); }

    private static PatchMode modeOf(TrainConfig cfg, Stage st) { return st.patchSize() > 1 ? cfg.patchMode() : PatchMode.CONSECUTIVE; }

    /** How a stage's run here ended: its result and the state after it, or neither if the run stopped inside it. */
    private record StageEnd(StageResult result, RunState next) {
        static final StageEnd STOPPED = new StageEnd(null, null);

        boolean stopped() { return result == null; }
    }

    /**
     * A stage's validation blocks: its own ({@code blocks}), and in the patch stage the token stage's too
     * ({@code tokenBlocks}, else none).
     */
    private record ValidationBlocks(List<Batch> blocks, List<Batch> tokenBlocks) {}

    private ValidationBlocks validationBlocks(Stage st) {
        int t = st.blockPatches(), k = st.patchSize();
        List<Batch> val = cfg.evalEvery() > 0 ? data.validation(k, t, st.batch(), cfg.evalBatches(), modeOf(st)) : List.of();
        // In the patch stage the same weights are also scored at K = 1, on the token stage's validation blocks (its
        // micro-batch, cfg.batch(), not the patch stage's smaller one), so the token loss is one curve over both stages.
        List<Batch> tokenVal = k > 1 && !val.isEmpty()
                ? data.validation(1, cfg.model().contextLength(), cfg.batch(), cfg.evalBatches(), PatchMode.CONSECUTIVE) : List.of();
        return new ValidationBlocks(val, tokenVal);
    }

    /**
     * Trains the stage {@code from} is in, from its step there to the stage's end or a stop: steps, console lines,
     * metrics, validations, checkpoints.
     */
    private StageEnd runStage(LlamaModel model, List<Stage> stages, RunState from, BatchSource source,
                              List<StepRunner.Replica> replicas, List<AdamW> opts, Metrics metrics) {
        int si = from.stageIndex();
        Stage st = stages.get(si);
        long startStep = from.stepInStage();
        AdamW opt = opts.getFirst();  // the primary's: its moments are the ones a checkpoint keeps
        be.resetMemoryPeak();  // each stage's own activations (its context and micro-batch differ)
        LrSchedule schedule = LrSchedule.forStage(cfg, st.steps());
        if (cfg.warmup() > st.steps() && startStep == 0)
            console.printf("note: --warmup %d is longer than the %s stage's %s: it warms up over all of them%n", cfg.warmup(), st.name(),
                    Plural.of(st.steps(), "step"));
        ValidationBlocks blocks = validationBlocks(st);
        List<Batch> val = blocks.blocks();
        printStageHeader(st, val);

        double firstLoss = Double.NaN, lastLoss = Double.NaN;
        Validation valLoss = Validation.NONE;
        long globalStep = from.globalStep(), tokensSeen = from.tokensSeen();
        StepClock clock = new StepClock();
        // The token stage's step time in patch steps, for the ETA: K (K times the positions) until a validation measures it
        double laterStepCost = st.patchSize();
        double stepFlops = ModelFlops.of(model).withProjections(proj).perStep(st), peak = ModelFlops.devicesPeak(peakTflopsPerDevice, devices());
        try (StepRunner runner = new StepRunner(replicas, st)) {
            for (long step = startStep; step < st.steps(); step++) {
                long t0 = System.nanoTime();
                float lr = schedule.at(step);
                StepRunner.Result r = runner.step(source, opts, lr);
                globalStep++;
                tokensSeen += cfg.tokensPerStep();
                long dt = System.nanoTime() - t0;
                clock.record(dt);
                if (Double.isNaN(firstLoss)) firstLoss = r.loss();
                lastLoss = r.loss();
                String diverged = StepRunner.divergence(r.loss(), r.gradNorm());
                if (diverged != null) throw divergedError(diverged, st, step);  // the step was not applied (StepRunner)
                metrics.write(trainRecord(st, step, globalStep, tokensSeen, lr, r, dt, stepFlops, peak));

                boolean last = step + 1 == st.steps();
                if ((step + 1) % cfg.logEvery() == 0 || last || step == startStep)
                    console.printf(Locale.ROOT, "%-5s step %6d/%d | loss %.4f | lr %.2e | gnorm %.3f | %s tok/s | eta %s | %s%n",
                            st.name(), step + 1, st.steps(), r.loss(), lr, r.gradNorm(),
                            human((long) clock.rate(cfg.tokensPerStep())), etaText(clock, stages, si, step + 1, laterStepCost),
                            ModelFlops.rateText(clock.rate(1) * stepFlops, peak));
                if (!val.isEmpty() && ((step + 1) % cfg.evalEvery() == 0 || last)) {
                    valLoss = validate(model, st, val, blocks.tokenBlocks(), step + 1, globalStep, metrics);
                    if (st.patchSize() > 1 && si + 1 < stages.size() && valLoss.tokenSeconds() > 0 && valLoss.patchSeconds() > 0)
                        laterStepCost = tokenStepCost(valLoss, blocks, st, stages.get(si + 1));
                }

                boolean stopping = stopping(globalStep);
                if (last) saveCheckpoint(model, null, RunState.afterStage(si, globalStep, tokensSeen));
                else if (stopping || (cfg.saveEvery() > 0 && (step + 1) % cfg.saveEvery() == 0))
                    saveCheckpoint(model, opt, new RunState(si, step + 1, globalStep, source.state(), tokensSeen));
                if (stopping && !last) {
                    printStopped(globalStep);
                    return StageEnd.STOPPED;
                }
            }
        }
        double tps = clock.rate(cfg.tokensPerStep());
        console.printf(Locale.ROOT, "== %s stage done: loss %.4f → %.4f%s, %s tok/s, %s%n", st.name(), firstLoss, lastLoss,
                valLoss.text().isEmpty() ? "" : ", " + valLoss.text(), human((long) tps), ModelFlops.rateText(clock.rate(1) * stepFlops, peak));
        String memory = be.memorySummary();  // while this stage's optimizer moments are still held (null on the CPU)
        if (memory != null) console.println("      " + memory);
        return new StageEnd(new StageResult(st.name(), st.steps() - startStep, startStep, firstLoss, lastLoss, valLoss.tokenLoss(),
                valLoss.patchLoss(), tps), RunState.afterStage(si, globalStep, tokensSeen));
    }

    /** The stage's notes on its validation, then its header line. */
    private void printStageHeader(Stage st, List<Batch> val) {
        int t = st.blockPatches(), k = st.patchSize();
        if (cfg.evalEvery() > 0 && cfg.evalBatches() == 0)
            console.printf("note: --eval-batches 0: no validation in the %s stage%n", st.name());
        else if (cfg.evalEvery() > 0 && data.valTokens() == 0)
            console.printf("note: the dataset has no validation split (prepared with --val-fraction 0, or from one document); no "
                    + "validation in the %s stage%n", st.name());
        else if (cfg.evalEvery() > 0 && val.isEmpty())
            console.printf("note: the validation split is shorter than one sequence of %s; no validation in the %s stage%n",
                    sequenceText(st), st.name());
        else if (!val.isEmpty() && val.size() * val.getFirst().batchSize() < st.batch())
            console.printf("note: the validation split holds only %s of %s; the %s stage validates on %s%n",
                    Plural.of(val.getFirst().batchSize(), "sequence"), sequenceText(st), st.name(),
                    val.getFirst().batchSize() == 1 ? "it" : "those");
        String positions = modeOf(st) == PatchMode.MIXUP ? "mixup patches (token t of " + k + " sequences each)"
                : k > 1 ? "patches" : "positions";
        console.printf(Locale.ROOT, "== %s stage: K=%d, context %d tokens as %d %s, micro-batch %d × %d accumulation, %s, %s tokens/step%n",
                st.name(), k, k * t, t, positions + projectionNote(), st.batch(), st.accum(),
                Plural.of(st.steps(), "step"), human(cfg.tokensPerStep()));
    }

    /** A diverged step's error: one line (exit code 2) saying what to change. */
    private IllegalArgumentException divergedError(String diverged, Stage st, long step) {
        return new IllegalArgumentException(diverged + " at " + st.name() + " step " + (step + 1) + "; the run stopped before that step changed the weights. "
                + (Checkpoints.exists(runDir) ? "Start a new run from its last checkpoint with --init-from " + runDir
                + " and a lower --lr" : "Lower --lr"));
    }

    /**
     * A step of the {@code next} (token) stage against one of the patch stage {@code st}, from the two forward passes a
     * validation just timed on their micro-batches.
     */
    private static double tokenStepCost(Validation v, ValidationBlocks blocks, Stage st, Stage next) {
        return v.tokenSeconds() / blocks.tokenBlocks().size() * next.accum() / (v.patchSeconds() / blocks.blocks().size() * st.accum());
    }

    /**
     * metrics.jsonl's record of a training step ({@code step} 0-based in its stage, {@code nanos} its time, {@code flops}
     * its model FLOPs, {@code peak} the devices' TFLOP/s or NaN: then no mfu).
     */
    private JsonObject trainRecord(Stage st, long step, long globalStep, long tokensSeen, float lr, StepRunner.Result r, long nanos,
                                   double flops, double peak) {
        JsonObject m = new JsonObject();
        m.addProperty("type", "train");
        m.addProperty("stage", st.name());
        m.addProperty("patch_size", st.patchSize());
        m.addProperty("step", step + 1);
        m.addProperty("global_step", globalStep);
        m.addProperty("loss", r.loss());
        m.addProperty("lr", lr);
        m.addProperty("grad_norm", r.gradNorm());
        m.addProperty("tokens", tokensSeen);
        m.addProperty("tokens_per_s", cfg.tokensPerStep() / (nanos / 1e9));
        m.addProperty("step_ms", nanos / 1e6);
        m.addProperty("model_flops_per_s", flops / (nanos / 1e9));
        if (!Double.isNaN(peak)) m.addProperty("mfu", ModelFlops.mfu(flops / (nanos / 1e9), peak));
        return m;
    }

    /**
     * Saves a checkpoint of the model (and projections) at {@code rs}, with the primary's optimizer {@code opt}; null at
     * a stage's end, where the next stage starts a fresh one.
     */
    private void saveCheckpoint(LlamaModel model, AdamW opt, RunState rs) {
        Checkpoints.save(runDir, model, proj, opt,
                new Checkpoints.Meta(Checkpoints.FORMAT, cfg, data.description(), data.tokenizer(), multiEpoch, rs,
                        opt == null ? 0 : opt.step(), data.fingerprint()),
                tokenizerFiles, be);
    }

    /** The console's ETA once {@code done} steps of stage {@code si} are done: "-" until it can be measured. */
    private static String etaText(StepClock clock, List<Stage> stages, int si, long done, double laterStepCost) {
        Stage st = stages.get(si);
        boolean last = done == st.steps();
        return clock.steps() >= etaSteps(st.steps()) || last ? duration(etaSeconds(clock.secPerStep(), st, done, si, stages, laterStepCost)) : "-";
    }

    /**
     * Steps a stage measures before its ETA is shown: 20, or a quarter of a shorter stage (2 at least). Earlier, the
     * JIT still compiles: on the CPU the default run's ETA at step 10 was about three times the time left.
     */
    static long etaSteps(long stageSteps) { return Math.max(2, Math.min(20, stageSteps / 4)); }

    /** A validation's losses: the token loss, and in the patch stage the patch loss (else NaN). */
    record Validation(double tokenLoss, double patchLoss, double tokenSeconds, double patchSeconds) {
        static final Validation NONE = new Validation(Double.NaN, Double.NaN, 0, 0);

        /** "val token loss X (patch loss Y)", or "" before any validation. */
        String text() { return StageResult.validationText(tokenLoss, patchLoss); }
    }

    /**
     * Validation: in the token stage the ordinary next-token loss. In the patch stage two numbers: the patch loss
     * (K-target loss of Eq. 3 on held-out K·T windows, the quantity being trained) and the token loss of the same
     * weights read at K = 1, which is what the final model is judged on.
     */
    private Validation validate(LlamaModel model, Stage st, List<Batch> val, List<Batch> tokenVal, long step, long globalStep, Metrics metrics) {
        long t0 = System.nanoTime();
        double loss = LossEvaluator.meanLoss(be, model, proj, val);
        double seconds = (System.nanoTime() - t0) / 1e9;
        JsonObject m = new JsonObject();
        m.addProperty("type", "val");
        m.addProperty("stage", st.name());
        m.addProperty("step", step);
        m.addProperty("global_step", globalStep);
        if (st.patchSize() > 1) {
            long t1 = System.nanoTime();
            double tokenLoss = tokenVal.isEmpty() ? Double.NaN : LossEvaluator.meanLoss(be, model, tokenVal);
            double tokenSeconds = (System.nanoTime() - t1) / 1e9;
            m.addProperty("patch_loss", loss);
            m.addProperty("token_loss", tokenLoss);
            console.printf(Locale.ROOT, "%-5s val  %6d/%d | patch loss %.4f (K=%d targets) | token loss %.4f | ppl %.2f%n", st.name(),
                    step, st.steps(), loss, st.patchSize(), tokenLoss, Math.exp(tokenLoss));
            metrics.write(m);
            return new Validation(tokenLoss, loss, tokenVal.isEmpty() ? 0 : tokenSeconds, seconds);
        }
        m.addProperty("token_loss", loss);
        console.printf(Locale.ROOT, "%-5s val  %6d/%d | token loss %.4f | ppl %.2f%n", st.name(), step, st.steps(), loss, Math.exp(loss));
        metrics.write(m);
        return new Validation(loss, Double.NaN, seconds, 0);
    }

    /** The current stage's steps left, plus the later (token) stage's at {@code laterStepCost} of this stage's steps each. */
    private static double etaSeconds(double secPerStep, Stage st, long done, int si, List<Stage> stages, double laterStepCost) {
        double eta = (st.steps() - done) * secPerStep;
        for (int j = si + 1; j < stages.size(); j++) eta += stages.get(j).steps() * secPerStep * laterStepCost;
        return eta;
    }

    static String human(long n) {
        if (n >= 1_000_000) return String.format(Locale.ROOT, "%.2fM", n / 1e6);
        if (n >= 1_000) return String.format(Locale.ROOT, "%.1fk", n / 1e3);
        return Long.toString(n);
    }

    static String duration(double s) {
        long x = Math.round(s);
        return x >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", x / 3600, x % 3600 / 60) : x >= 60 ? String.format(Locale.ROOT, "%dm%02ds", x / 60, x % 60) : x + "s";
    }
}
