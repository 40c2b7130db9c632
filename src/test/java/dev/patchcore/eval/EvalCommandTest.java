package dev.patchcore.eval;

import dev.patchcore.cli.Main;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** `eval` as a user meets it: what it says about the files and datasets it is given. */
class EvalCommandTest {
    @TempDir static Path dir;
    static Path run, text;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    private PrintStream oldOut, oldErr;

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

    @BeforeEach void capture() {
        oldOut = System.out;
        oldErr = System.err;
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @AfterEach void restore() {
        System.setOut(oldOut);
        System.setErr(oldErr);
    }

    private String eval(int expectedCode, String... args) {
        out.reset();
        err.reset();
        String[] all = new String[args.length + 4];
        all[0] = "eval";
        all[1] = run.toString();
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
        assertEquals("error: --text " + tiny + " has 1 token, fewer than the 17 one block needs (its 16 tokens and the 1 after them"
                + " that it predicts)\n", eval(2, "--text", tiny.toString()));
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
        eval(0, "--choices", q.toString());
        assertTrue(out.toString().contains("q.jsonl: 1 question in"), out.toString());
        Files.writeString(q, "{\"context\": \"the quick\", \"choices\": [\"brown\", \"lazy\"], \"label\": 0}\n"
                + "{\"context\": \"the quick\", \"choices\": [\"\", \"lazy\"], \"label\": 0}\n");
        assertEquals("error: " + q + " line 2: choice 0 is empty\n", eval(2, "--choices", q.toString()));
    }
}
