package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * Fused K-target cross-entropy (paper Eq. 3) on the GPU ({@code src/main/cuda/cross_entropy.cu}): exactly
 * {@link Backend#crossEntropyK}. One block per row: a first pass over the vocabulary with an online max/sum gives
 * log-sum-exp, a second pass overwrites the logits with the gradient (0 in the padding columns ≥ vocab). No V-wide
 * temporary exists.
 *
 * <p>The second pass re-reads the row from L2, so the rows resident on the GPU at once (blocks per SM × SMs × row
 * bytes) must fit in L2 with room to spare; wide rows therefore get 1024-thread blocks (2 per SM) instead of 512
 * (4 per SM), which halves that footprint.
 *
 * <p>A target outside [0, vocab) cannot be checked on the host without a download; the kernel gives that row a NaN
 * loss (and leaves the one-hot term out of its gradient), so the trainer's loss check catches it.
 */
public final class CudaCrossEntropy {
    /** Threads per row are sized for about this many 16-byte groups each, within [32, MAX_THREADS]. */
    private static final int GROUPS_PER_THREAD = 8;
    private static final int MAX_THREADS = 512;
    /** Wide-row block size: the kernel's {@code __launch_bounds__(1024, 2)}. */
    private static final int WIDE_THREADS = 1024;
    /** Resident rows above this many bytes in total would no longer stay in L2 (50 MB on an H100) between the passes. */
    static final long L2_ROW_BUDGET = 36L << 20;
    /** Threads one SM holds at once. */
    private static final int THREADS_PER_SM = 2048;

    /**
     * Variant 1 (default): pass 1 keeps the row in shared memory for pass 2 (cross_entropy_fwd_smem_bf16), so the
     * logits cross DRAM once each way; H100 run 6: 1.04–1.05× at V = 50304, equal at 32000; bit-identical results.
     */
    public static final int VARIANT_SMEM = 1;
    /** Variant 2: pass 2 re-reads the row from L2 (the default until H100 run 6; also where the row does not fit). */
    public static final int VARIANT_L2 = 2;
    /** Largest dynamic shared memory variant 2 asks for: under the A100's 163 KB opt-in, so rows up to V ≈ 80K. */
    static final int SMEM_ROW_LIMIT = 160 * 1024;

    private final KernelContext ctx;
    private int variant = VARIANT_SMEM;

    public CudaCrossEntropy(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
    }

    /** Which kernel runs where both apply: {@link #VARIANT_SMEM} (default) or {@link #VARIANT_L2}. */
    public void setVariant(int variant) {
        if (variant != VARIANT_L2 && variant != VARIANT_SMEM)
            throw new IllegalArgumentException("crossEntropyK variant must be 1 (row in shared memory) or 2 (L2 re-read), got " + variant);
        this.variant = variant;
    }

    public int variant() { return variant; }

    /** Dynamic shared memory of cross_entropy_fwd_smem_bf16: 2·⌈K/4⌉·4 words (targets, their logits), then ⌈vocab/8⌉ groups. */
    static long smemBytes(int k, int vocab) { return 2L * ((k + 3) / 4) * 4 * Integer.BYTES + (vocab + 7L) / 8 * 16; }

    /**
     * Returns F32 [N] row losses r_n = −(1/K) Σ_k log softmax(logits_n[0, vocab))[targets[n,k]]. When
     * {@code gradScale != 0}, the logits are overwritten with gradScale · (softmax − (1/K) Σ_k onehot(targets[n,k]))
     * and the padding columns [vocab, Vpad) with 0.
     */
    public Tensor forward(Tensor logits, Tensor targets, int vocab, float gradScale) {
        if (logits == null || targets == null) throw new IllegalArgumentException("crossEntropyK: logits and targets must not be null");
        if (logits.device() != Device.CUDA || logits.dtype() != DType.BF16 || logits.rank() != 2)
            throw new IllegalArgumentException("crossEntropyK: logits must be BF16 [rows, vocab] on CUDA, got " + logits);
        if (targets.device() != Device.CUDA || targets.dtype() != DType.I32 || targets.rank() != 2)
            throw new IllegalArgumentException("crossEntropyK: targets must be I32 [rows, K] on CUDA, got " + targets);
        int n = logits.dim(0), stride = logits.dim(1), k = targets.dim(1);
        if (targets.dim(0) != n)
            throw new IllegalArgumentException("crossEntropyK: targets " + targets + " must have one row per logits row (" + n + ")");
        if (stride <= 0 || k <= 0) throw new IllegalArgumentException("crossEntropyK: vocab and K must be positive, got " + logits + ", " + targets);
        if (vocab < 1 || vocab > stride)
            throw new IllegalArgumentException("crossEntropyK: vocab " + vocab + " outside [1, " + stride + "] (the logits' width)");
        if (!Float.isFinite(gradScale)) throw new IllegalArgumentException("crossEntropyK: gradScale must be finite, got " + gradScale);
        if (k > 1024) throw new IllegalArgumentException("crossEntropyK: K = " + k + " exceeds the supported 1024");

        Tensor losses = ctx.scratch(DType.F32, n);
        if (n == 0) return losses;
        int threads = threadsPerRow(stride, ctx.multiprocessorCount());
        // Shared memory: the row's K target ids and their logits, read before the gradient overwrites them.
        long cached = smemBytes(k, vocab);
        if (variant == VARIANT_SMEM && cached <= SMEM_ROW_LIMIT)
            ctx.launch("cross_entropy_fwd_smem_bf16", n, 1, 1, threads, 1, 1, (int) cached,
                    losses, logits, targets, n, stride, vocab, k, gradScale);
        else ctx.launch("cross_entropy_fwd_bf16", n, 1, 1, threads, 1, 1, k * (Integer.BYTES + Float.BYTES),
                losses, logits, targets, n, stride, vocab, k, gradScale);
        return losses;
    }

    /** Block size for rows of {@code stride} bf16: about 8 groups per thread, or 1024 when resident rows would overflow L2. */
    static int threadsPerRow(int stride, int multiprocessors) {
        int groups = (stride + 7) / 8;
        int threads = Math.clamp(((groups + GROUPS_PER_THREAD - 1) / GROUPS_PER_THREAD + 31) / 32 * 32, 32, MAX_THREADS);
        long residentBytes = (long) Math.max(1, multiprocessors) * (THREADS_PER_SM / threads) * stride * Short.BYTES;
        return residentBytes > L2_ROW_BUDGET ? WIDE_THREADS : threads;
    }
}
