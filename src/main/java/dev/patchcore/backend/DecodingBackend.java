package dev.patchcore.backend;

import dev.patchcore.config.Rope;
import dev.patchcore.tensor.Tensor;

/**
 * A backend with the two ops generation's KV cache needs beyond {@link Backend}'s. Both backends are: the CPU one, and
 * the CUDA one (the RoPE kernel with a start position, and split-key decode kernels in {@code attention_decode.cu}).
 */
public interface DecodingBackend extends Backend {
    /** {@link #rope} of one sequence's rows x [n, H·Dh] at positions start … start + n − 1. */
    Tensor ropeAt(Tensor x, int start, int heads, Rope rope);

    /**
     * Causal attention of one sequence's n new queries q [n, H·Dh] (positions start … start + n − 1) over the first
     * start + n rows of {@code keys} and {@code values} ([capacity, KH·Dh] with KH = {@code kvHeads}, a divisor of H:
     * the rotated keys and the values of every position read so far, these n included): query i sees rows 0 … start + i,
     * and query head h reads key/value head h / (H / KH), as after {@link #repeatHeads} (KH = H: multi-head attention).
     * Returns [n, H·Dh].
     */
    Tensor attendCached(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads);

    /**
     * The shapes {@link #attendCached} takes, on either backend: q's width H heads, KH a divisor of H, key and value rows
     * of KH heads of q's head dimension, and positions start … start + n − 1 inside the cache.
     */
    static void checkCached(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        int width = q.dim(-1), capacity = keys.dim(0);
        long n = q.numel() / Math.max(1, width);
        if (heads <= 0 || width % heads != 0)
            throw new IllegalArgumentException("attendCached: width " + width + " is not " + heads + " heads");
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new IllegalArgumentException("attendCached: " + kvHeads + " key/value heads do not divide " + heads + " query heads into groups");
        int kvWidth = kvHeads * (width / heads);
        if (keys.dim(-1) != kvWidth || values.dim(-1) != kvWidth || values.dim(0) != capacity)
            throw new IllegalArgumentException("attendCached: keys " + keys + " and values " + values + " are not " + kvHeads
                    + " key/value heads of q " + q);
        if (start < 0 || n < 1 || start + n > capacity)
            throw new IllegalArgumentException("attendCached: positions " + start + " … " + (start + n - 1) + " do not fit a cache of " + capacity);
    }
}
