package dev.patchcore.autograd;

import dev.patchcore.tensor.Tensor;

/** A value on the tape and the gradient that flows back into it (null until something contributes). */
public final class Var {
    final Tensor value;
    Tensor grad;

    Var(Tensor value) { this.value = value; }

    public Tensor value() { return value; }

    public Tensor grad() { return grad; }
}
