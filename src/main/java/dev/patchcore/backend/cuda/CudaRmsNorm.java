package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

/**
 * RMSNorm on the GPU ({@code src/main/cuda/rmsnorm.cu}): plain, fused with the residual add that precedes it, and
 * the backward. Semantics are exactly {@link Backend#rmsNorm}, {@link Backend#addRmsNorm} and
 * {@link Backend#rmsNormBackward}. The gain gradient is reduced without float atomics: every backward block sums its
 * rows' contributions into its own row of an F32 [blocks, d] scratch buffer (rows up to 2048 wide: one warp per row,
 * partials in registers, ~1–2 blocks per SM; otherwise one block per row), and a second kernel sums those rows in
 * a fixed order into dGain, so results are bit-identical run to run.
 */
public final class CudaRmsNorm {
    /** Forward: one warp per row, this many warps (rows) per block. */
    private static final int FORWARD_WARPS = 8;
    /** Gain-gradient column reduce: 32 columns × 32 partial-row groups per block. */
    static final int REDUCE_ROWS = 32;
    /** Warp-per-row backward: this many warps (rows in flight) per block ({@code BWD_WARPS} in rmsnorm.cu). */
    static final int BACKWARD_WARPS = 8;
    /** Widest row the warp-per-row backward holds in registers: 8 columns × 32 lanes × 8 groups. */
    static final int BACKWARD_ROWS_MAX_WIDTH = 2048;
    /** Pipelined forward kernels: warps per block ({@code PIPE_WARPS} in rmsnorm.cu). */
    static final int PIPE_WARPS = 8;
    /**
     * Variant 1 (default): forward and fused add with rows streamed through a cp.async ring of shared memory
     * (rmsnorm_*fwd_pipe*); H100 run 6: 1.08× and 1.06× the register-cached kernels, bit-identical results.
     */
    public static final int VARIANT_PIPELINED = 1;
    /** Variant 2: the register-cached forward kernels (the default until H100 run 6). */
    public static final int VARIANT_CACHED = 2;

    /** Backward variant 1 (default): the warp-per-row kernel writes per-block partials, a second kernel sums them. */
    public static final int BACKWARD_TWO_KERNELS = 1;
    /**
     * Backward variant 2: the same kernel's last blocks sum the partials (rmsnorm_bwd_fused*; one launch, no kernel
     * boundary before the gain gradient). H100 runs 12, 14 and 16: 1.03×, 1.00× and 1.00× at the 370M shape (kernel
     * time), 0.92× at 2112 rows. Its gain gradient is summed in another fixed order than variant 1's (dx is bitwise). (Variants tried and removed: a two-pass split, 0.73× in run 12; each warp's next row loaded during
     * the current one's arithmetic, 0.96× in run 14.)
     */
    public static final int BACKWARD_FUSED_REDUCE = 2;
    /**
     * Backward variants 3 and 4: a team of ceil(d / 256) warps per row, 8 columns per lane, taking 2 (variant 3) or 4
     * (variant 4) consecutive rows per batch, several teams per block (rmsnorm_bwd_teams{2,4}_bf16, then the same
     * reduce kernel as variant 1). Written after H100 run 15 from run 13's profile; H100 run 16 at the 370M shape:
     * variant 3 1.09–1.10× (66.6 % of copy against 60.6–60.8 %), variant 4 1.06×.
     */
    public static final int BACKWARD_TEAMS_R2 = 3;
    public static final int BACKWARD_TEAMS_R4 = 4;
    /**
     * Backward variant 5 (compute capability 9+; elsewhere variant 1 runs): variant 3's teams with each team's batches
     * brought into shared memory by the bulk-copy engine, {@link #BULK_STAGES} batches in flight per team
     * (rmsnorm_bwd_bulk2_bf16, then the same reduce kernel). Written after H100 run 15; H100 run 16: 0.99×.
     */
    public static final int BACKWARD_BULK = 5;
    /**
     * Backward variant 6: variant 3's kernel whose last blocks sum the partial rows into dGain, as variant 2 does for
     * variant 1 (rmsnorm_bwd_teams2_fused_bf16, cooperative launch, variant 3's grid): one launch, no kernel boundary,
     * aimed at variant 3's ≈ 4 µs that do not scale with the rows. Written after H100 run 16, not yet run on a GPU.
     * dx is bitwise variant 3's; the gain gradient is summed in another fixed order.
     */
    public static final int BACKWARD_TEAMS_FUSED = 6;
    /**
     * Backward variant 7: variant 3 software-pipelined in registers, each team loading its next batch before the
     * current one's arithmetic and barrier (rmsnorm_bwd_teams2_prefetch_bf16, at most {@link #TEAM_PF_MAX_WARPS} warps
     * per block, then the same reduce kernel). Written after H100 run 16, not yet run on a GPU. dx is bitwise
     * variant 3's; the partial rows are per block of other teams, so the gain gradient's order differs.
     */
    public static final int BACKWARD_TEAMS_PREFETCH = 7;
    /**
     * Backward variant 8: variant 7's prefetching team kernel whose last blocks sum the partial rows into dGain, as
     * variant 6 does for variant 3 (rmsnorm_bwd_teams2_prefetch_fused_bf16, cooperative launch, variant 7's block size
     * and grid, variant 6's arrival counter and reducers): the combination to make the default if 6 and 7 both help.
     * Written after H100 run 16, not yet run on a GPU. dx is bitwise variant 3's; the gain gradient is summed in
     * another fixed order.
     */
    public static final int BACKWARD_TEAMS_PREFETCH_FUSED = 8;
    /** Ring stages per team of the bulk-copy backward ({@code BULK_STAGES} in rmsnorm.cu). */
    static final int BULK_STAGES = 3;
    /** Team kernels: at most this many warps per block ({@code TEAM_MAX_WARPS} / {@code TEAM_R4_WARPS} in rmsnorm.cu). */
    static final int TEAM_R2_MAX_WARPS = 16, TEAM_R4_MAX_WARPS = 12;
    /** Prefetching team kernels (variants 7, 8): at most this many warps per block ({@code TEAM_PF_WARPS} in rmsnorm.cu). */
    static final int TEAM_PF_MAX_WARPS = 12;
    /** Team kernels: at most this many teams per block (one named barrier each, {@code TEAM_MAX_TEAMS}). */
    static final int TEAM_MAX_TEAMS = 8;

    private final KernelContext ctx;
    /** The add of {@link #backwardAccumulate}'s fallback (shapes and variants without accumulating kernels). */
    private final CudaElementwise elementwise;
    private int variant;
    private int backwardVariant = BACKWARD_TWO_KERNELS;
    /**
     * Whether {@link #backwardAccumulate} may use the accumulating kernels (written without a GPU; emulator-checked):
     * {@code -Dpatchcore.rmsnormbwd.accumulate=false} makes it the backward and an add, as before them.
     */
    private boolean accumulateKernels = !"false".equals(System.getProperty("patchcore.rmsnormbwd.accumulate"));
    /** Arrival counter of backward variants 2, 6 and 8 (one u32, 0 between launches), allocated at its first use. */
    private Tensor arrivals;

    public CudaRmsNorm(KernelContext ctx) {
        if (ctx == null) throw new IllegalArgumentException("kernel context is null");
        this.ctx = ctx;
        this.elementwise = new CudaElementwise(ctx);
        this.variant = VARIANT_PIPELINED;
    }

    /**
     * Which forward kernels run where both apply: {@link #VARIANT_PIPELINED} (default) or {@link #VARIANT_CACHED}.
     * The backward is the warp-per-row kernel in both (a pipelined backward measured 0.89× on an H100 and was removed).
     */
    public void setVariant(int variant) {
        if (variant != VARIANT_CACHED && variant != VARIANT_PIPELINED)
            throw new IllegalArgumentException("rmsNorm variant must be 1 (pipelined) or 2 (register-cached), got " + variant);
        this.variant = variant;
    }

    public int variant() { return variant; }

    /**
     * Which backward runs on rows the warp-per-row kernel takes: {@link #BACKWARD_TWO_KERNELS},
     * {@link #BACKWARD_FUSED_REDUCE}, {@link #BACKWARD_TEAMS_R2}, {@link #BACKWARD_TEAMS_R4}, {@link #BACKWARD_BULK},
     * {@link #BACKWARD_TEAMS_FUSED}, {@link #BACKWARD_TEAMS_PREFETCH} or {@link #BACKWARD_TEAMS_PREFETCH_FUSED}.
     */
    public void setBackwardVariant(int variant) {
        if (variant < BACKWARD_TWO_KERNELS || variant > BACKWARD_TEAMS_PREFETCH_FUSED)
            throw new IllegalArgumentException("rmsNorm backward variant must be 1 (two kernels), 2 (reduce in the last blocks), "
                    + "3 or 4 (warp teams, 2 or 4 rows per batch), 5 (teams fed by bulk copies), 6 (teams, reduce in the "
                    + "last blocks), 7 (teams loading their next batch early) or 8 (7 with the reduce in its last blocks), got " + variant);
        this.backwardVariant = variant;
    }

    public int backwardVariant() { return backwardVariant; }

    /**
     * Blocks of the fused backward that sum the gain-gradient partials: about 8 columns (two float4) each, so each
     * thread loads only a few partial rows (a slice wider than a block's threads takes more passes); at most half the
     * grid (one block when the grid is one), so the blocks that spin waiting for the others never hold every SM slot.
     */
    static int fusedReducers(int d, int blocks) {
        return Math.max(1, Math.min(blocks / 2, d / 8));
    }

    /** Pipelined kernels take rows of width d % 8 == 0, d ≤ 2048 (G = 4 groups per lane up to 1024, else 8). */
    static int pipeGroups(int d) { return d % 8 != 0 || d > 2048 ? 0 : d <= 1024 ? 4 : 8; }

    /** Ring stages of the pipelined kernels ({@code PipeStages} in rmsnorm.cu): 3 at G = 4, 2 at G = 8. */
    static int pipeStages(int groups) { return groups <= 4 ? 3 : 2; }

    /** Dynamic shared memory of a pipelined forward kernel: the warps' rings of 16-byte chunks. */
    static int pipeSharedBytes(int groups, int inputs) {
        return PIPE_WARPS * pipeStages(groups) * inputs * groups * 32 * 16;
    }

    /** Persistent grid of the pipelined kernels: launch bounds allow 2 blocks per SM at G = 4, 1 at G = 8. */
    private int pipeBlocks(int n, int groups) {
        return Math.min(ceilDiv(n, PIPE_WARPS), (groups <= 4 ? 2 : 1) * ctx.multiprocessorCount());
    }

    private boolean usePipe(int d, Tensor... tensors) {
        if (variant != VARIANT_PIPELINED || pipeGroups(d) == 0) return false;
        for (Tensor t : tensors) if (!aligned16(t)) return false;
        return true;
    }

    public Backend.RmsNormOut forward(Tensor x, Tensor gain, float eps) {
        int d = requireRows("x", x).dim(1);
        int n = x.dim(0);
        requireGain(gain, d);
        requireEps(eps);
        Tensor y = ctx.scratch(DType.BF16, n, d);
        Tensor rstd = ctx.scratch(DType.F32, n);
        if (n > 0 && usePipe(d, x, gain, y)) {
            int g = pipeGroups(d);
            ctx.launch("rmsnorm_fwd_pipe" + g + "_bf16", pipeBlocks(n, g), 1, 1, 32 * PIPE_WARPS, 1, 1,
                    pipeSharedBytes(g, 1), y, rstd, x, gain, n, d, eps);
        } else if (n > 0) ctx.launch("rmsnorm_fwd_bf16", forwardBlocks(n), 1, 1, 32 * FORWARD_WARPS, 1, 1, 0,
                y, rstd, x, gain, n, d, eps);
        return new Backend.RmsNormOut(y, rstd);
    }

    public Backend.AddRmsNormOut addForward(Tensor residual, Tensor branch, Tensor gain, float eps) {
        int d = requireRows("residual", residual).dim(1);
        int n = residual.dim(0);
        requireRows("branch", branch);
        if (!branch.sameShape(residual))
            throw new IllegalArgumentException("addRmsNorm: branch " + branch + " does not match residual " + residual);
        requireGain(gain, d);
        requireEps(eps);
        Tensor sum = ctx.scratch(DType.BF16, n, d);
        Tensor y = ctx.scratch(DType.BF16, n, d);
        Tensor rstd = ctx.scratch(DType.F32, n);
        if (n > 0 && usePipe(d, residual, branch, gain, sum, y)) {
            int g = pipeGroups(d);
            ctx.launch("rmsnorm_add_fwd_pipe" + g + "_bf16", pipeBlocks(n, g), 1, 1, 32 * PIPE_WARPS, 1, 1,
                    pipeSharedBytes(g, 2), sum, y, rstd, residual, branch, gain, n, d, eps);
        } else if (n > 0) ctx.launch("rmsnorm_add_fwd_bf16", forwardBlocks(n), 1, 1, 32 * FORWARD_WARPS, 1, 1, 0,
                sum, y, rstd, residual, branch, gain, n, d, eps);
        return new Backend.AddRmsNormOut(sum, y, rstd);
    }

    /** Off: {@link #backwardAccumulate} is the backward and an add ({@code -Dpatchcore.rmsnormbwd.accumulate=false}). */
    void setAccumulateKernels(boolean on) { this.accumulateKernels = on; }

    /** Returns dx; dGain (F32 [d]) += Σ_rows dy · x · rstd. */
    public Tensor backward(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain) {
        return backward(dy, x, gain, rstd, dGain, null);
    }

    /**
     * {@link Backend#rmsNormBackwardAccumulate}: dxAcc (BF16, x's shape) += dx in place, dGain as {@link #backward}.
     * Where the backward variant has accumulating kernels (variants 1–4 and 6–8, rows the warp-per-row and team
     * kernels take: d % 8 == 0, d ≤ 2048, 16-byte aligned tensors) one kernel reads dxAcc, adds dx in float and stores
     * the sum once rounded (rmsnorm_bwd_*_acc_bf16); elsewhere (variant 5 on compute capability 9+, wider, odd-width or
     * misaligned rows) the backward writes dx to scratch and an add kernel adds it. Returns dxAcc.
     */
    public Tensor backwardAccumulate(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor dxAcc) {
        require("dxAcc", dxAcc, DType.BF16);
        if (!dxAcc.sameShape(x))
            throw new IllegalArgumentException("rmsNormBackwardAccumulate: dxAcc " + dxAcc + " does not match x " + x);
        if (dxAcc.overlaps(dy) || dxAcc.overlaps(x))
            throw new IllegalArgumentException("rmsNormBackwardAccumulate: dxAcc " + dxAcc + " shares memory with dy or x");
        return backward(dy, x, gain, rstd, dGain, dxAcc);
    }

    /** dx into scratch (acc null) or added to acc in place; returns it. */
    private Tensor backward(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor acc) {
        int d = requireRows("x", x).dim(1);
        int n = x.dim(0);
        requireRows("dy", dy);
        if (!dy.sameShape(x)) throw new IllegalArgumentException("rmsNormBackward: dy " + dy + " does not match x " + x);
        requireGain(gain, d);
        require("rstd", rstd, DType.F32);
        if (rstd.numel() != n) throw new IllegalArgumentException("rmsNormBackward: rstd " + rstd + " must have " + n + " elements");
        require("dGain", dGain, DType.F32);
        if (dGain.numel() != d) throw new IllegalArgumentException("rmsNormBackward: dGain " + dGain + " must have " + d + " elements");
        if ((long) d * Float.BYTES > 48 * 1024)
            throw new IllegalArgumentException("rmsNormBackward: width " + d + " exceeds the 12288 the kernel's shared gain accumulator holds");

        boolean accumulate = acc != null;
        boolean rows = d % 8 == 0 && d <= BACKWARD_ROWS_MAX_WIDTH && aligned16(dy) && aligned16(x) && aligned16(gain)
                && (!accumulate || aligned16(acc));
        boolean bulk = backwardVariant == BACKWARD_BULK && ctx.computeCapabilityMajor() >= 9;
        if (accumulate && n > 0 && !(rows && !bulk && accumulateKernels)) {
            // No accumulating kernel for this variant or shape: the backward into scratch, then the add.
            elementwise.addInPlace(acc, backward(dy, x, gain, rstd, dGain, null));
            return acc;
        }
        Tensor dx = accumulate ? acc : ctx.scratch(DType.BF16, n, d);
        if (n == 0) return dx;
        Tensor partial;  // F32 [blocks, d]: each block's share of the gain gradient
        if (rows && aligned16(dx)) {
            switch (backwardVariant) {
                case BACKWARD_TEAMS_R2, BACKWARD_TEAMS_R4, BACKWARD_TEAMS_PREFETCH -> partial = teamBackward(accumulate, dx, dGain, dy, x, gain, rstd, n, d);
                case BACKWARD_TEAMS_FUSED, BACKWARD_TEAMS_PREFETCH_FUSED -> {
                    teamBackward(accumulate, dx, dGain, dy, x, gain, rstd, n, d);
                    return dx;  // its last blocks have added the partials into dGain
                }
                case BACKWARD_BULK -> partial = bulk ? bulkBackward(dx, dy, x, gain, rstd, n, d)
                        : warpPerRowBackward(false, accumulate, dx, dGain, dy, x, gain, rstd, n, d);
                case BACKWARD_FUSED_REDUCE -> {
                    warpPerRowBackward(true, accumulate, dx, dGain, dy, x, gain, rstd, n, d);
                    return dx;  // its last blocks have added the partials into dGain
                }
                default -> partial = warpPerRowBackward(false, accumulate, dx, dGain, dy, x, gain, rstd, n, d);
            }
        } else {
            // Wide, odd-width or misaligned rows: one block per row at a time; threads cover 8 columns (16 bytes) each.
            int threads = Math.clamp(roundUp(ceilDiv(d, 8), 32), 64, 256);
            partial = ctx.scratch(DType.F32, Math.min(n, ctx.multiprocessorCount() * Math.max(1, 1024 / threads)), d);
            ctx.launch("rmsnorm_bwd_bf16", partial.dim(0), 1, 1, threads, 1, 1, d * Float.BYTES,
                    dx, partial, dy, x, gain, rstd, n, d);
        }
        ctx.launch("rmsnorm_bwd_gain_reduce", ceilDiv(d, 32), 1, 1, 32, REDUCE_ROWS, 1, 0,
                dGain, partial, partial.dim(0), d);
        return dx;
    }

    /** The accumulating twin of a backward kernel ({@code rmsnorm_bwd_*_acc_bf16}) when {@code accumulate}. */
    private static String kernel(String name, boolean accumulate) {
        return accumulate ? name.substring(0, name.length() - "_bf16".length()) + "_acc_bf16" : name;
    }

    /**
     * Variants 1 and 2: one warp per row, rows held in registers, gain-gradient partials in registers, as many blocks
     * as stay resident (launch bounds: 2 per SM for d ≤ 1024, 1 for d ≤ 2048), so the partial buffer stays small.
     * Fused (variant 2): the kernel's last blocks also add the partials into dGain.
     */
    private Tensor warpPerRowBackward(boolean fused, boolean accumulate, Tensor dx, Tensor dGain, Tensor dy, Tensor x, Tensor gain, Tensor rstd, int n, int d) {
        boolean narrow = d <= BACKWARD_ROWS_MAX_WIDTH / 2;
        int blocks = Math.min(ceilDiv(n, BACKWARD_WARPS), backwardResidentRows(d, ctx.multiprocessorCount()) / BACKWARD_WARPS);
        Tensor partial = ctx.scratch(DType.F32, blocks, d);
        if (fused)
            ctx.launchCooperative(kernel(narrow ? "rmsnorm_bwd_fused4_bf16" : "rmsnorm_bwd_fused8_bf16", accumulate), blocks, 1, 1, 32 * BACKWARD_WARPS, 1, 1,
                    d * Float.BYTES, dx, partial, dGain, arrivals(), dy, x, gain, rstd, n, d, fusedReducers(d, blocks));
        else
            ctx.launch(kernel(narrow ? "rmsnorm_bwd_rows4_bf16" : "rmsnorm_bwd_rows8_bf16", accumulate), blocks, 1, 1, 32 * BACKWARD_WARPS, 1, 1,
                    d * Float.BYTES, dx, partial, dy, x, gain, rstd, n, d);
        return partial;
    }

    /**
     * Variants 3, 4, 6, 7 and 8: teams of ceil(d / 256) warps, 2 or 4 rows per batch, as many teams per block as the
     * kernel's block limit allows (≤ 8), and a persistent grid of as many blocks as the occupancy calculator says stay
     * resident. Variants 6 and 8 launch cooperatively, their last blocks adding the partials into dGain.
     */
    private Tensor teamBackward(boolean accumulate, Tensor dx, Tensor dGain, Tensor dy, Tensor x, Tensor gain, Tensor rstd, int n, int d) {
        String kernel = kernel(switch (backwardVariant) {
            case BACKWARD_TEAMS_R4 -> "rmsnorm_bwd_teams4_bf16";
            case BACKWARD_TEAMS_FUSED -> "rmsnorm_bwd_teams2_fused_bf16";
            case BACKWARD_TEAMS_PREFETCH -> "rmsnorm_bwd_teams2_prefetch_bf16";
            case BACKWARD_TEAMS_PREFETCH_FUSED -> "rmsnorm_bwd_teams2_prefetch_fused_bf16";
            default -> "rmsnorm_bwd_teams2_bf16";
        }, accumulate);
        int rowsPerBatch = backwardVariant == BACKWARD_TEAMS_R4 ? 4 : 2;
        int maxWarps = switch (backwardVariant) {
            case BACKWARD_TEAMS_R4 -> TEAM_R4_MAX_WARPS;
            case BACKWARD_TEAMS_PREFETCH, BACKWARD_TEAMS_PREFETCH_FUSED -> TEAM_PF_MAX_WARPS;
            default -> TEAM_R2_MAX_WARPS;
        };
        int teams = teamsPerBlock(d, maxWarps), threads = 32 * ceilDiv(d, 256) * teams;
        int resident = ctx.residentBlocksPerMultiprocessor(kernel, threads, d * Float.BYTES) * ctx.multiprocessorCount();
        Tensor partial = ctx.scratch(DType.F32, Math.min(ceilDiv(n, rowsPerBatch * teams), resident), d);
        int blocks = partial.dim(0);
        if (backwardVariant == BACKWARD_TEAMS_FUSED || backwardVariant == BACKWARD_TEAMS_PREFETCH_FUSED)
            ctx.launchCooperative(kernel, blocks, 1, 1, threads, 1, 1, d * Float.BYTES,
                    dx, partial, dGain, arrivals(), dy, x, gain, rstd, n, d, fusedReducers(d, blocks));
        else ctx.launch(kernel, blocks, 1, 1, threads, 1, 1, d * Float.BYTES, dx, partial, dy, x, gain, rstd, n, d);
        return partial;
    }

    /** Variant 5: variant 3's teams and grid, with each team's ring of bulk-copied batches in dynamic shared memory. */
    private Tensor bulkBackward(Tensor dx, Tensor dy, Tensor x, Tensor gain, Tensor rstd, int n, int d) {
        String kernel = "rmsnorm_bwd_bulk2_bf16";
        int teams = teamsPerBlock(d, TEAM_R2_MAX_WARPS), threads = 32 * ceilDiv(d, 256) * teams, shared = bulkSharedBytes(d, teams);
        int resident = ctx.residentBlocksPerMultiprocessor(kernel, threads, shared) * ctx.multiprocessorCount();
        Tensor partial = ctx.scratch(DType.F32, Math.min(ceilDiv(n, 2 * teams), resident), d);
        ctx.launch(kernel, partial.dim(0), 1, 1, threads, 1, 1, shared, dx, partial, dy, x, gain, rstd, n, d);
        return partial;
    }

    /** Teams of ceil(d / 256) warps (8 columns per lane) per block of at most {@code maxWarps} warps, and at most 8. */
    private static int teamsPerBlock(int d, int maxWarps) {
        return Math.min(TEAM_MAX_TEAMS, maxWarps / ceilDiv(d, 256));
    }

    /**
     * Dynamic shared memory of the bulk-copy backward: d floats (the teams' gain gradients), then per team
     * {@link #BULK_STAGES} stages of 2 rows of dy and of x (bf16), then per team one 8-byte mbarrier per stage.
     * 102 496 bytes at d = 1024 (4 teams): two blocks per SM.
     */
    static int bulkSharedBytes(int d, int teams) {
        return d * Float.BYTES + teams * BULK_STAGES * (2 * 2 * d * 2 + 8);
    }

    /** The arrival counter of the kernels that reduce in their last blocks (variants 2, 6 and 8), zeroed once. */
    private Tensor arrivals() {
        if (arrivals == null) arrivals = ctx.allocate(DType.I32, 1);
        return arrivals;
    }

    /**
     * Rows the warp-per-row backward has in flight at once at width d ≤ 2048 (one per resident warp: 2 blocks of
     * {@link #BACKWARD_WARPS} per SM for d ≤ 1024, 1 for d ≤ 2048) — its grid, and `bench kernels`' fixed-cost row.
     */
    public static int backwardResidentRows(int d, int sms) {
        return (d <= BACKWARD_ROWS_MAX_WIDTH / 2 ? 2 : 1) * sms * BACKWARD_WARPS;
    }

    private static boolean aligned16(Tensor t) { return (CudaStorage.addressOf(t) & 15) == 0; }

    private int forwardBlocks(int n) {
        return Math.min(ceilDiv(n, FORWARD_WARPS), 32 * ctx.multiprocessorCount());
    }

    private static Tensor requireRows(String what, Tensor t) {
        require(what, t, DType.BF16);
        if (t.rank() != 2 || t.dim(1) == 0)
            throw new IllegalArgumentException("rmsNorm: " + what + " must be 2-D [rows, width > 0], got " + t);
        return t;
    }

    private static void requireGain(Tensor gain, int d) {
        require("gain", gain, DType.BF16);
        if (gain.numel() != d) throw new IllegalArgumentException("rmsNorm: gain " + gain + " must have " + d + " elements");
    }

    private static void requireEps(float eps) {
        if (!(eps >= 0f) || Float.isInfinite(eps)) throw new IllegalArgumentException("rmsNorm: eps must be finite and >= 0, got " + eps);
    }

    private static void require(String what, Tensor t, DType dtype) {
        if (t == null) throw new IllegalArgumentException("rmsNorm: " + what + " is null");
        if (t.device() != Device.CUDA || t.dtype() != dtype)
            throw new IllegalArgumentException("rmsNorm: " + what + " must be " + dtype + " on CUDA, got " + t);
    }

    private static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    private static int roundUp(int a, int m) { return ceilDiv(a, m) * m; }
}
