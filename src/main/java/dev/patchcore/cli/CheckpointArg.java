package dev.patchcore.cli;

import dev.patchcore.train.Checkpoints;
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
