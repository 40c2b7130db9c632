package dev.patchcore.checkpoint;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Crash-safe file replacement: write a temp file beside the target, fsync it, rename over the target, fsync the folder. */
public final class AtomicFiles {
    private AtomicFiles() {}

    @FunctionalInterface
    public interface Writer {
        void write(FileChannel ch) throws IOException;
    }

    public static void write(Path target, Writer writer) {
        Path dir = target.toAbsolutePath().getParent();
        Path tmp = dir.resolve("." + target.getFileName() + ".tmp");
        try {
            Files.createDirectories(dir);
            writeSynced(tmp, writer);
            moveIntoPlace(tmp, target);
        } catch (IOException e) {
            deleteQuietly(tmp);
            throw new UncheckedIOException("cannot write " + target + ": " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {  // a writer's own failure (a device error, out of memory): no temporary file left
            deleteQuietly(tmp);
            throw e;
        }
    }

    /**
     * The first half of a replacement whose rename comes later (when a whole set of files is ready): writes
     * {@code file} (created or truncated) and forces it to the disk.
     */
    public static void writeSynced(Path file, Writer writer) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            writer.write(ch);
            ch.force(true);
        }
    }

    /** The second half: renames {@code from} over {@code to} (atomically where the file system can) and syncs the folder. */
    public static void moveIntoPlace(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
        fsyncDirectory(to.toAbsolutePath().getParent());
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException ignored) { /* best effort */ }
    }

    public static void writeString(Path target, String text) {
        writeBytes(target, text.getBytes(StandardCharsets.UTF_8));
    }

    public static void writeBytes(Path target, byte[] bytes) {
        write(target, bytesOf(bytes));
    }

    /** A writer of these bytes. */
    public static Writer bytesOf(byte[] bytes) {
        return ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        };
    }

    static void fsyncDirectory(Path dir) {
        // Makes the rename durable; not every file system allows opening a directory, which is harmless.
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException ignored) {
            // directory fsync unsupported here
        }
    }
}
