package dev.patchcore.backend.cuda;

import java.util.ArrayList;
import java.util.List;

/**
 * Split-K candidates for under-filled GEMMs ({@link CublasLt#setSplitKCandidates}, opt-in). When a GEMM's output has
 * fewer tiles than the GPU has SMs (the heuristic's wavesCount below 1, e.g. a 1024×1024 weight gradient over k = 8192
 * on 132 SMs), part of the GPU idles however fast each tile runs; splitting k into 2–4 parts multiplies the tiles at
 * the cost of a reduction. The heuristic rarely offers such variants of its own picks, so they are derived from its
 * first candidates here and {@link GemmTuner}'s timing decides whether any is worth it. The decisions need no native
 * library; {@link CublasLt} makes the capability, configuration and check calls.
 *
 * <p>Enum values from CUDA's {@code cublasLt.h} ({@code cublasLtMatmulAlgoCapAttributes_t},
 * {@code cublasLtMatmulAlgoConfigAttributes_t}, {@code cublasLtReductionScheme_t}; stable ABI like those in
 * {@link CublasLt}).
 */
final class CublasLtSplitK {
    // cublasLtMatmulAlgoCapAttributes_t
    static final int CUBLASLT_ALGO_CAP_SPLITK_SUPPORT = 0; // int32, 0 = unsupported
    static final int CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK = 1; // uint32, bits of cublasLtReductionScheme_t
    // cublasLtMatmulAlgoConfigAttributes_t
    static final int CUBLASLT_ALGO_CONFIG_SPLITK_NUM = 2; // uint32, default 1
    static final int CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME = 3; // uint32, default NONE (0)
    // cublasLtReductionScheme_t
    static final int CUBLASLT_REDUCTION_SCHEME_INPLACE = 1; // partial sums added into D in D's type
    static final int CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2; // partials in the workspace in fp32, then reduced
    static final int CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4; // partials in the workspace in D's type, then reduced

    /** Reduction schemes tried, in this order. */
    static final int[] SCHEMES = {CUBLASLT_REDUCTION_SCHEME_INPLACE, CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE,
            CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE};
    /** K splits tried: enough to lift a half-wave output above one wave, few enough that each part keeps a long k loop. */
    static final int[] SPLITS = {2, 3, 4};
    /** Heuristic candidates (best-estimated first) that variants are derived from. */
    static final int BASES = 4;
    /** Most variants added per key: each costs the tuner a warm-up and one or two timing samples. */
    static final int MAX_EXTRA = 24;
    /**
     * Output elements up to which a key counts as under-filled when the heuristic reports no wavesCount: 256 tiles of
     * 128×128, under two waves on an H100's 132 SMs.
     */
    static final long FALLBACK_MAX_OUTPUT = 4L * 1024 * 1024;

    private CublasLtSplitK() {}

    /** SPLITK_NUM and REDUCTION_SCHEME of one variant. */
    record SplitConfig(int split, int scheme) {
        String label() { return "split " + split + " " + schemeName(scheme); }
    }

    /** What a heuristic candidate allows: CAP_SPLITK_SUPPORT != 0, CAP_REDUCTION_SCHEME_MASK, its SPLITK_NUM. */
    record Caps(boolean supported, int schemeMask, int currentSplit) {}

    /** A variant: heuristic candidate {@code base} (its index among the usable ones) with {@code config} applied. */
    record Extra<A>(A algo, int base, SplitConfig config) {
        String label() { return "#" + base + " " + config.label(); }
    }

    /** Reads a candidate's {@link Caps}; null when a query fails (the candidate is skipped). */
    @FunctionalInterface
    interface Probe<A> {
        Caps caps(A algo) throws Throwable;
    }

    /** {@code base} with {@code config} applied if the library accepts it for this GEMM, else null. */
    @FunctionalInterface
    interface Derive<A> {
        A apply(A base, SplitConfig config) throws Throwable;
    }

    /**
     * Whether the output leaves SMs idle: heuristic #0's wavesCount below 1; when the library reports none (≤ 0 or
     * NaN), an output of at most {@link #FALLBACK_MAX_OUTPUT} elements.
     */
    static boolean underFilled(float waves, long m, long n) {
        if (waves > 0) return waves < 1f;
        return m * n <= FALLBACK_MAX_OUTPUT;
    }

    /**
     * The variants worth checking for one candidate: none if it cannot split or already does (SPLITK_NUM, unsigned,
     * above 1); otherwise each of {@link #SPLITS} with each of {@link #SCHEMES} that {@code schemeMask} allows,
     * split-major.
     */
    static List<SplitConfig> splitConfigs(boolean supported, int schemeMask, int currentSplit) {
        List<SplitConfig> configs = new ArrayList<>();
        if (!supported || Integer.compareUnsigned(currentSplit, 1) > 0) return configs;
        for (int split : SPLITS) {
            for (int scheme : SCHEMES) if ((schemeMask & scheme) != 0) configs.add(new SplitConfig(split, scheme));
        }
        return configs;
    }

    /**
     * The accepted variants of the first {@link #BASES} of {@code heuristic}, in base order then
     * {@link #splitConfigs} order, at most {@link #MAX_EXTRA}.
     */
    static <A> List<Extra<A>> extras(List<A> heuristic, Probe<A> probe, Derive<A> derive) throws Throwable {
        List<Extra<A>> extras = new ArrayList<>();
        for (int i = 0; i < Math.min(BASES, heuristic.size()); i++) {
            A base = heuristic.get(i);
            Caps caps = probe.caps(base);
            if (caps == null) continue;
            for (SplitConfig config : splitConfigs(caps.supported(), caps.schemeMask(), caps.currentSplit())) {
                A algo = derive.apply(base, config);
                if (algo == null) continue;
                extras.add(new Extra<>(algo, i, config));
                if (extras.size() == MAX_EXTRA) return extras;
            }
        }
        return extras;
    }

    /**
     * The reduction schemes worth trying for an output type: all of {@code schemeMask} for fp32 outputs; for bf16
     * outputs only COMPUTE_TYPE (partial sums in fp32 in the workspace, rounded once), since INPLACE and OUTPUT_TYPE
     * would sum the partials in bf16 and round up to {@code split} times more than the unsplit GEMM.
     */
    static int schemesFor(int schemeMask, boolean fp32Output) {
        return fp32Output ? schemeMask : schemeMask & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    }

    static String schemeName(int scheme) {
        return switch (scheme) {
            case CUBLASLT_REDUCTION_SCHEME_INPLACE -> "in-place";
            case CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE -> "compute-type";
            case CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE -> "output-type";
            default -> "scheme " + scheme;
        };
    }
}
