package dev.patchcore.backend.cuda;

import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Launch plumbing of {@link CudaFlashAttention} without a GPU: a recording {@link KernelContext} checks that
 * every kernel the class launches is instantiated in flash_attention.cu, with the grids and shapes the kernels
 * assume, and that bad inputs end in one clear message. Numerical parity runs on a GPU
 * (src/test/cuda/flash_attention_test.cu and selftest).
 */
class CudaFlashAttentionTest {
    private record Launch(String name, int gridX, int gridY, int blockX, Object[] args) {}

    /** Hands out fake device memory at 256-byte aligned addresses and records launches. */
    private static final class RecordingContext implements KernelContext {
        final List<Launch> launches = new ArrayList<>();
        long next = 1 << 20;

        @Override public void launch(String name, int gx, int gy, int gz, int bx, int by, int bz, int shared, Object... args) {
            assertEquals(1, gz);
            assertEquals(1, by);
            assertEquals(1, bz);
            assertEquals(0, shared, "flash kernels use static shared memory only (≤ 48 KB)");
            launches.add(new Launch(name, gx, gy, bx, args));
        }

        @Override public Tensor scratch(DType dtype, int... shape) { return tensor(dtype, shape); }

        @Override public int multiprocessorCount() { return 132; }

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
        if (src.contains("void __launch_bounds__(256) flash_attn_dq_convert(")) names.add("flash_attn_dq_convert");
        return names;
    }

    @Test
    void launchesOnlyInstantiatedKernelsWithMatchingGrids() throws IOException {
        List<String> compiled = kernelsInSource();
        for (int d : new int[] {64, 80, 96, 128}) {
            assertTrue(CudaFlashAttention.supportsHeadDim(d));
            int b = 3, h = 5, t = 131;
            RecordingContext ctx = new RecordingContext();
            CudaFlashAttention fa = new CudaFlashAttention(ctx);
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
            assertTrue(bwd.get(0).gridX() * 8L >= (long) b * t * h, "one prep warp per (row, head)");
            assertEquals(128, bwd.get(1).blockX());
            assertEquals((t + 63) / 64, bwd.get(1).gridX(), "key tiles must cover T");
            assertEquals(b * h, bwd.get(1).gridY());
            assertEquals((long) b * t * h * d, bwd.get(2).args()[2], "convert covers every dq element");
            assertEquals((float) (1 / Math.sqrt(d)), (float) bwd.get(2).args()[3]);
        }
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

    private static void assertMisalignedRejected(Tensor misaligned, Tensor q, CudaFlashAttention fa) {
        var e = assertThrows(IllegalArgumentException.class, () -> fa.forward(q, misaligned, q, 10, 2));
        assertTrue(e.getMessage().contains("aligned"), e.getMessage());
    }
}
