package dev.patchcore.train;

import dev.patchcore.data.Batch;
import dev.patchcore.data.PatchMode;
import dev.patchcore.data.PreparedDataset;
import dev.patchcore.data.WindowLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class ShardTrainingDataTest {
    @TempDir Path dir;

    /** A validation split shorter than one batch is scored as one smaller batch, not skipped. */
    @Test
    void aShortValidationSplitGivesOneSmallerBatch() throws IOException {
        Path ds = TestData.prepare(dir);
        long valTokens;
        try (PreparedDataset p = PreparedDataset.open(ds)) { valTokens = p.val().length(); }
        int k = 4, t = 16;
        long windows = new WindowLayout(k, t).windowCount(valTokens);
        assertTrue(windows >= 2 && windows < 10_000, "test data: " + windows + " validation windows");
        ShardTrainingData data = ShardTrainingData.open(ds.toString());

        List<Batch> one = data.validation(k, t, (int) windows + 5, 8, PatchMode.CONSECUTIVE);
        assertEquals(1, one.size());
        assertEquals(windows, one.getFirst().batchSize(), "every window of the split, in one batch");

        List<Batch> full = data.validation(k, t, 2, 3, PatchMode.CONSECUTIVE);
        assertEquals(Math.min(3, windows / 2), full.size());
        for (Batch b : full) assertEquals(2, b.batchSize());
        // The same windows in the same order: batch 0 of size 2 is the first two rows of the single batch.
        assertArrayEquals(java.util.Arrays.copyOf(one.getFirst().inputs(), full.getFirst().inputs().length), full.getFirst().inputs());

        assertEquals(List.of(), data.validation(k, (int) valTokens, 4, 8, PatchMode.CONSECUTIVE), "shorter than one window: nothing to score");
        assertEquals(List.of(), data.validation(k, t, 4, 0, PatchMode.CONSECUTIVE));
    }
}
