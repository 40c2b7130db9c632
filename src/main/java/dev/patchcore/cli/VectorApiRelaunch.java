package dev.patchcore.cli;

import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code java -jar patchcore.jar} without {@code --add-modules jdk.incubator.vector}: the same jar run again in a child
 * JVM that has the module, with the child's stop, exit code and output passed through as if it were this process.
 */
final class VectorApiRelaunch {
    /** Set in the child's environment to the launcher's pid: the child knows it was relaunched, and by whom. */
    private static final String LAUNCHER_PID = "PATCHCORE_LAUNCHER_PID";

    private VectorApiRelaunch() {}

    /**
     * The child's heap limit: three quarters of the machine's memory ({@code -XX:MaxRAMPercentage=75}) unless the
     * user set one (-Xmx, -XX:MaxHeapSize, -XX:MaxRAM…, on the command line or in JAVA_TOOL_OPTIONS / JDK_JAVA_OPTIONS).
     * The JVM's own default, a quarter, is too little for the CPU backend's activations beyond the tiny preset (the
     * small preset at context 1024 with its default batch needs about 9 GB); the limit is a ceiling, not memory taken.
     */
    static List<String> heapOption(List<String> jvmArgs, java.util.Map<String, String> env) {
        boolean set = jvmArgs.stream().anyMatch(VectorApiRelaunch::setsHeap)
                || setsHeap(env.getOrDefault("JAVA_TOOL_OPTIONS", "")) || setsHeap(env.getOrDefault("JDK_JAVA_OPTIONS", ""));
        return set ? List.of() : List.of("-XX:MaxRAMPercentage=75");
    }

    private static boolean setsHeap(String option) {
        return option.contains("-Xmx") || option.contains("MaxHeapSize") || option.contains("MaxRAM");
    }

    /** In the relaunched JVM (the launcher set {@link #LAUNCHER_PID}): stop with the launcher, write output a line at a time. */
    static void setUpIfRelaunched() {
        if (System.getenv(LAUNCHER_PID) == null) return;
        stopWithLauncher();
        writeWholeLines();
    }

    /**
     * The CPU matmul is about 20× faster with the incubating Vector API, which {@code java -jar} does not resolve
     * (a manifest cannot add modules). When it is missing, run the same jar again in a child JVM with
     * {@code --add-modules jdk.incubator.vector} and pass its exit code through. PATCHCORE_NO_RELAUNCH=1 disables this.
     */
    static Integer run(String[] args) {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent() || System.getenv("PATCHCORE_NO_RELAUNCH") != null) return null;
        try {
            URI self = VectorApiRelaunch.class.getProtectionDomain().getCodeSource().getLocation().toURI();
            Path jar = Path.of(self);
            Optional<String> javaCmd = ProcessHandle.current().info().command();
            if (!Files.isRegularFile(jar) || javaCmd.isEmpty()) return null;
            List<String> cmd = new ArrayList<>(List.of(javaCmd.get()));
            List<String> jvmArgs = ManagementFactory.getRuntimeMXBean().getInputArguments();
            cmd.addAll(jvmArgs);
            cmd.addAll(heapOption(jvmArgs, System.getenv()));
            cmd.addAll(List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-jar", jar.toString()));
            cmd.addAll(List.of(args));
            // The child's standard error comes through this JVM, less the JVM's line about the incubating module
            // (printed by every JVM that resolves one, with no option to turn it off): noise on every command.
            ProcessBuilder pb = new ProcessBuilder(cmd).inheritIO().redirectError(ProcessBuilder.Redirect.PIPE);
            pb.environment().put("PATCHCORE_NO_RELAUNCH", "1");
            pb.environment().put(LAUNCHER_PID, Long.toString(ProcessHandle.current().pid()));
            // A stop request for this JVM (Ctrl-C, which the child gets too, or a SIGTERM sent to this process alone, as
            // `timeout` and batch schedulers do) is passed on as a SIGTERM to the child; then wait while it finishes its
            // step, saves a checkpoint and exits. The hook is in place before the child starts, so no stop falls between.
            AtomicReference<Process> started = new AtomicReference<>();
            AtomicReference<Thread> copier = new AtomicReference<>();
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                Process p = started.get();
                if (p == null) return;
                p.destroy();
                try {
                    p.waitFor();
                    Thread t = copier.get();
                    if (t != null) t.join(2000);  // its last lines
                } catch (InterruptedException ignored) { /* exiting */ }
            }));
            Process child = pb.start();
            started.set(child);
            Thread stderr = Thread.ofPlatform().daemon().name("child-stderr").start(() -> copyStderr(child.getErrorStream()));
            copier.set(stderr);
            int code = child.waitFor();
            stderr.join(2000);
            return code;
        } catch (Exception e) {
            return null; // fall back to the plain-Java kernels in this JVM
        }
    }

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
        if (parentPid() != launcher) {
            // The launcher died before this JVM got here (killed within its first moments), or the variable was
            // inherited from an unrelated launcher that is still running
            if (running(launcher)) return;
            System.out.println("the launching process has ended: stopping");
            System.exit(143);
        }
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
        PrintStream out = new PrintStream(new LineOutputStream(FileDescriptor.out), false, System.out.charset());
        PrintStream err = new PrintStream(new LineOutputStream(FileDescriptor.err), false, System.err.charset());
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
    static final class LineOutputStream extends OutputStream {
        private final OutputStream fd;
        private final ByteArrayOutputStream line = new ByteArrayOutputStream();

        LineOutputStream(FileDescriptor fd) {
            this(new FileOutputStream(fd));
        }

        LineOutputStream(OutputStream fd) {
            this.fd = fd;
        }

        @Override public synchronized void write(int b) throws IOException {
            line.write(b);
            if (b == '\n' || b == '\r' || line.size() >= 1 << 16) flush();
        }

        @Override public synchronized void write(byte[] b, int off, int len) throws IOException {
            for (int i = off; i < off + len; i++) write(b[i]);
        }

        @Override public synchronized void flush() throws IOException {
            if (line.size() == 0) return;
            line.writeTo(fd);
            line.reset();
            fd.flush();
        }
    }

    /**
     * Whether process {@code pid} runs. A process killed but not yet reaped by its parent (a zombie: a launcher
     * SIGKILLed while its own parent is gone or busy) counts as alive to {@link ProcessHandle#isAlive}, not here.
     */
    static boolean running(long pid) {
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) return false;
        try {  // Linux: the state letter after the command name in /proc/PID/stat
            String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
            char state = stat.charAt(stat.lastIndexOf(')') + 2);
            return state != 'Z' && state != 'X';
        } catch (IOException | RuntimeException e) {
            return true;  // no /proc (or it changed under us): as isAlive says
        }
    }

    private static long parentPid() {
        return ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(-1L);
    }

    static final String INCUBATOR_WARNING = "WARNING: Using incubator modules: jdk.incubator.vector";

    /**
     * Copies a child JVM's standard error to this one's as it comes, without the lines the JVM prints before the
     * program's own: {@link #INCUBATOR_WARNING}, and the "Picked up JAVA_TOOL_OPTIONS / JDK_JAVA_OPTIONS" notes that
     * this JVM has already printed once (the child reads the same environment).
     */
    static void copyStderr(InputStream in) {
        copyWithoutIncubatorWarning(in, new FileOutputStream(FileDescriptor.err));
    }

    private static final List<String> JVM_HEAD_LINES = List.of("Picked up ", "NOTE: Picked up ");

    /** A whole first line of the JVM's own (dropped). */
    private static boolean jvmHeadLine(String line) {
        return line.equals(INCUBATOR_WARNING) || JVM_HEAD_LINES.stream().anyMatch(line::startsWith);
    }

    /** The start of a line that may still turn out to be one of the JVM's own. */
    private static boolean mayBeJvmHeadLine(String partial) {
        return INCUBATOR_WARNING.startsWith(partial)
                || JVM_HEAD_LINES.stream().anyMatch(p -> p.startsWith(partial) || partial.startsWith(p));
    }

    static void copyWithoutIncubatorWarning(InputStream in, OutputStream out) {
        byte[] buf = new byte[8192];
        int held = 0;         // bytes of an incomplete first line that may still be dropped, at buf[0, held)
        boolean head = true;  // still among the lines the JVM prints before the program's
        try (in) {
            for (int n; (n = in.read(buf, held, buf.length - held)) > 0; ) {
                int len = held + n, from = 0;
                held = 0;
                while (head) {
                    int nl = from;
                    while (nl < len && buf[nl] != '\n') nl++;
                    String line = new String(buf, from, nl - from, StandardCharsets.UTF_8);
                    if (nl == len) {  // incomplete: hold it while it may still be dropped (and fits the buffer)
                        if (mayBeJvmHeadLine(line) && len - from < buf.length) {
                            System.arraycopy(buf, from, buf, 0, len - from);
                            held = len - from;
                            from = len;
                        } else {
                            head = false;
                        }
                        break;
                    }
                    if (jvmHeadLine(line)) from = nl + 1;
                    else head = false;
                }
                if (from < len) {
                    out.write(buf, from, len - from);
                    out.flush();
                }
            }
            if (held > 0) { out.write(buf, 0, held); out.flush(); }
        } catch (IOException ignored) {
            // the child or our stderr is gone: nothing more to pass on
        }
    }
}
