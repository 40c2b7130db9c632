package dev.patchcore.backend;

import dev.patchcore.backend.cpu.CpuBackend;

import java.io.PrintStream;

/** Opens the backend a command asked for: {@code cpu}, {@code cuda}, or {@code auto} (CUDA when usable, else CPU). */
public final class Backends {
    private Backends() {}

    public static Backend open(String choice, String cublasLt, PrintStream log) {
        return switch (choice) {
            case "cpu" -> new CpuBackend();
            case "cuda", "auto" -> new CpuBackend(); // CUDA wiring lands with CudaBackend
            default -> throw new IllegalArgumentException("unknown --backend '" + choice + "' (choose auto, cpu or cuda)");
        };
    }
}
