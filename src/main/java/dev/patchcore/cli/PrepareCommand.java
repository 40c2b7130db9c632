package dev.patchcore.cli;

import dev.patchcore.data.BundledCorpus;
import dev.patchcore.data.CorpusSource;
import dev.patchcore.data.DatasetInfo;
import dev.patchcore.data.DatasetPreparer;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "prepare", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Tokenize text into a dataset folder (train.bin, val.bin, dataset.json) for `train --data`.",
                "Inputs: " + CorpusSource.SUPPORTED + ". Text files are split into documents at blank lines; "
                        + "JSONL files hold one {\"text\": ...} object per line (the Pile's layout). Invalid UTF-8 is read as U+FFFD, "
                        + "with a note saying how much.",
                "The train/validation split is by document, deterministic for a given --seed."})
public final class PrepareCommand implements Callable<Integer> {

    @Parameters(arity = "1..*", paramLabel = "FILE", description = "input files, read in the order given")
    List<Path> inputs;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "dataset folder: a new or empty folder, or an earlier prepare's (its dataset is replaced once the new one is complete)")
    Path out;

    @Option(names = "--tokenizer", defaultValue = "byte",
            description = "byte, r50k_base (alias gpt2), cl100k_base, o200k_base, a SentencePiece .model file "
                    + "(e.g. LLaMA-2's tokenizer.model, the paper's 32000-token vocabulary), or a Hugging Face BPE tokenizer.json, "
                    + "byte-level (e.g. LLaMA-3's) or SentencePiece-style (LLaMA-2's, Mistral's: byte fallback); the "
                    + "tokenizer_config.json beside it names the end of text; files are "
                    + "copied into the dataset (default: ${DEFAULT-VALUE})")
    String tokenizer;

    @Option(names = "--val-fraction", defaultValue = "" + DatasetPreparer.DEFAULT_VAL_FRACTION,
            description = "fraction of documents held out for validation, in [0, 0.5] (default: ${DEFAULT-VALUE})")
    double valFraction;

    @Option(names = "--seed", defaultValue = "" + DatasetPreparer.DEFAULT_SEED,
            description = "seed of the train/validation split (default: ${DEFAULT-VALUE})")
    long seed;

    @Override
    public Integer call() throws Exception {
        // patchcore's cache holds the bundled corpus that default runs train, resume and evaluate on: a dataset there
        // would replace it (or stand where it is to be prepared)
        Path cache = BundledCorpus.defaultDirectory(Tokenizers.byName("byte")).toAbsolutePath().normalize().getParent();
        if (out.toAbsolutePath().normalize().startsWith(cache))
            throw new IllegalArgumentException("--out " + out + " is inside patchcore's cache " + cache + ", where the bundled corpus "
                    + "is prepared; choose another --out");
        Tokenizer tok = Tokenizers.byName(tokenizer);
        DatasetPreparer preparer = new DatasetPreparer(tok, valFraction, seed);
        PrintStream err = System.err;
        ProgressLine progress = new ProgressLine(err);
        DatasetInfo info;
        // Ctrl-C or SIGTERM while the inputs are read: the prepare fails as on bad input, removing its temporary shards
        // (and a folder it made) before the JVM exits, instead of leaving them behind
        try (StopOnSignal stop = new StopOnSignal(preparer::requestStop)) {
            try {
                info = preparer.prepareFiles(inputs, out, progress);
            } finally {
                progress.done();  // an error line must not land on the progress line
            }
            stop.ranToItsEnd();
        }
        PrintStream o = System.out;
        o.printf(Locale.ROOT, "prepared %s%n", out);
        o.printf(Locale.ROOT, "  tokenizer  %s (vocab %d, EOS %d)%n", info.tokenizer(), info.vocabSize(), info.eosId());
        o.printf(Locale.ROOT, "  documents  %,d train, %,d val%n", info.trainDocuments(), info.valDocuments());
        o.printf(Locale.ROOT, "  tokens     %,d train, %,d val (EOS separators included)%n", info.trainTokens(), info.valTokens());
        if (info.valTokens() == 0) {
            err.println(valFraction == 0 ? "note: --val-fraction 0: no validation split" : "warning: " + singleDocument());
        }
        return 0;
    }

    /** Why there is only one document, worded for the inputs' formats (blank lines only split text files). */
    private String singleDocument() {
        boolean text = inputs.stream().anyMatch(f -> CorpusSource.of(f).format() == CorpusSource.Format.TEXT);
        return "only one document, so no validation split; " + (text
                ? "separate the documents of a .txt file with blank lines, or use JSONL (one {\"text\": ...} object per line)"
                : "each line of a .jsonl file is one document: give one {\"text\": ...} object per document");
    }

    /** Rewrites one status line on stderr at most every two seconds (only for long runs). */
    private static final class ProgressLine implements DatasetPreparer.Progress {
        private final PrintStream err;
        private final long start = System.nanoTime();
        private long lastPrint = start;
        private boolean printed;

        ProgressLine(PrintStream err) { this.err = err; }

        @Override
        public void note(String message) {
            done();
            printed = false;
            err.println("note: " + message);
        }

        @Override
        public void update(long documents, long tokens) {
            long now = System.nanoTime();
            if (now - lastPrint < 2_000_000_000L) return;
            lastPrint = now;
            printed = true;
            double s = (now - start) / 1e9;
            err.printf(Locale.ROOT, "\r  %,d documents, %,d tokens (%.0f tokens/s)   ", documents, tokens, tokens / s);
            err.flush();
        }

        void done() {
            if (printed) err.println();
            printed = false;
        }
    }
}
