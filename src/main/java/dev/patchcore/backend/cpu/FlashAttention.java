package dev.patchcore.backend.cpu;

import java.util.Arrays;

/**
 * Causal attention tiled over keys with an online softmax (FlashAttention-2 style): per (sequence, head) task
 * the extra memory is O(BR + BC) scalars, never a T×T score matrix. The forward saves the row log-sum-exp; the
 * backward recomputes probabilities from it, with the row-wise D = dot(dO, O) pre-pass per query block.
 * Layout: q, k, v, out [B·T, H·Dh] row-major; lse [B, H, T].
 */
final class FlashAttention {
    static final int BR = 16;
    static final int BC = 32;

    private final MatmulKernel kern;
    private final Parallel par;
    // Per-thread tile state, allocated once per thread and reused for every call.
    private final ThreadLocal<float[]> work = ThreadLocal.withInitial(() -> new float[3 * BR + BC]);

    FlashAttention(MatmulKernel kern, Parallel par) {
        this.kern = kern;
        this.par = par;
    }

    void forward(float[] q, int qo, float[] k, int ko, float[] v, int vo, float[] out, int oo, float[] lse, int lo,
                 int batch, int seqLen, int heads, int headDim) {
        final int ld = heads * headDim;
        final float scale = (float) (1.0 / Math.sqrt(headDim));
        par.forEach(batch * heads, task -> {
            int b = task / heads, h = task % heads;
            int rowBase = b * seqLen, col = h * headDim;
            float[] w = work.get();
            // w[0, BR): running max m; w[BR, 2BR): running sum l; w[3BR, 3BR+BC): scores of one key tile.
            for (int i0 = 0; i0 < seqLen; i0 += BR) {
                int i1 = Math.min(seqLen, i0 + BR);
                for (int i = i0; i < i1; i++) {
                    w[i - i0] = Float.NEGATIVE_INFINITY;
                    w[BR + i - i0] = 0f;
                    int o = oo + (rowBase + i) * ld + col;
                    Arrays.fill(out, o, o + headDim, 0f);
                }
                for (int j0 = 0; j0 < i1; j0 += BC) {
                    int j1 = Math.min(j0 + BC, i1);
                    for (int i = Math.max(i0, j0); i < i1; i++) {
                        int jEnd = Math.min(j1, i + 1);
                        int qi = qo + (rowBase + i) * ld + col, oi = oo + (rowBase + i) * ld + col;
                        float tileMax = Float.NEGATIVE_INFINITY;
                        for (int j = j0; j < jEnd; j++) {
                            float s = kern.dot(q, qi, k, ko + (rowBase + j) * ld + col, headDim) * scale;
                            w[3 * BR + j - j0] = s;
                            tileMax = Math.max(tileMax, s);
                        }
                        float mOld = w[i - i0], mNew = Math.max(mOld, tileMax);
                        float l = w[BR + i - i0];
                        if (mOld != Float.NEGATIVE_INFINITY && mNew != mOld) {
                            // Rescale what was accumulated under the old max.
                            float corr = (float) Math.exp(mOld - mNew);
                            l *= corr;
                            for (int d = 0; d < headDim; d++) out[oi + d] *= corr;
                        }
                        for (int j = j0; j < jEnd; j++) {
                            float p = (float) Math.exp(w[3 * BR + j - j0] - mNew);
                            l += p;
                            kern.axpy(p, v, vo + (rowBase + j) * ld + col, out, oi, headDim);
                        }
                        w[i - i0] = mNew;
                        w[BR + i - i0] = l;
                    }
                }
                for (int i = i0; i < i1; i++) {
                    float m = w[i - i0], l = w[BR + i - i0];
                    float inv = 1f / l;
                    int oi = oo + (rowBase + i) * ld + col;
                    for (int d = 0; d < headDim; d++) out[oi + d] *= inv;
                    lse[lo + (b * heads + h) * seqLen + i] = m + (float) Math.log(l);
                }
            }
        });
    }

    void backward(float[] dOut, int dOo, float[] q, int qo, float[] k, int ko, float[] v, int vo, float[] out, int oo,
                  float[] lse, int lo, float[] dq, int dqo, float[] dk, int dko, float[] dv, int dvo,
                  int batch, int seqLen, int heads, int headDim) {
        final int ld = heads * headDim;
        final float scale = (float) (1.0 / Math.sqrt(headDim));
        par.forEach(batch * heads, task -> {
            int b = task / heads, h = task % heads;
            int rowBase = b * seqLen, col = h * headDim;
            // This task owns the (b, h) slice of dq, dk and dv, so it can zero and accumulate without races.
            for (int t = 0; t < seqLen; t++) {
                int r = (rowBase + t) * ld + col;
                Arrays.fill(dq, dqo + r, dqo + r + headDim, 0f);
                Arrays.fill(dk, dko + r, dko + r + headDim, 0f);
                Arrays.fill(dv, dvo + r, dvo + r + headDim, 0f);
            }
            float[] w = work.get();
            // w[0, BR): D = dot(dO, O) per query row; w[BR, 2BR): lse per query row.
            for (int i0 = 0; i0 < seqLen; i0 += BR) {
                int i1 = Math.min(seqLen, i0 + BR);
                for (int i = i0; i < i1; i++) {
                    int r = (rowBase + i) * ld + col;
                    w[i - i0] = kern.dot(dOut, dOo + r, out, oo + r, headDim);
                    w[BR + i - i0] = lse[lo + (b * heads + h) * seqLen + i];
                }
                for (int j0 = 0; j0 < i1; j0 += BC) {
                    int j1 = Math.min(j0 + BC, i1);
                    for (int i = Math.max(i0, j0); i < i1; i++) {
                        int jEnd = Math.min(j1, i + 1);
                        int ri = (rowBase + i) * ld + col;
                        float di = w[i - i0], lsei = w[BR + i - i0];
                        for (int j = j0; j < jEnd; j++) {
                            int rj = (rowBase + j) * ld + col;
                            float p = (float) Math.exp(kern.dot(q, qo + ri, k, ko + rj, headDim) * scale - lsei);
                            kern.axpy(p, dOut, dOo + ri, dv, dvo + rj, headDim);
                            float dp = kern.dot(dOut, dOo + ri, v, vo + rj, headDim);
                            float ds = p * (dp - di) * scale;
                            kern.axpy(ds, k, ko + rj, dq, dqo + ri, headDim);
                            kern.axpy(ds, q, qo + ri, dk, dko + rj, headDim);
                        }
                    }
                }
            }
        });
    }
}
