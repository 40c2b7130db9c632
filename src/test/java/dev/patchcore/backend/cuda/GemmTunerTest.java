package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** GEMM algorithm selection from fake timings, the per-key cache, the key itself and the heuristic-result parsing. */
class GemmTunerTest {

    /** Fake device: fixed time per candidate, null = the candidate fails; counts calls per candidate. */
    private static final class FakeTimings implements GemmTuner.Measure {
        final Double[] times;
        final int[] calls;

        FakeTimings(Double... times) {
            this.times = times;
            this.calls = new int[times.length];
        }

        @Override
        public double millis(int index) {
            calls[index]++;
            if (times[index] == null) throw new CudaException("cublasLtMatmul failed: CUBLAS_STATUS_NOT_SUPPORTED (15)", 15);
            return times[index];
        }
    }

    @Test
    void picksTheFastestCandidate() {
        FakeTimings t = new FakeTimings(0.30, 0.10, 0.20, 0.50);
        GemmTuner.Choice c = GemmTuner.select(4, t);
        assertEquals(1, c.index());
        assertTrue(c.timed());
        assertEquals(0, c.failed());
        assertEquals(0.10, c.millis()[1]);
        assertEquals(4, c.candidates());
    }

    @Test
    void nearTiesGoToTheHeuristicsEarlierPick() {
        // Within 1 % of the fastest: keep the better-ranked candidate, so noise does not flip the choice.
        assertEquals(0, GemmTuner.select(3, new FakeTimings(0.1000, 0.0995, 0.2)).index());
        assertEquals(1, GemmTuner.select(3, new FakeTimings(0.2, 0.1000, 0.0995)).index());
        // Clearly faster (2 %): take it.
        assertEquals(1, GemmTuner.select(2, new FakeTimings(0.1000, 0.0980)).index());
    }

    @Test
    void failingCandidatesAreIgnored() {
        FakeTimings t = new FakeTimings(null, 0.4, null, 0.3, Double.NaN, -1.0);
        GemmTuner.Choice c = GemmTuner.select(6, t);
        assertEquals(3, c.index());
        assertEquals(4, c.failed()); // a throw, NaN or a negative time all disqualify
        assertEquals(1, t.calls[0], "a failed candidate is not retried");
        assertTrue(c.summary().contains("#0 failed"), c.summary());
    }

    @Test
    void allFailingFallsBackToTheHeuristicsFirstPick() {
        GemmTuner.Choice c = GemmTuner.select(3, new FakeTimings(null, null, null));
        assertEquals(0, c.index());
        assertEquals(3, c.failed());
    }

    @Test
    void aCandidateFailingInTheSecondRoundIsDropped() {
        int[] calls = new int[2];
        GemmTuner.Choice c = GemmTuner.select(2, i -> {
            if (i == 0 && calls[0]++ > 0) throw new CudaException("second run failed", 13);
            if (i == 1) calls[1]++;
            return i == 0 ? 0.1 : 0.11;
        });
        assertEquals(1, c.index());
        assertEquals(1, c.failed());
    }

    @Test
    void onlyContendersAreTimedTwiceAndTheirMinimumCounts() {
        double[][] rounds = {{0.14, 0.10}, {0.12, 0.13}, {0.90, 0.05}}; // per candidate: round 1, round 2
        int[] calls = new int[3];
        GemmTuner.Choice c = GemmTuner.select(3, i -> rounds[i][calls[i]++]);
        assertArrayEquals(new int[] {2, 2, 1}, calls); // 0.90 > 1.25 × 0.12: not re-timed
        assertEquals(0, c.index());
        assertArrayEquals(new double[] {0.10, 0.12, 0.90}, c.millis(), 0);
    }

    @Test
    void oneCandidateOrTuningOffNeverTimes() {
        FakeTimings one = new FakeTimings(0.1);
        GemmTuner.Choice c = GemmTuner.select(1, one);
        assertEquals(0, c.index());
        assertFalse(c.timed());
        assertEquals(0, one.calls[0]);

        GemmTuner<String> off = new GemmTuner<>(GemmTuner.Mode.OFF);
        FakeTimings t = new FakeTimings(0.3, 0.1);
        assertEquals(0, off.choose("k", 2, t).index());
        assertArrayEquals(new int[] {0, 0}, t.calls);
        assertFalse(off.timing());
        assertThrows(IllegalArgumentException.class, () -> GemmTuner.select(0, new FakeTimings()));
    }

    @Test
    void choicesAreCachedPerKey() {
        GemmTuner<String> tuner = new GemmTuner<>(GemmTuner.Mode.ON);
        FakeTimings a = new FakeTimings(0.3, 0.1);
        assertNull(tuner.cached("qkv"));
        GemmTuner.Choice first = tuner.choose("qkv", 2, a);
        int callsAfterFirst = a.calls[0] + a.calls[1];
        assertTrue(callsAfterFirst >= 2);
        // Same key: the cached choice, no timing, even if the device would now answer differently.
        assertSame(first, tuner.choose("qkv", 2, new FakeTimings(0.1, 0.3)));
        assertSame(first, tuner.cached("qkv"));
        assertEquals(callsAfterFirst, a.calls[0] + a.calls[1]);
        // Another key is tuned on its own.
        FakeTimings b = new FakeTimings(0.1, 0.3);
        assertEquals(0, tuner.choose("out", 2, b).index());
        assertEquals(1, tuner.cached("qkv").index());
        // An untimed choice (no memory for the scratch output) is cached as well.
        assertFalse(tuner.choose("lm", 3, null).timed());
        assertFalse(tuner.choose("lm", 3, new FakeTimings(0.3, 0.2, 0.1)).timed());
    }

    @Test
    void modeFollowsTheEnvironmentValue() {
        assertEquals(GemmTuner.Mode.ON, GemmTuner.Mode.parse(null));
        assertEquals(GemmTuner.Mode.ON, GemmTuner.Mode.parse(""));
        assertEquals(GemmTuner.Mode.ON, GemmTuner.Mode.parse("1"));
        assertEquals(GemmTuner.Mode.OFF, GemmTuner.Mode.parse("0"));
        assertEquals(GemmTuner.Mode.VERBOSE, GemmTuner.Mode.parse("verbose"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GemmTuner.Mode.parse("yes"));
        assertTrue(e.getMessage().contains("PATCHCORE_GEMM_TUNE"));
    }

    @Test
    void keyHoldsShapeTypesBetaAndAlignmentButNotAddresses() {
        GemmLayout dW = GemmLayout.backwardWeight(8192, 1024, 3072);
        long base = 0x7f0000000000L;
        CublasLt.Key k = CublasLt.Key.of(dW, base, base + 0x10000, base + 0x20000, CublasLt.CUDA_R_32F, true);
        assertEquals(new CublasLt.Key(dW, CublasLt.CUDA_R_32F, true, 256, 256, 256), k);
        // Other buffers with the same alignment: the same key (the choice is reused).
        assertEquals(k, CublasLt.Key.of(dW, base + 0x300, base + 0x400, base + 0x500, CublasLt.CUDA_R_32F, true));
        assertNotEquals(k, CublasLt.Key.of(dW, base, base, base, CublasLt.CUDA_R_32F, false), "beta");
        assertNotEquals(k, CublasLt.Key.of(dW, base, base, base, CublasLt.CUDA_R_16BF, true), "output type");
        assertNotEquals(k, CublasLt.Key.of(dW, base + 2, base, base, CublasLt.CUDA_R_32F, true), "alignment of A");
        assertNotEquals(k, CublasLt.Key.of(dW, base, base, base + 16, CublasLt.CUDA_R_32F, true), "alignment of D");
        assertNotEquals(k, CublasLt.Key.of(GemmLayout.backwardWeight(8192, 1024, 1024), base, base, base, CublasLt.CUDA_R_32F, true), "shape");
        assertNotEquals(k, CublasLt.Key.of(GemmLayout.forward(8192, 1024, 3072), base, base, base, CublasLt.CUDA_R_32F, true), "transposes");
        // dW[3072,1024] f32: column-major m = in = 1024, n = out = 3072.
        assertEquals(1024L * 3072 * 4, k.outputBytes());
        assertEquals(8192L * 3072 * 2, CublasLt.Key.of(GemmLayout.forward(8192, 1024, 3072), base, base, base, CublasLt.CUDA_R_16BF, false).outputBytes());
    }

    @Test
    void heuristicResultsAreReadAtTheir96ByteStride() {
        // cublasLtMatmulHeuristicResult_t: algo uint64_t[8] @0, size_t workspaceSize @64, int state @72, float wavesCount @76, int reserved[4] @80.
        try (Arena arena = Arena.ofConfined()) {
            int n = 4;
            MemorySegment results = arena.allocate(CublasLt.HEURISTIC_RESULT_BYTES * n, 8);
            long[] workspace = {0, 1L << 20, 64L << 20, 32L << 20};
            int[] state = {0, 0, 0, 15};
            for (int i = 0; i < n; i++) {
                long base = i * CublasLt.HEURISTIC_RESULT_BYTES;
                for (int w = 0; w < 8; w++) results.set(JAVA_LONG, base + 8L * w, 1000L * i + w);
                results.set(JAVA_LONG, base + 64, workspace[i]);
                results.set(JAVA_INT, base + 72, state[i]);
                results.set(JAVA_FLOAT, base + 76, 1.5f);
                for (int r = 0; r < 4; r++) results.set(JAVA_INT, base + 80 + 4L * r, -1);
            }
            List<MemorySegment> algos = CublasLt.usableAlgorithms(results, n, CublasLt.WORKSPACE_BYTES, arena);
            // #2 wants 64 MiB of workspace, #3 has a failure state: both skipped; order kept.
            assertEquals(2, algos.size());
            List<Long> firstWords = new ArrayList<>();
            for (MemorySegment a : algos) {
                assertEquals(CublasLt.ALGO_BYTES, a.byteSize());
                firstWords.add(a.get(JAVA_LONG, 0));
                assertEquals(a.get(JAVA_LONG, 0) + 7, a.get(JAVA_LONG, 56), "all 64 bytes copied");
            }
            assertEquals(List.of(0L, 1000L), firstWords);
            assertEquals(1, CublasLt.usableAlgorithms(results, 1, CublasLt.WORKSPACE_BYTES, arena).size(), "only the returned count is read");
            assertEquals(96, CublasLt.HEURISTIC_RESULT_BYTES);
        }
    }
}
