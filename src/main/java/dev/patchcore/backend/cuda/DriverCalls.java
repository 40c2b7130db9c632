package dev.patchcore.backend.cuda;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/** Checks driver-API results; JCuda's own exceptions are off so every failure names the call that made it. */
final class DriverCalls {
    static final int CUDA_SUCCESS = 0;
    static final int CUDA_ERROR_OUT_OF_MEMORY = 2;
    static final int CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED = 704;

    private DriverCalls() {}

    static void check(int result, String call) {
        if (result == CUDA_SUCCESS) return;
        throw new CudaException(call + " failed: " + errorName(result), result);
    }

    static String errorName(int result) {
        try {
            String[] name = new String[1];
            if (JCudaDriver.cuGetErrorName(result, name) == CUDA_SUCCESS && name[0] != null) return name[0] + " (" + result + ")";
        } catch (Throwable ignored) {
            // fall through to JCuda's own table (e.g. when the native library is in a bad state)
        }
        return CUresult.stringFor(result) + " (" + result + ")";
    }
}
