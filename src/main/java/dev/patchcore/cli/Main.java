package dev.patchcore.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.UncheckedIOException;

/** Entry point: {@code java -jar patchcore.jar <command>}. */
@Command(name = "patchcore", mixinStandardHelpOptions = true, version = "patchcore 0.1.0",
        description = "Patch-level training of LLaMA-style language models (Shao et al., ICLR 2025) on the JVM.",
        subcommands = {TrainCommand.class, PrepareCommand.class, EvalCommand.class, BenchCommand.class, SelftestCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs a command line and returns its exit code: 0 ok, 1 failure, 2 bad input. */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setParameterExceptionHandler((ex, a) -> {
            ex.getCommandLine().getErr().println("error: " + ex.getMessage() + " (see --help)");
            return 2;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            while (t.getCause() != null && !(t instanceof IllegalArgumentException) && !(t instanceof UncheckedIOException)) t = t.getCause();
            if (t instanceof IllegalArgumentException || t instanceof UncheckedIOException || t instanceof java.nio.file.NoSuchFileException) {
                commandLine.getErr().println("error: " + t.getMessage());
                return 2;
            }
            throw ex;
        });
        return cl.execute(args);
    }

    /** Without a command, print the overview. */
    @Override public void run() {
        new CommandLine(this).usage(System.out);
    }
}
