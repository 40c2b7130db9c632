package dev.patchcore.model;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Paper §3.7's architecture variants of the patch-level model (Table 5): a linear projection at the input,
 * {@code w_in} ∈ R^{Kd×d}, mapping the K token embeddings of a patch (concatenated) to its patch embedding, and/or one
 * at the output, {@code w_out} ∈ R^{d×Kd}, mapping the patch representation to K token representations, each of which
 * goes through the (shared) LM head to predict its own token of the next patch. They are trained in the patch stage
 * and discarded before the token stage.
 *
 * <p>Initialization (the paper does not give one): {@code w_in} averages (each K-block is I/K), so the variant starts as
 * the mean embedding of Eq. 2; {@code w_out} copies (each block is I), so every token starts from the patch
 * representation. Both are weight-decayed like the other matrices. Stored as {@code [out, in]} matrices, as every
 * Linear here.
 */
public final class PatchProjections {
    /** The file a patch-stage checkpoint keeps them in, beside {@code model.safetensors}. */
    public static final String FILE = "patch_projections.safetensors";
    /** The tensors' names in {@link #FILE}: input projection [d, K·d], output projection [K·d, d]. */
    public static final String INPUT = "patch_proj.input.weight", OUTPUT = "patch_proj.output.weight";

    private final int k, d;
    private final Parameter input, output;
    private final List<Parameter> parameters = new ArrayList<>();

    public PatchProjections(Backend backend, ModelConfig c, int k, boolean input, boolean output) {
        if (k < 2) throw new IllegalArgumentException("patch projections need K >= 2, got " + k);
        if (!input && !output) throw new IllegalArgumentException("no projection chosen");
        this.k = k;
        this.d = c.dim();
        this.input = input ? add(new Parameter(backend, INPUT, true, d, k * d)) : null;
        this.output = output ? add(new Parameter(backend, OUTPUT, true, k * d, d)) : null;
    }

    private Parameter add(Parameter p) {
        parameters.add(p);
        return p;
    }

    public int patchSize() { return k; }

    /** {@code [d, K·d]}, or null without an input projection. */
    public Parameter input() { return input; }

    /** {@code [K·d, d]}, or null without an output projection. */
    public Parameter output() { return output; }

    public List<Parameter> parameters() { return Collections.unmodifiableList(parameters); }

    /** Mean-embedding input and copying output (see the class comment). */
    public void initialize(Backend backend) {
        if (input != null) {
            float[] w = new float[d * k * d];
            for (int i = 0; i < d; i++) for (int j = 0; j < k; j++) w[i * k * d + j * d + i] = 1f / k;
            input.load(backend, w);
        }
        if (output != null) {
            float[] w = new float[k * d * d];
            for (int j = 0; j < k; j++) for (int i = 0; i < d; i++) w[(j * d + i) * d + i] = 1f;
            output.load(backend, w);
        }
    }

    /** Rows of the logits per patch: K with an output projection (one distribution per token), else 1. */
    public int rowsPerPatch() { return output != null ? k : 1; }

    public void free(Backend backend) {
        for (Parameter p : parameters) p.free(backend);
    }
}
