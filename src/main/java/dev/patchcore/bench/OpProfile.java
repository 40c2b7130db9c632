package dev.patchcore.bench;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.tensor.Tensor;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Where a training step's time goes, op by op. {@link #backend()} forwards every call to the real backend; between
 * {@link #start()} and {@link #stop()} it also marks the time before and after each op. On CUDA the marks are events
 * recorded on the stream ({@link CudaBackend#mark()}): an op's time is the stream time of its kernels, nothing waits
 * until {@link #stop()}, and the stream time between ops (the GPU waiting for the host's next launch) is reported on its
 * own line. On the CPU backend, whose ops return when done, the marks are {@link System#nanoTime()}.
 *
 * <p>The backend is a {@link Proxy}: the training code under it is unchanged, and a call costs a reflective dispatch
 * (well under a microsecond) when not recording. Marking costs host time (two events per op on CUDA), so a recorded
 * step is slower than an unrecorded one; the shares are what it is for. On CUDA, "between ops" is all stream time
 * outside the ops' spans: mostly the GPU waiting for the host's next launch, but also the device work of untimed
 * calls (downloads, allocation zeroing, scratch poisoning when it is on); idle time inside an op that launches several
 * kernels counts as that op's.
 */
public final class OpProfile {
    /** One line of the report: an op (matmuls labelled by their weight's shape), its calls and their total milliseconds. */
    public record Line(String op, int calls, double millis) {}

    /** A recorded step: its lines (largest first), the time between ops, and the whole span. */
    public record Report(List<Line> lines, double betweenOpsMillis, double totalMillis) {}

    /** Calls that are not timed: identity, memory management and the waits of the harness itself. */
    private static final Set<String> UNTIMED = Set.of("name", "device", "activationType", "allocate", "free", "scratch",
            "releaseScratch", "scratchMark", "releaseScratchTo", "synchronize", "close", "download", "downloadInts", "toString", "hashCode", "equals");

    private interface Clock {
        Object mark();

        double millis(Object from, Object to);

        void release(Object mark);
    }

    private record Span(String op, Object start, Object end) {}

    private final Backend target;
    private final Backend proxy;
    private final Clock clock;
    private final List<Span> spans = new ArrayList<>();
    private Object first;
    private boolean recording;

    private OpProfile(Backend target) {
        this.target = target;
        this.clock = target instanceof CudaBackend cuda ? new Clock() {
            @Override public Object mark() { return cuda.mark(); }

            @Override public double millis(Object from, Object to) {
                return ((CudaBackend.StreamMark) to).millisSince((CudaBackend.StreamMark) from);
            }

            @Override public void release(Object mark) { ((CudaBackend.StreamMark) mark).close(); }
        } : new Clock() {
            @Override public Object mark() { return System.nanoTime(); }

            @Override public double millis(Object from, Object to) { return ((Long) to - (Long) from) / 1e6; }

            @Override public void release(Object mark) { /* nothing held */ }
        };
        this.proxy = (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (p, method, args) -> invoke(method, args));
    }

    /** A profiler over {@code target}; run the work through {@link #backend()}. */
    public static OpProfile of(Backend target) {
        if (target == null) throw new IllegalArgumentException("backend is null");
        return new OpProfile(target);
    }

    /** The backend to run the profiled work on. */
    public Backend backend() { return proxy; }

    /** Starts recording (after waiting for earlier work, so that it is not counted). */
    public void start() {
        if (recording) throw new IllegalStateException("already recording");
        target.synchronize();
        releaseMarks();
        first = clock.mark();
        recording = true;
    }

    /** Stops recording without a report (the recorded work failed): releases the marks, waits for nothing. */
    public void discard() {
        recording = false;
        releaseMarks();
    }

    private void releaseMarks() {
        for (Span s : spans) {
            clock.release(s.start());
            clock.release(s.end());
        }
        spans.clear();
        if (first != null) clock.release(first);
        first = null;
    }

    /** Stops recording, waits for the recorded work and returns where its time went. */
    public Report stop() {
        if (!recording) throw new IllegalStateException("not recording");
        recording = false;
        Object last = null;
        try {
            last = clock.mark();
            double total = clock.millis(first, last);
            Map<String, double[]> byOp = new LinkedHashMap<>();  // op -> {calls, millis}
            double inOps = 0;
            for (Span s : spans) {
                double ms = clock.millis(s.start(), s.end());
                double[] acc = byOp.computeIfAbsent(s.op(), k -> new double[2]);
                acc[0]++;
                acc[1] += ms;
                inOps += ms;
            }
            List<Line> lines = new ArrayList<>();
            byOp.forEach((op, acc) -> lines.add(new Line(op, (int) acc[0], acc[1])));
            lines.sort(Comparator.comparingDouble(Line::millis).reversed());
            return new Report(List.copyOf(lines), Math.max(0, total - inOps), total);
        } finally {
            releaseMarks();
            if (last != null) clock.release(last);
        }
    }

    private Object invoke(Method method, Object[] args) throws Throwable {
        boolean timed = recording && !UNTIMED.contains(method.getName());
        Object start = timed ? clock.mark() : null;
        Object result;
        try {
            result = method.invoke(target, args);
        } catch (InvocationTargetException e) {
            if (start != null) clock.release(start);
            throw e.getCause();
        }
        if (timed) spans.add(new Span(label(method.getName(), args), start, clock.mark()));
        return result;
    }

    /** The op's name; matmuls also name their weight's shape (which projection it is), as [out × in]. */
    private static String label(String method, Object[] args) {
        Tensor w = switch (method) {
            case "matmul" -> (Tensor) args[1];
            case "matmulBackward" -> (Tensor) args[2];
            default -> null;
        };
        return w == null ? method : method + " [" + w.dim(0) + " × " + w.dim(1) + "]";
    }

    /** The report as text: one line per op (at most {@code maxLines}, the rest summed), then the time between ops. */
    public static String format(Report r, int maxLines) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(java.util.Locale.ROOT, "    %-34s %7s %10s %6s %10s%n", "op", "calls", "ms", "%", "µs/call"));
        List<Line> lines = r.lines();
        double restMs = 0;
        int restCalls = 0;
        for (int i = 0; i < lines.size(); i++) {
            Line l = lines.get(i);
            if (i < maxLines) sb.append(row(l.op(), l.calls(), l.millis(), r.totalMillis()));
            else {
                restMs += l.millis();
                restCalls += l.calls();
            }
        }
        if (lines.size() > maxLines) sb.append(row("(" + (lines.size() - maxLines) + " other ops)", restCalls, restMs, r.totalMillis()));
        sb.append(String.format(java.util.Locale.ROOT, "    %-34s %7s %10.3f %5.1f%%%n", "between ops", "", r.betweenOpsMillis(),
                100 * r.betweenOpsMillis() / r.totalMillis()));
        sb.append(String.format(java.util.Locale.ROOT, "    %-34s %7s %10.3f%n", "step", "", r.totalMillis()));
        return sb.toString();
    }

    private static String row(String op, int calls, double ms, double total) {
        return String.format(java.util.Locale.ROOT, "    %-34s %7d %10.3f %5.1f%% %10.1f%n", op, calls, ms, 100 * ms / total, 1000 * ms / calls);
    }
}
