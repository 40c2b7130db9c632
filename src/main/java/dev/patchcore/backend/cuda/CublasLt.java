package dev.patchcore.backend.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * cuBLASLt through java.lang.foreign: bf16 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output with
 * optional {@code beta = 1} accumulation. Descriptors, layouts and the heuristic's candidate algorithms are cached per
 * {@link Key}; at the first call of a key its candidates are timed on the real operands and the fastest is kept for the
 * life of this object ({@link GemmTuner}; {@code PATCHCORE_GEMM_TUNE=0} keeps the heuristic's first pick). A training
 * step makes no cuBLASLt set-up calls after the first.
 *
 * <p>There is no cublasLt.h on the build machines; the values below are from CUDA's {@code cublasLt.h} (12.x/13.0,
 * enums {@code cublasLtMatmulDescAttributes_t}, {@code cublasLtMatrixLayoutAttribute_t},
 * {@code cublasLtMatmulPreferenceAttributes_t}, struct {@code cublasLtMatmulHeuristicResult_t}), {@code cublas_api.h}
 * ({@code cublasComputeType_t}, {@code cublasOperation_t}) and {@code library_types.h} ({@code cudaDataType_t}, also in
 * /usr/local/cuda/include). These values are part of the stable ABI (only appended to across releases).
 */
final class CublasLt implements AutoCloseable {
    // cudaDataType_t (library_types.h)
    static final int CUDA_R_32F = 0;
    static final int CUDA_R_16BF = 14;
    // cublasComputeType_t (cublas_api.h)
    static final int CUBLAS_COMPUTE_32F = 68;
    // cublasOperation_t
    static final int CUBLAS_OP_N = 0;
    static final int CUBLAS_OP_T = 1;
    // cublasLtMatmulDescAttributes_t (int32 values)
    static final int CUBLASLT_MATMUL_DESC_TRANSA = 3;
    static final int CUBLASLT_MATMUL_DESC_TRANSB = 4;
    // cublasLtMatmulPreferenceAttributes_t
    static final int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1; // uint64
    static final int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5; // uint32 (default 256)
    static final int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6;
    static final int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7;
    static final int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8;
    // cublasLtMatmulHeuristicResult_t: cublasLtMatmulAlgo_t algo (uint64_t data[8]) at 0, size_t workspaceSize at 64,
    // cublasStatus_t state at 72, float wavesCount at 76, int reserved[4] at 80: 96 bytes.
    static final long HEURISTIC_RESULT_BYTES = 96;
    static final long ALGO_BYTES = 64;
    static final long HEURISTIC_WORKSPACE_OFFSET = 64;
    static final long HEURISTIC_STATE_OFFSET = 72;

    /** NVIDIA's recommended cuBLASLt workspace for Hopper (4 MiB suffices before it); also the heuristic's limit. */
    static final long WORKSPACE_BYTES = 32L << 20;
    /** Heuristic candidates asked for when tuning (the library returns at most this many, best-estimated first). */
    static final int TUNE_CANDIDATES = 16;
    /** Back-to-back runs per timing sample, after one untimed warm-up run of the candidate. */
    static final int TIMED_RUNS = 5;

    /** CUDA-event timing of work enqueued on the GEMM stream; waits for the end event. */
    @FunctionalInterface
    interface StreamTimer {
        float millis(Runnable work);
    }

    private final Arena arena = Arena.ofShared();
    private final String libraryPath;
    private final long version;
    private final MethodHandle create, destroy, descCreate, descDestroy, descSetAttr, layoutCreate, layoutDestroy,
            prefCreate, prefDestroy, prefSetAttr, heuristic, matmul;
    private final MethodHandle statusName; // may be null on old libraries
    private final MemorySegment handle;
    private final MemorySegment one, zero;
    private final long workspace;
    private final DeviceMemory memory;
    private final long stream;
    private final StreamTimer timer;
    private final GemmTuner<Key> tuner;
    private final Map<Key, Plan> plans = new HashMap<>();

    /**
     * One distinct GEMM: shape and transposes ({@code layout}), output type (CUDA_R_16BF or CUDA_R_32F; A and B are
     * always bf16), beta (accumulate), and the alignment of each pointer (the heuristic's candidates may rely on it).
     * Addresses themselves are not part of it: a GEMM on other buffers of the same shape reuses the plan and choice.
     */
    record Key(GemmLayout layout, int outType, boolean accumulate, int alignA, int alignB, int alignC) {
        static Key of(GemmLayout layout, long a, long b, long d, int outType, boolean accumulate) {
            return new Key(layout, outType, accumulate, alignment(a), alignment(b), alignment(d));
        }

        /** Bytes of the output matrix D (column-major m×n with leading dimension ldc). */
        long outputBytes() { return layout.ldc() * layout.n() * (outType == CUDA_R_32F ? 4L : 2L); }
    }

    /** Descriptors of one key and the heuristic's usable candidate algorithms (64 bytes each), best-estimated first. */
    private record Plan(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment c, List<MemorySegment> algos) {}

    /**
     * Loads the library (see {@link CublasLtLibrary}) or throws CudaUnavailableException listing what was tried.
     * {@code timer} times candidate algorithms on {@code stream}; tuning follows $PATCHCORE_GEMM_TUNE.
     */
    CublasLt(String override, DeviceMemory memory, long stream, StreamTimer timer) {
        this.memory = memory;
        this.stream = stream;
        this.timer = timer;
        this.tuner = new GemmTuner<>(GemmTuner.Mode.parse(System.getenv("PATCHCORE_GEMM_TUNE")));
        Linker linker = Linker.nativeLinker();
        SymbolLookup lib = null;
        String found = null;
        List<String> tried = new ArrayList<>();
        for (CublasLtLibrary.Candidate c : CublasLtLibrary.candidates(override, System.getenv("PATCHCORE_CUBLASLT"),
                CublasLtLibrary.toolkitDirs(), CublasLtLibrary.sitePackages())) {
            String p = c.pathOrSoname();
            if (p.contains("/") && !Files.isRegularFile(Path.of(p))) {
                tried.add(p + " (missing)");
                continue;
            }
            try {
                lib = p.contains("/") ? SymbolLookup.libraryLookup(Path.of(p), arena) : SymbolLookup.libraryLookup(p, arena);
                found = p;
                break;
            } catch (IllegalArgumentException e) {
                tried.add(p + " (" + e.getMessage() + ")");
            }
        }
        if (lib == null) throw new CudaUnavailableException("no cuBLASLt found (set PATCHCORE_CUBLASLT or --cublaslt); tried: " + String.join(", ", tried));
        libraryPath = found;
        create = bind(linker, lib, "cublasLtCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        destroy = bind(linker, lib, "cublasLtDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        descCreate = bind(linker, lib, "cublasLtMatmulDescCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        descDestroy = bind(linker, lib, "cublasLtMatmulDescDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        descSetAttr = bind(linker, lib, "cublasLtMatmulDescSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
        layoutCreate = bind(linker, lib, "cublasLtMatrixLayoutCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        layoutDestroy = bind(linker, lib, "cublasLtMatrixLayoutDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        prefCreate = bind(linker, lib, "cublasLtMatmulPreferenceCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        prefDestroy = bind(linker, lib, "cublasLtMatmulPreferenceDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        prefSetAttr = bind(linker, lib, "cublasLtMatmulPreferenceSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
        heuristic = bind(linker, lib, "cublasLtMatmulAlgoGetHeuristic", FunctionDescriptor.of(JAVA_INT,
                ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
        matmul = bind(linker, lib, "cublasLtMatmul", FunctionDescriptor.of(JAVA_INT,
                ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS,
                ADDRESS, ADDRESS, JAVA_LONG, ADDRESS));
        statusName = lib.find("cublasLtGetStatusName").map(s -> linker.downcallHandle(s, FunctionDescriptor.of(ADDRESS, JAVA_INT))).orElse(null);
        MethodHandle getVersion = bind(linker, lib, "cublasLtGetVersion", FunctionDescriptor.of(JAVA_LONG));
        try {
            version = (long) getVersion.invokeExact();
            MemorySegment h = arena.allocate(ADDRESS);
            check((int) create.invokeExact(h), "cublasLtCreate");
            handle = h.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw new CudaUnavailableException("cuBLASLt at " + found + " does not start: " + e.getMessage(), e);
        } catch (Throwable t) {
            throw new CudaUnavailableException("cuBLASLt at " + found + " does not start: " + t, t);
        }
        one = arena.allocate(ValueLayout.JAVA_FLOAT);
        one.set(ValueLayout.JAVA_FLOAT, 0, 1f);
        zero = arena.allocate(ValueLayout.JAVA_FLOAT);
        zero.set(ValueLayout.JAVA_FLOAT, 0, 0f);
        workspace = memory.allocate(WORKSPACE_BYTES);
    }

    private static MethodHandle bind(Linker linker, SymbolLookup lib, String name, FunctionDescriptor fd) {
        MemorySegment sym = lib.find(name).orElseThrow(() -> new CudaUnavailableException("cuBLASLt lacks symbol " + name));
        return linker.downcallHandle(sym, fd);
    }

    String libraryPath() { return libraryPath; }

    /** cublasLtGetVersion(): e.g. 130001 for 13.0.1. */
    long version() { return version; }

    /**
     * D = A·B (column-major, per {@code layout}) with bf16 A, B; D is bf16 or fp32 ({@code outType});
     * {@code accumulate}: D += A·B (beta = 1, C = D). The first call of a key tunes its algorithm (synchronizes the
     * stream); D's final contents never depend on the tuning runs.
     */
    void matmul(GemmLayout layout, long a, long b, long d, int outType, boolean accumulate) {
        if (layout.m() == 0 || layout.n() == 0) return;
        if (layout.k() == 0) {
            // An empty inner dimension: the product is zero; cuBLASLt rejects k = 0.
            if (!accumulate) memory.zero(d, layout.m() * layout.n() * (outType == CUDA_R_32F ? 4L : 2L));
            return;
        }
        Key key = Key.of(layout, a, b, d, outType, accumulate);
        Plan plan = plans.computeIfAbsent(key, this::plan);
        GemmTuner.Choice choice = tuner.cached(key);
        if (choice == null) choice = tune(key, plan, a, b, d);
        run(key, plan, plan.algos.get(choice.index()), a, b, d);
    }

    /** One cublasLtMatmul with an explicit algorithm; beta follows the key. */
    private void run(Key key, Plan plan, MemorySegment algo, long a, long b, long d) {
        MemorySegment beta = key.accumulate() ? one : zero;
        try {
            int status = (int) matmul.invokeExact(handle, plan.desc, one, MemorySegment.ofAddress(a), plan.a, MemorySegment.ofAddress(b), plan.b,
                    beta, MemorySegment.ofAddress(d), plan.c, MemorySegment.ofAddress(d), plan.c, algo,
                    MemorySegment.ofAddress(workspace), WORKSPACE_BYTES, MemorySegment.ofAddress(stream));
            if (status != 0) check(status, "cublasLtMatmul " + describe(key)); // the message is formatted only on failure
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /**
     * Times the key's candidates on the real A and B and caches the fastest. With beta = 0 the runs write the real D,
     * which the real call then overwrites; with beta = 1 (dW += …) they accumulate into a zeroed scratch copy of D's
     * shape and type, so the real gradient is untouched. If that scratch does not fit, the heuristic's pick is used.
     */
    private GemmTuner.Choice tune(Key key, Plan plan, long a, long b, long d) {
        int n = plan.algos.size();
        if (!tuner.timing() || n == 1) {
            GemmTuner.Choice c = tuner.choose(key, n, null);
            if (tuner.mode() == GemmTuner.Mode.VERBOSE) System.err.println("gemm tune: " + describe(key) + ": " + c.summary());
            return c;
        }
        long scratch = 0;
        if (key.accumulate()) {
            try {
                scratch = memory.allocate(key.outputBytes());
            } catch (GpuOutOfMemoryException e) {
                if (tuner.mode() == GemmTuner.Mode.VERBOSE) System.err.println("gemm tune: " + describe(key) + ": no memory for a scratch output, untimed");
                return tuner.choose(key, n, null);
            }
            memory.zero(scratch, key.outputBytes());
        }
        long out = key.accumulate() ? scratch : d;
        try {
            GemmTuner.Choice c = tuner.choose(key, n, i -> {
                MemorySegment algo = plan.algos.get(i);
                run(key, plan, algo, a, b, out); // warm-up: first use of a kernel may load its module
                return timer.millis(() -> {
                    for (int r = 0; r < TIMED_RUNS; r++) run(key, plan, algo, a, b, out);
                }) / (double) TIMED_RUNS;
            });
            if (tuner.mode() == GemmTuner.Mode.VERBOSE) System.err.println("gemm tune: " + describe(key) + ": " + c.summary());
            return c;
        } finally {
            if (scratch != 0) {
                timer.millis(() -> {}); // waits for every earlier run on the stream (one may be left by a failed candidate)
                memory.release(scratch);
            }
        }
    }

    /** Largest power of two (at most 256) dividing the address: what the heuristic may assume. */
    static int alignment(long address) {
        if (address == 0) return 256;
        return (int) Math.min(256, Long.lowestOneBit(address));
    }

    private Plan plan(Key key) {
        GemmLayout l = key.layout();
        try {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) descCreate.invokeExact(p, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
            MemorySegment desc = p.get(ADDRESS, 0);
            setInt(descSetAttr, desc, CUBLASLT_MATMUL_DESC_TRANSA, l.transA() ? CUBLAS_OP_T : CUBLAS_OP_N);
            setInt(descSetAttr, desc, CUBLASLT_MATMUL_DESC_TRANSB, l.transB() ? CUBLAS_OP_T : CUBLAS_OP_N);
            MemorySegment a = layout(CUDA_R_16BF, l.aRows(), l.aCols(), l.lda());
            MemorySegment b = layout(CUDA_R_16BF, l.bRows(), l.bCols(), l.ldb());
            MemorySegment c = layout(key.outType(), l.m(), l.n(), l.ldc());
            check((int) prefCreate.invokeExact(p), "cublasLtMatmulPreferenceCreate");
            MemorySegment pref = p.get(ADDRESS, 0);
            try (Arena tmp = Arena.ofConfined()) {
                MemorySegment ws = tmp.allocate(JAVA_LONG);
                ws.set(JAVA_LONG, 0, WORKSPACE_BYTES);
                check((int) prefSetAttr.invokeExact(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws, 8L), "cublasLtMatmulPreferenceSetAttribute(workspace)");
                setInt(prefSetAttr, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.alignA());
                setInt(prefSetAttr, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.alignB());
                setInt(prefSetAttr, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.alignC());
                setInt(prefSetAttr, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.alignC());
                int requested = tuner.timing() ? TUNE_CANDIDATES : 1;
                MemorySegment results = tmp.allocate(HEURISTIC_RESULT_BYTES * requested, 8);
                MemorySegment count = tmp.allocate(JAVA_INT);
                check((int) heuristic.invokeExact(handle, desc, a, b, c, c, pref, requested, results, count), "cublasLtMatmulAlgoGetHeuristic " + describe(key));
                int returned = Math.min(requested, count.get(JAVA_INT, 0));
                List<MemorySegment> algos = usableAlgorithms(results, returned, WORKSPACE_BYTES, arena);
                int ignored = (int) prefDestroy.invokeExact(pref);
                if (algos.isEmpty()) {
                    int st = returned > 0 ? results.get(JAVA_INT, HEURISTIC_STATE_OFFSET) : 0;
                    throw new CudaException("cuBLASLt has no algorithm for " + describe(key) + " (" + returned + " returned, first state "
                            + statusName(st) + ")", st);
                }
                return new Plan(desc, a, b, c, algos);
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /**
     * The algorithms (copied into {@code into}) of the first {@code returned} heuristic results whose state is success
     * and whose workspace fits {@code maxWorkspace}, in the heuristic's order.
     */
    static List<MemorySegment> usableAlgorithms(MemorySegment results, int returned, long maxWorkspace, Arena into) {
        List<MemorySegment> algos = new ArrayList<>();
        for (int i = 0; i < returned; i++) {
            MemorySegment r = results.asSlice(i * HEURISTIC_RESULT_BYTES, HEURISTIC_RESULT_BYTES);
            if (r.get(JAVA_INT, HEURISTIC_STATE_OFFSET) != 0 || r.get(JAVA_LONG, HEURISTIC_WORKSPACE_OFFSET) > maxWorkspace) continue;
            MemorySegment algo = into.allocate(ALGO_BYTES, 8);
            algo.copyFrom(r.asSlice(0, ALGO_BYTES));
            algos.add(algo);
        }
        return algos;
    }

    private MemorySegment layout(int type, long rows, long cols, long ld) throws Throwable {
        MemorySegment p = arena.allocate(ADDRESS);
        check((int) layoutCreate.invokeExact(p, type, rows, cols, ld), "cublasLtMatrixLayoutCreate(" + rows + "x" + cols + ", ld " + ld + ")");
        return p.get(ADDRESS, 0);
    }

    private void setInt(MethodHandle setter, MemorySegment obj, int attr, int value) throws Throwable {
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment v = tmp.allocate(JAVA_INT);
            v.set(JAVA_INT, 0, value);
            check((int) setter.invokeExact(obj, attr, v, 4L), "cuBLASLt set attribute " + attr + " = " + value);
        }
    }

    private static String describe(Key k) {
        GemmLayout l = k.layout();
        return String.format("m=%d n=%d k=%d op(A)=%s op(B)=%s out=%s beta=%d", l.m(), l.n(), l.k(), l.transA() ? "T" : "N",
                l.transB() ? "T" : "N", k.outType() == CUDA_R_32F ? "f32" : "bf16", k.accumulate() ? 1 : 0);
    }

    private void check(int status, String call) {
        if (status != 0) throw new CudaException(call + " failed: " + statusName(status), status);
    }

    String statusName(int status) {
        if (statusName != null) {
            try {
                MemorySegment s = (MemorySegment) statusName.invokeExact(status);
                if (!s.equals(MemorySegment.NULL)) return s.reinterpret(256).getString(0) + " (" + status + ")";
            } catch (Throwable ignored) {
                // fall through to the number
            }
        }
        return "cublasStatus " + status;
    }

    @Override
    public void close() {
        try {
            for (Plan p : plans.values()) {
                int r1 = (int) descDestroy.invokeExact(p.desc);
                int r2 = (int) layoutDestroy.invokeExact(p.a);
                int r3 = (int) layoutDestroy.invokeExact(p.b);
                int r4 = (int) layoutDestroy.invokeExact(p.c);
            }
            plans.clear();
            int r = (int) destroy.invokeExact(handle);
        } catch (Throwable ignored) {
            // closing: nothing useful to do with a failure
        }
        memory.release(workspace);
        arena.close();
    }
}
