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
            assertEquals(List.of(".lock", "dataset.json", "train.bin", "val.bin"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    /**
     * A Hugging Face tokenizer.json and its tokenizer_config.json travel with the shards, and the folder reads its
     * tokenizer back from them; a later prepare with another tokenizer takes both away with the old shards.
     */
    @Test
    void tokenizerFilesTravelWithTheShardsAndGoWithThem() throws IOException {
        Path tokDir = Files.createDirectories(dir.resolve("tok")), out = dir.resolve("ds");
        Files.write(tokDir.resolve("tokenizer.json"), HuggingFaceBpeTokenizerTest.resource("tokenizer.json"));
        Files.writeString(tokDir.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|end_of_text|>\"}");
        Tokenizer hf = Tokenizers.byName(tokDir.resolve("tokenizer.json").toString());
        Path txt = file("a.txt", "one document\n\nanother document 123\n\nand a third");
        DatasetInfo info = new DatasetPreparer(hf, 0.3, 7).prepareFiles(List.of(txt), out, DatasetPreparer.Progress.NONE);
        assertEquals(hf.name(), info.tokenizer());
        assertEquals(3002, info.vocabSize());
        assertEquals(3001, info.eosId());
        for (String f : List.of("tokenizer.json", "tokenizer_config.json"))
            assertArrayEquals(Files.readAllBytes(tokDir.resolve(f)), Files.readAllBytes(out.resolve(f)), f);
        try (PreparedDataset ds = PreparedDataset.open(out)) {
            assertEquals(hf.name(), ds.tokenizer().name());
            assertEquals(List.of("one document", "another document 123", "and a third").stream().sorted().toList(),
                    java.util.stream.Stream.concat(documents(ds.train(), hf).stream(), documents(ds.val(), hf).stream()).sorted().toList());
        }
        new DatasetPreparer(Tokenizers.byName("byte"), 0.3, 7).prepareFiles(List.of(txt), out, DatasetPreparer.Progress.NONE);
        try (var files = Files.list(out)) {
            assertEquals(List.of(".lock", "dataset.json", "train.bin", "val.bin"), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
        // A folder holding only a tokenizer is someone's tokenizer, not a dataset to replace.
        var refused = assertThrows(IllegalArgumentException.class, () -> new DatasetPreparer(Tokenizers.byName("byte"), 0.3, 7)
                .prepareFiles(List.of(txt), tokDir, DatasetPreparer.Progress.NONE));
        assertEquals("--out " + tokDir + " is not a dataset folder (it holds tokenizer.json, tokenizer_config.json); give a new or "
                + "empty folder, or one an earlier prepare wrote", refused.getMessage());
        assertTrue(Files.exists(tokDir.resolve("tokenizer.json")) && Files.exists(tokDir.resolve("tokenizer_config.json")));
    }

    /**
     * A .gz of several members (gzip's concatenation, as `cat a.gz b.gz` makes) is read whole; one cut short inside a
     * later member's header, or followed by bytes that are no member, is refused as gzip -t refuses it, not read as
     * the members before (GZIPInputStream ends quietly there).
     */
    @Test
    void aGzipCutShortAfterAMemberIsRefused() throws IOException {
        java.io.ByteArrayOutputStream one = new java.io.ByteArrayOutputStream(), two = new java.io.ByteArrayOutputStream();
        try (var z = new GZIPOutputStream(one)) {
            z.write("first\n\n".getBytes(StandardCharsets.UTF_8));
        }
        try (var z = new GZIPOutputStream(two)) {
            z.write("second\n".getBytes(StandardCharsets.UTF_8));
        }
        Tokenizer tok = Tokenizers.byName("byte");
        Path both = dir.resolve("both.txt.gz");
        Files.write(both, concat(one.toByteArray(), two.toByteArray()));
        DatasetInfo info = new DatasetPreparer(tok, 0, 1).prepareFiles(List.of(both), dir.resolve("ok"), DatasetPreparer.Progress.NONE);
        assertEquals(2, info.trainDocuments());
        Files.write(both, concat(Files.readAllBytes(both), new byte[100]));  // zero padding after the last member is no error
        assertEquals(info, new DatasetPreparer(tok, 0, 1).prepareFiles(List.of(both), dir.resolve("ok"), DatasetPreparer.Progress.NONE));
        for (byte[] tail : List.of(Arrays.copyOf(two.toByteArray(), 5), "junk".getBytes(StandardCharsets.UTF_8))) {  // cut short; junk
            Path cut = dir.resolve("cut.txt.gz");
            Files.write(cut, concat(one.toByteArray(), tail));
            var e = assertThrows(java.io.UncheckedIOException.class,
                    () -> new DatasetPreparer(tok, 0, 1).prepareFiles(List.of(cut), dir.resolve("bad"), DatasetPreparer.Progress.NONE));
            assertTrue(e.getMessage().startsWith("cannot read " + cut + ": "), e.getMessage());
            assertFalse(Files.exists(dir.resolve("bad")));
        }
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /**
     * A stop request (the command's Ctrl-C or SIGTERM) while the inputs are read ends the prepare as bad input does:
     * no temporary shard is left behind, a folder it made goes, and an existing dataset stays as it was.
     */
    @Test
    void aStopWhileReadingLeavesNothingBehind() throws IOException {
        Tokenizer tok = Tokenizers.byName("byte");
        StringBuilder many = new StringBuilder();
        for (int i = 0; i < 3000; i++) many.append("document ").append(i).append("\n\n");
        Path big = file("big.txt", many.toString());
        Path existing = dir.resolve("existing");
        DatasetInfo first = prepare(existing, 0.2, 1, new ArrayList<>(), file("a.txt", "one\n\ntwo\n\nthree"));
        for (Path out : List.of(dir.resolve("new"), existing)) {
            DatasetPreparer preparer = new DatasetPreparer(tok, 0.2, 1);
            DatasetPreparer.Progress stopAfterAChunk = (documents, tokens) -> preparer.requestStop();
            assertThrows(java.io.InterruptedIOException.class, () -> preparer.prepareFiles(List.of(big), out, stopAfterAChunk));
        }
        assertFalse(Files.exists(dir.resolve("new")));
        try (PreparedDataset ds = PreparedDataset.open(existing)) {
            assertEquals(first, ds.info());
        }
        assertEquals(List.of(".lock", "dataset.json", "train.bin", "val.bin"), names(existing));
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
        assertPrepareFails(List.of(dir.resolve("nope.txt")), dir.resolve("nope.txt") + ": no such file");
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

    private DatasetInfo prepare(Path out, double valFraction, long seed, List<String> notes, Path... inputs) throws IOException {
        DatasetPreparer.Progress progress = new DatasetPreparer.Progress() {
            @Override public void update(long documents, long tokens) { }

            @Override public void note(String message) { notes.add(message); }
        };
        return new DatasetPreparer(Tokenizers.byName("byte"), valFraction, seed).prepareFiles(List.of(inputs), out, progress);
    }

    private static List<String> names(Path folder) throws IOException {
        try (var files = Files.list(folder)) {
            return files.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** Bad input found while reading (empty, malformed JSON, a truncated .gz) leaves the dataset already there as it was. */
    @Test
    void aFailedPrepareKeepsTheExistingDataset() throws IOException {
        Path out = dir.resolve("ds1");
        DatasetInfo first = prepare(out, 0.2, 1, new ArrayList<>(), file("a.txt", "one\n\ntwo\n\nthree"));
        byte[] train = Files.readAllBytes(out.resolve("train.bin"));
        StringBuilder good = new StringBuilder();
        for (int i = 0; i < 3000; i++) good.append("{\"text\": \"document ").append(i).append("\"}\n");
        Path badJson = file("late.jsonl", good + "{\"text\": broken\n");
        java.io.ByteArrayOutputStream gz = new java.io.ByteArrayOutputStream();
        try (var z = new GZIPOutputStream(gz)) {
            z.write(good.toString().getBytes(StandardCharsets.UTF_8));
        }
        Path cut = dir.resolve("cut.jsonl.gz");
        Files.write(cut, Arrays.copyOf(gz.toByteArray(), gz.size() / 2));
        for (Path bad : List.of(file("empty.txt", "\n\n"), badJson, cut)) {
            assertThrows(RuntimeException.class, () -> prepare(out, 0.2, 1, new ArrayList<>(), bad), bad.toString());
            try (PreparedDataset ds = PreparedDataset.open(out)) {
                assertEquals(first, ds.info(), bad.toString());
            }
            assertArrayEquals(train, Files.readAllBytes(out.resolve("train.bin")));
            assertEquals(List.of(".lock", "dataset.json", "train.bin", "val.bin"), names(out), "no temporary file is left: " + bad);
        }
    }

    /**
     * One prepare at a time per folder: a second, while the first holds the folder's lock, is refused and leaves the
     * dataset alone. A folder whose shards lost their summary (a prepare stopped mid-swap) says to run it again.
     */
    @Test
    void aFolderBeingPreparedIsRefusedAndAnUnfinishedSwapIsNamed() throws IOException {
        Path out = dir.resolve("locked");
        DatasetInfo first = prepare(out, 0.2, 1, new ArrayList<>(), file("a.txt", "one\n\ntwo\n\nthree"));
        try (dev.patchcore.train.RunLock held = dev.patchcore.train.RunLock.acquire(out)) {
            var e = assertThrows(IllegalArgumentException.class, () -> prepare(out, 0.2, 1, new ArrayList<>(), file("b.txt", "four")));
            assertTrue(e.getMessage().contains("is in use"), e.getMessage());
        }
        assertEquals(first, DatasetInfo.read(out));
        Files.delete(out.resolve(DatasetInfo.FILE_NAME));
        var e = assertThrows(IllegalArgumentException.class, () -> DatasetInfo.read(out));
        assertTrue(e.getMessage().contains("holds the shards of a prepare that did not finish"), e.getMessage());
    }

    /** A failed prepare removes the folders it created, and only those. */
    @Test
    void aFailedPrepareRemovesTheFolderItCreated() throws IOException {
        Path empty = file("empty.txt", "");
        Path deep = dir.resolve("new/deeper");
        assertThrows(IllegalArgumentException.class, () -> prepare(deep, 0.1, 1, new ArrayList<>(), empty));
        assertFalse(Files.exists(dir.resolve("new")), "both created folders are gone");
        Path existing = Files.createDirectories(dir.resolve("existing"));
        assertThrows(IllegalArgumentException.class, () -> prepare(existing, 0.1, 1, new ArrayList<>(), empty));
        assertTrue(Files.isDirectory(existing), "a folder the user made stays");
        assertEquals(List.of(), names(existing));
        Path bad = file("bad.jsonl", "{\"text\": 1}\n");
        assertThrows(IllegalArgumentException.class, () -> prepare(dir.resolve("fresh"), 0.1, 1, new ArrayList<>(), bad));
        assertFalse(Files.exists(dir.resolve("fresh")));
    }

    /** A run folder, or any folder with other files, is not written into; an empty or earlier dataset folder is. */
    @Test
    void outMustBeNewEmptyOrADatasetFolder() throws IOException {
        Path text = file("a.txt", "one\n\ntwo");
        Path run = dir.resolve("r1");
        Files.createDirectories(run.resolve("checkpoints"));
        Files.writeString(run.resolve("metrics.jsonl"), "{}\n");
        var e = assertThrows(IllegalArgumentException.class, () -> prepare(run, 0.1, 1, new ArrayList<>(), text));
        assertEquals("--out " + run + " is not a dataset folder (it holds checkpoints/, metrics.jsonl); give a new or empty folder,"
                + " or one an earlier prepare wrote", e.getMessage());
        assertEquals(List.of("checkpoints", "metrics.jsonl"), names(run), "nothing written");
        assertThrows(IllegalArgumentException.class, () -> prepare(text, 0.1, 1, new ArrayList<>(), text));

        Path leftovers = Files.createDirectories(dir.resolve("leftovers"));  // a crashed prepare's files
        Files.writeString(leftovers.resolve("train.bin.tmp"), "x");
        Files.writeString(leftovers.resolve(".tokenizer.model.tmp"), "x");
        prepare(leftovers, 0.1, 1, new ArrayList<>(), text);
        assertTrue(PreparedDataset.isValid(leftovers));
        Files.writeString(leftovers.resolve("NOTES.md"), "where this came from");  // a dataset folder with a note of the user's
        prepare(leftovers, 0.1, 2, new ArrayList<>(), text);
        assertEquals(2, DatasetInfo.read(leftovers).seed());
        assertTrue(Files.exists(leftovers.resolve("NOTES.md")));
    }

    /** Invalid UTF-8 in every input format becomes U+FFFD (bytes 239 191 189), and each file gets one note. */
    @Test
    void invalidUtf8IsReplacedAndReportedPerFile() throws Exception {
        byte[] bad = {'o', 'k', ' ', (byte) 0xFF, (byte) 0xFE, ' ', 'e', 'n', 'd'};
        Path txt = dir.resolve("bad.txt");
        Files.write(txt, bad);
        Path jsonl = dir.resolve("bad.jsonl");
        Files.write(jsonl, concat("{\"text\": \"".getBytes(StandardCharsets.UTF_8), bad, "\"}\n".getBytes(StandardCharsets.UTF_8)));
        Path gz = dir.resolve("bad.txt.gz");
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(gz))) {
            out.write(bad);
        }
        List<Path> inputs = new ArrayList<>(List.of(txt, jsonl, gz, file("good.txt", "clean")));
        if (zstdInstalled()) {
            assertEquals(0, new ProcessBuilder("zstd", "-q", "-o", dir.resolve("bad.jsonl.zst").toString(), jsonl.toString()).start().waitFor());
            inputs.add(dir.resolve("bad.jsonl.zst"));
        }
        List<String> notes = new ArrayList<>();
        Path out = dir.resolve("ds");
        prepare(out, 0, 1, notes, inputs.toArray(Path[]::new));
        List<String> expected = new ArrayList<>();
        for (Path p : inputs) if (!p.getFileName().toString().equals("good.txt")) expected.add(p + ": 2 invalid UTF-8 sequences replaced by U+FFFD");
        assertEquals(expected, notes);
        try (PreparedDataset ds = PreparedDataset.open(out)) {
            int[] first = new int[12];
            ds.train().copy(0, first, 0, first.length);
            assertArrayEquals(new int[] {'o', 'k', ' ', 239, 191, 189, 239, 191, 189, ' ', 'e', 'n'}, first);
        }
    }

    /** A JSON escape of a lone surrogate is no character either: U+FFFD, counted in the note; a pair is the character. */
    @Test
    void loneSurrogateEscapesInJsonlBecomeReplacementCharacters() throws Exception {
        Path jsonl = file("s.jsonl", "{\"text\": \"a\\ud800b \\udc00 \\ud83d\\ude00 c\\ud83d\"}\n");
        List<String> notes = new ArrayList<>();
        Path out = dir.resolve("ds");
        prepare(out, 0, 1, notes, jsonl);
        assertEquals(List.of(jsonl + ": 3 invalid UTF-8 sequences replaced by U+FFFD"), notes);
        try (PreparedDataset ds = PreparedDataset.open(out)) {
            assertEquals(List.of("a\uFFFDb \uFFFD \uD83D\uDE00 c\uFFFD"), documents(ds.train(), ds.tokenizer()));
        }
    }

    private static byte[] concat(byte[]... parts) {
        var out = new java.io.ByteArrayOutputStream();
        for (byte[] p : parts) out.writeBytes(p);
        return out.toByteArray();
    }

    private static boolean zstdInstalled() {
        try {
            return new ProcessBuilder("zstd", "--version").start().waitFor() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    /** With too few documents for the fraction, the last is held out for validation and a note says so; train is never empty. */
    @Test
    void aForcedValidationDocumentIsNotedAndTrainIsNeverEmpty() throws IOException {
        Path two = file("two.txt", "alpha\n\nbeta\n");
        int noted = 0;
        for (long seed = 0; seed < 20; seed++) {
            List<String> notes = new ArrayList<>();
            DatasetInfo info = prepare(dir.resolve("s" + seed), 0.02, seed, notes, two);
            assertEquals(1, info.trainDocuments());
            assertEquals(1, info.valDocuments());
            if (!notes.isEmpty()) {
                noted++;
                assertEquals(List.of("--val-fraction 0.02 picked no validation document, so the last document was held out for"
                        + " validation (1 of 2 documents); --val-fraction 0 gives no validation split"), notes);
            }
        }
        assertTrue(noted >= 15, "at 2% the hash rarely picks a document: " + noted + " of 20 noted");
        Path three = file("three.txt", "a\n\nb\n\nc");
        for (long seed = 0; seed < 50; seed++) {
            List<String> notes = new ArrayList<>();
            DatasetInfo info = prepare(dir.resolve("t" + seed), 0.5, seed, notes, three);
            assertTrue(info.trainDocuments() >= 1 && info.valDocuments() >= 1, "seed " + seed + ": " + info);
        }
        List<String> none = new ArrayList<>();
        prepare(dir.resolve("many"), 0.5, 1, none, file("many.txt", "a\n\nb\n\nc\n\nd\n\ne\n\nf\n\ng\n\nh"));
        assertEquals(List.of(), none, "no note when the hash picked validation documents itself");
    }

    /** A file or a missing folder where a dataset folder belongs: said plainly, with what to run. */
    @Test
    void aFileOrMissingFolderIsNotADatasetFolder() throws IOException {
        Path text = file("a.txt", "text");
        var e = assertThrows(IllegalArgumentException.class, () -> PreparedDataset.open(text));
        assertEquals(text + " is a file, not a dataset folder; make one from it with `prepare --out DIR " + text + "`", e.getMessage());
        Path missing = dir.resolve("nope");
        e = assertThrows(IllegalArgumentException.class, () -> PreparedDataset.open(missing));
        assertEquals("dataset folder " + missing + " does not exist; create it with `prepare --out " + missing + " FILE...`", e.getMessage());
    }

    /** What the command prints: notes on stderr, and the single-document advice worded for the input's format. */
    @Test
    void prepareCommandPrintsNotesAndAdviceForTheFormat() throws IOException {
        Path bad = dir.resolve("bad.txt");
        Files.write(bad, new byte[] {'a', (byte) 0xFF, (byte) 0xFE, '\n', '\n', 'b'});
        assertEquals("note: " + bad + ": 2 invalid UTF-8 sequences replaced by U+FFFD\n"
                + "note: --val-fraction 0.02 picked no validation document, so the last document was held out for validation"
                + " (1 of 2 documents); --val-fraction 0 gives no validation split\n", runPrepare(0, "--out", dir.resolve("b").toString(), bad.toString()));
        assertEquals("warning: only one document, so no validation split; each line of a .jsonl file is one document: give one"
                + " {\"text\": ...} object per document\n", runPrepare(0, "--out", dir.resolve("j").toString(),
                file("one.jsonl", "{\"text\": \"solo\"}\n").toString()));
        assertEquals("warning: only one document, so no validation split; separate the documents of a .txt file with blank lines,"
                + " or use JSONL (one {\"text\": ...} object per line)\n", runPrepare(0, "--out", dir.resolve("t").toString(),
                file("one.txt", "solo").toString()));
        // Refused and failed runs: one error line, exit code 2, nothing left behind.
        Path run = Files.createDirectories(dir.resolve("run/checkpoints")).getParent();
        assertEquals("error: --out " + run + " is not a dataset folder (it holds checkpoints/); give a new or empty folder, or one an"
                + " earlier prepare wrote\n", runPrepare(2, "--out", run.toString(), bad.toString()));
        assertEquals("error: empty corpus: no text found in " + dir.resolve("e.txt") + "\n",
                runPrepare(2, "--out", dir.resolve("e").toString(), file("e.txt", " \n").toString()));
        assertFalse(Files.exists(dir.resolve("e")));
    }

    /** Runs {@code patchcore prepare} and returns its stderr. */
    private static String runPrepare(int expectedCode, String... args) {
        java.io.PrintStream oldErr = System.err, oldOut = System.out;
        var err = new java.io.ByteArrayOutputStream();
        int code;
        try {
            System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
            System.setOut(new java.io.PrintStream(java.io.OutputStream.nullOutputStream()));
            String[] all = new String[args.length + 1];
            all[0] = "prepare";
            System.arraycopy(args, 0, all, 1, args.length);
            code = dev.patchcore.cli.Main.run(all);
        } finally {
            System.setErr(oldErr);
            System.setOut(oldOut);
        }
        String text = err.toString(StandardCharsets.UTF_8);
        assertEquals(expectedCode, code, text);
        return text;
    }
}
