package dev.patchcore.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * An exclusive lock on a run folder ({@code RUN/.lock}) for as long as a command trains in it, so that two processes
 * never write one run (a second {@code train --resume} of a run still training would write the same checkpoints and
 * log the same steps twice). The lock is the operating system's (released when the process ends, however it ends);
 * the file holds the holder's process id for the message. The file itself stays: deleting it could let two processes
 * lock two different files of the same name.
 */
public final class RunLock implements AutoCloseable {
    static final String FILE = ".lock";

    private final FileChannel channel;
    private final FileLock lock;

    private RunLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    /** Locks {@code runDir} (which must exist), or fails with one line naming the process that holds it. */
    public static RunLock acquire(Path runDir) {
        Path file = runDir.resolve(FILE);
        FileChannel ch = null;
        try {
            ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            FileLock lock;
            try {
                lock = ch.tryLock();
            } catch (OverlappingFileLockException e) {
                lock = null;  // this JVM holds it already
            }
            if (lock == null) {
                String holder = holder(file);
                ch.close();
                throw new IllegalArgumentException(runDir + " is in use by another patchcore process" + holder
                        + "; wait for it to stop, or stop it (Ctrl-C or a SIGTERM saves a checkpoint)");
            }
            ch.truncate(0);
            ch.write(ByteBuffer.wrap((ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII)), 0);
            return new RunLock(ch, lock);
        } catch (IOException e) {
            try { if (ch != null) ch.close(); } catch (IOException ignored) { /* failing anyway */ }
            throw new UncheckedIOException("cannot lock " + file + ": " + e.getMessage(), e);
        }
    }

    /** " (process N)" from the lock file, or "" if it names none. */
    private static String holder(Path file) {
        try {
            String pid = Files.readString(file, StandardCharsets.US_ASCII).strip();
            return pid.matches("\\d+") ? " (process " + pid + ")" : "";
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }

    /** Removes the lock file of a run folder that is about to be removed (its lock released first). */
    public static void deleteFile(Path runDir) throws IOException {
        Files.deleteIfExists(runDir.resolve(FILE));
    }

    @Override public void close() {
        try {
            lock.release();
            channel.close();
        } catch (IOException ignored) {
            // the process ending releases it anyway
        }
    }
}
