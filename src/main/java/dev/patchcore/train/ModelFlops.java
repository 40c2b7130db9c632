package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Model FLOPs of a training step in PaLM's convention (Chowdhery et al. 2022, App. B), for the achieved model FLOP/s
 * and the model FLOPs utilization (MFU) that make runs comparable across presets, stages and hardware. Per position the
 * transformer processes, forward and backward: 6·N + 12·L·d·S, with N the parameters that take part in matmuls, L the
 * layers, d the model width and S the sequence length in positions. As in PaLM, attention is counted in full (S, not
 * the S/2 a causal mask leaves), and activation recompute is not counted (model FLOPs, not hardware FLOPs).
 *
 * <p>N comes from the model's parameter shapes (so grouped-query attention's narrower K/V projections count as they
 * are): every matrix except the input embedding, a lookup, unless it is tied to the LM head, whose matmul then counts
 * it once. The vocabulary matrices count the vocabulary's rows, not the padding rows the GEMM also computes
 * ({@link ModelConfig#paddedVocab()}: an implementation detail, not the model's work). Norm gains are not matmuls.
 *
 * <p>In the patch stage a position is a patch: the transformer runs T positions for K·T tokens, so its FLOPs per token
 * are about 1/K of the token stage's. The patch mean of the embeddings and the K-target loss (a sum of K log-softmax
 * reads per patch) are O(K·d) and O(K·V) per position against O(N), and are left out. Paper §3.7's projections are
 * matmuls and count ({@link #withProjections}).
 *
 * @param matmulParameters N
 * @param headParameters   the LM head's share of N (vocabulary × d), run once more per extra logit row of a patch
 */
public record ModelFlops(long matmulParameters, long headParameters, int layers, int dim) {

    /** The FLOPs of {@code model}, from its parameters' shapes. */
    public static ModelFlops of(LlamaModel model) {
        Map<String, int[]> shapes = new LinkedHashMap<>();
        for (Parameter p : model.parameters()) shapes.put(p.name(), p.shape());
        return of(model.config(), shapes);
    }

    /** The FLOPs of a model of config {@code c} whose parameters have these shapes (Hugging Face names). */
    static ModelFlops of(ModelConfig c, Map<String, int[]> shapes) {
        long n = 0, head = 0;
        for (var e : shapes.entrySet()) {
            int[] s = e.getValue();
            if (s.length != 2) continue;  // a norm gain
            boolean embedding = e.getKey().equals("model.embed_tokens.weight");
            if (embedding && !c.tiedEmbeddings()) continue;  // a lookup
            long rows = LlamaModel.VOCABULARY_ROWS.contains(e.getKey()) ? c.vocabSize() : s[0];
            n += rows * s[1];
            if (embedding || e.getKey().equals("lm_head.weight")) head = rows * s[1];
        }
        return new ModelFlops(n, head, c.layers(), c.dim());
    }

    /**
     * With a patch stage's projections of paper §3.7 ({@code proj}, or null: this): their matrices, and with an output
     * projection the LM head run on K rows per patch instead of one.
     */
    public ModelFlops withProjections(PatchProjections proj) {
        if (proj == null) return this;
        long n = matmulParameters + (proj.rowsPerPatch() - 1L) * headParameters;
        for (Parameter p : proj.parameters()) n += (long) p.shape()[0] * p.shape()[1];
        return new ModelFlops(n, headParameters, layers, dim);
    }

    /** Forward and backward FLOPs per position of a sequence of {@code positions}: 6·N + 12·L·d·S. */
    public double perPosition(int positions) {
        return 6.0 * matmulParameters + 12.0 * layers * dim * positions;
    }

    /** Forward and backward FLOPs of one sequence of {@code positions}. */
    public double perSequence(int positions) {
        return positions * perPosition(positions);
    }

    /** A step of {@code st}: micro-batch × accumulation sequences of its positions (T patches, or T tokens). */
    public double perStep(Stage st) {
        return (double) st.batch() * st.accum() * perSequence(st.blockPatches());
    }

    /**
     * The peak of these devices together in TFLOP/s (data parallelism: their sum): {@code perDevice} (--peak-tflops)
     * times their number, or where it is NaN (not given) the sum of their own {@link Backend#peakTflops}, NaN if any is
     * unknown.
     */
    public static double devicesPeak(double perDevice, List<Backend> devices) {
        if (!Double.isNaN(perDevice)) return perDevice * devices.size();
        return devices.stream().mapToDouble(Backend::peakTflops).sum();
    }

    /**
     * The console line that names the peak the MFU is measured against ({@link #devicesPeak} of {@code devices} at
     * {@code perDevice}), or null where there is none and so no MFU.
     */
    public static String peakLine(double perDevice, List<Backend> devices) {
        double peak = devicesPeak(perDevice, devices);
        if (Double.isNaN(peak)) return null;
        return String.format(Locale.ROOT, "MFU: model FLOP/s (PaLM's 6N + 12·L·d·T per position) against a peak of %.1f TFLOP/s (%s%s)",
                peak, Double.isNaN(perDevice) ? "the GPU's dense bf16 peak" : "--peak-tflops",
                devices.size() == 1 ? "" : " × " + devices.size() + " devices");
    }

    /** Refuses a {@code --peak-tflops} (null: not given) that is not a positive number. */
    public static void checkPeakOption(Double peakTflops) {
        if (peakTflops != null && !(peakTflops > 0 && peakTflops < Double.POSITIVE_INFINITY))
            throw new IllegalArgumentException("--peak-tflops must be a positive number of TFLOP/s (got " + peakTflops + ")");
    }

    /** The model FLOPs utilization: FLOP/s against a peak in TFLOP/s; NaN where the peak is unknown (NaN). */
    public static double mfu(double flopsPerSecond, double peakTflops) {
        return flopsPerSecond / (peakTflops * 1e12);
    }

    /**
     * "12.3 TFLOP/s", or below 1 TFLOP/s (a CPU) "45.6 GFLOP/s"; then " (38.2% MFU)" when the peak (TFLOP/s) is known.
     */
    public static String rateText(double flopsPerSecond, double peakTflops) {
        String rate = flopsPerSecond >= 1e12 ? String.format(Locale.ROOT, "%.1f TFLOP/s", flopsPerSecond / 1e12)
                : String.format(Locale.ROOT, "%.1f GFLOP/s", flopsPerSecond / 1e9);
        double mfu = mfu(flopsPerSecond, peakTflops);
        return Double.isNaN(mfu) ? rate : rate + String.format(Locale.ROOT, " (%.1f%% MFU)", 100 * mfu);
    }
}
