package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * SwiGLU on the GPU ({@code src/main/cuda/swiglu.cu}): exactly {@link Backend#swiglu} and
 * {@link Backend#swigluBackward}. Element-wise and memory-bound; the backward reads gate and up once and writes
 * both gradients in the same pass.
 */
public final class CudaSwiGlu {
    private static final int THREADS = 256;

    private final KernelContext ctx;

    public CudaSwiGlu(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
    }

    /** silu(gate) · up. */
    public Tensor forward(Tensor gate, Tensor up) {
        requireActivation("gate", gate);
        requireSameShape("up", up, gate);
        Tensor y = ctx.scratch(DType.BF16, gate.shape());
        long n = gate.numel();
        if (n > 0) ctx.launch("swiglu_fwd_bf16", blocks(n), 1, 1, THREADS, 1, 1, 0, y, gate, up, n);
        return y;
    }

    public Backend.SwiGluGrads backward(Tensor dy, Tensor gate, Tensor up) {
        requireActivation("gate", gate);
        requireSameShape("up", up, gate);
        requireSameShape("dy", dy, gate);
        Tensor dGate = ctx.scratch(DType.BF16, gate.shape());
        Tensor dUp = ctx.scratch(DType.BF16, gate.shape());
        long n = gate.numel();
        if (n > 0) ctx.launch("swiglu_bwd_bf16", blocks(n), 1, 1, THREADS, 1, 1, 0, dGate, dUp, dy, gate, up, n);
        return new Backend.SwiGluGrads(dGate, dUp);
    }

    /** Enough blocks for full occupancy (16-byte groups of 8 elements per thread), then grid-stride. */
    private int blocks(long n) {
        long groups = (n + 7) / 8;
        return (int) Math.max(1, Math.min((groups + THREADS - 1) / THREADS, 8L * ctx.multiprocessorCount()));
    }

    private static void requireActivation(String what, Tensor t) {
        if (t == null) throw new IllegalArgumentException("swiglu: " + what + " is null");
        if (t.device() != Device.CUDA || t.dtype() != DType.BF16)
            throw new IllegalArgumentException("swiglu: " + what + " must be BF16 on CUDA, got " + t);
    }

    private static void requireSameShape(String what, Tensor t, Tensor gate) {
        requireActivation(what, t);
        if (!t.sameShape(gate)) throw new IllegalArgumentException("swiglu: " + what + " " + t + " does not match gate " + gate);
    }
}
