package dev.patchcore.train;

/**
 * Where a run stands: the stage being trained, optimizer steps completed in it, steps completed overall,
 * the data sampler's state and the tokens consumed so far.
 */
public record RunState(int stageIndex, long stepInStage, long globalStep, String samplerState, long tokensSeen) {
    public static RunState start() { return new RunState(0, 0, 0, null, 0); }
}
