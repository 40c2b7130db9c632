package dev.patchcore.eval;

import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import dev.patchcore.data.Batch;

import java.util.List;

/** Mean K-target cross-entropy of a model over fixed batches, forward only (K = 1: ordinary token loss). */
public final class LossEvaluator {
    private LossEvaluator() {}

    /** Returns the mean loss per prediction in nats; perplexity is exp of it when K = 1. */
    public static double meanLoss(Backend be, LlamaModel model, List<Batch> batches) {
        return meanLoss(be, model, null, batches);
    }

    /** The same with paper §3.7's patch projections (may be null): the loss the patch stage trains with them. */
    public static double meanLoss(Backend be, LlamaModel model, PatchProjections proj, List<Batch> batches) {
        return meanLoss(be, model, proj, batches, null);
    }

    /** The same, handing every layer's FFN output of every batch to {@code observer} (may be null). */
    public static double meanLoss(Backend be, LlamaModel model, PatchProjections proj, List<Batch> batches,
                                  LlamaModel.FfnObserver observer) {
        if (batches.isEmpty()) throw new IllegalArgumentException("no validation data for this block size");
        double sum = 0;
        long count = 0;
        Tape tape = new Tape(be);
        for (Batch b : batches) {
            Tensor tokens = be.scratch(DType.I32, b.batchSize(), b.inputs().length / b.batchSize());
            Tensor targets = be.scratch(DType.I32, b.targets().length / b.patchSize(), b.patchSize());
            be.uploadInts(tokens, b.inputs());
            be.uploadInts(targets, b.targets());
            Var logits = model.forward(tape, tokens, b.batchSize(), b.patchSize(), observer, proj);
            Tensor rowLoss = tape.crossEntropyK(logits, LlamaModel.lossTargets(targets, proj), model.config().vocabSize(), 0f);
            sum += be.sum(rowLoss);
            count += rowLoss.numel();
            tape.clear();
            be.releaseScratch();
        }
        return sum / count;
    }
}
