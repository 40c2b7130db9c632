package dev.patchcore.selftest;

import dev.patchcore.tensor.DType;

import java.util.List;

/** One parity row: op, shape, dtype of the checked output, relative error, threshold and verdict. */
public record CheckResult(String op, String shape, String dtype, double relErr, double threshold, boolean passed, String note) {

    public static CheckResult of(String op, String shape, DType dtype, double relErr, double threshold) {
        boolean ok = !Double.isNaN(relErr) && relErr <= threshold;
        return new CheckResult(op, shape, dtype.name(), relErr, threshold, ok, "");
    }

    public static CheckResult failed(String op, String shape, String dtype, String why) {
        return new CheckResult(op, shape, dtype, Double.NaN, 0, false, why);
    }

    /** A fixed-width table row. */
    public String row() {
        return String.format("%-36s %-28s %-5s %10s %9.0e  %s%s", op, shape, dtype,
                Double.isNaN(relErr) ? "NaN" : String.format("%.3e", relErr), threshold, passed ? "PASS" : "FAIL",
                note.isEmpty() ? "" : "  " + note);
    }

    public static String header() {
        return String.format("%-36s %-28s %-5s %10s %9s  %s", "op", "shape", "dtype", "rel err", "threshold", "result");
    }

    public static long failures(List<CheckResult> rows) { return rows.stream().filter(r -> !r.passed()).count(); }
}
