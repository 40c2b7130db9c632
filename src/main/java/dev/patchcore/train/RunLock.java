package dev.patchcore.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * An exclusive lock on a run folder ({@code RUN/.lock}) for as long as a command trains in it, so that two processes
 * never write one run (a second {@code train --resume} of a run still training would write the same checkpoints and
 * log the same steps twice). The lock is the operating system's (released when the process ends, however it ends);
 * the file holds the holder's process id for the message. The file itself stays: deleting it could let two processes
 * lock two different files of the same name.
 */
public final class RunLock implements AutoCloseable {
    /** The lock file's name in a run folder. */
    public static final String FILE = ".lock";
    /**
     * The lock files this JVM holds. POSIX drops every lock a process holds on a file when any of its descriptors of
     * that file closes, so a second attempt from this JVM must not even open the file: it is refused from this set.
     */
    private static final Set<Path> HELD = ConcurrentHashMap.newKeySet();

    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;

    private RunLock(Path file, FileChannel channel, FileLock lock) {
        this.file = file;
        this.channel = channel;
        this.lock = lock;
    }

    /** Locks {@code runDir} (which must exist), or fails with one line naming the process that holds it. */
    public static RunLock acquire(Path runDir) {
        return acquire(runDir, "wait for it to stop, or stop it (Ctrl-C or a SIGTERM saves a checkpoint)");
    }

    /** As above, for any folder one process at a time writes; {@code advice} ends the message when it is held. */
    public static RunLock acquire(Path runDir, String advice) {
        Path file = runDir.resolve(FILE).toAbsolutePath().normalize();
        if (!HELD.add(file)) throw new IllegalArgumentException(runDir + " is in use by this process already");
        FileChannel ch = null;
        try {
            ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            FileLock lock;
            try {
                lock = ch.tryLock();
            } catch (IOException e) {
                // A file system without locks (some network mounts): train on, unguarded, rather than not at all.
                System.err.println("warning: cannot lock " + file + " (" + e.getMessage() + "): nothing stops a second "
                        + "process from writing " + runDir + " too");
                return new RunLock(file, ch, null);
            }
            if (lock == null) {
                String holder = holder(ch);  // read through this descriptor: no other is opened
                throw new IllegalArgumentException(runDir + " is in use by another patchcore process" + holder
                        + "; " + advice);
            }
            ch.truncate(0);
            ch.write(ByteBuffer.wrap((ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII)), 0);
            return new RunLock(file, ch, lock);
        } catch (IOException e) {
            release(file, ch);
            throw new UncheckedIOException("cannot lock " + file + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            release(file, ch);
            throw e;
        }
    }

    private static void release(Path file, FileChannel ch) {
        try {
            if (ch != null) ch.close();
        } catch (IOException ignored) {
            // failing anyway
        } finally {
            HELD.remove(file);
        }
    }

    /** " (process N)" from the lock file, or "" if it names none. */
    private static String holder(FileChannel ch) {
        try {
            ByteBuffer b = ByteBuffer.allocate(32);
            ch.read(b, 0);
            String pid = new String(b.array(), 0, b.position(), StandardCharsets.US_ASCII).strip();
            return pid.matches("\\d+") ? " (process " + pid + ")" : "";
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }

    /** Removes the lock file of a run folder that is about to be removed (its lock released first). */
    public static void deleteFile(Path runDir) throws IOException {
        Files.deleteIfExists(runDir.resolve(FILE));
    }

    /** Whether this process holds the lock (false on a file system without locks). */
    public boolean held() { return lock != null; }

    private boolean closed;

    @Override public void close() {
        if (closed) return;
        closed = true;
        try {
            if (lock != null) lock.release();
        } catch (IOException ignored) {
            // closing the channel (or the process ending) releases it anyway
        } finally {
            release(file, channel);
        }
    }
}
