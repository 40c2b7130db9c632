package dev.patchcore.data;

/** Counts in messages: "1 question", "2 questions" (a user reads "1 questions" as a bug). */
public final class Plural {
    private Plural() {}

    /** {@code n} and the noun, with an "s" unless {@code n} is 1. */
    public static String of(long n, String noun) {
        return n + " " + noun + (n == 1 ? "" : "s");
    }
}
