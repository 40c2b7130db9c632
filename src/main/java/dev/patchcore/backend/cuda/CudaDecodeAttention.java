package dev.patchcore.backend.cuda;

import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * Generation's cached attention on the GPU ({@code src/main/cuda/attention_decode.cu}): exactly
 * {@link dev.patchcore.backend.DecodingBackend#attendCached}. Each block scores one chunk of {@link #KEYS_PER_BLOCK}
 * keys of one query for one query head, one key per lane (kernel family {@code decode}, variant 1; variant 2 serves
 * the query heads of one key/value head in one block, {@link #headsPerBlock}: all of a group of up to
 * {@link #MAX_HEADS_PER_BLOCK}, each cached row read once for those heads); a second kernel merges each row's chunks
 * (skipped when the keys fit one chunk). A window read from position 0
 * (the prompt, or the window's restart) is causal attention over its own rows, so {@link CudaBackend#attendCached}
 * gives it to the training kernels instead.
 */
final class CudaDecodeAttention {
    /** Four warps ({@code DEC_WARPS} in attention_decode.cu). */
    static final int THREADS = 128;
    /** One key per thread ({@code DEC_KEYS}). */
    static final int KEYS_PER_BLOCK = THREADS;
    /** Largest head dimension ({@code DEC_MAX_CHUNKS} · 32). */
    static final int MAX_HEAD_DIM = 256;
    /** The most query heads one block serves ({@code attn_decode_partial_g8}). */
    static final int MAX_HEADS_PER_BLOCK = 8;

    /**
     * Variant 1 (default): one block per query head whatever the group ({@code attn_decode_partial}, G = 1). H100 run
     * 16, one sequence with 4 query heads per key/value head: kernel time 0.0172 against the grouped kernel's 0.0192 ms
     * at 256 cached keys and 0.0219 against 0.0241 at 2048 (Dh 64; at Dh 128 1.02–1.05× at 256 keys, equal at 2048),
     * and greedy generation from a grouped-query model at 872–982 tokens/s against 791–815: at batch 1 the G-fold grid
     * beats reading each cached row once for G heads.
     */
    static final int VARIANT_PER_HEAD = 1;
    /**
     * Variant 2 (the default as written, before run 16 measured it): a block serves {@link #headsPerBlock} query heads
     * of one key/value head ({@code attn_decode_partial_g{G}}; {@code attn_decode_partial} for multi-head attention),
     * each cached row read once for them: G times fewer blocks. Bitwise variant 1's outputs.
     */
    static final int VARIANT_GROUPED = 2;

    private final KernelContext ctx;
    private int variant = VARIANT_PER_HEAD;

    CudaDecodeAttention(KernelContext ctx) { this.ctx = ctx; }

    /** Which partial kernels run for a grouped-query cache: {@link #VARIANT_PER_HEAD} (default) or {@link #VARIANT_GROUPED}. */
    void setVariant(int variant) {
        if (variant != VARIANT_GROUPED && variant != VARIANT_PER_HEAD)
            throw new IllegalArgumentException("attendCached variant must be 1 (a block per query head) or 2 (grouped query heads a block), got " + variant);
        this.variant = variant;
    }

    int variant() { return variant; }

    /**
     * q: BF16 [n, H·D] at positions start …; keys, values: BF16 [capacity, KH·D] holding positions 0 … start + n − 1,
     * query head h reading key/value head h / (H / KH).
     */
    Tensor attend(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        check(q, keys, values, start, heads, kvHeads);
        return attendChecked(q, keys, values, start, heads, kvHeads);
    }

    /** {@link #attend} of arguments {@link #check} has passed (CudaBackend.attendCached checks them first, once). */
    Tensor attendChecked(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        int n = q.dim(0), width = q.dim(1), d = width / heads;
        if (d % 2 != 0) throw new IllegalArgumentException("attendCached: width " + width + " is not " + heads + " heads of even size");
        if (d > MAX_HEAD_DIM) throw new IllegalArgumentException("attendCached: head dimension " + d + " exceeds " + MAX_HEAD_DIM);
        if (heads > 65535) throw new IllegalArgumentException("attendCached: " + heads + " heads exceed the grid");
        Tensor out = ctx.scratch(DType.BF16, n, width);
        boolean vec = d % 8 == 0 && (CudaStorage.addressOf(keys) & 15) == 0;
        // Queries in groups whose partials stay within PARTIAL_FLOATS (and the grid's 65535 in z): a long piece read
        // after position 0 would otherwise need n · H · ⌈(start + n) / 128⌉ · Dh floats at once.
        long maxChunks = ((long) start + n + KEYS_PER_BLOCK - 1) / KEYS_PER_BLOCK;  // the last query's, the most of any
        int perGroup = (int) Math.max(1, Math.min(65535, PARTIAL_FLOATS / (heads * maxChunks * (d + 2))));
        for (int i0 = 0; i0 < n; ) {
            int rows = Math.min(n - i0, perGroup);
            if (rows == n) group(out, q, keys, values, start, heads, kvHeads, d, vec);  // one group: the usual case
            else group(out.rows(i0, rows), q.rows(i0, rows), keys, values, start + i0, heads, kvHeads, d, vec);
            i0 += rows;
        }
        return out;
    }

    /**
     * What {@link dev.patchcore.backend.DecodingBackend#attendCached} takes on either path (these kernels, or the
     * training kernels' for a window read from position 0): BF16 matrices, H heads in groups of KH, key and value rows
     * of KH heads of q's head dimension, and positions start … start + n − 1 inside the cache.
     */
    static void check(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        for (Tensor t : new Tensor[] {q, keys, values})
            if (t.rank() != 2 || t.dtype() != DType.BF16)
                throw new IllegalArgumentException("attendCached: q, keys and values must be BF16 matrices, got " + t);
        DecodingBackend.checkCached(q, keys, values, start, heads, kvHeads);
    }

    /** Most floats of partials (max, sum and a row of Dh per query, head and chunk) one launch writes: 64 MB. */
    static final long PARTIAL_FLOATS = 16L << 20;

    /**
     * Query heads per block: the largest divisor of the group size H / KH up to {@link #MAX_HEADS_PER_BLOCK} (the whole
     * group for groups of 1 … 8; 1 for multi-head attention), so each block reads its key/value head's rows once for
     * that many query heads.
     */
    static int headsPerBlock(int heads, int kvHeads) {
        int group = heads / kvHeads;
        for (int g = Math.min(MAX_HEADS_PER_BLOCK, group); g > 1; g--)
            if (group % g == 0) return g;
        return 1;
    }

    /** The partial kernels by query heads per block (index 1 … MAX_HEADS_PER_BLOCK): a block per query head for 1. */
    private static final String[] PARTIAL_KERNELS = {null, "attn_decode_partial", "attn_decode_partial_g2", "attn_decode_partial_g3",
            "attn_decode_partial_g4", "attn_decode_partial_g5", "attn_decode_partial_g6", "attn_decode_partial_g7", "attn_decode_partial_g8"};

    /** The partial kernel serving {@code g} query heads per block (a constant: no string is built per token). */
    static String partialKernel(int g) { return PARTIAL_KERNELS[g]; }

    private void group(Tensor out, Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads, int d, boolean vec) {
        int n = q.dim(0), chunks = (int) (((long) start + n + KEYS_PER_BLOCK - 1) / KEYS_PER_BLOCK);
        int g = variant == VARIANT_PER_HEAD ? 1 : headsPerBlock(heads, kvHeads);
        String kernel = partialKernel(g);
        if (chunks == 1) {
            ctx.launch(kernel, 1, heads / g, n, THREADS, 1, 1, 0, out, 0L, 0L, q, keys, values, start, heads, kvHeads, d, vec ? 1 : 0);
            return;
        }
        long parts = (long) n * heads * chunks;
        Tensor acc = ctx.scratch(DType.F32, Math.toIntExact(parts * d));
        Tensor maxSum = ctx.scratch(DType.F32, Math.toIntExact(parts * 2));
        ctx.launch(kernel, chunks, heads / g, n, THREADS, 1, 1, 0, out, acc, maxSum, q, keys, values, start, heads, kvHeads, d,
                vec ? 1 : 0);
        ctx.launch("attn_decode_combine", heads, n, 1, Math.min(THREADS, (d + 31) / 32 * 32), 1, 1, 0, out, acc, maxSum, chunks, heads, d);
    }
}
