package dev.patchcore.train;

/**
 * Linear warmup to the peak (step s of w gets peak·(s + 1)/w, so the first step learns and step w − 1 is at the peak),
 * then cosine decay from the peak at step w to peak·minRatio at the last step.
 */
public record LrSchedule(float peak, float minRatio, long warmup, long total) {

    public static LrSchedule forStage(TrainConfig c, long stageSteps) {
        long w = c.warmup() >= 0 ? c.warmup() : Math.min(2000, Math.max(1, stageSteps / 10));
        return new LrSchedule(c.lr(), c.minLrRatio(), Math.min(w, stageSteps), stageSteps);
    }

    /** Learning rate for 0-based step {@code step}. */
    public float at(long step) {
        if (step < warmup) return peak * (step + 1) / warmup;
        long decaySteps = total - warmup;  // ≥ 1 here: warmup ≤ step < total
        double progress = decaySteps == 1 ? 1 : (double) (step - warmup) / (decaySteps - 1);
        double cos = 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
        return (float) (peak * (minRatio + (1 - minRatio) * cos));
    }
}
