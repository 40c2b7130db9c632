package dev.patchcore.autograd;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.Backend.AttentionGrads;
import dev.patchcore.backend.Backend.AttentionOut;
import dev.patchcore.backend.Backend.RmsNormOut;
import dev.patchcore.backend.Backend.SwiGluGrads;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.function.Consumer;

/**
 * Records the forward ops of one micro-batch and replays their backward in reverse order.
 *
 * <p>Each differentiable op calls the backend's forward, then pushes a closure that calls the matching backward.
 * Activation gradients are fresh scratch tensors summed at fan-out points; parameter gradients are accumulated by
 * the backend into {@link Parameter#grad()}. The tape keeps only its closure list, cleared after
 * {@link #backward()}, so it is reused step after step without growing.
 */
public final class Tape {
    private final Backend be;
    private final ArrayList<Runnable> backwardOps = new ArrayList<>(512);
    /** The tape {@link #checkpoint} records its segments on, one at a time (made at first use, reused after). */
    private Tape segmentTape;

    public Tape(Backend backend) { this.be = backend; }

    /** A new value whose backward runs {@code backward} on its gradient, when any gradient reached it. */
    private Var op(Tensor out, Consumer<Tensor> backward) {
        Var v = new Var(out);
        backwardOps.add(() -> { if (v.grad != null) backward.accept(v.grad); });
        return v;
    }

    private void accumulate(Var v, Tensor g) {
        if (v.grad == null) v.grad = g;
        else be.addInPlace(v.grad, g);
    }

    /** Gradient of x + y: the same tensor flows to both; one of them gets a copy so neither aliases the other. */
    private void passSum(Var x, Var y, Tensor g) {
        accumulate(x, g);
        if (y.grad == null) {
            Tensor copy = be.scratch(g.dtype(), g.shape());
            be.copy(g, copy);
            y.grad = copy;
        } else {
            be.addInPlace(y.grad, g);
        }
    }

    /** The same values in another shape (a view); the gradient flows back reshaped. */
    public Var reshape(Var x, int... shape) {
        int[] original = x.value.shape();
        return op(x.value.reshape(shape), g -> accumulate(x, g.reshape(original)));
    }

    /** Paper Eq. 2 patch embedding (K = 1: plain lookup). */
    public Var patchEmbed(Parameter table, Tensor tokens, int k) {
        return op(be.patchEmbed(table.compute(), tokens, k), g -> be.patchEmbedBackward(g, tokens, k, table.grad()));
    }

    /** x · Wᵀ (a Hugging Face Linear without bias). */
    public Var linear(Var x, Parameter w) {
        return op(be.matmul(x.value, w.compute()), g -> accumulate(x, be.matmulBackward(g, x.value, w.compute(), w.grad(), true)));
    }

    public Var rmsNorm(Var x, Parameter gain, float eps) {
        RmsNormOut r = be.rmsNorm(x.value, gain.compute(), eps);
        return op(r.y(), g -> accumulate(x, be.rmsNormBackward(g, x.value, gain.compute(), r.rstd(), gain.grad())));
    }

    /** Outputs of {@link #addRmsNorm}: the new residual stream and its normalized copy. */
    public record AddNorm(Var sum, Var normed) {}

    /** sum = residual + branch; normed = rmsNorm(sum) — one fused pass forward. */
    public AddNorm addRmsNorm(Var residual, Var branch, Parameter gain, float eps) {
        Backend.AddRmsNormOut r = be.addRmsNorm(residual.value, branch.value, gain.compute(), eps);
        Var sum = new Var(r.sum());
        Var normed = new Var(r.y());
        backwardOps.add(() -> {
            // Both outputs are consumed later on the tape, so their gradients are complete here.
            Tensor dSum = sum.grad;
            if (normed.grad != null) {
                if (dSum != null && dSum.dtype() == r.sum().dtype() && dSum.sameShape(r.sum()) && !dSum.overlaps(normed.grad)
                        && !dSum.overlaps(r.sum())) {
                    // dSum += the norm's input gradient, in the backward kernel itself (no dx buffer, no add kernel)
                    be.rmsNormBackwardAccumulate(normed.grad, r.sum(), gain.compute(), r.rstd(), gain.grad(), dSum);
                } else {
                    Tensor viaNorm = be.rmsNormBackward(normed.grad, r.sum(), gain.compute(), r.rstd(), gain.grad());
                    if (dSum == null) dSum = viaNorm;
                    else be.addInPlace(dSum, viaNorm);
                }
            }
            if (dSum != null) passSum(residual, branch, dSum);
        });
        return new AddNorm(sum, normed);
    }

    /** A stretch of the forward pass from (residual stream, its normalized copy) to the same pair: a transformer layer. */
    @FunctionalInterface
    public interface Segment {
        /** Records the segment on {@code tape}; {@code again} is true when the backward recomputes it. */
        AddNorm apply(Tape tape, Var residual, Var normed, boolean again);
    }

    /**
     * Activation recompute ("gradient checkpointing") of one segment: the forward runs it and keeps only its two
     * outputs, returning the segment's temporaries to the scratch pool at once ({@link Backend#releaseScratchTo}); the
     * backward runs it again from the kept inputs, recording, back-propagates through that, keeps the two input
     * gradients and again releases the rest. Memory: the activations of one segment instead of all of them, for one
     * more forward pass of compute. The recomputed forward repeats the same deterministic kernels on the same inputs,
     * so gradients are those of the plain tape. Outputs must have their inputs' shapes and dtypes (a layer's do).
     */
    public AddNorm checkpoint(Var residual, Var normed, Segment segment) {
        Tensor keepSum = be.scratch(residual.value.dtype(), residual.value.shape());
        Tensor keepNormed = be.scratch(normed.value.dtype(), normed.value.shape());
        long mark = be.scratchMark();
        Tape forward = segmentTape();
        AddNorm out = segment.apply(forward, residual, normed, false);
        forward.clear();  // the forward's closures are not needed: the backward records the segment again
        requireLike(out.sum().value, keepSum, "sum");
        requireLike(out.normed().value, keepNormed, "normed");
        be.copy(out.sum().value, keepSum);
        be.copy(out.normed().value, keepNormed);
        be.releaseScratchTo(mark);
        Var sum = new Var(keepSum), norm = new Var(keepNormed);
        backwardOps.add(() -> {
            if (sum.grad == null && norm.grad == null) return;
            // The input gradients leave in the output gradients' buffers (dead once the segment is back-propagated,
            // taken before the mark below so they outlive its release, and of the same shapes); only a missing one is
            // allocated. So a layer's backward holds no buffer beyond the two it was handed.
            Tensor dResidual = sum.grad != null ? sum.grad : be.scratch(residual.value.dtype(), residual.value.shape());
            Tensor dNormed = norm.grad != null ? norm.grad : be.scratch(normed.value.dtype(), normed.value.shape());
            long again = be.scratchMark();
            Tape sub = segmentTape();
            Var r = new Var(residual.value), n = new Var(normed.value);
            AddNorm o = segment.apply(sub, r, n, true);
            o.sum().grad = sum.grad;
            o.normed().grad = norm.grad;
            sub.backward();
            boolean hasResidual = r.grad != null, hasNormed = n.grad != null;
            if (hasResidual && r.grad != dResidual) be.copy(r.grad, dResidual);  // usually it is: the residual adds pass it on
            if (hasNormed && n.grad != dNormed) be.copy(n.grad, dNormed);
            be.releaseScratchTo(again);
            if (hasResidual) accumulate(residual, dResidual);
            if (hasNormed) accumulate(normed, dNormed);
        });
        return new AddNorm(sum, norm);
    }

    /** The segment tape, empty (also after a segment that threw half-way through). */
    private Tape segmentTape() {
        if (segmentTape == null) segmentTape = new Tape(be);
        segmentTape.clear();
        return segmentTape;
    }

    private static void requireLike(Tensor got, Tensor want, String what) {
        if (got.dtype() != want.dtype() || !got.sameShape(want))
            throw new IllegalStateException("checkpointed segment's " + what + " " + got + " does not match its input " + want);
    }

    /** Rotary embedding with positions = row index within the sequence (the patch index in the patch stage). */
    public Var rope(Var x, int seqLen, int heads, Rope rope) {
        return op(be.rope(x.value, seqLen, heads, rope), g -> accumulate(x, be.ropeBackward(g, seqLen, heads, rope)));
    }

    /** Grouped-query attention: each of kvHeads heads of x serves {@code groups} query heads (the identity when groups = 1). */
    public Var repeatHeads(Var x, int kvHeads, int groups) {
        if (groups == 1) return x;
        return op(be.repeatHeads(x.value, kvHeads, groups), g -> accumulate(x, be.repeatHeadsBackward(g, kvHeads, groups)));
    }

    public Var attention(Var q, Var k, Var v, int seqLen, int heads) {
        AttentionOut a = be.attention(q.value, k.value, v.value, seqLen, heads);
        return op(a.out(), g -> {
            AttentionGrads d = be.attentionBackward(g, q.value, k.value, v.value, a.out(), a.lse(), seqLen, heads);
            accumulate(q, d.dq());
            accumulate(k, d.dk());
            accumulate(v, d.dv());
        });
    }

    public Var swiglu(Var gate, Var up) {
        return op(be.swiglu(gate.value, up.value), g -> {
            SwiGluGrads d = be.swigluBackward(g, gate.value, up.value);
            accumulate(gate, d.dGate());
            accumulate(up, d.dUp());
        });
    }

    /**
     * Fused K-target cross-entropy (paper Eq. 3) over the first {@code vocab} columns. Computes the row losses and,
     * when {@code gradScale != 0}, overwrites the logits with their gradient, which seeds the backward pass.
     * Returns F32 row losses [N].
     */
    public Tensor crossEntropyK(Var logits, Tensor targets, int vocab, float gradScale) {
        Tensor rowLoss = be.crossEntropyK(logits.value, targets, vocab, gradScale);
        if (gradScale != 0f) backwardOps.add(() -> logits.grad = logits.value);
        return rowLoss;
    }

    /** Runs the recorded backward closures in reverse and clears the tape. */
    public void backward() {
        for (int i = backwardOps.size() - 1; i >= 0; i--) backwardOps.get(i).run();
        backwardOps.clear();
    }

    /** Drops recorded ops without running them (evaluation). */
    public void clear() { backwardOps.clear(); }
}
