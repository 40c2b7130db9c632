package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * Patch embedding, paper Eq. 2 ({@code src/main/cuda/patch_embed.cu}). The backward sorts (token, position) keys on
 * the device and lets one block own each vocabulary row, so dTable is accumulated without float atomics and is
 * bit-identical run to run.
 */
public final class CudaPatchEmbed {
    static final int SORT_TILE = 2048; // must match SORT_TILE in patch_embed.cu
    private static final int THREADS = 128;
    /** Forward block: 8 warps, one output row per warp ({@code PE_FWD_THREADS} in patch_embed.cu). */
    static final int FWD_THREADS = 256;
    private final KernelContext ctx;

    public CudaPatchEmbed(KernelContext ctx) { this.ctx = ctx; }

    /** table BF16 [V, d], tokens I32 [B, T·K] → BF16 [B·T, d]. */
    public Tensor forward(Tensor table, Tensor tokens, int k) {
        int rows = checkShapes(table, tokens, k);
        int d = table.dim(1);
        Tensor out = ctx.scratch(DType.BF16, rows, d);
        if (rows == 0 || d == 0) return out;
        int blocks = gridFor((long) rows * 32, FWD_THREADS, ctx.multiprocessorCount());  // one warp per row, grid-stride
        ctx.launch("patch_embed_fwd_bf16", blocks, 1, 1, FWD_THREADS, 1, 1, 0, out, table, tokens, rows, k, d, table.dim(0));
        return out;
    }

    /** dTable F32 [V, d] += scatter of dOut BF16 [B·T, d] / K. */
    public void backward(Tensor dOut, Tensor tokens, int k, Tensor dTable) {
        int rows = checkShapes(dTable, tokens, k);
        int d = dTable.dim(1);
        if (dOut.dtype() != DType.BF16 || dOut.rank() != 2 || dOut.dim(0) != rows || dOut.dim(1) != d)
            throw new IllegalArgumentException("patchEmbedBackward: dOut " + dOut + " must be BF16 [" + rows + ", " + d + "]");
        if (dTable.dtype() != DType.F32) throw new IllegalArgumentException("patchEmbedBackward: dTable must be F32, got " + dTable.dtype());
        long n = tokens.numel();
        if (n == 0 || d == 0) return;
        if (n >= (1L << 32)) throw new IllegalArgumentException("patchEmbedBackward: too many tokens (" + n + ")");
        long padded = paddedLength(n);
        if (padded * 2 > Integer.MAX_VALUE) throw new IllegalArgumentException("patchEmbedBackward: too many tokens (" + n + ")");
        Tensor keys = ctx.scratch(DType.I32, (int) (padded * 2)); // 64-bit keys
        int sms = ctx.multiprocessorCount();
        ctx.launch("patch_embed_keys", gridFor(padded, 256, sms), 1, 1, 256, 1, 1, 0, tokens, n, dTable.dim(0), keys, padded);
        int tiles = (int) (padded / SORT_TILE);
        ctx.launch("bitonic_sort_tiles", tiles, 1, 1, SORT_TILE / 2, 1, 1, 0, keys);
        for (long size = 2L * SORT_TILE; size <= padded; size <<= 1) {
            for (long stride = size / 2; stride >= SORT_TILE; stride >>= 1)
                ctx.launch("bitonic_global_pass", gridFor(padded / 2, 256, sms), 1, 1, 256, 1, 1, 0, keys, padded, size, stride);
            ctx.launch("bitonic_merge_tiles", tiles, 1, 1, SORT_TILE / 2, 1, 1, 0, keys, size);
        }
        ctx.launch("patch_embed_bwd_runs", (int) Math.min(n, 1L << 20), 1, 1, THREADS, 1, 1, 0, keys, n, dOut, dTable, k, d);
    }

    /** Power of two ≥ max(n, SORT_TILE): the bitonic network's length. */
    static long paddedLength(long n) {
        long p = SORT_TILE;
        while (p < n) p <<= 1;
        return p;
    }

    private static int gridFor(long work, int threads, int sms) {
        return (int) Math.max(1, Math.min((work + threads - 1) / threads, 32L * sms));
    }

    private static int checkShapes(Tensor table, Tensor tokens, int k) {
        if (k < 1) throw new IllegalArgumentException("patch size K must be >= 1, got " + k);
        if (table.rank() != 2) throw new IllegalArgumentException("embedding table must be [V, d], got " + table);
        if (tokens.dtype() != DType.I32 || tokens.rank() != 2) throw new IllegalArgumentException("tokens must be I32 [B, T·K], got " + tokens);
        if (tokens.dim(1) % k != 0) throw new IllegalArgumentException("token row length " + tokens.dim(1) + " is not a multiple of K = " + k);
        return tokens.dim(0) * (tokens.dim(1) / k);
    }
}
