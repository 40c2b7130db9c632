package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

/**
 * What an op family's launcher class ({@code CudaRmsNorm}, {@code CudaAttention}, …) needs from the runtime:
 * kernel launch on the backend's stream and step-scoped device memory.
 */
public interface KernelContext {
    /**
     * Launches {@code extern "C"} kernel {@code name} from the packaged fatbin on the backend's stream and checks
     * the launch. Arguments: {@link Tensor} (passed as the device address of its first element), Integer, Long,
     * Float; nothing else.
     */
    void launch(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes, Object... args);

    /**
     * {@link #launch} for a kernel whose blocks wait for one another (a device-wide arrival counter): the launch fails
     * with a named error, instead of hanging, when the whole grid cannot be resident at once.
     */
    void launchCooperative(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes, Object... args);

    /** Same as {@link dev.patchcore.backend.Backend#scratch}. */
    Tensor scratch(DType dtype, int... shape);

    /** Number of streaming multiprocessors (for grid sizing). */
    int multiprocessorCount();

    /**
     * How many blocks of kernel {@code name} one SM holds at once with this block size and dynamic shared memory (the
     * driver's occupancy calculator: the kernel's registers, shared memory and launch bounds), for persistent grids
     * whose size should follow what ptxas made of the kernel rather than a constant kept beside it.
     */
    int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes);

    /** Same as {@link dev.patchcore.backend.Backend#allocate} (persistent, zero-filled). */
    Tensor allocate(DType dtype, int... shape);

    /** Same as {@link dev.patchcore.backend.Backend#free}. */
    void free(Tensor t);

    /** Copies host ints into {@code dst} in stream order (the backend's upload path for token ids). */
    void copyInts(Tensor dst, int[] src);

    /**
     * A TMA tensor map ({@link TensorMaps}) for a kernel argument; throws CudaUnavailableException where the driver
     * cannot make one (see {@link #tensorMapsAvailable}).
     */
    TensorMaps.TensorMap tensorMap(TensorMaps.Bf16Tiled spec);

    /** Whether {@link #tensorMap} works here (the driver exports cuTensorMapEncodeTiled). */
    boolean tensorMapsAvailable();

    /** The device's compute capability major version (9 for Hopper), for kernels that exist only there; 0 if unknown. */
    default int computeCapabilityMajor() { return 0; }

    /**
     * The registers per thread ptxas gave kernel {@code name} (the driver's {@code CU_FUNC_ATTRIBUTE_NUM_REGS}); 0 where
     * unknown (an emulated or recording context). A kernel that moves registers between warpgroups with setmaxnreg
     * needs the whole pool its split assumes.
     */
    default int registersPerThread(String name) { return 0; }
}
