package dev.patchcore.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class BatchSamplerTest {

    private static int[] randomTokens(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(50_000);
        return t;
    }

    /** Token i = i: every window is identified by its first input token. */
    private static int[] iota(int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = i;
        return t;
    }

    /**
     * Paper App. A, spelled out on the raw stream: for a window starting at s, input position
     * p is stream[s+p]; target row t (patch t+1), column j is stream[s + K·(t+1) + j].
     */
    private static void assertRowIsWindow(int[] stream, Batch b, int row, int start) {
        int k = b.patchSize();
        int t = b.blockPatches();
        for (int p = 0; p < k * t; p++) {
            assertEquals(stream[start + p], b.inputs()[row * k * t + p], "input " + p);
        }
        for (int patch = 0; patch < t; patch++) {
            for (int j = 0; j < k; j++) {
                int targetRow = row * t + patch;
                assertEquals(stream[start + k * (patch + 1) + j], b.targets()[targetRow * k + j], "target row " + targetRow + " col " + j);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 4})
    void targetLayoutMatchesANaiveConstructionFromTheStream(int k) {
        int t = 5;
        int b = 3;
        int[] stream = randomTokens(1000, k);
        int[] ids = iota(stream.length);
        BatchSampler onTokens = new BatchSampler(TokenSequence.of(stream), k, t, b, 99);
        BatchSampler onIndices = new BatchSampler(TokenSequence.of(ids), k, t, b, 99);
        assertEquals((1000 - k * (t + 1)) / (k * t) + 1, onTokens.windowsPerEpoch());
        for (int step = 0; step < 10; step++) {
            Batch real = onTokens.next();
            Batch index = onIndices.next();
            assertEquals(b * k * t, real.inputs().length);
            assertEquals(b * t * k, real.targets().length);
            for (int row = 0; row < b; row++) {
                int start = index.inputs()[row * k * t]; // same seed: same window order
                assertEquals(0, start % (k * t), "windows start at multiples of the stride K·T");
                assertRowIsWindow(stream, real, row, start);
            }
        }
    }

    @Test
    void eachEpochVisitsEveryWindowOnceInAFreshOrder() {
        int k = 2, t = 3, b = 4;
        BatchSampler s = new BatchSampler(TokenSequence.of(iota(10_000)), k, t, b, 5);
        int windows = (int) s.windowsPerEpoch();
        assertEquals((10_000 - 8) / 6 + 1, windows); // 1666: not a multiple of B, so batches straddle epochs
        assertEquals(windows * 6L, s.tokensPerEpoch());
        List<Integer> visited = new ArrayList<>();
        while (visited.size() < 3 * windows) {
            Batch batch = s.next();
            for (int row = 0; row < b; row++) visited.add(batch.inputs()[row * k * t] / (k * t));
            assertEquals(visited.size() / windows, s.epoch(), "epoch counter follows windows consumed");
        }
        Set<List<Integer>> orders = new HashSet<>();
        for (int e = 0; e < 3; e++) {
            List<Integer> epoch = visited.subList(e * windows, (e + 1) * windows);
            assertEquals(windows, new HashSet<>(epoch).size(), "each window exactly once per epoch");
            assertTrue(epoch.stream().allMatch(w -> w >= 0 && w < windows));
            orders.add(List.copyOf(epoch));
        }
        assertEquals(3, orders.size(), "a new order each epoch");
        List<Integer> first = visited.subList(0, windows);
        assertNotEquals(first.stream().sorted().toList(), first, "shuffled, not sequential");
    }

    @Test
    void restoredSamplerIsBitIdenticalAcrossAnEpochBoundary() {
        int[] stream = randomTokens(3_000, 3);
        int k = 4, t = 7, b = 5;
        BatchSampler a = new BatchSampler(TokenSequence.of(stream), k, t, b, 1234);
        long windows = a.windowsPerEpoch(); // (3000-32)/28+1 = 107 windows: 21.4 batches per epoch
        assertEquals(107, windows);
        for (int i = 0; i < 19; i++) a.next();
        BatchSampler.State saved = a.state();
        assertEquals(0, saved.epoch());
        assertEquals(95, saved.position());
        List<Batch> expected = new ArrayList<>();
        for (int i = 0; i < 30; i++) expected.add(a.next()); // crosses into epoch 1 and 2
        assertEquals(2, a.epoch());

        BatchSampler restored = BatchSampler.restore(TokenSequence.of(stream), b, saved);
        BatchSampler reused = new BatchSampler(TokenSequence.of(stream), k, t, b, 1234);
        for (int i = 0; i < 3; i++) reused.next(); // a sampler elsewhere, moved back
        reused.restore(saved);
        for (Batch e : expected) {
            Batch r1 = restored.next();
            Batch r2 = reused.next();
            assertArrayEquals(e.inputs(), r1.inputs());
            assertArrayEquals(e.targets(), r1.targets());
            assertArrayEquals(e.inputs(), r2.inputs());
            assertArrayEquals(e.targets(), r2.targets());
        }
        assertEquals(a.state(), restored.state());
        assertEquals(a.epochProgress(), restored.epochProgress());

        // A state taken exactly after an epoch's last window resumes at the new epoch.
        BatchSampler c = new BatchSampler(TokenSequence.of(stream), k, t, 1, 8);
        for (int i = 0; i < windows; i++) c.next();
        assertEquals(new BatchSampler.State(8, 1, 0, k, t, windows), c.state());
        assertEquals(1.0, c.epochProgress());
    }

    /**
     * Mixup (paper App. C): sequence r's patch p holds token p of K different token-level windows and its target patch
     * their tokens p+1; an epoch still visits every window once; a restored sampler continues identically; a state of
     * the other mode is refused.
     */
    @Test
    void mixupPatchesMixKWindowsPositionByPosition() {
        int k = 3, t = 5, b = 4;
        int[] stream = iota(4000);
        BatchSampler s = new BatchSampler(TokenSequence.of(stream), k, t, b, 7, PatchMode.MIXUP);
        assertEquals((4000 - (t + 1)) / t + 1, s.windowsPerEpoch(), "token-level windows of T+1 tokens, stride T");
        assertEquals(s.windowsPerEpoch() * t, s.tokensPerEpoch());
        Set<Integer> seen = new HashSet<>();
        int batches = (int) (s.windowsPerEpoch() / (k * b));
        for (int i = 0; i < batches; i++) {
            Batch batch = s.next();
            for (int row = 0; row < b; row++) {
                for (int j = 0; j < k; j++) {
                    int start = batch.inputs()[row * k * t + j];  // token 0 of window j
                    assertEquals(0, start % t, "windows start at multiples of T");
                    assertTrue(seen.add(start / t), "window " + start / t + " twice in one epoch");
                    for (int p = 0; p < t; p++) {
                        assertEquals(start + p, batch.inputs()[row * k * t + p * k + j], "input patch " + p + " slot " + j);
                        assertEquals(start + p + 1, batch.targets()[(row * t + p) * k + j], "target patch " + p + " slot " + j);
                    }
                }
            }
        }
        BatchSampler.State mid = s.state();
        assertEquals(PatchMode.MIXUP, mid.mode());
        Batch next = s.next();
        BatchSampler again = BatchSampler.restore(TokenSequence.of(stream), b, mid);
        assertArrayEquals(next.inputs(), again.next().inputs());
        BatchSampler consecutive = new BatchSampler(TokenSequence.of(stream), k, t, b, 7);
        assertThrows(IllegalArgumentException.class, () -> consecutive.restore(new BatchSampler.State(
                7, 0, 0, k, t, consecutive.windowsPerEpoch(), PatchMode.MIXUP)));

        // Validation: sequence r of batch i mixes windows (i·B + r)·K + j, the same every time.
        ValidationBatches v = new ValidationBatches(TokenSequence.of(stream), k, t, b, 100, PatchMode.MIXUP);
        assertEquals(((4000 - (t + 1)) / t + 1) / k / b, v.batchCount());
        Batch v1 = v.batch(1);
        for (int row = 0; row < b; row++)
            for (int j = 0; j < k; j++) assertEquals(((b + row) * k + j) * t, v1.inputs()[row * k * t + j]);
        assertArrayEquals(v1.targets(), v.batch(1).targets());
    }

    @Test
    void differentSeedsGiveDifferentOrders() {
        int[] ids = iota(5_000);
        Batch a = new BatchSampler(TokenSequence.of(ids), 1, 16, 8, 1).next();
        Batch b = new BatchSampler(TokenSequence.of(ids), 1, 16, 8, 2).next();
        assertFalse(java.util.Arrays.equals(a.inputs(), b.inputs()));
    }

    @Test
    void restoreRejectsAStateFromOtherDataOrLayout() {
        int[] stream = randomTokens(2_000, 4);
        BatchSampler s = new BatchSampler(TokenSequence.of(stream), 2, 8, 2, 1);
        BatchSampler.State st = s.state();
        assertThrows(IllegalArgumentException.class,
                () -> BatchSampler.restore(TokenSequence.of(randomTokens(1_000, 4)), 2, st));
        BatchSampler otherK = new BatchSampler(TokenSequence.of(stream), 4, 8, 2, 1);
        assertThrows(IllegalArgumentException.class, () -> otherK.restore(st));
        assertThrows(IllegalArgumentException.class, () -> s.restore(new BatchSampler.State(1, 0, st.windowsPerEpoch(), 2, 8, st.windowsPerEpoch())));
        assertThrows(IllegalArgumentException.class, () -> s.restore(new BatchSampler.State(2, 0, 0, 2, 8, st.windowsPerEpoch())));
    }

    @Test
    void badArgumentsAreClearErrors() {
        TokenSequence data = TokenSequence.of(iota(100));
        assertMessage(() -> new BatchSampler(data, 0, 4, 1, 1), "patch size K");
        assertMessage(() -> new BatchSampler(data, 2, 0, 1, 1), "block size T");
        assertMessage(() -> new BatchSampler(data, 2, 4, 0, 1), "micro-batch size B");
        assertMessage(() -> new BatchSampler(data, 2, -1, 1, 1), "block size T");
        // K·(T+1) = 4·25 = 100 fits exactly; 4·26 = 104 does not.
        assertEquals(1, new BatchSampler(data, 4, 24, 1, 1).windowsPerEpoch());
        assertMessage(() -> new BatchSampler(data, 4, 25, 1, 1), "shorter than one window of K·(T+1) = 104 tokens");
        BatchSampler s = new BatchSampler(data, 1, 4, 2, 1);
        assertThrows(IllegalArgumentException.class, () -> s.next(new int[7], new int[8]));
    }

    private static void assertMessage(org.junit.jupiter.api.function.Executable call, String fragment) {
        var e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(fragment), () -> "expected '" + fragment + "' in: " + e.getMessage());
    }

    @Test
    void validationBatchesAreSequentialWindowsOfFullBatches() {
        int[] stream = randomTokens(1_000, 6);
        int k = 2, t = 4, b = 3;
        // windows = (1000-10)/8+1 = 124 -> 41 full batches.
        ValidationBatches all = new ValidationBatches(TokenSequence.of(stream), k, t, b, 1_000);
        assertEquals(41, all.batchCount());
        ValidationBatches few = new ValidationBatches(TokenSequence.of(stream), k, t, b, 5);
        assertEquals(5, few.batchCount());
        int i = 0;
        for (Batch batch : few) {
            for (int row = 0; row < b; row++) assertRowIsWindow(stream, batch, row, (i * b + row) * k * t);
            assertArrayEquals(batch.inputs(), all.batch(i).inputs(), "same batches whatever the cap");
            i++;
        }
        assertEquals(5, i);
        assertEquals(0, new ValidationBatches(TokenSequence.of(new int[5]), k, t, b, 10).batchCount());
        // upTo: the same full batches; a shard shorter than one batch gives one batch of all its windows.
        assertEquals(41, ValidationBatches.upTo(TokenSequence.of(stream), k, t, b, 1_000).batchCount());
        ValidationBatches shortShard = ValidationBatches.upTo(TokenSequence.of(java.util.Arrays.copyOf(stream, 20)), k, t, b, 10);
        assertEquals(1, shortShard.batchCount());
        assertEquals(2, shortShard.batchSize(), "(20 - 10) / 8 + 1 windows, fewer than b = 3");
        assertEquals(0, ValidationBatches.upTo(TokenSequence.of(new int[5]), k, t, b, 10).batchCount());
        assertThrows(IllegalArgumentException.class, () -> new ValidationBatches(TokenSequence.of(stream), 0, t, b, 1));
        assertThrows(IndexOutOfBoundsException.class, () -> few.batch(5));
    }

    @Test
    void slicesSampleOnlyTheirPart() {
        int[] ids = iota(10_000);
        TokenSequence tail = TokenSequence.of(ids).slice(6_000, 10_000);
        assertEquals(4_000, tail.length());
        BatchSampler s = new BatchSampler(tail, 4, 8, 4, 3);
        for (int i = 0; i < 50; i++) {
            for (int v : s.next().targets()) assertTrue(v >= 6_000 && v < 10_000);
        }
        assertThrows(IndexOutOfBoundsException.class, () -> TokenSequence.of(ids).slice(5, 10_001));
    }
}
