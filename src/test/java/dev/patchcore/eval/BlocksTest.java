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

    /**
     * A long split (here 3·10^9 tokens, 24 GB as int arrays) is scored a batch at a time: the batches are made as they
     * are read, not all held at once (eval of a large --data validation split ran out of memory before scoring).
     */
    @Test void batchesOfALongSplitAreMadeAsTheyAreRead() {
        long length = 3_000_000_000L;
        TokenSequence huge = new TokenSequence() {
            @Override public long length() { return length; }

            @Override public void copy(long from, int[] dst, int offset, int count) {
                for (int i = 0; i < count; i++) dst[offset + i] = (int) ((from + i) % 50_000);
            }
        };
        List<Batch> batches = Blocks.of(huge, 1, 1024, 4, 0);
        long whole = (length - 1025) / 1024 + 1;
        assertEquals((whole + 3) / 4 + 1, batches.size());  // the last: the tail after the whole blocks
        Batch middle = batches.get(123_456);
        assertEquals(4, middle.batchSize());
        assertEquals((int) (123_456L * 4 * 1024 % 50_000), middle.inputs()[0]);
        assertEquals((int) ((123_456L * 4 * 1024 + 1) % 50_000), middle.targets()[0]);
        Batch tail = batches.getLast();
        assertEquals(length - 1 - whole * 1024, tail.targets().length);
        assertEquals((int) ((length - 1) % 50_000), tail.targets()[tail.targets().length - 1]);
    }
}
