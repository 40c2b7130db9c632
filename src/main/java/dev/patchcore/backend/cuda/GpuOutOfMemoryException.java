package dev.patchcore.backend.cuda;

/**
 * The device has no room for an allocation. An IllegalArgumentException so that the CLI reports it as a user mistake
 * (one line, exit code 2): the fix is a smaller model, micro-batch or context, not a code change.
 */
public final class GpuOutOfMemoryException extends IllegalArgumentException {
    public GpuOutOfMemoryException(String message) { super(message); }
}
