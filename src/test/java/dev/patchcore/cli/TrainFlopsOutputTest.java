package dev.patchcore.cli;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** train's model FLOP/s and MFU: the log lines, metrics.jsonl's fields, and --peak-tflops (finetune's too). */
class TrainFlopsOutputTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream err = console.err, out = console.out;

    /**
     * The tiny model (N = 835 712, 4 layers, d = 128) at T = 16: 6N + 12·4·128·16 = 5 112 576 FLOPs per position. A token
     * is a position in the token stage, a quarter of one (K = 4) in the patch stage.
     */
    private static final double TOKEN_FLOPS = 5_112_576, PATCH_FLOPS = TOKEN_FLOPS / 4;

    private int train(Path run, String... more) {
        out.reset();
        err.reset();
        List<String> args = new java.util.ArrayList<>(List.of("train", "--backend", "cpu", "--out", run.toString(), "--steps", "6",
                "--context", "16", "--batch", "2", "--accum", "8", "--eval-every", "0", "--log-every", "1"));
        args.addAll(List.of(more));
        return Main.run(args.toArray(String[]::new));
    }

    private static List<JsonObject> steps(Path run) throws IOException {
        return Files.readAllLines(run.resolve("metrics.jsonl")).stream().map(l -> JsonParser.parseString(l).getAsJsonObject())
                .filter(o -> o.get("type").getAsString().equals("train")).toList();
    }

    /**
     * Every step line and stage summary ends with the model FLOP/s (GFLOP/s on a CPU), and each step record's
     * model_flops_per_s is its tokens_per_s times the stage's FLOPs per token; on the CPU there is no peak, so no MFU.
     */
    @Test void modelFlopsPerStepOnTheCpu(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, train(run), err.toString());
        String log = out.toString();
        List<String> stepLines = log.lines().filter(l -> l.matches("(patch|token) step .*")).toList();
        assertEquals(6, stepLines.size(), log);
        for (String l : stepLines) assertTrue(l.matches(".* tok/s \\| eta \\S+ \\| [0-9.]+ GFLOP/s"), l);
        assertEquals(2, log.lines().filter(l -> l.matches("== (patch|token) stage done: .*, [0-9.]+k? tok/s, [0-9.]+ GFLOP/s")).count(), log);
        assertFalse(log.contains("MFU"), log);
        List<JsonObject> steps = steps(run);
        assertEquals(6, steps.size());
        for (JsonObject s : steps) {
            double perToken = s.get("patch_size").getAsInt() == 4 ? PATCH_FLOPS : TOKEN_FLOPS;
            assertEquals(perToken, s.get("model_flops_per_s").getAsDouble() / s.get("tokens_per_s").getAsDouble(), perToken * 1e-12, s.toString());
            assertFalse(s.has("mfu"), s.toString());
        }
    }

    /**
     * With paper §3.7's output projection the patch stage also runs its K·d × d matrix (65 536) and the LM head on 3 more
     * rows per patch (3 · 257 · 128 = 98 688): N = 999 936, 6N + 98 304 = 6 097 920 FLOPs per patch, a quarter per token.
     */
    @Test void outputProjectionCounts(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, train(run, "--output-proj"), err.toString());
        for (JsonObject s : steps(run)) {
            double perToken = s.get("patch_size").getAsInt() == 4 ? 6_097_920 / 4.0 : TOKEN_FLOPS;
            assertEquals(perToken, s.get("model_flops_per_s").getAsDouble() / s.get("tokens_per_s").getAsDouble(), perToken * 1e-12, s.toString());
        }
    }

    /**
     * --peak-tflops gives the MFU, against the peak times the devices of --devices; a resumed run may change it. The
     * records' mfu is their model FLOP/s over that peak.
     */
    @Test void peakTflopsGivesMfu(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, train(run, "--peak-tflops", "0.25", "--devices", "0,1", "--stop-after", "3"), err.toString());
        String log = out.toString();
        assertTrue(log.contains("against a peak of 0.5 TFLOP/s (--peak-tflops × 2 devices)"), log);
        assertTrue(log.lines().filter(l -> l.startsWith("patch step")).allMatch(l -> l.matches(".* \\| [0-9.]+ GFLOP/s \\([0-9.]+% MFU\\)")), log);
        for (JsonObject s : steps(run))
            assertEquals(s.get("model_flops_per_s").getAsDouble() / 0.5e12, s.get("mfu").getAsDouble(), 1e-15, s.toString());
        assertEquals(0, Main.run("train", "--resume", run.toString(), "--backend", "cpu", "--peak-tflops", "2"), err.toString());
        List<JsonObject> steps = steps(run);
        assertEquals(6, steps.size());
        for (JsonObject s : steps.subList(3, 6))
            assertEquals(s.get("model_flops_per_s").getAsDouble() / 2e12, s.get("mfu").getAsDouble(), 1e-15, s.toString());
    }

    /** A peak that is not a positive number is refused with one line, exit code 2, before anything runs. */
    @Test void badPeaksAreRefused(@TempDir Path dir) {
        for (String bad : new String[] {"0", "-1", "NaN", "Infinity"}) {
            assertEquals(2, train(dir.resolve("r"), "--peak-tflops", bad), bad);
            String e = err.toString().strip();
            assertEquals(1, e.lines().count(), e);
            assertTrue(e.startsWith("error: --peak-tflops must be a positive number of TFLOP/s"), e);
            assertFalse(Files.exists(dir.resolve("r")), "refused before a run folder is made");
            // finetune's, before its checkpoint or data is read
            err.reset();
            assertEquals(2, Main.run("finetune", "--backend", "cpu", "--checkpoint", dir.resolve("none").toString(), "--data",
                    dir.resolve("none.json").toString(), "--out", dir.resolve("f").toString(), "--peak-tflops", bad), bad);
            String fe = err.toString().strip();
            assertTrue(fe.startsWith("error: --peak-tflops must be a positive number of TFLOP/s") && fe.lines().count() == 1, fe);
            assertFalse(Files.exists(dir.resolve("f")), "refused before the --out folder is made");
        }
    }
}
