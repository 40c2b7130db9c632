package dev.patchcore.tensor;

/** The memory behind a tensor; each backend provides its own kind. */
public interface Storage {
    Device device();

    /** Capacity in bytes. */
    long bytes();
}
