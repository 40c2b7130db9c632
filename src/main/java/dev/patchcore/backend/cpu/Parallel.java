package dev.patchcore.backend.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;

/**
 * Runs independent tasks 0..n-1 on a fixed pool. Tasks are handed out dynamically (an atomic counter), so
 * uneven work such as causal attention rows still balances; the calling thread works too.
 */
final class Parallel implements AutoCloseable {
    private final int threads;
    private final ForkJoinPool pool;

    Parallel(int threads) {
        if (threads < 1) throw new IllegalArgumentException("thread count must be at least 1, got " + threads);
        this.threads = threads;
        this.pool = threads == 1 ? null : new ForkJoinPool(threads - 1);
    }

    int threads() { return threads; }

    void forEach(int n, IntConsumer task) {
        if (n <= 0) return;
        if (pool == null || n == 1) {
            for (int i = 0; i < n; i++) task.accept(i);
            return;
        }
        AtomicInteger next = new AtomicInteger();
        Runnable worker = () -> {
            for (int i; (i = next.getAndIncrement()) < n; ) task.accept(i);
        };
        int helpers = Math.min(threads, n) - 1;
        ForkJoinTask<?>[] running = new ForkJoinTask<?>[helpers];
        for (int h = 0; h < helpers; h++) running[h] = pool.submit(worker);
        try {
            worker.run();
        } finally {
            for (ForkJoinTask<?> f : running) f.join();
        }
    }

    /** Splits [0, total) into chunks of about {@code grain} elements and runs {@code body(from, to)} on each. */
    void forRange(int total, int grain, RangeBody body) {
        if (total <= 0) return;
        int chunks = Math.max(1, Math.min(total / Math.max(1, grain), threads * 4));
        if (chunks == 1) {
            body.run(0, total);
            return;
        }
        forEach(chunks, c -> body.run((int) ((long) total * c / chunks), (int) ((long) total * (c + 1) / chunks)));
    }

    @FunctionalInterface
    interface RangeBody {
        void run(int from, int to);
    }

    @Override
    public void close() {
        if (pool != null) pool.shutdownNow();
    }
}
