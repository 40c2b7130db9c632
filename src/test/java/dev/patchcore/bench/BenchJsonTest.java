package dev.patchcore.bench;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class BenchJsonTest {
    record Row(String setting, double kernelMs, Double gbPerS) {}

    /** A kernel that was not timed (NaN) is null, which every JSON parser reads; '=' is written as it is. */
    @Test void nonFiniteNumbersAreNullAndNothingIsHtmlEscaped() {
        String json = BenchJson.GSON.toJson(new Row("patch_size=4, block_size=256", Double.NaN, Double.POSITIVE_INFINITY));
        assertTrue(json.contains("\"setting\": \"patch_size=4, block_size=256\""), json);
        assertTrue(json.contains("\"kernelMs\": null") && json.contains("\"gbPerS\": null"), json);
        assertTrue(BenchJson.GSON.toJson(new Row("x", 1.5, 2.0)).contains("\"kernelMs\": 1.5"));
        assertNotNull(com.google.gson.JsonParser.parseString(json));
    }
}
