package dev.patchcore.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks: the paper's speed table and kernel microbenchmarks.",
        subcommands = {BenchSpeedCommand.class, BenchKernelsCommand.class})
public final class BenchCommand implements Runnable {
    @Override public void run() {
        new CommandLine(this).usage(System.out);
    }
}
