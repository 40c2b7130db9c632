package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.io.IOException;
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
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A {@link KernelContext} whose "device" is the CPU emulator of {@code src/test/cuda/emu}: the kernel files built with
 * g++ into {@code libpatchcore_emu.so} ({@code build-lib.sh}), launched through FFM, with host memory standing in for
 * device memory (a tensor's {@link CudaStorage} address is a host address). So the backend's own launcher classes run
 * their real kernels here, launch shapes, argument order and all. Four multiprocessors, compute capability 8.0 (no
 * sm_90 kernels), no tensor maps; scratch memory starts as NaN (0xff bytes), allocations as zeros.
 */
final class EmulatedKernelContext implements KernelContext, AutoCloseable {
    static final int MULTIPROCESSORS = 4;

    private final Arena arena = Arena.ofShared();
    private final SymbolLookup library;
    private final MethodHandle launch;
    private final MethodHandle configure;
    private final MethodHandle launchTma;

    private EmulatedKernelContext(Path library) {
        this.library = SymbolLookup.libraryLookup(library, arena);
        this.launch = Linker.nativeLinker().downcallHandle(this.library.find("emu_launch").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT,
                        ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        this.launchTma = Linker.nativeLinker().downcallHandle(this.library.find("emu_launch_tma").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        this.configure = Linker.nativeLinker().downcallHandle(this.library.find("emu_configure").orElseThrow(),
                FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    }

    /**
     * The schedule of later launches: {@code adversarial} = threads resumed last to first between barriers, and
     * asynchronous copies and wgmma completing only at the wait that covers them (a missing barrier or wait shows);
     * false: first to last with everything completing at issue; null: the environment's EMU_ORDER / EMU_ASYNC again.
     */
    void schedule(Boolean adversarial) {
        int v = adversarial == null ? -1 : adversarial ? 1 : 0;
        try {
            configure.invokeExact(v, v);
        } catch (Throwable e) {
            throw new IllegalStateException("emu_configure failed", e);
        }
    }

    /**
     * Builds the library under {@code buildDir} (incrementally) and opens it; null, with the reason in
     * {@code whyNot[0]}, where it cannot be built here (no g++, not x86-64).
     */
    static EmulatedKernelContext build(Path root, Path buildDir, String[] whyNot) throws IOException, InterruptedException {
        if (!"amd64".equals(System.getProperty("os.arch")) && !"x86_64".equals(System.getProperty("os.arch"))) {
            whyNot[0] = "the emulator's kernel calls need x86-64, this is " + System.getProperty("os.arch");
            return null;
        }
        if (!onPath("g++")) {
            whyNot[0] = "no g++ on PATH: the emulated CUDA kernels need a C++ compiler";
            return null;
        }
        Files.createDirectories(buildDir);
        Path log = buildDir.resolve("build-lib.log");
        Process p = new ProcessBuilder("bash", "src/test/cuda/emu/build-lib.sh", buildDir.toString()).directory(root.toFile())
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
            p.destroyForcibly();
            throw new IllegalStateException("building the emulator library failed:\n" + Files.readString(log));
        }
        List<String> lines = Files.readAllLines(log);
        return new EmulatedKernelContext(Path.of(lines.getLast().strip()));
    }

    @Override
    public void launch(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes,
                       Object... args) {
        run(name, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, false, args);
    }

    @Override
    public void launchCooperative(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                                  int sharedBytes, Object... args) {
        run(name, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, true, args);
    }

    /** The kernels launched since the last call (in order), so a test can tell which variant ran. */
    synchronized List<String> takeLaunched() {
        List<String> names = List.copyOf(launched);
        launched.clear();
        return names;
    }

    private final List<String> launched = new ArrayList<>();

    private void run(String name, int gx, int gy, int gz, int bx, int by, int bz, int shared, boolean cooperative, Object... args) {
        synchronized (this) {
            launched.add(name);
        }
        MemorySegment kernel = library.find(name)
                .orElseThrow(() -> new IllegalArgumentException("kernel " + name + " is not in the emulator library"));
        List<Long> words = new ArrayList<>();
        List<Float> floats = new ArrayList<>();
        List<TensorMaps.TensorMap> maps = new ArrayList<>();
        for (Object a : args) {
            switch (a) {
                case Tensor t -> words.add(CudaStorage.addressOf(t));
                case Integer i -> words.add((long) i);
                case Long l -> words.add(l);
                case Float f -> floats.add(f);
                case TensorMaps.TensorMap m -> maps.add(m);
                default -> throw new IllegalArgumentException(name + ": argument " + a + " is not a Tensor, Integer, Long, Float or TensorMap");
            }
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment w = call.allocate(ValueLayout.JAVA_LONG, Math.max(1, words.size()));
            for (int i = 0; i < words.size(); i++) w.setAtIndex(ValueLayout.JAVA_LONG, i, words.get(i));
            MemorySegment f = call.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, floats.size()));
            for (int i = 0; i < floats.size(); i++) f.setAtIndex(ValueLayout.JAVA_FLOAT, i, floats.get(i));
            MemorySegment error = call.allocate(256);
            int rc;
            if (maps.isEmpty()) {
                rc = (int) launch.invokeExact(kernel, gx, gy, gz, bx, by, bz, shared, cooperative ? 1 : 0, w, words.size(), f,
                        floats.size(), error, 256);
            } else {  // the TMA attention forwards: their own entry (maps by value)
                if (cooperative || !floats.isEmpty()) throw new IllegalArgumentException(name + ": tensor maps with floats or a cooperative launch");
                MemorySegment m = call.allocate((long) TensorMaps.BYTES * maps.size(), 64);
                for (int i = 0; i < maps.size(); i++)
                    MemorySegment.copy(maps.get(i).bytes(), 0, m, ValueLayout.JAVA_BYTE, (long) TensorMaps.BYTES * i, TensorMaps.BYTES);
                rc = (int) launchTma.invokeExact(kernel, gx, gy, gz, bx, by, bz, shared, w, words.size(), m, maps.size(), error, 256);
            }
            if (rc != 0) throw new IllegalStateException(name + ": " + error.getString(0));
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    @Override
    public Tensor scratch(DType dtype, int... shape) { return tensor(dtype, (byte) 0xff, shape); }

    @Override
    public Tensor allocate(DType dtype, int... shape) { return tensor(dtype, (byte) 0, shape); }

    private Tensor tensor(DType dtype, byte fill, int... shape) {
        long n = 1;
        for (int s : shape) n *= s;
        long bytes = Math.max(16, n * dtype.bytes());
        MemorySegment m = arena.allocate(bytes + 64, 256);  // a little past the end: a kernel's over-read stays in memory
        m.fill(fill);
        return new Tensor(new CudaStorage(m.address(), bytes), dtype, shape);
    }

    @Override
    public void free(Tensor t) {}  // the arena frees everything at close

    @Override
    public void copyInts(Tensor dst, int[] src) {
        MemorySegment.copy(src, 0, segment(dst), ValueLayout.JAVA_INT, 0, src.length);
    }

    @Override
    public int multiprocessorCount() { return MULTIPROCESSORS; }

    @Override
    public int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes) {
        int byThreads = 2048 / Math.max(1, blockThreads), byShared = sharedBytes > 0 ? (228 << 10) / sharedBytes : 32;
        return Math.max(1, Math.min(32, Math.min(byThreads, byShared)));  // an sm_80-like SM, registers not counted
    }

    /**
     * The emulator's own encoding of a tensor map (emu::TensorMap in src/test/cuda/emu/emu.h), not the driver's: a magic
     * word, the address, four sizes and three byte strides, the box, rank 4, 2-byte elements, the 128-byte swizzle.
     */
    @Override
    public TensorMaps.TensorMap tensorMap(TensorMaps.Bf16Tiled spec) {
        if (spec.dims().length != 4) throw new IllegalArgumentException("the emulator encodes rank-4 tensor maps only");
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(TensorMaps.BYTES).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(0x50414d54554d45L).putLong(spec.address());
        for (long d : spec.dims()) b.putLong(d);
        for (long s : spec.strideBytes()) b.putLong(s);
        for (int x : spec.box()) b.putInt(x);
        b.putInt(4).putInt(2).putInt(1);
        return new TensorMaps.TensorMap(b.array());
    }

    @Override
    public boolean tensorMapsAvailable() { return true; }

    /** 8 unless a test asks for 9 (the sm_90 kernels: the bulk RMSNorm backward, the Hopper attention kernels). */
    private volatile int computeCapabilityMajor = 8;

    @Override
    public int computeCapabilityMajor() { return computeCapabilityMajor; }

    /** The compute capability the launchers see from now on (8 or 9). */
    void reportComputeCapability(int major) {
        if (major != 8 && major != 9) throw new IllegalArgumentException("the emulated device is of compute capability 8 or 9, not " + major);
        computeCapabilityMajor = major;
    }

    // ---------------------------------------------------------------- host side of the tests

    /** The tensor's bytes (from its first element to the end of its storage's view). */
    MemorySegment segment(Tensor t) {
        return MemorySegment.ofAddress(CudaStorage.addressOf(t)).reinterpret(t.numel() * t.dtype().bytes());
    }

    /** A new tensor of {@code dtype} holding {@code values} (rounded to bf16 for BF16). */
    Tensor upload(DType dtype, float[] values, int... shape) {
        Tensor t = allocate(dtype, shape);
        write(t, values);
        return t;
    }

    void write(Tensor t, float[] values) {
        MemorySegment m = segment(t);
        if (values.length != t.numel()) throw new IllegalArgumentException(values.length + " values for " + t);
        switch (t.dtype()) {
            case BF16 -> {
                for (int i = 0; i < values.length; i++) m.setAtIndex(ValueLayout.JAVA_SHORT, i, Bf16.fromFloat(values[i]));
            }
            case F32 -> MemorySegment.copy(values, 0, m, ValueLayout.JAVA_FLOAT, 0, values.length);
            default -> throw new IllegalArgumentException("write: " + t);
        }
    }

    Tensor uploadInts(int[] values, int... shape) {
        Tensor t = allocate(DType.I32, shape);
        copyInts(t, values);
        return t;
    }

    float[] download(Tensor t) {
        MemorySegment m = segment(t);
        float[] out = new float[Math.toIntExact(t.numel())];
        switch (t.dtype()) {
            case BF16 -> {
                for (int i = 0; i < out.length; i++) out[i] = Bf16.toFloat(m.getAtIndex(ValueLayout.JAVA_SHORT, i));
            }
            case F32 -> MemorySegment.copy(m, ValueLayout.JAVA_FLOAT, 0, out, 0, out.length);
            default -> throw new IllegalArgumentException("download: " + t);
        }
        return out;
    }

    @Override
    public void close() { arena.close(); }

    /** Where the emulator builds: {@code cuda-emu} in the Maven build directory ({@code -Dbuild.dir}, default target/). */
    static Path buildDirectory(Path root) {
        return root.resolve(System.getProperty("build.dir", "target")).resolve("cuda-emu");
    }

    static boolean onPath(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(java.io.File.pathSeparator))
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool))) return true;
        return false;
    }
}
