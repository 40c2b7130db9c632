package dev.patchcore.backend.cuda;

import dev.patchcore.backend.cuda.CublasLtSplitK.Caps;
import dev.patchcore.backend.cuda.CublasLtSplitK.Extra;
import dev.patchcore.backend.cuda.CublasLtSplitK.SplitConfig;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.patchcore.backend.cuda.CublasLtSplitK.CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
import static dev.patchcore.backend.cuda.CublasLtSplitK.CUBLASLT_REDUCTION_SCHEME_INPLACE;
import static dev.patchcore.backend.cuda.CublasLtSplitK.CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Split-K mode's decisions (which keys, which candidates, which configurations, how many) and its key and result parsing. */
class CublasLtSplitKTest {
    private static final int ALL = CUBLASLT_REDUCTION_SCHEME_INPLACE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
            | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;

    @Test
    void underFilledFollowsWavesCountElseTheOutputSize() {
        // The H100 case: 1024×1024 output, ~64 tiles on 132 SMs.
        assertTrue(CublasLtSplitK.underFilled(0.48f, 1024, 1024));
        assertFalse(CublasLtSplitK.underFilled(1.0f, 1024, 1024), "one full wave is not under-filled");
        assertFalse(CublasLtSplitK.underFilled(3.9f, 1024, 1024), "a reported wavesCount wins over the size");
        assertTrue(CublasLtSplitK.underFilled(0.9f, 8192, 8192), "a reported wavesCount wins over the size");
        // No wavesCount (NaN, 0 or negative): at most 4 Mi output elements.
        assertTrue(CublasLtSplitK.underFilled(Float.NaN, 1024, 1024));
        assertTrue(CublasLtSplitK.underFilled(0f, 2048, 2048), "exactly 4 Mi elements");
        assertFalse(CublasLtSplitK.underFilled(0f, 2048, 2049));
        assertFalse(CublasLtSplitK.underFilled(-1f, 8192, 1024));
        assertFalse(CublasLtSplitK.underFilled(Float.NaN, 4096, 3072));
    }

    @Test
    void splitConfigsFollowTheSchemeMaskSplitMajor() {
        assertEquals(List.of(new SplitConfig(2, 1), new SplitConfig(2, 4), new SplitConfig(3, 1), new SplitConfig(3, 4),
                        new SplitConfig(4, 1), new SplitConfig(4, 4)),
                CublasLtSplitK.splitConfigs(true, CUBLASLT_REDUCTION_SCHEME_INPLACE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE, 1));
        List<SplitConfig> all = CublasLtSplitK.splitConfigs(true, ALL, 1);
        assertEquals(9, all.size());
        assertEquals(new SplitConfig(2, CUBLASLT_REDUCTION_SCHEME_INPLACE), all.get(0));
        assertEquals(new SplitConfig(2, CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE), all.get(1));
        assertEquals(new SplitConfig(4, CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE), all.get(8));
        // Bits outside the three schemes (and NONE = 0) offer nothing.
        assertEquals(List.of(new SplitConfig(2, 2), new SplitConfig(3, 2), new SplitConfig(4, 2)),
                CublasLtSplitK.splitConfigs(true, 0xF8 | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, 1));
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(true, 0, 1));
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(true, 0xF8, 1));
    }

    @Test
    void bf16OutputsOnlyReduceInFp32() {
        assertEquals(ALL, CublasLtSplitK.schemesFor(ALL, true));
        assertEquals(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, CublasLtSplitK.schemesFor(ALL, false));
        assertEquals(0, CublasLtSplitK.schemesFor(CUBLASLT_REDUCTION_SCHEME_INPLACE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE, false),
                "a bf16 GEMM whose candidate reduces only in bf16 gets no split-K variant");
        assertEquals(List.of(new SplitConfig(2, 2), new SplitConfig(3, 2), new SplitConfig(4, 2)),
                CublasLtSplitK.splitConfigs(true, CublasLtSplitK.schemesFor(ALL, false), 1));
    }

    @Test
    void unsupportedOrAlreadySplitCandidatesGetNoVariants() {
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(false, ALL, 1));
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(true, ALL, 2));
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(true, ALL, 16));
        assertEquals(List.of(), CublasLtSplitK.splitConfigs(true, ALL, -1), "SPLITK_NUM is a uint32: 0xFFFFFFFF splits");
        assertEquals(9, CublasLtSplitK.splitConfigs(true, ALL, 0).size(), "0 does not split");
    }

    @Test
    void extrasComeFromTheFirstFourCandidatesInOrder() throws Throwable {
        List<String> heuristic = List.of("h0", "h1", "h2", "h3", "h4");
        Map<String, Caps> caps = Map.of(
                "h0", new Caps(true, CUBLASLT_REDUCTION_SCHEME_INPLACE, 1),
                "h1", new Caps(false, ALL, 1),                                   // cannot split
                "h2", new Caps(true, ALL, 3),                                    // already splits
                "h4", new Caps(true, ALL, 1));                                   // fifth: never looked at
        List<String> probed = new ArrayList<>();
        List<Extra<String>> extras = CublasLtSplitK.extras(heuristic, h -> {
            probed.add(h);
            return caps.get(h); // h3: a failed query (null), skipped
        }, (base, c) -> c.split() == 3 ? null : base + "/" + c.split() + "/" + c.scheme()); // the check rejects split 3
        assertEquals(List.of("h0", "h1", "h2", "h3"), probed);
        List<String> algos = extras.stream().map(Extra::algo).toList();
        assertEquals(List.of("h0/2/1", "h0/4/1"), algos);
        assertEquals(List.of("#0 split 2 in-place", "#0 split 4 in-place"), extras.stream().map(Extra::label).toList());
        assertEquals("#1 split 3 compute-type", new Extra<>("x", 1, new SplitConfig(3, CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)).label());
        assertEquals("#2 split 4 output-type", new Extra<>("x", 2, new SplitConfig(4, CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE)).label());
        assertEquals(List.of(), CublasLtSplitK.extras(List.<String>of(), h -> new Caps(true, ALL, 1), (b, c) -> b));
    }

    @Test
    void extrasStopAtTheCap() throws Throwable {
        List<String> heuristic = List.of("h0", "h1", "h2", "h3");
        int[] derived = {0};
        List<Extra<String>> extras = CublasLtSplitK.extras(heuristic, h -> new Caps(true, ALL, 1), (base, c) -> {
            derived[0]++;
            return base;
        });
        // 4 candidates × 3 splits × 3 schemes = 36 possible: 9 + 9 + 6 kept, and nothing checked past the cap.
        assertEquals(CublasLtSplitK.MAX_EXTRA, extras.size());
        assertEquals(24, derived[0]);
        assertEquals(9, extras.stream().filter(e -> e.base() == 0).count());
        assertEquals(9, extras.stream().filter(e -> e.base() == 1).count());
        assertEquals(6, extras.stream().filter(e -> e.base() == 2).count());
        assertEquals(0, extras.stream().filter(e -> e.base() == 3).count());
        assertEquals("#2 split 3 output-type", extras.getLast().label());
        // Rejected variants do not count against the cap.
        int[] checked = {0};
        List<Extra<String>> some = CublasLtSplitK.extras(heuristic, h -> new Caps(true, ALL, 1),
                (base, c) -> checked[0]++ % 2 == 0 ? null : base);
        assertEquals(18, some.size());
        assertEquals(36, checked[0]);
    }

    @Test
    void splitKModeIsPartOfTheKey() {
        GemmLayout dW = GemmLayout.backwardWeight(8192, 1024, 1024);
        long base = 0x7f0000000000L;
        CublasLt.Key off = CublasLt.Key.of(dW, base, base, base, CublasLt.CUDA_R_32F, true, false);
        CublasLt.Key on = CublasLt.Key.of(dW, base, base, base, CublasLt.CUDA_R_32F, true, true);
        assertFalse(off.splitK());
        assertTrue(on.splitK());
        assertNotEquals(off, on, "each mode plans and tunes on its own");
        assertEquals(off, CublasLt.Key.of(dW, base, base, base, CublasLt.CUDA_R_32F, true, false));
        assertEquals(on, CublasLt.Key.of(dW, base + 0x100, base, base, CublasLt.CUDA_R_32F, true, true), "switching back finds the same key");
        assertEquals(off, new CublasLt.Key(dW, CublasLt.CUDA_R_32F, true, 256, 256, 256, false));
    }

    @Test
    void wavesCountIsReadFromTheFirstUsableResult() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment results = arena.allocate(CublasLt.HEURISTIC_RESULT_BYTES * 3, 8);
            int[] state = {15, 0, 0};
            long[] workspace = {0, 64L << 20, 1L << 20};
            float[] waves = {0.25f, 0.5f, 0.75f};
            for (int i = 0; i < 3; i++) {
                long at = i * CublasLt.HEURISTIC_RESULT_BYTES;
                results.set(JAVA_LONG, at + 64, workspace[i]);
                results.set(JAVA_INT, at + 72, state[i]);
                results.set(JAVA_FLOAT, at + 76, waves[i]);
            }
            // #0 failed, #1 needs too much workspace: the tuner's #0 is the third result.
            assertEquals(0.75f, CublasLt.firstUsableWaves(results, 3, CublasLt.WORKSPACE_BYTES));
            assertEquals(0.5f, CublasLt.firstUsableWaves(results, 3, 64L << 20));
            assertTrue(Float.isNaN(CublasLt.firstUsableWaves(results, 2, CublasLt.WORKSPACE_BYTES)));
            assertFalse(CublasLt.usable(results, CublasLt.WORKSPACE_BYTES));
            assertTrue(CublasLt.usable(results.asSlice(2 * CublasLt.HEURISTIC_RESULT_BYTES), CublasLt.WORKSPACE_BYTES));
            assertTrue(CublasLt.usable(arena.allocate(CublasLt.HEURISTIC_RESULT_BYTES, 8), 0), "a zeroed algo check result is usable");
        }
    }
}
