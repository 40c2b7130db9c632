package dev.patchcore.backend.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * SIMD kernels on the Vector API. The GEMM micro-kernel keeps an 8-row (4 without AVX-512) × 2-vector tile of C
 * in registers and, per k, loads two vectors of B and broadcasts one scalar of A per row: 16 FMAs per 10 loads
 * instead of the 1 FMA per 3 memory operations of an axpy loop.
 */
final class VectorKernels implements CpuKernels {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** 8×2 tiles hold 16 accumulators plus 3 temporaries, which only fit the 32 registers of AVX-512. */
    private static final boolean WIDE = S.vectorBitSize() >= 512;

    VectorKernels() {
        // Narrow vectors (no SIMD unit, or a 64-bit species) would only add overhead over plain Java.
        if (L < 4) throw new UnsupportedOperationException("preferred float species has only " + L + " lanes");
    }

    @Override
    public void gemm(float[] a, int aOff, int ar, int ac, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k) {
        int i = 0;
        if (WIDE) {
            for (; i + 8 <= m; i += 8) {
                int ai = aOff + i * ar, ci = cOff + i * ldc;
                int j = 0;
                for (; j + 2 * L <= n; j += 2 * L) tile8x2(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, k);
                for (; j + L <= n; j += L) {
                    tile4x1(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, k);
                    tile4x1(a, ai + 4 * ar, ar, ac, b, bOff + j, ldb, c, ci + 4 * ldc + j, ldc, k);
                }
                if (j < n) scalarBlock(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, 8, n - j, k);
            }
        }
        for (; i + 4 <= m; i += 4) {
            int ai = aOff + i * ar, ci = cOff + i * ldc;
            int j = 0;
            for (; j + 2 * L <= n; j += 2 * L) tile4x2(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, k);
            for (; j + L <= n; j += L) tile4x1(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, k);
            if (j < n) scalarBlock(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, 4, n - j, k);
        }
        for (; i < m; i++) {
            int ai = aOff + i * ar, ci = cOff + i * ldc;
            int j = 0;
            for (; j + 2 * L <= n; j += 2 * L) tile1x2(a, ai, ac, b, bOff + j, ldb, c, ci + j, k);
            for (; j + L <= n; j += L) tile1x1(a, ai, ac, b, bOff + j, ldb, c, ci + j, k);
            if (j < n) scalarBlock(a, ai, ar, ac, b, bOff + j, ldb, c, ci + j, ldc, 1, n - j, k);
        }
    }

    // The tiles walk A with an index ap that steps by ac per k (1 for row-major A, lda for A stored transposed) and
    // reach the tile's other rows at fixed offsets of ar.
    private static void tile8x2(float[] a, int a0, int ar, int ac, float[] b, int b0, int ldb, float[] c, int c0, int ldc, int k) {
        int o1 = ar, o2 = 2 * ar, o3 = 3 * ar, o4 = 4 * ar, o5 = 5 * ar, o6 = 6 * ar, o7 = 7 * ar;
        int cc0 = c0, cc1 = c0 + ldc, cc2 = c0 + 2 * ldc, cc3 = c0 + 3 * ldc;
        int cc4 = c0 + 4 * ldc, cc5 = c0 + 5 * ldc, cc6 = c0 + 6 * ldc, cc7 = c0 + 7 * ldc;
        FloatVector r00 = FloatVector.fromArray(S, c, cc0), r01 = FloatVector.fromArray(S, c, cc0 + L);
        FloatVector r10 = FloatVector.fromArray(S, c, cc1), r11 = FloatVector.fromArray(S, c, cc1 + L);
        FloatVector r20 = FloatVector.fromArray(S, c, cc2), r21 = FloatVector.fromArray(S, c, cc2 + L);
        FloatVector r30 = FloatVector.fromArray(S, c, cc3), r31 = FloatVector.fromArray(S, c, cc3 + L);
        FloatVector r40 = FloatVector.fromArray(S, c, cc4), r41 = FloatVector.fromArray(S, c, cc4 + L);
        FloatVector r50 = FloatVector.fromArray(S, c, cc5), r51 = FloatVector.fromArray(S, c, cc5 + L);
        FloatVector r60 = FloatVector.fromArray(S, c, cc6), r61 = FloatVector.fromArray(S, c, cc6 + L);
        FloatVector r70 = FloatVector.fromArray(S, c, cc7), r71 = FloatVector.fromArray(S, c, cc7 + L);
        for (int p = 0, bp = b0, ap = a0; p < k; p++, bp += ldb, ap += ac) {
            FloatVector b0v = FloatVector.fromArray(S, b, bp), b1v = FloatVector.fromArray(S, b, bp + L);
            FloatVector av;
            av = FloatVector.broadcast(S, a[ap]); r00 = av.fma(b0v, r00); r01 = av.fma(b1v, r01);
            av = FloatVector.broadcast(S, a[ap + o1]); r10 = av.fma(b0v, r10); r11 = av.fma(b1v, r11);
            av = FloatVector.broadcast(S, a[ap + o2]); r20 = av.fma(b0v, r20); r21 = av.fma(b1v, r21);
            av = FloatVector.broadcast(S, a[ap + o3]); r30 = av.fma(b0v, r30); r31 = av.fma(b1v, r31);
            av = FloatVector.broadcast(S, a[ap + o4]); r40 = av.fma(b0v, r40); r41 = av.fma(b1v, r41);
            av = FloatVector.broadcast(S, a[ap + o5]); r50 = av.fma(b0v, r50); r51 = av.fma(b1v, r51);
            av = FloatVector.broadcast(S, a[ap + o6]); r60 = av.fma(b0v, r60); r61 = av.fma(b1v, r61);
            av = FloatVector.broadcast(S, a[ap + o7]); r70 = av.fma(b0v, r70); r71 = av.fma(b1v, r71);
        }
        r00.intoArray(c, cc0); r01.intoArray(c, cc0 + L);
        r10.intoArray(c, cc1); r11.intoArray(c, cc1 + L);
        r20.intoArray(c, cc2); r21.intoArray(c, cc2 + L);
        r30.intoArray(c, cc3); r31.intoArray(c, cc3 + L);
        r40.intoArray(c, cc4); r41.intoArray(c, cc4 + L);
        r50.intoArray(c, cc5); r51.intoArray(c, cc5 + L);
        r60.intoArray(c, cc6); r61.intoArray(c, cc6 + L);
        r70.intoArray(c, cc7); r71.intoArray(c, cc7 + L);
    }

    private static void tile4x2(float[] a, int a0, int ar, int ac, float[] b, int b0, int ldb, float[] c, int c0, int ldc, int k) {
        int c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        FloatVector r00 = FloatVector.fromArray(S, c, c0), r01 = FloatVector.fromArray(S, c, c0 + L);
        FloatVector r10 = FloatVector.fromArray(S, c, c1), r11 = FloatVector.fromArray(S, c, c1 + L);
        FloatVector r20 = FloatVector.fromArray(S, c, c2), r21 = FloatVector.fromArray(S, c, c2 + L);
        FloatVector r30 = FloatVector.fromArray(S, c, c3), r31 = FloatVector.fromArray(S, c, c3 + L);
        int o1 = ar, o2 = 2 * ar, o3 = 3 * ar;
        for (int p = 0, bp = b0, ap = a0; p < k; p++, bp += ldb, ap += ac) {
            FloatVector b0v = FloatVector.fromArray(S, b, bp), b1v = FloatVector.fromArray(S, b, bp + L);
            FloatVector av = FloatVector.broadcast(S, a[ap]);
            r00 = av.fma(b0v, r00);
            r01 = av.fma(b1v, r01);
            av = FloatVector.broadcast(S, a[ap + o1]);
            r10 = av.fma(b0v, r10);
            r11 = av.fma(b1v, r11);
            av = FloatVector.broadcast(S, a[ap + o2]);
            r20 = av.fma(b0v, r20);
            r21 = av.fma(b1v, r21);
            av = FloatVector.broadcast(S, a[ap + o3]);
            r30 = av.fma(b0v, r30);
            r31 = av.fma(b1v, r31);
        }
        r00.intoArray(c, c0); r01.intoArray(c, c0 + L);
        r10.intoArray(c, c1); r11.intoArray(c, c1 + L);
        r20.intoArray(c, c2); r21.intoArray(c, c2 + L);
        r30.intoArray(c, c3); r31.intoArray(c, c3 + L);
    }

    private static void tile4x1(float[] a, int a0, int ar, int ac, float[] b, int b0, int ldb, float[] c, int c0, int ldc, int k) {
        int c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        FloatVector r0 = FloatVector.fromArray(S, c, c0), r1 = FloatVector.fromArray(S, c, c1);
        FloatVector r2 = FloatVector.fromArray(S, c, c2), r3 = FloatVector.fromArray(S, c, c3);
        int o1 = ar, o2 = 2 * ar, o3 = 3 * ar;
        for (int p = 0, bp = b0, ap = a0; p < k; p++, bp += ldb, ap += ac) {
            FloatVector bv = FloatVector.fromArray(S, b, bp);
            r0 = FloatVector.broadcast(S, a[ap]).fma(bv, r0);
            r1 = FloatVector.broadcast(S, a[ap + o1]).fma(bv, r1);
            r2 = FloatVector.broadcast(S, a[ap + o2]).fma(bv, r2);
            r3 = FloatVector.broadcast(S, a[ap + o3]).fma(bv, r3);
        }
        r0.intoArray(c, c0); r1.intoArray(c, c1); r2.intoArray(c, c2); r3.intoArray(c, c3);
    }

    private static void tile1x2(float[] a, int a0, int ac, float[] b, int b0, int ldb, float[] c, int c0, int k) {
        FloatVector r0 = FloatVector.fromArray(S, c, c0), r1 = FloatVector.fromArray(S, c, c0 + L);
        for (int p = 0, bp = b0, ap = a0; p < k; p++, bp += ldb, ap += ac) {
            FloatVector av = FloatVector.broadcast(S, a[ap]);
            r0 = av.fma(FloatVector.fromArray(S, b, bp), r0);
            r1 = av.fma(FloatVector.fromArray(S, b, bp + L), r1);
        }
        r0.intoArray(c, c0); r1.intoArray(c, c0 + L);
    }

    private static void tile1x1(float[] a, int a0, int ac, float[] b, int b0, int ldb, float[] c, int c0, int k) {
        FloatVector r0 = FloatVector.fromArray(S, c, c0);
        for (int p = 0, bp = b0, ap = a0; p < k; p++, bp += ldb, ap += ac)
            r0 = FloatVector.broadcast(S, a[ap]).fma(FloatVector.fromArray(S, b, bp), r0);
        r0.intoArray(c, c0);
    }

    /** Column tail narrower than one vector. */
    private static void scalarBlock(float[] a, int aOff, int ar, int ac, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc,
                                    int m, int n, int k) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                float s = c[cOff + i * ldc + j];
                for (int p = 0; p < k; p++) s = Math.fma(a[aOff + i * ar + p * ac], b[bOff + p * ldb + j], s);
                c[cOff + i * ldc + j] = s;
            }
        }
    }

    /** Elements whose exponentials are summed in float lanes before the lanes go into the double total. */
    private static final int EXP_CHUNK = 256;

    @Override
    public double exp(float[] src, int sOff, float[] dst, int dOff, int n, float scale, float shift) {
        FloatVector sv = FloatVector.broadcast(S, scale), hv = FloatVector.broadcast(S, shift);
        double sum = 0;
        int i = 0, vecEnd = n - n % L;
        while (i < vecEnd) {
            FloatVector acc = FloatVector.zero(S);
            for (int end = Math.min(vecEnd, i + EXP_CHUNK); i < end; i += L) {
                FloatVector e = exp(sv.fma(FloatVector.fromArray(S, src, sOff + i), hv));
                e.intoArray(dst, dOff + i);
                acc = acc.add(e);
            }
            // Lanes in a fixed order (see the class comment of FastExp on results that change when compiled).
            for (int l = 0; l < L; l++) sum += acc.lane(l);
        }
        for (; i < n; i++) sum += dst[dOff + i] = FastExp.exp(Math.fma(scale, src[sOff + i], shift));
        return sum;
    }

    private static FloatVector c(float v) { return FloatVector.broadcast(S, v); }

    /** {@link FastExp#exp} on every lane, operation for operation. */
    static FloatVector exp(FloatVector x) {
        FloatVector t = x.fma(FastExp.LOG2E, FastExp.ROUND);
        FloatVector n = t.sub(FastExp.ROUND);
        FloatVector r = n.fma(c(-FastExp.LN2_HI), x);
        r = n.fma(c(-FastExp.LN2_LO), r);
        FloatVector p = c(FastExp.P0).fma(r, c(FastExp.P1)).fma(r, c(FastExp.P2)).fma(r, c(FastExp.P3))
                .fma(r, c(FastExp.P4)).fma(r, c(FastExp.P5));
        FloatVector y = p.fma(r.mul(r), r).add(1f);
        IntVector bits = ((IntVector) t.reinterpretAsInts()).sub(FastExp.ROUND_BITS - 126).lanewise(VectorOperators.LSHL, 23);
        FloatVector e = y.mul(bits.reinterpretAsFloats()).mul(2f);
        return e.blend(0f, x.lt(FastExp.MIN_X)).blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, FastExp.MAX_X));
    }

    @Override
    public void adamw(float[] w, int wo, float[] g, int go, float[] m, int mo, float[] v, int vo, int n,
                      float scale, float b1, float b2, float bc1, float bc2, float lr, float eps, float wd) {
        FloatVector sc = c(scale), vb1 = c(b1), vb2 = c(b2), nb1 = c(1 - b1), nb2 = c(1 - b2), vbc1 = c(bc1), vbc2 = c(bc2);
        FloatVector vlr = c(lr), veps = c(eps), vwd = c(wd);
        int i = 0;
        for (; i + L <= n; i += L) {  // ScalarKernels.adamw1, operation for operation
            FloatVector gi = FloatVector.fromArray(S, g, go + i).mul(sc);
            FloatVector mi = vb1.mul(FloatVector.fromArray(S, m, mo + i)).add(nb1.mul(gi));
            FloatVector vi = vb2.mul(FloatVector.fromArray(S, v, vo + i)).add(nb2.mul(gi).mul(gi));
            mi.intoArray(m, mo + i);
            vi.intoArray(v, vo + i);
            FloatVector mhat = mi.div(vbc1), vhat = vi.div(vbc2), wi = FloatVector.fromArray(S, w, wo + i);
            wi.sub(vlr.mul(mhat.div(vhat.lanewise(VectorOperators.SQRT).add(veps)).add(vwd.mul(wi)))).intoArray(w, wo + i);
        }
        for (; i < n; i++)
            w[wo + i] = ScalarKernels.adamw1(w[wo + i], g[go + i], m, mo + i, v, vo + i, scale, b1, b2, bc1, bc2, lr, eps, wd);
    }

    @Override public String name() { return "vector-" + S.vectorBitSize() + "bit"; }
}
