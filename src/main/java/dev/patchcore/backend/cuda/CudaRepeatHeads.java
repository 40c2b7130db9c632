package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * Grouped-query attention's head repeat on the GPU ({@code src/main/cuda/repeat_heads.cu}): exactly
 * {@link dev.patchcore.backend.Backend#repeatHeads} and its gradient, one thread per output element.
 */
final class CudaRepeatHeads {
    private static final int THREADS = 256;
    private final KernelContext ctx;

    CudaRepeatHeads(KernelContext ctx) { this.ctx = ctx; }

    Tensor forward(Tensor x, int kvHeads, int groups) {
        int width = check("repeatHeads", x, kvHeads, groups, kvHeads);
        int rows = x.dim(0), headDim = width / kvHeads;
        Tensor out = ctx.scratch(DType.BF16, rows, width * groups);
        launch("repeat_heads_bf16", out, x, rows, kvHeads, groups, headDim);
        return out;
    }

    Tensor backward(Tensor dy, int kvHeads, int groups) {
        int width = check("repeatHeadsBackward", dy, kvHeads, groups, kvHeads * groups);
        int rows = dy.dim(0), headDim = width / (kvHeads * groups);
        Tensor dx = ctx.scratch(DType.BF16, rows, kvHeads * headDim);
        launch("repeat_heads_bwd_bf16", dx, dy, rows, kvHeads, groups, headDim);
        return dx;
    }

    private static int check(String op, Tensor t, int kvHeads, int groups, int heads) {
        if (t.rank() != 2 || t.dtype() != DType.BF16) throw new IllegalArgumentException(op + ": input must be BF16 [rows, heads·Dh], got " + t);
        if (kvHeads < 1 || groups < 1 || t.dim(1) % heads != 0)
            throw new IllegalArgumentException(op + ": width " + t.dim(1) + " is not " + heads + " heads");
        return t.dim(1);
    }

    private void launch(String kernel, Tensor out, Tensor in, int rows, int kvHeads, int groups, int headDim) {
        long n = out.numel();
        if (n == 0) return;
        int blocks = (int) Math.min((n + THREADS - 1) / THREADS, 32L * ctx.multiprocessorCount());
        ctx.launch(kernel, blocks, 1, 1, THREADS, 1, 1, 0, out, in, (long) rows, kvHeads, groups, headDim);
    }
}
