package dev.patchcore.backend.cpu;

import java.util.Arrays;

/**
 * Causal attention tiled over query blocks (BR rows) and key blocks (BC keys) with an online softmax
 * (FlashAttention-2 style): per (sequence, head) task the extra memory is Kᵀ and Vᵀ of that head (O(T·Dh)) plus
 * O(BR·BC) tile scalars, never a T×T score matrix. Every product inside a tile — S = Q·Kᵀ, O += P·V and, backward,
 * dP = dO·Vᵀ, dV += Pᵀ·dO, dQ += dS·K, dK += dSᵀ·Q — runs on the GEMM micro-kernel ({@link CpuKernels#gemm}),
 * which keeps its accumulators in registers. (The first version took one dot product per score and one axpy per
 * accumulated row: at head dim 32 the attention then cost more than all the model's GEMMs together.)
 * The forward saves the row log-sum-exp; the backward recomputes probabilities from it, with the row-wise
 * D = dot(dO, O) pre-pass per query block. Layout: q, k, v, out [B·T, H·Dh] row-major; lse [B, H, T].
 */
final class FlashAttention {
    static final int BR = 32;
    static final int BC = 32;

    private final CpuKernels kern;
    private final Parallel par;
    private final ThreadScratch work = new ThreadScratch();

    FlashAttention(CpuKernels kern, Parallel par) {
        this.kern = kern;
        this.par = par;
    }

    /** dst[d·T + t] = src row t (of this head), for t in [0, T): the head's keys or values as a [Dh × T] matrix. */
    private static void transposeHead(float[] src, int off, int ld, int seqLen, int headDim, float[] dst, int dOff) {
        for (int t = 0; t < seqLen; t++) {
            int r = off + t * ld;
            for (int d = 0; d < headDim; d++) dst[dOff + d * seqLen + t] = src[r + d];
        }
    }

    void forward(float[] q, int qo, float[] k, int ko, float[] v, int vo, float[] out, int oo, float[] lse, int lo,
                 int batch, int seqLen, int heads, int headDim) {
        final int ld = heads * headDim;
        final float scale = (float) (1.0 / Math.sqrt(headDim));
        par.forEach(batch * heads, task -> {
            int b = task / heads, h = task % heads;
            int rowBase = b * seqLen, col = h * headDim;
            // w: Kᵀ [Dh × T] | S then P [BR × BC] | running max m [BR] | running sum l [BR]
            final int kt = 0, sc = headDim * seqLen, mx = sc + BR * BC, sm = mx + BR;
            float[] w = work.floats(sm + BR);
            transposeHead(k, ko + rowBase * ld + col, ld, seqLen, headDim, w, kt);
            for (int i0 = 0; i0 < seqLen; i0 += BR) {
                int i1 = Math.min(seqLen, i0 + BR), mb = i1 - i0;
                int oi0 = oo + (rowBase + i0) * ld + col;
                for (int r = 0; r < mb; r++) {
                    w[mx + r] = Float.NEGATIVE_INFINITY;
                    w[sm + r] = 0f;
                    Arrays.fill(out, oi0 + r * ld, oi0 + r * ld + headDim, 0f);
                }
                for (int j0 = 0; j0 < i1; j0 += BC) {
                    int nb = Math.min(j0 + BC, i1) - j0;
                    Arrays.fill(w, sc, sc + mb * BC, 0f);
                    kern.gemm(q, qo + (rowBase + i0) * ld + col, ld, w, kt + j0, seqLen, w, sc, BC, mb, nb, headDim);
                    for (int r = 0; r < mb; r++) {
                        int valid = Math.max(0, Math.min(nb, i0 + r - j0 + 1)), s0 = sc + r * BC;  // keys j ≤ i
                        float tileMax = Float.NEGATIVE_INFINITY;
                        for (int j = 0; j < valid; j++) tileMax = Math.max(tileMax, w[s0 + j] *= scale);
                        float mOld = w[mx + r], mNew = Math.max(mOld, tileMax), l = w[sm + r];
                        if (mOld != Float.NEGATIVE_INFINITY && mNew != mOld) {
                            // Rescale what was accumulated under the old max.
                            float corr = FastExp.exp(mOld - mNew);
                            l *= corr;
                            int oi = oi0 + r * ld;
                            for (int d = 0; d < headDim; d++) out[oi + d] *= corr;
                        }
                        if (valid > 0) l += (float) kern.exp(w, s0, w, s0, valid, 1f, -mNew);  // P = e^(S − m)
                        Arrays.fill(w, s0 + valid, s0 + nb, 0f);                                  // masked keys
                        w[mx + r] = mNew;
                        w[sm + r] = l;
                    }
                    kern.gemm(w, sc, BC, v, vo + (rowBase + j0) * ld + col, ld, out, oi0, ld, mb, headDim, nb);  // O += P·V
                }
                for (int r = 0; r < mb; r++) {
                    float m = w[mx + r], l = w[sm + r], inv = 1f / l;
                    int oi = oi0 + r * ld;
                    for (int d = 0; d < headDim; d++) out[oi + d] *= inv;
                    lse[lo + (b * heads + h) * seqLen + i0 + r] = m + (float) Math.log(l);
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
            // w: Kᵀ, Vᵀ [Dh × T] | P [BR × BC] | dP then dS [BR × BC] | D_i [BR] | lse_i [BR]. Pᵀ and dSᵀ are read
            // in place (the GEMM kernel's transposed-A form).
            final int kt = 0, vt = headDim * seqLen, pp = 2 * headDim * seqLen, ds = pp + BR * BC, dd = ds + BR * BC,
                    ls = dd + BR;
            float[] w = work.floats(ls + BR);
            transposeHead(k, ko + rowBase * ld + col, ld, seqLen, headDim, w, kt);
            transposeHead(v, vo + rowBase * ld + col, ld, seqLen, headDim, w, vt);
            for (int i0 = 0; i0 < seqLen; i0 += BR) {
                int i1 = Math.min(seqLen, i0 + BR), mb = i1 - i0;
                int qi0 = qo + (rowBase + i0) * ld + col, gi0 = dOo + (rowBase + i0) * ld + col;
                for (int r = 0; r < mb; r++) {
                    // D_i through the GEMM kernel like dP below, so that with one visible key dP − D is exactly 0.
                    w[dd + r] = 0f;
                    kern.gemm(dOut, gi0 + r * ld, ld, out, oo + (rowBase + i0 + r) * ld + col, 1, w, dd + r, 1, 1, 1, headDim);
                    w[ls + r] = lse[lo + (b * heads + h) * seqLen + i0 + r];
                }
                for (int j0 = 0; j0 < i1; j0 += BC) {
                    int nb = Math.min(j0 + BC, i1) - j0;
                    Arrays.fill(w, pp, pp + mb * BC, 0f);
                    Arrays.fill(w, ds, ds + mb * BC, 0f);
                    kern.gemm(q, qi0, ld, w, kt + j0, seqLen, w, pp, BC, mb, nb, headDim);    // S = Q·Kᵀ
                    kern.gemm(dOut, gi0, ld, w, vt + j0, seqLen, w, ds, BC, mb, nb, headDim); // dP = dO·Vᵀ
                    for (int r = 0; r < mb; r++) {
                        int valid = Math.max(0, Math.min(nb, i0 + r - j0 + 1)), p0 = pp + r * BC, d0 = ds + r * BC;
                        float di = w[dd + r];
                        kern.exp(w, p0, w, p0, valid, scale, -w[ls + r]);  // P = e^(scale·S − lse)
                        for (int j = 0; j < valid; j++) w[d0 + j] = w[p0 + j] * (w[d0 + j] - di) * scale;
                        Arrays.fill(w, p0 + valid, p0 + nb, 0f);  // masked keys
                        Arrays.fill(w, d0 + valid, d0 + nb, 0f);
                    }
                    int kj0 = ko + (rowBase + j0) * ld + col, vj0 = (rowBase + j0) * ld + col;
                    kern.gemm(w, pp, 1, BC, dOut, gi0, ld, dv, dvo + vj0, ld, nb, headDim, mb);  // dV += Pᵀ·dO
                    kern.gemm(w, ds, BC, k, kj0, ld, dq, dqo + (rowBase + i0) * ld + col, ld, mb, headDim, nb); // dQ += dS·K
                    kern.gemm(w, ds, 1, BC, q, qi0, ld, dk, dko + vj0, ld, nb, headDim, mb);     // dK += dSᵀ·Q
                }
            }
        });
    }
}
