package dev.patchcore.train;

import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * One optimizer step of a stage: {@code accum} micro-batches of forward, fused loss and backward, then global-norm
 * clipping and AdamW. Input buffers are allocated once per stage; everything else comes from the scratch pool.
 *
 * <p>The row losses of every micro-batch are copied into one persistent buffer and summed once per step, after the
 * gradient norm (which waits for the device anyway): summing each micro-batch on the host made the host wait for the
 * device after every micro-batch, so the device then idled while the host queued the next one.
 */
public final class StepRunner implements AutoCloseable {
    private final Backend be;
    private final LlamaModel model;
    private final Stage stage;
    private final Tape tape;
    private final Tensor tokens, targets, stepLosses;
    /** targets as the fused loss reads them (one target per row with an output projection): a view, made once. */
    private final Tensor lossTargets;
    /** Logit rows of one micro-batch. */
    private final int rows;
    private final int[] hostIn, hostTg;
    private final float gradScale;
    private final PatchProjections proj;

    /** Mean training loss of the step (nats per predicted token) and the gradient norm before clipping. */
    public record Result(double loss, double gradNorm) {}

    public StepRunner(Backend be, LlamaModel model, Stage stage) {
        this(be, model, null, stage);
    }

    /** A runner for a patch stage with paper §3.7's projections ({@code proj} may be null). */
    public StepRunner(Backend be, LlamaModel model, PatchProjections proj, Stage stage) {
        this.be = be;
        this.model = model;
        this.stage = stage;
        this.tape = new Tape(be);
        this.proj = proj;
        int k = stage.patchSize(), patches = stage.blockPatches();
        tokens = be.allocate(DType.I32, stage.batch(), k * patches);
        targets = be.allocate(DType.I32, stage.batch() * patches, k);
        lossTargets = LlamaModel.lossTargets(targets, proj);
        int rowsPerPatch = proj == null ? 1 : proj.rowsPerPatch();  // K with paper §3.7's output projection, else 1
        rows = stage.batch() * patches * rowsPerPatch;
        stepLosses = be.allocate(DType.F32, stage.accum() * rows);
        hostIn = new int[stage.batch() * k * patches];
        hostTg = new int[stage.batch() * patches * k];
        // Each row's loss is already the mean over its K targets (or, with an output projection, K rows of one target
        // each per patch); average over rows and micro-batches.
        gradScale = 1f / ((float) rows * stage.accum());
    }

    public Result step(BatchSource source, AdamW opt, float lr) {
        for (int micro = 0; micro < stage.accum(); micro++) {
            source.next(hostIn, hostTg);
            be.uploadInts(tokens, hostIn);
            be.uploadInts(targets, hostTg);
            Var logits = model.forward(tape, tokens, stage.batch(), stage.patchSize(), null, proj);
            Tensor rowLoss = tape.crossEntropyK(logits, lossTargets, model.config().vocabSize(), gradScale);
            tape.backward();
            be.copy(rowLoss, stepLosses.rows(micro * rows, rows));
            be.releaseScratch();
        }
        double gradNorm = opt.gradNorm();
        double lossSum = be.sum(stepLosses);
        opt.update(lr, gradNorm);
        be.releaseScratch();
        return new Result(lossSum / ((double) rows * stage.accum()), gradNorm);
    }

    @Override public void close() {
        be.free(tokens);
        be.free(targets);
        be.free(stepLosses);
    }
}
