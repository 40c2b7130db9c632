package dev.patchcore.backend.cuda;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Chooses one of cuBLASLt's heuristic candidates per GEMM key by timing them, once, and keeps the choice for the life
 * of the backend, so every later call of that GEMM runs the same algorithm (results stay reproducible within a run;
 * different algorithms may differ in the last bits because they sum in a different order).
 *
 * <p>Selection: round 1 times every candidate; round 2 times again those within {@link #RECHECK_FACTOR} of the best
 * and keeps each one's minimum (GPU timing noise only ever adds time). A candidate that throws (e.g. the library
 * rejects it at run time) is dropped. The winner is the best-ranked candidate (heuristic order) within
 * {@link #TIE_TOLERANCE} of the fastest: near-ties go to the heuristic's own pick, so the choice does not flip between
 * runs on noise. If every candidate fails, candidate 0 is used and the real call reports the error.
 *
 * @param <K> the GEMM key (shape, transposes, types, alignments, beta)
 */
final class GemmTuner<K> {
    static final double RECHECK_FACTOR = 1.25;
    static final double TIE_TOLERANCE = 0.01;

    /** {@code PATCHCORE_GEMM_TUNE}: 0 = heuristic's first pick, 1 (default) = time candidates, verbose = also log each choice. */
    enum Mode {
        OFF, ON, VERBOSE;

        static Mode parse(String env) {
            if (env == null || env.isBlank() || env.equals("1")) return ON;
            if (env.equals("0")) return OFF;
            if (env.equalsIgnoreCase("verbose")) return VERBOSE;
            throw new IllegalArgumentException("PATCHCORE_GEMM_TUNE must be 0, 1 or verbose, got '" + env + "'");
        }
    }

    /** Milliseconds per run of candidate {@code index}; throws a RuntimeException when the candidate cannot run. */
    @FunctionalInterface
    interface Measure {
        double millis(int index);
    }

    /**
     * The outcome for one key. {@code millis[i]}: best time of candidate i (NaN: not timed or failed);
     * {@code timed}: whether timing happened at all.
     */
    record Choice(int index, int candidates, boolean timed, double[] millis, int failed) {
        static Choice untimed(int candidates) {
            double[] none = new double[candidates];
            Arrays.fill(none, Double.NaN);
            return new Choice(0, candidates, false, none, 0);
        }

        /** One line: how many candidates, the heuristic's first pick's time and the chosen one's. */
        String summary() {
            if (!timed) return candidates + " candidate(s), untimed: heuristic #0";
            double first = millis[0], chosen = millis[index];
            String gain = Double.isNaN(first) ? "#0 failed" : String.format("%+.1f %% vs #0 (%.4f ms)", 100 * (chosen / first - 1), first);
            return String.format("%d candidates, chose #%d %.4f ms, %s%s", candidates, index, chosen, gain,
                    failed > 0 ? ", " + failed + " failed" : "");
        }
    }

    private final Mode mode;
    private final Map<K, Choice> choices = new HashMap<>();

    GemmTuner(Mode mode) { this.mode = mode; }

    Mode mode() { return mode; }

    /** Whether candidates are timed (otherwise the heuristic's first pick is used). */
    boolean timing() { return mode != Mode.OFF; }

    /** The cached choice for {@code key}, or null before its first {@link #choose}. */
    Choice cached(K key) { return choices.get(key); }

    /**
     * The choice for {@code key}: cached, else selected now among {@code candidates} (measure == null or tuning off:
     * candidate 0 without timing) and cached.
     */
    Choice choose(K key, int candidates, Measure measure) {
        Choice c = choices.get(key);
        if (c != null) return c;
        c = timing() && measure != null ? select(candidates, measure) : Choice.untimed(candidates);
        choices.put(key, c);
        return c;
    }

    /** Times the candidates (see the class comment) and returns the winner. */
    static Choice select(int candidates, Measure measure) {
        if (candidates < 1) throw new IllegalArgumentException("no GEMM candidates to choose from");
        if (candidates == 1) return Choice.untimed(1);
        double[] best = new double[candidates];
        Arrays.fill(best, Double.NaN);
        for (int i = 0; i < candidates; i++) best[i] = tryMeasure(measure, i);
        double min = min(best);
        if (Double.isNaN(min)) return new Choice(0, candidates, true, best, candidates);
        for (int i = 0; i < candidates; i++) {
            if (Double.isNaN(best[i]) || best[i] > min * RECHECK_FACTOR) continue;
            double again = tryMeasure(measure, i);
            best[i] = Double.isNaN(again) ? Double.NaN : Math.min(best[i], again); // failing once disqualifies
        }
        min = min(best);
        int failed = 0;
        for (double t : best) if (Double.isNaN(t)) failed++;
        if (Double.isNaN(min)) return new Choice(0, candidates, true, best, failed);
        int pick = 0;
        while (Double.isNaN(best[pick]) || best[pick] > min * (1 + TIE_TOLERANCE)) pick++;
        return new Choice(pick, candidates, true, best, failed);
    }

    private static double tryMeasure(Measure measure, int i) {
        try {
            double ms = measure.millis(i);
            return ms >= 0 && Double.isFinite(ms) ? ms : Double.NaN;
        } catch (RuntimeException e) {
            return Double.NaN;
        }
    }

    private static double min(double[] v) {
        double m = Double.NaN;
        for (double t : v) if (!Double.isNaN(t) && (Double.isNaN(m) || t < m)) m = t;
        return m;
    }
}
