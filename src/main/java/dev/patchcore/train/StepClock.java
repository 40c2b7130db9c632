package dev.patchcore.train;

/**
 * The wall clock of one stage's steps, for the console's rate and ETA. The first step carries one-time costs (JIT
 * compilation, GEMM tuning, the scratch pool's growth): the rate and the ETA count from its end once a second step is
 * done. The rate (tok/s) is of the training steps alone; the ETA's time per step is the wall time of the later
 * half of the steps, {@link #ETA_WINDOW} at most (the JIT's early slow steps drop out), validations and checkpoints
 * included (they recur).
 */
final class StepClock {
    /** The ETA's window: the wall time of at most this many recent steps. */
    static final int ETA_WINDOW = 100;

    private final long stageStart = System.nanoTime();
    /** stepEnds[m % length]: when the m-th step measured here ended. */
    private final long[] stepEnds = new long[ETA_WINDOW + 1];
    private long steps;
    private double firstStepSec, laterStepsSec;

    /** Records a step that has just ended, whose training took {@code nanos}. */
    void record(long nanos) {
        stepEnds[(int) (++steps % stepEnds.length)] = System.nanoTime();
        if (steps == 1) firstStepSec = nanos / 1e9;
        else laterStepsSec += nanos / 1e9;
    }

    /** Steps measured so far. */
    long steps() { return steps; }

    /** Tokens per second of the training steps alone: from the second step on, or the first if it is the only one. */
    double rate(long tokensPerStep) {
        return steps > 1 ? tokensPerStep * (steps - 1) / laterStepsSec : tokensPerStep / firstStepSec;
    }

    /**
     * Wall seconds per step over the recent window: the later half of the steps after the first, up to
     * {@link #ETA_WINDOW} (early steps run while the JIT still compiles; at step 10 they made the ETA several times too
     * long); while only one step is done, the time since the stage started here.
     */
    double secPerStep() {
        long w = steps < 2 ? 0 : Math.min(Math.max(1, (steps - 1) / 2), ETA_WINDOW);
        return w > 0 ? (System.nanoTime() - stepEnds[(int) ((steps - w) % stepEnds.length)]) / 1e9 / w
                : (System.nanoTime() - stageStart) / 1e9;
    }
}
