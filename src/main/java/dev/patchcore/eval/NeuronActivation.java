package dev.patchcore.eval;

import dev.patchcore.backend.Backend;
import dev.patchcore.data.Batch;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;

import java.util.List;

/**
 * Paper §3.8 (Figure 8): the share of "activated" neurons, FFN outputs (each layer's down projection, the d values per
 * position) whose absolute value exceeds a threshold (0.5 in the paper), over evaluation batches read at patch size K.
 * The paper's observation: a model trained at patch level activates a larger share than a token-level one.
 */
public final class NeuronActivation {
    private NeuronActivation() {}

    /** Per layer, the fraction of FFN outputs with |x| > {@code threshold}, and the mean loss of the same forward passes. */
    public record Result(double[] activated, double loss) {
        /** The mean over layers. */
        public double mean() {
            double s = 0;
            for (double a : activated) s += a;
            return s / activated.length;
        }
    }

    /** Over {@code batches}, for a model with paper §3.7's patch projections {@code proj} (may be null). */
    public static Result measure(Backend be, LlamaModel model, PatchProjections proj, List<Batch> batches, float threshold) {
        int layers = model.config().layers();
        long[] active = new long[layers], total = new long[layers];
        double loss = LossEvaluator.meanLoss(be, model, proj, batches, (layer, out) -> {
            active[layer] += be.countAbsAbove(out, threshold);  // counted where the tensor is: 8 bytes come back, not it
            total[layer] += out.numel();
        });
        double[] fraction = new double[layers];
        for (int i = 0; i < layers; i++) fraction[i] = (double) active[i] / total[i];
        return new Result(fraction, loss);
    }
}
