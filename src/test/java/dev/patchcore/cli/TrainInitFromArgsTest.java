package dev.patchcore.cli;

import dev.patchcore.testing.CapturedConsole;
import dev.patchcore.train.Checkpoints;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** train --init-from as a user meets it: what reaches standard error. */
class TrainInitFromArgsTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();

    /**
     * A Hugging Face folder without a tokenizer gets a note on standard error, but only for a run that starts: bad input
     * after it (a budget, an --out holding a run) was two lines, the note and the error.
     */
    @Test void theNoTokenizerNoteDoesNotPrecedeAnError(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--out", run.toString(), "--steps", "1", "--lambda", "0",
                "--eval-every", "0"), console.err.toString());
        Path hf = dir.resolve("hf");  // the checkpoint's config.json and weights: a Hugging Face folder with no tokenizer
        Files.createDirectories(hf);
        for (String f : new String[] {"config.json", "model.safetensors"})
            Files.copy(Checkpoints.latest(run).resolve(f), hf.resolve(f));
        // A context past 4096 gets its note too: its max_position_embeddings raised as in LLaMA-3's folders
        Path config = hf.resolve("config.json");
        String json = Files.readString(config);
        assertTrue(json.contains("\"max_position_embeddings\": 64,"), json);
        Files.writeString(config, json.replace("\"max_position_embeddings\": 64,", "\"max_position_embeddings\": 8192,"));
        for (String[] bad : new String[][] {{"--steps", "1", "--out", dir.resolve("new").toString()}, {"--steps", "2", "--out", run.toString()}}) {
            console.userError("train", "--backend", "cpu", "--init-from", hf.toString(), bad[0], bad[1], bad[2], bad[3]);
        }
        console.err.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--init-from", hf.toString(), "--steps", "1", "--lambda", "0",
                "--eval-every", "0", "--context", "64", "--out", dir.resolve("branch").toString()));
        assertTrue(console.err.toString().contains(hf + " has no tokenizer patchcore reads"), console.err.toString());
    }
}
