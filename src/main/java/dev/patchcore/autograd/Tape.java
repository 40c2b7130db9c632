package dev.patchcore.autograd;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.Backend.AttentionGrads;
import dev.patchcore.backend.Backend.AttentionOut;
import dev.patchcore.backend.Backend.RmsNormOut;
import dev.patchcore.backend.Backend.SwiGluGrads;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;

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

    public Tape(Backend backend) { this.be = backend; }

    public Backend backend() { return be; }

    /** A value that needs no gradient (token ids, inputs). */
    public Var constant(Tensor t) { return new Var(t, null); }


    private static void accumulate(Backend be, Var v, Tensor g) {
        if (v.grad == null) v.grad = g;
        else be.addInPlace(v.grad, g);
    }

    private Var record(Tensor out, Runnable backward) {
        backwardOps.add(backward);
        return new Var(out, null);
    }

    /** Paper Eq. 2 patch embedding (K = 1: plain lookup). */
    public Var patchEmbed(Parameter table, Tensor tokens, int k) {
        Tensor out = be.patchEmbed(table.compute(), tokens, k);
        Var[] self = new Var[1];
        self[0] = record(out, () -> { if (self[0].grad != null) be.patchEmbedBackward(self[0].grad, tokens, k, table.grad()); });
        return self[0];
    }

    /** x · Wᵀ (a Hugging Face Linear without bias). */
    public Var linear(Var x, Parameter w) {
        Tensor out = be.matmul(x.value, w.compute());
        Var[] self = new Var[1];
        self[0] = record(out, () -> {
            if (self[0].grad == null) return;
            Tensor dx = be.matmulBackward(self[0].grad, x.value, w.compute(), w.grad(), true);
            accumulate(be, x, dx);
        });
        return self[0];
    }

    public Var rmsNorm(Var x, Parameter gain, float eps) {
        RmsNormOut r = be.rmsNorm(x.value, gain.compute(), eps);
        Var[] self = new Var[1];
        self[0] = record(r.y(), () -> {
            if (self[0].grad == null) return;
            accumulate(be, x, be.rmsNormBackward(self[0].grad, x.value, gain.compute(), r.rstd(), gain.grad()));
        });
        return self[0];
    }

    /** Outputs of {@link #addRmsNorm}: the new residual stream and its normalized copy. */
    public record AddNorm(Var sum, Var normed) {}

    /** sum = residual + branch; normed = rmsNorm(sum) — one fused pass forward. */
    public AddNorm addRmsNorm(Var residual, Var branch, Parameter gain, float eps) {
        Backend.AddRmsNormOut r = be.addRmsNorm(residual.value, branch.value, gain.compute(), eps);
        Var sum = new Var(r.sum(), null);
        Var normed = new Var(r.y(), null);
        backwardOps.add(() -> {
            // Both outputs are consumed later on the tape, so their gradients are complete here.
            Tensor dSum = sum.grad;
            if (normed.grad != null) {
                Tensor viaNorm = be.rmsNormBackward(normed.grad, r.sum(), gain.compute(), r.rstd(), gain.grad());
                if (dSum == null) dSum = viaNorm;
                else be.addInPlace(dSum, viaNorm);
            }
            if (dSum == null) return;
            passSum(residual, branch, dSum);
        });
        return new AddNorm(sum, normed);
    }

    /** Gradient of x + y: the same tensor flows to both; one of them gets a copy so neither aliases the other. */
    private void passSum(Var x, Var y, Tensor g) {
        accumulate(be, x, g);
        if (y.grad == null) {
            Tensor copy = be.scratch(g.dtype(), g.shape());
            be.copy(g, copy);
            y.grad = copy;
        } else {
            be.addInPlace(y.grad, g);
        }
    }

    /** Rotary embedding with positions = row index within the sequence (the patch index in the patch stage). */
    public Var rope(Var x, int seqLen, int heads, float theta) {
        Tensor out = be.rope(x.value, seqLen, heads, theta);
        Var[] self = new Var[1];
        self[0] = record(out, () -> {
            if (self[0].grad == null) return;
            accumulate(be, x, be.ropeBackward(self[0].grad, seqLen, heads, theta));
        });
        return self[0];
    }

    public Var attention(Var q, Var k, Var v, int seqLen, int heads) {
        AttentionOut a = be.attention(q.value, k.value, v.value, seqLen, heads);
        Var[] self = new Var[1];
        self[0] = record(a.out(), () -> {
            if (self[0].grad == null) return;
            AttentionGrads g = be.attentionBackward(self[0].grad, q.value, k.value, v.value, a.out(), a.lse(), seqLen, heads);
            accumulate(be, q, g.dq());
            accumulate(be, k, g.dk());
            accumulate(be, v, g.dv());
        });
        return self[0];
    }

    public Var swiglu(Var gate, Var up) {
        Tensor out = be.swiglu(gate.value, up.value);
        Var[] self = new Var[1];
        self[0] = record(out, () -> {
            if (self[0].grad == null) return;
            SwiGluGrads g = be.swigluBackward(self[0].grad, gate.value, up.value);
            accumulate(be, gate, g.dGate());
            accumulate(be, up, g.dUp());
        });
        return self[0];
    }

    public Var add(Var x, Var y) {
        Tensor out = be.add(x.value, y.value);
        Var[] self = new Var[1];
        self[0] = record(out, () -> {
            if (self[0].grad != null) passSum(x, y, self[0].grad);
        });
        return self[0];
    }

    /**
     * Fused K-target cross-entropy (paper Eq. 3) over the first {@code vocab} columns. Computes the row losses and, when {@code gradScale != 0},
     * overwrites the logits with their gradient, which seeds the backward pass. Returns F32 row losses [N].
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

    public int size() { return backwardOps.size(); }
}
