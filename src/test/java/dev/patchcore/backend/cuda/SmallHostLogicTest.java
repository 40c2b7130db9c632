package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Host-side pieces of the CUDA backend that need no GPU. */
class SmallHostLogicTest {

    @Test
    void bf16RoundsToNearestEven() {
        assertEquals(1.0f, Bf16.round(1.0f));
        assertEquals(1.0f, Bf16.round(1.00390625f));          // exactly half-way: ties to the even mantissa (1.0)
        assertEquals(1.015625f, Bf16.round(1.01171875f));    // half-way above an odd mantissa: rounds up to the even one
        assertEquals(1.0078125f, Bf16.round(1.0060f));
        assertEquals(-2.5f, Bf16.round(-2.5f));
        assertTrue(Float.isNaN(Bf16.round(Float.NaN)));
        assertEquals(Float.POSITIVE_INFINITY, Bf16.round(Float.MAX_VALUE)); // overflows to infinity like __float2bfloat16_rn
        Random r = new Random(3);
        for (int i = 0; i < 10000; i++) {
            float f = (float) r.nextGaussian() * 1000;
            float b = Bf16.round(f);
            assertTrue(Math.abs(b - f) <= Math.abs(f) * (1.0 / 256), "relative error of bf16 is at most 2^-8");
            assertEquals(b, Bf16.round(b), "rounding is idempotent");
        }
    }

    @Test
    void cublasLtCandidatesPreferAnExplicitPathThenCuda13ThenCuda12() {
        List<CublasLtLibrary.Candidate> explicit = CublasLtLibrary.candidates("/x/libcublasLt.so", "/env/lib.so", List.of(), List.of());
        assertEquals(List.of(new CublasLtLibrary.Candidate("/x/libcublasLt.so", true)), explicit);
        assertEquals("/env/lib.so", CublasLtLibrary.candidates(null, "/env/lib.so", List.of(), List.of()).getFirst().pathOrSoname());
        List<CublasLtLibrary.Candidate> c = CublasLtLibrary.candidates(null, null, List.of(Path.of("/usr/local/cuda/lib64")),
                List.of(Path.of("/usr/lib/python3/dist-packages")));
        assertEquals("libcublasLt.so.13", c.get(0).pathOrSoname());
        assertEquals("libcublasLt.so.12", c.get(1).pathOrSoname());
        assertEquals("/usr/local/cuda/lib64/libcublasLt.so.13", c.get(2).pathOrSoname());
        assertEquals("/usr/lib/python3/dist-packages/nvidia/cublas/lib/libcublasLt.so.13", c.get(3).pathOrSoname());
        assertTrue(c.stream().noneMatch(CublasLtLibrary.Candidate::explicit));
    }

    @Test
    void kernelImagesArePackagedWhenNvccIsPresent() {
        boolean nvcc = Files.isExecutable(Path.of("/usr/local/cuda/bin/nvcc"))
                || System.getenv("PATH") != null && List.of(System.getenv("PATH").split(":")).stream().anyMatch(d -> Files.isExecutable(Path.of(d, "nvcc")));
        assumeTrue(nvcc, "nvcc not installed: this build has no kernel images");
        Map<String, byte[]> images = KernelImages.load();
        for (String family : List.of("elementwise.fatbin", "patch_embed.fatbin", "attention_simple.fatbin")) {
            byte[] fb = images.get(family);
            assertTrue(fb != null && fb.length > 1000, family + " packaged");
            // fatbin magic 0xBA55ED50, little-endian
            assertEquals(0x50, fb[0] & 0xff);
            assertEquals(0xED, fb[1] & 0xff);
            assertEquals(0x55, fb[2] & 0xff);
            assertEquals(0xBA, fb[3] & 0xff);
        }
    }

    @Test
    void bitonicPaddingIsAPowerOfTwoCoveringTheTokensAndOneTile() {
        assertEquals(2048, CudaPatchEmbed.paddedLength(1));
        assertEquals(2048, CudaPatchEmbed.paddedLength(2048));
        assertEquals(4096, CudaPatchEmbed.paddedLength(2049));
        assertEquals(1 << 16, CudaPatchEmbed.paddedLength(40000));
    }

    /**
     * The launch schedule of CudaPatchEmbed.backward (tile sort, then per merge size the global passes and the tile
     * merge) replayed on the host with the kernels' index arithmetic: it must sort.
     */
    @Test
    void bitonicScheduleSorts() {
        Random r = new Random(11);
        for (int n : new int[] {5, 2048, 3000, 9000}) {
            int padded = (int) CudaPatchEmbed.paddedLength(n);
            long[] keys = new long[padded];
            for (int i = 0; i < padded; i++) keys[i] = i < n ? ((long) r.nextInt(50) << 32) | i : -1L; // ~0 as unsigned max
            int tile = CudaPatchEmbed.SORT_TILE;
            for (int base = 0; base < padded; base += tile)
                for (int k = 2; k <= tile; k <<= 1)
                    for (int j = k >> 1; j > 0; j >>= 1) pass(keys, base, tile, k, j);
            for (long size = 2L * tile; size <= padded; size <<= 1) {
                for (long stride = size / 2; stride >= tile; stride >>= 1) pass(keys, 0, padded, size, stride);
                for (int base = 0; base < padded; base += tile)
                    for (int j = tile >> 1; j > 0; j >>= 1) pass(keys, base, tile, size, j);
            }
            for (int i = 1; i < padded; i++) assertTrue(Long.compareUnsigned(keys[i - 1], keys[i]) <= 0, "sorted at " + i + " for n=" + n);
        }
    }

    /**
     * The fused RMSNorm backward's gain-gradient reduce (reduce_gain_in_last_blocks in rmsnorm.cu) replayed on the
     * host with the kernel's index arithmetic and CudaRmsNorm's choice of reducers: every column is written by exactly
     * one thread of one reducer, and its value is the sum of all partial rows.
     */
    @Test
    void fusedRmsNormBackwardReduceCoversEveryColumnOnce() {
        Random r = new Random(5);
        int threads = 32 * CudaRmsNorm.BACKWARD_WARPS;
        for (int[] s : new int[][] {{8, 1}, {96, 5}, {1000, 38}, {1024, 264}, {2048, 132}, {2048, 1}, {8, 264}, {2040, 7}}) {
            int d = s[0], blocks = s[1], reducers = CudaRmsNorm.fusedReducers(d, blocks), quads = d / 4;
            assertTrue(reducers >= 1 && (reducers <= blocks / 2 || reducers == 1), "reducers " + reducers + " for " + blocks + " blocks");
            double[][] partial = new double[blocks][quads];
            for (double[] row : partial) for (int q = 0; q < quads; q++) row[q] = r.nextInt(1000);
            double[] out = new double[quads];
            int[] writes = new int[quads];
            for (int slice = 0; slice < reducers; slice++) {
                int per = (quads + reducers - 1) / reducers, q0 = slice * per, q1 = Math.min(quads, q0 + per);
                int width = Math.min(per, threads), groups = threads / width, pow2 = 1;
                while (pow2 < groups) pow2 <<= 1;
                for (int base = q0; base < q1; base += width) {
                    double[] red = new double[threads];
                    for (int t = 0; t < threads; t++) {
                        int g = t / width, q = base + t % width;
                        if (g < groups && q < q1) for (int b = g; b < blocks; b += groups) red[t] += partial[b][q];
                    }
                    for (int half = pow2 >> 1; half > 0; half >>= 1)
                        for (int t = 0; t < threads; t++) {
                            int g = t / width;
                            if (g < half && g + half < groups) red[t] += red[t + half * width];
                        }
                    for (int t = 0; t < width; t++) {
                        int q = base + t;
                        if (q < q1) {
                            out[q] += red[t];
                            writes[q]++;
                        }
                    }
                }
            }
            for (int q = 0; q < quads; q++) {
                double want = 0;
                for (double[] row : partial) want += row[q];
                assertEquals(1, writes[q], "writes of float4 column " + q + " at d=" + d + ", " + blocks + " blocks");
                assertEquals(want, out[q], "float4 column " + q + " at d=" + d + ", " + blocks + " blocks");
            }
        }
    }

    /**
     * The persistent D = 64 flash backward's schedule (backward_wgmma_d64_persistent in flash_wgmma.cu) replayed on the
     * host with its control flow, one CTA at a time: the items of CTA c are snake_item(n, grid, c). Every tile of every
     * (key block, head) item must be computed exactly once, always from buffers that hold that item's K/V and that
     * tile's Q/dO and stats.
     */
    @Test
    void persistentFlashBackwardScheduleComputesEveryTileOnceFromTheRightBuffers() {
        int[][] cases = {{64, 2048, 132}, {128, 300, 132}, {3, 300, 9}, {1, 1, 1}, {5, 200, 4}, {2, 64, 2}, {7, 1000, 13}};
        for (int[] cs : cases) {
            int bh = cs[0], t = cs[1], items = bh * ((t + 127) / 128), grid = Math.min(items, cs[2]), qTiles = (t + 63) / 64;
            int[] computed = new int[items * qTiles];
            record Tile(int item, int qt) {}
            for (int cta = 0; cta < grid; cta++) {
                Tile[] tiles = new Tile[2], stats = new Tile[2];
                int[] kv = new int[2];
                int item = cta, buf = 0;
                // prefetch(item, 0, 0); store_to(0)
                kv[0] = item;
                tiles[0] = stats[0] = new Tile(item, 2 * (item / bh));
                for (int j = 0; ; j++) {
                    int qFirst = 2 * (item / bh), next = snakeItem(j + 1, grid, cta);
                    for (int qt = qFirst; qt < qTiles; qt++, buf ^= 1) {
                        boolean last = qt + 1 == qTiles;
                        assertEquals(new Tile(item, qt), tiles[buf], "Q/dO buffer at the barrier");
                        assertEquals(new Tile(item, qt), stats[buf], "stats buffer at the barrier");
                        assertEquals(item, kv[j & 1], "K/V buffer");
                        Tile pending = null;
                        if (!last) pending = tiles[buf ^ 1] = new Tile(item, qt + 1);
                        else if (next < items) {
                            kv[(j + 1) & 1] = next;
                            pending = tiles[buf ^ 1] = new Tile(next, 2 * (next / bh));
                        }
                        computed[item * qTiles + qt]++;
                        if (pending != null) stats[buf ^ 1] = pending;
                    }
                    if (next >= items) break;
                    item = next;
                }
            }
            for (int it = 0; it < items; it++)
                for (int q = 0; q < qTiles; q++)
                    assertEquals(q >= 2 * (it / bh) ? 1 : 0, computed[it * qTiles + q], "item " + it + " tile " + q + " of case " + Arrays.toString(cs));
        }
    }

    /** snake_item in flash_wgmma.cu: the n-th item of CTA {@code cta} in a grid of {@code grid}. */
    static int snakeItem(int n, int grid, int cta) { return n * grid + ((n & 1) == 1 ? grid - 1 - cta : cta); }

    @Test
    void snakeAssignmentGivesEveryItemToOneCta() {
        for (int[] c : new int[][] {{1024, 132}, {512, 132}, {9, 9}, {10, 3}, {1, 1}, {7, 2}}) {
            int items = c[0], grid = c[1];
            int[] owner = new int[items];
            Arrays.fill(owner, -1);
            for (int cta = 0; cta < grid; cta++)
                for (int n = 0; snakeItem(n, grid, cta) < items; n++) {
                    int it = snakeItem(n, grid, cta);
                    assertEquals(-1, owner[it], "item " + it + " taken twice");
                    owner[it] = cta;
                }
            for (int it = 0; it < items; it++) assertTrue(owner[it] >= 0, "item " + it + " of " + items + " unassigned");
        }
    }

    /** One compare-exchange pass over [base, base+len) exactly as the kernels index it. */
    private static void pass(long[] keys, int base, int len, long k, long j) {
        for (long p = 0; p < len / 2; p++) {
            long i = (p / j) * 2 * j + (p % j);
            long l = i + j;
            boolean ascending = ((base + i) & k) == 0;
            long a = keys[(int) (base + i)], b = keys[(int) (base + l)];
            if ((Long.compareUnsigned(a, b) > 0) == ascending) {
                keys[(int) (base + i)] = b;
                keys[(int) (base + l)] = a;
            }
        }
    }
}
