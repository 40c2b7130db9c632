package dev.patchcore.backend.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * SIMD kernels on the Vector API. The GEMM micro-kernel keeps a 4-row × 2-vector tile of C in registers and,
 * per k, loads two vectors of B and broadcasts four scalars of A: 8 FMAs per 6 loads instead of the 1 FMA per
 * 3 memory operations of an axpy loop.
 */
final class VectorMatmulKernel implements MatmulKernel {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();

    VectorMatmulKernel() {
        // Narrow vectors (no SIMD unit, or a 64-bit species) would only add overhead over plain Java.
        if (L < 4) throw new UnsupportedOperationException("preferred float species has only " + L + " lanes");
    }

    @Override
    public void gemm(float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k) {
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            int ai = aOff + i * lda, ci = cOff + i * ldc;
            int j = 0;
            for (; j + 2 * L <= n; j += 2 * L) tile4x2(a, ai, lda, b, bOff + j, ldb, c, ci + j, ldc, k);
            for (; j + L <= n; j += L) tile4x1(a, ai, lda, b, bOff + j, ldb, c, ci + j, ldc, k);
            if (j < n) scalarBlock(a, ai, lda, b, bOff + j, ldb, c, ci + j, ldc, 4, n - j, k);
        }
        for (; i < m; i++) {
            int ai = aOff + i * lda, ci = cOff + i * ldc;
            int j = 0;
            for (; j + 2 * L <= n; j += 2 * L) tile1x2(a, ai, b, bOff + j, ldb, c, ci + j, k);
            for (; j + L <= n; j += L) tile1x1(a, ai, b, bOff + j, ldb, c, ci + j, k);
            if (j < n) scalarBlock(a, ai, lda, b, bOff + j, ldb, c, ci + j, ldc, 1, n - j, k);
        }
    }

    private static void tile4x2(float[] a, int a0, int lda, float[] b, int b0, int ldb, float[] c, int c0, int ldc, int k) {
        int c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        FloatVector r00 = FloatVector.fromArray(S, c, c0), r01 = FloatVector.fromArray(S, c, c0 + L);
        FloatVector r10 = FloatVector.fromArray(S, c, c1), r11 = FloatVector.fromArray(S, c, c1 + L);
        FloatVector r20 = FloatVector.fromArray(S, c, c2), r21 = FloatVector.fromArray(S, c, c2 + L);
        FloatVector r30 = FloatVector.fromArray(S, c, c3), r31 = FloatVector.fromArray(S, c, c3 + L);
        int a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        for (int p = 0, bp = b0; p < k; p++, bp += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bp), b1v = FloatVector.fromArray(S, b, bp + L);
            FloatVector av = FloatVector.broadcast(S, a[a0 + p]);
            r00 = av.fma(b0v, r00);
            r01 = av.fma(b1v, r01);
            av = FloatVector.broadcast(S, a[a1 + p]);
            r10 = av.fma(b0v, r10);
            r11 = av.fma(b1v, r11);
            av = FloatVector.broadcast(S, a[a2 + p]);
            r20 = av.fma(b0v, r20);
            r21 = av.fma(b1v, r21);
            av = FloatVector.broadcast(S, a[a3 + p]);
            r30 = av.fma(b0v, r30);
            r31 = av.fma(b1v, r31);
        }
        r00.intoArray(c, c0); r01.intoArray(c, c0 + L);
        r10.intoArray(c, c1); r11.intoArray(c, c1 + L);
        r20.intoArray(c, c2); r21.intoArray(c, c2 + L);
        r30.intoArray(c, c3); r31.intoArray(c, c3 + L);
    }

    private static void tile4x1(float[] a, int a0, int lda, float[] b, int b0, int ldb, float[] c, int c0, int ldc, int k) {
        int c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
        FloatVector r0 = FloatVector.fromArray(S, c, c0), r1 = FloatVector.fromArray(S, c, c1);
        FloatVector r2 = FloatVector.fromArray(S, c, c2), r3 = FloatVector.fromArray(S, c, c3);
        int a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        for (int p = 0, bp = b0; p < k; p++, bp += ldb) {
            FloatVector bv = FloatVector.fromArray(S, b, bp);
            r0 = FloatVector.broadcast(S, a[a0 + p]).fma(bv, r0);
            r1 = FloatVector.broadcast(S, a[a1 + p]).fma(bv, r1);
            r2 = FloatVector.broadcast(S, a[a2 + p]).fma(bv, r2);
            r3 = FloatVector.broadcast(S, a[a3 + p]).fma(bv, r3);
        }
        r0.intoArray(c, c0); r1.intoArray(c, c1); r2.intoArray(c, c2); r3.intoArray(c, c3);
    }

    private static void tile1x2(float[] a, int a0, float[] b, int b0, int ldb, float[] c, int c0, int k) {
        FloatVector r0 = FloatVector.fromArray(S, c, c0), r1 = FloatVector.fromArray(S, c, c0 + L);
        for (int p = 0, bp = b0; p < k; p++, bp += ldb) {
            FloatVector av = FloatVector.broadcast(S, a[a0 + p]);
            r0 = av.fma(FloatVector.fromArray(S, b, bp), r0);
            r1 = av.fma(FloatVector.fromArray(S, b, bp + L), r1);
        }
        r0.intoArray(c, c0); r1.intoArray(c, c0 + L);
    }

    private static void tile1x1(float[] a, int a0, float[] b, int b0, int ldb, float[] c, int c0, int k) {
        FloatVector r0 = FloatVector.fromArray(S, c, c0);
        for (int p = 0, bp = b0; p < k; p++, bp += ldb)
            r0 = FloatVector.broadcast(S, a[a0 + p]).fma(FloatVector.fromArray(S, b, bp), r0);
        r0.intoArray(c, c0);
    }

    /** Column tail narrower than one vector. */
    private static void scalarBlock(float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc, int m, int n, int k) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                float s = c[cOff + i * ldc + j];
                for (int p = 0; p < k; p++) s = Math.fma(a[aOff + i * lda + p], b[bOff + p * ldb + j], s);
                c[cOff + i * ldc + j] = s;
            }
        }
    }

    @Override
    public float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        int i = 0;
        float s = 0;
        if (n >= L) {
            FloatVector acc = FloatVector.zero(S);
            for (; i + L <= n; i += L) acc = FloatVector.fromArray(S, a, aOff + i).fma(FloatVector.fromArray(S, b, bOff + i), acc);
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) s = Math.fma(a[aOff + i], b[bOff + i], s);
        return s;
    }

    @Override
    public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        if (n >= L) {
            FloatVector av = FloatVector.broadcast(S, alpha);
            for (; i + L <= n; i += L)
                av.fma(FloatVector.fromArray(S, x, xOff + i), FloatVector.fromArray(S, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) y[yOff + i] = Math.fma(alpha, x[xOff + i], y[yOff + i]);
    }

    @Override public String name() { return "vector-" + S.vectorBitSize() + "bit"; }
}
