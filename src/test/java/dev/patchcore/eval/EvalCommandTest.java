package dev.patchcore.eval;

import dev.patchcore.cli.Main;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** `eval` and `generate` as a user meets them: what they say about the files, datasets and prompts they are given. */
class EvalCommandTest {
    @TempDir static Path dir;
    static Path run, text;

    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream out = console.out, err = console.err;

    /** One tiny run to evaluate (a few seconds on the CPU). */
    @BeforeAll static void train() throws IOException {
        text = dir.resolve("t.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 400; i++) sb.append("the quick brown fox jumps over the lazy dog ").append(i % 7 == 0 ? "\n\n" : "");
        Files.writeString(text, sb.toString());
        Path ds = dir.resolve("ds");
        PrintStream o = System.out;
        try {
            System.setOut(new PrintStream(java.io.OutputStream.nullOutputStream()));
            assertEquals(0, Main.run("prepare", "--out", ds.toString(), text.toString()));
            run = dir.resolve("run");
            assertEquals(0, Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                    "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"));
        } finally {
            System.setOut(o);
        }
    }

    private String eval(int expectedCode, String... args) {
        return command("eval", run, expectedCode, args);
    }

    /** Runs {@code name CHECKPOINT --backend cpu args...}; returns what it wrote to stderr. */
    private String command(String name, Path checkpoint, int expectedCode, String... args) {
        out.reset();
        err.reset();
        String[] all = new String[args.length + 4];
        all[0] = name;
        all[1] = checkpoint.toString();
        all[2] = "--backend";
        all[3] = "cpu";
        System.arraycopy(args, 0, all, 4, args.length);
        int code = Main.run(all);
        String e = err.toString(StandardCharsets.UTF_8);
        assertEquals(expectedCode, code, e);
        return e;
    }

    @Test void aFolderOrAMissingFileIsNamedForWhatItIs() {
        assertEquals("error: --text " + dir + " is a folder, not a text file\n", eval(2, "--text", dir.toString()));
        assertEquals("error: --text " + dir.resolve("none.txt") + ": no such file\n", eval(2, "--text", dir.resolve("none.txt").toString()));
        assertEquals("error: --choices " + dir + " is a folder, not a JSONL file\n", eval(2, "--choices", dir.toString()));
        assertEquals("error: " + text + " is a file, not a dataset folder; "
                + "make one from it with `prepare --out DIR " + text + "`\n", eval(2, "--data", text.toString()));
    }

    @Test void invalidUtf8IsReplacedWithOneNote() throws IOException {
        Path bad = dir.resolve("bad.txt");
        byte[] clean = Files.readAllBytes(text);
        clean[10] = (byte) 0xFF;
        clean[20] = (byte) 0xFE;
        Files.write(bad, clean);
        assertEquals("note: " + bad + ": 2 invalid UTF-8 sequences replaced by U+FFFD\n", eval(0, "--text", bad.toString(), "--max-blocks", "1"));
        assertTrue(out.toString().contains("1 block of 16 tokens (16 tokens scored)"), out.toString());
        Path tiny = dir.resolve("tiny.txt");
        Files.writeString(tiny, "a");
        assertEquals("error: --text " + tiny + " has 1 token: nothing to score (a token is scored by the tokens before it)\n",
                eval(2, "--text", tiny.toString()));
        assertEquals("error: --text " + tiny + " has 1 token, fewer than the 68 one block needs (its 64 tokens and the 4 after them"
                + " that it predicts)\n", eval(2, "--text", tiny.toString(), "-K", "4"));
        // A text shorter than the context is one shorter block: all 9 of its tokens after the first are scored.
        Files.writeString(tiny, "a sentence");
        assertEquals("", eval(0, "--text", tiny.toString()));
        assertTrue(out.toString().contains("one block of 9 tokens (the text is shorter than the context of 16) (9 tokens scored)"),
                out.toString());
    }

    @Test void aDatasetWithoutValidationSplitSaysToUseTheTrainingSplit() {
        Path noVal = dir.resolve("noval");
        assertEquals(0, Main.run("prepare", "--out", noVal.toString(), "--val-fraction", "0", text.toString()));
        assertEquals("error: dataset " + noVal + " has no validation split (prepared with --val-fraction 0); use --split train\n",
                eval(2, "--data", noVal.toString()));
        eval(0, "--data", noVal.toString(), "--split", "train", "--max-blocks", "2");
        assertTrue(out.toString().contains("2 blocks of 16 tokens (32 tokens scored)"), out.toString());
    }

    @Test void choicesNameTheFileAndCountQuestionsInGoodEnglish() throws IOException {
        Path q = dir.resolve("q.jsonl");
        Files.writeString(q, "{\"context\": \"the quick\", \"choices\": [\"brown\", \"lazy\"], \"label\": 0}\n");
        assertEquals("", eval(0, "--choices", q.toString()), "a question that fits the context: no note");
        assertTrue(out.toString().contains("q.jsonl: 1 question in"), out.toString());
        Files.writeString(q, "{\"context\": \"the quick\", \"choices\": [\"brown\", \"lazy\"], \"label\": 0}\n"
                + "{\"context\": \"the quick\", \"choices\": [\"\", \"lazy\"], \"label\": 0}\n");
        assertEquals("error: " + q + " line 2: choice 0 is empty\n", eval(2, "--choices", q.toString()));
    }

    /** Contexts longer than the model's (16 tokens here) are cut as the harness cuts them, and said once per file. */
    @Test void choicesSayHowManyContextsWereCut() throws IOException {
        Path q = dir.resolve("long.jsonl");
        Files.writeString(q, "{\"context\": \"the quick brown fox jumps over the lazy\", \"choices\": [\"dog\", \"cat\"], \"label\": 0}\n"
                + "{\"context\": \"the quick\", \"choices\": [\"brown\", \"lazy\"], \"label\": 0}\n"
                + "{\"context\": \"over the lazy dog the quick brown fox\", \"choices\": [\"jumps\", \"runs\"], \"label\": 0}\n");
        assertEquals("note: long.jsonl: contexts cut to fit the model's context of 16 tokens in 2 of 3 questions "
                + "(left-truncated, as lm-evaluation-harness does: the start is dropped)\n", eval(0, "--choices", q.toString()));
        assertTrue(out.toString().contains("long.jsonl: 3 questions in"), out.toString());
        // A choice longer than the context itself: its first tokens go unscored, and that is said too.
        Files.writeString(q, "{\"context\": \"a\", \"choices\": [\"the quick brown fox jumps\", \"b\"], \"label\": 0}\n");
        String notes = eval(0, "--choices", q.toString());
        assertTrue(notes.contains("note: long.jsonl: a choice longer than the model's context of 16 tokens in 1 of 1 question: "
                + "its first tokens went unscored\n"), notes);
    }

    /** A prompt longer than the model's context (16 byte tokens) is read from its end, with a note saying how much is lost. */
    @Test void generateSaysWhenThePromptIsCut() {
        assertEquals("", notes(command("generate", run, 0, "--prompt", "the quick", "--tokens", "2")));
        assertEquals("note: the prompt is 20 tokens, longer than the model's context of 16: its first 4 tokens are dropped; "
                + "a model trained with a longer --context reads it all\n",
                notes(command("generate", run, 0, "--prompt", "the quick brown fox ", "--tokens", "2")));
        assertTrue(out.toString().startsWith("the quick brown fox "), "the prompt is printed whole: " + out);
        assertEquals("note: the prompt is 17 tokens, longer than the model's context of 16: its first 1 token is dropped; "
                + "a model trained with a longer --context reads it all\n",
                notes(command("generate", run, 0, "--prompt", "the quick brown f", "--tokens", "1")));
        int alpaca = dev.patchcore.train.Instructions.alpacaPrompt("Say 2", "").length();  // byte tokens: one per ASCII character
        assertEquals("note: the Alpaca prompt is " + alpaca + " tokens, longer than the model's context of 16: its first " + (alpaca - 16)
                + " tokens are dropped, and with them perhaps the instruction; a model trained with a longer --context reads it all\n",
                notes(command("generate", run, 0, "--alpaca", "--prompt", "Say 2", "--tokens", "2")));
    }

    /** Generation's stderr is its notes and, last, one speed line. */
    private static String notes(String stderr) {
        String[] lines = stderr.split("\n", -1);
        assertTrue(lines.length >= 2 && lines[lines.length - 2].startsWith("generate: ") && lines[lines.length - 1].isEmpty(),
                "ends with the speed line: " + stderr);
        return String.join("\n", java.util.Arrays.copyOf(lines, lines.length - 2)) + (lines.length > 2 ? "\n" : "");
    }

    @Test void theSpeedLineCountsTheTokensAndTheRateAfterTheFirst() {
        assertEquals("generate: 11 tokens in 1.50 s; the first after 0.50 s (reading 9 prompt tokens), then 10.0 tokens/s",
                dev.patchcore.cli.GenerateCommand.speed(11, null, 9, 500_000_000L, 1_000_000_000L));
        assertEquals("generate: 1 token in 0.25 s; the first after 0.25 s (reading 1 prompt token)",
                dev.patchcore.cli.GenerateCommand.speed(1, null, 1, 250_000_000L, 0L));
        assertEquals("generate: 10 tokens and the end of text in 1.50 s; the first after 0.50 s (reading 9 prompt tokens), "
                + "then 10.0 tokens/s", dev.patchcore.cli.GenerateCommand.speed(11, "the end of text", 9, 500_000_000L, 1_000_000_000L));
    }

    /**
     * Without --data or --text, eval scores the run's own dataset only while it holds what the run trained on: prepared
     * again from other files, it is refused (its recorded fingerprint differs); moved away, it is said to be gone.
     */
    @Test void theRunsOwnDatasetIsScoredOnlyWhileItIsUnchanged() throws IOException {
        Path own = dir.resolve("own").toAbsolutePath().normalize(), ownRun = dir.resolve("own-run");
        PrintStream o = System.out;
        try {
            System.setOut(new PrintStream(java.io.OutputStream.nullOutputStream()));
            assertEquals(0, Main.run("prepare", "--out", own.toString(), text.toString()), err.toString());
            assertEquals(0, Main.run("train", "--backend", "cpu", "--data", own.toString(), "--out", ownRun.toString(),
                    "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        } finally {
            System.setOut(o);
        }
        Path ckpt = dev.patchcore.train.Checkpoints.latest(ownRun);
        command("eval", ownRun, 0, "--max-blocks", "1");
        assertTrue(out.toString().contains("data: " + own + " (the checkpoint's own dataset)"), out.toString());

        Path other = dir.resolve("other.txt");
        Files.writeString(other, "a different text, prepared into the same folder after the run.\n\n".repeat(50));
        assertEquals(0, Main.run("prepare", "--out", own.toString(), other.toString()));
        String then = dev.patchcore.train.Checkpoints.readMeta(ckpt).datasetFingerprint();
        String now = dev.patchcore.train.ShardTrainingData.open(own.toString()).fingerprint();
        assertNotNull(then);
        assertNotEquals(then, now);
        assertEquals("error: the dataset " + own + " has changed since " + ckpt + " was trained on it (then: " + then + "; now: " + now
                + "); score other data explicitly with --data DIR or --text FILE\n", command("eval", ownRun, 2));
        command("eval", ownRun, 0, "--data", own.toString(), "--max-blocks", "1");  // named explicitly: scored

        // A checkpoint of an older version recorded no fingerprint: nothing to compare, the folder is scored.
        Path trainer = ckpt.resolve("trainer.json");
        var json = com.google.gson.JsonParser.parseString(Files.readString(trainer)).getAsJsonObject();
        json.remove("datasetFingerprint");
        Files.writeString(trainer, json.toString());
        command("eval", ownRun, 0, "--max-blocks", "1");

        Files.move(own, dir.resolve("own-moved"));
        assertEquals("error: the dataset " + ckpt + " was trained on, " + own + ", is gone (moved or deleted?); "
                + "name where it is now with --data DIR\n", command("eval", ownRun, 2));
    }
}
