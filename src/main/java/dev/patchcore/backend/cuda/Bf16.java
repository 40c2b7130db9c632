package dev.patchcore.backend.cuda;

/** Host-side bfloat16 conversion, bit-identical to the kernels' {@code __float2bfloat16_rn} (round to nearest even). */
public final class Bf16 {
    private Bf16() {}

    public static short fromFloat(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) return (short) ((bits >>> 16) | 0x0040); // keep NaN a (quiet) NaN
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    public static float toFloat(short h) { return Float.intBitsToFloat((h & 0xffff) << 16); }

    /** The float that a bf16 round trip gives: what the GPU sees when the host uploads {@code f} to a BF16 tensor. */
    public static float round(float f) { return toFloat(fromFloat(f)); }
}
