package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.config.Rope;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * Rotary position embedding on the GPU ({@code src/main/cuda/rope.cu}), Hugging Face rotate_half convention:
 * exactly {@link Backend#rope} and {@link Backend#ropeBackward}. Angles are computed on the fly in fp32 with precise
 * {@code sincosf}; the plain frequencies too (no table to keep in sync), scaled ones (LLaMA-3's) are read from a
 * small device table. The angle of (row, frequency) does not depend on the head, so on the
 * vector path one warp owns a row: it computes the row's Dh/2 (cos, sin) pairs once into shared memory while its
 * 16-byte loads are in flight, and applies them to every head of the row. (A variant streaming rows through a
 * cp.async ring measured 0.63× this kernel on an H100 once its 16-byte accesses really were 16-byte, and was removed.)
 */
public final class CudaRope {
    /** 8 warps per block, one row per warp ({@code ROPE_THREADS} in rope.cu). */
    static final int THREADS = 256;
    /** Largest Dh/2 on the vector path: 8 warps × Dh/2 × (cos, sin) floats fit the 48 KB of shared memory. */
    static final int MAX_TABLE = 768;

    private final KernelContext ctx;

    public CudaRope(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
    }

    public Tensor forward(Tensor x, int seqLen, int heads, Rope rope) {
        return rotate("rope_fwd_bf16", x, seqLen, 0, heads, rope);
    }

    /** One sequence's rows at positions start … start + rows − 1 ({@code DecodingBackend.ropeAt}). */
    public Tensor forwardAt(Tensor x, int start, int heads, Rope rope) {
        if (x == null || x.rank() != 2) throw new IllegalArgumentException("ropeAt: input must be [rows, heads·headDim], got " + x);
        if (start < 0 || (long) start + x.dim(0) > 1 << 24)
            throw new IllegalArgumentException("ropeAt: positions from " + start + " must lie in 0 … 2^24 (exact in fp32)");
        return rotate("rope_fwd_bf16", x, Math.max(1, x.dim(0)), start, heads, rope);
    }

    /** The inverse rotation (the rotation is orthogonal, so its transpose is its inverse). */
    public Tensor backward(Tensor dy, int seqLen, int heads, Rope rope) {
        return rotate("rope_bwd_bf16", dy, seqLen, 0, heads, rope);
    }

    private Tensor rotate(String kernel, Tensor x, int seqLen, int start, int heads, Rope rope) {
        if (x == null) throw new IllegalArgumentException("rope: input is null");
        if (x.device() != Device.CUDA || x.dtype() != DType.BF16 || x.rank() != 2)
            throw new IllegalArgumentException("rope: input must be BF16 [rows, heads·headDim] on CUDA, got " + x);
        if (heads <= 0) throw new IllegalArgumentException("rope: heads must be positive, got " + heads);
        if (seqLen <= 0) throw new IllegalArgumentException("rope: seqLen must be positive, got " + seqLen);
        if (rope == null) throw new IllegalArgumentException("rope: no frequencies given");
        int rows = x.dim(0), width = x.dim(1);
        if (width % heads != 0 || (width / heads) % 2 != 0)
            throw new IllegalArgumentException("rope: width " + width + " is not heads " + heads + " × an even head dimension");
        if (rows % seqLen != 0)
            throw new IllegalArgumentException("rope: " + rows + " rows are not a whole number of sequences of length " + seqLen);
        Tensor out = ctx.scratch(DType.BF16, rows, width);
        int headDim = width / heads;
        int half = headDim / 2;
        if (rows == 0 || width == 0) return out;
        boolean vector = half % 8 == 0 && half <= MAX_TABLE && aligned16(x) && aligned16(out);
        int sms = ctx.multiprocessorCount();
        // Vector path: one warp per row (grid-stride). Scalar path: one thread per (row, frequency).
        long work = vector ? (long) rows * 32 : (long) rows * half;
        int blocks = (int) Math.min((work + THREADS - 1) / THREADS, 32L * sms);
        int shared = vector ? (THREADS / 32) * half * 2 * Float.BYTES : 0;
        Object table = rope.scaled() ? invFreqTable(rope, headDim) : (Object) 0L;  // null: the kernel computes theta's
        ctx.launch(kernel, blocks, 1, 1, THREADS, 1, 1, shared, out, x, rows, seqLen, start, heads, headDim, rope.theta(), table,
                vector ? 1 : 0);
        return out;
    }

    /**
     * Scaled frequencies ({@link Rope#invFreq}, rounded to fp32) as a device table of Dh/2 floats, uploaded once per
     * (frequencies, Dh) and kept for the backend's life (a few hundred bytes each).
     */
    private Tensor invFreqTable(Rope rope, int headDim) {
        return tables.computeIfAbsent(new TableKey(rope, headDim), k -> {
            double[] f = rope.invFreq(headDim);
            int[] bits = new int[f.length];
            for (int i = 0; i < f.length; i++) bits[i] = Float.floatToRawIntBits((float) f[i]);
            Tensor t = ctx.allocate(DType.I32, bits.length);  // read as float by the kernel
            ctx.copyInts(t, bits);
            return t;
        });
    }

    private record TableKey(Rope rope, int headDim) {}

    private final java.util.Map<TableKey, Tensor> tables = new java.util.HashMap<>();

    private static boolean aligned16(Tensor t) { return (CudaStorage.addressOf(t) & 15) == 0; }
}
