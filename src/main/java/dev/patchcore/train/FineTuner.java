package dev.patchcore.train;

import com.google.gson.JsonObject;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.data.BatchSampler;
import dev.patchcore.data.HuggingFaceTokenizerFiles;
import dev.patchcore.data.Plural;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import dev.patchcore.train.Instructions.Example;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Instruction tuning of a pretrained model (paper §3.1: Alpaca-GPT4 before MT-Bench): token-level training on
 * {@link Instructions} examples, one per sequence, with the loss on the response tokens only. The masking needs no
 * new kernel: the fused loss writes the gradient of every row in place over the logits, and the rows of prompt and
 * padding positions are zeroed before the backward pass; the gradient scale is 1 / (scored targets in the step), so a
 * step minimizes the mean loss per response token. Fresh AdamW, linear warmup then cosine decay, epochs over a seeded
 * shuffle; checkpoints at each epoch's end and where a stop was asked for (weights only: a fine-tuning run is not
 * resumable).
 */
public final class FineTuner {
    /** Marks a fine-tuning run's dataset in {@code trainer.json}, so {@code train --resume} can refuse it. */
    public static final String DATASET_PREFIX = "finetune:";

    private final Backend be;
    private final LlamaModel model;
    private final TrainConfig cfg;
    private final int epochs;
    private final List<Example> train, val;
    private final Path runDir;
    private final PrintStream console;
    private final String source, tokenizer;
    private final HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles;
    private final int eos;
    /** Data-parallel replicas beside the primary model ({@link #withReplicas}); none by default. */
    private List<StepRunner.Replica> others = List.of();
    /** --peak-tflops: each device's peak for the MFU, or NaN to ask the backends ({@link Backend#peakTflops}). */
    private double peakTflopsPerDevice = Double.NaN;
    /** The name of the chat the examples are posed in ({@link #withChat}), recorded in the checkpoints; null: none. */
    private String chat;
    /** The begin-of-text id every example starts with, or null. */
    private Integer bos;

    /**
     * Mean loss per scored token of the first and last step, and of the validation examples after the last epoch done;
     * {@code stopped}: a stop was asked for and the run ended early, its last checkpoint holding the weights at
     * {@code steps}.
     */
    public record Result(double firstLoss, double lastLoss, double valLoss, long steps, boolean stopped) {}

    private final AtomicBoolean stopRequested = new AtomicBoolean();

    /** Asks the run to stop after the current step and save its weights (thread-safe; a Ctrl-C or SIGTERM does this). */
    public void requestStop() { stopRequested.set(true); }

    public FineTuner(Backend be, LlamaModel model, TrainConfig cfg, int epochs, List<Example> train, List<Example> val,
                     Path runDir, PrintStream console, String source, String tokenizer, HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles, int eos) {
        if (cfg.patchSize() != 1) throw new IllegalArgumentException("fine-tuning is token level");
        if (train.isEmpty()) throw new IllegalArgumentException("no training examples with a response inside the model's context of "
                + cfg.model().contextLength() + " tokens");
        this.be = be;
        this.model = model;
        this.cfg = cfg;
        this.epochs = epochs;
        this.train = train;
        this.val = val;
        this.runDir = runDir;
        this.console = console;
        this.source = source;
        this.tokenizer = tokenizer;
        this.tokenizerFiles = tokenizerFiles;
        this.eos = eos;
    }

    /**
     * Fine-tunes data-parallel with these replicas beside the primary model (the same config on other backends, the
     * primary's weights): micro-batch j of a step runs on replica j mod N and the gradients are summed
     * ({@link GradientSum}), as {@code train --devices} does. The primary validates and saves.
     */
    public FineTuner withReplicas(List<StepRunner.Replica> replicas) {
        this.others = List.copyOf(replicas);
        return this;
    }

    /** Reports the MFU against this peak per device (TFLOP/s) instead of the backends' own ({@code --peak-tflops}). */
    public FineTuner withPeakTflops(double perDevice) {
        this.peakTflopsPerDevice = perDevice;
        return this;
    }

    /** Records in the checkpoints that the examples are posed in the chat {@code --chat label} names, for {@code generate}. */
    public FineTuner withChat(String label) {
        this.chat = label;
        return this;
    }

    /** Records in the checkpoints that every example starts with begin-of-text id {@code bos} (negative: none). */
    public FineTuner withBos(int bos) {
        this.bos = bos >= 0 ? bos : null;
        return this;
    }

    /** A replica's share of the work: its model and tape. */
    private record Lane(Backend be, LlamaModel model, Tape tape) {}

    /** Optimizer steps for {@code epochs} passes over {@code examples} in steps of batch × accum examples (the last one partial). */
    public static long steps(int examples, int epochs, int batch, int accum) {
        long perStep = (long) batch * accum;
        return Math.max(1, (long) epochs * ((examples + perStep - 1) / perStep));
    }

    public Result run() {
        int t = cfg.model().contextLength(), b = cfg.batch();
        long perEpoch = steps(train.size(), 1, b, cfg.accum());
        long total = perEpoch * epochs;
        // As Hugging Face's cosine schedule, which the Alpaca recipe uses, the decay's progress is (step − warmup) /
        // (total − warmup), so the last step still learns (LrSchedule's pretraining form reaches the floor, here 0, at
        // the last step: hence total + 1). The warmup is LrSchedule's, one step ahead of HF's, whose first step has lr 0.
        LrSchedule schedule = new LrSchedule(cfg.lr(), cfg.minLrRatio(), Math.min(Math.max(0, cfg.warmup()), total), total + 1);
        List<Lane> lanes = new ArrayList<>(List.of(new Lane(be, model, new Tape(be))));
        for (StepRunner.Replica r : others) lanes.add(new Lane(r.backend(), r.model(), new Tape(r.backend())));
        int n = lanes.size();
        if (n > cfg.accum()) throw new IllegalArgumentException(n + " replicas need at least as many micro-batches per step; --accum is " + cfg.accum());
        List<Backend> backends = lanes.stream().map(Lane::be).toList();
        GradientSum gradientSum = n > 1 ? new GradientSum(backends) : null;
        double first = Double.NaN, last = Double.NaN, valLoss = Double.NaN;
        long step = 0;
        ModelFlops flops = ModelFlops.of(model);
        double peak = ModelFlops.devicesPeak(peakTflopsPerDevice, backends);
        String peakLine = ModelFlops.peakLine(peakTflopsPerDevice, backends);
        if (peakLine != null) console.println(peakLine);
        console.printf(Locale.ROOT, "== fine-tuning: %s (%d held out), %s × %s of up to %s, context %d%n",
                Plural.of(train.size(), "example"), val.size(), Plural.of(epochs, "epoch"), Plural.of(perEpoch, "step"),
                Plural.of((long) b * cfg.accum(), "example"), t);
        // Each replica's micro-batches' row losses of a step; replica r runs micro-batches r, r + n, ...
        List<Tensor> stepLosses = new ArrayList<>();
        List<AdamW> opts = new ArrayList<>();
        long laterTokens = 0;
        double laterSeconds = 0, laterFlops = 0;
        try (Metrics metrics = new Metrics(runDir.resolve("metrics.jsonl"))) {
            for (int r = 0; r < n; r++) {
                Lane l = lanes.get(r);
                stepLosses.add(l.be().allocate(DType.F32, Math.toIntExact((long) StepRunner.microBatchesOf(r, n, cfg.accum()) * b * t)));
                opts.add(new AdamW(l.be(), l.model().parameters(), cfg));
            }
            for (int epoch = 0; epoch < epochs; epoch++) {
                int[] order = shuffled(train.size(), cfg.seed(), epoch);
                for (int s = 0; s < perEpoch; s++, step++) {
                    long t0 = System.nanoTime();
                    int from = s * b * cfg.accum(), to = Math.min(order.length, from + b * cfg.accum());
                    long scored = 0, tokens = 0;  // tokens: the step's input tokens, without padding
                    double stepFlops = 0;  // each example's own positions, with attention over its own length (padding is no model work)
                    for (int i = from; i < to; i++) {
                        int positions = Math.min(train.get(order[i]).ids().length, t + 1) - 1;
                        scored += train.get(order[i]).scoredTargets(t);
                        tokens += positions;
                        stepFlops += flops.perSequence(positions);
                    }
                    float scale = 1f / Math.max(1, scored);
                    int[] rows = new int[n];
                    for (int m = from, j = 0; m < to; m += b, j++)
                        rows[j % n] += trainMicroBatch(lanes.get(j % n), train, order, m, Math.min(b, to - m), scale,
                                stepLosses.get(j % n), rows[j % n]);
                    List<Tensor> losses = new ArrayList<>();
                    for (int r = 0; r < n; r++) losses.add(rows[r] > 0 ? stepLosses.get(r).rows(0, rows[r]) : null);
                    float lr = schedule.at(step);
                    StepRunner.Sums sums = StepRunner.finishStep(gradientSum, opts, backends, losses, lr);
                    double gradNorm = sums.gradNorm(), loss = sums.loss() / Math.max(1, scored);
                    String diverged = StepRunner.divergence(loss, gradNorm);  // the step was not applied (finishStep)
                    if (diverged != null)  // a setting to change: one line, exit code 2
                        throw new IllegalArgumentException(diverged + " at fine-tuning step " + (step + 1) + "; lower --lr");
                    if (Double.isNaN(first)) first = loss;
                    last = loss;
                    JsonObject o = new JsonObject();
                    o.addProperty("type", "train");
                    o.addProperty("stage", "finetune");
                    o.addProperty("epoch", epoch + 1);
                    o.addProperty("step", step + 1);
                    o.addProperty("global_step", step + 1);
                    o.addProperty("loss", loss);
                    o.addProperty("lr", lr);
                    o.addProperty("grad_norm", gradNorm);
                    o.addProperty("scored_tokens", scored);
                    long dt = System.nanoTime() - t0;
                    if (step > 0) {  // the rate from the second step on, as train's (the first carries the JIT's work)
                        laterTokens += tokens;
                        laterSeconds += dt / 1e9;
                        laterFlops += stepFlops;
                    }
                    o.addProperty("step_ms", dt / 1e6);
                    o.addProperty("tokens_per_s", tokens / (dt / 1e9));
                    o.addProperty("model_flops_per_s", stepFlops / (dt / 1e9));
                    if (!Double.isNaN(peak)) o.addProperty("mfu", ModelFlops.mfu(stepFlops / (dt / 1e9), peak));
                    metrics.write(o);
                    boolean stopping = stopRequested.get() && step + 1 < total;
                    if ((step + 1) % cfg.logEvery() == 0 || step == 0 || step + 1 == total || stopping)
                        console.printf(Locale.ROOT, "finetune step %5d/%d | epoch %d | loss %.4f | lr %.2e | gnorm %.3f | %s tok/s | eta %s | %s%n",
                                step + 1, total, epoch + 1, loss, lr, gradNorm,
                                Trainer.human(Math.round(step > 0 ? laterTokens / laterSeconds : tokens / (dt / 1e9))),
                                // the training steps' own time: an epoch's validation and save would weigh on a wall-clock window
                                step > 0 ? Trainer.duration((total - step - 1) * laterSeconds / step) : "-",
                                ModelFlops.rateText(step > 0 ? laterFlops / laterSeconds : stepFlops / (dt / 1e9), peak));
                    if (stopping) {
                        save(step + 1);
                        console.printf("stopped after %s of %d (epoch %d); checkpoint saved in %s (a fine-tuning run cannot be "
                                + "resumed: eval and generate read it as it is)%n", Plural.of(step + 1, "step"), total, epoch + 1,
                                Checkpoints.root(runDir));
                        return new Result(first, last, Double.NaN, step + 1, true);  // no validation of these weights
                    }
                }
                if (!val.isEmpty()) {
                    valLoss = validate(lanes.getFirst());
                    JsonObject o = new JsonObject();
                    o.addProperty("type", "val");
                    o.addProperty("stage", "finetune");
                    o.addProperty("epoch", epoch + 1);
                    o.addProperty("global_step", step);
                    o.addProperty("token_loss", valLoss);
                    metrics.write(o);
                    console.printf(Locale.ROOT, "      val   | epoch %d | response loss %.4f | ppl %.2f%n", epoch + 1, valLoss, Math.exp(valLoss));
                }
                save(step);
                if (stopRequested.get() && epoch + 1 < epochs) {  // asked for during the validation or the save just done
                    console.printf("stopped after %s of %d (epoch %d done); checkpoint saved in %s (a fine-tuning run cannot be "
                            + "resumed: eval and generate read it as it is)%n", Plural.of(step, "step"), total, epoch + 1,
                            Checkpoints.root(runDir));
                    return new Result(first, last, valLoss, step, true);
                }
            }
        } finally {
            opts.forEach(AdamW::close);
            for (int r = 0; r < stepLosses.size(); r++) lanes.get(r).be().free(stepLosses.get(r));
        }
        return new Result(first, last, valLoss, step, false);
    }

    /** A checkpoint of the weights after {@code steps} steps (no optimizer state: a fine-tuning run is not resumed). */
    private void save(long steps) {
        RunState done = RunState.afterStage(0, steps, 0);  // its one stage
        Checkpoints.save(runDir, model, null, null,
                new Checkpoints.Meta(Checkpoints.FORMAT, cfg, DATASET_PREFIX + source, tokenizer, false, done, 0)
                        .withChat(chat).withBos(bos), tokenizerFiles, be);
    }

    /** A micro-batch's forward pass: logits, row losses, the scored row range of each sequence, the padded length. */
    private record Forward(Var logits, Tensor rowLoss, int[][] ranges, int len) {}

    /**
     * Forward and loss of {@code n} examples {@code examples[order[at ..]]}, padded to the longest of them (the same
     * losses as padding to the context — causal attention — at a fraction of the compute); {@code scale} ≠ 0 leaves the
     * logit gradient in place for a backward pass.
     */
    private Forward forward(Lane lane, List<Example> examples, int[] order, int at, int n, float scale) {
        Backend be = lane.be();
        int t = cfg.model().contextLength(), b = cfg.batch();
        int len = 1;
        for (int r = 0; r < n; r++) len = Math.max(len, Math.min(examples.get(order[at + r]).ids().length, t + 1) - 1);
        int[] in = new int[b * len], tg = new int[b * len];
        int[][] ranges = new int[b][];
        for (int r = 0; r < b; r++) {
            // Rows past the last example repeat it with nothing scored (a full batch keeps the shapes fixed).
            int[] range = Instructions.fill(examples.get(order[at + Math.min(r, n - 1)]), r, len, eos, in, tg);
            ranges[r] = r < n ? range : new int[0];
        }
        Tensor tokens = be.scratch(DType.I32, b, len), targets = be.scratch(DType.I32, b * len, 1);
        be.uploadInts(tokens, in);
        be.uploadInts(targets, tg);
        Var logits = lane.model().forward(lane.tape(), tokens, b, 1);
        return new Forward(logits, lane.tape().crossEntropyK(logits, targets, cfg.model().vocabSize(), scale), ranges, len);
    }

    /** Zeroes the rows of {@code t} outside every sequence r's scored ranges ({@link Instructions#fill}). */
    private static void zeroUnscored(Backend be, Tensor t, Forward f) {
        for (int r = 0; r < f.ranges().length; r++) {
            int[] ranges = f.ranges()[r];
            int len = f.len(), at = 0;  // the first row not yet kept or zeroed
            for (int i = 0; i <= ranges.length; i += 2) {
                int from = i < ranges.length ? ranges[i] : len;
                if (from > at) be.zero(t.rows(r * len + at, from - at));
                if (i < ranges.length) at = ranges[i + 1];
            }
        }
    }

    /**
     * Training micro-batch: forward, loss, the gradient of every unscored row (prompt, padding, unused slots) zeroed
     * in place over the logits, backward. Its scored row losses (the others zeroed) go to {@code losses} from row
     * {@code offset} on, summed once per step: no host wait per micro-batch. Returns the rows written.
     */
    int trainMicroBatch(Tape tape, List<Example> examples, int[] order, int at, int n, float scale, Tensor losses, int offset) {
        return trainMicroBatch(new Lane(be, model, tape), examples, order, at, n, scale, losses, offset);
    }

    private int trainMicroBatch(Lane lane, List<Example> examples, int[] order, int at, int n, float scale, Tensor losses, int offset) {
        Backend be = lane.be();
        Forward f = forward(lane, examples, order, at, n, scale);
        zeroUnscored(be, f.logits().value(), f);
        lane.tape().backward();
        zeroUnscored(be, f.rowLoss(), f);
        int rows = (int) f.rowLoss().numel();
        be.copy(f.rowLoss(), losses.rows(offset, rows));
        be.releaseScratch();  // the gradients are in the parameters; activations are done with
        return rows;
    }

    /** Summed loss of the scored targets of a micro-batch, forward only. */
    double scoreMicroBatch(Tape tape, List<Example> examples, int[] order, int at, int n) {
        return scoreMicroBatch(new Lane(be, model, tape), examples, order, at, n);
    }

    private double scoreMicroBatch(Lane lane, List<Example> examples, int[] order, int at, int n) {
        Backend be = lane.be();
        Forward f = forward(lane, examples, order, at, n, 0f);
        lane.tape().clear();
        float[] losses = be.download(f.rowLoss());
        be.releaseScratch();
        double sum = 0;
        for (int r = 0; r < f.ranges().length; r++) {
            int[] ranges = f.ranges()[r];
            for (int i = 0; i < ranges.length; i += 2) for (int p = ranges[i]; p < ranges[i + 1]; p++) sum += losses[r * f.len() + p];
        }
        return sum;
    }

    /** Mean loss per response token over the held-out examples. */
    private double validate(Lane lane) {
        int t = cfg.model().contextLength(), b = cfg.batch();
        int[] order = new int[val.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        double sum = 0;
        long scored = 0;
        for (int at = 0; at < order.length; at += b) {
            int n = Math.min(b, order.length - at);
            sum += scoreMicroBatch(lane, val, order, at, n);
            for (int i = at; i < at + n; i++) scored += val.get(i).scoredTargets(t);
        }
        return sum / Math.max(1, scored);
    }

    /** The seeded order of {@code n} examples for {@code epoch} (the training sampler's shuffle). */
    public static int[] shuffled(int n, long seed, int epoch) {
        int[] order = new int[n];
        BatchSampler.shuffle(order, seed, epoch);
        return order;
    }
}
