package dev.patchcore.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** A run folder damaged by hand: one line naming the file and what is wrong. */
class CheckpointsTest {
    @Test void aDamagedRunFolderIsDescribed(@TempDir Path run) throws IOException {
        Path root = Checkpoints.root(run), good = root.resolve("step-00000040");
        Files.createDirectories(good);
        Files.writeString(good.resolve(Checkpoints.MODEL), "x");
        Files.writeString(good.resolve(Checkpoints.TRAINER), "{}");
        Files.createDirectories(root.resolve("step-00000050"));  // a save stopped partway: weights, no trainer.json
        Files.writeString(root.resolve("step-00000050").resolve(Checkpoints.MODEL), "x");
        Files.writeString(root.resolve("latest"), "step-99\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.latest(run));
        assertEquals(root.resolve("latest") + " names 'step-99', which is not a complete checkpoint (the run folder was changed "
                + "by hand?); the folder holds step-00000040 (write the name of one into " + root.resolve("latest")
                + " to continue from it)", e.getMessage());
        Files.writeString(root.resolve("latest"), "step-00000040\n");
        assertEquals(good, Checkpoints.latest(run));
        Files.writeString(root.resolve("latest"), "step-00000050\n");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.latest(run));
        assertTrue(e.getMessage().contains("names 'step-00000050', which is not a complete checkpoint"), e.getMessage());

        Files.delete(good.resolve(Checkpoints.TRAINER));
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(good));
        assertEquals("cannot read " + good.resolve("trainer.json") + ": no such file", e.getMessage());
        Files.writeString(good.resolve("trainer.json"), "{\"bad\":\n");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(good));
        assertTrue(e.getMessage().startsWith(good.resolve("trainer.json") + " is not a valid trainer.json ("), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
        Files.writeString(good.resolve("trainer.json"), "{\"train\": {\"patchSize\": 0}}");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(good));
        assertTrue(e.getMessage().startsWith(good.resolve("trainer.json") + " is not a valid trainer.json ("), e.getMessage());
        Files.writeString(good.resolve("trainer.json"), "{}");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(good));
        assertEquals(good.resolve("trainer.json") + " is not a complete trainer.json (no 'train')", e.getMessage());
        Files.writeString(good.resolve("trainer.json"), "");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(good));
        assertEquals(good.resolve("trainer.json") + " is empty", e.getMessage());
    }
}
