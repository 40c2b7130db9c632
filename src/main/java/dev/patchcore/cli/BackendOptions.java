package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.Backends;
import picocli.CommandLine.Option;

/** {@code --backend} and {@code --cublaslt}, shared by train, eval and bench. */
public final class BackendOptions {
    @Option(names = "--backend", defaultValue = "auto", converter = Choice.class,
            description = "auto, cpu or cuda (default: ${DEFAULT-VALUE}; auto picks CUDA when a GPU and kernels are present)")
    String backend;

    /** Checks the name as the command line is read, before a command prints or opens anything. */
    static final class Choice implements picocli.CommandLine.ITypeConverter<String> {
        @Override public String convert(String value) {
            if (!java.util.Set.of("auto", "cpu", "cuda").contains(value))
                throw new picocli.CommandLine.TypeConversionException("unknown backend '" + value + "' (choose auto, cpu or cuda)");
            return value;
        }
    }

    @Option(names = "--cublaslt", description = "path of libcublasLt.so (default: search by soname; env PATCHCORE_CUBLASLT)")
    String cublasLt;

    /** What is wrong with these options together, or null. */
    String problem() {
        return "cpu".equals(backend) && cublasLt != null
                ? "--cublaslt names the CUDA backend's GEMM library; --backend cpu does not use it" : null;
    }

    public Backend open() {
        return open(System.out);
    }

    /** The backend, saying on {@code log} which one and why (generate says it on stderr: its stdout is the text). */
    public Backend open(java.io.PrintStream log) {
        return Backends.open(backend, cublasLt, log);
    }

    /**
     * The backends of a {@code --devices} list, the primary first: GPUs unless --backend is cpu (then CPU replicas),
     * never a quiet fall-back to the CPU (a GPU that cannot be opened is an error naming it); with no list, the one
     * backend --backend chooses. Those already open are closed if a later one fails.
     */
    public java.util.List<Backend> openDevices(java.util.List<Integer> devices) {
        if (devices == null) return java.util.List.of(open());
        for (int id : devices) if (id < 0) throw new IllegalArgumentException("--devices takes GPU ordinals (0, 1, ...), not " + id);
        java.util.List<Backend> out = new java.util.ArrayList<>();
        try {
            for (int id : devices) out.add(openDevice(devices, id));
        } catch (RuntimeException e) {
            closeAll(out);
            throw e;
        }
        return out;
    }

    /** Closes every backend, each on its own: a failing close is a warning, so the command's own failure stays the one reported. */
    public static void closeAll(java.util.List<Backend> backends) {
        for (Backend b : backends) {
            try {
                b.close();
            } catch (RuntimeException e) {
                System.err.println("warning: closing a backend failed: " + e.getMessage());
            }
        }
    }

    /** The line that says a command runs data-parallel (nothing with one backend). */
    static void printReplicas(java.util.List<Backend> backends, java.util.List<Integer> devices) {
        if (backends.size() < 2) return;
        boolean gpus = backends.getFirst().device() == dev.patchcore.tensor.Device.CUDA;
        System.out.printf(java.util.Locale.ROOT, "data parallel: %d replicas on %s %s%s%n", backends.size(), gpus ? "GPUs" : "CPU backends",
                list(devices).replace(",", ", "), gpus ? "" : " (taking turns on the same cores: for testing, not speed)");
    }

    /** A --devices list as typed: {@code 0,1,2}. */
    static String list(java.util.List<Integer> devices) {
        return devices.stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(","));
    }

    private Backend openDevice(java.util.List<Integer> devices, int ordinal) {
        if ("cpu".equals(backend)) return Backends.open(backend, cublasLt, System.out);  // CPU replicas (for testing)
        if (!"auto".equals(backend) && !"cuda".equals(backend))
            throw new IllegalArgumentException("unknown --backend '" + backend + "' (choose auto, cpu or cuda)");
        try {
            dev.patchcore.backend.cuda.CudaBackend b = dev.patchcore.backend.cuda.CudaBackend.open(ordinal, cublasLt);
            System.out.println("backend: cuda, GPU " + ordinal + " (" + b.describe() + ")");
            return b;
        } catch (dev.patchcore.backend.cuda.CudaUnavailableException e) {
            throw new IllegalArgumentException("--devices " + list(devices) + ": GPU " + ordinal + " cannot be used: " + e.getMessage());
        }
    }
}
