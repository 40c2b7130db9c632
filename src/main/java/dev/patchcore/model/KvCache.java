package dev.patchcore.model;

import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.Tensor;

/**
 * Generation's KV cache: each layer's rotated keys and its values for the positions read so far, room for the model's
 * context, [context, kvHeads·Dh] each (a grouped-query model's key/value heads only, not repeated for their query
 * heads). {@link LlamaModel#decode} appends to it; {@link #clear} starts over (a new window). Holds backend memory
 * until {@link #close}.
 */
public final class KvCache implements AutoCloseable {
    private final DecodingBackend backend;
    private final Tensor[] keys, values;
    private final int capacity;
    private int length;

    public KvCache(DecodingBackend backend, ModelConfig config) {
        this.backend = backend;
        this.capacity = config.contextLength();
        keys = new Tensor[config.layers()];
        values = new Tensor[config.layers()];
        for (int i = 0; i < keys.length; i++) {
            keys[i] = backend.allocate(backend.activationType(), capacity, config.kvDim());
            values[i] = backend.allocate(backend.activationType(), capacity, config.kvDim());
        }
    }

    /** Positions read so far (the next token's position). */
    public int length() { return length; }

    /** Positions it has room for: the model's context. */
    public int capacity() { return capacity; }

    /** Forgets every position (the memory stays). */
    public void clear() { length = 0; }

    Tensor keys(int layer) { return keys[layer]; }

    Tensor values(int layer) { return values[layer]; }

    void advance(int positions) { length += positions; }

    @Override
    public void close() {
        for (int i = 0; i < keys.length; i++) {
            backend.free(keys[i]);
            backend.free(values[i]);
        }
    }
}
