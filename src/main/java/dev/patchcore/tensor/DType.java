package dev.patchcore.tensor;

/** Element types a tensor can hold. CPU computes in F32; CUDA stores activations in BF16. */
public enum DType {
    F32(4), BF16(2), I32(4);

    private final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    public int bytes() { return bytes; }
}
