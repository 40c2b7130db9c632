package dev.patchcore.cli;

import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** The command line as a user meets it: exit codes and one-line errors. */
class CliTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream err = console.err, out = console.out;

    private void assertUserError(String expectedFragment, String... args) {
        console.assertUserError(expectedFragment, args);
    }

    /**
     * Messages a user can act on: a wrapped file-system failure says what is wrong with the file (not its name twice), a
     * library's exception class and link are left out, an exclusive option group given twice names its options, and
     * numbers too large for the engine are refused before anything runs.
     */
    @Test void messagesSayWhatIsWrong(@TempDir Path dir) throws IOException {
        // Out of memory: the sizes named are the command's own (prepare has no --batch, --context, --preset)
        String prepare = Main.outOfMemory(new OutOfMemoryError("Java heap space"), 100L << 20, "prepare", "--out", "d", "big.txt");
        assertTrue(prepare.startsWith("error: out of memory (Java heap space); this JVM may use 100 MiB of heap") && !prepare.contains("--batch"), prepare);
        assertTrue(Main.outOfMemory(new OutOfMemoryError("Java heap space"), 100L << 20, "train").contains("a smaller --batch"));
        Path f = dir.resolve("c.txt");
        var denied = new java.nio.file.AccessDeniedException(f.toString());
        assertEquals("cannot read " + f + ": permission denied", Main.userMessage(new IllegalArgumentException("cannot read " + f + ": " + f, denied)));
        assertEquals("cannot open dataset D: " + f + ": permission denied",
                Main.userMessage(new IllegalArgumentException("cannot open dataset D: " + f, denied)));
        assertEquals("D/dataset.json is not a valid dataset summary: Expected ':' at line 1 column 9 path $.a",
                Main.userMessage(new IllegalArgumentException("D/dataset.json is not a valid dataset summary: "
                        + "com.google.gson.stream.MalformedJsonException: Expected ':' at line 1 column 9 path $.a\n"
                        + "See https://github.com/google/gson/blob/main/Troubleshooting.md#malformed-json")).strip());
        Files.writeString(f, "some text");
        assertUserError("give only one of --data, --text, --choices, once", "eval", dir.toString(), "--text", f.toString(), "--text", f.toString());
        assertUserError("--backend cpu does not use it", "train", "--backend", "cpu", "--cublaslt", f.toString(), "--out", dir.resolve("r").toString());
        assertFalse(Files.exists(dir.resolve("r")));
        out.reset();
        assertEquals(0, Main.run("generate", "--help", "--backend", "cpu", "--cublaslt", f.toString()), "help wins over the check");
        assertTrue(out.toString().contains("Usage:"), out.toString());
        out.reset();
        assertEquals(0, Main.run("prepare", "-V"));
        assertEquals("patchcore 0.1.0", out.toString().strip());
        assertUserError("a fine-tuning run cannot be resumed", "finetune", "--resume=" + dir);
        assertUserError("tokens per step, more than 2^31 − 1", "train", "--backend", "cpu", "--accum", "2147483647", "--out", dir.resolve("r").toString());
        assertUserError("is more than 2^24 tokens", "bench", "speed", "--backend", "cpu", "--vocab", "2147483647");
        assertUserError("cannot write files in", "bench", "speed", "--backend", "cpu", "--json", "/proc/x.json");
    }

    /** Every help screen renders cleanly (picocli warns on stderr about an unescaped '%' in a description). */
    @Test void everyHelpScreenRendersWithoutWarnings() {
        String[][] screens = {{"--help"}, {"train", "--help"}, {"prepare", "--help"}, {"eval", "--help"}, {"generate", "--help"},
                {"selftest", "--help"}, {"finetune", "--help"}, {"bench", "--help"}, {"bench", "kernels", "--help"}, {"bench", "speed", "--help"}};
        for (String[] args : screens) {
            err.reset();
            out.reset();
            assertEquals(0, Main.run(args), String.join(" ", args));
            assertTrue(out.toString().contains("Usage:"), String.join(" ", args) + " prints its usage");
            assertEquals("", err.toString().strip(), String.join(" ", args) + " writes nothing to stderr");
        }
        // bench without a benchmark prints its usage under its full name, as bench --help does
        out.reset();
        assertEquals(0, Main.run("bench"));
        assertTrue(out.toString().startsWith("Usage: patchcore bench "), out.toString());
    }

    /** Every option a --help screen lists says what it does, not only its default. */
    @Test void everyListedOptionIsDescribed() {
        java.util.Deque<picocli.CommandLine> todo = new java.util.ArrayDeque<>(java.util.List.of(new picocli.CommandLine(new Main())));
        int options = 0;
        while (!todo.isEmpty()) {
            picocli.CommandLine c = todo.pop();
            todo.addAll(c.getSubcommands().values());
            for (picocli.CommandLine.Model.OptionSpec o : c.getCommandSpec().options()) {
                if (o.hidden()) continue;
                String d = String.join(" ", o.description()).strip();
                assertFalse(d.isEmpty() || d.startsWith("(default"), c.getCommandName() + " " + o.longestName() + ": '" + d + "'");
                options++;
            }
        }
        assertTrue(options > 100, "all commands' options were looked at: " + options);
    }

    /** The launcher check: this process runs; one that has exited does not. */
    @Test void aProcessThatEndedIsNotRunning() throws Exception {
        assertTrue(VectorApiRelaunch.running(ProcessHandle.current().pid()));
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        assertFalse(VectorApiRelaunch.running(p.pid()));
    }

    /** generate's note for a checkpoint fine-tuned in a chat format and prompted otherwise. */
    @Test void generateNamesTheChatFormatACheckpointWasTunedIn() {
        String llama3 = "llama3";
        assertNull(GenerateCommand.chatNote(null, null, false), "nothing recorded");
        assertNull(GenerateCommand.chatNote("llama3", llama3, false), "the same format");
        assertEquals("note: this checkpoint was fine-tuned with --chat llama3; give --chat llama3 to pose the prompt as its user turn "
                + "(without it the prompt is plain text to continue)", GenerateCommand.chatNote("llama3", null, false));
        assertEquals("note: this checkpoint was fine-tuned with --chat chatml, not llama3; give --chat chatml to pose the prompt as its "
                + "user turn", GenerateCommand.chatNote("chatml", llama3, false));
        assertEquals("note: this checkpoint was fine-tuned with --chat chatml; give --chat chatml to pose the prompt as its user turn",
                GenerateCommand.chatNote("chatml", null, true));
    }

    /** The run's cost against token-level training: each stage's steps at its speed, against all at the token stage's. */
    @Test void theCostLineComparesTheRunWithTokenLevelTraining() {
        var patch = new dev.patchcore.train.Trainer.StageResult("patch", 667, 0, 5, 3, 3, 3, 4000);
        var token = new dev.patchcore.train.Trainer.StageResult("token", 333, 0, 3, 2, 2, Double.NaN, 1000);
        assertEquals("cost: 499.8 s of training steps, 0.50× the 1000.0 s of all 1000 steps at the token stage's speed "
                + "(token-level training; the paper: about 0.5× at K = 4, λ = 2/3)", TrainCommand.costLine(java.util.List.of(patch, token), 1000));
        assertNull(TrainCommand.costLine(java.util.List.of(token), 1000), "the token stage alone");
        var resumed = new dev.patchcore.train.Trainer.StageResult("token", 233, 100, 3, 2, 2, Double.NaN, 1000);
        assertNull(TrainCommand.costLine(java.util.List.of(patch, resumed), 1000), "a stage resumed inside");
        var shortStage = new dev.patchcore.train.Trainer.StageResult("token", 19, 0, 3, 2, 2, Double.NaN, 1000);
        assertNull(TrainCommand.costLine(java.util.List.of(patch, shortStage), 1000), "a stage of fewer than 20 steps");
        var unmeasured = new dev.patchcore.train.Trainer.StageResult("token", 1, 0, 3, 3, 3, Double.NaN, Double.NaN);
        assertNull(TrainCommand.costLine(java.util.List.of(patch, unmeasured), 1000), "a speed not measured (one step)");
    }

    /** The relaunched JVM may use three quarters of the memory, unless the user set a heap limit anywhere. */
    @Test void theChildGetsThreeQuartersOfTheMemoryUnlessAHeapLimitIsSet() {
        java.util.Map<String, String> none = java.util.Map.of();
        assertEquals(java.util.List.of("-XX:MaxRAMPercentage=75"), VectorApiRelaunch.heapOption(java.util.List.of("-Dx=1"), none));
        assertEquals(java.util.List.of(), VectorApiRelaunch.heapOption(java.util.List.of("-Xmx2g"), none));
        assertEquals(java.util.List.of(), VectorApiRelaunch.heapOption(java.util.List.of("-XX:MaxRAMPercentage=50"), none));
        assertEquals(java.util.List.of(), VectorApiRelaunch.heapOption(java.util.List.of(), java.util.Map.of("JAVA_TOOL_OPTIONS", "-Xmx8g")));
        assertEquals(java.util.List.of(), VectorApiRelaunch.heapOption(java.util.List.of(), java.util.Map.of("JDK_JAVA_OPTIONS", "-XX:MaxHeapSize=1g")));
    }

    /** The relaunched JVM's stderr passes through whole, less a first line that is the incubator-module warning. */
    @Test void childStderrLosesOnlyTheIncubatorWarning() {
        String w = VectorApiRelaunch.INCUBATOR_WARNING + "\n";
        assertEquals("error: x\n", filtered(w + "error: x\n", 1000));
        assertEquals("error: x\n", filtered(w + "error: x\n", 7));  // the warning arriving in pieces
        assertEquals("", filtered(w, 3));
        assertEquals("a\n" + w, filtered("a\n" + w, 1000));  // only as the first line
        assertEquals("WARNING: Using incubator modules: jdk.incubator.vector, jdk.x\n",
                filtered("WARNING: Using incubator modules: jdk.incubator.vector, jdk.x\n", 5));
        assertEquals("WARNING: Using", filtered("WARNING: Using", 4));  // a prefix, then the end: kept
        assertEquals("", filtered("", 4));
        // The notes of JVM options from the environment come first; this JVM has printed them already.
        for (int piece : new int[] {1, 3, 1000})
            assertEquals("error: x\nPicked up JAVA_TOOL_OPTIONS: -Xmx1g\n", filtered("Picked up JAVA_TOOL_OPTIONS: -Xmx1g\n"
                    + "NOTE: Picked up JDK_JAVA_OPTIONS: -Dy=2\n" + w + "error: x\nPicked up JAVA_TOOL_OPTIONS: -Xmx1g\n", piece));
        assertEquals("Picked", filtered("Picked", 2));  // incomplete at the end: kept
    }

    /** A relaunched JVM's output goes out a whole line per write, so a note copied by the launcher falls between lines. */
    @Test void outputGoesOutALineAtATime() throws IOException {
        java.util.List<String> writes = new java.util.ArrayList<>();
        java.io.OutputStream fd = new java.io.OutputStream() {
            @Override public void write(int b) { writes.add(String.valueOf((char) b)); }
            @Override public void write(byte[] b, int off, int len) { writes.add(new String(b, off, len, java.nio.charset.StandardCharsets.UTF_8)); }
        };
        java.io.PrintStream ps = new java.io.PrintStream(new VectorApiRelaunch.LineOutputStream(fd), false, java.nio.charset.StandardCharsets.UTF_8);
        ps.printf("loss %.4f nats/token, perplexity %.3f%n", 2.2142, 9.154);
        ps.print("\r  12 documents");
        ps.print("\r  13 documents");
        ps.flush();
        ps.println("done");
        assertEquals(java.util.List.of("loss 2.2142 nats/token, perplexity 9.154\n", "\r", "  12 documents\r", "  13 documents", "done\n"), writes);
    }

    /** {@code text} through {@link VectorApiRelaunch#copyWithoutIncubatorWarning}, read at most {@code piece} bytes at a time. */
    private static String filtered(String text, int piece) {
        byte[] bytes = text.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.io.InputStream in = new java.io.ByteArrayInputStream(bytes) {
            @Override public synchronized int read(byte[] b, int off, int len) { return super.read(b, off, Math.min(len, piece)); }
        };
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        VectorApiRelaunch.copyWithoutIncubatorWarning(in, sink);
        return sink.toString(java.nio.charset.StandardCharsets.UTF_8);
    }

    /** Without a GPU, selftest has nothing to check: one line and exit code 2, not a failed check's 1. */
    @Test void selftestWithoutAGpuIsOneLineAndExitCode2() {
        try (var cuda = dev.patchcore.backend.cuda.CudaBackend.open(null, true)) {
            org.junit.jupiter.api.Assumptions.abort("a GPU is present (" + cuda.describe() + "): selftest would run");
        } catch (dev.patchcore.backend.cuda.CudaUnavailableException e) {
            assertUserError("selftest checks the CUDA kernels and needs a GPU", "selftest", "--quick");
        }
    }

    @Test void badInputsEndInOneLineAndExitCode2(@TempDir Path dir) throws IOException {
        assertUserError("does not exist", "train", "--backend", "cpu", "--data", dir.resolve("nope").toString());
        assertUserError("lambda", "train", "--backend", "cpu", "--lambda", "-0.5");
        assertUserError("divisible by K=3", "train", "--backend", "cpu", "--patch-size", "3", "--batch", "4");
        assertUserError("unknown preset 'huge' (choose from tiny, small, 370m, 780m, 1.3b, 2.7b)", "train", "--backend", "cpu", "--preset", "huge");
        assertUserError("a budget of 1 step leaves one stage none at λ = 0.667 (patch stage 1, token stage 0)", "train", "--backend", "cpu", "--steps", "1");
        assertUserError("--context must be positive", "train", "--backend", "cpu", "--context", "0");
        Path file = dir.resolve("file.txt");
        Files.writeString(file, "x");
        assertUserError("--out " + file + " exists and is not a folder", "train", "--backend", "cpu", "--out", file.toString());
        out.reset();
        assertUserError("cannot create the --out folder " + file.resolve("run") + ": " + file + " is a file, not a folder", "train",
                "--backend", "cpu", "--out", file.resolve("run").toString());
        assertEquals("", out.toString(), "refused before the plan is printed");
        assertUserError(file + "/sub: ", "prepare", "--out", file.resolve("sub").toString(), file.toString());
        Path badJson = dir.resolve("bad.jsonl");
        Files.writeString(badJson, "not json\n");
        assertUserError("bad.jsonl:1: malformed JSON (at column 1", "prepare", "--out", dir.resolve("dsj").toString(), badJson.toString());
        assertFalse(err.toString().contains("setStrictness"), err.toString());
        assertUserError("Unknown option", "train", "--no-such-flag");
        // patchcore's cache, where the bundled corpus is prepared, is no place for a dataset (it would replace that corpus)
        Path cache = dev.patchcore.data.BundledCorpus.defaultDirectory(dev.patchcore.data.Tokenizers.byName("byte")).getParent();
        Path inCache = cache.resolve("clitest-" + ProcessHandle.current().pid());
        try {
            assertUserError("--out " + inCache + " is inside patchcore's cache", "prepare", "--out", inCache.toString(), file.toString());
            assertFalse(Files.exists(inCache));
        } finally {
            deleteTree(inCache);
        }
        assertUserError("unknown command 'trian': choose one of train, prepare", "trian");
        assertUserError("unexpected argument 'extra' for train", "train", "extra");
        assertUserError("unknown command 'sped' for bench: choose speed or kernels", "bench", "sped");
        assertUserError("divisible by K=4", "bench", "speed", "--backend", "cpu", "--accum", "6");
        assertUserError("--patch-size must be at least 2 (got 1): at K = 1 the patch-level rows are the baseline", "bench", "speed",
                "--backend", "cpu", "-K", "1");
        assertUserError("--json " + dir + " is a folder", "bench", "speed", "--backend", "cpu", "--json", dir.toString());
        assertUserError("--json " + dir + " is a folder", "bench", "kernels", "--backend", "cpu", "--json", dir.toString());
        assertUserError("does not exist", "bench", "kernels", "--backend", "cpu", "--json", dir.resolve("none/k.json").toString());
        assertUserError("no checkpoint", "eval", "--backend", "cpu", "--checkpoint", dir.toString(), "--text", "x.txt");
        assertUserError("--eval-batches", "train", "--backend", "cpu", "--eval-batches", "-1", "--out", dir.resolve("neg").toString());
        assertFalse(Files.exists(dir.resolve("neg")), "a rejected run leaves no run folder");
        assertUserError("'1.5k7' is not a whole number of tokens", "train", "--backend", "cpu", "--tokens", "1.5k7");
        assertUserError("'0.5' is not a whole number of tokens", "train", "--backend", "cpu", "--tokens", "0.5");
        TokenCount tc = new TokenCount();
        assertEquals(360_000_000_000L, tc.convert("360B"));
        assertEquals(360_000_000_000L, tc.convert("3.6e11"));
        assertEquals(2_500_000L, tc.convert("2.5M"));
        assertEquals(100_000L, tc.convert("100k"));
        assertEquals(1_000_000_000L, tc.convert("1_000_000_000"));
        assertUserError("--min-lr-ratio must lie in [0, 1]", "train", "--backend", "cpu", "--min-lr-ratio", "-1");
        assertUserError("--beta1 and --beta2 must lie in [0, 1)", "train", "--backend", "cpu", "--beta1", "1.5");
        assertUserError("--eps must be a positive number", "train", "--backend", "cpu", "--eps", "0");
        assertUserError("--lr must be a positive number", "train", "--backend", "cpu", "--lr", "Infinity");
        assertUserError("--log-every must be at least 1", "train", "--backend", "cpu", "--log-every", "0");
        assertUserError("--log-every must be at least 1", "finetune", "--backend", "cpu", dir.toString(), "--data", "x", "--out",
                dir.resolve("ft").toString(), "--log-every", "0");
        assertUserError("no checkpoint", "finetune", "--backend", "cpu", dir.toString(), "--data", "x", "--out", dir.resolve("ft").toString());
        assertFalse(Files.exists(dir.resolve("ft")), "a finetune that failed before its first record leaves no folder it made");
        // A new run needs a new or empty folder: a failed run's metrics (no checkpoint) or a dataset are not appended to.
        Path used = dir.resolve("used");
        Files.createDirectories(used);
        Files.writeString(used.resolve("metrics.jsonl"), "{}\n");
        assertUserError("--out " + used + " holds the metrics.jsonl of a run that stopped before its first checkpoint", "train",
                "--backend", "cpu", "--out", used.toString());
        assertUserError(used + " holds no checkpoint: its run stopped before saving one", "train", "--backend", "cpu", "--resume",
                used.toString());
        // A run still training there has no checkpoint yet either: it is said to be in use, not to have stopped.
        try (dev.patchcore.train.RunLock held = dev.patchcore.train.RunLock.acquire(used)) {
            assertUserError(used + " is in use by", "train", "--backend", "cpu", "--out", used.toString());
            assertUserError(used + " is in use by", "train", "--backend", "cpu", "--resume", used.toString());
        }
        Files.writeString(used.resolve("notes.txt"), "mine");
        assertUserError("--out " + used + " is not empty (it holds metrics.jsonl, notes.txt)", "train", "--backend", "cpu", "--out",
                used.toString());
        assertUserError("--warmup must not be negative (got -3)", "train", "--backend", "cpu", "--warmup", "-3");
        assertUserError("--warmup must not be negative (got -1)", "train", "--backend", "cpu", "--warmup", "-1");
        // picocli's own "Error: " prefix is not repeated after ours
        err.reset();
        assertEquals(2, Main.run("eval", "--checkpoint", dir.toString()));
        assertFalse(err.toString().contains("Error:"), err.toString());

        Path empty = dir.resolve("empty.txt");
        Files.writeString(empty, "");
        assertUserError("", "prepare", "--out", dir.resolve("ds").toString(), empty.toString());
        assertUserError("missing.txt", "prepare", "--out", dir.resolve("ds2").toString(), dir.resolve("missing.txt").toString());
        // A truncated .gz is bad input too: one line naming the file, not a stack trace.
        java.io.ByteArrayOutputStream gz = new java.io.ByteArrayOutputStream();
        try (var z = new java.util.zip.GZIPOutputStream(gz)) {
            for (int i = 0; i < 2000; i++) z.write(("{\"text\": \"line " + i + "\"}\n").getBytes());
        }
        Path cut = dir.resolve("cut.jsonl.gz");
        Files.write(cut, java.util.Arrays.copyOf(gz.toByteArray(), gz.size() / 2));
        assertUserError("cannot read " + cut, "prepare", "--out", dir.resolve("ds3").toString(), cut.toString());
    }

    /**
     * Data that holds a window, but not in the part a single pass gives the patch stage: the message says that part with
     * the whole it was cut from (351 tokens, as prepare printed), not a bare count that contradicts prepare's.
     */
    @Test void aStageWhoseShareOfTheDataIsTooShortSaysSo(@TempDir Path dir) throws IOException {
        Path part = dir.resolve("part.txt");
        Files.writeString(part, "word ".repeat(70) + "\n");
        Path partDs = dir.resolve("part-ds");
        assertEquals(0, Main.run("prepare", "--val-fraction", "0", "--out", partDs.toString(), part.toString()));
        assertUserError("the patch stage reads the first 67% of the training split in a single pass (234 of its 351 tokens, its "
                + "share of the steps), shorter than one window of K·(T+1) = 260 tokens (K=4, T=64); prepare more text, or train "
                + "with --epochs N", "train", "--backend", "cpu", "--data", partDs.toString(), "--out", dir.resolve("part-run").toString());
        assertUserError("the token stage reads the last 10% of the training split in a single pass (36 of its 351 tokens",
                "train", "--backend", "cpu", "--data", partDs.toString(), "--out", dir.resolve("part-run").toString(), "--lambda", "0.9",
                "-K", "2", "--context", "150", "--steps", "10");
        assertFalse(Files.exists(dir.resolve("part-run")), "refused at the start: no run folder");
    }

    /**
     * Two runs started in the same second choose the same default folder: the later passes over it to the next free
     * name, and a folder named by --out that another run holds is refused before the plan is printed. (This test writes
     * runs/ in the working folder, as the default --out does, and removes what it made there.)
     */
    @Test void aRunFolderTakenByAnotherRunIsNotShared(@TempDir Path dir) throws IOException {
        Path text = dir.resolve("t.txt");
        Files.writeString(text, "the quick brown fox jumps over the lazy dog\n\n".repeat(200));
        Path ds = dir.resolve("ds");
        assertEquals(0, Main.run("prepare", "--out", ds.toString(), text.toString()));
        String[] run = {"train", "--backend", "cpu", "--data", ds.toString(), "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"};
        boolean hadRuns = Files.exists(Path.of("runs"));
        java.util.List<Path> made = new java.util.ArrayList<>();
        try {
            // A run of this second (and of the next few, for a slow start) has taken the default folder and logged a step
            var now = java.time.LocalDateTime.now();
            for (int s = 0; s < 5; s++) {
                Path taken = Path.of("runs", "tiny-" + now.plusSeconds(s).format(java.time.format.DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
                if (Files.exists(taken)) continue;
                Files.createDirectories(taken);
                Files.writeString(taken.resolve("metrics.jsonl"), "{\"type\":\"train\"}\n");
                made.add(taken);
            }
            out.reset();
            assertEquals(0, Main.run(run), err.toString());
            var folder = java.util.regex.Pattern.compile("run folder (\\S+)").matcher(out.toString());
            assertTrue(folder.find(), out.toString());
            Path used = Path.of(folder.group(1));
            made.add(used);
            assertTrue(made.contains(Path.of(used.toString().replaceAll("-2$", ""))) && used.toString().endsWith("-2"), used.toString());
            assertTrue(dev.patchcore.train.Checkpoints.exists(used), "the run trained in the folder it named");
        } finally {
            for (Path p : made) deleteTree(p);
            if (!hadRuns) Files.deleteIfExists(Path.of("runs"));
        }
        // --out names a folder another run holds (its lock taken): refused before the plan names it
        Path held = Files.createDirectories(dir.resolve("held"));
        try (var lock = dev.patchcore.train.RunLock.acquire(held)) {
            out.reset();
            assertUserError(held + " is in use by", concat(run, "--out", held.toString()));
            assertEquals("", out.toString(), "refused before the plan is printed");
        }
    }

    private static String[] concat(String[] a, String... b) {
        String[] all = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var walk = Files.walk(p)) {
            for (Path f : walk.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(f);
        }
    }

    @Test void trainEvalAndVocabularyMismatch(@TempDir Path dir) throws IOException {
        Path text = dir.resolve("t.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 3000; i++) sb.append("the quick brown fox jumps over the lazy dog ").append(i % 7 == 0 ? "\n\n" : "");
        Files.writeString(text, sb.toString());
        Path ds = dir.resolve("ds");
        assertEquals(0, Main.run("prepare", "--out", ds.toString(), text.toString()));
        Path run = dir.resolve("run");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                "--steps", "4", "--context", "16", "--batch", "4", "--eval-every", "2"), err.toString());
        assertTrue(out.toString().contains("patch stage"), out.toString());
        assertTrue(out.toString().contains("token stage"), out.toString());
        // checkpoints/latest removed by hand: the complete checkpoints are named, with how to point at one (following
        // the advice for a run without checkpoints would delete them).
        Path latest = run.resolve("checkpoints/latest");
        String name = Files.readString(latest).strip();
        Files.delete(latest);
        for (String[] args : new String[][] {{"train", "--backend", "cpu", "--resume", run.toString()},
                {"train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString()}, {"eval", "--backend", "cpu", run.toString()}})
            assertUserError("has no " + latest + ", but holds step-00000003, " + name + " (write the name of one into " + latest, args);
        Files.writeString(latest, name + "\n");
        // A byte of the weights changed since the save: said (with the run's other checkpoint), not trained or scored on.
        Path weights = run.resolve("checkpoints").resolve(name).resolve("model.safetensors");
        byte[] saved = Files.readAllBytes(weights), damaged = saved.clone();
        damaged[damaged.length - 5] ^= 1;
        Files.write(weights, damaged);
        assertUserError(weights + " is damaged: its bytes have changed since it was saved", "eval", "--backend", "cpu", run.toString());
        assertTrue(err.toString().contains("; the run also holds step-00000003 (write the name of one into"), err.toString());
        Files.write(weights, saved);
        // A run stopped before its first step (an empty metrics.jsonl) can start again where it was
        Path early = Files.createDirectories(dir.resolve("early"));
        Files.writeString(early.resolve("metrics.jsonl"), "");
        assertUserError("its run stopped before its first step; start it again as a new run with --out " + early, "train", "--backend",
                "cpu", "--resume", early.toString());
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", early.toString(),
                "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        // --devices: data-parallel replicas (CPU backends here), each with a micro-batch of its own in every stage.
        assertUserError("--devices 0,1 needs at least 2 micro-batches per step in each stage; the patch stage has 1 (raise --accum to 5)",
                "train", "--backend", "cpu", "--data", ds.toString(), "--out", dir.resolve("dp0").toString(), "--devices", "0,1",
                "--steps", "4", "--context", "16", "--batch", "4");
        assertFalse(Files.exists(dir.resolve("dp0")), "a run refused at the start leaves no run folder");
        // A run that fails at its first step removes the folder it made; one that trained keeps it and its metrics.
        Path shortText = dir.resolve("short.txt");
        Files.writeString(shortText, "abc def");
        Path shortDs = dir.resolve("short-ds");
        assertEquals(0, Main.run("prepare", "--out", shortDs.toString(), shortText.toString()));
        out.reset();
        assertUserError("shorter than one window", "train", "--backend", "cpu", "--data", shortDs.toString(), "--out", dir.resolve("short-run").toString());
        assertEquals("", out.toString(), "refused before the plan is printed");
        assertFalse(Files.exists(dir.resolve("short-run")), "nothing trained: no run folder left");
        Path nan = dir.resolve("nan-run");
        assertUserError("the run stopped before that step changed the weights", "train", "--backend", "cpu", "--data", ds.toString(),
                "--out", nan.toString(), "--steps", "60", "--context", "16", "--batch", "4", "--lr", "1e6", "--save-every", "1", "--eval-every", "0");
        assertTrue(Files.size(nan.resolve("metrics.jsonl")) > 0, "the failed run's metrics are kept");
        // No checkpoint holds the diverged weights: the step whose gradient norm was not finite was not applied.
        try (var st = new dev.patchcore.checkpoint.SafeTensors.Reader(dev.patchcore.train.Checkpoints.latest(nan).resolve("model.safetensors"))) {
            for (float w : st.read("lm_head.weight")) assertTrue(Float.isFinite(w), "finite weights in the last checkpoint");
        }
        assertUserError("--devices takes GPU ordinals", "train", "--backend", "cpu", "--data", ds.toString(), "--devices", "-1");
        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", dir.resolve("dp").toString(),
                "--devices", "0,1", "--steps", "4", "--context", "16", "--batch", "1", "--accum", "8", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("data parallel: 2 replicas on CPU backends 0, 1"), out.toString());
        // Explicit --devices never falls back to the CPU quietly (no GPU here, or no GPU 99).
        assertUserError("cannot be used", "train", "--data", ds.toString(), "--out", dir.resolve("dpx").toString(), "--devices", "0,99",
                "--steps", "4", "--context", "16", "--batch", "1", "--accum", "8");
        // A run stopped in its token stage (2 micro-batches per step; the patch stage had 1) resumes on 2 replicas.
        Path dpr = dir.resolve("dpr");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", dpr.toString(), "--steps", "6",
                "--context", "16", "--batch", "2", "--accum", "2", "--eval-every", "0", "--stop-after", "5"), err.toString());
        assertEquals(0, Main.run("train", "--backend", "cpu", "--resume", dpr.toString(), "--devices", "0,1"), err.toString());
        assertEquals("step-00000006", dev.patchcore.train.Checkpoints.latest(dpr).getFileName().toString());
        // The dataset is recorded by its absolute path; one that moved is named again with --data on --resume.
        Path moved = dir.resolve("moved"), ds2 = dir.resolve("ds-moved");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", moved.toString(), "--steps", "6",
                "--context", "16", "--batch", "4", "--eval-every", "0", "--stop-after", "2"), err.toString());
        assertTrue(Files.readString(dev.patchcore.train.Checkpoints.latest(moved).resolve("trainer.json"))
                .contains("\"dataset\": \"" + ds.toAbsolutePath().normalize() + "\""), "absolute dataset path");
        Files.move(ds, ds2);
        try {
            assertUserError("the run's dataset " + ds.toAbsolutePath().normalize() + " is not there (moved? name where it is now with --data)", "train", "--backend", "cpu", "--resume", moved.toString());
            // The same text prepared again with another seed (another split) is other data: refused.
            Path other = dir.resolve("ds-seed7");
            assertEquals(0, Main.run("prepare", "--out", other.toString(), "--seed", "7", text.toString()));
            assertUserError("is not the data this run was trained on (it was train ", "train", "--backend", "cpu", "--resume",
                    moved.toString(), "--data", other.toString());
            out.reset();
            assertEquals(0, Main.run("train", "--backend", "cpu", "--resume", moved.toString(), "--data", ds2.toString(), "--log-every", "1",
                    "--eval-every", "1", "--save-every", "3"), err.toString());
            assertTrue(out.toString().contains("dataset: " + ds2.toAbsolutePath().normalize() + " (the run recorded "), out.toString());
            // --log-every may change on resume: every step logged from here on, and the checkpoint keeps the new value
            assertTrue(out.toString().contains("patch step      3/4 |"), out.toString());
            var resumedCfg = dev.patchcore.train.Checkpoints.readMeta(dev.patchcore.train.Checkpoints.latest(moved)).train();
            assertEquals(java.util.List.of(1, 1, 3), java.util.List.of(resumedCfg.logEvery(), resumedCfg.evalEvery(), resumedCfg.saveEvery()));
            assertTrue(out.toString().contains("patch val       3/4 |"), "validated at every step from here on: " + out);
            assertTrue(out.toString().contains("patch stage: steps 3–4 (resumed), loss ") && out.toString().contains("token stage: 2 steps, loss "),
                    out.toString());
        } finally {
            Files.move(ds2, ds);
        }
        // --resume: a finished run says so; settings other than memory and backend ones are refused, as is a checkpoint folder.
        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--resume", run.toString()));
        assertTrue(out.toString().contains("has finished: all 4 steps are done"), out.toString());
        assertUserError("--steps, --lr are not taken with --resume", "train", "--backend", "cpu", "--resume", run.toString(), "--steps", "8", "--lr", "1e-3");
        assertUserError("--log-every must be at least 1", "train", "--backend", "cpu", "--resume", run.toString(), "--log-every", "0");
        assertUserError("--resume takes the run folder, not one of its checkpoints",
                "train", "--backend", "cpu", "--resume", dev.patchcore.train.Checkpoints.latest(run).toString());
        assertFalse(Files.exists(dev.patchcore.train.Checkpoints.latest(run).resolve("metrics.jsonl")), "nothing written into the checkpoint");
        // A second run into the same folder must not touch the checkpoint.
        assertUserError("already holds a run", "train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(), "--steps", "4");
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.toString(), "--text", text.toString(), "--max-blocks", "8"));
        assertTrue(out.toString().contains("perplexity"));
        // The checkpoint as the positional argument, and no data named: the validation split of the run's own dataset.
        out.reset();
        assertEquals(0, Main.run("eval", run.toString(), "--backend", "cpu", "--max-blocks", "2"), err.toString());
        assertTrue(out.toString().contains("data: " + ds + " (the checkpoint's own dataset)"), out.toString());
        assertTrue(out.toString().contains("2 blocks of 16 tokens") && out.toString().contains("perplexity"), out.toString());
        assertUserError("--max-blocks and --max-questions must not be negative", "eval", run.toString(), "--backend", "cpu", "--max-blocks", "-3");
        // --bos: the end of text first (this run's documents start after one), so the split's first token is scored too.
        out.reset();
        assertEquals(0, Main.run("eval", run.toString(), "--backend", "cpu", "--max-blocks", "2", "--bos"), err.toString());
        assertTrue(out.toString().contains("scoring after token 256 (end of text) put first"), out.toString());
        assertTrue(out.toString().contains("2 blocks of 16 tokens (32 tokens scored)"), out.toString());
        assertUserError("--bos applies to token-level scoring: not with -K", "eval", run.toString(), "--backend", "cpu",
                "--bos", "-K", "2");
        assertUserError("two checkpoints given", "eval", run.toString(), "--checkpoint", dir.toString(), "--text", text.toString());
        assertUserError("no checkpoint given", "generate", "--backend", "cpu");
        out.reset();
        assertEquals(0, Main.run("generate", "--backend", "cpu", run.toString(), "--prompt", "the quick", "--tokens", "12"));
        assertTrue(out.toString().contains("the quick"), out.toString());
        assertFalse(out.toString().contains("backend:"), "generate's stdout is the text alone: " + out);
        // A prompt longer than the window: the note's advice is the model's longer context, or a longer --context where
        // --context set the window shorter than the model's (no retraining needed).
        err.reset();
        assertEquals(0, Main.run("generate", "--backend", "cpu", run.toString(), "--prompt", "x".repeat(20), "--tokens", "1"));
        assertTrue(err.toString().contains("note: the prompt is 20 tokens, longer than the model's context of 16: its first 4 tokens "
                + "are dropped; a model trained with a longer --context reads it all"), err.toString());
        err.reset();
        assertEquals(0, Main.run("generate", "--backend", "cpu", run.toString(), "--prompt", "x".repeat(10), "--tokens", "1", "--context", "8"));
        assertTrue(err.toString().contains("note: the prompt is 10 tokens, longer than the --context of 8: its first 2 tokens are "
                + "dropped; a longer --context reads more of it"), err.toString());
        assertUserError("--tokens must be at least 1", "generate", "--backend", "cpu", "--checkpoint", run.toString(), "--tokens", "0");
        // Checked before the backend opens: its line would be a second one on stderr.
        assertUserError("--temperature must be a finite number", "generate", "--backend", "cpu", run.toString(), "--temperature", "NaN");
        assertUserError("--temperature must be a finite number", "generate", "--backend", "cpu", run.toString(), "--temperature", "-1");
        assertUserError("--top-k must not be negative", "generate", "--backend", "cpu", run.toString(), "--top-k", "-2");
        assertUserError("--top-p must lie in (0, 1]", "generate", "--backend", "cpu", run.toString(), "--top-p", "0");
        assertUserError("--top-p must lie in (0, 1]", "generate", "--backend", "cpu", run.toString(), "--top-p", "1.5");
        assertUserError("--top-p must lie in (0, 1]", "generate", "--backend", "cpu", run.toString(), "--top-p", "NaN");
        assertUserError("the prompt is empty", "generate", "--backend", "cpu", run.toString(), "--prompt", "");
        assertUserError("--activation-threshold applies to --activations only", "eval", run.toString(), "--backend", "cpu",
                "--activation-threshold", "0.3");
        // eval -K 4 on the patch stage's last checkpoint (step 3 of 4) reproduces the patch loss its validation logged:
        // the same windows from the start of the split (8 validation batches of one sequence in the patch stage).
        String patchVal = Files.readAllLines(run.resolve("metrics.jsonl")).stream()
                .filter(l -> l.contains("\"type\":\"val\"") && l.contains("\"global_step\":3,")).findFirst().orElseThrow();
        double logged = com.google.gson.JsonParser.parseString(patchVal).getAsJsonObject().get("patch_loss").getAsDouble();
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.resolve("checkpoints/step-00000003").toString(),
                "--data", ds.toString(), "-K", "4", "--max-blocks", "8", "--activations"), err.toString());
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("patch loss ([0-9.]+) nats/token \\(K=4").matcher(out.toString());
        assertTrue(m.find(), out.toString());
        assertEquals(logged, Double.parseDouble(m.group(1)), 1e-4, out.toString());
        assertTrue(out.toString().contains("activated FFN outputs (|x| > 0.5), by layer:"), out.toString());
        // Its token loss is measured on the token stage's validation blocks: 8 batches of the token stage's micro-batch
        // of 4 (not the patch stage's 1), so it is one curve with the token stage's.
        double loggedToken = com.google.gson.JsonParser.parseString(patchVal).getAsJsonObject().get("token_loss").getAsDouble();
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.resolve("checkpoints/step-00000003").toString(),
                "--data", ds.toString(), "--max-blocks", "32"), err.toString());
        m = java.util.regex.Pattern.compile("(?m)^loss ([0-9.]+) ").matcher(out.toString());
        assertTrue(m.find(), out.toString());
        assertEquals(loggedToken, Double.parseDouble(m.group(1)), 1e-4, out.toString());
        assertUserError("no --patch-size or --activations", "eval", "--backend", "cpu", "--checkpoint", run.toString(),
                "--choices", text.toString(), "-K", "2");
        assertUserError("--split picks a dataset's split: not with --text or --choices", "eval", "--backend", "cpu", run.toString(),
                "--text", text.toString(), "--split", "train");
        assertUserError("--max-questions applies to --choices only", "eval", "--backend", "cpu", run.toString(), "--max-questions", "2");
        assertUserError("--max-blocks and --batch apply to blocks of text", "eval", "--backend", "cpu", run.toString(),
                "--choices", text.toString(), "--max-blocks", "3");
        Path questions = dir.resolve("q.jsonl");
        Files.writeString(questions, """
                {"context": "the quick brown", "choices": ["fox", "dog"], "label": 0}
                {"context": "over the lazy", "choices": ["dog", "fox jumps"], "label": 0}
                """);
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.toString(), "--choices", questions.toString()), err.toString());
        assertTrue(out.toString().contains("2 questions") && out.toString().contains("acc_norm"), out.toString());
        // --bos: every context after the end-of-text token this run's documents start after
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.toString(), "--choices", questions.toString(), "--bos"),
                err.toString());
        assertTrue(out.toString().contains("scoring after token 256 (end of text) put first") && out.toString().contains("2 questions"),
                out.toString());
        Path piqa = dir.resolve("piqa.jsonl");
        Files.writeString(piqa, "{\"goal\": \"the quick\", \"sol1\": \"brown fox\", \"sol2\": \"lazy cat\", \"label\": 0}\n");
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.toString(), "--choices", questions.toString(),
                piqa.toString()), err.toString());
        assertTrue(out.toString().contains("piqa.jsonl: 1 question in") && out.toString().contains("mean over 2 files: acc "), out.toString());
        Files.writeString(questions, "{\"context\": \"a\", \"choices\": [\"b\"], \"label\": 0}\n");
        assertUserError("line 1", "eval", "--backend", "cpu", "--checkpoint", run.toString(), "--choices", questions.toString());
        assertUserError("no such file", "eval", "--backend", "cpu", "--checkpoint", run.toString(), "--choices", dir.resolve("none.jsonl").toString());

        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", dir.resolve("epochs").toString(),
                "--epochs", "0.05", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("multi-epoch mode"), out.toString());
        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", dir.resolve("mixup").toString(),
                "--patch-mode", "mixup", "--steps", "3", "--context", "16", "--batch", "4", "--eval-every", "1"), err.toString());
        assertTrue(out.toString().contains("mixup patches (token t of 4 sequences each)"), out.toString());
        assertTrue(Files.readString(dev.patchcore.train.Checkpoints.latest(dir.resolve("mixup")).resolve("trainer.json")).contains("\"MIXUP\""));
        assertUserError("unknown --patch-mode 'random'", "train", "--backend", "cpu", "--data", ds.toString(), "--patch-mode", "random");
        assertUserError("this run has none", "train", "--backend", "cpu", "--data", ds.toString(), "--patch-mode", "mixup", "--lambda", "0");
        assertUserError("this run has none", "train", "--backend", "cpu", "--data", ds.toString(), "--input-proj", "-K", "1");
        assertUserError("divisible by K = 4", "train", "--backend", "cpu", "--data", ds.toString(), "--short-patch-context", "--context", "18");
        // --init-from: a new run from a checkpoint's weights (here the patch stage's), the context may differ.
        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", dir.resolve("branch").toString(),
                "--init-from", run.resolve("checkpoints/step-00000003").toString(), "--lambda", "0", "--steps", "2", "--context", "32",
                "--batch", "4", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("initialized from"), out.toString());
        assertUserError("holds another model than this run's (layers 4 vs 6, d 128 vs 256, ffn 352 vs 688, heads 4 vs 8): leave out "
                + "--preset to take the checkpoint's", "train", "--backend", "cpu", "--data", ds.toString(), "--init-from", run.toString(),
                "--preset", "small");
        assertUserError("--init-from starts a new run", "train", "--backend", "cpu", "--resume", run.toString(), "--init-from", run.toString());
        // Grouped-query attention from scratch: 4 query heads over 2 key/value heads, written as Hugging Face writes it.
        Path gqa = dir.resolve("gqa");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", gqa.toString(), "--kv-heads", "2",
                "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        assertEquals(2, dev.patchcore.train.Checkpoints.readModelConfig(dev.patchcore.train.Checkpoints.latest(gqa)).kvHeads());
        assertTrue(Files.readString(dev.patchcore.train.Checkpoints.latest(gqa).resolve("config.json")).contains("\"num_key_value_heads\": 2"));
        assertUserError("--kv-heads: 3 key/value heads do not divide 4 query heads into groups", "train",
                "--backend", "cpu", "--data", ds.toString(), "--kv-heads", "3");
        assertUserError("not taken with --resume", "train", "--backend", "cpu", "--resume", gqa.toString(), "--kv-heads", "1");
        // Tied embeddings: one matrix, written as Hugging Face writes it (no lm_head.weight); a tied checkpoint starts an
        // untied run (its LM head a copy of the embedding), not the other way round.
        Path tied = dir.resolve("tied");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", tied.toString(), "--tie-embeddings",
                "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path tiedCkpt = dev.patchcore.train.Checkpoints.latest(tied);
        assertTrue(dev.patchcore.train.Checkpoints.readModelConfig(tiedCkpt).tiedEmbeddings());
        assertTrue(Files.readString(tiedCkpt.resolve("config.json")).contains("\"tie_word_embeddings\": true"));
        try (var st = new dev.patchcore.checkpoint.SafeTensors.Reader(tiedCkpt.resolve("model.safetensors"))) {
            assertFalse(st.names().contains("lm_head.weight"), st.names().toString());
            assertTrue(st.names().contains("model.embed_tokens.weight"), st.names().toString());
        }
        try (var be = new dev.patchcore.backend.cpu.CpuBackend(1)) {
            var untiedModel = new dev.patchcore.model.LlamaModel(be,
                    dev.patchcore.train.Checkpoints.readModelConfig(tiedCkpt).withTiedEmbeddings(false));
            dev.patchcore.train.Checkpoints.loadWeights(tiedCkpt, untiedModel, be);
            assertEquals("lm_head.weight", untiedModel.parameters().getLast().name());
            assertArrayEquals(be.download(untiedModel.parameters().getFirst().master()),
                    be.download(untiedModel.parameters().getLast().master()), "the LM head loads as a copy of the embedding");
        }
        Path untied = dir.resolve("untied");
        out.reset();
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", untied.toString(), "--init-from",
                tied.toString(), "--no-tie-embeddings", "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("initialized from " + tiedCkpt), out.toString());
        Path untiedCkpt = dev.patchcore.train.Checkpoints.latest(untied);
        assertFalse(dev.patchcore.train.Checkpoints.readModelConfig(untiedCkpt).tiedEmbeddings());
        assertTrue(Files.readString(untiedCkpt.resolve("config.json")).contains("\"tie_word_embeddings\": false"));
        try (var st = new dev.patchcore.checkpoint.SafeTensors.Reader(untiedCkpt.resolve("model.safetensors"))) {
            assertTrue(st.names().contains("lm_head.weight"), st.names().toString());
        }
        assertUserError("--init-from " + dev.patchcore.train.Checkpoints.latest(run) + " holds another model than this run's (its own "
                + "LM head vs tied embeddings): leave out --tie-embeddings to take the checkpoint's", "train", "--backend", "cpu",
                "--data", ds.toString(), "--out", dir.resolve("retied").toString(), "--init-from", run.toString(), "--tie-embeddings");
        assertFalse(Files.exists(dir.resolve("retied")), "a refused run leaves no run folder");
        assertUserError("--no-tie-embeddings is not taken with --resume", "train", "--backend", "cpu", "--resume", tied.toString(),
                "--no-tie-embeddings");
        // Another RoPE: the run's checkpoint as a Hugging Face folder whose config.json scales it as LLaMA-3 does, given
        // with the --preset of the same shape (whose RoPE is the plain one).
        Path scaled = Files.createDirectories(dir.resolve("scaled"));
        for (String f : java.util.List.of("config.json", "model.safetensors"))
            Files.copy(dev.patchcore.train.Checkpoints.latest(run).resolve(f), scaled.resolve(f));
        var scaledConfig = com.google.gson.JsonParser.parseString(Files.readString(scaled.resolve("config.json"))).getAsJsonObject();
        scaledConfig.add("rope_scaling", com.google.gson.JsonParser.parseString("{\"rope_type\": \"llama3\", \"factor\": 8.0, "
                + "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}"));
        Files.writeString(scaled.resolve("config.json"), scaledConfig.toString());
        assertUserError("--init-from " + scaled + " holds another model than this run's (RoPE theta 10000.0, llama3 factor 8.0 low 1.0 "
                + "high 4.0 original 16 vs theta 10000.0, no scaling): leave out --preset to take the checkpoint's", "train", "--backend",
                "cpu", "--data", ds.toString(), "--init-from", scaled.toString(), "--preset", "tiny", "--context", "16");
        // Paper §3.7's projections: the patch stage says so, its last checkpoint keeps them, eval -K reads them at their K.
        out.reset();
        Path proj = dir.resolve("proj");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", proj.toString(), "--input-proj",
                "--output-proj", "--steps", "4", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("patches with input and output projections"), out.toString());
        out.reset();
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", proj.resolve("checkpoints/step-00000003").toString(),
                "--data", ds.toString(), "-K", "4", "--max-blocks", "4"), err.toString());
        assertTrue(out.toString().contains("with the checkpoint's patch projections (input and output)"), out.toString());
        assertUserError("projections for K=4", "eval", "--backend", "cpu", "--checkpoint", proj.resolve("checkpoints/step-00000003").toString(),
                "--data", ds.toString(), "-K", "2");
        assertUserError("--epochs must be a positive number (got -1.0)", "train", "--backend", "cpu", "--data", ds.toString(), "--epochs", "-1");
        assertUserError("does not match the dataset's vocabulary", "train", "--backend", "cpu", "--data", ds.toString(), "--vocab", "50257");
        Path gpt2 = dir.resolve("gpt2");
        assertEquals(0, Main.run("prepare", "--tokenizer", "r50k_base", "--out", gpt2.toString(), text.toString()));
        assertUserError("trained with byte", "eval", "--backend", "cpu", "--checkpoint", run.toString(), "--data", gpt2.toString());
    }

    /** finetune: a pretrained checkpoint instruction-tuned on Alpaca records; generate --alpaca; not resumable. */
    @Test void finetuneTrainsOnResponsesAndWritesACheckpoint(@TempDir Path dir) throws IOException {
        Path text = dir.resolve("t.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 2000; i++) sb.append("the quick brown fox jumps over the lazy dog ").append(i % 7 == 0 ? "\n\n" : "");
        Files.writeString(text, sb.toString());
        Path ds = dir.resolve("ds"), run = dir.resolve("run");
        assertEquals(0, Main.run("prepare", "--out", ds.toString(), text.toString()));
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                "--steps", "4", "--context", "192", "--batch", "4", "--eval-every", "0"), err.toString());  // Alpaca's prompt is ~150 bytes
        StringBuilder json = new StringBuilder("[");
        for (int i = 0; i < 40; i++) json.append(i == 0 ? "" : ",").append("{\"instruction\": \"Say ").append(i % 4)
                .append("\", \"input\": \"\", \"output\": \"").append(i % 4).append("\"}");
        // Record 41's prompt fills the context, so it is skipped; the seed shuffles it among the first four, where the
        // held-out split once counted it (leaving 3 held out).
        json.append(",{\"instruction\": \"").append("x".repeat(300)).append("\", \"output\": \"y\"}");
        long seed = 1;
        while (indexOf(dev.patchcore.train.FineTuner.shuffled(41, seed, -1), 40) >= 4) seed++;
        Path alpaca = dir.resolve("alpaca.json");
        Files.writeString(alpaca, json.append("]").toString());
        out.reset();
        Path tuned = dir.resolve("tuned");
        assertEquals(0, Main.run("finetune", "--backend", "cpu", "--checkpoint", run.toString(), "--data", alpaca.toString(),
                "--out", tuned.toString(), "--epochs", "2", "--batch", "4", "--accum", "2", "--lr", "1e-3", "--val-fraction", "0.1",
                "--seed", Long.toString(seed)), err.toString());
        assertTrue(out.toString().contains("== fine-tuning: 36 examples (4 held out), 2 epochs × 5 steps"), out.toString());
        assertTrue(err.toString().contains("note: 1 of 41 examples skipped"), err.toString());
        assertTrue(out.toString().contains("fine-tuned: 10 steps") && out.toString().contains("val "), out.toString());
        out.reset();
        assertEquals(0, Main.run("generate", "--backend", "cpu", "--checkpoint", tuned.toString(), "--alpaca", "--prompt", "Say 2",
                "--tokens", "4", "--temperature", "0"), err.toString());
        assertFalse(out.toString().contains("### Response"), "only the response is printed: " + out);
        out.reset();
        assertEquals(0, Main.run("finetune", "--backend", "cpu", "--devices", "0,1", run.toString(), "--data", alpaca.toString(),
                "--out", dir.resolve("tuned2").toString(), "--epochs", "1", "--batch", "4", "--accum", "2"), err.toString());
        assertTrue(out.toString().contains("data parallel: 2 replicas on CPU backends 0, 1"), out.toString());
        assertUserError("--devices 0,1,2 needs --accum of at least 3", "finetune", "--backend", "cpu", "--devices", "0,1,2",
                run.toString(), "--data", alpaca.toString(), "--out", dir.resolve("tuned3").toString(), "--accum", "2");
        assertUserError("was fine-tuned on instruction records (" + alpaca + "), not on a dataset folder; give --data, --text or --choices", "eval", tuned.toString(), "--backend", "cpu");
        assertUserError("cannot be resumed", "train", "--backend", "cpu", "--resume", tuned.toString());
        assertUserError("a fine-tuning run cannot be resumed (finetune has no --resume)", "finetune", "--resume", tuned.toString());
        assertUserError("--choices takes every argument after it as a file", "eval", "--backend", "cpu", "--choices",
                alpaca.toString(), tuned.toString());
        assertUserError("is not an empty folder", "finetune", "--backend", "cpu", "--checkpoint", run.toString(), "--data",
                alpaca.toString(), "--out", tuned.toString());
        // A failure after the metrics file was opened (a loss that diverges before the first checkpoint) leaves no folder.
        Path few = dir.resolve("few.json"), diverged = dir.resolve("diverged");
        Files.writeString(few, "[{\"instruction\": \"Say 1\", \"output\": \"1\"}, {\"instruction\": \"Say 2\", \"output\": \"2\"}]");
        assertUserError("lower --lr", "finetune", "--backend", "cpu", "--checkpoint", run.toString(), "--data", few.toString(),
                "--out", diverged.toString(), "--batch", "1", "--accum", "1", "--lr", "1e30", "--warmup-ratio", "0", "--epochs", "3");
        assertFalse(Files.exists(diverged), "the failed run's folder is gone");
        assertUserError("tokens per step, more than 2^31 − 1", "finetune", "--backend", "cpu", "--checkpoint", run.toString(),
                "--data", few.toString(), "--out", diverged.toString(), "--batch", "100000000", "--accum", "1000");
        // No example fits: a model trained with a longer context is the advice, or a longer --context where --context was given
        Path longPrompt = dir.resolve("long.json");
        Files.writeString(longPrompt, "[{\"instruction\": \"" + "x".repeat(300) + "\", \"output\": \"y\"}]");
        assertUserError("no example of " + longPrompt + " has a response inside the model's context of 192 tokens (Alpaca's prompt "
                + "template alone is 139 tokens here): fine-tune a model trained with a longer --context", "finetune", "--backend", "cpu",
                "--checkpoint", run.toString(), "--data", longPrompt.toString(), "--out", dir.resolve("x").toString());
        assertUserError("no example of " + few + " has a response inside the --context of 64 tokens (Alpaca's prompt template alone is "
                + "139 tokens here): give a longer --context, or give", "finetune", "--backend", "cpu", "--checkpoint", run.toString(),
                "--data", few.toString(), "--out", dir.resolve("x").toString(), "--context", "64");
        Files.writeString(alpaca, "[{\"question\": 1}]");
        assertUserError("record 1", "finetune", "--backend", "cpu", "--checkpoint", run.toString(), "--data", alpaca.toString(),
                "--out", dir.resolve("x").toString());
    }

    private static int indexOf(int[] a, int value) {
        for (int i = 0; i < a.length; i++) if (a[i] == value) return i;
        return -1;
    }

    /** A SentencePiece model given to prepare is kept with the dataset and with every checkpoint trained on it. */
    @Test void sentencePieceTokenizerTravelsWithDataAndCheckpoints(@TempDir Path dir) throws IOException {
        Path model = dev.patchcore.data.SentencePieceFixture.model(dir), text = dev.patchcore.data.SentencePieceFixture.text(dir);
        Path ds = dir.resolve("ds");
        assertEquals(0, Main.run("prepare", "--tokenizer", model.toString(), "--out", ds.toString(), text.toString()), err.toString());
        assertTrue(out.toString().contains("sentencepiece-") && out.toString().contains("vocab 1000"), out.toString());
        assertArrayEquals(Files.readAllBytes(model), Files.readAllBytes(ds.resolve("tokenizer.model")));
        Path run = dir.resolve("run");
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                "--steps", "4", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path ckpt = dev.patchcore.train.Checkpoints.latest(run);
        assertArrayEquals(Files.readAllBytes(model), Files.readAllBytes(ckpt.resolve("tokenizer.model")));
        assertTrue(Files.readString(ckpt.resolve("tokenizer_config.json")).contains("LlamaTokenizer"), "Hugging Face's tokenizer config");
        assertTrue(Files.readString(ckpt.resolve("config.json")).contains("\"eos_token_id\": 2"), "config.json's EOS is </s>");
        out.reset();
        assertEquals(0, Main.run("generate", "--backend", "cpu", "--checkpoint", run.toString(), "--prompt", "The jury", "--tokens", "5"), err.toString());
        assertTrue(out.toString().startsWith("The jury"), out.toString());
        assertEquals(0, Main.run("eval", "--backend", "cpu", "--checkpoint", run.toString(), "--data", ds.toString()), err.toString());
        assertUserError("does not exist", "prepare", "--tokenizer", dir.resolve("none.model").toString(), "--out", dir.resolve("x").toString(), text.toString());
        // A byte-level run's model file replaced by this run's (vocabulary 1000): said to be damaged, before any check
        // of the swapped-in config against the data mixes the two files ("trained with byte (vocabulary 1000)").
        Path byteDs = dir.resolve("byte-ds"), byteRun = dir.resolve("byte-run");
        assertEquals(0, Main.run("prepare", "--out", byteDs.toString(), text.toString()), err.toString());
        assertEquals(0, Main.run("train", "--backend", "cpu", "--data", byteDs.toString(), "--out", byteRun.toString(),
                "--steps", "4", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path swapped = dev.patchcore.train.Checkpoints.latest(byteRun).resolve("model.safetensors");
        Files.copy(ckpt.resolve("model.safetensors"), swapped, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        for (String[] args : new String[][] {{"eval", "--backend", "cpu", byteRun.toString()},
                {"eval", "--backend", "cpu", byteRun.toString(), "--data", ds.toString()},
                {"train", "--backend", "cpu", "--init-from", byteRun.toString(), "--data", byteDs.toString(), "--out", dir.resolve("r2").toString()}})
            assertUserError(swapped + " is damaged: its bytes have changed since it was saved", args);
    }
}
