package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

import java.util.List;

/**
 * The optimizer's device half ({@code src/main/cuda/adamw.cu}): the fused AdamW update of {@link Backend#adamW} and
 * the deterministic global Σg² behind gradient-norm clipping. The trainer downloads that one scalar per step,
 * computes the clip factor min(1, maxNorm / ‖g‖) on the host and passes it to every update as
 * {@link Backend.AdamWStep#gradScale()}.
 */
public final class CudaAdamW {
    private static final int THREADS = 256;
    private static final int FINAL_THREADS = 1024;
    /** Elements each sum-of-squares thread should cover at least, so small tensors use few blocks. */
    private static final int SUMSQ_ELEMENTS_PER_THREAD = 16;

    private final KernelContext ctx;

    public CudaAdamW(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
    }

    /**
     * master, grad, m, v: F32 with the same element count; compute: BF16 with that count, or null. One pass, 30 bytes
     * per parameter (26 without the compute copy).
     */
    public void step(Tensor master, Tensor grad, Tensor m, Tensor v, Tensor compute, Backend.AdamWStep s) {
        requireF32("master", master);
        long n = master.numel();
        requireF32Like("grad", grad, n);
        requireF32Like("m", m, n);
        requireF32Like("v", v, n);
        if (compute != null && (compute.device() != Device.CUDA || compute.dtype() != DType.BF16 || compute.numel() != n))
            throw new IllegalArgumentException("adamW: compute copy must be BF16 on CUDA with " + n + " elements, got " + compute);
        if (s == null) throw new IllegalArgumentException("adamW: step parameters are null");
        if (s.step() < 1) throw new IllegalArgumentException("adamW: step is 1-based, got " + s.step());
        if (!(s.beta1() >= 0f && s.beta1() < 1f) || !(s.beta2() >= 0f && s.beta2() < 1f))
            throw new IllegalArgumentException("adamW: betas must lie in [0, 1), got " + s.beta1() + ", " + s.beta2());
        if (!(s.eps() > 0f) || !Float.isFinite(s.lr()) || s.lr() < 0f || !Float.isFinite(s.weightDecay()) || s.weightDecay() < 0f
                || !Float.isFinite(s.gradScale()))
            throw new IllegalArgumentException("adamW: need eps > 0 and finite lr, weight decay >= 0 and grad scale, got " + s);
        if (n == 0) return;

        // Bias corrections in double on the host, as PyTorch computes them in Python floats.
        double bc1 = 1.0 - Math.pow(s.beta1(), s.step());
        double bc2 = 1.0 - Math.pow(s.beta2(), s.step());
        float stepSize = (float) (s.lr() / bc1);
        float invSqrtBc2 = (float) (1.0 / Math.sqrt(bc2));
        float decay = (float) (1.0 - (double) s.lr() * s.weightDecay());
        long groups = (n + 3) / 4;
        int blocks = (int) Math.max(1, Math.min((groups + THREADS - 1) / THREADS, 8L * ctx.multiprocessorCount()));
        ctx.launch("adamw_step_f32", blocks, 1, 1, THREADS, 1, 1, 0,
                master, grad, m, v, compute == null ? (Object) 0L : compute, n,
                s.beta1(), s.beta2(), s.eps(), s.gradScale(), decay, stepSize, invSqrtBc2);
    }

    /**
     * Σ x² over every element of every tensor (F32 or BF16), as an F32 [1] scratch tensor on the device. Each tensor's
     * blocks write their partial sums into their own slots of one scratch buffer; one block then sums all slots in a
     * fixed order (in double), so the result is deterministic and needs no host round-trip per tensor.
     */
    public Tensor sumOfSquares(List<Tensor> tensors) {
        if (tensors == null) throw new IllegalArgumentException("sumOfSquares: tensor list is null");
        int[] blocks = new int[tensors.size()];
        long slots = 0;
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            if (t == null || t.device() != Device.CUDA || (t.dtype() != DType.F32 && t.dtype() != DType.BF16))
                throw new IllegalArgumentException("sumOfSquares: tensor " + i + " must be F32 or BF16 on CUDA, got " + t);
            long perBlock = (long) THREADS * SUMSQ_ELEMENTS_PER_THREAD;
            blocks[i] = (int) Math.min((t.numel() + perBlock - 1) / perBlock, 4L * ctx.multiprocessorCount());
            slots += blocks[i];
        }
        if (slots > Integer.MAX_VALUE) throw new IllegalArgumentException("sumOfSquares: too many tensors (" + tensors.size() + ")");
        Tensor out = ctx.scratch(DType.F32, 1);
        Tensor partial = ctx.scratch(DType.F32, (int) Math.max(1, slots));
        int slot = 0;
        for (int i = 0; i < tensors.size(); i++) {
            if (blocks[i] == 0) continue;
            Tensor t = tensors.get(i);
            String kernel = t.dtype() == DType.F32 ? "adamw_sumsq_partial_f32" : "adamw_sumsq_partial_bf16";
            ctx.launch(kernel, blocks[i], 1, 1, THREADS, 1, 1, 0, partial, slot, t, t.numel());
            slot += blocks[i];
        }
        ctx.launch("adamw_sumsq_final", 1, 1, 1, FINAL_THREADS, 1, 1, 0, out, partial, slot);
        return out;
    }

    private static void requireF32(String what, Tensor t) {
        if (t == null || t.device() != Device.CUDA || t.dtype() != DType.F32)
            throw new IllegalArgumentException("adamW: " + what + " must be F32 on CUDA, got " + t);
    }

    private static void requireF32Like(String what, Tensor t, long n) {
        requireF32(what, t);
        if (t.numel() != n) throw new IllegalArgumentException("adamW: " + what + " " + t + " must have " + n + " elements like master");
    }
}
