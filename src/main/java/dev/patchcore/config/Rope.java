package dev.patchcore.config;

/**
 * The rotary position embedding's frequencies: the plain ones, inv_freq_i = theta^(−2i/Dh) for i < Dh/2, or those
 * scaled as LLaMA-3.1 and 3.2 scale them ({@link Scaling}, Hugging Face's rope_type "llama3").
 *
 * @param scaling null for the plain frequencies
 */
public record Rope(float theta, Scaling scaling) {

    public Rope {
        if (!(theta > 0f) || Float.isInfinite(theta)) throw new IllegalArgumentException("RoPE theta must be finite and > 0, got " + theta);
    }

    /** The plain frequencies of base {@code theta}. */
    public static Rope of(float theta) { return new Rope(theta, null); }

    /** Whether the frequencies are scaled (not computable from theta alone). */
    public boolean scaled() { return scaling != null; }

    /** For a message: "theta 10000.0, no scaling", or "theta 500000.0, llama3 factor 32.0 low 1.0 high 4.0 original 8192". */
    public String describe() {
        return "theta " + theta + (scaling == null ? ", no scaling" : ", llama3 factor " + scaling.factor + " low "
                + scaling.lowFreqFactor + " high " + scaling.highFreqFactor + " original " + scaling.originalContext);
    }

    /**
     * inv_freq_i for i &lt; headDim / 2, in double. The plain ones are {@code Math.pow(theta, −2i/Dh)} (the expression
     * the CPU backend has always used, so plain RoPE is unchanged bit for bit).
     */
    public double[] invFreq(int headDim) {
        if (headDim < 2 || headDim % 2 != 0) throw new IllegalArgumentException("RoPE needs an even head dimension, got " + headDim);
        double[] f = new double[headDim / 2];
        for (int i = 0; i < f.length; i++) f[i] = Math.pow(theta, -2.0 * i / headDim);
        if (scaling != null) scaling.apply(f);
        return f;
    }

    /**
     * LLaMA-3's frequency scaling (transformers' {@code _compute_llama3_parameters}): with wavelength λ_i = 2π / inv_freq_i,
     * frequencies of wavelength above {@code originalContext / lowFreqFactor} are divided by {@code factor}, those below
     * {@code originalContext / highFreqFactor} kept, and those between blended: s = (originalContext / λ − low) / (high −
     * low), inv_freq · ((1 − s) / factor + s).
     */
    public record Scaling(float factor, float lowFreqFactor, float highFreqFactor, int originalContext) {
        public Scaling {
            if (!(factor >= 1f) || Float.isInfinite(factor)) throw new IllegalArgumentException("RoPE scaling factor must be ≥ 1, got " + factor);
            if (!(lowFreqFactor > 0f) || !(highFreqFactor > lowFreqFactor) || Float.isInfinite(highFreqFactor))
                throw new IllegalArgumentException("RoPE scaling needs 0 < low_freq_factor < high_freq_factor, got " + lowFreqFactor
                        + " and " + highFreqFactor);
            if (originalContext < 1) throw new IllegalArgumentException("RoPE scaling's original context must be positive, got " + originalContext);
        }

        void apply(double[] invFreq) {
            double lowWavelen = originalContext / (double) lowFreqFactor, highWavelen = originalContext / (double) highFreqFactor;
            for (int i = 0; i < invFreq.length; i++) {
                double wavelen = 2 * Math.PI / invFreq[i];
                if (wavelen > lowWavelen) {
                    invFreq[i] /= factor;
                } else if (wavelen >= highWavelen) {
                    double s = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                    invFreq[i] = (1 - s) * invFreq[i] / factor + s * invFreq[i];
                }
            }
        }
    }
}
