package dev.patchcore.cli;

import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** What train --resume says of a folder that holds weights but is no run folder. */
class TrainResumeArgsTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();

    private String userError(String... args) {
        return console.userError(args);
    }

    /** A sharded Hugging Face folder ended in a NullPointerException's stack trace (its meta has no run state). */
    @Test void aHuggingFaceFolderIsNoRunToResume(@TempDir Path dir) throws IOException {
        Path hf = dir.resolve("hf");
        Files.createDirectories(hf);
        Files.writeString(hf.resolve("config.json"), "{\"model_type\": \"llama\"}");
        Files.writeString(hf.resolve("model.safetensors.index.json"), "{\"weight_map\": {}}");
        String e = userError("train", "--backend", "cpu", "--resume", hf.toString());
        assertTrue(e.contains("is a Hugging Face model folder") && e.contains("--init-from " + hf), e);
        // Unsharded: it was taken for a run's checkpoint, and --resume of the folder two up was advised
        Files.delete(hf.resolve("model.safetensors.index.json"));
        Files.writeString(hf.resolve("model.safetensors"), "");
        e = userError("train", "--backend", "cpu", "--resume", hf.toString());
        assertTrue(e.contains("is a Hugging Face model folder") && e.contains("--init-from " + hf), e);
    }

    /** A checkpoint folder copied out of its run is no run either: --resume of its parent's parent was advised. */
    @Test void aCheckpointOutsideARunIsNoRunToResume(@TempDir Path dir) throws IOException {
        Path ck = dir.resolve("copy");
        Files.createDirectories(ck);
        Files.writeString(ck.resolve("model.safetensors"), "");
        Files.writeString(ck.resolve("trainer.json"), "{}");
        String e = userError("train", "--backend", "cpu", "--resume", ck.toString());
        assertFalse(e.contains("--resume " + dir.getParent()), e);
        assertTrue(e.contains("--init-from " + ck), e);
        // In a run's checkpoints folder, the run is named
        Path run = dir.resolve("run"), step = run.resolve("checkpoints").resolve("step-00000002");
        Files.createDirectories(step);
        Files.writeString(step.resolve("model.safetensors"), "");
        Files.writeString(step.resolve("trainer.json"), "{}");
        Files.writeString(run.resolve("checkpoints").resolve("latest"), "step-00000002\n");
        e = userError("train", "--backend", "cpu", "--resume", step.toString());
        assertTrue(e.contains("--resume takes the run folder, not one of its checkpoints: --resume " + run.toAbsolutePath()), e);
    }

    /** A trainer.json that names no dataset (damaged, or edited by hand) ended in a NullPointerException's stack trace. */
    @Test void aCheckpointThatNamesNoDatasetIsSaidToBeIncomplete(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--out", run.toString(), "--steps", "3", "--lambda", "0",
                "--eval-every", "0", "--stop-after", "1"), console.err.toString());
        Path trainer = dev.patchcore.train.Checkpoints.latest(run).resolve("trainer.json");
        String json = Files.readString(trainer);
        assertTrue(json.contains("\"dataset\": \"bundled\","), json);
        Files.writeString(trainer, json.replace("\"dataset\": \"bundled\",", ""));
        String e = userError("train", "--backend", "cpu", "--resume", run.toString());
        assertTrue(e.contains(trainer + " is not a complete trainer.json (no 'dataset')"), e);
    }
}
