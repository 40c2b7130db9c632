package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.Rope;
import dev.patchcore.selftest.ParityChecks;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The CUDA backend's launcher classes with their real kernels on the CPU emulator ({@link EmulatedKernelContext}),
 * against the CPU backend: what {@code selftest} checks on a GPU, for every memory-bound op family and each of its
 * kernel variants that runs at compute capability 8 (so the Java side's grid sizes, shared-memory sizes, argument order
 * and variant dispatch are exercised too). Inputs are bf16-representable, so both sides read the same numbers; outputs
 * must agree to ParityChecks' thresholds (relative L2 error 1e-2 for bf16 outputs, 1e-5 for f32 statistics). Skipped,
 * with the reason, without g++ or off x86-64. Matrix products (cuBLASLt) are not here; every flash-attention kernel,
 * mma.sync and Hopper wgmma (TMA included), is.
 */
class CudaEmulatedOpsTest {
    private static EmulatedKernelContext emu;
    private static CpuBackend cpu;
    private static String unavailable;
    private SplittableRandom random;

    @BeforeAll
    static void open() throws Exception {
        String[] why = new String[1];
        Path root = Path.of("").toAbsolutePath();
        emu = EmulatedKernelContext.build(root, EmulatedKernelContext.buildDirectory(root), why);
        unavailable = why[0];
        cpu = new CpuBackend(2);
    }

    @AfterAll
    static void close() {
        if (emu != null) emu.close();
        if (cpu != null) cpu.close();
    }

    @BeforeEach
    void seed() {
        assumeTrue(emu != null, "CPU emulator unavailable: " + unavailable);
        random = new SplittableRandom(42);
    }

    // ---------------------------------------------------------------- RMSNorm

    @ParameterizedTest(name = "forward variant {0}")
    @ValueSource(ints = {1, 2})
    void rmsNormForwardAndFusedAdd(int variant) {
        CudaRmsNorm rms = new CudaRmsNorm(emu);
        rms.setVariant(variant);
        for (int[] nd : new int[][] {{37, 1024}, {50, 136}, {19, 100}, {300, 2048}, {7, 2560}, {3, 4104}}) {
            int n = nd[0], d = nd[1];
            String at = "v" + variant + " n=" + n + " d=" + d;
            float[] x = values(n * d, 2), b = values(n * d, 1), g = values(d, 0.5f, 1.5f);
            Backend.RmsNormOut want = cpu.rmsNorm(host(x, n, d), host(g, d), 1e-5f);
            Backend.RmsNormOut got = rms.forward(dev(x, n, d), dev(g, d), 1e-5f);
            close("rmsNorm y " + at, got.y(), want.y());
            close("rmsNorm rstd " + at, got.rstd(), want.rstd());
            Backend.AddRmsNormOut wantAdd = cpu.addRmsNorm(host(x, n, d), host(b, n, d), host(g, d), 1e-5f);
            Backend.AddRmsNormOut gotAdd = rms.addForward(dev(x, n, d), dev(b, n, d), dev(g, d), 1e-5f);
            close("addRmsNorm sum " + at, gotAdd.sum(), wantAdd.sum());
            close("addRmsNorm y " + at, gotAdd.y(), wantAdd.y());
            // the kernel's rstd is of the sum it stores (bf16), the CPU's of the exact sum: ParityChecks allows bf16's error
            close("addRmsNorm rstd " + at, gotAdd.rstd(), wantAdd.rstd(), ParityChecks.BF16_THRESHOLD);
        }
    }

    /**
     * Variants 1 (warp per row + reduce kernel), 2 (the reduce in the last blocks, a cooperative grid), 3 and 4 (teams),
     * 5 (teams fed by bulk copies through mbarriers; the emulated device reports compute capability 9 for it), 6 (teams,
     * the reduce in the last blocks, a cooperative grid), 7 (teams loading their next batch during the current one) and 8
     * (7 with 6's reduce in its last blocks). 5-8 run in both emulator schedules: their blocks or teams wait on copies,
     * tickets or barriers.
     */
    @ParameterizedTest(name = "backward variant {0}")
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void rmsNormBackward(int variant) {
        atBackwardVariant(variant, () -> rmsNormBackwardAt(variant));
        String kernel = switch (variant) {  // at the shapes it serves (odd widths take the block-per-row kernel)
            case 1 -> "rmsnorm_bwd_rows";
            case 2 -> "rmsnorm_bwd_fused";
            case 3 -> "rmsnorm_bwd_teams2_bf16";
            case 4 -> "rmsnorm_bwd_teams4_bf16";
            case 5 -> "rmsnorm_bwd_bulk2_bf16";
            case 6 -> "rmsnorm_bwd_teams2_fused_bf16";
            case 7 -> "rmsnorm_bwd_teams2_prefetch_bf16";
            default -> "rmsnorm_bwd_teams2_prefetch_fused_bf16";
        };
        List<String> launched = emu.takeLaunched();
        assertTrue(launched.stream().anyMatch(n -> n.startsWith(kernel)), "variant " + variant + " never launched " + kernel + "*: " + launched);
    }

    /**
     * Runs a check of backward variant {@code variant} with the launch log emptied first: variant 5 on an emulated
     * compute capability 9, variants 5-8 in both emulator schedules (their blocks or teams wait on copies, tickets or
     * barriers).
     */
    private void atBackwardVariant(int variant, Runnable check) {
        emu.reportComputeCapability(variant == CudaRmsNorm.BACKWARD_BULK ? 9 : 8);
        emu.takeLaunched();
        try {
            if (variant >= CudaRmsNorm.BACKWARD_BULK) inBothSchedules(check);
            else check.run();
        } finally {
            emu.reportComputeCapability(8);
        }
    }

    private void rmsNormBackwardAt(int variant) {
        CudaRmsNorm rms = new CudaRmsNorm(emu);
        rms.setBackwardVariant(variant);
        for (int[] nd : new int[][] {{37, 1024}, {1001, 1536}, {41, 1280}, {3, 256}, {19, 100}, {5, 4096}, {300, 2048}}) {
            int n = nd[0], d = nd[1];
            String at = "v" + variant + " n=" + n + " d=" + d;
            float[] x = values(n * d, 2), g = values(d, 0.5f, 1.5f), dy = values(n * d, 1), dg0 = values(d, 1);
            Tensor rstd = cpu.rmsNorm(host(x, n, d), host(g, d), 1e-5f).rstd();
            Tensor wantDg = host(dg0, d), gotDg = emu.upload(DType.F32, dg0, d);
            Tensor wantDx = cpu.rmsNormBackward(host(dy, n, d), host(x, n, d), host(g, d), rstd, wantDg);
            Tensor gotDx = rms.backward(dev(dy, n, d), dev(x, n, d), dev(g, d), emu.upload(DType.F32, cpu.download(rstd), n), gotDg);
            close("rmsNormBackward dx " + at, gotDx, wantDx);
            close("rmsNormBackward dGain (accumulated) " + at, gotDg, wantDg);
        }
    }

    /**
     * rmsNormBackwardAccumulate (dxAcc += dx in place) with each backward variant: 1-4 and 6-8 run their accumulating
     * kernels (rmsnorm_bwd_*_acc_bf16) where they take the shape, variant 5 (compute capability 9) and the odd-width and
     * wide rows fall back to the backward into (NaN-poisoned) scratch and add_inplace_bf16. dxAcc and dGain start
     * non-zero; both are compared with the CPU backend's fused op.
     */
    @ParameterizedTest(name = "accumulating backward variant {0}")
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void rmsNormBackwardAccumulate(int variant) {
        atBackwardVariant(variant, () -> rmsNormBackwardAccumulateAt(variant));
        List<String> launched = emu.takeLaunched();
        List<String> acc = launched.stream().filter(n -> n.contains("_acc_")).distinct().toList();
        if (variant == CudaRmsNorm.BACKWARD_BULK) {
            assertEquals(List.of(), acc, "variant 5 has no accumulating kernel");
            assertTrue(launched.contains("rmsnorm_bwd_bulk2_bf16") && launched.contains("add_inplace_bf16"), launched.toString());
        } else {
            String kernel = switch (variant) {
                case 1 -> "rmsnorm_bwd_rows";
                case 2 -> "rmsnorm_bwd_fused";
                case 3 -> "rmsnorm_bwd_teams2_acc_bf16";
                case 4 -> "rmsnorm_bwd_teams4_acc_bf16";
                case 6 -> "rmsnorm_bwd_teams2_fused_acc_bf16";
                case 7 -> "rmsnorm_bwd_teams2_prefetch_acc_bf16";
                default -> "rmsnorm_bwd_teams2_prefetch_fused_acc_bf16";
            };
            assertTrue(!acc.isEmpty() && acc.stream().allMatch(n -> n.startsWith(kernel)), "variant " + variant + ": " + acc);
            // the block-per-row shapes (d = 100, 4096) through scratch and the add
            assertTrue(launched.contains("rmsnorm_bwd_bf16") && launched.contains("add_inplace_bf16"), launched.toString());
        }
    }

    private void rmsNormBackwardAccumulateAt(int variant) {
        CudaRmsNorm rms = new CudaRmsNorm(emu);
        rms.setBackwardVariant(variant);
        for (int[] nd : new int[][] {{37, 1024}, {41, 1280}, {7, 1032}, {3, 256}, {19, 100}, {5, 4096}, {300, 2048}}) {
            int n = nd[0], d = nd[1];
            String at = "v" + variant + " n=" + n + " d=" + d;
            float[] x = values(n * d, 2), g = values(d, 0.5f, 1.5f), dy = values(n * d, 1), dg0 = values(d, 1), acc0 = values(n * d, 1);
            Tensor rstd = cpu.rmsNorm(host(x, n, d), host(g, d), 1e-5f).rstd();
            Tensor wantDg = host(dg0, d), gotDg = emu.upload(DType.F32, dg0, d);
            Tensor wantAcc = cpu.rmsNormBackwardAccumulate(host(dy, n, d), host(x, n, d), host(g, d), rstd, wantDg, host(acc0, n, d));
            Tensor gotAcc = dev(acc0, n, d);
            assertSame(gotAcc, rms.backwardAccumulate(dev(dy, n, d), dev(x, n, d), dev(g, d),
                    emu.upload(DType.F32, cpu.download(rstd), n), gotDg, gotAcc));
            close("rmsNormBackwardAccumulate dxAcc " + at, gotAcc, wantAcc);
            close("rmsNormBackwardAccumulate dGain (accumulated) " + at, gotDg, wantDg);
        }
    }

    // ---------------------------------------------------------------- RoPE, head repeat, decode attention

    @Test
    void ropeWithThetaAndWithLlama3Scaling() {
        CudaRope rope = new CudaRope(emu);
        Rope plain = Rope.of(10000f), scaled = new Rope(500000f, new Rope.Scaling(32f, 1f, 4f, 64));
        for (Rope r : new Rope[] {plain, scaled})
            for (int[] s : new int[][] {{3, 16, 4, 64}, {2, 33, 2, 20}, {2, 300, 4, 64}, {2, 5, 32, 80}, {1, 3, 2, 128}}) {
                int b = s[0], t = s[1], h = s[2], dh = s[3], rows = b * t, w = h * dh;
                String at = r + " B=" + b + " T=" + t + " H=" + h + " Dh=" + dh;
                float[] x = values(rows * w, 1);
                close("rope " + at, rope.forward(dev(x, rows, w), t, h, r), cpu.rope(host(x, rows, w), t, h, r));
                close("ropeBackward " + at, rope.backward(dev(x, rows, w), t, h, r), cpu.ropeBackward(host(x, rows, w), t, h, r));
                float[] one = values(3 * w, 1);
                close("ropeAt 2045 " + at, rope.forwardAt(dev(one, 3, w), 2045, h, r), cpu.ropeAt(host(one, 3, w), 2045, h, r));
            }
    }

    @Test
    void repeatHeadsAndItsGradient() {
        CudaRepeatHeads repeat = new CudaRepeatHeads(emu);
        for (int[] s : new int[][] {{37, 2, 4, 64}, {5, 3, 2, 20}, {9, 8, 4, 64}, {4, 1, 1, 8}}) {
            int rows = s[0], kv = s[1], groups = s[2], dh = s[3];
            String at = "rows=" + rows + " kv=" + kv + " groups=" + groups + " Dh=" + dh;
            float[] x = values(rows * kv * dh, 2), dy = values(rows * kv * groups * dh, 1);
            close("repeatHeads " + at, repeat.forward(dev(x, rows, kv * dh), kv, groups), cpu.repeatHeads(host(x, rows, kv * dh), kv, groups));
            close("repeatHeadsBackward " + at, repeat.backward(dev(dy, rows, kv * groups * dh), kv, groups),
                    cpu.repeatHeadsBackward(host(dy, rows, kv * groups * dh), kv, groups));
        }
    }

    @Test
    void decodeAttentionOverTheKvCache() {
        CudaDecodeAttention decode = new CudaDecodeAttention(emu);
        decode.setVariant(CudaDecodeAttention.VARIANT_GROUPED);  // the default's kernel is checked by the next test
        // capacity, start, n, heads, kv heads, Dh: one chunk, two chunks, queries whose last chunk is empty; grouped-query
        // (CudaDecodeAttention.headsPerBlock query heads a block): groups of 2, 3, 4 (two cases), 8 (one key/value head
        // over 3 chunks, two over 3 chunks), and 12 (blocks of 6, one chunk, element loads).
        for (int[] c : new int[][] {{300, 0, 1, 3, 3, 64}, {300, 127, 1, 3, 3, 20}, {300, 128, 1, 4, 2, 64}, {300, 100, 60, 2, 2, 32},
                {300, 299, 1, 6, 2, 128}, {2048, 1000, 3, 8, 2, 80}, {300, 200, 7, 4, 1, 96}, {300, 254, 3, 8, 1, 64},
                {700, 333, 2, 16, 2, 32}, {300, 41, 2, 12, 1, 20}}) {
            int cap = c[0], start = c[1], n = c[2], h = c[3], kvh = c[4], dh = c[5];
            String at = "cap=" + cap + " start=" + start + " n=" + n + " H=" + h + " KH=" + kvh + " Dh=" + dh;
            float[] q = values(n * h * dh, 1), k = values(cap * kvh * dh, 1), v = values(cap * kvh * dh, 1);
            close("attendCached " + at, decode.attend(dev(q, n, h * dh), dev(k, cap, kvh * dh), dev(v, cap, kvh * dh), start, h, kvh),
                    cpu.attendCached(host(q, n, h * dh), host(k, cap, kvh * dh), host(v, cap, kvh * dh), start, h, kvh));
        }
    }

    @Test
    void decodeAttentionPerQueryHeadIsTheGroupedKernelsBitForBit() {
        // Kernel family "decode", variant 1 (the default: attn_decode_partial, a block per query head) on grouped-query
        // caches that variant 2 serves G heads a block: groups of 2 (one chunk), 3 (three chunks), 4 (two chunks, 7
        // queries, Dh 96), 8 (two chunks, 3 queries) and 12 (blocks of 6, element loads). The CPU's results, and
        // variant 2's bit for bit.
        CudaDecodeAttention grouped = new CudaDecodeAttention(emu), perHead = new CudaDecodeAttention(emu);
        grouped.setVariant(CudaDecodeAttention.VARIANT_GROUPED);
        assertEquals(CudaDecodeAttention.VARIANT_PER_HEAD, perHead.variant(), "a block per query head by default");
        for (int[] c : new int[][] {{300, 100, 1, 4, 2, 64}, {300, 299, 1, 6, 2, 128}, {300, 200, 7, 4, 1, 96}, {300, 254, 3, 8, 1, 64},
                {300, 41, 2, 12, 1, 20}}) {
            int cap = c[0], start = c[1], n = c[2], h = c[3], kvh = c[4], dh = c[5];
            String at = "cap=" + cap + " start=" + start + " n=" + n + " H=" + h + " KH=" + kvh + " Dh=" + dh;
            float[] q = values(n * h * dh, 1), k = values(cap * kvh * dh, 1), v = values(cap * kvh * dh, 1);
            float[] one = emu.download(grouped.attend(dev(q, n, h * dh), dev(k, cap, kvh * dh), dev(v, cap, kvh * dh), start, h, kvh));
            Tensor two = perHead.attend(dev(q, n, h * dh), dev(k, cap, kvh * dh), dev(v, cap, kvh * dh), start, h, kvh);
            close("attendCached variant 1 " + at, two,
                    cpu.attendCached(host(q, n, h * dh), host(k, cap, kvh * dh), host(v, cap, kvh * dh), start, h, kvh));
            float[] got = emu.download(two);
            for (int i = 0; i < got.length; i++)
                assertEquals(Float.floatToRawIntBits(one[i]), Float.floatToRawIntBits(got[i]), "variant 1 = variant 2 bit for bit, " + at + ", element " + i);
        }
    }

    @Test
    void simpleAttentionForwardAndBackward() {
        CudaSimpleAttention attention = new CudaSimpleAttention(emu);
        for (int[] s : new int[][] {{2, 17, 2, 64}, {1, 40, 3, 20}, {1, 5, 1, 128}})
            attentionMatchesCpu("attention", s, 1, attention::forward, attention::backward);
    }

    /** The launcher's forward and backward, as CudaSimpleAttention and CudaFlashAttention spell them. */
    private interface Forward {
        Backend.AttentionOut run(Tensor q, Tensor k, Tensor v, int seqLen, int heads);
    }

    private interface Backward {
        Backend.AttentionGrads run(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, int seqLen, int heads);
    }

    /**
     * Attention forward and backward at shape {B, T, H, Dh} (q and k uniform in ±qkRange) against the CPU backend;
     * the backward from the launcher's own out and lse, as training runs it.
     */
    private void attentionMatchesCpu(String what, int[] shape, float qkRange, Forward forward, Backward backward) {
        int b = shape[0], t = shape[1], h = shape[2], dh = shape[3], rows = b * t, w = h * dh;
        String at = what + " B=" + b + " T=" + t + " H=" + h + " Dh=" + dh;
        float[] q = values(rows * w, qkRange), k = values(rows * w, qkRange), v = values(rows * w, 1), dOut = values(rows * w, 1);
        Backend.AttentionOut want = cpu.attention(host(q, rows, w), host(k, rows, w), host(v, rows, w), t, h);
        Backend.AttentionOut got = forward.run(dev(q, rows, w), dev(k, rows, w), dev(v, rows, w), t, h);
        close("out " + at, got.out(), want.out());
        close("lse " + at, got.lse(), want.lse());
        Backend.AttentionGrads wg = cpu.attentionBackward(host(dOut, rows, w), host(q, rows, w), host(k, rows, w), host(v, rows, w),
                want.out(), want.lse(), t, h);
        Backend.AttentionGrads gg = backward.run(dev(dOut, rows, w), dev(q, rows, w), dev(k, rows, w), dev(v, rows, w),
                got.out(), got.lse(), t, h);
        close("dq " + at, gg.dq(), wg.dq());
        close("dk " + at, gg.dk(), wg.dk());
        close("dv " + at, gg.dv(), wg.dv());
    }

    // ---------------------------------------------------------------- flash attention (mma.sync kernels)

    /**
     * The tensor-core kernels of flash_attention.cu through CudaFlashAttention, as compute capability 8 dispatches them
     * (on an H100 the same kernels serve head dims 80 and 96, and every head dim under -Dpatchcore.flash.*): forward and
     * backward generation by generation, every head dim, sequence lengths that end inside a tile.
     */
    @ParameterizedTest(name = "forward generation {0}, backward generation {1}")
    @CsvSource({"2, 3", "2, 2", "1, 1"})
    void flashAttentionForwardAndBackward(int forwardGeneration, int backwardGeneration) {
        inBothSchedules(() -> flashAttentionGenerations(forwardGeneration, backwardGeneration));
    }

    private void flashAttentionGenerations(int forwardGeneration, int backwardGeneration) {
        CudaFlashAttention flash = new CudaFlashAttention(emu, forwardGeneration == 2, backwardGeneration);
        emu.takeLaunched();
        for (int[] s : new int[][] {{2, 17, 2, 64}, {1, 200, 2, 64}, {1, 130, 2, 80}, {2, 97, 1, 96}, {1, 161, 1, 128}, {1, 1, 1, 128}}) {
            int dh = s[3];
            String at = "flash fwd" + forwardGeneration + " bwd" + backwardGeneration;
            attentionMatchesCpu(at, s, 2, flash::forward, flash::backward);
            List<String> launched = emu.takeLaunched();
            String fwd = forwardGeneration == 2 ? "flash_attn_fwd2_d" + dh + "_" : "flash_attn_fwd_d" + dh + "_";
            String bwd = backwardGeneration == 1 ? "flash_attn_bwd_d" + dh : "flash_attn_bwd" + backwardGeneration + "_d" + dh + "_";
            assertTrue(launched.stream().anyMatch(n -> n.startsWith(fwd)) && launched.stream().anyMatch(n -> n.startsWith(bwd)),
                    at + ": expected " + fwd + "* and " + bwd + "*, launched " + launched);
        }
    }

    /**
     * The Hopper kernels of flash_wgmma.cu (wgmma from shared-memory descriptors and from registers, mbarrier rings,
     * the inter-warpgroup ping-pong on named barriers, TMA tile loads), the emulated device reporting compute capability
     * 9: forward variants 1 (the default: the persistent ping-pong with TMA, at D = 64 three consumer warpgroups and a
     * producer warpgroup), 3 (overlapped), 4 (ping-pong), 5 (persistent ping-pong, cp.async), 6 (persistent with TMA,
     * two warpgroups) and 7 (three warpgroups without a producer at D = 64, variant 1's kernel at 128), each with the
     * wgmma backward, at head dims 64 and 128.
     */
    @ParameterizedTest(name = "forward variant {0}")
    @ValueSource(ints = {1, 3, 4, 5, 6, 7})
    void flashAttentionWgmma(int forwardVariant) {
        emu.reportComputeCapability(9);
        try {
            inBothSchedules(() -> flashAttentionWgmmaAt(forwardVariant));
        } finally {
            emu.reportComputeCapability(8);
        }
    }

    private void flashAttentionWgmmaAt(int forwardVariant) {
        {
            CudaFlashAttention flash = new CudaFlashAttention(emu);
            flash.setForwardVariant(forwardVariant);
            flash.setBackwardVariant(CudaFlashAttention.BACKWARD_WGMMA);
            emu.takeLaunched();
            for (int[] s : new int[][] {{1, 130, 2, 64}, {2, 17, 1, 128}, {1, 300, 1, 64}, {1, 257, 1, 128}}) {
                int dh = s[3];
                String at = "wgmma fwd v" + forwardVariant + " T=" + s[1] + " Dh=" + dh;
                attentionMatchesCpu(at, s, 2, flash::forward, flash::backward);
                List<String> launched = emu.takeLaunched();
                String fwd = switch (forwardVariant) {
                    case 1 -> dh == 64 ? "flash_attn_fwd_wgmma_pp3_producer_tma_d64" : "flash_attn_fwd_wgmma_pp_persistent_tma_d128";
                    case 3 -> "flash_attn_fwd_wgmma_d" + dh;
                    case 4 -> "flash_attn_fwd_wgmma_pp_d" + dh;
                    case 5 -> "flash_attn_fwd_wgmma_pp_persistent_d" + dh;
                    case 7 -> dh == 64 ? "flash_attn_fwd_wgmma_pp3_persistent_tma_d64" : "flash_attn_fwd_wgmma_pp_persistent_tma_d128";
                    default -> "flash_attn_fwd_wgmma_pp_persistent_tma_d" + dh;
                };
                assertTrue(launched.contains(fwd) && launched.contains("flash_attn_bwd_wgmma_d" + dh),
                        at + ": expected " + fwd + " and flash_attn_bwd_wgmma_d" + dh + ", launched " + launched);
            }
        }
    }

    @Test
    void flashAttentionIsCausal() {
        CudaFlashAttention flash = new CudaFlashAttention(emu);
        int t = 150, h = 2, dh = 64, w = h * dh, keep = 77;  // rows ≥ keep change; rows < keep must not see it
        float[] q = values(t * w, 2), k = values(t * w, 2), v = values(t * w, 1);
        float[] before = emu.download(flash.forward(dev(q, t, w), dev(k, t, w), dev(v, t, w), t, h).out());
        for (int i = keep * w; i < t * w; i++) {
            q[i] = Bf16.round(-q[i] + 0.25f);
            k[i] = Bf16.round(k[i] * 3);
            v[i] = Bf16.round(v[i] * -2 + 1);
        }
        float[] after = emu.download(flash.forward(dev(q, t, w), dev(k, t, w), dev(v, t, w), t, h).out());
        assertArrayEquals(java.util.Arrays.copyOf(before, keep * w), java.util.Arrays.copyOf(after, keep * w),
                "outputs of positions before the perturbed ones changed");
        assertTrue(!java.util.Arrays.equals(before, after), "perturbing later positions changed nothing at all");
    }

    // ---------------------------------------------------------------- SwiGLU, element-wise, cross-entropy, AdamW, patches

    @Test
    void swigluForwardAndBackward() {
        CudaSwiGlu swiglu = new CudaSwiGlu(emu);
        for (int n : new int[] {1, 4099, 100003}) {
            float[] a = values(n, 6), b = values(n, 2), dy = values(n, 1);
            close("swiglu n=" + n, swiglu.forward(dev(a, n), dev(b, n)), cpu.swiglu(host(a, n), host(b, n)));
            Backend.SwiGluGrads want = cpu.swigluBackward(host(dy, n), host(a, n), host(b, n));
            Backend.SwiGluGrads got = swiglu.backward(dev(dy, n), dev(a, n), dev(b, n));
            close("swigluBackward dGate n=" + n, got.dGate(), want.dGate());
            close("swigluBackward dUp n=" + n, got.dUp(), want.dUp());
        }
    }

    @Test
    void elementwiseAddAndCasts() {
        CudaElementwise ew = new CudaElementwise(emu);
        for (int n : new int[] {1, 1003, 65536}) {
            float[] x = values(n, 3), y = values(n, 3);
            close("add bf16 n=" + n, ew.add(dev(x, n), dev(y, n)), cpu.add(host(x, n), host(y, n)));
            Tensor accF = emu.upload(DType.F32, x, n), wantF = host(x, n);
            ew.addInPlace(accF, emu.upload(DType.F32, y, n));
            cpu.addInPlace(wantF, host(y, n));
            close("addInPlace f32 n=" + n, accF, wantF);
            Tensor accMixed = emu.upload(DType.F32, x, n);
            ew.addInPlace(accMixed, dev(y, n));
            close("addInPlace f32 += bf16 n=" + n, accMixed, wantF);
            Tensor bf = emu.scratch(DType.BF16, n);
            ew.cast(emu.upload(DType.F32, x, n), bf);
            assertArrayEquals(x, emu.download(bf), "cast f32 → bf16 of bf16 values is exact, n=" + n);
            Tensor f = emu.scratch(DType.F32, n);
            ew.cast(bf, f);
            assertArrayEquals(x, emu.download(f), "cast bf16 → f32 is exact, n=" + n);
        }
    }

    @ParameterizedTest(name = "variant {0}")
    @ValueSource(ints = {1, 2})
    void crossEntropyLossAndGradientInPlace(int variant) {
        CudaCrossEntropy ce = new CudaCrossEntropy(emu);
        ce.setVariant(variant);
        // rows, vocabulary, row stride (padding past the vocabulary), K
        for (int[] s : new int[][] {{5, 1000, 1024, 1}, {6, 257, 257, 4}, {3, 50257, 50304, 4}, {2, 50257, 50257, 8}, {4, 5, 64, 2}}) {
            int n = s[0], vocab = s[1], stride = s[2], k = s[3];
            String at = "v" + variant + " n=" + n + " V=" + vocab + " stride=" + stride + " K=" + k;
            float[] logits = values(n * stride, 8);
            int[] targets = new int[n * k];
            for (int i = 0; i < targets.length; i++) targets[i] = random.nextInt(vocab);
            Tensor hostLogits = host(logits, n, stride), devLogits = dev(logits, n, stride);
            Tensor wantLoss = cpu.crossEntropyK(hostLogits, hostInts(targets, n, k), vocab, 0.37f);
            Tensor gotLoss = ce.forward(devLogits, emu.uploadInts(targets, n, k), vocab, 0.37f);
            close("crossEntropyK loss " + at, gotLoss, wantLoss);
            close("crossEntropyK gradient " + at, devLogits, hostLogits);
        }
    }

    @Test
    void adamWStepAndGradientNorm() {
        CudaAdamW adam = new CudaAdamW(emu);
        Backend.AdamWStep step = new Backend.AdamWStep(3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 7, 0.5f);
        for (int n : new int[] {1, 1001, 100003}) {
            float[] w = values(n, 1), g = values(n, 2), m = values(n, 0.1f), v = values(n, 0f, 0.01f);
            Tensor hw = host(w, n), hm = host(m, n), hv = host(v, n);
            Tensor dw = emu.upload(DType.F32, w, n), dm = emu.upload(DType.F32, m, n), dv = emu.upload(DType.F32, v, n);
            Tensor compute = emu.scratch(DType.BF16, n);
            cpu.adamW(hw, host(g, n), hm, hv, null, step);
            adam.step(dw, emu.upload(DType.F32, g, n), dm, dv, compute, step);
            close("adamW master n=" + n, dw, hw);
            close("adamW m n=" + n, dm, hm);
            close("adamW v n=" + n, dv, hv);
            close("adamW bf16 copy n=" + n, compute, hw);
        }
        float[] a = values(100003, 1), b = values(17, 3);
        double want = cpu.sumOfSquares(List.of(host(a, a.length), host(b, b.length)));
        float got = emu.download(adam.sumOfSquares(List.of(emu.upload(DType.F32, a, a.length), dev(b, b.length))))[0];
        assertEquals(want, got, 1e-5 * want, "sumOfSquares over an F32 and a BF16 tensor");
    }

    @ParameterizedTest(name = "variant {0}")
    @ValueSource(ints = {1, 2})
    void patchEmbeddingForwardAndBackward(int variant) {
        CudaPatchEmbed pe = new CudaPatchEmbed(emu);
        pe.setVariant(variant);
        // K, rows (patches), d, vocabulary
        for (int[] s : new int[][] {{1, 13, 70, 97}, {4, 13, 64, 97}, {2, 512, 64, 32000}, {4, 256, 128, 50}, {8, 9, 24, 5}}) {
            int k = s[0], rows = s[1], d = s[2], vocab = s[3];
            String at = "v" + variant + " K=" + k + " rows=" + rows + " d=" + d + " V=" + vocab;
            float[] table = values(vocab * d, 1), dOut = values(rows * d, 1), dTable0 = values(vocab * d, 1);
            int[] tokens = new int[rows * k];
            for (int i = 0; i < tokens.length; i++) tokens[i] = random.nextInt(Math.min(vocab, 40));  // repeats: runs of one token
            Tensor devTokens = emu.uploadInts(tokens, 1, rows * k);
            pe.noteUpload(devTokens, tokens);  // as CudaBackend.uploadInts: the backward's host-sorted keys
            Tensor hostTokens = hostInts(tokens, 1, rows * k);
            close("patchEmbed " + at, pe.forward(dev(table, vocab, d), devTokens, k), cpu.patchEmbed(host(table, vocab, d), hostTokens, k));
            Tensor wantDt = host(dTable0, vocab, d), gotDt = emu.upload(DType.F32, dTable0, vocab, d);
            cpu.patchEmbedBackward(host(dOut, rows, d), hostTokens, k, wantDt);
            pe.backward(dev(dOut, rows, d), devTokens, k, gotDt);
            close("patchEmbedBackward " + at, gotDt, wantDt);
            pe.forget(devTokens);  // and through the device-sorted path
            Tensor again = emu.upload(DType.F32, dTable0, vocab, d);
            pe.backward(dev(dOut, rows, d), devTokens, k, again);
            assertArrayEquals(emu.download(gotDt), emu.download(again), "patchEmbedBackward: host- and device-sorted keys agree, " + at);
        }
    }

    // ---------------------------------------------------------------- helpers

    /**
     * Runs a check of kernels with asynchronous copies or wgmma twice: threads resumed first to last with everything
     * completing at issue, then last to first with copies and wgmma completing only at the wait that covers them.
     */
    private void inBothSchedules(Runnable check) {
        try {
            emu.schedule(false);
            check.run();
            emu.schedule(true);
            check.run();
        } finally {
            emu.schedule(null);
        }
    }

    /** n bf16-representable values uniform in [−scale, scale). */
    private float[] values(int n, float scale) { return values(n, -scale, scale); }

    private float[] values(int n, float lo, float hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = Bf16.round((float) (lo + (hi - lo) * random.nextDouble()));
        return v;
    }

    private static Tensor host(float[] v, int... shape) {
        Tensor t = cpu.allocate(DType.F32, shape);
        cpu.upload(t, v);
        return t;
    }

    private static Tensor hostInts(int[] v, int... shape) {
        Tensor t = cpu.allocate(DType.I32, shape);
        cpu.uploadInts(t, v);
        return t;
    }

    private static Tensor dev(float[] v, int... shape) { return emu.upload(DType.BF16, v, shape); }

    private static void close(String what, Tensor got, Tensor want) {
        close(what, got, want, got.dtype() == DType.BF16 ? ParityChecks.BF16_THRESHOLD : ParityChecks.F32_THRESHOLD);
    }

    private static void close(String what, Tensor got, Tensor want, double threshold) {
        double err = ParityChecks.relErr(emu.download(got), cpu.download(want));
        assertTrue(err <= threshold, what + ": relative error " + err + " > " + threshold);
    }
}
