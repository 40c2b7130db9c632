package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * Simple causal attention ({@code src/main/cuda/attention_simple.cu}): any even head dim up to 256, fp32
 * accumulation, deterministic, slow (one block per row and head). The fallback where the flash kernel does not support
 * a head dim, and the baseline for {@code bench kernels}.
 */
public final class CudaSimpleAttention {
    static final int MAX_HEAD_DIM = 256; // ATTN_MAX_CHUNKS · 32 in attention_simple.cu
    private static final int THREADS = 128; // ATTN_WARPS · 32
    private final KernelContext ctx;

    public CudaSimpleAttention(KernelContext ctx) { this.ctx = ctx; }

    public static boolean supportsHeadDim(int d) { return d > 0 && d <= MAX_HEAD_DIM; }

    public Backend.AttentionOut forward(Tensor q, Tensor k, Tensor v, int seqLen, int heads) {
        Shape s = Shape.of(q, seqLen, heads);
        s.require("k", k);
        s.require("v", v);
        Tensor out = ctx.scratch(DType.BF16, q.shape());
        Tensor lse = ctx.scratch(DType.F32, s.batch, heads, seqLen);
        if (s.batch > 0 && seqLen > 0)
            ctx.launch("attn_simple_fwd", seqLen, heads, s.batch, THREADS, 1, 1, 0, out, lse, q, k, v, seqLen, heads, s.headDim);
        return new Backend.AttentionOut(out, lse);
    }

    public Backend.AttentionGrads backward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, int seqLen, int heads) {
        Shape s = Shape.of(q, seqLen, heads);
        s.require("k", k);
        s.require("v", v);
        s.require("out", out);
        s.require("dOut", dOut);
        if (lse.dtype() != DType.F32 || lse.numel() != (long) s.batch * heads * seqLen)
            throw new IllegalArgumentException("attentionBackward: lse must be F32 [B, H, T], got " + lse);
        Tensor dq = ctx.scratch(DType.BF16, q.shape()), dk = ctx.scratch(DType.BF16, q.shape()), dv = ctx.scratch(DType.BF16, q.shape());
        Tensor delta = ctx.scratch(DType.F32, s.batch, heads, seqLen);
        if (s.batch > 0 && seqLen > 0) {
            ctx.launch("attn_simple_bwd_dq", seqLen, heads, s.batch, THREADS, 1, 1, 0, dq, delta, dOut, q, k, v, out, lse, seqLen, heads, s.headDim);
            ctx.launch("attn_simple_bwd_dkv", seqLen, heads, s.batch, THREADS, 1, 1, 0, dk, dv, delta, dOut, q, k, v, lse, seqLen, heads, s.headDim);
        }
        return new Backend.AttentionGrads(dq, dk, dv);
    }

    private record Shape(int rows, int width, int batch, int headDim) {
        static Shape of(Tensor q, int seqLen, int heads) {
            if (q.rank() != 2 || q.dtype() != DType.BF16) throw new IllegalArgumentException("attention: q must be BF16 [B·T, H·Dh], got " + q);
            if (seqLen <= 0 || heads <= 0) throw new IllegalArgumentException("attention: seqLen and heads must be positive");
            if (q.dim(0) % seqLen != 0) throw new IllegalArgumentException("attention: " + q.dim(0) + " rows is not a multiple of T = " + seqLen);
            if (q.dim(1) % heads != 0) throw new IllegalArgumentException("attention: width " + q.dim(1) + " not divisible by " + heads + " heads");
            int d = q.dim(1) / heads;
            if (!supportsHeadDim(d)) throw new IllegalArgumentException("attention: head dim " + d + " exceeds " + MAX_HEAD_DIM);
            if (q.dim(0) / seqLen > 65535 || heads > 65535) throw new IllegalArgumentException("attention: batch or heads exceed the grid limit");
            return new Shape(q.dim(0), q.dim(1), q.dim(0) / seqLen, d);
        }

        void require(String name, Tensor t) {
            if (t.rank() != 2 || t.dim(0) != rows || t.dim(1) != width || t.dtype() != DType.BF16)
                throw new IllegalArgumentException("attention: " + name + " must be BF16 [" + rows + ", " + width + "], got " + t);
        }
    }
}
