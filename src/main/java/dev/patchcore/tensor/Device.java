package dev.patchcore.tensor;

/** Where a tensor's storage lives. */
public enum Device { CPU, CUDA }
