package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * Rotary position embedding on the GPU ({@code src/main/cuda/rope.cu}), Hugging Face rotate_half convention:
 * exactly {@link Backend#rope} and {@link Backend#ropeBackward}. Angles are computed on the fly in fp32 with precise
 * {@code sincosf} (no table to keep in sync): each block puts the head dim's inverse frequencies in shared memory, and
 * each thread computes the angles of 8 frequencies once, while its first loads are in flight, and applies them to
 * several heads of its row, so the trigonometry is amortized over the heads and hidden behind the memory latency.
 */
public final class CudaRope {
    private static final int THREADS = 256;
    /**
     * Heads one thread rotates with the sin/cos of its 8 frequencies: more heads amortize the trigonometry, fewer put
     * more threads (and loads) in flight. Chosen by measurement on an H100 (docs/kernels.md).
     */
    private static final int HEADS_PER_ITEM = 4;
    /** The inverse-frequency table (headDim/2 floats) lives in dynamic shared memory. */
    private static final int MAX_SHARED_BYTES = 48 * 1024;

    private final KernelContext ctx;

    public CudaRope(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
    }

    public Tensor forward(Tensor x, int seqLen, int heads, float theta) {
        return rotate("rope_fwd_bf16", x, seqLen, heads, theta);
    }

    /** The inverse rotation (the rotation is orthogonal, so its transpose is its inverse). */
    public Tensor backward(Tensor dy, int seqLen, int heads, float theta) {
        return rotate("rope_bwd_bf16", dy, seqLen, heads, theta);
    }

    private Tensor rotate(String kernel, Tensor x, int seqLen, int heads, float theta) {
        if (x == null) throw new IllegalArgumentException("rope: input is null");
        if (x.device() != Device.CUDA || x.dtype() != DType.BF16 || x.rank() != 2)
            throw new IllegalArgumentException("rope: input must be BF16 [rows, heads·headDim] on CUDA, got " + x);
        if (heads <= 0) throw new IllegalArgumentException("rope: heads must be positive, got " + heads);
        if (seqLen <= 0) throw new IllegalArgumentException("rope: seqLen must be positive, got " + seqLen);
        if (!(theta > 0f) || Float.isInfinite(theta)) throw new IllegalArgumentException("rope: theta must be finite and > 0, got " + theta);
        int rows = x.dim(0), width = x.dim(1);
        if (width % heads != 0 || (width / heads) % 2 != 0)
            throw new IllegalArgumentException("rope: width " + width + " is not heads " + heads + " × an even head dimension");
        if (rows % seqLen != 0)
            throw new IllegalArgumentException("rope: " + rows + " rows are not a whole number of sequences of length " + seqLen);
        Tensor out = ctx.scratch(DType.BF16, rows, width);
        int headDim = width / heads;
        int half = headDim / 2;
        if ((long) half * Float.BYTES > MAX_SHARED_BYTES)
            throw new IllegalArgumentException("rope: head dimension " + headDim + " exceeds the supported " + 2 * MAX_SHARED_BYTES / Float.BYTES);
        int headsPerItem = Math.min(heads, HEADS_PER_ITEM);
        // Work items: (row, 8 frequencies, headsPerItem heads) when the vector path applies, else (row, frequency).
        long items = half % 8 == 0
                ? (long) rows * ((heads + headsPerItem - 1) / headsPerItem) * (half / 8)
                : (long) rows * half;
        if (items == 0) return out;
        int blocks = (int) Math.min((items + THREADS - 1) / THREADS, 32L * ctx.multiprocessorCount());
        ctx.launch(kernel, blocks, 1, 1, THREADS, 1, 1, half * Float.BYTES, out, x, rows, seqLen, heads, headDim, theta, headsPerItem);
        return out;
    }
}
