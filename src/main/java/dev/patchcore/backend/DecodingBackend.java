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
}
