package dev.patchcore.backend;

import dev.patchcore.config.Rope;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

import java.util.List;

/**
 * The op-level interface every backend implements: each op is a forward and a backward.
 *
 * <p>Conventions shared by all ops:
 * <ul>
 *   <li>Activations are row-major 2-D {@code [N, width]} with {@code N = B·T} rows; row {@code b·T + t}
 *       is position {@code t} of sequence {@code b}. Heads are laid out {@code [N, H·Dh]}.</li>
 *   <li>Outputs and activation gradients are fresh tensors from {@link #scratch}; they stay valid until
 *       {@link #releaseScratch()} (the trainer calls it after each micro-batch's backward pass, once the
 *       gradients are in the parameters).</li>
 *   <li>Parameter gradients ({@code dW}, {@code dGain}, {@code dTable}) are <b>accumulated</b> into the
 *       tensor given (fp32), so micro-batches add up without extra copies.</li>
 *   <li>Activation dtype is {@link #activationType()}; statistics (rstd, lse, row losses) are always F32,
 *       token ids I32, parameter gradients F32.</li>
 * </ul>
 */
public interface Backend extends AutoCloseable {

    String name();

    Device device();

    /** dtype of activations and of the compute copy of matmul weights (F32 on CPU, BF16 on CUDA). */
    DType activationType();

    // ---------------------------------------------------------------- memory

    /** Persistent tensor (parameters, optimizer state), zero-filled. Freed by {@link #free}. */
    Tensor allocate(DType dtype, int... shape);

    void free(Tensor t);

    /** Step-scoped tensor, contents undefined; recycled by {@link #releaseScratch()} without new allocation. */
    Tensor scratch(DType dtype, int... shape);

    /** Returns every scratch tensor to the pool. Earlier scratch tensors must not be used afterwards. */
    void releaseScratch();

    /**
     * A mark in the sequence of scratch tensors handed out since the last {@link #releaseScratch()}, for
     * {@link #releaseScratchTo}: activation recompute frees one layer's temporaries while keeping what came before.
     */
    long scratchMark();

    /**
     * Returns to the pool every scratch tensor handed out after {@code mark} (which must not be used afterwards);
     * those handed out before it stay valid. Marks are released last-made first.
     */
    void releaseScratchTo(long mark);

    /** Copies host floats into {@code dst} (converting to its dtype). */
    void upload(Tensor dst, float[] src);

    void uploadInts(Tensor dst, int[] src);

    /** Copies a tensor to host floats (converting from its dtype; I32 converted exactly). */
    float[] download(Tensor src);

    int[] downloadInts(Tensor src);

    void zero(Tensor t);

    /** {@code dst ← src}, converting dtype (e.g. fp32 master → bf16 compute copy). Same element count. */
    void copy(Tensor src, Tensor dst);

    /** Waits for queued work (a no-op on CPU). */
    void synchronize();

    /**
     * Prepares {@link #copyFrom} from {@code peer} (CUDA: direct peer access between two GPUs where they allow it).
     * A no-op by default; repeating it is harmless.
     */
    default void connect(Backend peer) {}

    /**
     * {@code dst ← src} where {@code src} belongs to another backend {@code source} (a data-parallel replica's), queued
     * after this backend's earlier work. The caller makes sure {@code src} is complete (it has synchronized
     * {@code source} since the last write to it) and is not written again before this backend has synchronized. Same
     * dtype and element count. Default: through the host; CUDA copies device to device.
     */
    default void copyFrom(Backend source, Tensor src, Tensor dst) {
        if (src.dtype() != dst.dtype() || src.numel() != dst.numel())
            throw new IllegalArgumentException("copyFrom: " + src + " → " + dst + " differ in dtype or element count");
        upload(dst, source.download(src));
    }

    /**
     * One line on device memory for someone choosing a batch size (persistent tensors, the scratch peak since
     * {@link #resetMemoryPeak()}, the device's total), or null where there is nothing to report (the CPU backend).
     */
    default String memorySummary() { return null; }

    /** Starts a new scratch peak for {@link #memorySummary()}. */
    default void resetMemoryPeak() {}

    /**
     * The device's dense bf16 tensor-core peak in TFLOP/s, against which train and bench speed report the model FLOPs
     * utilization; NaN where none is known (the CPU, a GPU missing from the table): then only --peak-tflops gives one.
     */
    default double peakTflops() { return Double.NaN; }

    // ---------------------------------------------------------------- ops

    /** Paper Eq. 2: out[b·T+t] = mean_k table[tokens[b, t·K + k]]. tokens I32 [B, T·K] → [B·T, d]. K = 1 is a lookup. */
    Tensor patchEmbed(Tensor table, Tensor tokens, int k);

    /** dTable[tokens[b, t·K+k]] += dOut[b·T+t] / K, deterministic. */
    void patchEmbedBackward(Tensor dOut, Tensor tokens, int k, Tensor dTable);

    /** y = x · wᵀ with x [N, in], w [out, in] (Hugging Face Linear layout) → [N, out]. */
    Tensor matmul(Tensor x, Tensor w);

    /** dW += dyᵀ · x; returns dx = dy · w (null when {@code needDx} is false). */
    Tensor matmulBackward(Tensor dy, Tensor x, Tensor w, Tensor dW, boolean needDx);

    /** y = x / rms(x) · gain per row; rstd = 1/sqrt(mean(x²) + eps), F32 [N]. */
    RmsNormOut rmsNorm(Tensor x, Tensor gain, float eps);

    /**
     * Residual add fused with the RMSNorm that follows it (one pass): sum = residual + branch,
     * y = rmsNorm(sum, gain). The backward is {@link #rmsNormBackward} on {@code sum} plus the add's identity.
     */
    AddRmsNormOut addRmsNorm(Tensor residual, Tensor branch, Tensor gain, float eps);

    /** Returns dx; dGain += Σ_rows dy · x · rstd. */
    Tensor rmsNormBackward(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain);

    /**
     * {@link #rmsNormBackward} fused with the gradient add that follows it where a residual stream's gradient already
     * exists: dxAcc += dx in place (added in float, one rounding to dxAcc's dtype), dGain += Σ_rows dy · x · rstd.
     * dxAcc has x's shape and dtype and shares no memory with dy or x. Returns dxAcc.
     */
    Tensor rmsNormBackwardAccumulate(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor dxAcc);

    /**
     * Rotary embedding, Hugging Face LLaMA convention (rotate_half: pairs (i, i + Dh/2)), on x [B·T, H·Dh].
     * Position of row b·T+t is t, the patch index in the patch stage. Frequencies: {@link Rope#invFreq} (plain:
     * inv_freq_i = theta^(-2i/Dh)).
     */
    Tensor rope(Tensor x, int seqLen, int heads, Rope rope);

    /** Inverse rotation of dy. */
    Tensor ropeBackward(Tensor dy, int seqLen, int heads, Rope rope);

    /**
     * Grouped-query attention's key or value heads for every query head (Hugging Face's {@code repeat_kv}): x [N,
     * kvHeads·Dh] → [N, kvHeads·groups·Dh], whose head h is x's head h / groups.
     */
    Tensor repeatHeads(Tensor x, int kvHeads, int groups);

    /** The gradient of {@link #repeatHeads}: dy [N, kvHeads·groups·Dh] → [N, kvHeads·Dh], each head the sum of its group's. */
    Tensor repeatHeadsBackward(Tensor dy, int kvHeads, int groups);

    /** Causal softmax(q·kᵀ/√Dh)·v per sequence and head; q, k, v [B·T, H·Dh]; lse F32 [B, H, T] (natural log). */
    AttentionOut attention(Tensor q, Tensor k, Tensor v, int seqLen, int heads);

    AttentionGrads attentionBackward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, int seqLen, int heads);

    /** silu(gate) · up, element-wise. */
    Tensor swiglu(Tensor gate, Tensor up);

    SwiGluGrads swigluBackward(Tensor dy, Tensor gate, Tensor up);

    /** x + y, a new tensor (the model's residual adds are fused into {@link #addRmsNorm}). */
    Tensor add(Tensor x, Tensor y);

    /** acc += x (gradient accumulation at fan-out points). */
    void addInPlace(Tensor acc, Tensor x);

    /**
     * Fused K-target cross-entropy (paper Eq. 3, App. A). logits [N, Vpad], targets I32 [N, K] in [0, vocab).
     * Columns ≥ {@code vocab} are padding (the model pads its vocabulary so GEMM rows stay aligned): they take no part
     * in the softmax. Row loss r_n = −(1/K) Σ_k log softmax(logits_n[0, vocab))[targets[n,k]] → F32 [N].
     * When {@code gradScale != 0}, logits are overwritten in place with
     * gradScale · (softmax(logits_n) − (1/K) Σ_k onehot(targets[n,k])), the gradient of gradScale·Σ_n r_n,
     * and with exactly 0 in the padding columns. K = 1 is ordinary cross-entropy.
     */
    Tensor crossEntropyK(Tensor logits, Tensor targets, int vocab, float gradScale);

    /** Σ over all elements of all tensors of x², in double, with one host synchronization. */
    double sumOfSquares(List<Tensor> tensors);

    /** Σ of all elements of an F32 tensor, in double. */
    double sum(Tensor t);

    /**
     * How many elements of {@code x} (F32, or this backend's activation type) have |x| > {@code threshold} (NaN never
     * does): paper §3.8's count of activated neurons, without bringing the tensor to the host. Exact, so identical on
     * every backend for the same values.
     */
    long countAbsAbove(Tensor x, float threshold);

    /**
     * One fused AdamW update of an fp32 master tensor: g = grad · gradScale (clipping), moments m, v (F32),
     * decoupled weight decay (0 for norm gains), bias-corrected with {@code step} (1-based). When
     * {@code compute} is non-null it receives the updated weights in its dtype (the copy the forward reads).
     */
    void adamW(Tensor master, Tensor grad, Tensor m, Tensor v, Tensor compute, AdamWStep s);

    @Override
    void close();

    record RmsNormOut(Tensor y, Tensor rstd) {}

    record AddRmsNormOut(Tensor sum, Tensor y, Tensor rstd) {}

    record AttentionOut(Tensor out, Tensor lse) {}

    record AttentionGrads(Tensor dq, Tensor dk, Tensor dv) {}

    record SwiGluGrads(Tensor dGate, Tensor dUp) {}

    record AdamWStep(float lr, float beta1, float beta2, float eps, float weightDecay, int step, float gradScale) {}
}
