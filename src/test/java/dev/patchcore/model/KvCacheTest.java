package dev.patchcore.model;

import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The cache holds each layer's key/value heads for the whole context: a grouped-query model's are not repeated. */
class KvCacheTest {
    @Test void eachLayerHoldsTheContextsRowsOfTheKeyValueHeads() {
        ModelConfig mha = new ModelConfig("kv", 50, 64, 40, 3, 8, 12, 10000f, 1e-5f);  // 8 heads of 8
        try (CpuBackend be = new CpuBackend(1)) {
            for (int kvHeads : new int[] {8, 2, 1}) {
                ModelConfig c = mha.withKvHeads(kvHeads);
                try (KvCache cache = new KvCache(be, c)) {
                    assertEquals(12, cache.capacity());
                    assertEquals(0, cache.length());
                    for (int layer = 0; layer < 3; layer++) {
                        assertArrayEquals(new int[] {12, kvHeads * 8}, cache.keys(layer).shape(), kvHeads + " kv heads, layer " + layer + " keys");
                        assertArrayEquals(new int[] {12, kvHeads * 8}, cache.values(layer).shape(), kvHeads + " kv heads, layer " + layer + " values");
                    }
                }
            }
        }
    }
}
