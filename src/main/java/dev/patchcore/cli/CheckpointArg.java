package dev.patchcore.cli;

import dev.patchcore.train.Checkpoints;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.train.HuggingFaceModel;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;

/**
 * The checkpoint a command reads, given either as its one positional argument ({@code eval runs/tiny-…}) or as
 * {@code --checkpoint}: a run folder (its latest checkpoint) or one checkpoint folder.
 */
public final class CheckpointArg {
    @Parameters(index = "0", arity = "0..1", paramLabel = "RUN_OR_CHECKPOINT",
            description = "run folder (its latest checkpoint), checkpoint folder or Hugging Face LLaMA folder; the same as --checkpoint")
    Path positional;

    @Option(names = "--checkpoint", paramLabel = "RUN_OR_CHECKPOINT", description = "run folder, checkpoint folder or Hugging Face LLaMA folder")
    Path option;

    @Option(names = "--context", paramLabel = "T", description = "the context in tokens: eval's blocks, generate's window, "
            + "finetune's sequences (default: the checkpoint's; for a Hugging Face folder its max_position_embeddings, at most "
            + HuggingFaceModel.DEFAULT_CONTEXT + ")")
    Integer context;

    /** The checkpoint's model with the context to use ({@link #workingContext}). */
    public ModelConfig modelConfig(Path ckpt) {
        return workingContext(Checkpoints.readModelConfig(ckpt), ckpt, context);
    }

    /**
     * {@code cfg} with the context {@code context} where given; else a Hugging Face folder's max_position_embeddings
     * capped at {@link HuggingFaceModel#DEFAULT_CONTEXT} (LLaMA-3.2 says 131072: its longest context, not a window to
     * allocate a KV cache or a block of logits for), with a note on stderr; else the checkpoint's own.
     */
    static ModelConfig workingContext(ModelConfig cfg, Path ckpt, Integer context) {
        return workingContext(cfg, ckpt, context, System.err::println);
    }

    /** The same, giving its note to {@code note} (train says it once the run starts, so that an error after it is one line). */
    static ModelConfig workingContext(ModelConfig cfg, Path ckpt, Integer context, java.util.function.Consumer<String> note) {
        if (context != null) {
            if (context < 1) throw new IllegalArgumentException("--context must be positive (got " + context + ")");
            return cfg.withContext(context);
        }
        if (cfg.contextLength() > HuggingFaceModel.DEFAULT_CONTEXT && HuggingFaceModel.is(ckpt)) {
            note.accept("note: " + ckpt + "'s max_position_embeddings is " + cfg.contextLength() + "; using a context of "
                    + HuggingFaceModel.DEFAULT_CONTEXT + " tokens (--context sets another)");
            return cfg.withContext(HuggingFaceModel.DEFAULT_CONTEXT);
        }
        return cfg;
    }

    /** Whether a checkpoint was named at all. */
    boolean given() { return positional != null || option != null; }

    /** The checkpoint folder named, resolved to the latest checkpoint of a run folder. */
    public Path resolve() {
        if (positional != null && option != null && !positional.equals(option))
            throw new IllegalArgumentException("two checkpoints given (" + positional + " and --checkpoint " + option + "); give one");
        Path p = option != null ? option : positional;
        if (p == null) throw new IllegalArgumentException("no checkpoint given: name a run folder or checkpoint folder (or --checkpoint DIR)");
        return Checkpoints.latest(p);
    }
}
