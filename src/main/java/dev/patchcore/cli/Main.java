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
        Integer relaunched = relaunchWithVectorApi(args);
        if (relaunched != null) System.exit(relaunched);
        if (System.getenv(LAUNCHER_PID) != null) {  // this is the relaunched JVM
            stopWithLauncher();
            writeWholeLines();
        }
        System.exit(run(args));
    }

    /**
     * The CPU matmul is about 20× faster with the incubating Vector API, which {@code java -jar} does not resolve
     * (a manifest cannot add modules). When it is missing, run the same jar again in a child JVM with
     * {@code --add-modules jdk.incubator.vector} and pass its exit code through. PATCHCORE_NO_RELAUNCH=1 disables this.
     */
    private static Integer relaunchWithVectorApi(String[] args) {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent() || System.getenv("PATCHCORE_NO_RELAUNCH") != null) return null;
        try {
            java.net.URI self = Main.class.getProtectionDomain().getCodeSource().getLocation().toURI();
            java.nio.file.Path jar = java.nio.file.Path.of(self);
            java.util.Optional<String> javaCmd = ProcessHandle.current().info().command();
            if (!java.nio.file.Files.isRegularFile(jar) || javaCmd.isEmpty()) return null;
            java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of(javaCmd.get()));
            cmd.addAll(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
            cmd.addAll(java.util.List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-jar", jar.toString()));
            cmd.addAll(java.util.List.of(args));
            // The child's standard error comes through this JVM, less the JVM's line about the incubating module
            // (printed by every JVM that resolves one, with no option to turn it off): noise on every command.
            ProcessBuilder pb = new ProcessBuilder(cmd).inheritIO().redirectError(ProcessBuilder.Redirect.PIPE);
            pb.environment().put("PATCHCORE_NO_RELAUNCH", "1");
            pb.environment().put(LAUNCHER_PID, Long.toString(ProcessHandle.current().pid()));
            Process child = pb.start();
            Thread stderr = Thread.ofPlatform().daemon().name("child-stderr").start(() -> copyStderr(child.getErrorStream()));
            // A stop request for this JVM (Ctrl-C, which the child gets too, or a SIGTERM sent to this process alone, as
            // `timeout` and batch schedulers do) is passed on as a SIGTERM to the child; then wait while it finishes its
            // step, saves a checkpoint and exits.
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                child.destroy();
                try {
                    child.waitFor();
                    stderr.join(2000);  // its last lines
                } catch (InterruptedException ignored) { /* exiting */ }
            }));
            int code = child.waitFor();
            stderr.join(2000);
            return code;
        } catch (Exception e) {
            return null; // fall back to the plain-Java kernels in this JVM
        }
    }

    private static final String LAUNCHER_PID = "PATCHCORE_LAUNCHER_PID";

    /**
     * In a relaunched JVM: when the launcher ends without passing on a stop (killed with SIGKILL, which it cannot
     * forward), stop as on a SIGTERM (a training run saves a checkpoint) instead of running on orphaned, unseen, and
     * still writing its run folder. The launcher's end shows as this process's parent changing (it is re-parented when
     * the launcher dies; {@code ProcessHandle.onExit} of a non-child would wait until the launcher's own parent reaps it).
     */
    private static void stopWithLauncher() {
        String pid = System.getenv(LAUNCHER_PID);
        if (pid == null || !pid.matches("\\d+")) return;
        long launcher = Long.parseLong(pid);
        if (parentPid() != launcher) return;  // not started by that launcher (the variable was inherited)
        Thread.ofPlatform().daemon().name("launcher-watch").start(() -> {
            try {
                while (parentPid() == launcher) Thread.sleep(500);
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("the launching process has ended: stopping");
            System.exit(143);  // 128 + SIGTERM, as if it had been forwarded
        });
    }

    /**
     * In a relaunched JVM, whose standard error reaches the terminal through the launcher (a pipe, copied as it comes):
     * standard output and error write each line with one system call, so a note copied by the launcher lands between
     * two lines of output, never inside one (a PrintStream on a terminal may write a formatted line piece by piece).
     */
    private static void writeWholeLines() {
        // Not autoflush: a PrintStream that flushes writes each piece of a printf on its own.
        java.io.PrintStream out = new java.io.PrintStream(new LineOutputStream(java.io.FileDescriptor.out), false, System.out.charset());
        java.io.PrintStream err = new java.io.PrintStream(new LineOutputStream(java.io.FileDescriptor.err), false, System.err.charset());
        System.setOut(out);
        System.setErr(err);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {  // a last line without its newline
            out.flush();
            err.flush();
        }));
    }

    /**
     * Passes bytes on a line at a time: each line, ended by \n or \r (a progress line), in one write to the file
     * descriptor; {@link #flush} passes on a partial line too.
     */
    static final class LineOutputStream extends java.io.OutputStream {
        private final java.io.OutputStream fd;
        private final java.io.ByteArrayOutputStream line = new java.io.ByteArrayOutputStream();

        LineOutputStream(java.io.FileDescriptor fd) {
            this(new java.io.FileOutputStream(fd));
        }

        LineOutputStream(java.io.OutputStream fd) {
            this.fd = fd;
        }

        @Override public synchronized void write(int b) throws java.io.IOException {
            line.write(b);
            if (b == '\n' || b == '\r' || line.size() >= 1 << 16) flush();
        }

        @Override public synchronized void write(byte[] b, int off, int len) throws java.io.IOException {
            for (int i = off; i < off + len; i++) write(b[i]);
        }

        @Override public synchronized void flush() throws java.io.IOException {
            if (line.size() == 0) return;
            line.writeTo(fd);
            line.reset();
            fd.flush();
        }
    }

    private static long parentPid() {
        return ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(-1L);
    }

    static final String INCUBATOR_WARNING = "WARNING: Using incubator modules: jdk.incubator.vector";

    /** Copies a child JVM's standard error to this one's as it comes, without a first line that is {@link #INCUBATOR_WARNING}. */
    static void copyStderr(java.io.InputStream in) {
        copyWithoutIncubatorWarning(in, new java.io.FileOutputStream(java.io.FileDescriptor.err));
    }

    static void copyWithoutIncubatorWarning(java.io.InputStream in, java.io.OutputStream out) {
        byte[] warning = (INCUBATOR_WARNING + "\n").getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] buf = new byte[8192];
        int held = 0;  // bytes of a first line that so far matches the warning, not yet written
        boolean first = true;
        try (in) {
            for (int n; (n = in.read(buf, held, buf.length - held)) > 0; ) {
                int from = 0, len = held + n;
                if (first) {
                    int same = 0;
                    while (same < len && same < warning.length && buf[same] == warning[same]) same++;
                    if (same == warning.length) { from = warning.length; first = false; }  // the warning: dropped
                    else if (same == len) { held = len; continue; }  // a prefix of it so far: wait for more
                    else first = false;  // some other first line
                    held = 0;
                }
                out.write(buf, from, len - from);
                out.flush();
            }
            if (held > 0) { out.write(buf, 0, held); out.flush(); }
        } catch (java.io.IOException ignored) {
            // the child or our stderr is gone: nothing more to pass on
        }
    }

    /** Runs a command line and returns its exit code: 0 ok, 1 failure, 2 bad input. */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setParameterExceptionHandler((ex, a) -> {
            // picocli words some messages "Error: …" itself (a missing argument group): one prefix is enough
            String message = ex.getMessage().startsWith("Error: ") ? ex.getMessage().substring(7) : ex.getMessage();
            // A first word that is no command reads as picocli's "Unmatched argument at index 0": say what it is
            if (ex instanceof CommandLine.UnmatchedArgumentException u && message.startsWith("Unmatched argument")) {
                if (u.getCommandLine() == cl && a.length > 0 && !a[0].startsWith("-"))
                    message = "unknown command '" + a[0] + "': choose one of " + String.join(", ", cl.getSubcommands().keySet());
                else
                    message = "unexpected argument" + (u.getUnmatched().size() > 1 ? "s '" : " '") + String.join("' '", u.getUnmatched())
                            + "' for " + u.getCommandLine().getCommandName();
            }
            ex.getCommandLine().getErr().println("error: " + message + " (see --help)");
            return 2;
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
            // The CPU backend's tensors live on the Java heap (by default a quarter of the machine's memory): a size
            // to change, not a bug. One line, exit code 2.
            long max = Runtime.getRuntime().maxMemory();
            boolean heap = "Java heap space".equals(e.getMessage());
            System.err.println("error: out of memory (" + e.getMessage() + ")" + (heap ? String.format(java.util.Locale.ROOT,
                    "; this JVM may use %d MiB of heap: give it more with java -Xmx<size> -jar patchcore.jar ...", max >> 20) : "")
                    + "; or use a smaller --batch or --preset");
            return 2;
        }
    }

    /**
     * The message of a failure, with a file-system failure's bare file name ({@code error: /proc/x}) or exception class
     * name ({@code java.nio.file.FileAlreadyExistsException: out}) turned into the file and what is wrong with it.
     */
    static String userMessage(Throwable t) {
        String message = String.valueOf(t.getMessage());
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (!(c instanceof java.nio.file.FileSystemException f) || f.getFile() == null) continue;
            boolean bare = message.equals(f.getFile()) || message.equals(f.getMessage()) || message.contains("java.nio.file.");
            if (!bare) break;
            String why = f.getReason() != null ? f.getReason() : switch (f) {
                case java.nio.file.AccessDeniedException a -> "permission denied";
                case java.nio.file.FileAlreadyExistsException a -> "exists already, and is not a folder";
                case java.nio.file.NoSuchFileException a -> "no such file or folder";
                case java.nio.file.NotDirectoryException a -> "not a folder";
                case java.nio.file.DirectoryNotEmptyException a -> "folder not empty";
                default -> f.getClass().getSimpleName();
            };
            return f.getFile() + (f.getOtherFile() != null ? " -> " + f.getOtherFile() : "") + ": " + why;
        }
        return message;
    }

    /** Without a command, print the overview. */
    @Override public void run() {
        new CommandLine(this).usage(System.out);
    }
}
