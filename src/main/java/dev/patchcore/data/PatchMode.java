package dev.patchcore.data;

import java.util.Locale;

/** How the patch stage forms its patches. */
public enum PatchMode {
    /** K consecutive tokens of one sequence per patch: the method (paper §2). */
    CONSECUTIVE,
    /**
     * Token t of K different sequences per patch, predicting their tokens t+1: the "mixup training" baseline of paper
     * App. C, which the paper found clearly worse (the patches' composition matters).
     */
    MIXUP;

    /** The option value ({@code consecutive}, {@code mixup}). */
    public String label() { return name().toLowerCase(Locale.ROOT); }

    /** Parses an option value. */
    public static PatchMode parse(String s) {
        for (PatchMode m : values()) if (m.label().equalsIgnoreCase(s.strip())) return m;
        throw new IllegalArgumentException("unknown --patch-mode '" + s + "' (choose consecutive or mixup)");
    }
}
