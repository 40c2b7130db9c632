package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.Backends;
import picocli.CommandLine.Option;

/** {@code --backend} and {@code --cublaslt}, shared by train, eval and bench. */
public final class BackendOptions {
    @Option(names = "--backend", defaultValue = "auto", description = "auto, cpu or cuda (default: ${DEFAULT-VALUE}; auto picks CUDA when a GPU and kernels are present)")
    String backend;

    @Option(names = "--cublaslt", description = "path of libcublasLt.so (default: search by soname; env PATCHCORE_CUBLASLT)")
    String cublasLt;

    public Backend open() {
        return Backends.open(backend, cublasLt, System.out);
    }

    /**
     * Device {@code ordinal} of an explicit {@code --devices} list: a GPU unless --backend is cpu (then a CPU replica).
     * No quiet fall-back to the CPU: a GPU that cannot be opened is an error naming it.
     */
    public Backend openDevice(java.util.List<Integer> devices, int ordinal) {
        if ("cpu".equals(backend)) return new dev.patchcore.backend.cpu.CpuBackend();
        if (!"auto".equals(backend) && !"cuda".equals(backend))
            throw new IllegalArgumentException("unknown --backend '" + backend + "' (choose auto, cpu or cuda)");
        try {
            dev.patchcore.backend.cuda.CudaBackend b = dev.patchcore.backend.cuda.CudaBackend.open(ordinal, cublasLt);
            System.out.println("backend: cuda, GPU " + ordinal + " (" + b.describe() + ")");
            return b;
        } catch (dev.patchcore.backend.cuda.CudaUnavailableException e) {
            throw new IllegalArgumentException("--devices " + devices.stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(","))
                    + ": GPU " + ordinal + " cannot be used: " + e.getMessage());
        }
    }
}
