package dev.patchcore.backend.cuda;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;
import jcuda.Pointer;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The GPU backend: bf16 activations and compute weights, fp32 statistics, gradients, master weights and moments.
 * Matmuls go to cuBLASLt (FFM); every other op family is a launcher class over a {@code src/main/cuda/*.cu} file.
 * All work runs in order on one stream; host transfers synchronize it.
 *
 * <p>Environment: {@code PATCHCORE_CUBLASLT} (library path), {@code PATCHCORE_CUDA_CHECKED=1} (poison scratch with
 * NaN and synchronize after every launch so a failing kernel is named), {@code PATCHCORE_ATTENTION=simple} (never
 * use the flash kernel), {@code PATCHCORE_GEMM_TUNE=0|1|verbose} (GEMM algorithm tuning; see {@link CublasLt}).
 */
public final class CudaBackend implements DecodingBackend, KernelContext {
    /** Fixed grid of the deterministic sum (independent of the device, so results match across GPUs). */
    private static final int SUM_BLOCKS = 512;

    private final CudaRuntime runtime;
    private final DeviceAllocator allocator;
    private final CublasLt blas;
    private TensorMaps tensorMaps;
    private final CudaElementwise elementwise;
    private final CudaPatchEmbed patchEmbed;
    private final CudaSimpleAttention simpleAttention;
    private final CudaFlashAttention flashAttention;
    private final CudaDecodeAttention decodeAttention;
    private final CudaRepeatHeads repeatHeads;
    private final CudaRmsNorm rmsNorm;
    private final CudaRope rope;
    private final CudaSwiGlu swiGlu;
    private final CudaCrossEntropy crossEntropy;
    private final CudaAdamW adamW;
    private final Tensor sumPartials; // SUM_BLOCKS + 1 doubles, as F32 storage
    /** countAbsAbove's u64 counter (I32 [2]), allocated at its first use. */
    private Tensor counter;
    private final boolean flashEnabled;
    private boolean closed;

    /**
     * Opens device 0. {@code cublasLtLibraryOverride} (may be null) names the cuBLASLt library file; else
     * $PATCHCORE_CUBLASLT, else the usual places. Throws {@link CudaUnavailableException} with a one-line reason.
     */
    public static CudaBackend open(String cublasLtLibraryOverride) {
        return open(0, cublasLtLibraryOverride);
    }

    /** {@code checked}: poison scratch with NaN and synchronize after every launch (selftest, debugging). */
    public static CudaBackend open(String cublasLtLibraryOverride, boolean checked) {
        return open(0, cublasLtLibraryOverride, checked);
    }

    /** The backend of GPU {@code ordinal} (data-parallel replicas open one per GPU). */
    public static CudaBackend open(int ordinal, String cublasLtLibraryOverride) {
        return open(ordinal, cublasLtLibraryOverride, "1".equals(System.getenv("PATCHCORE_CUDA_CHECKED")));
    }

    private static CudaBackend open(int ordinal, String cublasLtLibraryOverride, boolean checked) {
        Map<String, byte[]> images = KernelImages.load();
        CudaRuntime runtime;
        try {
            runtime = new CudaRuntime(ordinal, images, checked);
        } catch (CudaException e) {
            throw new CudaUnavailableException("CUDA start-up failed: " + e.getMessage(), e);
        } catch (LinkageError e) {
            throw new CudaUnavailableException("cannot load the JCuda driver library: " + e.getMessage(), e);
        }
        try {
            return new CudaBackend(runtime, cublasLtLibraryOverride, checked);
        } catch (RuntimeException | Error e) {
            runtime.close();
            if (e instanceof CudaException ce) throw new CudaUnavailableException("CUDA start-up failed: " + ce.getMessage(), ce);
            throw e;
        }
    }

    private CudaBackend(CudaRuntime runtime, String cublasLt, boolean checked) {
        this.runtime = runtime;
        this.allocator = new DeviceAllocator(runtime, checked);
        this.blas = new CublasLt(cublasLt, runtime, runtime.streamHandle(), this::time); // times GEMM candidates on the stream
        this.elementwise = new CudaElementwise(this);
        this.patchEmbed = new CudaPatchEmbed(this);
        this.simpleAttention = new CudaSimpleAttention(this);
        this.flashAttention = new CudaFlashAttention(this);
        this.decodeAttention = new CudaDecodeAttention(this);
        this.repeatHeads = new CudaRepeatHeads(this);
        this.rmsNorm = new CudaRmsNorm(this);
        this.rope = new CudaRope(this);
        this.swiGlu = new CudaSwiGlu(this);
        this.crossEntropy = new CudaCrossEntropy(this);
        this.adamW = new CudaAdamW(this);
        this.sumPartials = allocator.allocatePersistent(DType.F32, 2 * (SUM_BLOCKS + 1));
        this.flashEnabled = !"simple".equalsIgnoreCase(System.getenv("PATCHCORE_ATTENTION"));
        for (String family : KERNEL_VARIANTS.keySet()) {
            String v = System.getProperty("patchcore." + family + ".variant");
            if (v == null) continue;
            try {
                setKernelVariant(family, Integer.parseInt(v.trim()));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("-Dpatchcore." + family + ".variant must be one of " + KERNEL_VARIANTS.get(family) + ", got '" + v + "'");
            }
        }
    }

    /**
     * Kernel arguments written into reused native slots (CudaRuntime.ArgSlots), the default: less host work per
     * launch (H100 run 6: 7.3 µs instead of 9.0 µs per small op call).
     */
    public static final int LAUNCH_PACKED = 1;
    /** Kernel arguments marshalled as one Java array each (JCuda's usual way; the default until H100 run 6). */
    public static final int LAUNCH_JAVA_ARRAYS = 2;
    /** Token ids through page-locked staging buffers and asynchronous copies (CudaRuntime.PinnedStaging), the default. */
    public static final int UPLOAD_PINNED = 1;
    /** Token ids copied from the Java heap after waiting for the stream (the default until H100 run 6). */
    public static final int UPLOAD_SYNCHRONOUS = 2;

    /**
     * Kernel families with an alternative implementation under evaluation: family → its variants, the first being
     * the default (measured the fastest on a GPU). {@code selftest} checks every variant against the CPU reference and {@code bench kernels} times them side by
     * side; {@code -Dpatchcore.<family>.variant=N} selects one for a run. (Map.of takes at most 10 pairs.)
     */
    public static final SortedMap<String, List<Integer>> KERNEL_VARIANTS = Collections.unmodifiableSortedMap(new TreeMap<>(Map.of(
            "crossentropy", List.of(CudaCrossEntropy.VARIANT_SMEM, CudaCrossEntropy.VARIANT_L2),
            "decode", List.of(CudaDecodeAttention.VARIANT_PER_HEAD, CudaDecodeAttention.VARIANT_GROUPED),
            "flashbwd", List.of(CudaFlashAttention.BACKWARD_WGMMA, CudaFlashAttention.BACKWARD_MMA_SYNC),
            "flashfwd", List.of(CudaFlashAttention.FORWARD_FASTEST, CudaFlashAttention.FORWARD_MMA_SYNC,
                    CudaFlashAttention.FORWARD_WGMMA, CudaFlashAttention.FORWARD_WGMMA_PINGPONG,
                    CudaFlashAttention.FORWARD_WGMMA_PERSISTENT, CudaFlashAttention.FORWARD_WGMMA_PERSISTENT_TMA,
                    CudaFlashAttention.FORWARD_WGMMA_NO_PRODUCER),
            "launch", List.of(LAUNCH_PACKED, LAUNCH_JAVA_ARRAYS),
            "patchembed", List.of(CudaPatchEmbed.VARIANT_HOST_SORTED, CudaPatchEmbed.VARIANT_DEVICE_SORT),
            "rmsnorm", List.of(CudaRmsNorm.VARIANT_PIPELINED, CudaRmsNorm.VARIANT_CACHED),
            "rmsnormbwd", List.of(CudaRmsNorm.BACKWARD_TWO_KERNELS, CudaRmsNorm.BACKWARD_FUSED_REDUCE,
                    CudaRmsNorm.BACKWARD_TEAMS_R2, CudaRmsNorm.BACKWARD_TEAMS_R4, CudaRmsNorm.BACKWARD_BULK,
                    CudaRmsNorm.BACKWARD_TEAMS_FUSED, CudaRmsNorm.BACKWARD_TEAMS_PREFETCH,
                    CudaRmsNorm.BACKWARD_TEAMS_PREFETCH_FUSED),
            "upload", List.of(UPLOAD_PINNED, UPLOAD_SYNCHRONOUS))));

    /**
     * Whether {@code selftest} and {@code bench kernels} leave variant {@code variant} of {@code family} out:
     * {@code -Dpatchcore.variants.skip=family:N,...} names them (a lever for a GPU run in which one variant hangs or
     * fails, so that the others still get checked and timed).
     */
    public static boolean variantSkipped(String family, int variant) {
        for (String item : System.getProperty("patchcore.variants.skip", "").split(","))
            if (item.trim().equals(family + ":" + variant)) return true;
        return false;
    }

    /** Runs {@code body} with {@code family} set to {@code variant}, restoring the family's previous variant afterwards. */
    public void withKernelVariant(String family, int variant, Runnable body) {
        int before = kernelVariant(family);
        setKernelVariant(family, variant);
        try {
            body.run();
        } finally {
            setKernelVariant(family, before);
        }
    }

    public int kernelVariant(String family) {
        return switch (family) {
            case "crossentropy" -> crossEntropy.variant();
            case "decode" -> decodeAttention.variant();
            case "flashbwd" -> flashAttention.backwardVariant();
            case "flashfwd" -> flashAttention.forwardVariant();
            case "launch" -> runtime.packedArgs() ? LAUNCH_PACKED : LAUNCH_JAVA_ARRAYS;
            case "patchembed" -> patchEmbed.variant();
            case "rmsnorm" -> rmsNorm.variant();
            case "rmsnormbwd" -> rmsNorm.backwardVariant();
            case "upload" -> pinnedUploads ? UPLOAD_PINNED : UPLOAD_SYNCHRONOUS;
            default -> throw new IllegalArgumentException("no kernel variants for '" + family + "' (families: " + KERNEL_VARIANTS.keySet() + ")");
        };
    }

    public void setKernelVariant(String family, int variant) {
        switch (family) {
            case "crossentropy" -> crossEntropy.setVariant(variant);
            case "decode" -> decodeAttention.setVariant(variant);
            case "flashbwd" -> flashAttention.setBackwardVariant(variant);
            case "flashfwd" -> flashAttention.setForwardVariant(variant);
            case "launch" -> {
                if (variant != LAUNCH_JAVA_ARRAYS && variant != LAUNCH_PACKED)
                    throw new IllegalArgumentException("launch variant must be 1 (packed native slots) or 2 (Java arrays), got " + variant);
                runtime.setPackedArgs(variant == LAUNCH_PACKED);
            }
            case "patchembed" -> patchEmbed.setVariant(variant);
            case "rmsnorm" -> rmsNorm.setVariant(variant);
            case "rmsnormbwd" -> rmsNorm.setBackwardVariant(variant);
            case "upload" -> {
                if (variant != UPLOAD_SYNCHRONOUS && variant != UPLOAD_PINNED)
                    throw new IllegalArgumentException("upload variant must be 1 (pinned, asynchronous) or 2 (synchronous copy), got " + variant);
                pinnedUploads = variant == UPLOAD_PINNED;
            }
            default -> throw new IllegalArgumentException("no kernel variants for '" + family + "' (families: " + KERNEL_VARIANTS.keySet() + ")");
        }
    }

    /** Device name, SMs, compute capability, memory and the cuBLASLt library in use. */
    public String describe() {
        return String.format("%s, %d SMs, compute %s, %.1f GiB, cuBLASLt %s (version %d)", runtime.deviceName(),
                runtime.multiprocessorCount(), runtime.computeCapability(), runtime.totalMemory() / 1073741824.0,
                blas.libraryPath(), blas.version());
    }

    /** From {@link GpuPeaks}' table of NVIDIA's data sheets, by the device's name. */
    @Override
    public double peakTflops() { return GpuPeaks.bf16DenseTflops(runtime.deviceName()); }

    public DeviceAllocator.Stats memoryStats() { return allocator.stats(); }

    @Override
    public void resetMemoryPeak() { allocator.resetScratchPeak(); }

    /**
     * Persistent tensors (weights, gradients, optimizer moments, input buffers) and the scratch peak (one micro-batch's
     * activations and temporaries), against the GPU's memory.
     */
    @Override
    public String memorySummary() {
        DeviceAllocator.Stats s = allocator.stats();
        return String.format(java.util.Locale.ROOT, "GPU memory: %.2f GiB persistent (%d tensors), scratch peak %.2f GiB, of %.1f GiB",
                s.persistentBytes() / GIB, s.persistentTensors(), s.peakScratchInUseBytes() / GIB, runtime.totalMemory() / GIB);
    }

    private static final double GIB = 1024.0 * 1024 * 1024;

    /** Poison scratch with NaN (on) or leave it as is (off, the fast default). */
    public void setPoisonScratch(boolean poison) { allocator.setPoison(poison); }

    public CudaSimpleAttention simpleAttention() { return simpleAttention; }

    public CudaFlashAttention flashAttention() { return flashAttention; }

    /** Times {@code work} on the stream with CUDA events; returns milliseconds. */
    public float time(Runnable work) {
        try (CudaRuntime.Timer t = runtime.new Timer()) {
            t.start();
            work.run();
            t.stop();
            return t.elapsedMillis();
        }
    }

    /** A point in the stream's queued work (a CUDA event recorded when made), for timing spans without waiting for them. */
    public static final class StreamMark implements AutoCloseable {
        private final CudaRuntime.Mark mark;

        private StreamMark(CudaRuntime.Mark mark) { this.mark = mark; }

        /** Stream milliseconds from {@code from} to this mark; waits until the stream has passed this mark. */
        public float millisSince(StreamMark from) { return mark.millisSince(from.mark); }

        @Override public void close() { mark.close(); }
    }

    /** Marks the stream here (see {@link StreamMark}). */
    public StreamMark mark() { return new StreamMark(runtime.new Mark()); }

    /** {@link #timeQueued}'s result: GPU milliseconds, and whether the host had queued all the work before the spin ended. */
    public record QueuedTime(float millis, boolean queuedAhead) {}

    /**
     * Times {@code work}'s launches without the host's launch overhead: a one-thread kernel ({@code timing_spin_ns},
     * src/main/cuda/timing.cu) holds the stream for {@code holdNanos} while the host queues the work behind it; the
     * interval runs from an event right after the spin to one after the work. {@code queuedAhead} is false when the
     * host took longer than the hold to queue the work (then the interval may contain host gaps: retry with a longer
     * hold or less work).
     */
    public QueuedTime timeQueued(Runnable work, long holdNanos) {
        if (holdNanos <= 0) throw new IllegalArgumentException("holdNanos must be > 0, got " + holdNanos);
        try (CudaRuntime.Timer t = runtime.new Timer()) {
            runtime.synchronize();
            long t0 = System.nanoTime();
            runtime.launch("timing_spin_ns", 1, 1, 1, 1, 1, 1, 0, holdNanos);
            t.start();
            work.run();
            t.stop();
            long host = System.nanoTime() - t0;
            float ms = t.elapsedMillis();
            // A margin for the spin's own launch latency: the spin starts a few µs after t0.
            return new QueuedTime(ms, host + 20_000 < holdNanos);
        }
    }

    // ---------------------------------------------------------------- Backend: identity and memory

    @Override public String name() { return "cuda"; }

    @Override public Device device() { return Device.CUDA; }

    @Override public DType activationType() { return DType.BF16; }

    @Override
    public Tensor allocate(DType dtype, int... shape) {
        runtime.makeCurrent();
        return allocator.allocatePersistent(dtype, shape);
    }

    @Override
    public void free(Tensor t) {
        if (t.dtype() == DType.I32) patchEmbed.forget(t);
        runtime.synchronize(); // queued kernels may still read it
        allocator.freePersistent(t);
    }

    @Override
    public Tensor scratch(DType dtype, int... shape) {
        runtime.makeCurrent();
        return allocator.scratch(dtype, shape);
    }

    @Override
    public void releaseScratch() {
        // Blocks are reused by later launches on the same stream, which run after every earlier reader: no sync needed.
        allocator.releaseScratch();
    }

    @Override public long scratchMark() { return allocator.scratchMark(); }

    @Override public void releaseScratchTo(long mark) { allocator.releaseScratchTo(Math.toIntExact(mark)); }

    @Override
    public void upload(Tensor dst, float[] src) {
        requireCuda(dst);
        requireLength(dst, src.length);
        if (src.length == 0) return;
        if (dst.dtype() == DType.I32) patchEmbed.forget(dst);
        switch (dst.dtype()) {
            case F32 -> runtime.copyToDevice(CudaStorage.addressOf(dst), Pointer.to(src), dst.bytes());
            case BF16 -> {
                short[] h = new short[src.length];
                for (int i = 0; i < h.length; i++) h[i] = Bf16.fromFloat(src[i]);
                runtime.copyToDevice(CudaStorage.addressOf(dst), Pointer.to(h), dst.bytes());
            }
            case I32 -> {
                int[] h = new int[src.length];
                for (int i = 0; i < h.length; i++) {
                    h[i] = (int) src[i];
                    if (h[i] != src[i]) throw new IllegalArgumentException("upload: " + src[i] + " is not an integer for an I32 tensor");
                }
                runtime.copyToDevice(CudaStorage.addressOf(dst), Pointer.to(h), dst.bytes());
            }
        }
    }

    @Override
    public void uploadInts(Tensor dst, int[] src) {
        requireCuda(dst);
        requireLength(dst, src.length);
        if (dst.dtype() != DType.I32) throw new IllegalArgumentException("uploadInts: " + dst + " is not I32");
        if (src.length == 0) return;
        copyInts(dst, src);
        patchEmbed.noteUpload(dst, src);  // token ids: the patch-embedding backward sorts them on the host
    }

    /** Host ints into an I32 tensor in stream order, by the configured upload path. */
    @Override
    public void copyInts(Tensor dst, int[] src) {
        if (pinnedUploads) runtime.copyIntsToDeviceAsync(CudaStorage.addressOf(dst), src);
        else runtime.copyToDevice(CudaStorage.addressOf(dst), Pointer.to(src), dst.bytes());
    }


    /** Upload variant 1 (default): token ids through page-locked staging buffers, without waiting for the stream. */
    private boolean pinnedUploads = true;

    @Override
    public float[] download(Tensor src) {
        requireCuda(src);
        int n = Math.toIntExact(src.numel());
        float[] out = new float[n];
        if (n == 0) return out;
        switch (src.dtype()) {
            case F32 -> runtime.copyToHost(Pointer.to(out), CudaStorage.addressOf(src), src.bytes());
            case BF16 -> {
                short[] h = new short[n];
                runtime.copyToHost(Pointer.to(h), CudaStorage.addressOf(src), src.bytes());
                for (int i = 0; i < n; i++) out[i] = Bf16.toFloat(h[i]);
            }
            case I32 -> {
                int[] h = downloadInts(src);
                for (int i = 0; i < n; i++) out[i] = h[i];
            }
        }
        return out;
    }

    @Override
    public int[] downloadInts(Tensor src) {
        requireCuda(src);
        if (src.dtype() != DType.I32) throw new IllegalArgumentException("downloadInts: " + src + " is not I32");
        int[] out = new int[Math.toIntExact(src.numel())];
        if (out.length > 0) runtime.copyToHost(Pointer.to(out), CudaStorage.addressOf(src), src.bytes());
        return out;
    }

    @Override
    public void zero(Tensor t) {
        requireCuda(t);
        if (t.numel() > 0) runtime.zero(CudaStorage.addressOf(t), t.bytes());
    }

    @Override
    public void connect(Backend peer) {
        if (peer instanceof CudaBackend other && other != this) runtime.enablePeerAccess(other.runtime);
    }

    /** From another CUDA backend (another GPU, or another runtime on this one): a peer copy on this backend's stream. */
    @Override
    public void copyFrom(Backend source, Tensor src, Tensor dst) {
        if (!(source instanceof CudaBackend peer)) {
            DecodingBackend.super.copyFrom(source, src, dst);
            return;
        }
        requireCuda(src);
        requireCuda(dst);
        if (src.dtype() != dst.dtype() || src.numel() != dst.numel())
            throw new IllegalArgumentException("copyFrom: " + src + " → " + dst + " differ in dtype or element count");
        if (dst.dtype() == DType.I32) patchEmbed.forget(dst);
        if (src.numel() > 0) runtime.copyFromPeer(CudaStorage.addressOf(dst), peer.runtime, CudaStorage.addressOf(src), src.bytes());
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        requireCuda(src);
        requireCuda(dst);
        if (src.numel() != dst.numel()) throw new IllegalArgumentException("copy: " + src + " → " + dst + " element counts differ");
        if (dst.dtype() == DType.I32) patchEmbed.forget(dst);
        if (src.dtype() == dst.dtype()) {
            if (src.numel() > 0) runtime.copyDeviceToDevice(CudaStorage.addressOf(dst), CudaStorage.addressOf(src), src.bytes());
        } else {
            elementwise.cast(src, dst);
        }
    }

    @Override
    public void synchronize() { runtime.synchronize(); }

    // ---------------------------------------------------------------- Backend: ops

    @Override
    public Tensor patchEmbed(Tensor table, Tensor tokens, int k) {
        requireDtype("patchEmbed table", table, DType.BF16);
        return patchEmbed.forward(table, tokens, k);
    }

    @Override
    public void patchEmbedBackward(Tensor dOut, Tensor tokens, int k, Tensor dTable) { patchEmbed.backward(dOut, tokens, k, dTable); }

    @Override
    public Tensor matmul(Tensor x, Tensor w) {
        requireMatrix("matmul x", x, DType.BF16);
        requireMatrix("matmul w", w, DType.BF16);
        if (x.dim(1) != w.dim(1)) throw new IllegalArgumentException("matmul: x " + x + " and w " + w + " differ in the input dimension");
        Tensor y = scratch(DType.BF16, x.dim(0), w.dim(0));
        matmulInto(x, w, y);
        return y;
    }

    private void matmulInto(Tensor x, Tensor w, Tensor y) {
        GemmLayout l = GemmLayout.forward(x.dim(0), x.dim(1), w.dim(0));
        runtime.makeCurrent();
        blas.matmul(l, CudaStorage.addressOf(w), CudaStorage.addressOf(x), CudaStorage.addressOf(y), CublasLt.CUDA_R_16BF, false);
    }

    @Override
    public Tensor matmulBackward(Tensor dy, Tensor x, Tensor w, Tensor dW, boolean needDx) {
        requireMatrix("matmulBackward dy", dy, DType.BF16);
        requireMatrix("matmulBackward x", x, DType.BF16);
        requireMatrix("matmulBackward w", w, DType.BF16);
        requireMatrix("matmulBackward dW", dW, DType.F32);
        int n = x.dim(0), in = x.dim(1), out = w.dim(0);
        if (w.dim(1) != in || dy.dim(0) != n || dy.dim(1) != out || dW.dim(0) != out || dW.dim(1) != in)
            throw new IllegalArgumentException("matmulBackward: shapes dy " + dy + ", x " + x + ", w " + w + ", dW " + dW + " do not fit");
        runtime.makeCurrent();
        // dW[out,in] += dyᵀ·x: cuBLAS operands are x (first) and dy (second), see GemmLayout.rowMajor.
        blas.matmul(GemmLayout.backwardWeight(n, in, out), CudaStorage.addressOf(x), CudaStorage.addressOf(dy),
                CudaStorage.addressOf(dW), CublasLt.CUDA_R_32F, true);
        if (!needDx) return null;
        Tensor dx = scratch(DType.BF16, n, in);
        // dx[N,in] = dy·w: cuBLAS operands are w (first) and dy (second).
        blas.matmul(GemmLayout.backwardData(n, in, out), CudaStorage.addressOf(w), CudaStorage.addressOf(dy),
                CudaStorage.addressOf(dx), CublasLt.CUDA_R_16BF, false);
        return dx;
    }

    @Override
    public RmsNormOut rmsNorm(Tensor x, Tensor gain, float eps) { return rmsNorm.forward(x, gain, eps); }

    @Override
    public AddRmsNormOut addRmsNorm(Tensor residual, Tensor branch, Tensor gain, float eps) { return rmsNorm.addForward(residual, branch, gain, eps); }

    @Override
    public Tensor rmsNormBackward(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain) { return rmsNorm.backward(dy, x, gain, rstd, dGain); }

    @Override
    public Tensor rmsNormBackwardAccumulate(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor dxAcc) {
        return rmsNorm.backwardAccumulate(dy, x, gain, rstd, dGain, dxAcc);
    }

    @Override
    public Tensor rope(Tensor x, int seqLen, int heads, Rope r) { return rope.forward(x, seqLen, heads, r); }

    @Override
    public Tensor ropeBackward(Tensor dy, int seqLen, int heads, Rope r) { return rope.backward(dy, seqLen, heads, r); }

    @Override
    public AttentionOut attention(Tensor q, Tensor k, Tensor v, int seqLen, int heads) {
        return useFlash(q, heads) ? flashAttention.forward(q, k, v, seqLen, heads) : simpleAttention.forward(q, k, v, seqLen, heads);
    }

    @Override
    public AttentionGrads attentionBackward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, int seqLen, int heads) {
        return useFlash(q, heads)
                ? flashAttention.backward(dOut, q, k, v, out, lse, seqLen, heads)
                : simpleAttention.backward(dOut, q, k, v, out, lse, seqLen, heads);
    }

    @Override
    public Tensor ropeAt(Tensor x, int start, int heads, Rope r) { return rope.forwardAt(x, start, heads, r); }

    @Override
    public Tensor repeatHeads(Tensor x, int kvHeads, int groups) { return repeatHeads.forward(x, kvHeads, groups); }

    @Override
    public Tensor repeatHeadsBackward(Tensor dy, int kvHeads, int groups) { return repeatHeads.backward(dy, kvHeads, groups); }

    /**
     * A window read from position 0 (a prompt, or the window's restart) is causal attention over its own rows: the
     * training forward's kernels, which take every query head's keys and values (grouped-query ones repeated first, as
     * training repeats them; scratch until the caller's release). Rows after it (one per token while generating) go to
     * the split-key decode kernels, which read the cache's key/value heads as they are.
     */
    @Override
    public Tensor attendCached(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        CudaDecodeAttention.check(q, keys, values, start, heads, kvHeads);
        int n = q.dim(0);
        boolean aligned = (CudaStorage.addressOf(keys) & 15) == 0 && (CudaStorage.addressOf(values) & 15) == 0;  // flash's loads
        if (start == 0 && n > 1 && aligned) {
            Tensor k = keys.rows(0, n), v = values.rows(0, n);
            if (kvHeads < heads) {
                k = repeatHeads(k, kvHeads, heads / kvHeads);
                v = repeatHeads(v, kvHeads, heads / kvHeads);
            }
            return attention(q, k, v, n, heads).out();
        }
        return decodeAttention.attendChecked(q, keys, values, start, heads, kvHeads);
    }

    private boolean useFlash(Tensor q, int heads) {
        if (heads <= 0 || q.rank() != 2 || q.dim(1) % heads != 0) return false; // let the simple path report the mistake
        return flashEnabled && CudaFlashAttention.supportsHeadDim(q.dim(1) / heads);
    }

    @Override
    public Tensor swiglu(Tensor gate, Tensor up) { return swiGlu.forward(gate, up); }

    @Override
    public SwiGluGrads swigluBackward(Tensor dy, Tensor gate, Tensor up) { return swiGlu.backward(dy, gate, up); }

    @Override
    public Tensor add(Tensor x, Tensor y) { return elementwise.add(x, y); }

    @Override
    public void addInPlace(Tensor acc, Tensor x) { elementwise.addInPlace(acc, x); }

    @Override
    public Tensor crossEntropyK(Tensor logits, Tensor targets, int vocab, float gradScale) { return crossEntropy.forward(logits, targets, vocab, gradScale); }

    @Override
    public double sumOfSquares(List<Tensor> tensors) {
        if (tensors.isEmpty()) return 0.0;
        return download(sumOfSquaresOnDevice(tensors))[0];
    }

    /** {@link #sumOfSquares} left on the device: F32 [1] scratch, no wait for the stream (what `bench kernels` times). */
    public Tensor sumOfSquaresOnDevice(List<Tensor> tensors) { return adamW.sumOfSquares(tensors); }

    @Override
    public double sum(Tensor t) {
        requireDtype("sum", t, DType.F32);
        if (t.numel() == 0) return 0.0;
        long partials = CudaStorage.addressOf(sumPartials);
        long result = partials + 8L * SUM_BLOCKS;
        launch("sum_f32_partials", SUM_BLOCKS, 1, 1, 256, 1, 1, 0, t, t.numel(), partials);
        launch("sum_f64_final", 1, 1, 1, 256, 1, 1, 0, partials, SUM_BLOCKS, result);
        double[] out = new double[1];
        runtime.copyToHost(Pointer.to(out), result, 8);
        return out[0];
    }

    @Override
    public long countAbsAbove(Tensor x, float threshold) {
        requireCuda(x);
        if (x.dtype() != DType.BF16 && x.dtype() != DType.F32)
            throw new IllegalArgumentException("countAbsAbove: " + x + " must be BF16 or F32");
        if (x.numel() == 0 || Float.isNaN(threshold)) return 0;
        // The kernel compares |x|'s bits with the bits of |threshold| (exact, whatever the float mode), −1: all non-NaN.
        int limit = threshold < 0 ? -1 : Float.floatToIntBits(Math.abs(threshold));
        if (counter == null) counter = allocate(DType.I32, 2);  // one u64, zeroed before each count
        zero(counter);
        long n = x.numel();
        int blocks = (int) Math.max(1, Math.min((n + 2047) / 2048, 8L * runtime.multiprocessorCount()));
        launch(x.dtype() == DType.BF16 ? "count_abs_above_bf16" : "count_abs_above_f32", blocks, 1, 1, 256, 1, 1, 0,
                counter, x, n, limit);
        int[] words = downloadInts(counter);
        return (words[0] & 0xffffffffL) | ((long) words[1] << 32);
    }

    @Override
    public void adamW(Tensor master, Tensor grad, Tensor m, Tensor v, Tensor compute, AdamWStep s) { adamW.step(master, grad, m, v, compute, s); }

    // ---------------------------------------------------------------- KernelContext

    @Override
    public void launch(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes, Object... args) {
        runtime.launch(name, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, args);
    }

    @Override
    public void launchCooperative(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes, Object... args) {
        runtime.launchCooperative(name, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, args);
    }

    @Override
    public int multiprocessorCount() { return runtime.multiprocessorCount(); }

    @Override
    public int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes) {
        return runtime.residentBlocksPerMultiprocessor(name, blockThreads, sharedBytes);
    }

    @Override
    public int registersPerThread(String name) { return runtime.registersPerThread(name); }

    @Override
    public int computeCapabilityMajor() { return runtime.computeCapabilityMajor(); }

    @Override
    public TensorMaps.TensorMap tensorMap(TensorMaps.Bf16Tiled spec) { return tensorMaps().encode(spec); }

    @Override
    public boolean tensorMapsAvailable() { return tensorMaps().available(); }

    /** The driver's tensor-map encoder, bound at first use (only the TMA kernels need it). */
    private TensorMaps tensorMaps() {
        if (tensorMaps == null) tensorMaps = new TensorMaps();
        return tensorMaps;
    }

    // ---------------------------------------------------------------- lifecycle

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        runtime.makeCurrent();
        runtime.synchronize();
        blas.close();
        allocator.close();
        runtime.close();
    }

    // ---------------------------------------------------------------- argument checks

    private static void requireCuda(Tensor t) {
        if (!(t.storage() instanceof CudaStorage)) throw new IllegalArgumentException("not a CUDA tensor: " + t);
    }

    private static void requireLength(Tensor t, int length) {
        if (t.numel() != length) throw new IllegalArgumentException("host array of " + length + " elements does not match " + t);
    }

    private static void requireDtype(String what, Tensor t, DType dtype) {
        if (t.dtype() != dtype) throw new IllegalArgumentException(what + ": expected " + dtype + ", got " + t);
    }

    private static void requireMatrix(String what, Tensor t, DType dtype) {
        requireDtype(what, t, dtype);
        if (t.rank() != 2) throw new IllegalArgumentException(what + ": expected a matrix, got " + t);
    }
}
