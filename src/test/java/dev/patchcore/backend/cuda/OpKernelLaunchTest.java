package dev.patchcore.backend.cuda;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The launcher classes of RMSNorm, RoPE, SwiGLU, K-target cross-entropy and AdamW against a recording
 * {@link KernelContext}, without a GPU: every launch must name a kernel that exists in {@code src/main/cuda}, pass
 * arguments whose count and kinds match that kernel's C signature, and respect its block-size and shared-memory
 * limits; user mistakes must end in IllegalArgumentException. The numerics are checked against the CPU backend by
 * the selftest (and by {@code src/test/cuda/kernels_test.cu} directly on a GPU).
 */
class OpKernelLaunchTest {
    private static final List<String> FILES = List.of("rmsnorm.cu", "rope.cu", "swiglu.cu", "cross_entropy.cu", "adamw.cu",
            "attention_decode.cu", "repeat_heads.cu");
    /** Also signature-checked, but some of their kernels are launched outside a launcher class (sum, casts). */
    private static final List<String> CHECKED_ONLY = List.of("elementwise.cu", "patch_embed.cu");
    // Initialized before SIGNATURES, which parses with them.
    private static final Pattern KERNEL = Pattern.compile(
            "extern\\s+\"C\"\\s+__global__\\s+void\\s+(?:__launch_bounds__\\(([^)]*)\\)\\s*)?(\\w+)\\s*\\(([^)]*)\\)");
    private static final Pattern CONSTANT = Pattern.compile("constexpr\\s+int\\s+(\\w+)\\s*=\\s*(\\d+)\\s*;");
    /** A one-parameter macro (continued with backslashes) whose body declares kernels, e.g. DECODE_PARTIAL_GROUPED(G). */
    private static final Pattern KERNEL_MACRO = Pattern.compile("(?m)^#define\\s+(\\w+)\\((\\w+)\\)((?:.*\\\\\\n)+.*)");
    private static final Map<String, Signature> SIGNATURES = parseSignatures(FILES);
    private static final Map<String, Signature> ALL_SIGNATURES = parseAll();

    private final RecordingContext ctx = new RecordingContext();

    /** A kernel's parameter kinds ("ptr", "i32", "i64", "f32") and its __launch_bounds__ thread limit. */
    record Signature(List<String> params, int maxThreads) {}

    record Launch(String name, int[] grid, int[] block, int shared, Object[] args, boolean cooperative) {
        int threads() { return block[0] * block[1] * block[2]; }
    }

    /** Hands out fake, 256-byte aligned device addresses and records launches. */
    static final class RecordingContext implements KernelContext {
        final List<Launch> launches = new ArrayList<>();
        /** Every kernel name launched so far, kept when a test clears {@link #launches} between its cases. */
        final Set<String> everLaunched = new HashSet<>();
        private long next = 1L << 32;

        @Override
        public void launch(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes,
                           Object... args) {
            launches.add(new Launch(name, new int[] {gridX, gridY, gridZ}, new int[] {blockX, blockY, blockZ}, sharedBytes, args, false));
            everLaunched.add(name);
        }

        @Override
        public void launchCooperative(String name, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes,
                                      Object... args) {
            launches.add(new Launch(name, new int[] {gridX, gridY, gridZ}, new int[] {blockX, blockY, blockZ}, sharedBytes, args, true));
            everLaunched.add(name);
        }

        @Override
        public Tensor scratch(DType dtype, int... shape) {
            long n = 1;
            for (int s : shape) n *= s;
            long bytes = Math.max(1, n * dtype.bytes());
            Tensor t = new Tensor(new CudaStorage(next, bytes), dtype, shape);
            next += (bytes + 255) / 256 * 256;
            return t;
        }

        @Override
        public int multiprocessorCount() { return 132; }

        /** Occupancy queries, in order: (kernel, block threads, dynamic shared bytes); each answers {@link #residentPerSm}. */
        final List<String> occupancyQueries = new ArrayList<>();
        int residentPerSm = 2;
        /** The GPU's compute capability major version (0: unknown, as on a GPU-less machine). */
        int computeCapabilityMajor;

        @Override
        public int computeCapabilityMajor() { return computeCapabilityMajor; }

        @Override
        public int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes) {
            occupancyQueries.add(name + " " + blockThreads + " " + sharedBytes);
            return residentPerSm;
        }

        /** Host-to-device int copies, in order: (destination, values). */
        final List<Map.Entry<Tensor, int[]>> intCopies = new ArrayList<>();
        final List<Tensor> freed = new ArrayList<>();

        @Override
        public Tensor allocate(DType dtype, int... shape) { return scratch(dtype, shape); }

        @Override
        public void free(Tensor t) { freed.add(t); }

        @Override
        public void copyInts(Tensor dst, int[] src) { intCopies.add(Map.entry(dst, src.clone())); }

        // None of these ops uses tensor maps (only a flash attention variant does; CudaFlashAttentionTest covers it).
        @Override
        public TensorMaps.TensorMap tensorMap(TensorMaps.Bf16Tiled spec) { throw new AssertionError("unexpected tensor map"); }

        @Override
        public boolean tensorMapsAvailable() { return false; }

        Launch only(String name) {
            List<Launch> l = launches.stream().filter(x -> x.name().equals(name)).toList();
            assertEquals(1, l.size(), "launches of " + name);
            return l.get(0);
        }
    }

    @AfterEach
    void everyLaunchMatchesItsKernel() {
        for (Launch l : ctx.launches) {
            Signature sig = ALL_SIGNATURES.get(l.name());
            assertNotNull(sig, "no extern \"C\" kernel " + l.name() + " in " + FILES + " or " + CHECKED_ONLY);
            assertEquals(sig.params().size(), l.args().length, l.name() + " argument count");
            for (int i = 0; i < l.args().length; i++) {
                String want = sig.params().get(i);
                Object a = l.args()[i];
                boolean ok = switch (a) {
                    case Tensor t -> want.equals("ptr");
                    case Long v -> want.equals("i64") || (want.equals("ptr") && v == 0L);  // 0L: a null pointer
                    case Integer v -> want.equals("i32");
                    case Float v -> want.equals("f32");
                    default -> false;
                };
                assertTrue(ok, l.name() + " argument " + i + ": " + a + " passed for a " + want + " parameter");
            }
            for (int g : l.grid()) assertTrue(g >= 1, l.name() + " grid " + Arrays.toString(l.grid()));
            assertTrue(l.grid()[1] <= 65535 && l.grid()[2] <= 65535, l.name() + " grid " + Arrays.toString(l.grid()));
            assertTrue(l.threads() % 32 == 0 && l.threads() <= sig.maxThreads(),
                    l.name() + " block " + Arrays.toString(l.block()) + " vs limit " + sig.maxThreads());
            // Above 48 KB CudaRuntime opts the kernel in; 166912 bytes is the A100's (sm_80) opt-in maximum, the
            // smallest of the GPUs the fatbin targets.
            assertTrue(l.shared() >= 0 && l.shared() <= 166_912, l.name() + " dynamic shared " + l.shared());
        }
    }

    private Tensor bf16(int... shape) { return ctx.scratch(DType.BF16, shape); }

    private Tensor f32(int... shape) { return ctx.scratch(DType.F32, shape); }

    // ------------------------------------------------------------------ RMSNorm

    @Test
    void rmsNormForwardShapes() {
        Tensor x = bf16(37, 2560), gain = bf16(2560);
        Backend.RmsNormOut out = new CudaRmsNorm(ctx).forward(x, gain, 1e-5f);
        assertArrayEquals(new int[] {37, 2560}, out.y().shape());
        assertEquals(DType.BF16, out.y().dtype());
        assertArrayEquals(new int[] {37}, out.rstd().shape());
        assertEquals(DType.F32, out.rstd().dtype());
        Launch l = ctx.only("rmsnorm_fwd_bf16");
        assertEquals(256, l.threads());
        assertEquals(5, l.grid()[0]);  // 8 rows per block
        assertEquals(37, l.args()[4]);
        assertEquals(2560, l.args()[5]);
    }

    @Test
    void addRmsNormReturnsSumAndNormalized() {
        Tensor r = bf16(16, 128), b = bf16(16, 128), gain = bf16(128);
        CudaRmsNorm norm = new CudaRmsNorm(ctx);
        norm.setVariant(CudaRmsNorm.VARIANT_CACHED);  // the register-cached kernel (the default takes the pipelined one)
        Backend.AddRmsNormOut out = norm.addForward(r, b, gain, 1e-5f);
        assertArrayEquals(new int[] {16, 128}, out.sum().shape());
        assertArrayEquals(new int[] {16, 128}, out.y().shape());
        assertArrayEquals(new int[] {16}, out.rstd().shape());
        Launch l = ctx.only("rmsnorm_add_fwd_bf16");
        assertEquals(out.sum(), l.args()[0]);
        assertEquals(r, l.args()[3]);
        assertEquals(b, l.args()[4]);
    }

    @Test
    void rmsNormBackwardReducesGainThroughPartialRows() {
        int n = 5000, d = 2048;
        Tensor dy = bf16(n, d), x = bf16(n, d), gain = bf16(d), rstd = f32(n), dGain = f32(d);
        Tensor dx = new CudaRmsNorm(ctx).backward(dy, x, gain, rstd, dGain);
        assertArrayEquals(new int[] {n, d}, dx.shape());
        Launch main = ctx.only("rmsnorm_bwd_rows8_bf16");
        Launch reduce = ctx.only("rmsnorm_bwd_gain_reduce");
        Tensor partial = (Tensor) main.args()[1];
        int blocks = main.grid()[0];
        assertEquals(132, blocks, "d = 2048: one resident block per SM");
        assertArrayEquals(new int[] {blocks, d}, partial.shape(), "one partial row per block");
        assertEquals(d * Float.BYTES, main.shared());
        assertEquals(32 * CudaRmsNorm.BACKWARD_WARPS, main.threads());
        assertEquals(blocks, reduce.args()[2]);
        assertEquals(partial, reduce.args()[1]);
        assertEquals(dGain, reduce.args()[0]);
        assertEquals(d / 32, reduce.grid()[0]);
        assertArrayEquals(new int[] {32, CudaRmsNorm.REDUCE_ROWS, 1}, reduce.block());
    }

    @Test
    void fusedRmsNormBackwardIsOneLaunchWithItsOwnCounter() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_FUSED_REDUCE);
        Tensor dGain = f32(1024);
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), dGain);
        Launch first = ctx.only("rmsnorm_bwd_fused4_bf16");
        assertTrue(first.cooperative(), "its blocks wait for each other: the whole grid must be resident");
        assertEquals(0, ctx.launches.stream().filter(l -> l.name().equals("rmsnorm_bwd_gain_reduce")).count(), "no second kernel");
        assertEquals(2 * 132, first.grid()[0]);
        assertArrayEquals(new int[] {2 * 132, 1024}, ((Tensor) first.args()[1]).shape(), "one partial row per block");
        assertEquals(dGain, first.args()[2]);
        Tensor counter = (Tensor) first.args()[3];
        assertEquals(DType.I32, counter.dtype());
        assertEquals(128, first.args()[10], "d = 1024: 128 reducers of 8 columns");
        // The counter is allocated once and reused; d = 2048 takes the 8-group kernel, reducers capped by the grid.
        ctx.launches.clear();
        op.backward(bf16(5000, 2048), bf16(5000, 2048), bf16(2048), f32(5000), f32(2048));
        Launch wide = ctx.only("rmsnorm_bwd_fused8_bf16");
        assertSame(counter, wide.args()[3]);
        assertTrue(wide.cooperative());
        assertEquals(66, wide.args()[10], "at most half the grid spins");
        // Few rows: one block, one reducer.
        ctx.launches.clear();
        op.backward(bf16(3, 64), bf16(3, 64), bf16(64), f32(3), f32(64));
        Launch tiny = ctx.only("rmsnorm_bwd_fused4_bf16");
        assertEquals(1, tiny.grid()[0]);
        assertEquals(1, tiny.args()[10]);
        assertThrows(IllegalArgumentException.class, () -> op.setBackwardVariant(9));
        assertThrows(IllegalArgumentException.class, () -> op.setBackwardVariant(0));
    }

    @Test
    void teamRmsNormBackwardsSizeTeamsByWidthAndTheGridByOccupancy() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        // 370M, 2 rows per batch: teams of 4 warps (256 columns each), 4 teams per 512-thread block, 2 blocks per SM.
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TEAMS_R2);
        Tensor dGain = f32(1024);
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), dGain);
        Launch teams2 = ctx.only("rmsnorm_bwd_teams2_bf16");
        Launch reduce = ctx.only("rmsnorm_bwd_gain_reduce");
        assertEquals(512, teams2.threads());
        assertEquals(List.of("rmsnorm_bwd_teams2_bf16 512 4096"), ctx.occupancyQueries);
        assertEquals(2 * 132, teams2.grid()[0]);
        assertEquals(1024 * Float.BYTES, teams2.shared());
        assertArrayEquals(new int[] {2 * 132, 1024}, ((Tensor) teams2.args()[1]).shape(), "one partial row per block");
        assertEquals(teams2.args()[1], reduce.args()[1]);
        assertEquals(2 * 132, reduce.args()[2]);
        assertEquals(dGain, reduce.args()[0]);
        // 4 rows per batch: at most 12 warps per block -> 3 teams; d = 2048 -> teams of 8 warps, one per block.
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TEAMS_R4);
        ctx.launches.clear();
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), f32(1024));
        assertEquals(384, ctx.only("rmsnorm_bwd_teams4_bf16").threads());
        ctx.launches.clear();
        ctx.residentPerSm = 3;
        op.backward(bf16(5000, 2048), bf16(5000, 2048), bf16(2048), f32(5000), f32(2048));
        Launch wide = ctx.only("rmsnorm_bwd_teams4_bf16");
        assertEquals(256, wide.threads());
        assertEquals(3 * 132, wide.grid()[0], "the grid follows the occupancy calculator");
        // Narrow rows: one-warp teams, 8 per block (one named barrier each); few rows -> one block per 8 x 4 rows.
        ctx.launches.clear();
        op.backward(bf16(100, 96), bf16(100, 96), bf16(96), f32(100), f32(96));
        Launch narrow = ctx.only("rmsnorm_bwd_teams4_bf16");
        assertEquals(256, narrow.threads());
        assertEquals(4, narrow.grid()[0]);
        // Shapes the team kernels do not take fall back to the block-per-row kernel, as for the default.
        ctx.launches.clear();
        op.backward(bf16(4, 2560), bf16(4, 2560), bf16(2560), f32(4), f32(2560));
        op.backward(bf16(4, 100), bf16(4, 100), bf16(100), f32(4), f32(100));
        assertEquals(2, ctx.launches.stream().filter(l -> l.name().equals("rmsnorm_bwd_bf16")).count());
        assertEquals(0, ctx.launches.stream().filter(l -> l.name().startsWith("rmsnorm_bwd_teams")).count());
    }

    @Test
    void fusedTeamRmsNormBackwardIsVariant3sGridLaunchedCooperativelyWithTheCounter() {
        // 370M: variant 3's 4 teams × 4 warps per block, 2 blocks per SM; 128 reducers of 8 columns.
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        fusedTeamLaunches(op, CudaRmsNorm.BACKWARD_TEAMS_FUSED, "rmsnorm_bwd_teams2_fused_bf16", 512);
    }

    /**
     * A team backward that reduces in its last blocks (variants 6 and 8): at the 370M shape, {@code threads} per block,
     * two blocks per SM, cooperative, the op's arrival counter and 128 reducers, no reduce kernel after it; at 12 rows two
     * blocks and one reducer, the same counter; a shape the team kernels do not take runs the block-per-row kernel and
     * the reduce kernel. Returns the counter.
     */
    private Tensor fusedTeamLaunches(CudaRmsNorm op, int variant, String kernel, int threads) {
        ctx.residentPerSm = 2;
        ctx.occupancyQueries.clear();  // everyKernelOfTheseFilesIsLaunchableFromJava runs the cases in one context
        op.setBackwardVariant(variant);
        Tensor dGain = f32(1024);
        ctx.launches.clear();
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), dGain);
        Launch fused = ctx.only(kernel);
        assertTrue(fused.cooperative(), "its last blocks wait for the others: the whole grid must be resident");
        assertEquals(0, ctx.launches.stream().filter(l -> l.name().equals("rmsnorm_bwd_gain_reduce")).count(), "no second kernel");
        assertEquals(List.of(kernel + " " + threads + " 4096"), ctx.occupancyQueries);
        assertEquals(threads, fused.threads());
        assertEquals(2 * 132, fused.grid()[0]);
        assertEquals(1024 * Float.BYTES, fused.shared());
        assertArrayEquals(new int[] {2 * 132, 1024}, ((Tensor) fused.args()[1]).shape(), "one partial row per block");
        assertEquals(dGain, fused.args()[2]);
        Tensor counter = (Tensor) fused.args()[3];
        assertEquals(DType.I32, counter.dtype());
        assertEquals(128, fused.args()[10]);
        // Few rows: one block per 4 (variant 6) or 3 (variant 8) teams × 2 rows, one reducer; the counter is reused.
        ctx.launches.clear();
        op.backward(bf16(12, 1024), bf16(12, 1024), bf16(1024), f32(12), f32(1024));
        Launch few = ctx.only(kernel);
        assertEquals(2, few.grid()[0]);
        assertEquals(1, few.args()[10], "at most half the grid spins");
        assertSame(counter, few.args()[3]);
        assertTrue(few.cooperative());
        // Shapes the team kernels do not take run the block-per-row kernel and the reduce kernel.
        ctx.launches.clear();
        op.backward(bf16(4, 100), bf16(4, 100), bf16(100), f32(4), f32(100));
        ctx.only("rmsnorm_bwd_bf16");
        ctx.only("rmsnorm_bwd_gain_reduce");
        return counter;
    }

    @Test
    void prefetchingTeamRmsNormBackwardHasAtMost12WarpsPerBlock() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        ctx.residentPerSm = 2;
        ctx.occupancyQueries.clear();  // everyKernelOfTheseFilesIsLaunchableFromJava runs the cases in one context
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TEAMS_PREFETCH);
        Tensor dGain = f32(1024);
        // 370M: 3 teams of 4 warps per 384-thread block, the grid from the occupancy calculator, then the reduce kernel.
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), dGain);
        Launch pf = ctx.only("rmsnorm_bwd_teams2_prefetch_bf16");
        Launch reduce = ctx.only("rmsnorm_bwd_gain_reduce");
        assertFalse(pf.cooperative());
        assertEquals(384, pf.threads());
        assertEquals(List.of("rmsnorm_bwd_teams2_prefetch_bf16 384 4096"), ctx.occupancyQueries);
        assertEquals(2 * 132, pf.grid()[0]);
        assertEquals(1024 * Float.BYTES, pf.shared());
        assertArrayEquals(new int[] {2 * 132, 1024}, ((Tensor) pf.args()[1]).shape(), "one partial row per block");
        assertEquals(pf.args()[1], reduce.args()[1]);
        assertEquals(2 * 132, reduce.args()[2]);
        assertEquals(dGain, reduce.args()[0]);
        // d = 1536: teams of 6 warps, 2 per block; few rows: one block per 2 teams × 2 rows.
        ctx.launches.clear();
        op.backward(bf16(9, 1536), bf16(9, 1536), bf16(1536), f32(9), f32(1536));
        Launch wide = ctx.only("rmsnorm_bwd_teams2_prefetch_bf16");
        assertEquals(384, wide.threads());
        assertEquals(3, wide.grid()[0]);
        // Narrow rows: one-warp teams, 8 per block.
        ctx.launches.clear();
        op.backward(bf16(100, 96), bf16(100, 96), bf16(96), f32(100), f32(96));
        assertEquals(256, ctx.only("rmsnorm_bwd_teams2_prefetch_bf16").threads());
    }

    @Test
    void prefetchingFusedTeamRmsNormBackwardIsVariant7sGridLaunchedCooperativelyWithTheCounter() {
        // 370M: variant 7's 3 teams × 4 warps per 384-thread block, 2 blocks per SM; variant 6's 128 reducers of 8 columns.
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        Tensor counter = fusedTeamLaunches(op, CudaRmsNorm.BACKWARD_TEAMS_PREFETCH_FUSED, "rmsnorm_bwd_teams2_prefetch_fused_bf16", 384);
        // d = 2048: one team of 8 warps per block, the resident grid, half of it reducing (132 < 2048 / 8).
        ctx.launches.clear();
        op.backward(bf16(5000, 2048), bf16(5000, 2048), bf16(2048), f32(5000), f32(2048));
        Launch wide = ctx.only("rmsnorm_bwd_teams2_prefetch_fused_bf16");
        assertEquals(256, wide.threads());
        assertEquals(2 * 132, wide.grid()[0]);
        assertEquals(132, wide.args()[10]);
        assertSame(counter, wide.args()[3]);
        // d = 1536: teams of 6 warps, 2 per 384-thread block; 9 rows: one block per 2 teams × 2 rows.
        ctx.launches.clear();
        op.backward(bf16(9, 1536), bf16(9, 1536), bf16(1536), f32(9), f32(1536));
        Launch mid = ctx.only("rmsnorm_bwd_teams2_prefetch_fused_bf16");
        assertEquals(384, mid.threads());
        assertEquals(3, mid.grid()[0]);
        assertEquals(1, mid.args()[10]);
        // Variant 6 on the same op shares the one arrival counter (0 between launches, kernels never overlap).
        ctx.launches.clear();
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TEAMS_FUSED);
        op.backward(bf16(12, 1024), bf16(12, 1024), bf16(1024), f32(12), f32(1024));
        assertSame(counter, ctx.only("rmsnorm_bwd_teams2_fused_bf16").args()[3]);
    }

    @Test
    void bulkCopyRmsNormBackwardRunsOnHopperWithItsRingsInSharedMemory() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_BULK);
        ctx.residentPerSm = 2;
        ctx.computeCapabilityMajor = 0;
        // Before Hopper (or with the capability unknown) the variant runs the default kernels.
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), f32(1024));
        ctx.only("rmsnorm_bwd_rows4_bf16");
        ctx.launches.clear();
        ctx.computeCapabilityMajor = 9;
        // 370M: variant 3's teams (4 × 4 warps), 3 stages × 2 rows of dy and x per team, 2 blocks per SM.
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), f32(1024));
        Launch bulk = ctx.only("rmsnorm_bwd_bulk2_bf16");
        assertEquals(512, bulk.threads());
        assertEquals(1024 * 4 + 4 * 3 * (2 * 2 * 1024 * 2 + 8), bulk.shared());
        assertEquals(2 * 132, bulk.grid()[0]);
        assertEquals(2 * 132, ctx.only("rmsnorm_bwd_gain_reduce").args()[2]);
        assertTrue(ctx.occupancyQueries.contains("rmsnorm_bwd_bulk2_bf16 512 " + bulk.shared()), ctx.occupancyQueries.toString());
        // d = 2048: teams of 8 warps, two per block; few rows: one block per 2 teams × 2 rows.
        ctx.launches.clear();
        op.backward(bf16(7, 2048), bf16(7, 2048), bf16(2048), f32(7), f32(2048));
        Launch wide = ctx.only("rmsnorm_bwd_bulk2_bf16");
        assertEquals(512, wide.threads());
        assertEquals(2, wide.grid()[0]);
        assertEquals(2048 * 4 + 2 * 3 * (2 * 2 * 2048 * 2 + 8), wide.shared());
        ctx.computeCapabilityMajor = 0;
    }

    /**
     * rmsNormBackwardAccumulate launches the accumulating twin of each variant's kernel (rmsnorm_bwd_*_acc_bf16) with
     * dxAcc as its dx, at the twin's grid, block and shared memory, and nothing after it but what the variant launches
     * anyway (the reduce kernel for 1, 3, 4 and 7): no scratch dx, no add.
     */
    @Test
    void rmsNormBackwardAccumulateLaunchesTheAccumulatingKernels() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        String[] kernels = {"rmsnorm_bwd_rows4_acc_bf16", "rmsnorm_bwd_fused4_acc_bf16", "rmsnorm_bwd_teams2_acc_bf16",
                "rmsnorm_bwd_teams4_acc_bf16", null, "rmsnorm_bwd_teams2_fused_acc_bf16", "rmsnorm_bwd_teams2_prefetch_acc_bf16",
                "rmsnorm_bwd_teams2_prefetch_fused_acc_bf16"};
        for (int v = 1; v <= 8; v++) {
            if (kernels[v - 1] == null) continue;  // variant 5: see the fallback test below
            op.setBackwardVariant(v);
            Tensor dy = bf16(8192, 1024), x = bf16(8192, 1024), gain = bf16(1024), rstd = f32(8192), dGain = f32(1024), acc = bf16(8192, 1024);
            ctx.launches.clear();
            op.backward(dy, x, gain, rstd, dGain);
            Launch twin = ctx.launches.getFirst();
            ctx.launches.clear();
            assertSame(acc, op.backwardAccumulate(dy, x, gain, rstd, dGain, acc));
            Launch l = ctx.only(kernels[v - 1]);
            assertEquals(twin.name().replace("_bf16", "_acc_bf16"), l.name(), "variant " + v);
            assertSame(acc, l.args()[0], "variant " + v + ": dxAcc is the kernel's dx");
            assertArrayEquals(twin.grid(), l.grid());
            assertArrayEquals(twin.block(), l.block());
            assertEquals(twin.shared(), l.shared());
            assertEquals(twin.cooperative(), l.cooperative());
            boolean reduces = v == 1 || v == 3 || v == 4 || v == 7;
            assertEquals(reduces ? 2 : 1, ctx.launches.size(), "variant " + v + ": " + ctx.launches.stream().map(Launch::name).toList());
            if (reduces) assertSame(dGain, ctx.only("rmsnorm_bwd_gain_reduce").args()[0]);
        }
        // d = 2048: the 8-group warp-per-row kernels.
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TWO_KERNELS);
        ctx.launches.clear();
        Tensor wide = bf16(300, 2048);
        op.backwardAccumulate(bf16(300, 2048), bf16(300, 2048), bf16(2048), f32(300), f32(2048), wide);
        assertSame(wide, ctx.only("rmsnorm_bwd_rows8_acc_bf16").args()[0]);
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_FUSED_REDUCE);
        ctx.launches.clear();
        op.backwardAccumulate(bf16(300, 2048), bf16(300, 2048), bf16(2048), f32(300), f32(2048), wide);
        assertTrue(ctx.only("rmsnorm_bwd_fused8_acc_bf16").cooperative());
        // Variant 5 below compute capability 9 runs variant 1, so its accumulating kernel.
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_BULK);
        ctx.launches.clear();
        op.backwardAccumulate(bf16(64, 1024), bf16(64, 1024), bf16(1024), f32(64), f32(1024), bf16(64, 1024));
        ctx.only("rmsnorm_bwd_rows4_acc_bf16");
    }

    /**
     * Where no accumulating kernel serves (variant 5 on compute capability 9+, odd, wide or misaligned rows, a misaligned
     * dxAcc), rmsNormBackwardAccumulate is the backward into scratch and add_inplace_bf16 into dxAcc; mistakes are
     * IllegalArgumentExceptions. (Not in everyKernelOfTheseFilesIsLaunchableFromJava: add_inplace_bf16 is elementwise.cu's.)
     */
    @Test
    void rmsNormBackwardAccumulateFallsBackToTheBackwardAndAnAdd() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        ctx.computeCapabilityMajor = 9;
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_BULK);
        Tensor acc = bf16(8192, 1024);
        op.backwardAccumulate(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), f32(1024), acc);
        Launch bulk = ctx.only("rmsnorm_bwd_bulk2_bf16");
        Launch add = ctx.only("add_inplace_bf16");
        assertSame(acc, add.args()[0]);
        assertSame(bulk.args()[0], add.args()[1], "the add reads the backward's scratch dx");
        assertEquals(List.of("rmsnorm_bwd_bulk2_bf16", "rmsnorm_bwd_gain_reduce", "add_inplace_bf16"),
                ctx.launches.stream().map(Launch::name).toList());
        ctx.computeCapabilityMajor = 0;
        op.setBackwardVariant(CudaRmsNorm.BACKWARD_TWO_KERNELS);
        // -Dpatchcore.rmsnormbwd.accumulate=false: the accumulating kernels off, the default's backward and the add
        op.setAccumulateKernels(false);
        ctx.launches.clear();
        op.backwardAccumulate(bf16(64, 1024), bf16(64, 1024), bf16(1024), f32(64), f32(1024), bf16(64, 1024));
        assertEquals(List.of("rmsnorm_bwd_rows4_bf16", "rmsnorm_bwd_gain_reduce", "add_inplace_bf16"),
                ctx.launches.stream().map(Launch::name).toList());
        op.setAccumulateKernels(true);
        // odd width and wider than the row kernels: the block-per-row kernel; a dxAcc 2 bytes off 16-byte alignment: the
        // non-accumulating row kernel into (aligned) scratch
        Tensor base = bf16(4 * 1024 + 8);
        Tensor misaligned = new Tensor(base.storage(), DType.BF16, 1L, 4, 1024);
        String[] first = {"rmsnorm_bwd_bf16", "rmsnorm_bwd_bf16", "rmsnorm_bwd_rows4_bf16"};
        Tensor[] accs = {bf16(4, 100), bf16(4, 2560), misaligned};
        for (int i = 0; i < accs.length; i++) {
            Tensor a = accs[i];
            int n = a.dim(0), d = a.dim(1);
            ctx.launches.clear();
            assertSame(a, op.backwardAccumulate(bf16(n, d), bf16(n, d), bf16(d), f32(n), f32(d), a));
            assertEquals(List.of(first[i], "rmsnorm_bwd_gain_reduce", "add_inplace_bf16"),
                    ctx.launches.stream().map(Launch::name).toList(), "d = " + d);
            assertSame(a, ctx.only("add_inplace_bf16").args()[0]);
        }
        Tensor dy = bf16(8, 64), x = bf16(8, 64);
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(8), f32(64), bf16(8, 72)));
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(8), f32(64), f32(8, 64)));
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(8), f32(64), dy));
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(8), f32(64), x.reshape(8, 64)));
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(8), f32(64), null));
        assertThrows(IllegalArgumentException.class, () -> op.backwardAccumulate(dy, x, bf16(64), f32(7), f32(64), bf16(8, 64)));
    }

    @Test
    void rmsNormBackwardPicksTheKernelByWidthAndAlignment() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        // 370M: d = 1024, 8192 rows -> the 4-group warp-per-row kernel, two resident blocks per SM.
        op.backward(bf16(8192, 1024), bf16(8192, 1024), bf16(1024), f32(8192), f32(1024));
        Launch narrow = ctx.only("rmsnorm_bwd_rows4_bf16");
        assertEquals(2 * 132, narrow.grid()[0]);
        assertFalse(narrow.cooperative(), "the default backward's blocks never wait for each other");
        // Few rows: no more blocks than 8-row groups.
        ctx.launches.clear();
        op.backward(bf16(20, 256), bf16(20, 256), bf16(256), f32(20), f32(256));
        assertEquals(3, ctx.only("rmsnorm_bwd_rows4_bf16").grid()[0]);
        // Wider than 2048, odd width, or a view at an odd offset -> the block-per-row kernel.
        ctx.launches.clear();
        op.backward(bf16(4, 2560), bf16(4, 2560), bf16(2560), f32(4), f32(2560));
        op.backward(bf16(4, 100), bf16(4, 100), bf16(100), f32(4), f32(100));
        Tensor big = bf16(5, 64);
        Tensor view = big.reshape(5 * 64).rows(1, 4 * 64).reshape(4, 64);  // starts 2 bytes in: not 16-byte aligned
        op.backward(bf16(4, 64), view, bf16(64), f32(4), f32(64));
        assertEquals(3, ctx.launches.stream().filter(l -> l.name().equals("rmsnorm_bwd_bf16")).count());
        assertEquals(0, ctx.launches.stream().filter(l -> l.name().startsWith("rmsnorm_bwd_rows")).count());
    }

    @Test
    void rmsNormRejectsMistakes() {
        CudaRmsNorm op = new CudaRmsNorm(ctx);
        assertThrows(IllegalArgumentException.class, () -> op.forward(f32(4, 8), bf16(8), 1e-5f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(4, 8), bf16(9), 1e-5f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(32), bf16(32), 1e-5f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(4, 8), bf16(8), Float.NaN));
        assertThrows(IllegalArgumentException.class, () -> op.addForward(bf16(4, 8), bf16(4, 16), bf16(8), 1e-5f));
        assertThrows(IllegalArgumentException.class, () -> op.backward(bf16(4, 8), bf16(4, 8), bf16(8), f32(4), bf16(8)));
        assertThrows(IllegalArgumentException.class, () -> op.backward(bf16(4, 8), bf16(4, 8), bf16(8), f32(3), f32(8)));
        assertThrows(IllegalArgumentException.class, () -> op.backward(bf16(2, 20000), bf16(2, 20000), bf16(20000), f32(2), f32(20000)));
        assertTrue(ctx.launches.isEmpty(), "nothing launched for rejected calls");
    }

    // ------------------------------------------------------------------ RoPE

    @Test
    void ropeIsOneWarpPerRowWithAPerWarpAngleTable() {
        int rows = 2 * 64, heads = 16, headDim = 128;
        Tensor out = new CudaRope(ctx).forward(bf16(rows, heads * headDim), 64, heads, Rope.of(10000f));
        assertArrayEquals(new int[] {rows, heads * headDim}, out.shape());
        Launch l = ctx.only("rope_fwd_bf16");
        assertEquals(rows / 8, l.grid()[0], "8 rows per block");
        assertEquals(0, l.args()[4], "positions from 0");
        assertEquals(10000f, l.args()[7]);
        assertEquals(0L, l.args()[8], "plain frequencies: no table");
        assertEquals(1, l.args()[9], "vector path");
        assertEquals(8 * (headDim / 2) * 8, l.shared(), "one (cos, sin) table of Dh/2 pairs per warp");
        new CudaRope(ctx).backward(out, 64, heads, Rope.of(10000f));
        assertEquals(1, ctx.launches.stream().filter(x -> x.name().equals("rope_bwd_bf16")).count());
        // 370M: 8192 rows -> 1024 blocks; the grid-stride cap applies beyond 32 blocks per SM.
        ctx.launches.clear();
        new CudaRope(ctx).forward(bf16(8192, 1024), 2048, 16, Rope.of(10000f));
        assertEquals(1024, ctx.only("rope_fwd_bf16").grid()[0]);
        ctx.launches.clear();
        new CudaRope(ctx).forward(bf16(65536, 64), 2048, 1, Rope.of(10000f));
        assertEquals(32 * 132, ctx.only("rope_fwd_bf16").grid()[0]);
    }

    @Test
    void pipelinedRmsNormForwardLaunchesThePipeKernelsWherePossible() {
        CudaRmsNorm norm = new CudaRmsNorm(ctx);
        assertEquals(CudaRmsNorm.VARIANT_PIPELINED, norm.variant(), "the default since H100 run 6");
        // 370M: d = 1024 -> G = 4, three stages, persistent grid of 2 blocks per SM.
        Tensor x = bf16(8192, 1024), gain = bf16(1024), dGain = f32(1024);
        Backend.RmsNormOut f = norm.forward(x, gain, 1e-5f);
        Launch l = ctx.only("rmsnorm_fwd_pipe4_bf16");
        assertEquals(264, l.grid()[0]);
        assertEquals(8 * 3 * 1 * 2048, l.shared(), "8 warps x 3 stages x one 2 KB row");
        norm.addForward(x, x, gain, 1e-5f);
        assertEquals(8 * 3 * 2 * 2048, ctx.only("rmsnorm_add_fwd_pipe4_bf16").shared(), "two input rows per stage");
        norm.backward(x, x, gain, f.rstd(), dGain);
        ctx.only("rmsnorm_bwd_rows4_bf16");  // the backward is the warp-per-row kernel in every variant
        // d = 2048 -> G = 8, two stages, one block per SM; few rows -> fewer blocks.
        ctx.launches.clear();
        Tensor w = bf16(100, 2048), gw = bf16(2048);
        Backend.RmsNormOut fw = norm.forward(w, gw, 1e-5f);
        assertEquals(13, ctx.only("rmsnorm_fwd_pipe8_bf16").grid()[0]);
        norm.addForward(w, w, gw, 1e-5f);
        assertEquals(8 * 2 * 2 * 4096, ctx.only("rmsnorm_add_fwd_pipe8_bf16").shared());
        norm.backward(w, w, gw, fw.rstd(), f32(2048));
        ctx.only("rmsnorm_bwd_rows8_bf16");
        // d = 2560 (2.7B) and misaligned views keep the default kernels.
        ctx.launches.clear();
        norm.forward(bf16(37, 2560), bf16(2560), 1e-5f);
        ctx.only("rmsnorm_fwd_bf16");
        ctx.launches.clear();
        Tensor view = bf16(9, 1032).reshape(9 * 1032).rows(8, 8 * 1024).reshape(8, 1024);  // 16 bytes + 0: aligned
        Tensor odd = bf16(9 * 1024 + 1).rows(1, 8 * 1024).reshape(8, 1024);                // 2 bytes off
        norm.forward(view, gain, 1e-5f);
        norm.forward(odd, gain, 1e-5f);
        assertEquals(List.of("rmsnorm_fwd_pipe4_bf16", "rmsnorm_fwd_bf16"), ctx.launches.stream().map(Launch::name).toList());
        assertThrows(IllegalArgumentException.class, () -> norm.setVariant(3));

        norm.setVariant(CudaRmsNorm.VARIANT_CACHED);
        ctx.launches.clear();
        norm.forward(x, gain, 1e-5f);
        norm.addForward(x, x, gain, 1e-5f);
        assertEquals(List.of("rmsnorm_fwd_bf16", "rmsnorm_add_fwd_bf16"), ctx.launches.stream().map(Launch::name).toList());
    }

    @Test
    void ropeAtPassesTheFirstPositionAndReadsTheRowsAsOneSequence() {
        new CudaRope(ctx).forwardAt(bf16(3, 4 * 64), 1000, 4, Rope.of(10000f));
        Launch l = ctx.only("rope_fwd_bf16");
        assertEquals(3, l.args()[2], "rows");
        assertEquals(3, l.args()[3], "one sequence of all the rows");
        assertEquals(1000, l.args()[4], "positions from 1000");
        assertThrows(IllegalArgumentException.class, () -> new CudaRope(ctx).forwardAt(bf16(3, 64), -1, 1, Rope.of(10000f)));
        assertThrows(IllegalArgumentException.class, () -> new CudaRope(ctx).forwardAt(bf16(3, 64), (1 << 24) - 2, 1, Rope.of(10000f)));
        assertEquals(1, ctx.launches.size(), "nothing launched for rejected calls");
    }

    // ------------------------------------------------------------------ decode attention

    @Test
    void decodeAttentionSplitsTheKeysIntoChunksAndMergesThem() {
        // 370M at the end of its context: 2048 keys in 16 chunks of 128, then one merge per head.
        Tensor q = bf16(1, 1024), keys = bf16(2048, 1024), values = bf16(2048, 1024);
        Tensor out = new CudaDecodeAttention(ctx).attend(q, keys, values, 2047, 16, 16);
        assertArrayEquals(new int[] {1, 1024}, out.shape());
        Launch p = ctx.launches.get(0), c = ctx.launches.get(1);
        assertEquals(List.of("attn_decode_partial", "attn_decode_combine"), ctx.launches.stream().map(Launch::name).toList());
        assertArrayEquals(new int[] {16, 16, 1}, p.grid());
        assertEquals(CudaDecodeAttention.THREADS, p.threads());
        assertSame(out, p.args()[0]);
        Tensor acc = (Tensor) p.args()[1], maxSum = (Tensor) p.args()[2];
        assertEquals(16L * 16 * 64, acc.numel(), "one partial row of Dh per (query, head, chunk)");
        assertEquals(16L * 16 * 2, maxSum.numel());
        assertEquals(List.of(q, keys, values, 2047, 16, 16, 64, 1), Arrays.asList(p.args()).subList(3, 11));
        assertArrayEquals(new int[] {16, 1, 1}, c.grid());
        assertEquals(64, c.threads(), "one thread per column");
        assertEquals(List.of(out, acc, maxSum, 16, 16, 64), Arrays.asList(c.args()));
    }

    @Test
    void decodeAttentionWithOneChunkWritesTheOutputItself() {
        // 128 keys: one chunk, one launch, no partials (null pointers). Dh = 20: no 16-byte loads.
        Tensor q = bf16(3, 60), keys = bf16(300, 60), values = bf16(300, 60);
        new CudaDecodeAttention(ctx).attend(q, keys, values, 125, 3, 3);
        Launch p = ctx.only("attn_decode_partial");
        assertArrayEquals(new int[] {1, 3, 3}, p.grid(), "(chunks, heads, queries)");
        assertEquals(0L, p.args()[1]);
        assertEquals(0L, p.args()[2]);
        assertEquals(0, p.args()[10], "Dh 20: element loads");
        // A misaligned cache view: no 16-byte loads either.
        ctx.launches.clear();
        Tensor view = bf16(301 * 64 + 1).rows(1, 300 * 64).reshape(300, 64);
        new CudaDecodeAttention(ctx).attend(bf16(1, 64), view, view, 10, 1, 1);
        assertEquals(0, ctx.only("attn_decode_partial").args()[10]);
    }

    @Test
    void decodeAttentionReadsAGroupedQueryCacheOfTheKeyValueHeadsOnly() {
        // LLaMA-3.2-1B: 32 query heads of 64 over 8 key/value heads, a cache [T, 8·64]. Variant 2 (grouped): a block per
        // key/value head serves its 4 query heads (attn_decode_partial_g4); variant 1 (the default): a block per query
        // head (attn_decode_partial). Either way the kernel is told both head counts, and out and the
        // partials are the query heads'.
        Object[][] variants = {{CudaDecodeAttention.VARIANT_GROUPED, "attn_decode_partial_g4", 8},
                {CudaDecodeAttention.VARIANT_PER_HEAD, "attn_decode_partial", 32}};
        for (Object[] v : variants) {
            ctx.launches.clear();
            CudaDecodeAttention op = new CudaDecodeAttention(ctx);
            op.setVariant((int) v[0]);
            String at = "variant " + v[0];
            Tensor q = bf16(1, 2048), keys = bf16(4096, 512), values = bf16(4096, 512);
            Tensor out = op.attend(q, keys, values, 300, 32, 8);
            assertArrayEquals(new int[] {1, 2048}, out.shape());
            Launch p = ctx.launches.get(0), c = ctx.launches.get(1);
            assertEquals(List.of(v[1], "attn_decode_combine"), ctx.launches.stream().map(Launch::name).toList(), at);
            assertArrayEquals(new int[] {3, (int) v[2], 1}, p.grid(), at + ": (chunks, blocks of query heads, queries)");
            assertEquals(CudaDecodeAttention.THREADS, p.threads());
            assertSame(out, p.args()[0]);
            assertEquals(List.of(q, keys, values, 300, 32, 8, 64, 1), Arrays.asList(p.args()).subList(3, 11), at + ": both head counts");
            assertEquals(32L * 3 * 64, ((Tensor) p.args()[1]).numel(), at + ": one partial row of Dh per (query, query head, chunk)");
            assertArrayEquals(new int[] {32, 1, 1}, c.grid(), at + ": the merge, a block per query head");
            assertEquals(List.of(3, 32, 64), Arrays.asList(c.args()).subList(3, 6));
        }
        // Every query head over one key/value head, one chunk: one block per query.
        ctx.launches.clear();
        grouped().attend(bf16(2, 4 * 64), bf16(300, 64), bf16(300, 64), 10, 4, 1);
        Launch one = ctx.only("attn_decode_partial_g4");
        assertArrayEquals(new int[] {1, 1, 2}, one.grid());
        assertEquals(List.of(10, 4, 1, 64, 1), Arrays.asList(one.args()).subList(6, 11));
    }

    @Test
    void decodeAttentionGivesEachBlockTheLargestPartOfAGroupUpToEightHeads() {
        // heads, kv heads → heads per block: the whole group up to 8, else its largest divisor up to 8; multi-head: 1.
        int[][] cases = {{16, 16, 1}, {4, 2, 2}, {6, 2, 3}, {8, 2, 4}, {10, 2, 5}, {12, 2, 6}, {14, 2, 7}, {16, 2, 8}, {8, 1, 8},
                {12, 1, 6}, {16, 1, 8}, {32, 2, 8}, {9, 1, 3}, {22, 2, 1}, {13, 1, 1}};
        for (int[] c : cases) {
            int heads = c[0], kv = c[1], g = c[2];
            assertEquals(g, CudaDecodeAttention.headsPerBlock(heads, kv), heads + " heads over " + kv);
            ctx.launches.clear();
            grouped().attend(bf16(3, heads * 32), bf16(400, kv * 32), bf16(400, kv * 32), 200, heads, kv);
            Launch p = ctx.launches.get(0);
            assertEquals(g == 1 ? "attn_decode_partial" : "attn_decode_partial_g" + g, p.name(), heads + " heads over " + kv);
            assertArrayEquals(new int[] {2, heads / g, 3}, p.grid(), heads + " heads over " + kv);
            assertEquals(List.of(200, heads, kv, 32, 1), Arrays.asList(p.args()).subList(6, 11));
            assertEquals(3L * heads * 2 * 32, ((Tensor) p.args()[1]).numel(), "partials per query head");
            assertArrayEquals(new int[] {heads, 3, 1}, ctx.launches.get(1).grid());
        }
    }

    @Test
    void decodeAttentionGivesEachQueryHeadItsOwnBlockByDefault() {
        // Kernel family "decode", variant 1 (the default): attn_decode_partial with a block per query head (H in y) for a
        // grouped-query cache too (LLaMA-3.2-1B's 32 heads over 8, which variant 2 serves with attn_decode_partial_g4 in
        // 8 blocks).
        CudaDecodeAttention op = new CudaDecodeAttention(ctx);
        assertEquals(CudaDecodeAttention.VARIANT_PER_HEAD, op.variant(), "a block per query head by default");
        // Whatever headsPerBlock would pick (8, 6, 8 of groups of 8, 12, 16; one chunk): a block per query head.
        for (int[] hk : new int[][] {{8, 1}, {12, 1}, {16, 2}}) {
            ctx.launches.clear();
            op.attend(bf16(2, hk[0] * 32), bf16(400, hk[1] * 32), bf16(400, hk[1] * 32), 10, hk[0], hk[1]);
            assertArrayEquals(new int[] {1, hk[0], 2}, ctx.only("attn_decode_partial").grid(), hk[0] + " heads over " + hk[1]);
        }
        // Variant 2: the grouped kernel; back to 1: a block per query head again. Bad values are rejected and change nothing.
        op.setVariant(CudaDecodeAttention.VARIANT_GROUPED);
        ctx.launches.clear();
        op.attend(bf16(1, 2048), bf16(4096, 512), bf16(4096, 512), 300, 32, 8);
        assertArrayEquals(new int[] {3, 8, 1}, ctx.only("attn_decode_partial_g4").grid());
        op.setVariant(CudaDecodeAttention.VARIANT_PER_HEAD);
        ctx.launches.clear();
        op.attend(bf16(1, 2048), bf16(4096, 512), bf16(4096, 512), 300, 32, 8);
        assertArrayEquals(new int[] {3, 32, 1}, ctx.only("attn_decode_partial").grid());
        assertThrows(IllegalArgumentException.class, () -> op.setVariant(0));
        assertThrows(IllegalArgumentException.class, () -> op.setVariant(3));
        assertEquals(CudaDecodeAttention.VARIANT_PER_HEAD, op.variant());
    }

    /** The decode op with the grouped partial kernels (variant 2). */
    private CudaDecodeAttention grouped() {
        CudaDecodeAttention op = new CudaDecodeAttention(ctx);
        op.setVariant(CudaDecodeAttention.VARIANT_GROUPED);
        return op;
    }

    @Test
    void decodeAttentionTakesALongPieceInGroupsOfQueries() {
        // 300 queries after 8000 positions, 32 heads of 128: up to 65 chunks, 270,400 partial floats per query at most;
        // 62 queries a group.
        Tensor q = bf16(300, 4096), cache = bf16(8300, 4096);
        Tensor out = new CudaDecodeAttention(ctx).attend(q, cache, cache, 8000, 32, 32);
        List<Launch> partials = ctx.launches.stream().filter(l -> l.name().equals("attn_decode_partial")).toList();
        assertEquals(5, partials.size());
        assertEquals(5, ctx.launches.stream().filter(l -> l.name().equals("attn_decode_combine")).count());
        long base = CudaStorage.addressOf(q), outBase = CudaStorage.addressOf(out);
        for (int g = 0; g < 5; g++) {
            Launch l = partials.get(g);
            int rows = g < 4 ? 62 : 300 - 4 * 62, chunks = (8000 + 62 * g + rows + 127) / 128;  // the group's own keys
            assertArrayEquals(new int[] {chunks, 32, rows}, l.grid());
            assertEquals(base + 62L * g * 4096 * 2, CudaStorage.addressOf((Tensor) l.args()[3]), "group " + g + "'s queries");
            assertEquals(outBase + 62L * g * 4096 * 2, CudaStorage.addressOf((Tensor) l.args()[0]), "group " + g + "'s output rows");
            assertEquals(8000 + 62 * g, l.args()[6], "group " + g + "'s first position");
            assertTrue(((Tensor) l.args()[1]).numel() <= CudaDecodeAttention.PARTIAL_FLOATS);
        }
    }

    @Test
    void repeatHeadsIsOneThreadPerOutputElement() {
        CudaRepeatHeads op = new CudaRepeatHeads(ctx);
        Tensor out = op.forward(bf16(10, 2 * 64), 2, 4);
        assertArrayEquals(new int[] {10, 8 * 64}, out.shape());
        Launch f = ctx.only("repeat_heads_bf16");
        assertEquals(List.of(10L, 2, 4, 64), Arrays.asList(f.args()).subList(2, 6));
        assertEquals((10 * 8 * 64 + 255) / 256, f.grid()[0]);
        Tensor dx = op.backward(out, 2, 4);
        assertArrayEquals(new int[] {10, 2 * 64}, dx.shape());
        assertEquals(List.of(10L, 2, 4, 64), Arrays.asList(ctx.only("repeat_heads_bwd_bf16").args()).subList(2, 6));
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(10, 100), 3, 2), "not whole heads");
        assertThrows(IllegalArgumentException.class, () -> op.forward(f32(10, 128), 2, 2));
        assertEquals(2, ctx.launches.size(), "nothing launched for rejected calls");
    }

    @Test
    void decodeAttentionRejectsMistakes() {
        CudaDecodeAttention op = new CudaDecodeAttention(ctx);
        Tensor keys = bf16(100, 128);
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 128), keys, keys, 100, 2, 2), "past the cache");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 128), keys, keys, -1, 2, 2));
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(2, 128), keys, keys, Integer.MAX_VALUE, 2, 2), "no int overflow");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 128), keys, bf16(100, 64), 0, 2, 2));
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 128), keys, keys, 0, 3, 3), "not whole heads");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 128), keys, keys, 0, 128, 128), "odd head dim");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 512), bf16(9, 512), bf16(9, 512), 0, 1, 1), "Dh 512");
        assertThrows(IllegalArgumentException.class, () -> op.attend(f32(1, 128), f32(100, 128), f32(100, 128), 0, 2, 2));
        // Grouped-query: the key/value heads must divide the query heads, and the cache hold them at q's head size.
        Tensor kv = bf16(100, 64);
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), kv, kv, 0, 4, 0), "no key/value heads");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), bf16(100, 192), bf16(100, 192), 0, 4, 3), "4 heads over 3");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), kv, kv, 0, 4, 2), "a cache of 1 head for 2");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), bf16(100, 256), bf16(100, 256), 0, 4, 1),
                "a cache of every query head's keys for 1 key/value head");
        assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), kv, bf16(100, 128), 0, 4, 1), "values of 2 heads");
        assertTrue(ctx.launches.isEmpty(), "nothing launched for rejected calls");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> op.attend(bf16(1, 256), kv, kv, 0, 4, 3));
        assertTrue(e.getMessage().contains("3 key/value heads do not divide 4 query heads"), e.getMessage());
    }

    @Test
    void ropeScalarPathNeedsNoSharedMemory() {
        // Dh = 12: Dh/2 = 6 is not a multiple of 8. One thread per (row, frequency).
        new CudaRope(ctx).forward(bf16(100, 48), 10, 4, Rope.of(10000f));
        Launch l = ctx.only("rope_fwd_bf16");
        assertEquals(0, l.args()[9]);
        assertEquals(0, l.shared());
        assertEquals((100 * 6 + 255) / 256, l.grid()[0]);
        // Dh/2 = 1024 > the per-warp table limit: also the scalar path.
        ctx.launches.clear();
        new CudaRope(ctx).forward(bf16(2, 2048), 1, 1, Rope.of(10000f));
        assertEquals(0, ctx.only("rope_fwd_bf16").shared());
    }

    /** LLaMA-3's scaled frequencies: a device table of Dh/2 floats, uploaded once and passed to every launch. */
    @Test
    void scaledRopeReadsItsFrequenciesFromATableUploadedOnce() {
        Rope rope = new Rope(500000f, new Rope.Scaling(32f, 1f, 4f, 8192));
        CudaRope op = new CudaRope(ctx);
        op.forward(bf16(64, 4 * 64), 64, 4, rope);
        op.backward(bf16(64, 4 * 64), 64, 4, rope);
        op.forwardAt(bf16(1, 4 * 64), 70, 4, rope);
        assertEquals(1, ctx.intCopies.size(), "one upload for the three launches");
        Tensor table = ctx.intCopies.getFirst().getKey();
        int[] bits = ctx.intCopies.getFirst().getValue();
        double[] want = rope.invFreq(64);
        assertEquals(32, bits.length);
        for (int i = 0; i < bits.length; i++) assertEquals((float) want[i], Float.intBitsToFloat(bits[i]), "inv_freq " + i);
        for (Launch l : ctx.launches) assertSame(table, l.args()[8], l.name());
        op.forward(bf16(64, 2 * 128), 64, 2, rope);
        assertEquals(2, ctx.intCopies.size(), "another head dimension, another table");
    }

    @Test
    void ropeRejectsMistakes() {
        CudaRope op = new CudaRope(ctx);
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(8, 96), 8, 5, Rope.of(10000f)));  // 96 not 5 heads
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(8, 12), 8, 4, Rope.of(10000f)));  // odd head dim 3
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(10, 64), 4, 2, Rope.of(10000f))); // 10 rows, T = 4
        assertThrows(IllegalArgumentException.class, () -> op.forward(bf16(8, 64), 8, 2, null));
        assertThrows(IllegalArgumentException.class, () -> op.forward(f32(8, 64), 8, 2, Rope.of(10000f)));
        assertTrue(ctx.launches.isEmpty());
    }

    // ------------------------------------------------------------------ SwiGLU

    @Test
    void swigluForwardAndBackward() {
        Tensor a = bf16(33, 688), b = bf16(33, 688);
        Tensor y = new CudaSwiGlu(ctx).forward(a, b);
        assertArrayEquals(a.shape(), y.shape());
        assertEquals(33L * 688, ctx.only("swiglu_fwd_bf16").args()[3]);
        Backend.SwiGluGrads g = new CudaSwiGlu(ctx).backward(y, a, b);
        assertArrayEquals(a.shape(), g.dGate().shape());
        assertArrayEquals(a.shape(), g.dUp().shape());
        Launch l = ctx.only("swiglu_bwd_bf16");
        assertEquals(g.dGate(), l.args()[0]);
        assertEquals(g.dUp(), l.args()[1]);
        assertThrows(IllegalArgumentException.class, () -> new CudaSwiGlu(ctx).forward(a, bf16(33, 687)));
        assertThrows(IllegalArgumentException.class, () -> new CudaSwiGlu(ctx).backward(f32(33, 688), a, b));
    }

    // ------------------------------------------------------------------ cross-entropy

    @Test
    void crossEntropyOneBlockPerRowWithTargetsInSharedMemory() {
        Tensor logits = bf16(96, 32000), targets = ctx.scratch(DType.I32, 96, 4);
        CudaCrossEntropy l2 = new CudaCrossEntropy(ctx);
        l2.setVariant(CudaCrossEntropy.VARIANT_L2);  // the kernel that re-reads the row from L2 (variant 2)
        Tensor losses = l2.forward(logits, targets, 32000, 0.5f);
        assertArrayEquals(new int[] {96}, losses.shape());
        assertEquals(DType.F32, losses.dtype());
        Launch l = ctx.only("cross_entropy_fwd_bf16");
        assertEquals(96, l.grid()[0]);
        assertEquals(4 * 8, l.shared());
        assertEquals(512, l.threads());
        assertEquals(32000, l.args()[4], "row stride");
        assertEquals(32000, l.args()[5], "vocab");
        assertEquals(4, l.args()[6]);
        assertEquals(0.5f, l.args()[7]);
        l2.forward(bf16(3, 5), ctx.scratch(DType.I32, 3, 1), 5, 0f);
        List<Launch> ce = ctx.launches.stream().filter(x -> x.name().equals("cross_entropy_fwd_bf16")).toList();
        assertEquals(32, ce.get(1).threads(), "tiny vocabularies still get one full warp");
    }

    @Test
    void crossEntropyPassesPaddedStrideAndVocab() {
        Tensor logits = bf16(16, 50304), targets = ctx.scratch(DType.I32, 16, 2);
        CudaCrossEntropy l2 = new CudaCrossEntropy(ctx);
        l2.setVariant(CudaCrossEntropy.VARIANT_L2);
        l2.forward(logits, targets, 50257, 1f);
        Launch l = ctx.only("cross_entropy_fwd_bf16");
        assertEquals(50304, l.args()[4]);
        assertEquals(50257, l.args()[5]);
        // 4 resident 512-thread rows per SM would be 53 MB of rows between their two passes: more than L2 holds.
        assertEquals(1024, l.threads());
    }

    @Test
    void crossEntropyBlockSizeKeepsResidentRowsWithinL2() {
        for (int stride : new int[] {1, 5, 257, 1000, 32000, 50257, 50304, 65536, 128256, 1 << 20}) {
            int threads = CudaCrossEntropy.threadsPerRow(stride, 132);
            assertTrue(threads % 32 == 0 && threads >= 32 && threads <= 1024, stride + " -> " + threads);
            long resident = 132L * (2048 / threads) * stride * 2;
            assertTrue(resident <= CudaCrossEntropy.L2_ROW_BUDGET || threads == 1024, stride + " -> " + threads);
        }
        assertEquals(512, CudaCrossEntropy.threadsPerRow(32000, 132), "V = 32000 keeps its measured 512-thread blocks");
    }

    @Test
    void crossEntropyRejectsMistakes() {
        CudaCrossEntropy op = new CudaCrossEntropy(ctx);
        Tensor logits = bf16(8, 257);
        assertThrows(IllegalArgumentException.class, () -> op.forward(logits, f32(8, 2), 257, 1f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(logits, ctx.scratch(DType.I32, 7, 2), 257, 1f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(f32(8, 257), ctx.scratch(DType.I32, 8, 2), 257, 1f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(logits, ctx.scratch(DType.I32, 8, 2), 257, Float.NaN));
        assertThrows(IllegalArgumentException.class, () -> op.forward(logits, ctx.scratch(DType.I32, 8, 2), 258, 1f));
        assertThrows(IllegalArgumentException.class, () -> op.forward(logits, ctx.scratch(DType.I32, 8, 2), 0, 1f));
        assertTrue(ctx.launches.isEmpty());
    }

    // ------------------------------------------------------------------ element-wise adds, patch embedding

    @Test
    void addKernelsRunOneUnrolledStepPerThreadWithinOneWave() {
        CudaElementwise ew = new CudaElementwise(ctx);
        Tensor x = bf16(8192, 1024), y = bf16(8192, 1024);
        ew.add(x, y);
        Launch l = ctx.only("add_bf16");
        long groups = 8192L * 1024 / 8;
        assertEquals(CudaElementwise.ADD_BLOCKS_PER_SM * 132, l.grid()[0], "capped at the resident blocks");
        assertEquals(256, l.threads());
        assertEquals(groups, (long) l.args()[3] / 8);
        ctx.launches.clear();
        ew.addInPlace(f32(1000), f32(1000));  // 250 float4 groups: one block, every group reached in one step
        Launch f = ctx.only("add_inplace_f32");
        assertEquals(1, f.grid()[0]);
        assertTrue((long) f.threads() * CudaElementwise.ADD_UNROLL * 4 >= 1000);
        ctx.launches.clear();
        ew.add(bf16(3), bf16(3));  // smaller than one group: the scalar tail alone
        assertEquals(1, ctx.only("add_bf16").grid()[0]);
    }

    @Test
    void patchEmbedForwardIsOneWarpPerRow() {
        Tensor table = bf16(1000, 1024), tokens = ctx.scratch(DType.I32, 4, 2048 * 4);
        Tensor out = new CudaPatchEmbed(ctx).forward(table, tokens, 4);
        assertArrayEquals(new int[] {4 * 2048, 1024}, out.shape());
        Launch l = ctx.only("patch_embed_fwd_bf16");
        assertEquals(CudaPatchEmbed.FWD_THREADS, l.threads());
        assertEquals(4 * 2048 / (CudaPatchEmbed.FWD_THREADS / 32), l.grid()[0], "8 rows per block");
        ctx.launches.clear();
        new CudaPatchEmbed(ctx).forward(bf16(10, 64), ctx.scratch(DType.I32, 1, 3), 1);
        assertEquals(1, ctx.only("patch_embed_fwd_bf16").grid()[0]);
    }

    @Test
    void patchEmbedBackwardRadixSortsPackedKeysInFourLaunches() {
        // 8192 positions (13 bits) and V = 32000 (15 bits with the invalid-id sentinel): 32-bit keys, 2 passes of 8 + 7.
        Tensor dTable = f32(32000, 1024), tokens = ctx.scratch(DType.I32, 4, 2048), dOut = bf16(4 * 2048, 1024);
        new CudaPatchEmbed(ctx).backward(dOut, tokens, 1, dTable);
        assertEquals(List.of("patch_embed_keys32", "patch_embed_radix_scatter", "patch_embed_radix_scatter", "patch_embed_bwd_runs32"),
                ctx.launches.stream().map(Launch::name).toList());
        int tiles = 4 * 2048 / CudaPatchEmbed.RADIX_TILE;
        Launch keys = ctx.launches.get(0), pass0 = ctx.launches.get(1), pass1 = ctx.launches.get(2), runs = ctx.launches.get(3);
        assertEquals(tiles, keys.grid()[0]);
        assertEquals(13, keys.args()[3], "position bits");
        assertEquals(2 * CudaPatchEmbed.RADIX_BINS * tiles, keys.args()[7], "histogram ints of both passes");
        assertEquals(List.of(13, 8), List.of(keys.args()[8], keys.args()[9]), "first digit: token bits 0..7");
        assertEquals(List.of(13, 8), List.of(pass0.args()[5], pass0.args()[6]));
        assertEquals(List.of(21, 7), List.of(pass0.args()[8], pass0.args()[9]), "pass 0 counts the second digit");
        assertEquals(List.of(21, 7), List.of(pass1.args()[5], pass1.args()[6]));
        assertEquals(0L, pass1.args()[7], "the last pass counts nothing");
        assertSame(keys.args()[4], pass0.args()[0], "pass 0 reads the keys");
        assertSame(pass0.args()[1], pass1.args()[0], "pass 1 reads pass 0's output");
        assertSame(pass1.args()[1], runs.args()[0], "the runs read the last pass's output");
        assertEquals(4 * 2048 / (CudaPatchEmbed.BWD_THREADS / 32), runs.grid()[0], "one warp per sorted entry");
    }

    @Test
    void patchEmbedBackwardOfUploadedTokensIsOneLaunchWithHostSortedKeys() {
        CudaPatchEmbed pe = new CudaPatchEmbed(ctx);
        Tensor tokens = ctx.scratch(DType.I32, 2, 6), table = bf16(100, 64), dTable = f32(100, 64);
        int[] ids = {7, 3, 7, -1, 3, 250, 0, 7, 99, 3, 100, 7};
        pe.noteUpload(tokens, ids);
        ids[0] = 42;  // the caller may reuse its array: the ids were copied
        pe.forward(table, tokens, 2);
        assertEquals(0, ctx.intCopies.size(), "the forward sorts nothing (evaluation has no backward)");
        ctx.launches.clear();
        pe.backward(bf16(6, 64), tokens, 2, dTable);  // sorts and copies the keys
        assertEquals(1, ctx.intCopies.size());
        int[] keys = ctx.intCopies.getFirst().getValue();
        // posBits = bits of 11 = 4; ids outside [0, 2^28 - 1) take the all-ones token field; unsigned ascending.
        int s = (1 << 28) - 1;
        int[] want = {0 << 4 | 6, 3 << 4 | 1, 3 << 4 | 4, 3 << 4 | 9, 7 << 4 | 0, 7 << 4 | 2, 7 << 4 | 7, 7 << 4 | 11,
                99 << 4 | 8, 100 << 4 | 10, 250 << 4 | 5, s << 4 | 3};
        assertArrayEquals(want, keys);
        Launch runs = ctx.only("patch_embed_bwd_runs32");
        assertEquals(1, ctx.launches.size(), "no device sort");
        assertSame(ctx.intCopies.getFirst().getKey(), runs.args()[0]);
        assertEquals(List.of(12, 4, 100), List.of(runs.args()[1], runs.args()[2], runs.args()[3]));
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        assertEquals(1, ctx.intCopies.size(), "sorted once per upload");
        // A view written some other way forgets the ids: the device sort again.
        pe.forget(tokens.reshape(12).rows(3, 2));
        ctx.launches.clear();
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        assertEquals("patch_embed_keys32", ctx.launches.getFirst().name());
        assertEquals(List.of(ctx.intCopies.getFirst().getKey()), ctx.freed, "its keys buffer freed");
        // Uploading again: new keys; once more: the same keys buffer, sorted again. The device-sort variant ignores the ids.
        pe.noteUpload(tokens, ids);
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        pe.noteUpload(tokens, ids);
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        assertEquals(3, ctx.intCopies.size());
        assertSame(ctx.intCopies.get(1).getKey(), ctx.intCopies.get(2).getKey());
        pe.setVariant(CudaPatchEmbed.VARIANT_DEVICE_SORT);
        int[] other = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
        pe.noteUpload(tokens, other);
        ctx.launches.clear();
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        assertEquals("patch_embed_keys32", ctx.launches.getFirst().name());
        // Back to variant 1: the keys of the upload made under variant 2, not the earlier ids.
        pe.setVariant(CudaPatchEmbed.VARIANT_HOST_SORTED);
        ctx.launches.clear();
        pe.backward(bf16(6, 64), tokens, 2, dTable);
        assertEquals(1, ctx.launches.size());
        assertArrayEquals(new int[] {1 << 4, 1 << 4 | 1, 1 << 4 | 2, 1 << 4 | 3, 1 << 4 | 4, 1 << 4 | 5, 1 << 4 | 6, 1 << 4 | 7,
                1 << 4 | 8, 1 << 4 | 9, 1 << 4 | 10, 1 << 4 | 11}, ctx.intCopies.getLast().getValue());
        assertThrows(IllegalArgumentException.class, () -> pe.setVariant(3));
    }

    @Test
    void patchEmbedRemembersTheLastFourUploadedTokenTensors() {
        CudaPatchEmbed pe = new CudaPatchEmbed(ctx);
        List<Tensor> tensors = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            Tensor t = ctx.scratch(DType.I32, 1, 8);
            tensors.add(t);
            pe.noteUpload(t, new int[] {1, 2, 3, 4, 5, 6, 7, i});
            pe.backward(bf16(8, 64), t, 1, f32(10, 64));
        }
        assertEquals(List.of(ctx.intCopies.getFirst().getKey()), ctx.freed, "the first tensor's keys freed when the fifth came");
        ctx.launches.clear();
        pe.backward(bf16(8, 64), tensors.getFirst(), 1, f32(10, 64));
        assertEquals("patch_embed_keys32", ctx.launches.getFirst().name());
        ctx.launches.clear();
        pe.backward(bf16(8, 64), tensors.getLast(), 1, f32(10, 64));
        assertEquals(1, ctx.launches.size());
    }

    @Test
    void crossEntropySharedMemoryVariantKeepsTheRowOnChipUpTo160KB() {
        CudaCrossEntropy ce = new CudaCrossEntropy(ctx);
        assertEquals(CudaCrossEntropy.VARIANT_SMEM, ce.variant(), "the default since H100 run 6");
        ce.forward(bf16(8192, 50304), ctx.scratch(DType.I32, 8192, 4), 50257, 1f);
        Launch l = ctx.only("cross_entropy_fwd_smem_bf16");
        assertEquals(8192, l.grid()[0], "one block per row");
        assertEquals(1024, l.threads(), "the default's block size: same thread -> column mapping, same sums");
        assertEquals(32 + 6283 * 16, l.shared(), "targets and their logits (K = 4 -> 8 words), then ceil(50257 / 8) groups");
        ctx.launches.clear();
        ce.forward(bf16(4, 81912), ctx.scratch(DType.I32, 4, 1), 81912, 1f);  // 10239 groups + 32 bytes > 160 KB
        ctx.only("cross_entropy_fwd_bf16");
        ctx.launches.clear();
        ce.forward(bf16(4, 81904), ctx.scratch(DType.I32, 4, 1), 81904, 1f);  // 10238 groups + 32 bytes = 160 KB
        assertEquals(160 * 1024, ctx.only("cross_entropy_fwd_smem_bf16").shared());
        assertThrows(IllegalArgumentException.class, () -> ce.setVariant(3));
    }

    @Test
    void patchEmbedRadixPlanSplitsTheTokenBits() {
        var plan = CudaPatchEmbed.RadixPlan.of(32768, 50257);  // 15 + 16 bits
        assertEquals(15, plan.posBits());
        assertArrayEquals(new int[] {8, 8}, plan.bits());
        assertArrayEquals(new int[] {15, 23}, plan.shifts());
        assertArrayEquals(new int[] {4, 3}, CudaPatchEmbed.RadixPlan.of(39, 97).bits(), "small vocabularies still take 2 passes");
        assertArrayEquals(new int[] {1}, CudaPatchEmbed.RadixPlan.of(5, 1).bits(), "sentinel 1: one bit");
        assertEquals(0, CudaPatchEmbed.RadixPlan.of(1, 10).posBits());
        assertArrayEquals(new int[] {6, 6, 6}, CudaPatchEmbed.RadixPlan.of(8, 200_000).bits(), "18 token bits: 3 passes");
        assertNull(CudaPatchEmbed.RadixPlan.of(65537, 50257), "17 + 16 bits do not fit 32");
        assertNull(CudaPatchEmbed.RadixPlan.of(1 << 20, 32000));
    }

    @Test
    void patchEmbedBackwardFallsBackToTheBitonicSort() {
        // 2^17 positions at V = 50257 need 33 key bits: the 64-bit bitonic path.
        Tensor dTable = f32(50257, 64), tokens = ctx.scratch(DType.I32, 2, 65536), dOut = bf16(2 * 65536, 64);
        new CudaPatchEmbed(ctx).backward(dOut, tokens, 1, dTable);
        assertEquals("patch_embed_keys", ctx.launches.getFirst().name());
        assertEquals("patch_embed_bwd_runs", ctx.launches.getLast().name());
        assertEquals(2 * 65536, ctx.launches.getLast().grid()[0], "one block per sorted entry");
        ctx.launches.clear();
        // Width not a multiple of 8: the warp kernel's 16-byte groups do not apply.
        new CudaPatchEmbed(ctx).backward(bf16(6, 60), ctx.scratch(DType.I32, 2, 3), 1, f32(97, 60));
        assertEquals("patch_embed_bwd_runs", ctx.launches.getLast().name());
        ctx.launches.clear();
        // Misaligned dTable view (offset of one float).
        Tensor table = f32(98 * 64);
        new CudaPatchEmbed(ctx).backward(bf16(6, 64), ctx.scratch(DType.I32, 2, 3), 1,
                new Tensor(table.storage(), DType.F32, 1L, 97, 64));
        assertEquals("patch_embed_bwd_runs", ctx.launches.getLast().name());
    }

    // ------------------------------------------------------------------ AdamW and Σg²

    private static final Backend.AdamWStep STEP = new Backend.AdamWStep(3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.7f);

    @Test
    void adamWPassesHostBiasCorrectionsAndNullCompute() {
        int n = 1000;
        Tensor w = f32(n), g = f32(n), m = f32(n), v = f32(n);
        new CudaAdamW(ctx).step(w, g, m, v, null, STEP);
        Launch l = ctx.only("adamw_step_f32");
        assertEquals(0L, l.args()[4], "a missing compute copy is a null pointer");
        assertEquals((long) n, l.args()[5]);
        assertEquals(0.7f, l.args()[9], "gradScale (the clip factor)");
        assertEquals((float) (1 - 3e-4 * 0.1), (Float) l.args()[10], 1e-9f);
        assertEquals((float) (3e-4 / (1 - Math.pow(0.9, 3))), (Float) l.args()[11], 1e-9f);
        assertEquals((float) (1 / Math.sqrt(1 - Math.pow(0.95, 3))), (Float) l.args()[12], 1e-6f);
        Tensor compute = bf16(n);
        new CudaAdamW(ctx).step(w, g, m, v, compute, STEP);
        List<Launch> steps = ctx.launches.stream().filter(x -> x.name().equals("adamw_step_f32")).toList();
        assertEquals(compute, steps.get(1).args()[4]);
    }

    @Test
    void adamWRejectsMistakes() {
        CudaAdamW op = new CudaAdamW(ctx);
        Tensor w = f32(10), g = f32(10), m = f32(10), v = f32(10);
        assertThrows(IllegalArgumentException.class, () -> op.step(w, f32(11), m, v, null, STEP));
        assertThrows(IllegalArgumentException.class, () -> op.step(w, bf16(10), m, v, null, STEP));
        assertThrows(IllegalArgumentException.class, () -> op.step(w, g, m, v, f32(10), STEP));
        assertThrows(IllegalArgumentException.class, () -> op.step(w, g, m, v, null,
                new Backend.AdamWStep(3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0, 1f)));
        assertThrows(IllegalArgumentException.class, () -> op.step(w, g, m, v, null,
                new Backend.AdamWStep(3e-4f, 1f, 0.95f, 1e-8f, 0.1f, 1, 1f)));
        assertTrue(ctx.launches.isEmpty());
    }

    @Test
    void sumOfSquaresGivesEachTensorItsOwnPartialSlots() {
        List<Tensor> ts = List.of(f32(5_000_000), f32(3), bf16(4096), f32(0), f32(70_000));
        Tensor out = new CudaAdamW(ctx).sumOfSquares(ts);
        assertArrayEquals(new int[] {1}, out.shape());
        assertEquals(DType.F32, out.dtype());
        List<Launch> partials = ctx.launches.stream().filter(l -> l.name().startsWith("adamw_sumsq_partial")).toList();
        assertEquals(4, partials.size(), "the empty tensor launches nothing");
        assertEquals("adamw_sumsq_partial_bf16", partials.get(2).name());
        int slot = 0;
        Tensor partialBuffer = (Tensor) partials.get(0).args()[0];
        for (Launch p : partials) {
            assertEquals(slot, p.args()[1], "slots are contiguous, in list order");
            assertEquals(partialBuffer, p.args()[0]);
            slot += p.grid()[0];
        }
        assertEquals(slot, partialBuffer.numel());
        Launch fin = ctx.only("adamw_sumsq_final");
        assertEquals(slot, fin.args()[2]);
        assertEquals(1, fin.grid()[0]);
        assertEquals(out, fin.args()[0]);
    }

    @Test
    void sumOfSquaresOfNothingIsStillOneFinalLaunch() {
        new CudaAdamW(ctx).sumOfSquares(List.of());
        assertEquals(0, ctx.only("adamw_sumsq_final").args()[2]);
        assertThrows(IllegalArgumentException.class, () -> new CudaAdamW(ctx).sumOfSquares(List.of(ctx.scratch(DType.I32, 4))));
    }

    @Test
    void everyKernelOfTheseFilesIsLaunchableFromJava() {
        // Runs each launcher once so this test does not depend on the order JUnit picks. Some of these clear the
        // recorded launches between their cases, so the names come from the context's never-cleared set.
        List<Runnable> cases = List.of(this::rmsNormForwardShapes, this::addRmsNormReturnsSumAndNormalized,
                this::rmsNormBackwardReducesGainThroughPartialRows, this::rmsNormBackwardPicksTheKernelByWidthAndAlignment,
                this::fusedRmsNormBackwardIsOneLaunchWithItsOwnCounter, this::teamRmsNormBackwardsSizeTeamsByWidthAndTheGridByOccupancy,
                this::bulkCopyRmsNormBackwardRunsOnHopperWithItsRingsInSharedMemory,
                this::fusedTeamRmsNormBackwardIsVariant3sGridLaunchedCooperativelyWithTheCounter,
                this::prefetchingTeamRmsNormBackwardHasAtMost12WarpsPerBlock,
                this::prefetchingFusedTeamRmsNormBackwardIsVariant7sGridLaunchedCooperativelyWithTheCounter,
                this::rmsNormBackwardAccumulateLaunchesTheAccumulatingKernels,
                this::ropeIsOneWarpPerRowWithAPerWarpAngleTable, this::swigluForwardAndBackward,
                this::crossEntropyOneBlockPerRowWithTargetsInSharedMemory, this::adamWPassesHostBiasCorrectionsAndNullCompute,
                this::sumOfSquaresGivesEachTensorItsOwnPartialSlots, this::pipelinedRmsNormForwardLaunchesThePipeKernelsWherePossible,
                this::crossEntropySharedMemoryVariantKeepsTheRowOnChipUpTo160KB,
                this::decodeAttentionSplitsTheKeysIntoChunksAndMergesThem, this::decodeAttentionGivesEachBlockTheLargestPartOfAGroupUpToEightHeads,
                this::repeatHeadsIsOneThreadPerOutputElement);
        for (Runnable c : cases) {
            ctx.launches.clear();
            c.run();
        }
        Set<String> launched = ctx.everLaunched;
        assertEquals(SIGNATURES.keySet(), launched, "kernels with no Java launcher, or launches of unknown kernels");
    }

    // ------------------------------------------------------------------ signature parsing


    private static Map<String, Signature> parseAll() {
        Map<String, Signature> all = new HashMap<>(parseSignatures(FILES));
        all.putAll(parseSignatures(CHECKED_ONLY));
        return all;
    }

    private static Map<String, Signature> parseSignatures(List<String> files) {
        Map<String, Signature> sigs = new HashMap<>();
        for (String f : files) {
            String src;
            try {
                src = Files.readString(Path.of("src/main/cuda", f));
            } catch (IOException e) {
                throw new IllegalStateException("cannot read kernel source " + f + " (tests run from the project root)", e);
            }
            Map<String, Integer> constants = new HashMap<>();
            Matcher c = CONSTANT.matcher(src);
            while (c.find()) constants.put(c.group(1), Integer.parseInt(c.group(2)));
            Matcher m = KERNEL.matcher(expandKernelMacros(src));
            while (m.find()) {
                int maxThreads = m.group(1) == null ? 1024 : evalProduct(m.group(1).split(",")[0], constants);
                List<String> params = new ArrayList<>();
                for (String p : m.group(3).split(",")) params.add(kind(p.trim()));
                sigs.put(m.group(2), new Signature(params, maxThreads));
            }
        }
        if (sigs.isEmpty()) throw new IllegalStateException("no kernels parsed");
        return sigs;
    }

    /**
     * {@code src} with its kernels declared through a one-parameter macro written out as the preprocessor does: each
     * use at the start of a line ({@code DECODE_PARTIAL_GROUPED(3)}) becomes the body with the parameter substituted
     * ({@code ##} pasted), and the definition goes (its unexpanded declaration is no kernel).
     */
    static String expandKernelMacros(String src) {
        Matcher d = KERNEL_MACRO.matcher(src);
        while (d.find()) {
            String body = d.group(3).replace("\\\n", "\n");
            if (!body.contains("extern \"C\"")) continue;
            String param = d.group(2);
            src = src.replace(d.group(), "");
            Matcher use = Pattern.compile("(?m)^" + d.group(1) + "\\((\\w+)\\)").matcher(src);
            src = use.replaceAll(u -> Matcher.quoteReplacement(body.replaceAll("\\s*##\\s*" + param + "\\b", u.group(1))
                    .replaceAll("\\b" + param + "\\b", u.group(1))));
            d = KERNEL_MACRO.matcher(src);
        }
        return src;
    }

    private static int evalProduct(String expr, Map<String, Integer> constants) {
        int v = 1;
        for (String t : expr.split("\\*")) {
            String s = t.trim();
            v *= s.matches("\\d+") ? Integer.parseInt(s) : constants.get(s);
        }
        return v;
    }

    private static String kind(String param) {
        if (param.contains("*")) return "ptr";
        String type = param.substring(0, param.lastIndexOf(' ')).trim();
        return switch (type) {
            case "int" -> "i32";
            case "long long" -> "i64";
            case "float" -> "f32";
            default -> throw new IllegalStateException("unexpected kernel parameter type: " + param);
        };
    }
}
