package dev.patchcore.cli;

import dev.patchcore.config.ModelConfig;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The defaults a new run takes from its model. */
class TrainDefaultsTest {
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
