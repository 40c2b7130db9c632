package dev.patchcore.cli;

import dev.patchcore.config.ModelConfig;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** The defaults a new run takes from its model. */
class TrainDefaultsTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();

    /** --epochs Infinity was taken: a budget of 2^63 − 1 steps. */
    @Test void infiniteEpochsAreRefused(@TempDir Path dir) {
        assertEquals(2, Main.run("train", "--backend", "cpu", "--epochs", "Infinity", "--out", dir.resolve("r").toString(),
                "--stop-after", "1"));  // where it is taken, one step
        String e = console.err.toString().strip();
        assertEquals("error: --epochs must be a positive number (got Infinity)", e);
        assertEquals("", console.out.toString(), "refused before the plan");
    }

    /** An --epochs budget too small for both stages is told to raise --epochs (--steps with it is refused). */
    @Test void aBudgetTooSmallForBothStagesNamesTheOptionGiven(@TempDir Path dir) {
        assertEquals(2, Main.run("train", "--backend", "cpu", "--epochs", "0.0001", "--out", dir.resolve("r").toString()));
        String e = console.err.toString().strip();
        assertEquals(1, e.lines().count(), e);
        assertTrue(e.startsWith("error: a budget of 1 step leaves one stage none") && e.contains("--epochs"), e);
    }

    /**
     * tiny and small keep their defaults (1000 or 2000 steps of 16 sequences) whatever the data's vocabulary: an
     * --init-from of a tiny run on GPT-2 data (vocabulary 50257) got the paper presets' 180000 steps of 4.
     */
    @Test void theDefaultsFollowTheModelNotItsVocabulary() {
        assertFalse(TrainCommand.isPaperPreset(ModelConfig.preset("tiny")));
        assertFalse(TrainCommand.isPaperPreset(ModelConfig.preset("small")));
        assertFalse(TrainCommand.isPaperPreset(ModelConfig.preset("tiny").withVocab(50257)));
        assertTrue(TrainCommand.isPaperPreset(ModelConfig.preset("370m")));
        assertTrue(TrainCommand.isPaperPreset(ModelConfig.preset("370m").withVocab(257)));
        // A Hugging Face folder is named after its folder: one called "small" holding a 370M model is no small preset
        assertTrue(TrainCommand.isPaperPreset(new ModelConfig("small", 32000, 1024, 2752, 24, 16, 2048, 10000f, 1e-5f)));
    }
}
