package dev.patchcore.backend.cpu;

import java.util.Random;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** Central finite differences of a float64 forward under a random projection L = Σ r·out, and error measures. */
final class GradCheck {
    private static final double H = 1e-4;

    private GradCheck() {}

    /** dL/d inputs[which], L = Σ r·f(inputs), by central differences in double. */
    static double[] numeric(Function<double[][], double[]> f, double[][] inputs, int which, double[] r) {
        double[] x = inputs[which];
        double[] g = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double saved = x[i];
            x[i] = saved + H;
            double plus = dot(r, f.apply(inputs));
            x[i] = saved - H;
            double minus = dot(r, f.apply(inputs));
            x[i] = saved;
            g[i] = (plus - minus) / (2 * H);
        }
        return g;
    }

    static double dot(double[] a, double[] b) {
        if (a.length != b.length) throw new AssertionError("length " + a.length + " vs " + b.length);
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    /** ‖actual − expected‖ / ‖expected‖. */
    static double relError(float[] actual, double[] expected) {
        if (actual.length != expected.length) throw new AssertionError("length " + actual.length + " vs " + expected.length);
        double num = 0, den = 0;
        for (int i = 0; i < actual.length; i++) {
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }
        return Math.sqrt(num / Math.max(den, 1e-30));
    }

    static void assertClose(String what, float[] actual, double[] expected, double tol) {
        double e = relError(actual, expected);
        assertTrue(e < tol, what + ": relative error " + e + " ≥ " + tol);
        double norm = 0;
        for (double v : expected) norm += v * v;
        assertTrue(norm > 0, what + ": reference is all zero, the check would prove nothing");
    }

    /** Gaussian floats bounded away from zero. */
    static float[] randn(Random rnd, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            double v = rnd.nextGaussian() * scale;
            if (Math.abs(v) < 0.05 * scale) v = Math.copySign(0.05 * scale, v);
            a[i] = (float) v;
        }
        return a;
    }

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    static float[] toFloat(double[] a) {
        float[] f = new float[a.length];
        for (int i = 0; i < a.length; i++) f[i] = (float) a[i];
        return f;
    }
}
