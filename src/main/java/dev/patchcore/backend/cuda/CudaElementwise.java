package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/** Residual add, gradient accumulation and dtype casts ({@code src/main/cuda/elementwise.cu}). */
public final class CudaElementwise {
    private static final int THREADS = 256;
    /** 16-byte groups per thread per grid-stride step of the add kernels ({@code ADD_UNROLL} in elementwise.cu). */
    static final int ADD_UNROLL = 4;
    /** Blocks of the add kernels resident per SM ({@code __launch_bounds__(256, 4)}): the grid cap, so no second wave. */
    static final int ADD_BLOCKS_PER_SM = 4;
    private final KernelContext ctx;

    public CudaElementwise(KernelContext ctx) { this.ctx = ctx; }

    /** x + y, same shape and dtype (BF16 or F32). */
    public Tensor add(Tensor x, Tensor y) {
        requireSame("add", x, y);
        Tensor out = ctx.scratch(x.dtype(), x.shape());
        long n = x.numel();
        if (n == 0) return out;
        switch (x.dtype()) {
            case BF16 -> ctx.launch("add_bf16", addGrid(n, 8), 1, 1, THREADS, 1, 1, 0, out, x, y, n);
            case F32 -> ctx.launch("add_f32", addGrid(n, 4), 1, 1, THREADS, 1, 1, 0, out, x, y, n);
            default -> throw new IllegalArgumentException("add: unsupported dtype " + x.dtype());
        }
        return out;
    }

    /** acc += x: BF16 += BF16, F32 += F32, or F32 += BF16. */
    public void addInPlace(Tensor acc, Tensor x) {
        if (acc.numel() != x.numel()) throw new IllegalArgumentException("addInPlace: " + acc + " vs " + x);
        long n = x.numel();
        if (n == 0) return;
        if (acc.dtype() == DType.BF16 && x.dtype() == DType.BF16) ctx.launch("add_inplace_bf16", addGrid(n, 8), 1, 1, THREADS, 1, 1, 0, acc, x, n);
        else if (acc.dtype() == DType.F32 && x.dtype() == DType.F32) ctx.launch("add_inplace_f32", addGrid(n, 4), 1, 1, THREADS, 1, 1, 0, acc, x, n);
        else if (acc.dtype() == DType.F32 && x.dtype() == DType.BF16) ctx.launch("add_inplace_f32_bf16", grid(n, 1), 1, 1, THREADS, 1, 1, 0, acc, x, n);
        else throw new IllegalArgumentException("addInPlace: cannot add " + x.dtype() + " into " + acc.dtype());
    }

    /** dst ← src converting F32 ↔ BF16 (same-dtype copies are a memcpy in the backend). */
    public void cast(Tensor src, Tensor dst) {
        long n = src.numel();
        if (n != dst.numel()) throw new IllegalArgumentException("copy: " + src + " vs " + dst);
        if (n == 0) return;
        if (src.dtype() == DType.F32 && dst.dtype() == DType.BF16) ctx.launch("cast_f32_to_bf16", grid(n, 8), 1, 1, THREADS, 1, 1, 0, dst, src, n);
        else if (src.dtype() == DType.BF16 && dst.dtype() == DType.F32) ctx.launch("cast_bf16_to_f32", grid(n, 8), 1, 1, THREADS, 1, 1, 0, dst, src, n);
        else throw new IllegalArgumentException("copy: no conversion from " + src.dtype() + " to " + dst.dtype());
    }

    /** Enough blocks to cover n elements at {@code perThread} per thread, capped at 8 waves of the device (grid-stride). */
    int grid(long n, int perThread) {
        long blocks = (n + (long) THREADS * perThread - 1) / ((long) THREADS * perThread);
        return (int) Math.max(1, Math.min(blocks, 8L * 2048 / THREADS * ctx.multiprocessorCount()));
    }

    /** One grid-stride step of ADD_UNROLL 16-byte groups per thread, capped at the blocks resident at once. */
    int addGrid(long n, int perGroup) {
        long groups = Math.max(1, n / perGroup);
        long blocks = (groups + (long) THREADS * ADD_UNROLL - 1) / ((long) THREADS * ADD_UNROLL);
        return (int) Math.max(1, Math.min(blocks, (long) ADD_BLOCKS_PER_SM * ctx.multiprocessorCount()));
    }

    private static void requireSame(String op, Tensor x, Tensor y) {
        if (!x.sameShape(y) || x.dtype() != y.dtype()) throw new IllegalArgumentException(op + ": " + x + " vs " + y);
    }
}
