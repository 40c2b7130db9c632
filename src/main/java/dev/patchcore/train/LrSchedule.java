package dev.patchcore.train;

/** Linear warmup from 0 to the peak, then cosine decay to peak·minRatio at the last step. */
public record LrSchedule(float peak, float minRatio, long warmup, long total) {

    public static LrSchedule forStage(TrainConfig c, long stageSteps) {
        long w = c.warmup() >= 0 ? c.warmup() : Math.min(2000, Math.max(1, stageSteps / 10));
        return new LrSchedule(c.lr(), c.minLrRatio(), Math.min(w, stageSteps), stageSteps);
    }

    /** Learning rate for 0-based step {@code step}. */
    public float at(long step) {
        if (step < warmup) return peak * (step + 1) / warmup;
        long decaySteps = total - warmup;
        if (decaySteps <= 1) return peak;
        double progress = (double) (step - warmup) / (decaySteps - 1);
        double cos = 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
        return (float) (peak * (minRatio + (1 - minRatio) * cos));
    }
}
