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

    /** The backend of device {@code ordinal} as --backend chooses it (auto: CUDA when usable). */
    public Backend open(int ordinal) {
        return Backends.open(backend, ordinal, cublasLt, System.out);
    }

    /** Another device's backend of the same kind as {@code primary} (a data-parallel replica's). */
    public Backend openLike(Backend primary, int ordinal) {
        return Backends.open(primary.device() == dev.patchcore.tensor.Device.CUDA ? "cuda" : "cpu", ordinal, cublasLt, System.out);
    }
}
