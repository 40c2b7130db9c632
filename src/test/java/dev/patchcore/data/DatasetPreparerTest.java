package dev.patchcore.data;

import dev.patchcore.cli.PrepareCommand;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.GZIPOutputStream;

import static org.junit.jupiter.api.Assertions.*;

class DatasetPreparerTest {

    @TempDir Path dir;

    private Path file(String name, String content) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, content, StandardCharsets.UTF_8);
        return p;
    }

    private Path gzFile(String name, String content) throws IOException {
        Path p = dir.resolve(name);
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(p))) {
            out.write(content.getBytes(StandardCharsets.UTF_8));
        }
        return p;
    }

    /** Documents of a shard, split at EOS and decoded. */
    private static List<String> documents(TokenShard shard, Tokenizer tok) {
        int[] all = new int[(int) shard.length()];
        shard.copy(0, all, 0, all.length);
        List<String> docs = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < all.length; i++) {
            if (all[i] == tok.eosId()) {
                docs.add(tok.decode(Arrays.copyOfRange(all, start, i)));
                start = i + 1;
            }
        }
        assertEquals(all.length, start, "a shard ends with EOS");
        return docs;
    }

    @Test
    void textAndJsonlBecomeDocumentsSeparatedByEos() throws IOException {
        Path txt = file("a.txt", "\n\nFirst doc line one\nline two\n\n\n  \nSecond doc\n\nThird doc, no newline at end");
        Path jsonl = file("b.jsonl", "{\"text\": \"json one\", \"meta\": {\"pile_set_name\": \"x\"}}\n\n"
                + "{\"text\": \"json \\\"two\\\" ü\\n2nd line\"}\n{\"text\": \"\"}\n");
        Path gz = gzFile("c.jsonl.gz", "{\"text\": \"gz one\"}\n{\"text\": \"gz two\"}\n");
        Path txtGz = gzFile("d.txt.gz", "gz text\n");
        Tokenizer tok = Tokenizers.byName("r50k_base");
        Path out = dir.resolve("ds");
        DatasetInfo info = new DatasetPreparer(tok, 0.3, 7).prepareFiles(List.of(txt, jsonl, gz, txtGz), out, DatasetPreparer.Progress.NONE);

        List<String> expected = List.of("First doc line one\nline two", "Second doc", "Third doc, no newline at end",
                "json one", "json \"two\" ü\n2nd line", "gz one", "gz two", "gz text");
        assertEquals(expected.size(), info.documents());
        assertTrue(info.valDocuments() >= 1 && info.trainDocuments() >= 1);
        assertEquals("r50k_base", info.tokenizer());
        assertEquals(50_257, info.vocabSize());
        long expectedTokens = expected.stream().mapToLong(d -> tok.encode(d).length + 1).sum();
        assertEquals(expectedTokens, info.tokens());

        try (PreparedDataset ds = PreparedDataset.open(out)) {
            List<String> train = documents(ds.train(), tok);
            List<String> val = documents(ds.val(), tok);
            assertEquals(info.trainDocuments(), train.size());
            assertEquals(info.valDocuments(), val.size());
            // Every document lands in exactly one split, in input order within each split.
            List<String> merged = new ArrayList<>(train);
            merged.addAll(val);
            assertEquals(expected.stream().sorted().toList(), merged.stream().sorted().toList());
            assertEquals(expected.stream().filter(train::contains).toList(), train);
            assertEquals(info, DatasetInfo.read(out));
            assertSame(tok, ds.tokenizer());
        }
        try (var files = Files.list(out)) {
            assertEquals(List.of("dataset.json", "train.bin", "val.bin"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    /** The Pile's .jsonl.zst, through the zstd program: the same documents as the plain file; a corrupt one fails loudly. */
    @Test
    void zstdInputsAreReadThroughTheZstdProgram() throws Exception {
        boolean haveZstd;
        try {
            haveZstd = new ProcessBuilder("zstd", "--version").start().waitFor() == 0;
        } catch (IOException e) {
            haveZstd = false;
        }
        org.junit.jupiter.api.Assumptions.assumeTrue(haveZstd, "the zstd program is not installed: .zst input not tested");
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 3000; i++) jsonl.append("{\"text\": \"document ").append(i).append(" of the pile\"}\n");
        Path plain = file("p.jsonl", jsonl.toString());
        assertEquals(0, new ProcessBuilder("zstd", "-q", "-o", dir.resolve("p.jsonl.zst").toString(), plain.toString()).start().waitFor());
        Tokenizer tok = Tokenizers.byName("byte");
        DatasetInfo a = new DatasetPreparer(tok, 0.1, 3).prepareFiles(List.of(plain), dir.resolve("a"), DatasetPreparer.Progress.NONE);
        DatasetInfo b = new DatasetPreparer(tok, 0.1, 3).prepareFiles(List.of(dir.resolve("p.jsonl.zst")), dir.resolve("b"), DatasetPreparer.Progress.NONE);
        assertEquals(3000, b.documents());
        assertEquals(a.tokens(), b.tokens());
        assertArrayEquals(Files.readAllBytes(dir.resolve("a/train.bin")), Files.readAllBytes(dir.resolve("b/train.bin")));

        // Truncated: zstd fails at the end, and the error names the file instead of leaving a short corpus.
        byte[] whole = Files.readAllBytes(dir.resolve("p.jsonl.zst"));
        Path cut = dir.resolve("cut.jsonl.zst");
        Files.write(cut, Arrays.copyOf(whole, whole.length / 2));
        Exception e = assertThrows(java.io.UncheckedIOException.class,
                () -> new DatasetPreparer(tok, 0.1, 3).prepareFiles(List.of(cut), dir.resolve("c"), DatasetPreparer.Progress.NONE));
        assertTrue(e.getMessage().contains("cannot read " + cut) && e.getMessage().contains("zstd"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("c/dataset.json")), "no dataset from a corrupt input");
    }

    @Test
    void splitIsDeterministicAndFollowsTheSeedAndFraction() throws IOException {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) text.append("document number ").append(i).append("\n\n");
        Path txt = file("many.txt", text.toString());
        Tokenizer tok = Tokenizers.byName("byte");
        DatasetInfo a = new DatasetPreparer(tok, 0.1, 42).prepareFiles(List.of(txt), dir.resolve("a"), DatasetPreparer.Progress.NONE);
        DatasetInfo b = new DatasetPreparer(tok, 0.1, 42).prepareFiles(List.of(txt), dir.resolve("b"), DatasetPreparer.Progress.NONE);
        DatasetInfo c = new DatasetPreparer(tok, 0.1, 43).prepareFiles(List.of(txt), dir.resolve("c"), DatasetPreparer.Progress.NONE);
        assertArrayEquals(Files.readAllBytes(dir.resolve("a/val.bin")), Files.readAllBytes(dir.resolve("b/val.bin")));
        assertArrayEquals(Files.readAllBytes(dir.resolve("a/train.bin")), Files.readAllBytes(dir.resolve("b/train.bin")));
        assertFalse(Arrays.equals(Files.readAllBytes(dir.resolve("a/val.bin")), Files.readAllBytes(dir.resolve("c/val.bin"))));
        assertEquals(400, a.documents());
        assertEquals(a, b);
        // 400 documents at 10%: expect ~40 (binomial sd 6).
        assertTrue(a.valDocuments() >= 20 && a.valDocuments() <= 60, "val documents " + a.valDocuments());
        assertTrue(c.valDocuments() >= 20 && c.valDocuments() <= 60, "val documents " + c.valDocuments());
    }

    @Test
    void twoDocumentsGiveOneOfEachAndZeroFractionGivesNoValidation() throws IOException {
        Path txt = file("two.txt", "alpha\n\nbeta\n");
        Tokenizer tok = Tokenizers.byName("byte");
        for (long seed = 0; seed < 20; seed++) {
            DatasetInfo info = new DatasetPreparer(tok, 0.01, seed).prepareFiles(List.of(txt), dir.resolve("s" + seed), DatasetPreparer.Progress.NONE);
            assertEquals(1, info.trainDocuments(), "seed " + seed);
            assertEquals(1, info.valDocuments(), "seed " + seed);
        }
        DatasetInfo none = new DatasetPreparer(tok, 0, 1).prepareFiles(List.of(txt), dir.resolve("none"), DatasetPreparer.Progress.NONE);
        assertEquals(0, none.valDocuments());
        assertEquals(0, none.valTokens());
        DatasetInfo one = new DatasetPreparer(tok, 0.5, 1).prepareFiles(List.of(file("one.txt", "solo")), dir.resolve("one"), DatasetPreparer.Progress.NONE);
        assertEquals(1, one.trainDocuments());
        assertEquals(0, one.valDocuments());
    }

    @Test
    void reprepareReplacesTheOldDataset() throws IOException {
        Tokenizer tok = Tokenizers.byName("byte");
        Path out = dir.resolve("ds");
        new DatasetPreparer(tok, 0.2, 1).prepareFiles(List.of(file("x.txt", "a\n\nb\n\nc")), out, DatasetPreparer.Progress.NONE);
        DatasetInfo second = new DatasetPreparer(tok, 0.2, 1).prepareFiles(List.of(file("y.txt", "longer one\n\ntwo")), out, DatasetPreparer.Progress.NONE);
        try (PreparedDataset ds = PreparedDataset.open(out)) {
            assertEquals(second, ds.info());
            assertEquals(2, ds.info().documents());
        }
    }

    @Test
    void malformedJsonlNamesFileAndLine() throws IOException {
        Path bad = file("bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \"broken\"\n");
        assertPrepareFails(List.of(bad), "bad.jsonl:3: malformed JSON");
        assertPrepareFails(List.of(file("lenient.jsonl", "{text: 'unquoted'}\n")), "lenient.jsonl:1: malformed JSON");
        assertPrepareFails(List.of(file("trailing.jsonl", "{\"text\": \"a\"} x\n")), "trailing.jsonl:1: malformed JSON");
        assertPrepareFails(List.of(file("array.jsonl", "[1, 2]\n")), "array.jsonl:1: expected a JSON object, found an array");
        assertPrepareFails(List.of(file("notext.jsonl", "{\"content\": \"a\"}\n")), "notext.jsonl:1: the object has no \"text\" field");
        assertPrepareFails(List.of(file("num.jsonl", "{\"text\": \"a\"}\n{\"text\": 5}\n")), "num.jsonl:2: the \"text\" field must be a string, found a number");
    }

    @Test
    void emptyCorpusMissingFileAndBadOptionsAreClearErrors() throws IOException {
        Path empty = file("empty.txt", "\n   \n\n");
        Path emptyJson = file("empty.jsonl", "{\"text\": \"\"}\n");
        IllegalArgumentException e = assertPrepareFails(List.of(empty, emptyJson), "empty corpus");
        assertTrue(e.getMessage().contains("empty.txt"));
        assertFalse(Files.exists(dir.resolve("out/train.bin")), "no shard is left behind");
        assertFalse(Files.exists(dir.resolve("out/train.bin.tmp")));
        assertFalse(Files.exists(dir.resolve("out/dataset.json")));
        assertPrepareFails(List.of(dir.resolve("nope.txt")), "input file not found: " + dir.resolve("nope.txt"));
        assertPrepareFails(List.of(file("data.csv", "a,b")), "unsupported input type");
        assertPrepareFails(List.of(), "no input files");
        Tokenizer tok = Tokenizers.byName("byte");
        assertThrows(IllegalArgumentException.class, () -> new DatasetPreparer(tok, 0.6, 1));
        assertThrows(IllegalArgumentException.class, () -> new DatasetPreparer(tok, -0.1, 1));
        assertThrows(IllegalArgumentException.class, () -> new DatasetPreparer(tok, Double.NaN, 1));
        var notADataset = assertThrows(IllegalArgumentException.class, () -> PreparedDataset.open(dir));
        assertTrue(notADataset.getMessage().contains("not a prepared dataset"), notADataset.getMessage());
    }

    private IllegalArgumentException assertPrepareFails(List<Path> inputs, String fragment) {
        var e = assertThrows(IllegalArgumentException.class, () -> new DatasetPreparer(Tokenizers.byName("byte"), 0.1, 1)
                .prepareFiles(inputs, dir.resolve("out"), DatasetPreparer.Progress.NONE));
        assertTrue(e.getMessage().contains(fragment), () -> "expected '" + fragment + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
        return e;
    }

    @Test
    void shardMismatchingTheSummaryIsRejected() throws IOException {
        Tokenizer tok = Tokenizers.byName("byte");
        Path a = dir.resolve("a");
        Path b = dir.resolve("b");
        new DatasetPreparer(tok, 0.2, 1).prepareFiles(List.of(file("x.txt", "a\n\nb\n\nc")), a, DatasetPreparer.Progress.NONE);
        new DatasetPreparer(tok, 0.2, 1).prepareFiles(List.of(file("y.txt", "other text\n\nmore")), b, DatasetPreparer.Progress.NONE);
        Files.copy(b.resolve("train.bin"), a.resolve("train.bin"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        var e = assertThrows(IllegalArgumentException.class, () -> PreparedDataset.open(a));
        assertTrue(e.getMessage().contains("does not match"), e.getMessage());
        assertFalse(PreparedDataset.isValid(a));
        assertTrue(PreparedDataset.isValid(b));
    }

    @Test
    void prepareCommandWritesTheDatasetAndPrintsASummary() throws IOException {
        Path txt = file("in.txt", "one\n\ntwo\n\nthree\n");
        Path out = dir.resolve("cmd");
        java.io.PrintStream oldOut = System.out;
        var captured = new java.io.ByteArrayOutputStream();
        int code;
        try {
            System.setOut(new java.io.PrintStream(captured, true, StandardCharsets.UTF_8));
            code = new CommandLine(new PrepareCommand()).execute("--out", out.toString(), "--tokenizer", "gpt2",
                    "--val-fraction", "0.3", "--seed", "5", txt.toString());
        } finally {
            System.setOut(oldOut);
        }
        assertEquals(0, code);
        String printed = captured.toString(StandardCharsets.UTF_8);
        assertTrue(printed.contains("r50k_base") && printed.contains("50257") && printed.contains("documents"), printed);
        DatasetInfo info = DatasetInfo.read(out);
        assertEquals(3, info.documents());
        assertEquals(5, info.seed());
        assertEquals(0.3, info.valFraction());

        // --out is required.
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new PrepareCommand());
        cl.setErr(new PrintWriter(err));
        assertEquals(2, cl.execute(txt.toString()));
        assertTrue(err.toString().contains("--out"), err.toString());
    }
}
