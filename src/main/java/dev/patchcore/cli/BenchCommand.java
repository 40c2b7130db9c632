package dev.patchcore.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks: the paper's speed table and kernel microbenchmarks.",
        subcommands = {BenchSpeedCommand.class, BenchKernelsCommand.class})
public final class BenchCommand implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    /** Without a benchmark, its usage: the command line's own, so it reads "patchcore bench", as --help does. */
    @Override public void run() {
        spec.commandLine().usage(System.out);
    }

    /**
     * Writes a benchmark's --json file whole, as a temporary file renamed over it (a failed write leaves no half of it).
     * A symbolic link (/dev/stdout among them) or something that is not a file (a pipe, a device) is written through
     * as it is: renaming over it would replace the link or the device instead of writing where it points.
     */
    static void writeJson(java.nio.file.Path json, String text) {
        java.nio.file.LinkOption noFollow = java.nio.file.LinkOption.NOFOLLOW_LINKS;
        if (!java.nio.file.Files.exists(json, noFollow) || java.nio.file.Files.isRegularFile(json, noFollow)) {
            dev.patchcore.checkpoint.AtomicFiles.writeString(json, text);
            return;
        }
        try {
            java.nio.file.Files.writeString(json, text);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("cannot write " + json + ": " + e.getMessage(), e);
        }
    }

    /** A --json target the benchmark can write when it is done, checked before it starts (null: none given). */
    static void checkJsonTarget(java.nio.file.Path json, String example) {
        if (json == null) return;
        if (java.nio.file.Files.isDirectory(json))
            throw new IllegalArgumentException("--json " + json + " is a folder; give a file name, e.g. " + json.resolve(example));
        java.nio.file.Path folder = json.toAbsolutePath().getParent();
        if (folder != null && java.nio.file.Files.exists(folder) && !java.nio.file.Files.isDirectory(folder))
            throw new IllegalArgumentException("--json " + json + ": " + folder + " is a file, not a folder");
        if (folder == null || !java.nio.file.Files.isDirectory(folder))
            throw new IllegalArgumentException("--json " + json + ": the folder " + folder + " does not exist");
        try {  // can a file be written there? Said now, not after the whole benchmark has run
            java.nio.file.Files.delete(java.nio.file.Files.createTempFile(folder, ".patchcore-json-", ".tmp"));
        } catch (java.io.IOException | SecurityException e) {
            throw new IllegalArgumentException("--json " + json + ": cannot write files in " + folder
                    + (e instanceof java.nio.file.AccessDeniedException ? " (permission denied)" : ""));
        }
    }
}
