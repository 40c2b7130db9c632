package dev.patchcore.eval;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GeneratorTest {
    @Test void greedyAndTopOneTakeTheArgmax() {
        float[] logits = {0.1f, 2.5f, -1f, 2.4f};
        SplittableRandom r = new SplittableRandom(1);
        assertEquals(1, Generator.sample(logits, 0f, 0, r));
        for (int i = 0; i < 100; i++) assertEquals(1, Generator.sample(logits, 1f, 1, r));
    }

    @Test void topKNeverLeavesTheTopKAndTemperatureFollowsTheSoftmax() {
        float[] logits = {0f, (float) Math.log(3), -5f, -6f};
        SplittableRandom r = new SplittableRandom(2);
        int[] hits = new int[4];
        for (int i = 0; i < 20000; i++) hits[Generator.sample(logits, 1f, 2, r)]++;
        assertEquals(0, hits[2] + hits[3]);
        double ratio = (double) hits[1] / hits[0]; // softmax over the top 2: 3 : 1
        assertTrue(Math.abs(ratio - 3) < 0.25, "ratio " + ratio);
    }
}
