package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * AdamW with fp32 moments and global-norm clipping. A new instance is a fresh optimizer: the trainer makes one
 * per stage, so moments and the step counter restart at the stage switch (paper §3.1).
 */
public final class AdamW implements AutoCloseable {
    private final Backend backend;
    private final List<Parameter> params;
    private final List<Tensor> m = new ArrayList<>(), v = new ArrayList<>(), grads = new ArrayList<>();
    private final TrainConfig cfg;
    private int step;

    public AdamW(Backend backend, List<Parameter> params, TrainConfig cfg) {
        this.backend = backend;
        this.params = params;
        this.cfg = cfg;
        for (Parameter p : params) {
            m.add(backend.allocate(DType.F32, p.shape()));
            v.add(backend.allocate(DType.F32, p.shape()));
            grads.add(p.grad());
        }
    }

    public int step() { return step; }

    /** The parameters it updates, in the order of its moments. */
    public List<Parameter> parameters() { return java.util.Collections.unmodifiableList(params); }

    public List<Tensor> firstMoments() { return m; }

    public List<Tensor> secondMoments() { return v; }

    public void restore(int step, List<float[]> m1, List<float[]> m2) {
        this.step = step;
        for (int i = 0; i < params.size(); i++) {
            backend.upload(m.get(i), m1.get(i));
            backend.upload(v.get(i), m2.get(i));
        }
    }

    /** Global L2 norm of all gradients (one host synchronization). */
    public double gradNorm() { return Math.sqrt(backend.sumOfSquares(grads)); }

    /** Clips to {@code cfg.clip()} by global norm, updates every parameter, zeroes the gradients. */
    public void update(float lr, double gradNorm) {
        step++;
        float scale = cfg.clip() > 0 && gradNorm > cfg.clip() ? (float) (cfg.clip() / (gradNorm + 1e-6)) : 1f;
        for (int i = 0; i < params.size(); i++) {
            Parameter p = params.get(i);
            Backend.AdamWStep s = new Backend.AdamWStep(lr, cfg.beta1(), cfg.beta2(), cfg.eps(),
                    p.decay() ? cfg.weightDecay() : 0f, step, scale);
            backend.adamW(p.master(), p.grad(), m.get(i), v.get(i), p.hasSeparateCompute() ? p.compute() : null, s);
            backend.zero(p.grad());
        }
    }

    @Override public void close() {
        m.forEach(backend::free);
        v.forEach(backend::free);
    }
}
