package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * Causal flash attention (FlashAttention-2) on the GPU: launches the {@code flash_attn_*} kernels of
 * {@code src/main/cuda/flash_attention.cu}. Semantics are exactly {@link Backend#attention} and
 * {@link Backend#attentionBackward}; memory is linear in T (only lse is kept, never a T×T buffer).
 * Tiling, shared-memory budget and register counts are in {@code docs/attention.md}.
 */
public final class CudaFlashAttention {
    // ---- ONE-LINE SWITCHES. Forward: true = the pipelined kernels (flash_attn_fwd2_*: double-buffered tiles in
    // dynamic shared memory, longest CTAs first); false = the first generation, kept as fallback. Backward: which
    // generation runs, 3 = flash_attn_bwd3_* (128-key CTAs of 8 warps), 2 = flash_attn_bwd2_* (64-key CTAs,
    // pipelined), 1 = the first generation. At run time -Dpatchcore.flash.forward=1 and
    // -Dpatchcore.flash.backward=2 / =1 select the older kernels.
    static final boolean USE_FORWARD2 = !"1".equals(System.getProperty("patchcore.flash.forward", "2"));
    static final String BACKWARD_PROPERTY = "patchcore.flash.backward";
    static final String DEFAULT_BACKWARD_GENERATION = "3";

    /** Parsed when a CudaFlashAttention is built, so a bad value is one IllegalArgumentException, not a class-init error. */
    static int backwardGeneration(String value) {
        return switch (value.strip()) {
            case "1" -> 1;
            case "2" -> 2;
            case "3" -> 3;
            default -> throw new IllegalArgumentException("-Dpatchcore.flash.backward must be 1, 2 or 3, got '" + value + "'");
        };
    }

    /** Forward CTAs have 4 warps; each warp owns 16 query rows, or 32 for D = 64 (faster on H100, see docs). */
    private static final int FORWARD_WARPS = 4;
    /** Key/value rows per first- and second-generation backward CTA: 4 warps × 16 rows. */
    private static final int BACKWARD_KV_TILE = 64;
    private static final int BACKWARD_THREADS = 128;
    /** Warps per CTA of the D = rowsum(dO∘O) pre-pass; one warp per (row, head). */
    private static final int PREP_WARPS = 8;
    private static final int CONVERT_THREADS = 256;

    /** (row, head) pairs one warp of the backward pre-pass takes: 32 / (D/8) where D/8 divides 32, else 1 (Prep in flash_attention.cu). */
    static int prepPairsPerWarp(int headDim) {
        int lanes = headDim / 8;
        return headDim % 8 == 0 && lanes >= 1 && lanes <= 32 && 32 % lanes == 0 ? 32 / lanes : 1;
    }

    /** CUDA's limit on gridDim.y, where the pipelined kernels put their query / key tile index. */
    private static final int MAX_GRID_Y = 65535;

    /**
     * Forward variant 1 (default): per head dimension the fastest measured on an H100 (runs 12, 14 and 16), on compute
     * capability 9.x the persistent ping-pong wgmma kernels with TMA loads — at D = 128 with two warpgroups (variant 6:
     * 376–417 TFLOP/s, 1.14× the ping-pong kernel of variant 4, 1.38× mma.sync), at D = 64 with three consumer
     * warpgroups over items of 192 query rows and a producer warpgroup that issues every TMA load (run 16: 332–334
     * TFLOP/s in bench kernels, 353 timed from C++; 1.09× and 1.14× the three-warpgroup kernel without a producer,
     * variant 7) — and the mma.sync kernels elsewhere (other head dims, other GPUs).
     */
    public static final int FORWARD_FASTEST = 1;
    /** Forward variant 2: the mma.sync kernels everywhere (fwd2; the default until H100 run 9). */
    public static final int FORWARD_MMA_SYNC = 2;
    /** Forward variant 3: the Hopper wgmma kernel with intra-warpgroup overlap (flash_wgmma.cu; cc 9.x, D = 64 or 128). */
    public static final int FORWARD_WGMMA = 3;
    /**
     * Forward variant 4: the wgmma forward with FlashAttention-3's inter-warpgroup ping-pong and mbarrier-driven
     * K/V rings (flash_attn_fwd_wgmma_pp_d*, D = 64 or 128, one CTA per SM) at both head dimensions.
     */
    public static final int FORWARD_WGMMA_PINGPONG = 4;
    /**
     * Forward variant 5: the ping-pong kernel made persistent at D = 64 and 128 on Hopper (flash_attn_fwd_wgmma_pp_
     * persistent_d*: one CTA per SM over (query tile, head) items in a fixed "snake" order, K/V rings and turns running
     * on across items, Q double-buffered), mma.sync elsewhere. H100 run 12: 348 TFLOP/s at D = 128, 256 at D = 64.
     */
    public static final int FORWARD_WGMMA_PERSISTENT = 5;
    /**
     * Forward variant 6: variant 5 with its Q, K and V tiles loaded by the tensor memory accelerator
     * (flash_attn_fwd_wgmma_pp_persistent_tma_d*; tensor maps from {@link KernelContext#tensorMap}); variant 5 where
     * the driver cannot make tensor maps. Variant 1 runs it at D = 128 (H100 run 12: 378 TFLOP/s).
     */
    public static final int FORWARD_WGMMA_PERSISTENT_TMA = 6;
    /**
     * Forward variant 7: at D = 64 on Hopper with tensor maps, the three-warpgroup kernel without a producer (each
     * consumer warpgroup issues its own TMA loads; flash_attn_fwd_wgmma_pp3_persistent_tma_d64, the D = 64 default in
     * H100 runs 15–16: 305–309 TFLOP/s); everywhere else what variant 1 runs. Kept as the producer kernel's yardstick.
     */
    public static final int FORWARD_WGMMA_NO_PRODUCER = 7;

    private final KernelContext ctx;
    private final boolean forward2;
    private final int backwardGeneration;
    private int forwardVariant = FORWARD_FASTEST;
    /** The producer kernel's registers per thread once asked ({@link #registerPoolFits}); 0 before. */
    private int producerRegisters;
    /**
     * Backward variant 1 (default): the Hopper wgmma kernels where they apply (flash_wgmma.cu; compute capability
     * 9.x, D = 64 and 128; H100 run 12: 218 and 275 TFLOP/s, 1.21× and 1.56× bwd3), the mma.sync kernels elsewhere.
     * (A persistent form of the D = 64 kernel ran at 0.98× in run 12 and was removed.)
     */
    public static final int BACKWARD_WGMMA = 1;
    /** Backward variant 2: the mma.sync kernels everywhere (bwd3; the default until H100 run 6). */
    public static final int BACKWARD_MMA_SYNC = 2;
    private int backwardVariant = BACKWARD_WGMMA;

    public CudaFlashAttention(KernelContext ctx) {
        this(ctx, USE_FORWARD2, backwardGeneration(System.getProperty(BACKWARD_PROPERTY, DEFAULT_BACKWARD_GENERATION)));
    }

    /** Picks the kernel generation per direction (tests exercise all of them). */
    CudaFlashAttention(KernelContext ctx, boolean forward2, int backwardGeneration) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        if (backwardGeneration < 1 || backwardGeneration > 3)
            throw new IllegalArgumentException("flash backward generation must be 1, 2 or 3, got " + backwardGeneration);
        this.ctx = ctx;
        this.forward2 = forward2;
        this.backwardGeneration = backwardGeneration;
    }

    /**
     * Which forward runs where the wgmma kernels apply: {@link #FORWARD_FASTEST} (default), {@link #FORWARD_MMA_SYNC},
     * {@link #FORWARD_WGMMA}, {@link #FORWARD_WGMMA_PINGPONG}, {@link #FORWARD_WGMMA_PERSISTENT} or
     * {@link #FORWARD_WGMMA_PERSISTENT_TMA} or {@link #FORWARD_WGMMA_NO_PRODUCER}.
     */
    public void setForwardVariant(int variant) {
        if (variant < FORWARD_FASTEST || variant > FORWARD_WGMMA_NO_PRODUCER)
            throw new IllegalArgumentException("flash forward variant must be 1 (fastest per head dim), 2 (mma.sync), 3 (wgmma),"
                    + " 4 (wgmma ping-pong), 5 (persistent ping-pong), 6 (the same with TMA loads) or 7 (three warpgroups"
                    + " without a producer at D = 64), got " + variant);
        this.forwardVariant = variant;
    }

    public int forwardVariant() { return forwardVariant; }

    /** Which backward runs where the wgmma kernels apply: {@link #BACKWARD_WGMMA} (default) or {@link #BACKWARD_MMA_SYNC}. */
    public void setBackwardVariant(int variant) {
        if (variant != BACKWARD_WGMMA && variant != BACKWARD_MMA_SYNC)
            throw new IllegalArgumentException("flash backward variant must be 1 (wgmma at D = 64 and 128) or 2 (mma.sync), got "
                    + variant);
        this.backwardVariant = variant;
    }

    public int backwardVariant() { return backwardVariant; }

    /**
     * The Hopper backward (flash_wgmma.cu): 2 warpgroups × 64 keys per CTA, 256 threads, query tiles of 64, at D = 64
     * (backward_wgmma_d64) and D = 128 (backward_wgmma_d128), under variant 1. Shared memory: 1 KB
     * alignment slack, K and V [128][D], Q and dO [2][64][D], dSᵀ [128 keys][64 queries] (bf16; at D = 64 one
     * [64][64] buffer per warpgroup, the same bytes), lse and D [2][64] each, the two warpgroups' dQ tiles [2][64][72]
     * (fp32; at D = 64 each warpgroup's 64 × 64 dQ over its keys, at D = 128 its 64 columns over all 128 keys).
     */
    record BackwardWgmma(int headDim) {
        static final int KEYS = 128, THREADS = 256, QUERY_TILE = 64;

        /** The head dims with a wgmma backward under {@code variant} (none under {@link #BACKWARD_MMA_SYNC}). */
        static boolean supports(int variant, int d) { return variant == BACKWARD_WGMMA && (d == 64 || d == 128); }

        String kernel() { return "flash_attn_bwd_wgmma_d" + headDim; }

        int sharedBytes() {
            return 1024 + 2 * KEYS * headDim * 2 + 4 * QUERY_TILE * headDim * 2 + KEYS * QUERY_TILE * 2 + 4 * QUERY_TILE * 4
                    + 2 * QUERY_TILE * 72 * 4;
        }
    }

    /**
     * The Hopper forward (flash_wgmma.cu): 2 warpgroups × 64 query rows per CTA, 256 threads, key tiles of 64 rows at
     * D = 64 (two CTAs per SM) and 128 rows at D = 128 (one CTA per SM; FwdWgmmaTile in the .cu). Shared memory: 1 KB
     * of alignment slack for the 1024-byte swizzle atoms, Q [128][D], K and V [2][keyTile][D] (bf16).
     */
    record ForwardWgmma(int headDim) {
        static final int ROWS = 128, THREADS = 256;

        static boolean supports(int d) { return d == 64 || d == 128; }

        String kernel() { return "flash_attn_fwd_wgmma_d" + headDim; }

        int keyTile() { return headDim == 64 ? 64 : 128; }

        int sharedBytes() { return 1024 + ROWS * headDim * 2 + 4 * keyTile() * headDim * 2; }
    }

    /**
     * Forward variant 4 (flash_wgmma.cu, forward_wgmma_pingpong): 2 warpgroups × 64 query rows per CTA, 256 threads,
     * 128-key tiles, one CTA per SM. Shared memory: 1 KB alignment slack, Q [128][D], K [3][128][D] and V [2][128][D]
     * (bf16; PP_KS and PP_VS in the .cu), then 10 mbarriers of 8 bytes.
     */
    record ForwardWgmmaPingPong(int headDim) {
        static final int KEY_TILE = 128, K_STAGES = 3, V_STAGES = 2, MBARRIER_BYTES = 10 * 8;

        String kernel() { return "flash_attn_fwd_wgmma_pp_d" + headDim; }

        int sharedBytes() {
            return 1024 + ForwardWgmma.ROWS * headDim * 2 + (K_STAGES + V_STAGES) * KEY_TILE * headDim * 2 + MBARRIER_BYTES;
        }
    }

    /**
     * The producer kernel's setmaxnreg split (32 · 128 + 160 · 384 = 65 536 registers) takes the register pool its CTA
     * was launched with: ptxas must give it 65 536 / threads registers per thread (128 at 512 threads, what its launch
     * bounds allow and what ptxas gave it so far), else the consumers' setmaxnreg.inc waits for registers that never
     * come and the kernel hangs. Asked once (0 from a context that cannot say: taken as fitting); where it does not
     * fit, the forward runs the three-warpgroup kernel without a producer instead and says so once on stderr.
     */
    private boolean registerPoolFits(String kernel, int threads) {
        if (producerRegisters == 0) {
            producerRegisters = ctx.registersPerThread(kernel);
            if (producerRegisters > 0 && producerRegisters * threads < 65536)
                System.err.println("warning: " + kernel + " was compiled with " + producerRegisters + " registers per"
                        + " thread; its setmaxnreg split needs " + 65536 / threads + " (it would hang): running the"
                        + " three-warpgroup forward without a producer instead");
        }
        return producerRegisters <= 0 || producerRegisters * threads >= 65536;
    }

    /**
     * Forward variants 5, 6 and 7, and variant 1 on Hopper (flash_wgmma.cu, forward_wgmma_pingpong_persistent and, for
     * 1 at D = 64, forward_wgmma_producer) at D = 64 and 128: the ping-pong CTA, one per SM, over B·H·⌈T/rows⌉ items
     * of 64 query rows per warpgroup; variant 6 (and 1 and 7 where the driver makes tensor maps) loads through TMA.
     * Two warpgroups (rows 128, K and V rings of 3 and 2 stages), or three at D = 64 under variants 1 and 7 (rows 192,
     * rings of 4 and 3; TMA only: without tensor maps both run mma.sync at D = 64). Shared memory: 1 KB alignment
     * slack, Q [2][rows][D], K [KS][128][D], V [VS][128][D] (bf16), then the mbarriers: full and empty per K and V
     * stage, full per (Q buffer, warpgroup). With a producer (variant 1 at D = 64: three consumer warpgroups, TMA
     * only) a fourth warpgroup issues the loads, and each Q buffer gets an empty barrier too.
     */
    record ForwardWgmmaPersistent(int headDim, int warpgroups, boolean producer) {
        ForwardWgmmaPersistent {
            if (warpgroups != 2 && !(warpgroups == 3 && headDim == 64))
                throw new IllegalArgumentException("persistent forward: 2 warpgroups, or 3 at D = 64; got " + warpgroups + " at D = " + headDim);
            if (producer && warpgroups != 3)
                throw new IllegalArgumentException("the producer forward has 3 consumer warpgroups (D = 64), not " + warpgroups);
        }

        ForwardWgmmaPersistent(int headDim, int warpgroups) { this(headDim, warpgroups, false); }

        ForwardWgmmaPersistent(int headDim) { this(headDim, 2); }

        String kernel(boolean tma) {
            if (warpgroups == 3 && !tma) throw new IllegalStateException("the three-warpgroup forwards load through TMA only");
            if (producer) return "flash_attn_fwd_wgmma_pp3_producer_tma_d" + headDim;
            return "flash_attn_fwd_wgmma_pp" + (warpgroups == 3 ? "3" : "") + "_persistent_" + (tma ? "tma_" : "") + "d" + headDim;
        }

        /** Query rows per item: 64 per (consumer) warpgroup. */
        int rows() { return 64 * warpgroups; }

        int threads() { return 128 * (warpgroups + (producer ? 1 : 0)); }

        int kStages() { return warpgroups == 2 ? ForwardWgmmaPingPong.K_STAGES : ForwardWgmmaPingPong.K_STAGES + 1; }

        int vStages() { return warpgroups == 2 ? ForwardWgmmaPingPong.V_STAGES : ForwardWgmmaPingPong.V_STAGES + 1; }

        /**
         * The tensor map of q, k or v [B·T, H·D] viewed as 4-D [B][T][H][D] (sizes innermost first: D, H, T, B), a box
         * of 64 columns (one 128-byte swizzle row) × 1 head × {@code rows} × 1 batch; rows past T read as zero.
         */
        TensorMaps.Bf16Tiled map(Tensor t, int batch, int seqLen, int heads, int rows) {
            long d = headDim, rowBytes = heads * d * 2;
            return new TensorMaps.Bf16Tiled(CudaStorage.addressOf(t), new long[] {d, heads, seqLen, batch},
                    new long[] {d * 2, rowBytes, rowBytes * seqLen}, new int[] {64, 1, rows, 1});
        }

        int sharedBytes() {
            int tile = ForwardWgmmaPingPong.KEY_TILE * headDim * 2;
            return 1024 + 2 * rows() * headDim * 2 + (kStages() + vStages()) * tile
                    + 8 * (2 * kStages() + 2 * vStages() + 2 * warpgroups + (producer ? 2 : 0));
        }
    }

    /**
     * A pipelined forward kernel: 4 warps × 16·blocksPerWarp query rows per CTA, key tiles of keyTile rows, Q held in
     * registers or re-read from shared memory. Mirrors FLASH_ATTN_FWD2 / Fwd2Config in flash_attention.cu.
     */
    record Forward2(int headDim, int blocksPerWarp, int keyTile, boolean qInRegisters) {
        /** The spill-free configuration per head dim (docs/attention.md). */
        static Forward2 of(int d) {
            return switch (d) {
                case 64 -> new Forward2(64, 2, 64, true);
                case 80 -> new Forward2(80, 2, 64, false);
                case 96 -> new Forward2(96, 2, 48, false);
                case 128 -> new Forward2(128, 2, 32, false);
                default -> throw new IllegalArgumentException("no flash forward kernel for head dim " + d);
            };
        }

        String kernel() {
            return "flash_attn_fwd2_d" + headDim + "_m" + blocksPerWarp + "_n" + keyTile + "_q" + (qInRegisters ? 1 : 0);
        }

        int rowsPerCta() { return 4 * 16 * blocksPerWarp; }

        /** Q [rows][D+8] plus double-buffered K and V [2][keyTile][D+8], bf16. */
        int sharedBytes() { return (rowsPerCta() + 4 * keyTile) * (headDim + 8) * 2; }
    }

    /**
     * A pipelined backward kernel: 64 keys per CTA (4 warps × 16), query tiles of queryTile rows double-buffered,
     * V held in registers or read from shared memory. Mirrors FLASH_ATTN_BWD2 / Bwd2Config in flash_attention.cu.
     */
    record Backward2(int headDim, int queryTile, boolean vInRegisters) {
        static Backward2 of(int d) {
            return switch (d) {
                case 64 -> new Backward2(64, 64, true);
                case 80 -> new Backward2(80, 64, false);
                case 96 -> new Backward2(96, 32, true);
                case 128 -> new Backward2(128, 32, false);
                default -> throw new IllegalArgumentException("no flash backward kernel for head dim " + d);
            };
        }

        String kernel() {
            return "flash_attn_bwd2_d" + headDim + "_q" + queryTile + "_v" + (vInRegisters ? 1 : 0);
        }

        /** K (and V) [64][D+8], Q and dO [2][BQ][D+8], dSᵀ [64][BQ+8] bf16; lse and D_i [2][BQ] fp32. */
        int sharedBytes() {
            int lds = headDim + 8;
            return (BACKWARD_KV_TILE * lds * (vInRegisters ? 1 : 2) + 4 * queryTile * lds
                    + BACKWARD_KV_TILE * (queryTile + 8)) * 2 + 4 * queryTile * 4;
        }
    }

    /**
     * A third-generation backward kernel: 128 keys per CTA (8 warps × 16, 256 threads), query tiles of queryTile rows
     * double-buffered, V held in registers or read from shared memory. Mirrors FLASH_ATTN_BWD3 / Bwd3Config in
     * flash_attention.cu.
     */
    record Backward3(int headDim, int queryTile, boolean vInRegisters) {
        static final int KEYS_PER_CTA = 128;
        static final int THREADS = 256;

        static Backward3 of(int d) {
            return switch (d) {
                case 64 -> new Backward3(64, 64, true);
                case 80 -> new Backward3(80, 64, false);
                case 96 -> new Backward3(96, 32, true);
                case 128 -> new Backward3(128, 32, false);
                default -> throw new IllegalArgumentException("no flash backward kernel for head dim " + d);
            };
        }

        String kernel() {
            return "flash_attn_bwd3_d" + headDim + "_q" + queryTile + "_v" + (vInRegisters ? 1 : 0);
        }

        /** K (and V) [128][D+8], Q and dO [2][BQ][D+8], dSᵀ [128][BQ+8] bf16; lse and D_i [2][BQ] fp32. */
        int sharedBytes() {
            int lds = headDim + 8;
            return (KEYS_PER_CTA * lds * (vInRegisters ? 1 : 2) + 4 * queryTile * lds
                    + KEYS_PER_CTA * (queryTile + 8)) * 2 + 4 * queryTile * 4;
        }
    }

    /** Head dimensions with a compiled kernel: the paper presets' 64, 80, 96 and 128. */
    public static boolean supportsHeadDim(int d) {
        return d == 64 || d == 80 || d == 96 || d == 128;
    }

    public Backend.AttentionOut forward(Tensor q, Tensor k, Tensor v, int seqLen, int heads) {
        Shape s = Shape.of(q, seqLen, heads);
        requireSameLayout("k", k, q);
        requireSameLayout("v", v, q);
        Tensor out = ctx.scratch(DType.BF16, s.rows(), s.width());
        Tensor lse = ctx.scratch(DType.F32, s.batch(), heads, seqLen);
        int variant = forwardVariant, warpgroups = 2;
        // Variant 1 at D = 64: the producer kernel; variant 7: the same three consumer warpgroups without it.
        boolean producer = variant == FORWARD_FASTEST && s.headDim() == 64 && ctx.tensorMapsAvailable()
                && ctx.computeCapabilityMajor() == 9;
        if (variant == FORWARD_WGMMA_NO_PRODUCER) variant = FORWARD_FASTEST;
        if (variant == FORWARD_FASTEST) {  // variant 6, with three warpgroups at D = 64 (mma.sync where it does not apply)
            variant = FORWARD_WGMMA_PERSISTENT_TMA;
            // The three-warpgroup kernels exist with TMA loads only; without tensor maps, D = 64 keeps mma.sync (the
            // default until run 15; variant 5's two warpgroups were no faster there).
            if (s.headDim() == 64) {
                if (ctx.tensorMapsAvailable()) warpgroups = 3;
                else variant = FORWARD_MMA_SYNC;
            }
        }
        if (variant == FORWARD_WGMMA_PERSISTENT || variant == FORWARD_WGMMA_PERSISTENT_TMA)
            variant = !ForwardWgmma.supports(s.headDim()) ? FORWARD_MMA_SYNC  // the persistent kernels exist where these do
                    : variant == FORWARD_WGMMA_PERSISTENT_TMA && ctx.tensorMapsAvailable() ? FORWARD_WGMMA_PERSISTENT_TMA
                    : FORWARD_WGMMA_PERSISTENT;
        if ((variant == FORWARD_WGMMA_PERSISTENT || variant == FORWARD_WGMMA_PERSISTENT_TMA) && ctx.computeCapabilityMajor() == 9) {
            // One CTA per SM over (query tile, head) items; the ping-pong kernel's arguments plus B·H (and the maps).
            ForwardWgmmaPersistent fp = new ForwardWgmmaPersistent(s.headDim(), warpgroups, producer);
            if (producer && !registerPoolFits(fp.kernel(true), fp.threads()))
                fp = new ForwardWgmmaPersistent(s.headDim(), warpgroups, false);
            long items = (long) s.batch() * heads * ceilDiv(seqLen, fp.rows());
            int grid = (int) Math.min(items, ctx.multiprocessorCount());
            boolean tma = variant == FORWARD_WGMMA_PERSISTENT_TMA;
            Object[] args = {q, k, v, out, lse, seqLen, heads, s.batch() * heads};
            if (tma) {
                args = java.util.Arrays.copyOf(args, 11);
                args[8] = ctx.tensorMap(fp.map(q, s.batch(), seqLen, heads, 64));
                args[9] = ctx.tensorMap(fp.map(k, s.batch(), seqLen, heads, ForwardWgmmaPingPong.KEY_TILE));
                args[10] = ctx.tensorMap(fp.map(v, s.batch(), seqLen, heads, ForwardWgmmaPingPong.KEY_TILE));
            }
            ctx.launch(fp.kernel(tma), grid, 1, 1, fp.threads(), 1, 1, fp.sharedBytes(), args);
            return new Backend.AttentionOut(out, lse);
        }
        if (variant != FORWARD_MMA_SYNC && variant != FORWARD_WGMMA_PERSISTENT && variant != FORWARD_WGMMA_PERSISTENT_TMA && ctx.computeCapabilityMajor() == 9 && ForwardWgmma.supports(s.headDim())
                && ceilDiv(seqLen, ForwardWgmma.ROWS) <= MAX_GRID_Y) {
            // The wgmma kernels share grid (B·H, query tiles of 128; the kernels reverse the tile index), 256 threads
            // and arguments; they differ in kernel and shared memory.
            ForwardWgmma fw = new ForwardWgmma(s.headDim());
            String kernel = fw.kernel();
            int shared = fw.sharedBytes();
            if (variant == FORWARD_WGMMA_PINGPONG) {
                ForwardWgmmaPingPong pp = new ForwardWgmmaPingPong(s.headDim());
                kernel = pp.kernel();
                shared = pp.sharedBytes();
            }
            ctx.launch(kernel, s.batch() * heads, ceilDiv(seqLen, ForwardWgmma.ROWS), 1, ForwardWgmma.THREADS, 1, 1,
                    shared, q, k, v, out, lse, seqLen, heads);
            return new Backend.AttentionOut(out, lse);
        }
        Forward2 f2 = Forward2.of(s.headDim());
        if (forward2 && ceilDiv(seqLen, f2.rowsPerCta()) <= MAX_GRID_Y) {
            // Grid (B·H, query tiles): the kernel reverses the tile index, so the longest CTAs of all heads go first.
            ctx.launch(f2.kernel(), s.batch() * heads, ceilDiv(seqLen, f2.rowsPerCta()), 1, 128, 1, 1, f2.sharedBytes(),
                    q, k, v, out, lse, seqLen, heads);
            return new Backend.AttentionOut(out, lse);
        }
        int blocksPerWarp = s.headDim() == 64 ? 2 : 1;
        int queryTile = 16 * blocksPerWarp * FORWARD_WARPS;
        ctx.launch("flash_attn_fwd_d" + s.headDim() + "_w" + FORWARD_WARPS + "_m" + blocksPerWarp,
                ceilDiv(seqLen, queryTile), s.batch() * heads, 1, 32 * FORWARD_WARPS, 1, 1, 0,
                q, k, v, out, lse, seqLen, heads);
        return new Backend.AttentionOut(out, lse);
    }

    public Backend.AttentionGrads backward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse,
                                           int seqLen, int heads) {
        Shape s = Shape.of(q, seqLen, heads);
        requireSameLayout("k", k, q);
        requireSameLayout("v", v, q);
        requireSameLayout("out", out, q);
        requireSameLayout("dOut", dOut, q);
        if (lse.dtype() != DType.F32 || lse.device() != Device.CUDA || lse.numel() != (long) s.batch() * heads * seqLen)
            throw new IllegalArgumentException("attention lse must be F32 [" + s.batch() + ", " + heads + ", " + seqLen
                    + "] on CUDA, got " + lse);

        // Pre-pass: D_i = dO_i·O_i per (row, head), and zero the fp32 dQ accumulator the main kernel adds into.
        Tensor rowDot = ctx.scratch(DType.F32, s.batch(), heads, seqLen);
        Tensor dqAccum = ctx.scratch(DType.F32, s.rows(), s.width());
        long pairs = (long) s.rows() * heads;
        ctx.launch("flash_attn_bwd_prep_d" + s.headDim(), (int) ceilDiv(pairs, (long) PREP_WARPS * prepPairsPerWarp(s.headDim())), 1, 1,
                32 * PREP_WARPS, 1, 1, 0,
                dOut, out, rowDot, dqAccum, s.rows(), seqLen, heads);

        Tensor dk = ctx.scratch(DType.BF16, s.rows(), s.width());
        Tensor dv = ctx.scratch(DType.BF16, s.rows(), s.width());
        int keyTiles = ceilDiv(seqLen, BACKWARD_KV_TILE);
        int keyTiles3 = ceilDiv(seqLen, Backward3.KEYS_PER_CTA);
        if (ctx.computeCapabilityMajor() == 9 && BackwardWgmma.supports(backwardVariant, s.headDim())
                && ceilDiv(seqLen, BackwardWgmma.KEYS) <= MAX_GRID_Y) {
            // Grid (B·H, key tiles of 128), key tile 0 first, as bwd3; same arguments.
            BackwardWgmma bw = new BackwardWgmma(s.headDim());
            ctx.launch(bw.kernel(), s.batch() * heads, ceilDiv(seqLen, BackwardWgmma.KEYS), 1, BackwardWgmma.THREADS,
                    1, 1, bw.sharedBytes(), q, k, v, dOut, lse, rowDot, dqAccum, dk, dv, seqLen, heads);
        } else if (backwardGeneration == 3 && keyTiles3 <= MAX_GRID_Y) {
            // Grid (B·H, key tiles of 128): key tile 0 (the most query tiles) of every head is dispatched first.
            Backward3 b3 = Backward3.of(s.headDim());
            ctx.launch(b3.kernel(), s.batch() * heads, keyTiles3, 1, Backward3.THREADS, 1, 1, b3.sharedBytes(),
                    q, k, v, dOut, lse, rowDot, dqAccum, dk, dv, seqLen, heads);
        } else if (backwardGeneration >= 2 && keyTiles <= MAX_GRID_Y) {
            // Grid (B·H, key tiles): key tile 0 (the most query tiles) of every head is dispatched first.
            Backward2 b2 = Backward2.of(s.headDim());
            ctx.launch(b2.kernel(), s.batch() * heads, keyTiles, 1, BACKWARD_THREADS, 1, 1, b2.sharedBytes(),
                    q, k, v, dOut, lse, rowDot, dqAccum, dk, dv, seqLen, heads);
        } else {
            ctx.launch("flash_attn_bwd_d" + s.headDim(), keyTiles, s.batch() * heads, 1, BACKWARD_THREADS, 1, 1, 0,
                    q, k, v, dOut, lse, rowDot, dqAccum, dk, dv, seqLen, heads);
        }

        Tensor dq = ctx.scratch(DType.BF16, s.rows(), s.width());
        long n = (long) s.rows() * s.width();
        int blocks = (int) Math.min(ceilDiv(n, CONVERT_THREADS), 16L * ctx.multiprocessorCount());
        ctx.launch("flash_attn_dq_convert", blocks, 1, 1, CONVERT_THREADS, 1, 1, 0,
                dqAccum, dq, n, (float) (1.0 / Math.sqrt(s.headDim())));
        return new Backend.AttentionGrads(dq, dk, dv);
    }

    /** Sizes derived from q [B·T, H·Dh]; every check a caller can get wrong ends in one message. */
    private record Shape(int rows, int width, int batch, int headDim) {
        static Shape of(Tensor q, int seqLen, int heads) {
            if (q.dtype() != DType.BF16 || q.device() != Device.CUDA || q.rank() != 2)
                throw new IllegalArgumentException("CUDA attention needs BF16 [B·T, H·Dh] tensors on CUDA, got " + q);
            if (seqLen <= 0 || heads <= 0)
                throw new IllegalArgumentException("attention needs seqLen > 0 and heads > 0, got " + seqLen + ", " + heads);
            int rows = q.dim(0), width = q.dim(1);
            if (rows % seqLen != 0)
                throw new IllegalArgumentException("attention rows " + rows + " are not a multiple of seqLen " + seqLen);
            if (width % heads != 0)
                throw new IllegalArgumentException("attention width " + width + " is not a multiple of heads " + heads);
            int headDim = width / heads;
            if (!supportsHeadDim(headDim))
                throw new IllegalArgumentException("CUDA flash attention supports head dims 64, 80, 96, 128, not " + headDim);
            if (rows / seqLen * (long) heads > 65535)
                throw new IllegalArgumentException("batch × heads " + (rows / seqLen) * (long) heads + " exceeds 65535");
            return new Shape(rows, width, rows / seqLen, headDim);
        }
    }

    /** cp.async moves 16-byte chunks, so every operand must start on a 16-byte boundary. */
    private static void requireSameLayout(String name, Tensor t, Tensor q) {
        if (t.dtype() != DType.BF16 || t.device() != Device.CUDA || !t.sameShape(q))
            throw new IllegalArgumentException("attention " + name + " must be BF16 " + java.util.Arrays.toString(q.shape())
                    + " on CUDA like q, got " + t);
        if (CudaStorage.addressOf(t) % 16 != 0 || CudaStorage.addressOf(q) % 16 != 0)
            throw new IllegalArgumentException("attention " + name + " is not 16-byte aligned");
    }

    private static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    private static long ceilDiv(long a, long b) { return (a + b - 1) / b; }
}
