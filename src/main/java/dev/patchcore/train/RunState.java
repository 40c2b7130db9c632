package dev.patchcore.train;

/**
 * Where a run stands: the stage being trained, optimizer steps completed in it, steps completed overall,
 * the data sampler's state and the tokens consumed so far.
 */
public record RunState(int stageIndex, long stepInStage, long globalStep, String samplerState, long tokensSeen) {
    public static RunState start() { return new RunState(0, 0, 0, null, 0); }

    /** Stage {@code stageIndex} done: the next stage (past the last one, the run is done) starts from its first step. */
    public static RunState afterStage(int stageIndex, long globalStep, long tokensSeen) {
        return new RunState(stageIndex + 1, 0, globalStep, null, tokensSeen);
    }
}
