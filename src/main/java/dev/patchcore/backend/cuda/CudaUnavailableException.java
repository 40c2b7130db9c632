package dev.patchcore.backend.cuda;

/** The CUDA backend cannot start here; the message is one line saying why (no libcuda, no device, no kernels …). */
public final class CudaUnavailableException extends RuntimeException {
    public CudaUnavailableException(String reason) { super(reason); }

    public CudaUnavailableException(String reason, Throwable cause) { super(reason, cause); }
}
