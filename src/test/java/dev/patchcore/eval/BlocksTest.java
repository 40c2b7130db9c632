package dev.patchcore.eval;

import dev.patchcore.data.Batch;
import dev.patchcore.data.TokenSequence;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

class BlocksTest {
    /** Token level, no limit: every token after the first is a target exactly once, the tail as one shorter block. */
    @Test void everyTokenAfterTheFirstIsScoredOnce() {
        for (int length : new int[] {17, 18, 50, 64, 65, 100}) {
            int[] ids = IntStream.range(0, length).map(i -> 1000 + i).toArray();
            List<Batch> batches = Blocks.of(TokenSequence.of(ids), 1, 16, 2, 0);
            int[] targets = batches.stream().flatMapToInt(b -> IntStream.of(b.targets())).toArray();
            assertArrayEquals(IntStream.range(1, length).map(i -> 1000 + i).toArray(), targets, "length " + length);
            for (Batch b : batches)
                for (int i = 0; i < b.inputs().length; i++) assertEquals(b.inputs()[i] + 1, b.targets()[i], "inputs precede targets");
        }
        // A block limit scores whole blocks only, also when it equals their number (50 tokens: 3 whole blocks).
        int[] ids = IntStream.range(0, 50).toArray();
        assertEquals(32, Blocks.of(TokenSequence.of(ids), 1, 16, 4, 2).stream().mapToInt(b -> b.targets().length).sum());
        assertEquals(48, Blocks.of(TokenSequence.of(ids), 1, 16, 4, 3).stream().mapToInt(b -> b.targets().length).sum());
        assertEquals(49, Blocks.of(TokenSequence.of(ids), 1, 16, 4, 4).stream().mapToInt(b -> b.targets().length).sum());
    }
}
