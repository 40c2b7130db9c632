package dev.patchcore.cli;

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
                        + "JSONL files hold one {\"text\": ...} object per line (the Pile's layout).",
                "The train/validation split is by document, deterministic for a given --seed."})
public final class PrepareCommand implements Callable<Integer> {

    @Parameters(arity = "1..*", paramLabel = "FILE", description = "input files, read in the order given")
    List<Path> inputs;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "dataset folder to create (an older dataset there is replaced)")
    Path out;

    @Option(names = "--tokenizer", defaultValue = "byte",
            description = "byte, r50k_base (alias gpt2), cl100k_base, o200k_base, or a SentencePiece .model file "
                    + "(e.g. LLaMA-2's tokenizer.model, the paper's 32000-token vocabulary; copied into the dataset) "
                    + "(default: ${DEFAULT-VALUE})")
    String tokenizer;

    @Option(names = "--val-fraction", defaultValue = "" + DatasetPreparer.DEFAULT_VAL_FRACTION,
            description = "fraction of documents held out for validation, in [0, 0.5] (default: ${DEFAULT-VALUE})")
    double valFraction;

    @Option(names = "--seed", defaultValue = "" + DatasetPreparer.DEFAULT_SEED,
            description = "seed of the train/validation split (default: ${DEFAULT-VALUE})")
    long seed;

    @Override
    public Integer call() throws Exception {
        Tokenizer tok = Tokenizers.byName(tokenizer);
        DatasetPreparer preparer = new DatasetPreparer(tok, valFraction, seed);
        PrintStream err = System.err;
        ProgressLine progress = new ProgressLine(err);
        DatasetInfo info = preparer.prepareFiles(inputs, out, progress);
        progress.done();
        PrintStream o = System.out;
        o.printf(Locale.ROOT, "prepared %s%n", out);
        o.printf(Locale.ROOT, "  tokenizer  %s (vocab %d, EOS %d)%n", info.tokenizer(), info.vocabSize(), info.eosId());
        o.printf(Locale.ROOT, "  documents  %,d train, %,d val%n", info.trainDocuments(), info.valDocuments());
        o.printf(Locale.ROOT, "  tokens     %,d train, %,d val (EOS separators included)%n", info.trainTokens(), info.valTokens());
        if (info.valTokens() == 0) {
            err.println(valFraction == 0
                    ? "note: --val-fraction 0: no validation split"
                    : "warning: only one document, so no validation split; separate documents with blank lines or use JSONL");
        }
        return 0;
    }

    /** Rewrites one status line on stderr at most every two seconds (only for long runs). */
    private static final class ProgressLine implements DatasetPreparer.Progress {
        private final PrintStream err;
        private final long start = System.nanoTime();
        private long lastPrint = start;
        private boolean printed;

        ProgressLine(PrintStream err) { this.err = err; }

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
        }
    }
}
