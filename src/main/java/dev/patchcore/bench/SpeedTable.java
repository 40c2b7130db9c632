package dev.patchcore.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.train.AdamW;
import dev.patchcore.train.BatchSource;
import dev.patchcore.train.ModelFlops;
import dev.patchcore.train.Stage;
import dev.patchcore.train.StepRunner;
import dev.patchcore.train.TrainConfig;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The paper's Table 6 (App. B): tokens per second of full training steps (forward, backward, AdamW) for
 * the token-level baseline (K = 1, block T, accumulation A), patch level at K = 4 with block 4T and the same
 * accumulation, and at block 4T with A/4 accumulation (constant tokens per step). Tokens are counted as the
 * paper does: every token read, K per patch. Beside them each row's model FLOP/s ({@link ModelFlops}: a patch is one
 * position, so the patch rows do about 1/K of the baseline's work per token) and, where the peak is known, the MFU.
 */
public final class SpeedTable {
    /**
     * One setting's result; {@code modelTflops}: its model FLOP/s over 10^12, {@code mfu} that against the peak (NaN where
     * unknown); {@code breakdown}: where one further step's time went, op by op (null unless asked for).
     */
    public record Row(String setting, int patchSize, int block, int batch, int accum, double medianStepSeconds, double tokensPerSecond,
                      double speedup, double modelTflops, double mfu, OpProfile.Report breakdown) {}

    private final Backend be;
    private final ModelConfig model;
    private final int batch, accum, k, warmup, steps;
    private boolean breakdown, recompute;
    private double peakTflopsPerDevice = Double.NaN;
    private List<Backend> others = List.of();

    public SpeedTable(Backend be, ModelConfig model, int batch, int accum, int k, int warmup, int steps) {
        checkSettings(batch, accum, k, warmup, steps, 1, model.contextLength());
        this.be = be;
        this.model = model;
        this.batch = batch;
        this.accum = accum;
        this.k = k;
        this.warmup = warmup;
        this.steps = steps;
    }

    /** Rejects settings the table cannot time (before any backend is opened). */
    public static void checkSettings(int batch, int accum, int k, int warmup, int steps, int devices, int context) {
        if (batch < 1 || accum < 1) throw new IllegalArgumentException("--batch and --accum must be positive");
        // At K = 1 both patch-level rows would time the baseline again and print its noise as a speed-up
        if (k < 2) throw new IllegalArgumentException("--patch-size must be at least 2 (got " + k + "): at K = 1 the patch-level rows are the baseline");
        TrainConfig.requireStepFits(batch, accum, context);
        if ((long) batch * k * (context + 1) > Integer.MAX_VALUE)
            throw new IllegalArgumentException("--batch " + batch + " sequences of K·T = " + k + " × " + context + " tokens are too many");
        if (accum % k != 0) throw new IllegalArgumentException("--accum " + accum + " must be divisible by K=" + k + " for the third row");
        if (accum / k < devices)
            throw new IllegalArgumentException(devices + " devices need at least as many micro-batches per step in every setting; the third "
                    + "has --accum / K = " + accum / k + " (raise --accum)");
        if (steps < 1 || steps > 1_000_000) throw new IllegalArgumentException("--steps must lie in [1, 1000000] (timed steps per setting)");
        if (warmup < 0) throw new IllegalArgumentException("--warmup must not be negative");
    }

    /**
     * After each setting's timed steps, also run two more steps through {@link OpProfile} (the first unrecorded) and
     * print (and return) where the second one's time went. The timed steps do not run through the profiler.
     */
    public SpeedTable withBreakdown(boolean on) {
        this.breakdown = on;
        return this;
    }

    /**
     * Time data-parallel steps: a replica of the model on each of {@code others} beside the primary backend (the
     * paper's Table 6 ran on 8 GPUs). The accumulation counts micro-batches over all replicas, so each setting needs
     * at least one per replica.
     */
    public SpeedTable withReplicas(List<Backend> others) {
        this.others = List.copyOf(others);
        return this;
    }

    /** Reports the MFU against this peak per device (TFLOP/s) instead of the backends' own ({@code --peak-tflops}). */
    public SpeedTable withPeakTflops(double perDevice) {
        this.peakTflopsPerDevice = perDevice;
        return this;
    }

    /** Time the settings with activation recompute per layer ({@link LlamaModel#setRecompute}). */
    public SpeedTable withRecompute(boolean on) {
        this.recompute = on;
        return this;
    }

    public List<Row> run(java.io.PrintStream log) {
        int t = model.contextLength();
        List<Row> rows = new ArrayList<>();
        Stage[] settings = {
                new Stage("baseline", 1, batch, accum, steps, t),
                new Stage("patch_size=" + k + ", block_size=" + k * t, k, batch, accum, steps, t),
                new Stage("patch_size=" + k + ", block_size=" + k * t + ", accumulation_steps=" + accum / k, k, batch, accum / k, steps, t)};
        TrainConfig cfg = new TrainConfig(model, 1, 0, 1, batch, accum, 3e-4f, 0.1f, 0, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, 1, 0, 0, 0, 1);
        checkSettings(batch, accum, k, warmup, steps, 1 + others.size(), model.contextLength());
        LlamaModel m = new LlamaModel(be, model);
        m.initialize(be, 1);
        m.setRecompute(recompute);
        List<StepRunner.Replica> replicas = new ArrayList<>(List.of(new StepRunner.Replica(be, m, null)));
        for (Backend o : others) replicas.add(StepRunner.Replica.copyOf(be, m, o));
        // One optimizer serves all settings (the same parameters; a step's cost does not depend on the moments' values).
        // Every setting's warm-up steps come first (JIT compilation on the CPU, GEMM tuning and the scratch pool's growth
        // on CUDA), then the timed steps go round-robin over the settings, so that the machine's drift (other tenants,
        // clocks) falls on all of them alike instead of on whichever setting ran last.
        double[][] times = new double[settings.length][steps];
        String[] memory = new String[settings.length];
        List<StepRunner> runners = new ArrayList<>();
        List<BatchSource> data = new ArrayList<>();
        List<AdamW> opts = new ArrayList<>();
        try {
            for (StepRunner.Replica r : replicas) opts.add(new AdamW(r.backend(), r.model().parameters(), cfg));
            for (Stage s : settings) {
                runners.add(new StepRunner(replicas, s));
                data.add(new RandomTokens(model.vocabSize(), 7));
            }
            for (int i = 0; i < warmup; i++)
                for (int j = 0; j < settings.length; j++) runners.get(j).step(data.get(j), opts, 1e-5f);
            for (StepRunner.Replica r : replicas) r.backend().synchronize();
            for (int i = 0; i < steps; i++) {
                for (int j = 0; j < settings.length; j++) {
                    if (i == 0) be.resetMemoryPeak();
                    long t0 = System.nanoTime();
                    runners.get(j).step(data.get(j), opts, 1e-5f);
                    for (StepRunner.Replica r : replicas) r.backend().synchronize();
                    times[j][i] = (System.nanoTime() - t0) / 1e9;
                    if (i == 0) memory[j] = be.memorySummary();  // this setting's scratch peak, the moments held (null on the CPU)
                }
            }
        } finally {
            runners.forEach(StepRunner::close);
            opts.forEach(AdamW::close);
        }
        double base = 0;
        ModelFlops flops = ModelFlops.of(m);
        List<Backend> devices = new ArrayList<>(List.of(be));
        devices.addAll(others);
        double peak = ModelFlops.devicesPeak(peakTflopsPerDevice, devices);
        String peakLine = ModelFlops.peakLine(peakTflopsPerDevice, devices);
        if (peakLine != null) log.println(peakLine);  // what the MFU column is measured against
        OpProfile profile = breakdown ? OpProfile.of(be) : null;
        for (int j = 0; j < settings.length; j++) {
            Stage s = settings[j];
            OpProfile.Report report = null;
            if (profile != null) {  // its own optimizer and runner on the profiler's backend, after the timed ones are freed
                try (AdamW opt = new AdamW(profile.backend(), m.parameters(), cfg);
                     StepRunner runner = new StepRunner(profile.backend(), m, s)) {
                    runner.step(data.get(j), opt, 1e-5f);  // unrecorded: first-call costs (GEMM tuning, scratch growth) stay out
                    profile.start();
                    try {
                        runner.step(data.get(j), opt, 1e-5f);
                    } catch (RuntimeException | Error e) {
                        profile.discard();
                        throw e;
                    }
                    report = profile.stop();
                } catch (RuntimeException e) {
                    // The timed steps are done: a failing breakdown costs its own lines, not the table.
                    log.printf("warning: the op-by-op breakdown failed at %s (%s); the table follows without breakdowns%n",
                            s.name(), e.getMessage());
                    be.releaseScratch();
                    profile = null;
                }
            }
            double[] sorted = times[j].clone();
            Arrays.sort(sorted);
            double median = steps % 2 == 1 ? sorted[steps / 2] : (sorted[steps / 2 - 1] + sorted[steps / 2]) / 2;
            long tokensPerStep = (long) s.batch() * s.accum() * s.patchSize() * t;
            double tps = tokensPerStep / median;
            if (rows.isEmpty()) base = tps;
            double flopsPerSecond = flops.perStep(s) / median;
            Row r = new Row(s.name(), s.patchSize(), s.patchSize() * t, s.batch(), s.accum(), median, tps, tps / base,
                    flopsPerSecond / 1e12, ModelFlops.mfu(flopsPerSecond, peak), report);
            log.printf(Locale.ROOT, "  %-52s median step %.3f s, %.0f tokens/s, %s%n", r.setting(), median, tps,
                    ModelFlops.rateText(flopsPerSecond, peak));
            if (memory[j] != null) log.println("    " + memory[j]);
            if (report != null) {
                log.println("  one more step, op by op (the marks around every op make it slower than the timed steps):");
                log.print(OpProfile.format(report, 14));
            }
            rows.add(r);
        }
        return rows;
    }

    /** The paper's three columns, then the model TFLOP/s, and the MFU where the peak is known. */
    public static String markdown(List<Row> rows) {
        boolean mfu = rows.stream().noneMatch(r -> Double.isNaN(r.mfu()));
        StringBuilder sb = new StringBuilder("| Settings | Tokens / sec | Speed-up | Model TFLOP/s |" + (mfu ? " MFU |" : "")
                + "\n|---|---:|---:|---:|" + (mfu ? "---:|" : "") + "\n");
        for (Row r : rows)
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.2f× | %s |%s%n", r.setting(), human(r.tokensPerSecond()), r.speedup(),
                    r.modelTflops() >= 1 ? String.format(Locale.ROOT, "%.1f", r.modelTflops()) : String.format(Locale.ROOT, "%.3f", r.modelTflops()),
                    mfu ? String.format(Locale.ROOT, " %.1f%% |", 100 * r.mfu()) : ""));
        return sb.toString();
    }

    /** The table as JSON; {@code devices}: the data-parallel replicas the steps ran on. */
    public static String json(List<Row> rows, String backend, ModelConfig model, int devices) {
        JsonObject o = new JsonObject();
        o.addProperty("backend", backend);
        o.addProperty("devices", devices);
        o.addProperty("preset", model.name());
        o.addProperty("context", model.contextLength());
        JsonArray a = new JsonArray();
        for (Row r : rows) a.add(BenchJson.GSON.toJsonTree(r));
        o.add("rows", a);
        return BenchJson.GSON.toJson(o);
    }

    private static String human(double v) {
        return v >= 1e6 ? String.format(Locale.ROOT, "%.2fM", v / 1e6) : v >= 1e3 ? String.format(Locale.ROOT, "%.1fK", v / 1e3) : String.format(Locale.ROOT, "%.0f", v);
    }

    /** Uniform random token ids: speed does not depend on the text. */
    private static final class RandomTokens implements BatchSource {
        private final int vocab;
        private final SplittableRandom rng;

        RandomTokens(int vocab, long seed) {
            this.vocab = vocab;
            this.rng = new SplittableRandom(seed);
        }

        @Override public void next(int[] inputs, int[] targets) {
            for (int i = 0; i < inputs.length; i++) inputs[i] = rng.nextInt(vocab);
            for (int i = 0; i < targets.length; i++) targets[i] = rng.nextInt(vocab);
        }

        @Override public String state() { return ""; }

        @Override public void restore(String state) { /* stateless for benchmarking */ }
    }
}
