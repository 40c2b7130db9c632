package dev.patchcore.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.UncheckedIOException;
import java.util.Locale;

/** Entry point: {@code java -jar patchcore.jar <command>}. */
@Command(name = "patchcore", mixinStandardHelpOptions = true, version = "patchcore 0.1.0",
        description = "Patch-level training of LLaMA-style language models (Shao et al., ICLR 2025) on the JVM.",
        subcommands = {TrainCommand.class, PrepareCommand.class, FinetuneCommand.class, EvalCommand.class, GenerateCommand.class, BenchCommand.class, SelftestCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    public static void main(String[] args) {
        // Numbers in console lines, metrics and file names read the same on every machine (ASCII digits, '.' decimals).
        Locale.setDefault(Locale.Category.FORMAT, Locale.ROOT);
        Integer relaunched = VectorApiRelaunch.run(args);
        if (relaunched != null) System.exit(relaunched);
        VectorApiRelaunch.setUpIfRelaunched();
        System.exit(run(args));
    }

    /** Runs a command line and returns its exit code: 0 ok, 1 failure, 2 bad input. */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        setVersion(cl, cl.getCommandSpec().version());  // -V on a subcommand says the same as on patchcore
        cl.setParameterExceptionHandler((ex, a) -> {
            // picocli words some messages "Error: …" itself (a missing argument group): one prefix is enough
            String message = ex.getMessage().startsWith("Error: ") ? ex.getMessage().substring(7) : ex.getMessage();
            // A first word that is no command reads as picocli's "Unmatched argument at index 0": say what it is
            if (ex instanceof CommandLine.UnmatchedArgumentException u && message.startsWith("Unmatched argument")) {
                CommandLine at = u.getCommandLine();
                if (at == cl && a.length > 0 && !a[0].startsWith("-"))
                    message = "unknown command '" + a[0] + "': choose one of " + String.join(", ", cl.getSubcommands().keySet());
                else if (at != cl && !at.getSubcommands().isEmpty() && !u.getUnmatched().getFirst().startsWith("-"))
                    message = "unknown command '" + u.getUnmatched().getFirst() + "' for " + at.getCommandName() + ": choose "
                            + String.join(" or ", at.getSubcommands().keySet());
                else
                    message = "unexpected argument" + (u.getUnmatched().size() > 1 ? "s '" : " '") + String.join("' '", u.getUnmatched())
                            + "' for " + u.getCommandLine().getCommandName();
            }
            // An exclusive option group given twice reads "expected only one match but got [--data=<data> | --text=…]={…}
            // and [...]={…}": name the options instead
            if (message.startsWith("expected only one match but got"))
                for (CommandLine.Model.ArgGroupSpec g : ex.getCommandLine().getCommandSpec().argGroups())
                    if (message.contains(g.synopsis()))
                        message = "give only one of " + g.options().stream().map(CommandLine.Model.OptionSpec::longestName)
                                .collect(java.util.stream.Collectors.joining(", ")) + ", once";
            // finetune has no --resume (train's word): say why rather than which options are missing or unknown
            if (ex.getCommandLine().getCommandName().equals("finetune")
                    && java.util.Arrays.stream(a).anyMatch(s -> s.equals("--resume") || s.startsWith("--resume=")))
                message = "a fine-tuning run cannot be resumed (finetune has no --resume): fine-tune the checkpoint again into a "
                        + "new --out; the run's epoch checkpoints are whole models that eval and generate read";
            ex.getCommandLine().getErr().println("error: " + message + " (see --help)");
            return 2;
        });
        // Options that contradict each other across a mixin are said before the command prints or opens anything
        cl.setExecutionStrategy(parseResult -> {
            CommandLine last = parseResult.asCommandLineList().getLast();
            boolean help = false;  // --help and -V anywhere on the line win over the options' checks
            for (CommandLine.ParseResult r = parseResult; r != null; r = r.subcommand())
                help |= r.isUsageHelpRequested() || r.isVersionHelpRequested();
            if (help) return new CommandLine.RunLast().execute(parseResult);
            for (CommandLine.Model.CommandSpec mixin : last.getCommandSpec().mixins().values())
                if (mixin.userObject() instanceof BackendOptions b && b.problem() != null)
                    throw new CommandLine.ParameterException(last, b.problem());
            return new CommandLine.RunLast().execute(parseResult);
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            while (t.getCause() != null && !(t instanceof IllegalArgumentException) && !(t instanceof UncheckedIOException)) t = t.getCause();
            // Bad input, and files that cannot be read or written (a path through a file, no permission, a full disk):
            // one line, exit code 2. Anything else is a bug: its stack trace.
            if (t instanceof IllegalArgumentException || t instanceof UncheckedIOException || t instanceof java.io.IOException) {
                // One line, whatever a library put in the message (Gson's carry a second line with a link)
                commandLine.getErr().println("error: " + String.join(" ", userMessage(t).strip().split("\\R\\s*")));
                // The engine's own shape and state checks throw the same exceptions: where one of those fires, this
                // shows where (for a bug report).
                if (System.getenv("PATCHCORE_TRACE") != null) ex.printStackTrace(commandLine.getErr());
                return 2;
            }
            throw ex;
        });
        try {
            return cl.execute(args);
        } catch (OutOfMemoryError e) {
            System.err.println(outOfMemory(e, Runtime.getRuntime().maxMemory(), args));
            return 2;
        }
    }

    /**
     * The CPU backend's tensors live on the Java heap (by default three quarters of the machine's memory in the
     * re-launched JVM, a quarter otherwise): a size to change, not a bug. One line; the model's sizes are named only for
     * the commands that have them (prepare holds a chunk of documents and their tokens: only the heap helps there).
     */
    static String outOfMemory(OutOfMemoryError e, long maxHeap, String... args) {
        boolean heap = "Java heap space".equals(e.getMessage()), prepare = args.length > 0 && args[0].equals("prepare");
        return "error: out of memory (" + e.getMessage() + ")" + (heap ? String.format(java.util.Locale.ROOT,
                "; this JVM may use %d MiB of heap: give it more with java -Xmx<size> -jar patchcore.jar ...", maxHeap >> 20) : "")
                + (prepare ? (heap ? "" : "; give the JVM more memory") + " (prepare holds a chunk of documents and their tokens at a time: a "
                        + "very long document, such as a .txt file without blank lines, needs several times its size)"
                        : "; or use a smaller --batch, --context or --preset, or train with --recompute");
    }

    /**
     * The message of a failure, with a file-system failure's bare file name ({@code error: /proc/x}) or exception class
     * name ({@code java.nio.file.FileAlreadyExistsException: out}) turned into the file and what is wrong with it.
     */
    static String userMessage(Throwable t) {
        // A library's exception class named inside a message ("… summary: com.google.gson.stream.MalformedJsonException:
        // Expected ':' …") and Gson's pointer to its troubleshooting page say nothing to a user
        String message = String.valueOf(t.getMessage()).replaceAll("(?<![\\w./\\\\-])(?:[a-z]\\w*\\.)+[A-Z]\\w*(?:Exception|Error): ", "")
                .replaceAll("\\s*See https://github\\.com/google/gson/\\S*", "");
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (!(c instanceof java.nio.file.FileSystemException f) || f.getFile() == null) continue;
            boolean bare = message.equals(f.getFile()) || message.equals(f.getMessage()) || message.contains("java.nio.file.");
            // A wrapper's "cannot read F: " + the exception's message, which was F alone: say what is wrong with F
            boolean named = message.endsWith(": " + f.getFile()) && f.getOtherFile() == null;
            if (!bare && !named) break;
            String why = f.getReason() != null ? f.getReason() : switch (f) {
                case java.nio.file.AccessDeniedException a -> "permission denied";
                case java.nio.file.FileAlreadyExistsException a -> "exists already, and is not a folder";
                case java.nio.file.NoSuchFileException a -> "no such file or folder";
                case java.nio.file.NotDirectoryException a -> "not a folder";
                case java.nio.file.DirectoryNotEmptyException a -> "folder not empty";
                default -> f.getClass().getSimpleName();
            };
            if (!bare) {
                String head = message.substring(0, message.length() - f.getFile().length() - 2);
                return (head.endsWith(f.getFile()) ? head : head + ": " + f.getFile()) + ": " + why;
            }
            return f.getFile() + (f.getOtherFile() != null ? " -> " + f.getOtherFile() : "") + ": " + why;
        }
        return message;
    }

    private static void setVersion(CommandLine cl, String[] version) {
        for (CommandLine sub : cl.getSubcommands().values()) {
            sub.getCommandSpec().version(version);
            setVersion(sub, version);
        }
    }

    /** Without a command, print the overview. */
    @Override public void run() {
        new CommandLine(this).usage(System.out);
    }
}
