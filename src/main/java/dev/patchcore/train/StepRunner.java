package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * One optimizer step of a stage: {@code accum} micro-batches of forward, fused loss and backward, then global-norm
 * clipping and AdamW. Input buffers are allocated once per stage; everything else comes from the scratch pool.
 *
 * <p>With several replicas (data parallelism, {@link Replica}) micro-batch j runs on replica j mod N, in the order the
 * batch source gives them; the replicas' gradients are then summed ({@link GradientSum}: device to device on CUDA)
 * and every replica takes the same AdamW step from the same sum, so their weights stay identical. The launches of one thread reach all devices: CUDA work is
 * queued asynchronously, so the replicas' GPUs run their micro-batches at the same time.
 *
 * <p>The row losses of every micro-batch are copied into one persistent buffer and summed once per step, after the
 * gradient norm (which waits for the device anyway): summing each micro-batch on the host made the host wait for the
 * device after every micro-batch, so the device then idled while the host queued the next one.
 */
public final class StepRunner implements AutoCloseable {
    /** One data-parallel replica: a copy of the model (and of the patch stage's projections, or null) on its backend. */
    public record Replica(Backend backend, LlamaModel model, PatchProjections proj) {
        /** A replica of {@code model} (on {@code from}) on {@code to}: the same config, recompute setting and weights. */
        public static Replica copyOf(Backend from, LlamaModel model, Backend to) {
            LlamaModel copy = new LlamaModel(to, model.config());
            copy.setRecompute(model.recompute());
            copyWeights(from, model.parameters(), to, copy.parameters());
            return new Replica(to, copy, null);
        }

        /** Sets each of {@code dst} (on {@code to}) to the master weights of the same position in {@code src} (on {@code from}). */
        public static void copyWeights(Backend from, List<Parameter> src, Backend to, List<Parameter> dst) {
            if (src.size() != dst.size()) throw new IllegalArgumentException(src.size() + " parameters to copy into " + dst.size());
            for (int i = 0; i < src.size(); i++) dst.get(i).load(to, from.download(src.get(i).master()));
        }
    }

    /** A replica's share of a step: its tape, input buffers and the row losses of its micro-batches. */
    private static final class Lane {
        final Backend be;
        final LlamaModel model;
        final PatchProjections proj;
        final Tape tape;
        final Tensor tokens, targets, stepLosses;
        /** targets as the fused loss reads them (one target per row with an output projection): a view, made once. */
        final Tensor lossTargets;

        Lane(Replica r, Stage stage, int rows, int microBatches) {
            be = r.backend();
            model = r.model();
            proj = r.proj();
            tape = new Tape(be);
            int k = stage.patchSize(), patches = stage.blockPatches();
            tokens = be.allocate(DType.I32, stage.batch(), k * patches);
            targets = be.allocate(DType.I32, stage.batch() * patches, k);
            lossTargets = LlamaModel.lossTargets(targets, proj);
            stepLosses = be.allocate(DType.F32, microBatches * rows);
        }
    }

    private final Stage stage;
    private final List<Lane> lanes = new ArrayList<>();
    /** Logit rows of one micro-batch. */
    private final int rows;
    private final int[] hostIn, hostTg;
    private final float gradScale;
    /** With several replicas, the sum of their gradients each step; null with one. */
    private final GradientSum gradientSum;
    /** The replicas' backends, in lane order. */
    private final List<Backend> backends;

    /** Mean training loss of the step (nats per predicted token) and the gradient norm before clipping. */
    public record Result(double loss, double gradNorm) {}

    /**
     * What went wrong in a step whose loss or gradient norm is not finite ("loss became NaN", "the gradient norm became
     * Infinity"), or null if both are: such a step is not applied (the weights stay those of the last good step).
     */
    public static String divergence(double loss, double gradNorm) {
        if (!Double.isFinite(loss)) return "loss became " + loss;
        if (!Double.isFinite(gradNorm)) return "the gradient norm became " + gradNorm;
        return null;
    }

    public StepRunner(Backend be, LlamaModel model, Stage stage) {
        this(be, model, null, stage);
    }

    /** A runner for a patch stage with paper §3.7's projections ({@code proj} may be null). */
    public StepRunner(Backend be, LlamaModel model, PatchProjections proj, Stage stage) {
        this(List.of(new Replica(be, model, proj)), stage);
    }

    /** A runner over data-parallel replicas; each needs at least one micro-batch of the stage's step. */
    public StepRunner(List<Replica> replicas, Stage stage) {
        if (replicas.isEmpty() || replicas.size() > stage.accum())
            throw new IllegalArgumentException(replicas.size() + " replicas need at least as many micro-batches per step; the "
                    + stage.name() + " stage has " + stage.accum());
        this.stage = stage;
        int k = stage.patchSize(), patches = stage.blockPatches();
        PatchProjections proj = replicas.getFirst().proj();
        int rowsPerPatch = proj == null ? 1 : proj.rowsPerPatch();  // K with paper §3.7's output projection, else 1
        rows = stage.batch() * patches * rowsPerPatch;
        int n = replicas.size();
        backends = replicas.stream().map(Replica::backend).toList();
        gradientSum = n > 1 ? new GradientSum(backends) : null;
        try {
            for (int r = 0; r < n; r++) lanes.add(new Lane(replicas.get(r), stage, rows, microBatchesOf(r, n, stage.accum())));
        } catch (RuntimeException | Error e) {
            close();  // the lanes made so far (a lane that failed part-way goes with its backend)
            throw e;
        }
        hostIn = new int[stage.batch() * k * patches];
        hostTg = new int[stage.batch() * patches * k];
        // Each row's loss is already the mean over its K targets (or, with an output projection, K rows of one target
        // each per patch); average over rows and micro-batches.
        gradScale = 1f / ((float) rows * stage.accum());
    }

    public Result step(BatchSource source, AdamW opt, float lr) {
        return step(source, List.of(opt), lr);
    }

    /** One optimizer step; {@code opts.get(r)} is replica r's optimizer (over the same parameters in the same order). */
    public Result step(BatchSource source, List<AdamW> opts, float lr) {
        int n = lanes.size();
        if (opts.size() != n) throw new IllegalArgumentException(opts.size() + " optimizers for " + n + " replicas");
        for (int micro = 0; micro < stage.accum(); micro++) {
            Lane l = lanes.get(micro % n);
            source.next(hostIn, hostTg);
            l.be.uploadInts(l.tokens, hostIn);
            l.be.uploadInts(l.targets, hostTg);
            Var logits = l.model.forward(l.tape, l.tokens, stage.batch(), stage.patchSize(), null, l.proj);
            Tensor rowLoss = l.tape.crossEntropyK(logits, l.lossTargets, l.model.config().vocabSize(), gradScale);
            l.tape.backward();
            l.be.copy(rowLoss, l.stepLosses.rows(micro / n * rows, rows));
            l.be.releaseScratch();
        }
        Sums sums = finishStep(gradientSum, opts, backends, lanes.stream().map(l -> l.stepLosses).toList(), lr);
        return new Result(sums.loss() / ((double) rows * stage.accum()), sums.gradNorm());
    }

    /** Micro-batches replica {@code replica} of {@code replicas} runs in a step of {@code accum}: j runs on j mod replicas. */
    static int microBatchesOf(int replica, int replicas, int accum) {
        return (accum - replica + replicas - 1) / replicas;
    }

    /** A step's summed row losses and its gradient norm before clipping. */
    record Sums(double loss, double gradNorm) {}

    /**
     * The end of a step whose micro-batches' backward passes are queued: sums the replicas' gradients (with several),
     * takes the gradient norm and sums the row losses ({@code losses.get(r)} on replica r's backend; null if it ran no
     * micro-batch), then updates every replica unless the step diverged and releases the scratch.
     */
    static Sums finishStep(GradientSum gradientSum, List<AdamW> opts, List<Backend> backends, List<Tensor> losses, float lr) {
        if (gradientSum != null) gradientSum.run(opts.stream().map(AdamW::parameters).toList());
        double gradNorm = opts.getFirst().gradNorm();  // waits for the device once per step; every replica holds the sum
        double lossSum = 0;
        for (int r = 0; r < losses.size(); r++) if (losses.get(r) != null) lossSum += backends.get(r).sum(losses.get(r));
        // A gradient norm or loss that is not finite (a diverged step) would make every weight NaN: no update then, so the
        // weights (and the checkpoints saved from them) stay those of the last good step; the caller stops the run.
        boolean finite = divergence(lossSum, gradNorm) == null;
        for (int r = 0; r < opts.size(); r++) {
            if (finite) opts.get(r).update(lr, gradNorm);
            backends.get(r).releaseScratch();
        }
        return new Sums(lossSum, gradNorm);
    }

    @Override public void close() {
        for (Lane l : lanes) {
            l.be.free(l.tokens);
            l.be.free(l.targets);
            l.be.free(l.stepLosses);
        }
    }
}
