package dev.patchcore.backend.cpu;

/**
 * exp in float, the way {@link VectorKernels#exp} computes it lane by lane, so both kernels give the same bits:
 * n = round(x·log₂e) by the 1.5·2²³ trick, r = x − n·ln2 in two parts (Cody–Waite), e^r by Cephes' degree-7
 * polynomial, then ·2ⁿ through the exponent bits. About 1 ulp from the true value. Below −86.64 the result is 0
 * (e^x < 2.4e-38 is flushed: the denormal range and the lowest normal binade, where 2ⁿ⁻¹ would not be normal), above
 * 88.72 it is +∞, NaN stays NaN.
 *
 * <p>Why not {@code Math.exp}: ~5 ns per call, the largest cost of the CPU backend's softmax, SiLU and
 * cross-entropy. Why not the Vector API's {@code EXP}: its compiled form (SVML) and its Java fallback differ in the
 * last bit, so a result would change once the JIT compiles the caller (the fate of an earlier lane reduction: see
 * {@code VectorKernels.dot}); every operation here (fma, mul, add, compare, bit moves) is exact IEEE.
 */
final class FastExp {
    static final float LOG2E = 1.44269504088896341f;
    /** 1.5·2²³: adding it rounds a float of magnitude < 2²² to an integer kept in the low mantissa bits. */
    static final float ROUND = 12582912f;
    static final int ROUND_BITS = Float.floatToRawIntBits(ROUND);
    static final float LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    static final float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f,
            P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;
    /** Below: 2ⁿ with n ≥ −125 keeps the scale (2ⁿ⁻¹, times 2) normal. Above: the float range ends. */
    static final float MIN_X = -86.64f, MAX_X = 88.72283f;

    private FastExp() {}

    static float exp(float x) {
        float t = Math.fma(x, LOG2E, ROUND);
        float n = t - ROUND;
        float r = Math.fma(n, -LN2_HI, x);
        r = Math.fma(n, -LN2_LO, r);
        float p = Math.fma(Math.fma(Math.fma(Math.fma(Math.fma(P0, r, P1), r, P2), r, P3), r, P4), r, P5);
        float y = Math.fma(p, r * r, r) + 1f;
        // 2ⁿ as 2ⁿ⁻¹·2, so that n = 128 (x just below MAX_X) still has a valid exponent field.
        float scale = Float.intBitsToFloat((Float.floatToRawIntBits(t) - ROUND_BITS + 126) << 23);
        float e = y * scale * 2f;
        return x < MIN_X ? 0f : x > MAX_X ? Float.POSITIVE_INFINITY : e;
    }
}
