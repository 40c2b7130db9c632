package dev.patchcore.train;

import dev.patchcore.data.PatchMode;

/**
 * How the patch stage is set up beyond K and λ: how patches are formed ({@link PatchMode}), and paper §3.7's
 * architecture variants, a linear projection at the model's input (K token embeddings → the patch embedding, instead
 * of their mean) and/or output (the patch representation → K token representations, each through the LM head, instead
 * of one distribution for all K tokens). The projections exist in the patch stage only; the token stage discards them.
 * The paper found neither helps the final token-level model (Table 5). {@code shortContext}: the patch stage reads T
 * tokens (T/K patches) per sequence instead of K·T, the context ablation of §3.2 (slightly worse in the paper).
 */
public record PatchOptions(PatchMode mode, boolean inputProjection, boolean outputProjection, boolean shortContext) {
    /** The method: consecutive tokens, mean embedding, one shared distribution, sequences of K·T tokens. */
    public static final PatchOptions DEFAULT = new PatchOptions(PatchMode.CONSECUTIVE, false, false, false);

    public PatchOptions(PatchMode mode, boolean inputProjection, boolean outputProjection) {
        this(mode, inputProjection, outputProjection, false);
    }

    public PatchOptions {
        if (mode == null) mode = PatchMode.CONSECUTIVE;
    }

    public boolean projections() { return inputProjection || outputProjection; }
}
