package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.train.HuggingFaceModel;
import dev.patchcore.data.Plural;
import dev.patchcore.data.PatchMode;
import dev.patchcore.data.PreparedDataset;
import dev.patchcore.data.TokenSequence;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.data.Utf8Reader;
import dev.patchcore.eval.Blocks;
import dev.patchcore.eval.LossEvaluator;
import dev.patchcore.eval.MultipleChoice;
import dev.patchcore.eval.NeuronActivation;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import dev.patchcore.train.Checkpoints;
import dev.patchcore.train.FineTuner;
import dev.patchcore.train.ShardTrainingData;
import dev.patchcore.data.Batch;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Loss and perplexity of a checkpoint, token level, in non-overlapping blocks of the model's context (the paper's WikiText-103 protocol); "
                + "or zero-shot multiple-choice accuracy (--choices). With none of --data, --text and --choices: the dataset the checkpoint "
                + "was trained on (the bundled corpus, or its dataset folder if that is still where the run found it, unchanged).")
public final class EvalCommand implements Callable<Integer> {
    @Mixin CheckpointArg checkpoint;

    @ArgGroup(exclusive = true, multiplicity = "0..1")
    Source source;

    static final class Source {
        @Option(names = "--data", description = "prepared dataset folder (see --split)") Path data;
        @Option(names = "--text", description = "a UTF-8 text file, tokenized with the checkpoint's tokenizer (invalid UTF-8 is read as U+FFFD, with a note)") Path text;
        @Option(names = "--choices", arity = "1..*", paramLabel = "FILE.jsonl", description = "zero-shot multiple choice: JSONL files of "
                + "{\"context\": …, \"choices\": [ … ], \"label\": N} or of the paper's benchmarks (HellaSwag, PIQA, ARC, MMLU, "
                + "WinoGrande records); accuracy by log-likelihood as lm-evaluation-harness scores it, and the mean over the files")
        List<Path> choices;
    }

    @Option(names = "--split", defaultValue = "val", description = "val or train, with --data (default: ${DEFAULT-VALUE})") String split;
    @Option(names = "--batch", defaultValue = "4", description = "blocks per forward pass (default: ${DEFAULT-VALUE})") int batch;
    @Option(names = "--max-blocks", defaultValue = "0", description = "evaluate at most this many blocks, 0 = all") long maxBlocks;
    @Option(names = "--max-questions", defaultValue = "0", description = "with --choices: the first N questions only, 0 = all") long maxQuestions;
    @Option(names = {"-K", "--patch-size"}, defaultValue = "1",
            description = "read blocks of K·T tokens as T patches and report the K-target patch loss (paper Eq. 3) instead of "
                    + "the token loss (default: ${DEFAULT-VALUE})") int patchSize;
    @Option(names = "--activations", description = "also report, per layer, the share of FFN outputs with |x| above "
            + "--activation-threshold (the activated neurons of paper §3.8, Figure 8)") boolean activations;
    @Option(names = "--activation-threshold", defaultValue = "0.5", description = "with --activations: an FFN output counts as activated where |x| is above this (default: ${DEFAULT-VALUE}, the paper's)")
    float activationThreshold;
    @Option(names = "--bos", description = "put a begin-of-text token before the scored tokens, so the first is scored too (as "
            + "lm-evaluation-harness's rolling perplexity does): a Hugging Face folder's where its tokenizer adds one, else "
            + "the end-of-text token that starts every document here; with --choices it starts every context; token level only") boolean bos;
    @Mixin BackendOptions backendOptions;
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    /** Whether the user typed this option (its default does not count). */
    private boolean given(String option) {
        return spec != null && spec.commandLine().getParseResult().hasMatchedOption(option);
    }

    @Override public Integer call() throws IOException {
        if (!checkpoint.given() && source != null && source.choices != null)  // `eval --choices a.jsonl RUN` took RUN as a file
            throw new IllegalArgumentException("no checkpoint given: --choices takes every argument after it as a file, so name "
                    + "the run folder first (eval RUN --choices FILE...) or with --checkpoint");
        Path ckpt = checkpoint.resolve();
        ModelConfig cfg = checkpoint.modelConfig(ckpt);
        Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
        String tokenizer = meta.tokenizer();
        if (batch < 1) throw new IllegalArgumentException("--batch must be positive");
        if (patchSize < 1) throw new IllegalArgumentException("--patch-size must be at least 1");
        if (maxBlocks < 0 || maxQuestions < 0) throw new IllegalArgumentException("--max-blocks and --max-questions must not be negative (0 = all)");
        if (!(activationThreshold >= 0 && activationThreshold < Float.POSITIVE_INFINITY))
            throw new IllegalArgumentException("--activation-threshold must be a finite number, 0 or more (got " + activationThreshold + ")");
        if (!split.equals("val") && !split.equals("train")) throw new IllegalArgumentException("--split must be val or train");
        // An option that does not apply to what is scored is a mistake to say, not to ignore.
        boolean choices = source != null && source.choices != null, textGiven = source != null && source.text != null;
        if (given("--split") && (choices || textGiven)) throw new IllegalArgumentException("--split picks a dataset's split: not with --text or --choices");
        if (given("--max-questions") && !choices) throw new IllegalArgumentException("--max-questions applies to --choices only");
        if (given("--activation-threshold") && !activations)
            throw new IllegalArgumentException("--activation-threshold applies to --activations only");
        if ((given("--max-blocks") || given("--batch")) && choices)
            throw new IllegalArgumentException("--max-blocks and --batch apply to blocks of text, not to --choices (see --max-questions)");
        if (bos && patchSize != 1) throw new IllegalArgumentException("--bos applies to token-level scoring: not with -K");
        if (source == null) source = trainedOn(ckpt, meta);
        if (source.choices != null) {
            if (patchSize != 1 || activations) throw new IllegalArgumentException("--choices scores tokens: no --patch-size or --activations");
            return multipleChoice(ckpt, cfg, tokenizer);
        }
        if (source.text != null) {
            checkFile("--text", source.text, "a text file");
            // Invalid UTF-8 is read as U+FFFD, as prepare reads it, and said once.
            Utf8Reader.Text text = Utf8Reader.read(source.text);
            if (text.replaced() > 0) System.err.println("note: " + Utf8Reader.note(source.text.toString(), text.replaced()));
            Tokenizer tok = Tokenizers.recorded(tokenizer, ckpt);
            TokenSequence ids = TokenSequence.of(tok.encode(text.text()));
            if (bos) ids = TokenSequence.prefixed(prefixToken(ckpt, cfg, tok.eosId()), ids);
            return score(ckpt, cfg, meta, Blocks.of("--text " + source.text, ids, patchSize, cfg.contextLength(), batch, maxBlocks));
        }
        try (PreparedDataset ds = PreparedDataset.open(source.data)) {
            // A Hugging Face folder without tokenizer files names no tokenizer: then the vocabulary alone is compared.
            if (tokenizer == null)
                System.err.println(HuggingFaceModel.noTokenizerNote(ckpt));
            if (ds.info().vocabSize() != cfg.vocabSize() || tokenizer != null && !ds.info().tokenizer().equals(tokenizer))
                throw new IllegalArgumentException("dataset " + source.data + " uses " + ds.info().tokenizer() + " (vocabulary " + ds.info().vocabSize()
                        + ") but the checkpoint was trained with " + (tokenizer != null ? tokenizer : "a tokenizer it does not name")
                        + " (vocabulary " + cfg.vocabSize() + ")");
            if (split.equals("val") && ds.info().valDocuments() == 0)
                throw new IllegalArgumentException("dataset " + source.data + " has no validation split (prepared with "
                        + (ds.info().valFraction() == 0 ? "--val-fraction 0" : "a single document") + "); use --split train");
            TokenSequence seq = split.equals("val") ? ds.val() : ds.train();  // --split was checked above
            if (bos) seq = TokenSequence.prefixed(prefixToken(ckpt, cfg, ds.info().eosId()), seq);
            String what = (split.equals("val") ? "the validation split" : "the training split") + " of " + source.data;
            // Scored while the shard is mapped: the batches are made from it as they are read
            return score(ckpt, cfg, meta, Blocks.of(what, seq, patchSize, cfg.contextLength(), batch, maxBlocks));
        }
    }

    /** Scores the blocks and prints the loss (and the activations, with --activations). */
    private int score(Path ckpt, ModelConfig cfg, Checkpoints.Meta meta, List<Batch> batches) throws IOException {
        if (patchSize > 1 && meta.train() != null && meta.train().patchMode() == PatchMode.MIXUP)
            System.err.println("note: " + ckpt + " was trained with mixup patches (token t of K sequences); -K " + patchSize
                    + " scores patches of K consecutive tokens");
        if (patchSize > 1 && meta.train() != null && meta.train().patch().shortContext())
            System.err.println("note: " + ckpt + " was trained with --short-patch-context (its patch stage read T/K patches); -K "
                    + patchSize + " reads blocks of K·T tokens as T patches, so its loss is not the one its validation logged");
        try (Backend be = backendOptions.open()) {
            LlamaModel model = LlamaModel.forInference(be, cfg);
            Checkpoints.loadWeights(ckpt, model, be);
            // A patch-stage checkpoint of a run with paper §3.7's projections is read at its K with them.
            PatchProjections proj = patchSize > 1 && Checkpoints.hasProjections(ckpt) ? Checkpoints.readProjections(ckpt, cfg, be) : null;
            if (proj != null && proj.patchSize() != patchSize)
                throw new IllegalArgumentException(ckpt + " holds patch projections for K=" + proj.patchSize() + "; evaluate it with -K "
                        + proj.patchSize() + " (or -K 1 without them)");
            if (proj != null) System.out.println("with the checkpoint's patch projections (" + (proj.input() != null ? "input" : "")
                    + (proj.input() != null && proj.output() != null ? " and " : "") + (proj.output() != null ? "output" : "") + ")");
            long t0 = System.nanoTime();
            NeuronActivation.Result act = activations ? NeuronActivation.measure(be, model, proj, batches, activationThreshold) : null;
            double loss = act != null ? act.loss() : LossEvaluator.meanLoss(be, model, proj, batches);
            long scored = batches.stream().mapToLong(b -> b.targets().length).sum();
            // Blocks.of's last block may be shorter (the tokens after the last whole block)
            Batch last = batches.getLast();
            boolean shortLast = last.blockPatches() < cfg.contextLength();
            int whole = batches.stream().mapToInt(Batch::batchSize).sum() - (shortLast ? 1 : 0);
            String blocks = whole == 0 ? "one block of " + Plural.of(last.blockPatches(), "token") + " (the text is shorter than "
                    + "the context of " + cfg.contextLength() + ")"
                    : Plural.of(whole, "block") + " of " + patchSize * cfg.contextLength() + " tokens"
                    + (shortLast ? " and a last one of " + last.blockPatches() : "");
            System.out.printf(Locale.ROOT, "checkpoint %s%n%s (%s scored) in %.1f s%n",
                    ckpt, blocks, Plural.of(scored, "token"), (System.nanoTime() - t0) / 1e9);
            if (patchSize == 1) System.out.printf(Locale.ROOT, "loss %.4f nats/token, perplexity %.3f%n", loss, Math.exp(loss));
            else System.out.printf(Locale.ROOT, "patch loss %.4f nats/token (K=%d targets per patch, %d patches per block)%n",
                    loss, patchSize, cfg.contextLength());
            if (act != null) {
                System.out.printf(Locale.ROOT, "activated FFN outputs (|x| > %s), by layer:", activationThreshold);
                for (double a : act.activated()) System.out.printf(Locale.ROOT, " %.2f%%", 100 * a);
                System.out.printf(Locale.ROOT, "; mean %.2f%%%n", 100 * act.mean());
            }
        }
        return 0;
    }

    /**
     * --bos's token: a Hugging Face folder's begin of text where its tokenizer adds one (or the one a fine-tuning run put
     * before its examples), else the end of text {@code eos}.
     */
    private static int prefixToken(Path ckpt, ModelConfig cfg, int eos) {
        int bos = HuggingFaceModel.bosToPrepend(ckpt, Checkpoints.readMeta(ckpt), cfg.vocabSize());
        int id = bos >= 0 ? bos : eos;
        System.out.println("scoring after token " + id + (id == bos ? " (begin of text)" : " (end of text)") + " put first");
        return id;
    }

    /** A missing file, or a folder given for a file, in one line naming the option. */
    private static void checkFile(String option, Path file, String what) {
        if (Files.isDirectory(file)) throw new IllegalArgumentException(option + " " + file + " is a folder, not " + what);
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException(option + " " + file + ": no such file");
    }

    /**
     * The prepared dataset a checkpoint's run trained on, when it is still there and still holds what the run read:
     * a folder prepared again from other files (its fingerprint recorded by the run differs) is refused, not scored.
     */
    private static Source trainedOn(Path ckpt, Checkpoints.Meta meta) throws IOException {
        String dataset = meta.dataset();
        Source s = new Source();
        if (dataset == null && dev.patchcore.train.HuggingFaceModel.is(ckpt))
            throw new IllegalArgumentException(ckpt + " is a Hugging Face model folder, with no record of the data it was trained on; "
                    + "give --data, --text or --choices");
        if (ShardTrainingData.BUNDLED.equals(dataset)) {
            s.data = ShardTrainingData.bundledDirectory();
        } else if (dataset != null && !dataset.startsWith(FineTuner.DATASET_PREFIX) && !Files.exists(Path.of(dataset))) {
            throw new IllegalArgumentException("the dataset " + ckpt + " was trained on, " + dataset + ", is gone (moved or deleted?); "
                    + "name where it is now with --data DIR");
        } else if (dataset != null && dataset.startsWith(FineTuner.DATASET_PREFIX)) {
            throw new IllegalArgumentException(ckpt + " was fine-tuned on instruction records ("
                    + dataset.substring(FineTuner.DATASET_PREFIX.length()) + "), not on a dataset folder; give --data, --text or --choices");
        } else if (dataset != null && PreparedDataset.isValid(Path.of(dataset))) {
            s.data = Path.of(dataset);
        } else {
            throw new IllegalArgumentException("the data " + ckpt + " was trained on (" + dataset + ") is not a dataset folder here; "
                    + "give --data, --text or --choices");
        }
        String recorded = meta.datasetFingerprint();  // null in checkpoints of older versions: nothing to compare
        if (recorded != null) {
            try (ShardTrainingData current = ShardTrainingData.open(s.data.toString())) {
                if (!current.isRecordedAs(recorded))
                    throw new IllegalArgumentException("the dataset " + s.data + " has changed since " + ckpt + " was trained on it (then: "
                            + recorded + "; now: " + current.fingerprint() + "); score other data explicitly with --data DIR or --text FILE");
            }
        }
        System.out.println("data: " + s.data + " (the checkpoint's own dataset)");
        return s;
    }

    private int multipleChoice(Path ckpt, ModelConfig cfg, String tokenizer) throws IOException {
        List<List<MultipleChoice.Question>> tasks = new java.util.ArrayList<>();
        for (Path f : source.choices) {  // every file is checked before any scoring
            checkFile("--choices", f, "a JSONL file");  // named with its option, as --text is
            tasks.add(MultipleChoice.read(f, maxQuestions, note -> System.err.println("note: " + note)));
        }
        try (Backend be = backendOptions.open()) {
            LlamaModel model = LlamaModel.forInference(be, cfg);
            Checkpoints.loadWeights(ckpt, model, be);
            Tokenizer tok = Tokenizers.recorded(tokenizer, ckpt);
            MultipleChoice mc = new MultipleChoice(be, model, tok, bos ? prefixToken(ckpt, cfg, tok.eosId()) : -1);
            System.out.printf(Locale.ROOT, "checkpoint %s%n", ckpt);
            double accSum = 0, normSum = 0;
            for (int i = 0; i < tasks.size(); i++) {
                long t0 = System.nanoTime();
                MultipleChoice.Result r;
                try {
                    r = mc.evaluate(tasks.get(i));
                } catch (IllegalArgumentException e) {  // a question the tokenizer cannot score: say which file
                    throw new IllegalArgumentException(source.choices.get(i) + ": " + e.getMessage(), e);
                }
                if (r.truncated() > 0)  // as lm-evaluation-harness does, but it changes what the model is asked: said once per file
                    System.err.printf(Locale.ROOT, "note: %s: contexts cut to fit the model's context of %d tokens in %d of %s "
                            + "(left-truncated, as lm-evaluation-harness does: the start is dropped)%n", source.choices.get(i).getFileName(),
                            cfg.contextLength(), r.truncated(), Plural.of(r.questions(), "question"));
                if (r.answersCut() > 0)
                    System.err.printf(Locale.ROOT, "note: %s: a choice longer than the model's context of %d tokens in %d of %s: "
                            + "its first tokens went unscored%n", source.choices.get(i).getFileName(), cfg.contextLength(), r.answersCut(),
                            Plural.of(r.questions(), "question"));
                System.out.printf(Locale.ROOT, "%s: %s in %.1f s%nacc %.4f ± %.4f, acc_norm %.4f ± %.4f%n",
                        source.choices.get(i).getFileName(), Plural.of(r.questions(), "question"), (System.nanoTime() - t0) / 1e9,
                        r.acc(), r.stderr(r.acc()), r.accNorm(), r.stderr(r.accNorm()));
                accSum += r.acc();
                normSum += r.accNorm();
            }
            if (tasks.size() > 1)
                System.out.printf(Locale.ROOT, "mean over %d files: acc %.4f, acc_norm %.4f%n", tasks.size(), accSum / tasks.size(),
                        normSum / tasks.size());
        }
        return 0;
    }
}
