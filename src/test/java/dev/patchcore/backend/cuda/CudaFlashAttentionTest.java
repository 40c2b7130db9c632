package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Launch plumbing of {@link CudaFlashAttention} without a GPU: a recording {@link KernelContext} checks that
 * every kernel the class launches is instantiated in flash_attention.cu, with the grids and shapes the kernels
 * assume, and that bad inputs end in one clear message. Numerical parity runs on a GPU
 * (src/test/cuda/flash_attention_test.cu and selftest).
 */
class CudaFlashAttentionTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();

    private record Launch(String name, int gridX, int gridY, int blockX, int shared, Object[] args) {}

    /** Hands out fake device memory at 256-byte aligned addresses and records launches. */
    private static final class RecordingContext implements KernelContext {
        final List<Launch> launches = new ArrayList<>();
        long next = 1 << 20;
        int computeCapabilityMajor;

        @Override public int computeCapabilityMajor() { return computeCapabilityMajor; }

        /** What the driver says ptxas gave a kernel (0: the context cannot say, as the default). */
        int registers;

        @Override public int registersPerThread(String name) { return registers; }

        @Override public void launch(String name, int gx, int gy, int gz, int bx, int by, int bz, int shared, Object... args) {
            assertEquals(1, gz);
            assertEquals(1, by);
            assertEquals(1, bz);
            if (!name.startsWith("flash_attn_fwd2_") && !name.startsWith("flash_attn_bwd2_") && !name.startsWith("flash_attn_bwd3_")
                    && !name.startsWith("flash_attn_fwd_wgmma_") && !name.startsWith("flash_attn_bwd_wgmma_"))
                assertEquals(0, shared, "first-generation flash kernels use static shared memory only (≤ 48 KB)");
            if (name.startsWith("flash_attn_bwd3_") || name.startsWith("flash_attn_bwd_wgmma_")
                    || name.equals("flash_attn_fwd_wgmma_d128") || name.startsWith("flash_attn_fwd_wgmma_pp"))
                // one 256- or 384-thread CTA per SM (registers): the per-block limit, 227 KB
                assertTrue(shared > 0 && shared <= 227 * 1024, name + " asks for " + shared + " bytes");
            else // two CTAs per SM must fit the H100's 228 KB (each CTA also reserves 1 KB)
                assertTrue(shared >= 0 && 2 * (shared + 1024) <= 228 * 1024, name + " asks for " + shared + " bytes");
            launches.add(new Launch(name, gx, gy, bx, shared, args));
        }

        @Override public void launchCooperative(String name, int gx, int gy, int gz, int bx, int by, int bz, int shared, Object... args) {
            fail("attention kernels never wait for other blocks: " + name);
        }

        @Override public Tensor scratch(DType dtype, int... shape) { return tensor(dtype, shape); }

        // Attention keeps nothing between calls and uploads nothing: only scratch tensors.
        @Override public Tensor allocate(DType dtype, int... shape) { return fail("attention allocated persistent memory"); }

        @Override public void free(Tensor t) { fail("attention freed memory"); }

        /** Tensor maps asked for (variant 6), each answered with 128 bytes holding its request's index. */
        final List<TensorMaps.Bf16Tiled> maps = new ArrayList<>();
        boolean mapsAvailable = true;

        @Override public TensorMaps.TensorMap tensorMap(TensorMaps.Bf16Tiled spec) {
            assertTrue(mapsAvailable, "a tensor map where the driver makes none");
            maps.add(spec);
            byte[] b = new byte[TensorMaps.BYTES];
            b[0] = (byte) maps.size();
            return new TensorMaps.TensorMap(b);
        }

        @Override public boolean tensorMapsAvailable() { return mapsAvailable; }

        @Override public void copyInts(Tensor dst, int[] src) { fail("attention copied host ints"); }

        /** An H100's 132 unless a test says otherwise. */
        int multiprocessors = 132;

        @Override public int multiprocessorCount() { return multiprocessors; }

        @Override public int residentBlocksPerMultiprocessor(String name, int blockThreads, int sharedBytes) {
            return fail("attention grids are sized without the occupancy calculator: " + name);
        }

        Tensor tensor(DType dtype, int... shape) {
            long n = dtype.bytes();
            for (int s : shape) n *= s;
            CudaStorage st = new CudaStorage(next, n);
            next += (n + 255) / 256 * 256;
            return new Tensor(st, dtype, shape);
        }
    }

    private static List<String> kernelsInSource() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_attention.cu"));
        List<String> names = new ArrayList<>();
        Matcher fwd = Pattern.compile("(?m)^FLASH_ATTN_FWD\\((\\d+), (\\d+), (\\d+)\\)").matcher(src);
        while (fwd.find()) names.add("flash_attn_fwd_d" + fwd.group(1) + "_w" + fwd.group(2) + "_m" + fwd.group(3));
        Matcher bwd = Pattern.compile("(?m)^FLASH_ATTN_BWD\\((\\d+), (\\d+)\\)").matcher(src);
        while (bwd.find()) {
            names.add("flash_attn_bwd_prep_d" + bwd.group(1));
            names.add("flash_attn_bwd_d" + bwd.group(1));
        }
        Matcher fwd2 = Pattern.compile("(?m)^FLASH_ATTN_FWD2\\((\\d+), (\\d+), (\\d+), ([01])\\)").matcher(src);
        while (fwd2.find())
            names.add("flash_attn_fwd2_d" + fwd2.group(1) + "_m" + fwd2.group(2) + "_n" + fwd2.group(3) + "_q" + fwd2.group(4));
        Matcher bwd2 = Pattern.compile("(?m)^FLASH_ATTN_BWD2\\((\\d+), (\\d+), ([01])\\)").matcher(src);
        while (bwd2.find()) names.add("flash_attn_bwd2_d" + bwd2.group(1) + "_q" + bwd2.group(2) + "_v" + bwd2.group(3));
        Matcher bwd3 = Pattern.compile("(?m)^FLASH_ATTN_BWD3\\((\\d+), (\\d+), ([01])\\)").matcher(src);
        while (bwd3.find()) names.add("flash_attn_bwd3_d" + bwd3.group(1) + "_q" + bwd3.group(2) + "_v" + bwd3.group(3));
        if (src.contains("void __launch_bounds__(256) flash_attn_dq_convert(")) names.add("flash_attn_dq_convert");
        return names;
    }

    @Test
    void wgmmaForwardRunsOnlyOnHopperAtHeadDims64And128() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        List<String> compiled = new ArrayList<>();
        Matcher m = Pattern.compile("(?m)^FLASH_ATTN_FWD_WGMMA\\((\\d+), (\\d+)\\)").matcher(src);
        while (m.find()) compiled.add("flash_attn_fwd_wgmma_d" + m.group(1));
        assertEquals(List.of("flash_attn_fwd_wgmma_d64", "flash_attn_fwd_wgmma_d128"), compiled);
        for (int cc : new int[] {8, 9, 10}) {
            for (int d : new int[] {64, 80, 96, 128}) {
                RecordingContext ctx = new RecordingContext();
                ctx.computeCapabilityMajor = cc;
                CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                fa.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA);
                int b = 2, h = 3, t = 300;
                Tensor q = ctx.tensor(DType.BF16, b * t, h * d);
                Backend.AttentionOut out = fa.forward(q, q, q, t, h);
                assertArrayEquals(new int[] {b, h, t}, out.lse().shape());
                Launch l = ctx.launches.getFirst();
                if (cc != 9 || (d != 64 && d != 128)) {
                    assertTrue(l.name().startsWith("flash_attn_fwd2_"), cc + "/" + d + ": " + l.name());
                    continue;
                }
                assertEquals("flash_attn_fwd_wgmma_d" + d, l.name());
                assertEquals(b * h, l.gridX());
                assertEquals(3, l.gridY(), "128 query rows per CTA");
                assertEquals(256, l.blockX(), "two warpgroups");
                int keyTile = d == 64 ? 64 : 128;  // FwdWgmmaTile in flash_wgmma.cu
                assertEquals(1024 + 128 * d * 2 + 4 * keyTile * d * 2, l.shared(), "alignment slack, Q, double-buffered K and V");
                assertEquals(d == 64 ? 50_176 : 164_864, l.shared());
                assertEquals(7, l.args().length);
                assertSame(out.out(), l.args()[3]);
                assertSame(out.lse(), l.args()[4]);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention(new RecordingContext(), true, 3).setForwardVariant(0));
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention(new RecordingContext(), true, 3).setForwardVariant(8));
    }

    /** Variant 5: the persistent ping-pong kernel at D = 64 and 128 on Hopper only, one CTA per SM, B·H as an extra argument. */
    @Test
    void persistentForwardIsOneCtaPerSmOnHopper() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("#define FWD_PERSISTENT_BODY(D) forward_wgmma_pingpong_persistent<D>(q, k, v, out, lse, T, H, BH);"));
        assertTrue(src.contains("FLASH_ATTN_FWD_WGMMA_PERSISTENT(64)") && src.contains("FLASH_ATTN_FWD_WGMMA_PERSISTENT(128)"));
        assertTrue(src.contains("115 824 bytes at D = 64, 230 512 at D = 128"), "the kernels' comment mirrors ForwardWgmmaPersistent.sharedBytes");
        for (int cc : new int[] {8, 9}) {
            for (int d : new int[] {64, 80, 96, 128}) {
                for (int[] bht : new int[][] {{4, 8, 2048}, {1, 3, 300}}) {
                    RecordingContext ctx = new RecordingContext();
                    ctx.computeCapabilityMajor = cc;
                    CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                    fa.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_PERSISTENT);
                    int b = bht[0], h = bht[1], t = bht[2];
                    Tensor q = ctx.tensor(DType.BF16, b * t, h * d);
                    Backend.AttentionOut out = fa.forward(q, q, q, t, h);
                    Launch l = ctx.launches.getFirst();
                    if (cc != 9 || (d != 64 && d != 128)) {
                        assertTrue(l.name().startsWith("flash_attn_fwd2_"), cc + "/" + d + ": " + l.name());
                        continue;
                    }
                    assertEquals("flash_attn_fwd_wgmma_pp_persistent_d" + d, l.name());
                    int items = b * h * ((t + 127) / 128);
                    assertEquals(Math.min(items, 132), l.gridX(), "one CTA per SM, never more than the items");
                    assertEquals(1, l.gridY());
                    assertEquals(256, l.blockX());
                    assertEquals(1024 + 2 * 128 * d * 2 + 5 * 128 * d * 2 + 14 * 8, l.shared(), "two Q buffers, the rings, 14 mbarriers");
                    assertEquals(d == 64 ? 115_824 : 230_512, l.shared());
                    assertEquals(8, l.args().length, "the ping-pong kernel's arguments and B·H");
                    assertSame(out.out(), l.args()[3]);
                    assertEquals(b * h, l.args()[7]);
                }
            }
        }
    }

    /** Variant 6: variant 5's launch with TMA tensor maps of q, k and v; variant 5 where the driver makes no maps. */
    @Test
    void tmaForwardPassesTensorMapsOfQkv() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("#define FWD_PERSISTENT_TMA_BODY(D) forward_wgmma_pingpong_persistent<D, true>(q, k, v, out, lse, T, H, BH, &tmQ, &tmK, &tmV);"));
        RecordingContext ctx = new RecordingContext();
        ctx.computeCapabilityMajor = 9;
        CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
        fa.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_PERSISTENT_TMA);
        int b = 4, h = 8, t = 2048, d = 128;
        Tensor q = ctx.tensor(DType.BF16, b * t, h * d), k = ctx.tensor(DType.BF16, b * t, h * d), v = ctx.tensor(DType.BF16, b * t, h * d);
        fa.forward(q, k, v, t, h);
        Launch l = ctx.launches.getFirst();
        assertEquals("flash_attn_fwd_wgmma_pp_persistent_tma_d128", l.name());
        assertEquals(132, l.gridX());
        assertEquals(230_512, l.shared());
        assertEquals(11, l.args().length, "variant 5's arguments and three tensor maps");
        assertEquals(3, ctx.maps.size());
        for (int i = 0; i < 3; i++) {
            TensorMaps.Bf16Tiled m = ctx.maps.get(i);
            assertEquals(CudaStorage.addressOf(List.of(q, k, v).get(i)), m.address());
            assertArrayEquals(new long[] {d, h, t, b}, m.dims(), "[B][T][H][D], innermost first");
            assertArrayEquals(new long[] {d * 2, (long) h * d * 2, (long) h * d * 2 * t}, m.strideBytes());
            assertArrayEquals(new int[] {64, 1, i == 0 ? 64 : 128, 1}, m.box(), "64 columns × 1 head × rows × 1 batch");
            assertEquals(i + 1, ((TensorMaps.TensorMap) l.args()[8 + i]).bytes()[0], "map " + i + " in argument " + (8 + i));
        }
        // Without tensor maps from the driver: variant 5's kernel.
        RecordingContext noMaps = new RecordingContext();
        noMaps.computeCapabilityMajor = 9;
        noMaps.mapsAvailable = false;
        CudaFlashAttention fb = new CudaFlashAttention(noMaps, true, 3);
        fb.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_PERSISTENT_TMA);
        fb.forward(q, k, v, t, h);
        assertEquals("flash_attn_fwd_wgmma_pp_persistent_d128", noMaps.launches.getFirst().name());
        // Head dim 64: the D = 64 kernel, one 64-column box per row.
        RecordingContext d64 = new RecordingContext();
        d64.computeCapabilityMajor = 9;
        CudaFlashAttention fc = new CudaFlashAttention(d64, true, 3);
        fc.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_PERSISTENT_TMA);
        Tensor q64 = d64.tensor(DType.BF16, 2 * 300, 3 * 64);
        fc.forward(q64, q64, q64, 300, 3);
        assertEquals("flash_attn_fwd_wgmma_pp_persistent_tma_d64", d64.launches.getFirst().name());
        assertEquals(115_824, d64.launches.getFirst().shared());
        assertArrayEquals(new long[] {64, 3, 300, 2}, d64.maps.getFirst().dims());
        assertArrayEquals(new long[] {128, 3 * 128, 3 * 128 * 300}, d64.maps.getFirst().strideBytes());
        // Head dim 96: no persistent kernel, the mma.sync forward.
        RecordingContext d96 = new RecordingContext();
        d96.computeCapabilityMajor = 9;
        CudaFlashAttention fd = new CudaFlashAttention(d96, true, 3);
        fd.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_PERSISTENT_TMA);
        Tensor q96 = d96.tensor(DType.BF16, 2 * 300, 3 * 96);
        fd.forward(q96, q96, q96, 300, 3);
        assertTrue(d96.launches.getFirst().name().startsWith("flash_attn_fwd2_"));
        assertEquals(List.of(), d96.maps);
    }

    /**
     * Variant 7: three warpgroups and 192-row items at D = 64 on Hopper (TMA where maps exist) without a producer
     * warpgroup (the default until H100 run 16); elsewhere what variant 1 runs: variant 6 at D = 128.
     */
    @Test
    void threeWarpgroupForwardWithoutProducerIsVariant7() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("forward_wgmma_pingpong_persistent<64, true, 3>(q, k, v, out, lse, T, H, BH, &tmQ, &tmK, &tmV);"));
        assertTrue(src.contains("= 165 024 bytes"), "the kernels' comment mirrors ForwardWgmmaPersistent.sharedBytes");
        assertTrue(src.contains("constexpr int PP3_THREADS = 384;"));
        int b = 4, h = 16, t = 2048;
        for (boolean maps : new boolean[] {true, false}) {
            RecordingContext ctx = new RecordingContext();
            ctx.computeCapabilityMajor = 9;
            ctx.mapsAvailable = maps;
            CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
            fa.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_NO_PRODUCER);
            Tensor q = ctx.tensor(DType.BF16, b * t, h * 64);
            Backend.AttentionOut out = fa.forward(q, q, q, t, h);
            Launch l = ctx.launches.getFirst();
            if (!maps) {  // the three-warpgroup kernel loads through TMA only: without maps, mma.sync
                assertTrue(l.name().startsWith("flash_attn_fwd2_d64"), l.name());
                continue;
            }
            assertEquals("flash_attn_fwd_wgmma_pp3_persistent_tma_d64", l.name());
            assertEquals(132, l.gridX(), "B·H·⌈2048/192⌉ = 704 items, one CTA per SM");
            assertEquals(384, l.blockX(), "three warpgroups");
            assertEquals(165_024, l.shared());
            assertEquals(11, l.args().length);
            assertSame(out.out(), l.args()[3]);
            assertEquals(b * h, l.args()[7]);
            assertArrayEquals(new int[] {64, 1, 64, 1}, ctx.maps.getFirst().box(), "Q boxes of one warpgroup's 64 rows");
        }
        // Few items: never more CTAs than items (B 1, H 2, T 300: 2 · ⌈300/192⌉ = 4).
        RecordingContext few = new RecordingContext();
        few.computeCapabilityMajor = 9;
        CudaFlashAttention ff = new CudaFlashAttention(few, true, 3);
        ff.setForwardVariant(CudaFlashAttention.FORWARD_WGMMA_NO_PRODUCER);
        Tensor q = few.tensor(DType.BF16, 300, 2 * 64);
        ff.forward(q, q, q, 300, 2);
        assertEquals(4, few.launches.getFirst().gridX());
        // D = 128: variant 6's kernel; D = 96 or another GPU: mma.sync.
        for (int[] cd : new int[][] {{9, 128}, {9, 96}, {8, 64}}) {
            RecordingContext ctx = new RecordingContext();
            ctx.computeCapabilityMajor = cd[0];
            CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
            assertEquals(CudaFlashAttention.FORWARD_FASTEST, fa.forwardVariant());
            Tensor qd = ctx.tensor(DType.BF16, 2 * 300, 3 * cd[1]);
            fa.forward(qd, qd, qd, 300, 3);
            String name = ctx.launches.getFirst().name();
            if (cd[0] == 9 && cd[1] == 128) assertEquals("flash_attn_fwd_wgmma_pp_persistent_tma_d128", name);
            else assertTrue(name.startsWith("flash_attn_fwd2_"), name);
        }
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention.ForwardWgmmaPersistent(128, 3));
        assertThrows(IllegalStateException.class, () -> new CudaFlashAttention.ForwardWgmmaPersistent(64, 3).kernel(false));
        assertEquals(115_824, new CudaFlashAttention.ForwardWgmmaPersistent(64).sharedBytes(), "two warpgroups: unchanged");
        assertEquals(230_512, new CudaFlashAttention.ForwardWgmmaPersistent(128).sharedBytes());
    }

    /**
     * The default (variant 1) at D = 64 on Hopper with tensor maps: variant 7's three warpgroups plus a producer
     * warpgroup (512 threads, 192-row items, two more mbarriers); everywhere else variant 7 launches exactly what
     * variant 1 does.
     */
    @Test
    void producerForwardIsTheDefaultAtHeadDim64() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("forward_wgmma_producer<64>(out, lse, T, H, BH, &tmQ, &tmK, &tmV);"));
        assertTrue(src.contains("= 165 040 bytes"), "the kernel's comment mirrors ForwardWgmmaPersistent.sharedBytes");
        assertTrue(src.contains("constexpr int PRODUCER_THREADS = 512;"));
        assertTrue(src.contains("__launch_bounds__(PRODUCER_THREADS, 1)\nflash_attn_fwd_wgmma_pp3_producer_tma_d64("));
        int b = 4, h = 16, t = 2048;
        RecordingContext ctx = new RecordingContext();
        ctx.computeCapabilityMajor = 9;
        CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
        assertEquals(CudaFlashAttention.FORWARD_FASTEST, fa.forwardVariant());
        Tensor q = ctx.tensor(DType.BF16, b * t, h * 64);
        Backend.AttentionOut out = fa.forward(q, q, q, t, h);
        Launch l = ctx.launches.getFirst();
        assertEquals("flash_attn_fwd_wgmma_pp3_producer_tma_d64", l.name());
        assertEquals(132, l.gridX(), "B·H·⌈2048/192⌉ = 704 items, one CTA per SM");
        assertEquals(512, l.blockX(), "a producer and three consumer warpgroups");
        // 1 KB slack + Q [2][192][64] + K [4][128][64] + V [3][128][64] (bf16) + 22 mbarriers
        assertEquals(1024 + 2 * 192 * 64 * 2 + 7 * 128 * 64 * 2 + 22 * 8, l.shared());
        assertEquals(165_040, l.shared());
        assertEquals(11, l.args().length);
        assertSame(out.out(), l.args()[3]);
        assertSame(out.lse(), l.args()[4]);
        assertEquals(b * h, l.args()[7]);
        assertEquals(3, ctx.maps.size());
        assertArrayEquals(new int[] {64, 1, 64, 1}, ctx.maps.get(0).box(), "Q boxes of one consumer's 64 rows");
        assertArrayEquals(new int[] {64, 1, 128, 1}, ctx.maps.get(1).box(), "K tiles of 128 keys");
        // Few items: never more CTAs than items (B 1, H 2, T 300: 2 · ⌈300/192⌉ = 4).
        RecordingContext few = new RecordingContext();
        few.computeCapabilityMajor = 9;
        CudaFlashAttention ff = new CudaFlashAttention(few, true, 3);
        Tensor qf = few.tensor(DType.BF16, 300, 2 * 64);
        ff.forward(qf, qf, qf, 300, 2);
        assertEquals(4, few.launches.getFirst().gridX());
        // Elsewhere variant 7 launches what variant 1 does: D = 128 and no tensor maps on Hopper, D = 96, another GPU.
        for (int[] cdm : new int[][] {{9, 128, 1}, {9, 64, 0}, {9, 96, 1}, {8, 64, 1}, {10, 64, 1}}) {
            String[] names = new String[2];
            for (int v : new int[] {CudaFlashAttention.FORWARD_FASTEST, CudaFlashAttention.FORWARD_WGMMA_NO_PRODUCER}) {
                RecordingContext c = new RecordingContext();
                c.computeCapabilityMajor = cdm[0];
                c.mapsAvailable = cdm[2] == 1;
                CudaFlashAttention f = new CudaFlashAttention(c, true, 3);
                f.setForwardVariant(v);
                Tensor qd = c.tensor(DType.BF16, 2 * 300, 3 * cdm[1]);
                f.forward(qd, qd, qd, 300, 3);
                names[v == CudaFlashAttention.FORWARD_FASTEST ? 0 : 1] = c.launches.getFirst().name();
            }
            assertEquals(names[0], names[1], "cc " + cdm[0] + " D = " + cdm[1] + (cdm[2] == 1 ? "" : " without maps"));
            assertTrue(!names[1].contains("producer"), names[1]);
        }
        // A build whose ptxas gave the kernel fewer registers than its setmaxnreg split takes would hang: the default
        // runs variant 7's kernel instead and says so once.
        for (int regs : new int[] {128, 168}) {
            RecordingContext ok = new RecordingContext();
            ok.computeCapabilityMajor = 9;
            ok.registers = regs;
            CudaFlashAttention fo = new CudaFlashAttention(ok, true, 3);
            Tensor qo = ok.tensor(DType.BF16, 300, 2 * 64);
            fo.forward(qo, qo, qo, 300, 2);
            assertEquals("flash_attn_fwd_wgmma_pp3_producer_tma_d64", ok.launches.getFirst().name());
        }
        RecordingContext short_ = new RecordingContext();
        short_.computeCapabilityMajor = 9;
        short_.registers = 120;
        CudaFlashAttention fs = new CudaFlashAttention(short_, true, 3);
        Tensor qs = short_.tensor(DType.BF16, 300, 2 * 64);
        fs.forward(qs, qs, qs, 300, 2);
        fs.forward(qs, qs, qs, 300, 2);
        assertEquals(List.of("flash_attn_fwd_wgmma_pp3_persistent_tma_d64", "flash_attn_fwd_wgmma_pp3_persistent_tma_d64"),
                short_.launches.stream().map(Launch::name).toList());
        assertEquals(384, short_.launches.getFirst().blockX());
        String warning = console.err.toString(StandardCharsets.UTF_8);  // this test's stderr: nothing else writes there
        assertTrue(warning.contains("120 registers per thread") && warning.contains("needs 128"), warning);
        assertEquals(1, warning.lines().count(), "said once: " + warning);
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention.ForwardWgmmaPersistent(64, 2, true));
        assertThrows(IllegalStateException.class, () -> new CudaFlashAttention.ForwardWgmmaPersistent(64, 3, true).kernel(false));
        assertEquals(165_024, new CudaFlashAttention.ForwardWgmmaPersistent(64, 3).sharedBytes(), "without a producer: unchanged");
    }

    /** Variant 4 (ping-pong): same grid, block and arguments as variant 3; variant 1 (the default) runs variant 6 at D = 128 on Hopper. */
    @Test
    void pingPongForwardAndTheDefaultPerHeadDim() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        List<String> pingPong = new ArrayList<>();
        Matcher m = Pattern.compile("(?m)^FLASH_ATTN_FWD_WGMMA_PP\\((\\d+)\\)").matcher(src);
        while (m.find()) pingPong.add("flash_attn_fwd_wgmma_pp_d" + m.group(1));
        assertEquals(List.of("flash_attn_fwd_wgmma_pp_d64", "flash_attn_fwd_wgmma_pp_d128"), pingPong);
        assertTrue(src.contains("constexpr int PP_KS = 3;") && src.contains("constexpr int PP_VS = 2;") && src.contains("constexpr int PP_BC = 128;"),
                "stage counts and key tile mirrored by ForwardWgmmaPingPong.sharedBytes");
        assertEquals(List.of(1, 2, 3, 4, 5, 6, 7), CudaBackend.KERNEL_VARIANTS.get("flashfwd"));
        assertEquals(CudaFlashAttention.FORWARD_FASTEST, new CudaFlashAttention(new RecordingContext(), true, 3).forwardVariant());
        for (int variant : new int[] {CudaFlashAttention.FORWARD_FASTEST, CudaFlashAttention.FORWARD_WGMMA_PINGPONG}) {
            for (int cc : new int[] {8, 9, 10}) {
                for (int d : new int[] {64, 80, 96, 128}) {
                    RecordingContext ctx = new RecordingContext();
                    ctx.computeCapabilityMajor = cc;
                    CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                    fa.setForwardVariant(variant);
                    assertEquals(variant, fa.forwardVariant());
                    int b = 2, h = 3, t = 300;
                    Tensor q = ctx.tensor(DType.BF16, b * t, h * d);
                    Backend.AttentionOut out = fa.forward(q, q, q, t, h);
                    Launch l = ctx.launches.getFirst();
                    boolean wgmma = cc == 9 && (d == 128 || d == 64);
                    if (wgmma && variant == CudaFlashAttention.FORWARD_FASTEST) {
                        assertEquals(d == 128 ? "flash_attn_fwd_wgmma_pp_persistent_tma_d128" : "flash_attn_fwd_wgmma_pp3_producer_tma_d64",
                                l.name(), "the default on Hopper: variant 6, with three warpgroups and a producer at D = 64");
                        assertEquals(3, ctx.maps.size(), "tensor maps of q, k and v");
                        continue;
                    }
                    if (!wgmma) {
                        assertTrue(l.name().startsWith("flash_attn_fwd2_"), variant + "/" + cc + "/" + d + ": " + l.name());
                        continue;
                    }
                    String kernel = "flash_attn_fwd_wgmma_pp_d" + d;
                    // slack, Q, K [3][128][D], V [2][128][D], 10 mbarriers
                    int shared = 1024 + 128 * d * 2 + 5 * 128 * d * 2 + 80;
                    assertEquals(d == 64 ? 99_408 : 197_712, shared);
                    assertEquals(kernel, l.name());
                    assertEquals(b * h, l.gridX());
                    assertEquals(3, l.gridY(), "128 query rows per CTA");
                    assertEquals(256, l.blockX(), "two warpgroups");
                    assertEquals(shared, l.shared());
                    assertEquals(7, l.args().length);
                    assertSame(out.out(), l.args()[3]);
                    assertSame(out.lse(), l.args()[4]);
                    assertEquals(t, l.args()[5]);
                    assertEquals(h, l.args()[6]);
                }
            }
        }
    }

    @Test
    void wgmmaBackwardRunsOnlyOnHopperAtHeadDims64And128() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("flash_attn_bwd_wgmma_d64(const bf16* q, const bf16* k, const bf16* v, const bf16* dO, const float* lse,"));
        for (int cc : new int[] {8, 9}) {
            for (int d : new int[] {64, 128}) {
                RecordingContext ctx = new RecordingContext();
                ctx.computeCapabilityMajor = cc;
                CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                fa.setBackwardVariant(CudaFlashAttention.BACKWARD_WGMMA);
                int b = 2, h = 3, t = 300;
                Tensor q = ctx.tensor(DType.BF16, b * t, h * d), lse = ctx.tensor(DType.F32, b, h, t);
                fa.backward(q, q, q, q, q, lse, t, h);
                List<String> names = ctx.launches.stream().map(Launch::name).toList();
                String main = cc == 9 ? "flash_attn_bwd_wgmma_d" + d : "flash_attn_bwd3_d" + d + (d == 64 ? "_q64_v1" : "_q32_v0");
                assertEquals(List.of("flash_attn_bwd_prep_d" + d, main, "flash_attn_dq_convert"), names);
                if (!main.contains("wgmma")) continue;
                Launch l = ctx.launches.get(1);
                assertEquals(b * h, l.gridX());
                assertEquals(3, l.gridY(), "128 keys per CTA");
                assertEquals(256, l.blockX());
                assertEquals(d == 64 ? 120832 : 186368, l.shared(), "slack, K and V, Q and dO twice, dS, lse and D twice, dQ per warpgroup");
                assertEquals(11, l.args().length, "bwd3's arguments");
            }
        }
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention(new RecordingContext(), true, 3).setBackwardVariant(0));
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention(new RecordingContext(), true, 3).setBackwardVariant(3));
    }

    @Test
    void wgmmaBackwardRunsUnderVariant1OnHopperAtHeadDims64And128() throws IOException {
        String src = Files.readString(Path.of("src/main/cuda/flash_wgmma.cu"));
        assertTrue(src.contains("flash_attn_bwd_wgmma_d128(const bf16* q, const bf16* k, const bf16* v, const bf16* dO, const float* lse,"));
        assertTrue(src.contains("backward_wgmma_d128(q, k, v, dO, lse, rowDot, dqAccum, dk, dv, T, H);"));
        assertTrue(src.contains("= 186 368 bytes"), "the kernel's comment mirrors BackwardWgmma.sharedBytes");
        int[] variants = {CudaFlashAttention.BACKWARD_WGMMA, CudaFlashAttention.BACKWARD_MMA_SYNC};
        assertEquals(List.of(1, 2), CudaBackend.KERNEL_VARIANTS.get("flashbwd"));
        for (int variant : variants) {
            for (int cc : new int[] {8, 9}) {
                for (int d : new int[] {64, 80, 96, 128}) {
                    for (int t : new int[] {1, 128, 129, 300}) {
                        RecordingContext ctx = new RecordingContext();
                        ctx.computeCapabilityMajor = cc;
                        CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                        fa.setBackwardVariant(variant);
                        assertEquals(variant, fa.backwardVariant());
                        int b = 2, h = 3;
                        Tensor q = ctx.tensor(DType.BF16, b * t, h * d), lse = ctx.tensor(DType.F32, b, h, t);
                        Backend.AttentionGrads g = fa.backward(q, q, q, q, q, lse, t, h);
                        boolean wgmma = cc == 9 && (d == 64 || d == 128) && variant == CudaFlashAttention.BACKWARD_WGMMA;
                        String main = wgmma ? "flash_attn_bwd_wgmma_d" + d
                                : CudaFlashAttention.Backward3.of(d).kernel();
                        List<String> names = ctx.launches.stream().map(Launch::name).toList();
                        assertEquals(List.of("flash_attn_bwd_prep_d" + d, main, "flash_attn_dq_convert"), names,
                                "variant " + variant + " cc " + cc + " D " + d);
                        if (!wgmma) continue;
                        Launch l = ctx.launches.get(1);
                        assertEquals(b * h, l.gridX());
                        assertEquals((t + 127) / 128, l.gridY(), "128 keys per CTA");
                        assertEquals(256, l.blockX());
                        assertEquals(d == 64 ? 120832 : 186368, l.shared(),
                                "slack, K and V, Q and dO twice, dS of 128 keys, lse and D twice, dQ per warpgroup");
                        assertTrue(l.shared() <= 227 * 1024);
                        Object[] args = l.args();
                        assertEquals(11, args.length, "bwd3's arguments");
                        for (int i = 0; i < 4; i++) assertSame(q, args[i]);
                        assertSame(lse, args[4]);
                        Tensor rowDot = (Tensor) args[5], dqAccum = (Tensor) args[6];
                        assertEquals(DType.F32, rowDot.dtype());
                        assertEquals(DType.F32, dqAccum.dtype());
                        assertArrayEquals(new int[] {b * t, h * d}, dqAccum.shape());
                        assertSame(rowDot, ctx.launches.get(0).args()[2], "the prep kernel's D_i");
                        assertSame(dqAccum, ctx.launches.get(0).args()[3], "the prep kernel zeroes the accumulator");
                        assertSame(g.dk(), args[7]);
                        assertSame(g.dv(), args[8]);
                        assertSame(dqAccum, ctx.launches.get(2).args()[0], "dq_convert scales the accumulator");
                        assertEquals(t, args[9]);
                        assertEquals(h, args[10]);
                    }
                }
            }
        }
    }

    @Test
    void firstGenerationKernelsLaunchWithMatchingGrids() throws IOException {
        List<String> compiled = kernelsInSource();
        for (int d : new int[] {64, 80, 96, 128}) {
            assertTrue(CudaFlashAttention.supportsHeadDim(d));
            int b = 3, h = 5, t = 131;
            RecordingContext ctx = new RecordingContext();
            CudaFlashAttention fa = new CudaFlashAttention(ctx, false, 1);
            Tensor q = ctx.tensor(DType.BF16, b * t, h * d), k = ctx.tensor(DType.BF16, b * t, h * d),
                    v = ctx.tensor(DType.BF16, b * t, h * d);
            Backend.AttentionOut out = fa.forward(q, k, v, t, h);
            assertArrayEquals(new int[] {b * t, h * d}, out.out().shape());
            assertArrayEquals(new int[] {b, h, t}, out.lse().shape());
            assertEquals(DType.F32, out.lse().dtype());
            Launch f = ctx.launches.getFirst();
            assertTrue(compiled.contains(f.name()), f.name() + " is not instantiated");
            int rowsPerCta = 16 * Integer.parseInt(f.name().substring(f.name().length() - 1)) * f.blockX() / 32;
            assertEquals((t + rowsPerCta - 1) / rowsPerCta, f.gridX(), "query tiles must cover T");
            assertEquals(b * h, f.gridY());

            Tensor dOut = ctx.tensor(DType.BF16, b * t, h * d);
            Backend.AttentionGrads g = fa.backward(dOut, q, k, v, out.out(), out.lse(), t, h);
            for (Tensor x : new Tensor[] {g.dq(), g.dk(), g.dv()}) {
                assertArrayEquals(new int[] {b * t, h * d}, x.shape());
                assertEquals(DType.BF16, x.dtype());
            }
            List<Launch> bwd = ctx.launches.subList(1, ctx.launches.size());
            assertEquals(List.of("flash_attn_bwd_prep_d" + d, "flash_attn_bwd_d" + d, "flash_attn_dq_convert"),
                    bwd.stream().map(Launch::name).toList());
            for (Launch l : bwd) assertTrue(compiled.contains(l.name()), l.name() + " is not instantiated");
            int perWarp = CudaFlashAttention.prepPairsPerWarp(d);
            assertEquals(d == 64 || d == 128 ? 32 / (d / 8) : 1, perWarp, "D/8 lanes per (row, head) where that divides 32");
            assertTrue(bwd.get(0).gridX() * 8L * perWarp >= (long) b * t * h, "prep warps cover every (row, head)");
            assertTrue((bwd.get(0).gridX() - 1) * 8L * perWarp < (long) b * t * h, "and no block is idle");
            assertEquals(128, bwd.get(1).blockX());
            assertEquals((t + 63) / 64, bwd.get(1).gridX(), "key tiles must cover T");
            assertEquals(b * h, bwd.get(1).gridY());
            assertEquals((long) b * t * h * d, bwd.get(2).args()[2], "convert covers every dq element");
            assertEquals((float) (1 / Math.sqrt(d)), (float) bwd.get(2).args()[3]);
        }
    }

    /** Dynamic shared memory per head dim, computed by hand from the layouts documented in flash_attention.cu. */
    private static int forward2Shared(int d) {
        int keyTile = switch (d) { case 96 -> 48; case 128 -> 32; default -> 64; };
        return (128 + 4 * keyTile) * (d + 8) * 2; // Q [128][d+8] + K, V [2][keyTile][d+8]
    }

    private static int backward2Shared(int d) {
        int bq = d >= 96 ? 32 : 64;
        int kvTiles = d == 64 || d == 96 ? 1 : 2; // V in registers at 64 and 96, else a V tile too
        return (64 * (d + 8) * kvTiles + 4 * bq * (d + 8) + 64 * (bq + 8)) * 2 + 4 * bq * 4;
    }

    @Test
    void pipelinedKernelsLaunchWithMatchingGridsAndSharedMemory() throws IOException {
        List<String> compiled = kernelsInSource();
        assertEquals(List.of(55296, 67584, 66560, 69632),
                List.of(forward2Shared(64), forward2Shared(80), forward2Shared(96), forward2Shared(128)));
        assertEquals(List.of(56320, 77824, 45568, 75264),
                List.of(backward2Shared(64), backward2Shared(80), backward2Shared(96), backward2Shared(128)));
        for (int d : new int[] {64, 80, 96, 128}) {
            for (int t : new int[] {1, 131, 2048}) {
                int b = 3, h = 5;
                RecordingContext ctx = new RecordingContext();
                CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 2);
                Tensor q = ctx.tensor(DType.BF16, b * t, h * d), k = ctx.tensor(DType.BF16, b * t, h * d),
                        v = ctx.tensor(DType.BF16, b * t, h * d), dOut = ctx.tensor(DType.BF16, b * t, h * d);
                Backend.AttentionOut out = fa.forward(q, k, v, t, h);
                Backend.AttentionGrads g = fa.backward(dOut, q, k, v, out.out(), out.lse(), t, h);
                assertArrayEquals(new int[] {b, h, t}, out.lse().shape());
                for (Tensor x : new Tensor[] {g.dq(), g.dk(), g.dv()}) assertArrayEquals(new int[] {b * t, h * d}, x.shape());

                assertEquals(4, ctx.launches.size());
                Launch f = ctx.launches.get(0), prep = ctx.launches.get(1), main = ctx.launches.get(2);
                for (Launch l : ctx.launches) assertTrue(compiled.contains(l.name()), l.name() + " is not instantiated");
                assertTrue(f.name().startsWith("flash_attn_fwd2_d" + d + "_m2_"), f.name());
                assertEquals(b * h, f.gridX(), "fwd2 grid x is (batch, head)");
                assertEquals((t + 127) / 128, f.gridY(), "fwd2 query tiles of 128 rows must cover T");
                assertEquals(128, f.blockX());
                assertEquals(forward2Shared(d), f.shared());
                assertEquals("flash_attn_bwd_prep_d" + d, prep.name());
                assertTrue(main.name().startsWith("flash_attn_bwd2_d" + d + "_"), main.name());
                assertEquals(b * h, main.gridX(), "bwd2 grid x is (batch, head)");
                assertEquals((t + 63) / 64, main.gridY(), "bwd2 key tiles of 64 rows must cover T");
                assertEquals(128, main.blockX());
                assertEquals(backward2Shared(d), main.shared());
                assertEquals("flash_attn_dq_convert", ctx.launches.get(3).name());
            }
        }
    }

    private static int backward3Shared(int d) {
        int bq = d >= 96 ? 32 : 64;
        int kvTiles = d == 64 || d == 96 ? 1 : 2; // V in registers at 64 and 96, else a V tile too
        return (128 * (d + 8) * kvTiles + 4 * bq * (d + 8) + 128 * (bq + 8)) * 2 + 4 * bq * 4;
    }

    @Test
    void thirdGenerationBackwardLaunchesWith128KeyCtas() throws IOException {
        List<String> compiled = kernelsInSource();
        assertEquals(List.of(74752, 109568, 64000, 115200),
                List.of(backward3Shared(64), backward3Shared(80), backward3Shared(96), backward3Shared(128)));
        for (int d : new int[] {64, 80, 96, 128}) {
            for (int t : new int[] {1, 131, 2048}) {
                int b = 3, h = 5;
                RecordingContext ctx = new RecordingContext();
                CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
                Tensor q = ctx.tensor(DType.BF16, b * t, h * d), dOut = ctx.tensor(DType.BF16, b * t, h * d);
                Backend.AttentionOut out = fa.forward(q, q, q, t, h);
                Backend.AttentionGrads g = fa.backward(dOut, q, q, q, out.out(), out.lse(), t, h);
                for (Tensor x : new Tensor[] {g.dq(), g.dk(), g.dv()}) assertArrayEquals(new int[] {b * t, h * d}, x.shape());

                assertEquals(List.of("flash_attn_bwd_prep_d" + d, "flash_attn_dq_convert"),
                        List.of(ctx.launches.get(1).name(), ctx.launches.get(3).name()));
                Launch main = ctx.launches.get(2);
                assertTrue(compiled.contains(main.name()), main.name() + " is not instantiated");
                assertTrue(main.name().startsWith("flash_attn_bwd3_d" + d + "_"), main.name());
                assertEquals(b * h, main.gridX(), "bwd3 grid x is (batch, head)");
                assertEquals((t + 127) / 128, main.gridY(), "bwd3 key tiles of 128 rows must cover T");
                assertEquals(256, main.blockX(), "8 warps × 16 keys");
                assertEquals(backward3Shared(d), main.shared());
                assertEquals(t, main.args()[9]);
                assertEquals(h, main.args()[10]);
            }
        }
    }

    @Test
    void pipelinedKernelsFallBackWhenTheTileGridExceedsGridDimY() {
        int t = 64 * 65535 + 1, d = 64; // 65536 key tiles of 64 rows; 32768 query tiles of 128 rows still fit
        RecordingContext ctx = new RecordingContext();
        CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 2);
        Tensor q = ctx.tensor(DType.BF16, t, d);
        Backend.AttentionOut out = fa.forward(q, q, q, t, 1);
        fa.backward(q, q, q, q, out.out(), out.lse(), t, 1);
        assertEquals("flash_attn_fwd2_d64_m2_n64_q1", ctx.launches.get(0).name());
        assertEquals(32768, ctx.launches.get(0).gridY());
        assertEquals("flash_attn_bwd_d64", ctx.launches.get(2).name());
        assertEquals(65536, ctx.launches.get(2).gridX());

        // 128-key tiles still fit gridDim.y at this T (32768), so bwd3 runs; past 128·65535 it falls back too.
        RecordingContext ctx3 = new RecordingContext();
        new CudaFlashAttention(ctx3, true, 3).backward(q, q, q, q, out.out(), out.lse(), t, 1);
        assertEquals("flash_attn_bwd3_d64_q64_v1", ctx3.launches.get(1).name());
        assertEquals(32768, ctx3.launches.get(1).gridY());
        int t3 = 128 * 65535 + 1;
        Tensor q3 = ctx3.tensor(DType.BF16, t3, d), lse3 = ctx3.tensor(DType.F32, 1, 1, t3);
        ctx3.launches.clear();
        new CudaFlashAttention(ctx3, true, 3).backward(q3, q3, q3, q3, q3, lse3, t3, 1);
        assertEquals("flash_attn_bwd_d64", ctx3.launches.get(1).name());
    }

    @Test
    void defaultConstructorUsesTheSwitches() {
        RecordingContext ctx = new RecordingContext();
        Tensor q = ctx.tensor(DType.BF16, 10, 64);
        Backend.AttentionOut out = new CudaFlashAttention(ctx).forward(q, q, q, 10, 1);
        new CudaFlashAttention(ctx).backward(q, q, q, q, out.out(), out.lse(), 10, 1);
        assertEquals(CudaFlashAttention.USE_FORWARD2, ctx.launches.get(0).name().startsWith("flash_attn_fwd2_"));
        int generation = CudaFlashAttention.backwardGeneration(
                System.getProperty(CudaFlashAttention.BACKWARD_PROPERTY, CudaFlashAttention.DEFAULT_BACKWARD_GENERATION));
        String prefix = switch (generation) { case 3 -> "flash_attn_bwd3_"; case 2 -> "flash_attn_bwd2_"; default -> "flash_attn_bwd_d"; };
        assertTrue(ctx.launches.get(2).name().startsWith(prefix), ctx.launches.get(2).name());
        assertEquals(3, CudaFlashAttention.backwardGeneration(CudaFlashAttention.DEFAULT_BACKWARD_GENERATION));
    }

    @Test
    void backwardSwitchAcceptsOnlyKnownGenerations() {
        assertEquals(1, CudaFlashAttention.backwardGeneration("1"));
        assertEquals(2, CudaFlashAttention.backwardGeneration(" 2 "));
        var e = assertThrows(IllegalArgumentException.class, () -> CudaFlashAttention.backwardGeneration("4"));
        assertTrue(e.getMessage().contains("patchcore.flash.backward"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new CudaFlashAttention(new RecordingContext(), true, 0));
    }

    @Test
    void rejectsBadInputsWithOneMessage() {
        RecordingContext ctx = new RecordingContext();
        CudaFlashAttention fa = new CudaFlashAttention(ctx);
        assertFalse(CudaFlashAttention.supportsHeadDim(48));
        Tensor q = ctx.tensor(DType.BF16, 10, 2 * 48);
        var e = assertThrows(IllegalArgumentException.class, () -> fa.forward(q, q, q, 10, 2));
        assertTrue(e.getMessage().contains("head dims"), e.getMessage());
        Tensor q64 = ctx.tensor(DType.BF16, 10, 128);
        assertThrows(IllegalArgumentException.class, () -> fa.forward(q64, q64, q64, 3, 2)); // rows % T
        Tensor f32 = ctx.tensor(DType.F32, 10, 128);
        assertThrows(IllegalArgumentException.class, () -> fa.forward(f32, f32, f32, 10, 2));
        Tensor other = ctx.tensor(DType.BF16, 10, 64);
        assertThrows(IllegalArgumentException.class, () -> fa.forward(q64, other, q64, 10, 2));
        Tensor misaligned = new Tensor(new CudaStorage(1 << 30, 4096), DType.BF16, 1L, 10, 128); // offset 2 bytes
        assertMisalignedRejected(misaligned, q64, fa);
        assertTrue(ctx.launches.isEmpty(), "nothing may be launched for rejected inputs");
    }

    /**
     * src/test/cuda/flash_wgmma_test.cu launches the Hopper kernels with grids, blocks and shared memory copied from this
     * class (its timing mode is what a GPU session measures): its {@code launches} mode lists every launch its check and
     * timing modes make (built against the CPU emulator, nothing run), and this class must make the same, line by
     * line, for the same problems and variants on the device the emulator reports (compute capability 9, its SMs,
     * tensor maps available). A launcher change the harness does not copy fails here. Twice: at the emulator's 4 SMs
     * (persistent CTAs take several items) and at an H100's 132, the grids the GPU timing launches.
     */
    @Test
    void wgmmaHarnessLaunchesWhatTheLauncherLaunches() throws IOException, InterruptedException {
        assumeTrue(EmulatedKernelContext.onPath("g++"), "no g++ on PATH: flash_wgmma_test's emulator build needs a C++ compiler");
        compareHarnessLaunches("4");
        compareHarnessLaunches("132");
    }

    private void compareHarnessLaunches(String emulatedSms) throws IOException, InterruptedException {
        Path root = Path.of("").toAbsolutePath(), build = EmulatedKernelContext.buildDirectory(root);
        Path log = build.resolve("flash_wgmma_test-launches-" + emulatedSms + "sms.log");
        Files.createDirectories(log.getParent());
        ProcessBuilder pb = new ProcessBuilder("bash", "src/test/cuda/emu/run.sh", build.toString(), "flash_wgmma_test", "launches")
                .directory(root.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("EMU_SMS", emulatedSms);  // launches runs no kernel: any SM count costs nothing
        Process p = pb.start();
        boolean finished = p.waitFor(10, TimeUnit.MINUTES);
        if (!finished) p.destroyForcibly();
        assertTrue(finished, "flash_wgmma_test launches did not finish in 10 minutes; log: " + log);
        String out = Files.readString(log, StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), "flash_wgmma_test launches failed (log: " + log + "):\n" + out);
        Matcher device = Pattern.compile("(?m)^device: .*, (\\d+) SMs, compute capability 9\\.0$").matcher(out);
        assertTrue(device.find(), "no device line in " + log);
        int sms = Integer.parseInt(device.group(1));
        assertEquals(emulatedSms, device.group(1), "the SM count the emulated device reports");
        List<String> harness = out.lines().filter(l -> l.startsWith("B=")).toList();

        // Each run of lines with one prefix ("B=.. H=.. T=.. D=.. fwd V" or "... bwd") is one call of the launcher.
        Pattern prefix = Pattern.compile("^(B=(\\d+) H=(\\d+) T=(\\d+) D=(\\d+) (?:fwd (\\d)|bwd)): ");
        List<String> java = new ArrayList<>();
        String previous = null;
        for (String line : harness) {
            Matcher m = prefix.matcher(line);
            assertTrue(m.find(), "not a launch line: " + line);
            if (m.group(1).equals(previous)) continue;
            previous = m.group(1);
            int b = Integer.parseInt(m.group(2)), h = Integer.parseInt(m.group(3)), t = Integer.parseInt(m.group(4));
            int d = Integer.parseInt(m.group(5));
            RecordingContext ctx = new RecordingContext();
            ctx.computeCapabilityMajor = 9;
            ctx.multiprocessors = sms;
            CudaFlashAttention fa = new CudaFlashAttention(ctx, true, 3);
            Tensor q = ctx.tensor(DType.BF16, b * t, h * d), k = ctx.tensor(DType.BF16, b * t, h * d);
            Tensor v = ctx.tensor(DType.BF16, b * t, h * d);
            if (m.group(6) != null) {
                fa.setForwardVariant(Integer.parseInt(m.group(6)));
                fa.forward(q, k, v, t, h);
            } else {  // the default backward, as the harness runs it from the default forward's out and lse
                Tensor o = ctx.tensor(DType.BF16, b * t, h * d), dO = ctx.tensor(DType.BF16, b * t, h * d);
                fa.backward(dO, q, k, v, o, ctx.tensor(DType.F32, b, h, t), t, h);
            }
            for (Launch l : ctx.launches) {
                StringBuilder launch = new StringBuilder(previous + ": " + l.name() + " grid " + l.gridX() + " " + l.gridY()
                        + " 1 block " + l.blockX() + " smem " + l.shared());
                String maps = "";
                for (Object a : l.args())
                    if (a instanceof TensorMaps.TensorMap tm) {
                        int[] box = ctx.maps.get(tm.bytes()[0] - 1).box();
                        maps += " " + box[0] + "x" + box[1] + "x" + box[2] + "x" + box[3];
                    }
                if (!maps.isEmpty()) launch.append(" maps").append(maps);
                java.add(launch.toString());
            }
        }
        for (int i = 0; i < Math.min(harness.size(), java.size()); i++)
            assertEquals(java.get(i), harness.get(i), "launch " + (i + 1) + " of flash_wgmma_test differs from CudaFlashAttention's"
                    + " (expected: the Java launcher; log: " + log + ")");
        assertEquals(java.size(), harness.size(), "launch counts differ");
        // What the harness lists: both check lists (9 + 7 problems at D = 64: 6 forwards and 3 backward launches each;
        // 5 + 8 at D = 128: 4 and 3) and the 7 timing rows; every forward variant and the backward among them.
        assertEquals(16 * 9 + 13 * 7 + 7, harness.size(), "flash_wgmma_test's launches changed: " + log);
        for (String what : List.of("fwd 1: ", "fwd 2: ", "fwd 3: ", "fwd 4: ", "fwd 5: ", "fwd 6: ", "fwd 7: ", "bwd: "))
            assertTrue(harness.stream().anyMatch(l -> l.contains(what)), "no launch of " + what + "in " + log);
        assertTrue(harness.stream().anyMatch(l -> l.contains("D=128 bwd: flash_attn_bwd_wgmma_d128")), log.toString());
    }

    private static void assertMisalignedRejected(Tensor misaligned, Tensor q, CudaFlashAttention fa) {
        var e = assertThrows(IllegalArgumentException.class, () -> fa.forward(q, misaligned, q, 10, 2));
        assertTrue(e.getMessage().contains("aligned"), e.getMessage());
    }
}
