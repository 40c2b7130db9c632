package dev.patchcore.train;

import com.google.gson.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class MetricsTest {
    /** A diverged gradient norm is written as null: the log stays JSON that any parser reads. */
    @Test void nonFiniteNumbersAreWrittenAsNull(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("metrics.jsonl");
        try (Metrics m = new Metrics(file)) {
            JsonObject o = new JsonObject();
            o.addProperty("loss", 2.5);
            o.addProperty("grad_norm", Double.POSITIVE_INFINITY);
            o.addProperty("lr", Float.NaN);
            m.write(o);
        }
        assertEquals("{\"loss\":2.5,\"grad_norm\":null,\"lr\":null}", Files.readString(file).strip());
    }

    /** Records after the resumed step go, and a torn last line; the file is left alone when nothing is dropped. */
    @Test void dropAfterKeepsTheRecordsUpToTheCheckpoint(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("metrics.jsonl");
        Files.writeString(file, "{\"global_step\":1}\n{\"global_step\":2}\n{\"type\":\"val\",\"global_step\":2}\n{\"global_step\":3}\n{\"glob");
        assertEquals(2, Metrics.dropAfter(file, 2));
        assertEquals("{\"global_step\":1}\n{\"global_step\":2}\n{\"type\":\"val\",\"global_step\":2}\n", Files.readString(file));
        assertEquals(0, Metrics.dropAfter(file, 2));
        assertEquals(0, Metrics.dropAfter(dir.resolve("none.jsonl"), 2));
    }
}
