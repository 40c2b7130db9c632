package dev.patchcore.cli;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Ctrl-C or a SIGTERM while a command trains: asks the run to stop after its step in progress and holds the JVM's exit
 * (up to ten minutes) until the command has saved and said so, i.e. until {@link #close}. Used by {@code train} and
 * {@code finetune}, and by {@code prepare} (which then removes its temporary files):
 * <pre>{@code try (StopOnSignal stop = new StopOnSignal(trainer::requestStop)) { run; stop.ranToItsEnd(); report; }}</pre>
 */
final class StopOnSignal implements AutoCloseable {
    private static final long WAIT_SECONDS = 600;

    private final CountDownLatch reported = new CountDownLatch(1);
    private final Thread hook;

    StopOnSignal(Runnable requestStop) {
        hook = new Thread(() -> {
            requestStop.run();
            try { reported.await(WAIT_SECONDS, TimeUnit.SECONDS); } catch (InterruptedException ignored) { /* exiting anyway */ }
        });
        Runtime.getRuntime().addShutdownHook(hook);
    }

    /** The run returned: a signal from now on ends the JVM as usual. */
    void ranToItsEnd() {
        try { Runtime.getRuntime().removeShutdownHook(hook); } catch (IllegalStateException ignored) { /* shutting down */ }
    }

    /** The command has said how the run ended: a waiting exit may go on. */
    @Override public void close() { reported.countDown(); }
}
