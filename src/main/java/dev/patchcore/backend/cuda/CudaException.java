package dev.patchcore.backend.cuda;

/** A CUDA driver or cuBLASLt call failed; the message names the call and the error. */
public class CudaException extends RuntimeException {
    private final int code;

    public CudaException(String message, int code) {
        super(message);
        this.code = code;
    }

    /** The driver's CUresult (or cuBLAS status for cuBLASLt calls). */
    public int code() { return code; }
}
