package dev.patchcore.backend;

import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.backend.cuda.CudaUnavailableException;

import java.io.PrintStream;

/** Opens the backend a command asked for: {@code cpu}, {@code cuda}, or {@code auto} (CUDA when usable, else CPU). */
public final class Backends {
    private Backends() {}

    public static Backend open(String choice, String cublasLt, PrintStream log) {
        if ("cpu".equals(choice) && cublasLt != null)
            throw new IllegalArgumentException("--cublaslt names the CUDA backend's GEMM library; --backend cpu does not use it");
        return switch (choice) {
            case "cpu" -> new CpuBackend();
            case "cuda" -> {
                try {
                    yield CudaBackend.open(cublasLt);
                } catch (CudaUnavailableException e) {
                    throw new IllegalArgumentException("--backend cuda: " + e.getMessage());
                }
            }
            case "auto" -> {
                try {
                    CudaBackend b = CudaBackend.open(cublasLt);
                    log.println("backend: cuda (" + b.describe() + ")");
                    yield b;
                } catch (CudaUnavailableException e) {
                    CpuBackend b = new CpuBackend();
                    log.println("backend: cpu (" + b.threads() + " threads, " + b.kernelName() + " kernels; CUDA not used: " + e.getMessage() + ")");
                    yield b;
                }
            }
            default -> throw new IllegalArgumentException("unknown --backend '" + choice + "' (choose auto, cpu or cuda)");
        };
    }
}
