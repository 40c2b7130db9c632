package dev.patchcore.autograd;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * A trainable tensor: fp32 master weights, the compute copy the forward reads (the master itself on CPU,
 * a bf16 copy on CUDA), and an fp32 gradient accumulated over micro-batches. A parameter made for inference
 * ({@link #forInference}) is its compute copy alone: no master, no gradient (on CUDA a fifth of the memory).
 */
public final class Parameter {
    private final String name;
    private final int[] shape;
    private final boolean decay;
    private final Tensor master;
    private final Tensor compute;
    private final Tensor grad;

    public Parameter(Backend backend, String name, boolean decay, int... shape) {
        this(backend, name, decay, true, shape);
    }

    private Parameter(Backend backend, String name, boolean decay, boolean trainable, int... shape) {
        this.name = name;
        this.shape = shape.clone();
        this.decay = decay;
        this.master = backend.allocate(trainable ? DType.F32 : backend.activationType(), shape);
        this.compute = !trainable || backend.activationType() == DType.F32 ? master : backend.allocate(backend.activationType(), shape);
        this.grad = trainable ? backend.allocate(DType.F32, shape) : null;
    }

    /** For forward passes only: the compute copy alone (loading rounds to it directly); {@link #grad()} is null. */
    public static Parameter forInference(Backend backend, String name, boolean decay, int... shape) {
        return new Parameter(backend, name, decay, false, shape);
    }

    /** Hugging Face {@code LlamaForCausalLM} tensor name. */
    public String name() { return name; }
    public int[] shape() { return shape.clone(); }
    public long numel() { return master.numel(); }
    /** Whether AdamW applies weight decay (not to norm gains). */
    public boolean decay() { return decay; }
    public Tensor master() { return master; }
    public Tensor compute() { return compute; }
    public Tensor grad() { return grad; }
    /** True when the compute copy is a separate tensor that must follow the master. */
    public boolean hasSeparateCompute() { return compute != master; }

    /** Sets master weights from host floats and refreshes the compute copy. */
    public void load(Backend backend, float[] values) {
        backend.upload(master, values);
        if (hasSeparateCompute()) backend.copy(master, compute);
    }

    /** Returns the parameter's memory to the backend (it must not be used afterwards). */
    public void free(Backend backend) {
        backend.free(master);
        if (hasSeparateCompute()) backend.free(compute);
        if (grad != null) backend.free(grad);
    }
}
