package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.Tensor;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUmodule;
import jcuda.driver.JCudaDriver;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static dev.patchcore.backend.cuda.DriverCalls.check;

/**
 * Device, primary context, one stream, the kernel modules and raw memory, through the JCuda driver API.
 * The device's primary context is made current on the calling thread before each call when another context (another
 * device's runtime: data-parallel replicas) was current there last (cheap: one thread-local lookup otherwise).
 */
final class CudaRuntime implements DeviceMemory, AutoCloseable {
    private final CUdevice device = new CUdevice();
    private final CUcontext context = new CUcontext();
    private final DevicePointers.Stream stream = new DevicePointers.Stream();
    private final List<CUmodule> modules = new ArrayList<>();
    private final Map<String, CUfunction> functions = new HashMap<>();
    private final Map<String, Integer> sharedLimitSet = new HashMap<>();
    private final Map<Occupancy, Integer> occupancy = new HashMap<>();

    /** A kernel at one launch configuration, for the occupancy cache. */
    private record Occupancy(String name, int blockThreads, int sharedBytes) {}
    /** The context this runtime's calls last made current on each thread, across all runtimes of the process. */
    private static final ThreadLocal<CUcontext> CURRENT = new ThreadLocal<>();
    private final String deviceName;
    private final int smCount, ccMajor, ccMinor, maxSharedOptin;
    private final long totalMemory;
    private final boolean syncAfterLaunch;
    private final int ordinal;
    private boolean closed;
    /** Launch argument marshalling: true (default) = {@link ArgSlots}, false = one Java array per argument (JCuda copies each). */
    private volatile boolean packedArgs = true;
    private final ThreadLocal<ArgSlots> argSlots = ThreadLocal.withInitial(ArgSlots::new);

    /**
     * Kernel arguments written into one block of native memory, 8 bytes per argument, with JCuda pointer arrays built
     * once that point at the slots (one array per argument count: JCuda's JNI code walks every element of the array it
     * is given, so a kernel with 7 arguments must get a 7-element array). Per launch the host writes the values, and
     * JCuda handles each element with a few JNI field reads (a pointer without buffer or array is passed as its native
     * value plus offset). The default path allocates a Java array and a Pointer per argument, and JCuda handles each
     * through Java up-calls (Buffer.isDirect, hasArray, array) and pins or copies the array. cuLaunchKernel copies the
     * values when it is called, so the slots are free again when it returns. One per thread.
     */
    static final class ArgSlots {
        static final int MAX_ARGS = 32;
        final MemorySegment values = Arena.ofAuto().allocate(8L * MAX_ARGS, 16);
        final Pointer[] slots = new Pointer[MAX_ARGS];
        /** byArity[n]: a pointer to the first n slot pointers. */
        final Pointer[] byArity = new Pointer[MAX_ARGS + 1];

        ArgSlots() {
            // A pointer with neither buffer nor array reaches the driver as its native value (0) + byteOffset.
            for (int i = 0; i < MAX_ARGS; i++) slots[i] = DevicePointers.at(values.address() + 8L * i);
            for (int n = 0; n <= MAX_ARGS; n++) byArity[n] = Pointer.to(Arrays.copyOf(slots, n));
        }

        /** Tensor maps (128-byte CUtensorMap values) a launch may pass, each in its own 64-byte-aligned native slot. */
        static final int MAX_MAPS = 4;
        final MemorySegment maps = Arena.ofAuto().allocate((long) TensorMaps.BYTES * MAX_MAPS, 64);
        final Pointer[] mapSlots = new Pointer[MAX_MAPS];

        {
            for (int j = 0; j < MAX_MAPS; j++) mapSlots[j] = DevicePointers.at(maps.address() + (long) TensorMaps.BYTES * j);
        }

        Pointer fill(String kernel, Object[] args) {
            if (args.length > MAX_ARGS) throw new IllegalArgumentException("kernel " + kernel + ": " + args.length + " arguments, at most " + MAX_ARGS);
            Pointer[] withMaps = null;  // the launch's own pointer array when it passes tensor maps
            int nMaps = 0;
            for (int i = 0; i < args.length; i++) {
                long at = 8L * i;
                switch (args[i]) {
                    case Tensor t -> values.set(ValueLayout.JAVA_LONG, at, CudaStorage.addressOf(t));
                    case Integer v -> values.set(ValueLayout.JAVA_INT, at, v);
                    case Long v -> values.set(ValueLayout.JAVA_LONG, at, v);
                    case Float v -> values.set(ValueLayout.JAVA_FLOAT, at, v);
                    case TensorMaps.TensorMap m -> {
                        if (nMaps == MAX_MAPS) throw new IllegalArgumentException("kernel " + kernel + ": more than " + MAX_MAPS + " tensor maps");
                        MemorySegment.copy(m.bytes(), 0, maps, ValueLayout.JAVA_BYTE, (long) TensorMaps.BYTES * nMaps, TensorMaps.BYTES);
                        if (withMaps == null) withMaps = Arrays.copyOf(slots, args.length);
                        withMaps[i] = mapSlots[nMaps++];
                    }
                    case null, default -> throw KernelArgs.unsupported(args[i], kernel, i);
                }
            }
            return withMaps == null ? byArity[args.length] : Pointer.to(withMaps);
        }
    }

    /** Packed launch arguments ({@link ArgSlots}) on or off (the default: one Java array per argument). */
    void setPackedArgs(boolean packed) { this.packedArgs = packed; }

    boolean packedArgs() { return packedArgs; }

    /** Opens device {@code ordinal}; throws CudaUnavailableException with a one-line reason. */
    CudaRuntime(int ordinal, Map<String, byte[]> images, boolean syncAfterLaunch) {
        this.ordinal = ordinal;
        this.syncAfterLaunch = syncAfterLaunch;
        try {
            JCudaDriver.setExceptionsEnabled(false);
        } catch (Throwable e) { // UnsatisfiedLinkError: libcuda.so.1 or the JCuda native library is missing
            String first = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().orElse("");
            throw new CudaUnavailableException("cannot load the CUDA driver (no libcuda.so.1, or JCuda natives missing): " + first, e);
        }
        int r = JCudaDriver.cuInit(0);
        if (r != DriverCalls.CUDA_SUCCESS) throw new CudaUnavailableException("cuInit failed: " + DriverCalls.errorName(r) + " (no usable NVIDIA driver or GPU)");
        int[] count = new int[1];
        check(JCudaDriver.cuDeviceGetCount(count), "cuDeviceGetCount");
        if (count[0] == 0) throw new CudaUnavailableException("no CUDA device found");
        if (ordinal >= count[0]) throw new CudaUnavailableException("CUDA device " + ordinal + " requested but only " + count[0] + " present");
        if (images.isEmpty()) throw new CudaUnavailableException("no kernels in this build (nvcc was not found when the jar was built)");
        check(JCudaDriver.cuDeviceGet(device, ordinal), "cuDeviceGet");
        check(JCudaDriver.cuDevicePrimaryCtxRetain(context, device), "cuDevicePrimaryCtxRetain");
        makeCurrent();
        byte[] name = new byte[256];
        check(JCudaDriver.cuDeviceGetName(name, name.length, device), "cuDeviceGetName");
        int len = 0;
        while (len < name.length && name[len] != 0) len++;
        deviceName = new String(name, 0, len);
        smCount = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        ccMajor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        maxSharedOptin = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        long[] mem = new long[1];
        check(JCudaDriver.cuDeviceTotalMem(mem, device), "cuDeviceTotalMem");
        totalMemory = mem[0];
        if (ccMajor < 8) throw new CudaUnavailableException(deviceName + " has compute capability " + ccMajor + "." + ccMinor + "; bf16 kernels need 8.0 or newer");
        check(JCudaDriver.cuStreamCreate(stream, 0), "cuStreamCreate");
        for (var e : images.entrySet()) {
            CUmodule m = new CUmodule();
            check(JCudaDriver.cuModuleLoadData(m, e.getValue()), "cuModuleLoadData(" + e.getKey() + ")");
            modules.add(m);
        }
    }

    private int attribute(int attr) {
        int[] v = new int[1];
        check(JCudaDriver.cuDeviceGetAttribute(v, attr, device), "cuDeviceGetAttribute(" + attr + ")");
        return v[0];
    }

    void makeCurrent() {
        if (CURRENT.get() == context) return;
        check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
        CURRENT.set(context);
    }

    String deviceName() { return deviceName; }
    int multiprocessorCount() { return smCount; }
    String computeCapability() { return ccMajor + "." + ccMinor; }
    int computeCapabilityMajor() { return ccMajor; }
    long totalMemory() { return totalMemory; }
    long streamHandle() { return stream.handle(); }
    DevicePointers.Stream stream() { return stream; }

    long freeMemory() {
        makeCurrent();
        long[] free = new long[1], total = new long[1];
        check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
        return free[0];
    }

    CUfunction function(String name) {
        CUfunction f = functions.get(name);
        if (f != null) return f;
        for (CUmodule m : modules) {
            CUfunction candidate = new CUfunction();
            if (JCudaDriver.cuModuleGetFunction(candidate, m, name) == DriverCalls.CUDA_SUCCESS) {
                functions.put(name, candidate);
                return candidate;
            }
        }
        throw new IllegalStateException("kernel '" + name + "' is not in this build's kernel images");
    }

    /** Blocks of kernel {@code name} resident per SM at this block size and dynamic shared memory (cached; at least 1). */
    int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes) {
        Occupancy key = new Occupancy(name, blockThreads, sharedBytes);
        Integer known = occupancy.get(key);
        if (known != null) return known;
        makeCurrent();
        CUfunction f = function(name);
        allowSharedBytes(name, f, sharedBytes);  // else the calculator counts no block above the default 48 KB
        int[] blocks = new int[1];
        check(JCudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(blocks, f, blockThreads, sharedBytes),
                "cuOccupancyMaxActiveBlocksPerMultiprocessor(" + name + ", " + blockThreads + " threads, " + sharedBytes + " B shared)");
        int resident = Math.max(1, blocks[0]);
        occupancy.put(key, resident);
        return resident;
    }

    /** Registers per thread of kernel {@code name}, as ptxas compiled it for this device. */
    int registersPerThread(String name) {
        makeCurrent();
        int[] regs = new int[1];
        check(JCudaDriver.cuFuncGetAttribute(regs, CUfunction_attribute.CU_FUNC_ATTRIBUTE_NUM_REGS, function(name)),
                "cuFuncGetAttribute(" + name + ", registers)");
        return regs[0];
    }

    /** Launches a kernel on the stream. Args: Tensor (device address), Integer, Long, Float. */
    void launch(String name, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes, Object... args) {
        launch(name, false, gx, gy, gz, bx, by, bz, sharedBytes, args);
    }

    /**
     * Launches a kernel whose blocks wait for each other: cuLaunchCooperativeKernel guarantees that the whole grid is
     * resident at once, and fails (CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE) instead of hanging when this context
     * cannot hold it (a smaller grid than planned, MPS limits, another kernel's resources).
     */
    void launchCooperative(String name, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes, Object... args) {
        launch(name, true, gx, gy, gz, bx, by, bz, sharedBytes, args);
    }

    private void launch(String name, boolean cooperative, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes, Object... args) {
        makeCurrent();
        CUfunction f = function(name);
        allowSharedBytes(name, f, sharedBytes);
        Pointer kernelParams;
        if (packedArgs) {
            kernelParams = argSlots.get().fill(name, args);
        } else {
            Pointer[] params = new Pointer[args.length];
            for (int i = 0; i < args.length; i++) params[i] = KernelArgs.pointerTo(args[i], name, i);
            kernelParams = Pointer.to(params);
        }
        int r = cooperative ? JCudaDriver.cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, sharedBytes, stream, kernelParams)
                : JCudaDriver.cuLaunchKernel(f, gx, gy, gz, bx, by, bz, sharedBytes, stream, kernelParams, null);
        if (r != DriverCalls.CUDA_SUCCESS)  // the message is built only for a failure: a launch is on the hot path
            check(r, (cooperative ? "cuLaunchCooperativeKernel(" : "cuLaunchKernel(") + name + ", grid " + gx + "x" + gy + "x" + gz
                    + ", block " + bx + "x" + by + "x" + bz + ")");
        if (syncAfterLaunch) check(JCudaDriver.cuStreamSynchronize(stream), "kernel " + name + " (synchronous check)");
    }

    /** Opts kernel {@code name} in to {@code sharedBytes} of dynamic shared memory where that exceeds the default 48 KB. */
    private void allowSharedBytes(String name, CUfunction f, int sharedBytes) {
        if (sharedBytes <= 48 * 1024 || sharedLimitSet.getOrDefault(name, 0) >= sharedBytes) return;
        if (sharedBytes > maxSharedOptin)
            throw new IllegalArgumentException("kernel " + name + " needs " + sharedBytes + " bytes of shared memory; the device allows " + maxSharedOptin);
        check(JCudaDriver.cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
                "cuFuncSetAttribute(" + name + ", max dynamic shared " + sharedBytes + ")");
        sharedLimitSet.put(name, sharedBytes);
    }

    void synchronize() {
        makeCurrent();
        check(JCudaDriver.cuStreamSynchronize(stream), "cuStreamSynchronize");
    }

    // ---------------------------------------------------------------- memory

    @Override
    public long allocate(long bytes) {
        makeCurrent();
        DevicePointers.Allocated p = new DevicePointers.Allocated();
        int r = JCudaDriver.cuMemAlloc(p, bytes);
        if (r == DriverCalls.CUDA_ERROR_OUT_OF_MEMORY)
            throw new GpuOutOfMemoryException(String.format("out of GPU memory: cannot allocate %.1f MiB on %s (%.1f of %.1f GiB free)",
                    bytes / 1048576.0, deviceName, freeMemory() / 1073741824.0, totalMemory / 1073741824.0));
        check(r, "cuMemAlloc(" + bytes + ")");
        return p.address();
    }

    @Override
    public void release(long address) {
        makeCurrent();
        check(JCudaDriver.cuMemFree(DevicePointers.at(address)), "cuMemFree");
    }

    @Override
    public void fill32(long address, int pattern, long count) {
        makeCurrent();
        check(JCudaDriver.cuMemsetD32Async(DevicePointers.at(address), pattern, count, stream), "cuMemsetD32Async");
    }

    @Override
    public void zero(long address, long bytes) {
        makeCurrent();
        check(JCudaDriver.cuMemsetD8Async(DevicePointers.at(address), (byte) 0, bytes, stream), "cuMemsetD8Async");
    }

    void copyDeviceToDevice(long dst, long src, long bytes) {
        makeCurrent();
        check(JCudaDriver.cuMemcpyDtoDAsync(DevicePointers.at(dst), DevicePointers.at(src), bytes, stream), "cuMemcpyDtoDAsync");
    }

    /**
     * Device → device from another runtime's memory (another GPU's context, or another runtime's on this GPU), on this
     * runtime's stream after its queued work. The source must be complete: its runtime has been synchronized.
     */
    void copyFromPeer(long dst, CudaRuntime source, long src, long bytes) {
        makeCurrent();
        check(JCudaDriver.cuMemcpyPeerAsync(DevicePointers.at(dst), context, DevicePointers.at(src), source.context, bytes, stream),
                "cuMemcpyPeerAsync");
    }

    /**
     * Lets this context reach {@code peer}'s memory directly (P2P over NVLink or PCIe) where the two GPUs allow it;
     * otherwise the driver stages peer copies through the host. Nothing to do for another runtime on this GPU.
     * Repeating it is harmless.
     */
    void enablePeerAccess(CudaRuntime peer) {
        if (peer.ordinal == ordinal) return;
        int[] can = new int[1];
        check(JCudaDriver.cuDeviceCanAccessPeer(can, device, peer.device), "cuDeviceCanAccessPeer");
        if (can[0] == 0) return;
        makeCurrent();
        int r = JCudaDriver.cuCtxEnablePeerAccess(peer.context, 0);
        if (r != DriverCalls.CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED) check(r, "cuCtxEnablePeerAccess");
    }

    /** Host → device; waits for the stream first because the host array is pageable Java memory. */
    void copyToDevice(long dst, Pointer host, long bytes) {
        synchronize();
        check(JCudaDriver.cuMemcpyHtoD(DevicePointers.at(dst), host, bytes), "cuMemcpyHtoD");
    }

    /**
     * Host → device for int arrays (token ids) without waiting for the stream (upload variant 2): the values go
     * into one of two page-locked staging buffers and a cuMemcpyHtoDAsync on the stream copies them, ordered after
     * every kernel already queued (which may still be reading the destination) and before every kernel queued later.
     * Before a buffer is refilled the host waits for the event recorded after its previous copy — normally long
     * done, since the next micro-batch's upload comes a whole forward and backward later.
     */
    void copyIntsToDeviceAsync(long dst, int[] src) {
        makeCurrent();
        long bytes = 4L * src.length;
        if (bytes == 0) return;
        if (staging == null) staging = new PinnedStaging();
        staging.upload(dst, src, bytes);
    }

    private PinnedStaging staging;

    /** Two page-locked host buffers used in turn, each with the event of its last copy. */
    private final class PinnedStaging {
        private final Pointer[] host = {new Pointer(), new Pointer()};
        private final IntBuffer[] view = new IntBuffer[2];  // the pinned memory as ints, made once per allocation
        private final long[] capacity = new long[2];
        private final CUevent[] copied = {new CUevent(), new CUevent()};
        private int next;

        PinnedStaging() {
            for (CUevent e : copied) check(JCudaDriver.cuEventCreate(e, CUevent_flags.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        }

        void upload(long dst, int[] src, long bytes) {
            int i = next;
            next ^= 1;
            check(JCudaDriver.cuEventSynchronize(copied[i]), "cuEventSynchronize(staging)");  // its last copy is done
            if (capacity[i] < bytes) {
                if (capacity[i] > 0) check(JCudaDriver.cuMemFreeHost(host[i]), "cuMemFreeHost");
                host[i] = new Pointer();
                check(JCudaDriver.cuMemAllocHost(host[i], bytes), "cuMemAllocHost(" + bytes + ")");
                capacity[i] = bytes;
                view[i] = host[i].getByteBuffer(0, bytes).order(ByteOrder.nativeOrder()).asIntBuffer();
            }
            view[i].put(0, src);
            check(JCudaDriver.cuMemcpyHtoDAsync(DevicePointers.at(dst), host[i], bytes, stream), "cuMemcpyHtoDAsync");
            check(JCudaDriver.cuEventRecord(copied[i], stream), "cuEventRecord(staging)");
        }

        void close() {
            for (int i = 0; i < 2; i++) {
                if (capacity[i] > 0) JCudaDriver.cuMemFreeHost(host[i]);
                JCudaDriver.cuEventDestroy(copied[i]);
            }
        }
    }

    void copyToHost(Pointer host, long src, long bytes) {
        synchronize();
        check(JCudaDriver.cuMemcpyDtoH(host, DevicePointers.at(src), bytes), "cuMemcpyDtoH");
    }

    static long address(Tensor t) { return CudaStorage.addressOf(t); }

    // ---------------------------------------------------------------- timing

    /** A pair of CUDA events around work on the stream; {@link #elapsedMillis()} waits for the end event. */
    final class Timer implements AutoCloseable {
        private final CUevent start = new CUevent(), end = new CUevent();

        Timer() {
            makeCurrent();
            check(JCudaDriver.cuEventCreate(start, 0), "cuEventCreate");
            check(JCudaDriver.cuEventCreate(end, 0), "cuEventCreate");
        }

        void start() { check(JCudaDriver.cuEventRecord(start, stream), "cuEventRecord"); }

        void stop() { check(JCudaDriver.cuEventRecord(end, stream), "cuEventRecord"); }

        float elapsedMillis() {
            check(JCudaDriver.cuEventSynchronize(end), "cuEventSynchronize");
            float[] ms = new float[1];
            check(JCudaDriver.cuEventElapsedTime(ms, start, end), "cuEventElapsedTime");
            return ms[0];
        }

        @Override
        public void close() {
            JCudaDriver.cuEventDestroy(start);
            JCudaDriver.cuEventDestroy(end);
        }
    }

    /** A CUDA event recorded on the stream when made: a point in the stream's work, for timing spans without waiting. */
    final class Mark implements AutoCloseable {
        private final CUevent event = new CUevent();

        Mark() {
            makeCurrent();
            check(JCudaDriver.cuEventCreate(event, 0), "cuEventCreate");
            try {
                check(JCudaDriver.cuEventRecord(event, stream), "cuEventRecord");
            } catch (RuntimeException e) {
                JCudaDriver.cuEventDestroy(event);
                throw e;
            }
        }

        /** Stream milliseconds from {@code from} to this mark; waits until the stream has passed this mark. */
        float millisSince(Mark from) {
            check(JCudaDriver.cuEventSynchronize(event), "cuEventSynchronize");
            float[] ms = new float[1];
            check(JCudaDriver.cuEventElapsedTime(ms, from.event, event), "cuEventElapsedTime");
            return ms[0];
        }

        @Override
        public void close() { JCudaDriver.cuEventDestroy(event); }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        makeCurrent();
        JCudaDriver.cuStreamSynchronize(stream);
        if (staging != null) staging.close();
        for (CUmodule m : modules) JCudaDriver.cuModuleUnload(m);
        modules.clear();
        functions.clear();
        JCudaDriver.cuStreamDestroy(stream);
        JCudaDriver.cuDevicePrimaryCtxRelease(device);
    }
}
