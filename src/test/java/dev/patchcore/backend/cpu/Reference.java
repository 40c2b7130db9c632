package dev.patchcore.backend.cpu;

/**
 * Float64 forward references written as the plainest loops, independent of the backend's code. Gradient tests
 * take central differences of these, so a wrong backward in the backend cannot hide behind a matching forward.
 */
final class Reference {
    private Reference() {}

    static double[] patchEmbed(double[] table, int[] tokens, int k, int d) {
        int rows = tokens.length / k;
        double[] out = new double[rows * d];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < k; j++)
                for (int c = 0; c < d; c++) out[r * d + c] += table[tokens[r * k + j] * d + c] / k;
        return out;
    }

    /** y = x · wᵀ, x [n, in], w [out, in]. */
    static double[] matmul(double[] x, double[] w, int n, int in, int out) {
        double[] y = new double[n * out];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) {
                double s = 0;
                for (int p = 0; p < in; p++) s += x[i * in + p] * w[o * in + p];
                y[i * out + o] = s;
            }
        return y;
    }

    static double[] rmsNorm(double[] x, double[] gain, int n, int d, double eps) {
        double[] y = new double[n * d];
        for (int r = 0; r < n; r++) {
            double ss = 0;
            for (int c = 0; c < d; c++) ss += x[r * d + c] * x[r * d + c];
            double rstd = 1 / Math.sqrt(ss / d + eps);
            for (int c = 0; c < d; c++) y[r * d + c] = x[r * d + c] * rstd * gain[c];
        }
        return y;
    }

    static double[] rstd(double[] x, int n, int d, double eps) {
        double[] r = new double[n];
        for (int i = 0; i < n; i++) {
            double ss = 0;
            for (int c = 0; c < d; c++) ss += x[i * d + c] * x[i * d + c];
            r[i] = 1 / Math.sqrt(ss / d + eps);
        }
        return r;
    }

    /** Hugging Face's repeat_kv on rows: head h of the result is head h / groups of x. */
    static double[] repeatHeads(double[] x, int n, int kvHeads, int groups, int headDim) {
        int width = kvHeads * headDim, out = width * groups;
        double[] y = new double[n * out];
        for (int r = 0; r < n; r++)
            for (int h = 0; h < kvHeads * groups; h++)
                for (int c = 0; c < headDim; c++) y[r * out + h * headDim + c] = x[r * width + h / groups * headDim + c];
        return y;
    }

    /** Hugging Face rotate_half: out = x·cos + rotate_half(x)·sin with rotate_half(x) = [−x2, x1]. */
    static double[] rope(double[] x, int n, int seqLen, int heads, int headDim, double theta) {
        double[] invFreq = new double[headDim / 2];
        for (int i = 0; i < invFreq.length; i++) invFreq[i] = 1 / Math.pow(theta, 2.0 * i / headDim);
        return rope(x, n, seqLen, heads, headDim, invFreq);
    }

    /** RoPE with the given frequencies (angle of position t, pair i: t · invFreq[i]). */
    static double[] rope(double[] x, int n, int seqLen, int heads, int headDim, double[] invFreq) {
        int half = headDim / 2, width = heads * headDim;
        double[] y = new double[x.length];
        for (int r = 0; r < n; r++) {
            int t = r % seqLen;
            for (int h = 0; h < heads; h++)
                for (int c = 0; c < headDim; c++) {
                    int i = c % half;
                    double angle = t * invFreq[i];
                    int base = r * width + h * headDim;
                    double rot = c < half ? -x[base + c + half] : x[base + c - half];
                    y[base + c] = x[base + c] * Math.cos(angle) + rot * Math.sin(angle);
                }
        }
        return y;
    }

    /** Causal softmax attention that materializes every T×T score matrix. Returns out; lse into {@code lse} if non-null. */
    static double[] attention(double[] q, double[] k, double[] v, int batch, int seqLen, int heads, int headDim, double[] lse) {
        int width = heads * headDim;
        double[] out = new double[q.length];
        double scale = 1 / Math.sqrt(headDim);
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++) {
                double[][] s = new double[seqLen][seqLen];
                for (int i = 0; i < seqLen; i++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int c = 0; c < headDim; c++)
                            dot += q[(b * seqLen + i) * width + h * headDim + c] * k[(b * seqLen + j) * width + h * headDim + c];
                        s[i][j] = dot * scale;
                        max = Math.max(max, s[i][j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= i; j++) z += Math.exp(s[i][j] - max);
                    if (lse != null) lse[(b * heads + h) * seqLen + i] = max + Math.log(z);
                    for (int j = 0; j <= i; j++) {
                        double p = Math.exp(s[i][j] - max) / z;
                        for (int c = 0; c < headDim; c++)
                            out[(b * seqLen + i) * width + h * headDim + c] += p * v[(b * seqLen + j) * width + h * headDim + c];
                    }
                }
            }
        return out;
    }

    /**
     * Generation's cached attention: queries q [n, heads·Dh] at positions start … start + n − 1 over cache rows k, v
     * [capacity, kvHeads·Dh], query i seeing rows 0 … start + i, query head h reading key/value head h / (heads / kvHeads).
     */
    static double[] attendCached(double[] q, double[] k, double[] v, int n, int start, int heads, int kvHeads, int headDim) {
        int width = heads * headDim, kvWidth = kvHeads * headDim, groups = heads / kvHeads;
        double[] out = new double[n * width];
        double scale = 1 / Math.sqrt(headDim);
        for (int i = 0; i < n; i++)
            for (int h = 0; h < heads; h++) {
                int seen = start + i + 1, kv = h / groups;
                double[] s = new double[seen];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < seen; j++) {
                    for (int c = 0; c < headDim; c++) s[j] += q[i * width + h * headDim + c] * k[j * kvWidth + kv * headDim + c];
                    s[j] *= scale;
                    max = Math.max(max, s[j]);
                }
                double z = 0;
                for (int j = 0; j < seen; j++) z += Math.exp(s[j] - max);
                for (int j = 0; j < seen; j++)
                    for (int c = 0; c < headDim; c++)
                        out[i * width + h * headDim + c] += Math.exp(s[j] - max) / z * v[j * kvWidth + kv * headDim + c];
            }
        return out;
    }

    static double[] swiglu(double[] gate, double[] up) {
        double[] y = new double[gate.length];
        for (int i = 0; i < y.length; i++) y[i] = gate[i] / (1 + Math.exp(-gate[i])) * up[i];
        return y;
    }

    /** Paper App. A, literally: log_softmax once per row, nll against each of the K targets, summed, divided by K. */
    static double[] crossEntropyK(double[] logits, int[] targets, int n, int vocab, int k) {
        double[] loss = new double[n];
        for (int r = 0; r < n; r++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < vocab; c++) max = Math.max(max, logits[r * vocab + c]);
            double z = 0;
            for (int c = 0; c < vocab; c++) z += Math.exp(logits[r * vocab + c] - max);
            double[] logProbs = new double[vocab];
            for (int c = 0; c < vocab; c++) logProbs[c] = logits[r * vocab + c] - max - Math.log(z);
            double l = 0;
            for (int i = 0; i < k; i++) l += -logProbs[targets[r * k + i]];
            loss[r] = l / k;
        }
        return loss;
    }
}
