package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.PatchMode;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.train.Checkpoints;
import dev.patchcore.train.PatchOptions;
import dev.patchcore.train.RunState;
import dev.patchcore.train.ShardTrainingData;
import dev.patchcore.train.TrainConfig;
import dev.patchcore.train.Trainer;
import dev.patchcore.train.TrainingData;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Two-stage patch-level training: the patch stage (K tokens per patch, context K·T) on a fraction λ of the budget, "
                + "then token-level training on the rest with a fresh optimizer and schedule.",
                "With no options: the tiny preset on the bundled corpus, both stages, on CPU unless a GPU is present."})
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--preset", defaultValue = "tiny", description = "model size: tiny, small, 370m, 780m, 1.3b, 2.7b (default: ${DEFAULT-VALUE})")
    String preset;
    @Option(names = "--data", description = "prepared dataset folder (from `prepare`); default: the bundled corpus, byte tokenizer. "
            + "With --resume: where the run's dataset is now, if it moved")
    Path data;
    @Option(names = "--out", description = "run folder for checkpoints and metrics (default: runs/<preset>-<time>)")
    Path out;
    @Option(names = "--resume", description = "continue the run in this folder exactly where it stopped (its saved settings are used)")
    Path resume;
    @Option(names = "--init-from", paramLabel = "RUN_OR_CHECKPOINT", description = "start a new run from these weights instead of a "
            + "random initialization (e.g. continue pretraining a finished run on new data, or branch token stages from one "
            + "patch stage's checkpoint); the model's shape and tokenizer must match, the context may differ")
    Path initFrom;

    @Option(names = {"-K", "--patch-size"}, defaultValue = "4", description = "patch size K (default: ${DEFAULT-VALUE})")
    int patchSize;
    @Option(names = "--lambda", defaultValue = "0.6666667", description = "fraction λ of the budget trained at patch level; 0 = token-level baseline (default: 2/3)")
    double lambda;
    @Option(names = "--patch-mode", defaultValue = "consecutive", paramLabel = "consecutive|mixup",
            description = "how the patch stage forms a patch: K consecutive tokens (the method), or mixup: token t of K "
                    + "different sequences, predicting their tokens t+1 (the baseline of paper App. C) (default: ${DEFAULT-VALUE})")
    String patchMode;
    @Option(names = "--input-proj", description = "patch stage only: the patch embedding is a learned linear map of the K "
            + "token embeddings (initialized to their mean) instead of their mean (paper §3.7, Table 5 '+InputProj')")
    boolean inputProjection;
    @Option(names = "--output-proj", description = "patch stage only: a learned linear map turns the patch representation "
            + "into K token representations (initialized to copies), each predicting its own token through the LM head, "
            + "instead of one distribution for all K (paper §3.7, Table 5 '+OutputProj')")
    boolean outputProjection;
    @Option(names = "--short-patch-context", description = "patch stage only: sequences of T tokens (T/K patches) instead of "
            + "K·T, as many sequences per step as the token stage (the context ablation of paper §3.2)")
    boolean shortPatchContext;
    @Option(names = "--steps", description = "total optimizer steps over both stages (default: 1000 for tiny, 2000 for small, 180000 for paper presets)")
    Long steps;
    @Option(names = "--tokens", converter = TokenCount.class, description = "total token budget instead of --steps "
            + "(360000000000, 3.6e11 and 360B are the same)")
    Long tokens;
    @Option(names = "--epochs", description = "multi-epoch mode (§3.3): N epochs over the data, the first N·λ at patch level")
    Double epochs;
    @Option(names = "--batch", description = "token-stage micro-batch in sequences (default: 16 for tiny/small, 4 for paper presets)")
    Integer batch;
    @Option(names = "--accum", defaultValue = "1", description = "token-stage gradient accumulation steps; the patch stage uses K× fewer sequences per step (default: ${DEFAULT-VALUE})")
    int accum;
    @Option(names = "--context", description = "token-level context T (default: the preset's)")
    Integer context;
    @Option(names = "--vocab", description = "model vocabulary (default: the dataset's; a mismatch is an error)")
    Integer vocab;

    @Option(names = "--lr", defaultValue = "3e-4", description = "peak learning rate (default: ${DEFAULT-VALUE})")
    float lr;
    @Option(names = "--min-lr-ratio", defaultValue = "0.1", description = "cosine decays to lr × this (default: ${DEFAULT-VALUE})")
    float minLrRatio;
    @Option(names = "--warmup", defaultValue = "-1", description = "warmup steps per stage (default: min(2000, stage steps/10))")
    int warmup;
    @Option(names = "--weight-decay", defaultValue = "0.1", description = "AdamW decoupled weight decay, not on norm gains (default: ${DEFAULT-VALUE})")
    float weightDecay;
    @Option(names = "--beta1", defaultValue = "0.9", description = "AdamW first-moment decay (default: ${DEFAULT-VALUE})") float beta1;
    @Option(names = "--beta2", defaultValue = "0.95", description = "AdamW second-moment decay (default: ${DEFAULT-VALUE})") float beta2;
    @Option(names = "--eps", defaultValue = "1e-8", description = "AdamW epsilon (default: ${DEFAULT-VALUE})") float eps;
    @Option(names = "--clip", defaultValue = "1.0", description = "global gradient-norm clipping, 0 = off (default: ${DEFAULT-VALUE})")
    float clip;
    @Option(names = "--seed", defaultValue = "1234", description = "seed of the initialization and the data order (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--eval-every", description = "validate every N steps of a stage (counted from the stage's start) and at its end, 0 = never (default: 100; 1000 for paper presets)")
    Integer evalEvery;
    @Option(names = "--eval-batches", defaultValue = "8", description = "validation micro-batches (default: ${DEFAULT-VALUE})")
    int evalBatches;
    @Option(names = "--save-every", defaultValue = "0", description = "checkpoint every N steps of a stage (counted from the stage's start) besides each stage end (default: 0 = only at stage ends)")
    int saveEvery;
    @Option(names = "--log-every", defaultValue = "10", description = "console line every N steps (default: ${DEFAULT-VALUE})")
    int logEvery;
    @Option(names = "--recompute", description = "activation recompute per layer: keep only each layer's inputs in the forward "
            + "and run the layer again in the backward (all but one layer's activations saved, for about a third more "
            + "compute; gradients unchanged); a memory setting, so also allowed with --resume")
    boolean recompute;
    @Option(names = "--devices", split = ",", paramLabel = "ID", description = "data parallelism over these GPUs (ordinals, e.g. "
            + "0,1,2,3; default: 0 alone): each step's micro-batches are dealt out over them and their gradients summed, so a "
            + "step is the same as on one GPU; every stage needs at least one micro-batch per device. With --backend cpu, "
            + "that many CPU replicas take turns (for testing)")
    List<Integer> devices;
    @Option(names = "--stop-after", hidden = true, description = "save and stop after this many steps overall (simulates an interruption)")
    Long stopAfter;

    @Mixin BackendOptions backendOptions;
    @Spec CommandSpec spec;

    /** The options a resumed run takes; all others are its saved settings. */
    private static final java.util.Set<String> RESUME_OPTIONS = java.util.Set.of("--resume", "--data", "--recompute", "--backend", "--cublaslt", "--devices", "--stop-after");

    /** This command's lock on the run folder (null until taken): released when the command ends, however it ends. */
    private dev.patchcore.train.RunLock runLock;

    @Override
    public Integer call() {
        try {
            return train();
        } finally {
            if (runLock != null) runLock.close();
        }
    }

    private int train() {
        Checkpoints.Meta resumed = null;
        Path runDir;
        Path checkpoint = null;
        TrainConfig cfg;
        TrainingData dataset;
        PatchMode mode = PatchMode.parse(patchMode);  // a bad value is refused before any data is opened
        Path init = null;
        if (resume != null && initFrom != null) throw new IllegalArgumentException("--init-from starts a new run; --resume continues one");
        if (resume != null) {
            List<String> changed = spec.commandLine().getParseResult().matchedOptions().stream()
                    .map(o -> o.longestName()).filter(n -> !RESUME_OPTIONS.contains(n)).toList();
            if (!changed.isEmpty())
                throw new IllegalArgumentException(String.join(", ", changed) + (changed.size() == 1 ? " is" : " are")
                        + " not taken with --resume: a run continues with its saved settings (only --recompute, --devices, --backend "
                        + "and --cublaslt may change, and --data may say where its dataset now is); to train on from its weights with new settings, start a new run with --init-from " + resume);
            if (!Checkpoints.exists(resume) && Files.isRegularFile(resume.resolve(Checkpoints.MODEL)))
                throw new IllegalArgumentException("--resume takes the run folder, not one of its checkpoints: --resume "
                        + resume.toAbsolutePath().normalize().getParent().getParent());
            if (Checkpoints.isCheckpointsFolder(resume))
                throw new IllegalArgumentException("--resume takes the run folder, not its checkpoints folder: --resume "
                        + resume.toAbsolutePath().normalize().getParent());
            // Locked before its checkpoint is read, which a process still training there would replace
            if (Checkpoints.exists(resume)) runLock = dev.patchcore.train.RunLock.acquire(resume);
            checkpoint = Checkpoints.latest(resume);
            resumed = Checkpoints.readMeta(checkpoint);
            if (resumed.dataset() != null && resumed.dataset().startsWith(dev.patchcore.train.FineTuner.DATASET_PREFIX))
                throw new IllegalArgumentException(resume + " is a fine-tuning run (finetune), which cannot be resumed; "
                        + "fine-tune its checkpoint again into a new folder");
            runDir = resume;
            cfg = resumed.train();
            if (resumed.state().globalStep() >= cfg.steps()) {
                System.out.printf(Locale.ROOT, "%s has finished: all %d steps are done (checkpoint %s); to train on from its weights, "
                        + "start a new run with --init-from %s%n", resume, cfg.steps(), checkpoint, resume);
                return 0;
            }
            // --data: where the run's dataset is now (moved, or recorded relative to another folder by an older version)
            if (data == null && !ShardTrainingData.BUNDLED.equals(resumed.dataset()) && !Files.isDirectory(Path.of(resumed.dataset())))
                throw new IllegalArgumentException("the run's dataset " + resumed.dataset() + " is not there (moved? name where it is "
                        + "now with --data)");
            dataset = ShardTrainingData.open(data != null ? datasetArg(data) : resumed.dataset());
            if (data != null) System.out.println("dataset: " + dataset.description() + " (the run recorded " + resumed.dataset() + ")");
            if (!dataset.isRecordedAs(resumed.datasetFingerprint()))
                throw new IllegalArgumentException("dataset " + dataset.description() + " is not the data this run was trained on (it was "
                        + resumed.datasetFingerprint() + "; it is " + dataset.fingerprint() + "); resume on that data (--data names "
                        + "where it is now), or start a new run from the checkpoint with --init-from " + resume);
            if (dataset.vocabSize() != cfg.model().vocabSize())
                throw new IllegalArgumentException("dataset " + dataset.description() + " has vocabulary " + dataset.vocabSize()
                        + " but the checkpoint's model has " + cfg.model().vocabSize());
            if (resumed.tokenizer() != null && !resumed.tokenizer().equals(dataset.tokenizer()))
                throw new IllegalArgumentException("dataset " + dataset.description() + " is now tokenized with " + dataset.tokenizer()
                        + " but the run was trained on " + resumed.tokenizer() + "; prepare it again with that tokenizer");
        } else {
            if (out != null && Files.exists(out) && !Files.isDirectory(out))
                throw new IllegalArgumentException("--out " + out + " exists and is not a folder");
            ModelConfig model = ModelConfig.preset(preset);
            boolean paper = model.vocabSize() != 257;
            dataset = ShardTrainingData.open(data == null ? ShardTrainingData.BUNDLED : datasetArg(data));
            if (vocab != null && vocab != dataset.vocabSize())
                throw new IllegalArgumentException("--vocab " + vocab + " does not match the dataset's vocabulary " + dataset.vocabSize()
                        + " (tokenizer " + dataset.tokenizer() + ")");
            model = model.withVocab(dataset.vocabSize());
            if (context != null) model = model.withContext(context);
            if (initFrom != null) {
                init = Checkpoints.latest(initFrom);
                ModelConfig from = Checkpoints.readModelConfig(init);
                if (from.dim() != model.dim() || from.ffnDim() != model.ffnDim() || from.layers() != model.layers()
                        || from.heads() != model.heads() || from.vocabSize() != model.vocabSize()
                        || from.ropeTheta() != model.ropeTheta() || from.normEps() != model.normEps())
                    throw new IllegalArgumentException("--init-from " + init + " holds a model of " + from.layers() + " layers, d=" + from.dim()
                            + ", vocab " + from.vocabSize() + ", but this run's is " + model.layers() + " layers, d=" + model.dim()
                            + ", vocab " + model.vocabSize() + " (choose the same --preset and data tokenizer)");
                String tok = Checkpoints.readMeta(init).tokenizer();
                if (tok != null && !tok.equals(dataset.tokenizer()))
                    throw new IllegalArgumentException("--init-from " + init + " was trained with tokenizer " + tok + ", the data is "
                            + dataset.tokenizer());
            }
            int b = batch != null ? batch : paper ? 4 : 16;
            long total = budget(model, b, paper, dataset);
            cfg = new TrainConfig(model, patchSize, lambda, total, b, accum, lr, minLrRatio, warmup, weightDecay, beta1, beta2, eps, clip,
                    seed, evalEvery != null ? evalEvery : paper ? 1000 : 100, evalBatches, saveEvery, logEvery,
                    new PatchOptions(mode, inputProjection, outputProjection, shortPatchContext)).checkRecipe().requireBothStages();
            runDir = out != null ? out : Path.of("runs", preset + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
            if (Checkpoints.exists(runDir))
                throw new IllegalArgumentException(runDir + " already holds a run; continue it with --resume " + runDir + " or choose another --out");
            String held = contents(runDir);
            if (!held.isEmpty())
                throw new IllegalArgumentException("--out " + runDir + " is not empty (it holds " + held + "); a new run needs a new "
                        + "or empty folder: choose another --out");
        }

        List<dev.patchcore.train.Stage> plan = dev.patchcore.train.Stage.plan(cfg);
        List<Backend> backends = backendOptions.openDevices(devices);
        try {
            Backend be = backends.getFirst();
            List<Backend> replicaBackends = backends.subList(1, backends.size());
            // Every stage still to run needs a micro-batch per device (checked once the devices are known to open).
            for (dev.patchcore.train.Stage st : plan.subList(resumed == null ? 0 : Math.min(resumed.state().stageIndex(), plan.size()), plan.size()))
                if (st.accum() < backends.size())
                    throw new IllegalArgumentException("--devices " + BackendOptions.list(devices) + " needs at least " + backends.size()
                            + " micro-batches per step in each stage; the " + st.name() + " stage has " + st.accum()
                            + (resumed == null ? " (" + accumAdvice(cfg, backends.size()) + ")" : " (use fewer devices for this run)"));
            BackendOptions.printReplicas(backends, devices);
            ModelConfig m = cfg.model();
            System.out.printf(Locale.ROOT, "model %s: %d layers, d=%d, ffn=%d, %d heads, vocab %d, T=%d, %.2fM parameters%n",
                    m.name(), m.layers(), m.dim(), m.ffnDim(), m.heads(), m.vocabSize(), m.contextLength(), m.parameterCount() / 1e6);
            System.out.printf(Locale.ROOT, "data %s (%s tokenizer, %d training tokens); run folder %s%n", dataset.description(), dataset.tokenizer(), dataset.trainTokens(), runDir);
            System.out.printf(Locale.ROOT, "budget %d steps × %d tokens: patch stage %d steps (K=%d, λ=%.3f), token stage %d steps%n",
                    cfg.steps(), cfg.tokensPerStep(), cfg.patchSteps(), cfg.patchSize(), cfg.lambda(), cfg.tokenSteps());
            boolean multiEpoch = resumed == null ? epochs != null : resumed.multiEpoch();
            boolean oneStage = cfg.patchSteps() == 0 || cfg.tokenSteps() == 0;
            String level = cfg.patchSteps() == 0 ? "token level only" : "patch level only";
            double passes = (double) cfg.steps() * cfg.tokensPerStep() / dataset.trainTokens();
            System.out.printf(Locale.ROOT, multiEpoch && oneStage ? "multi-epoch mode (§3.3): %.2f epochs over the data, at " + level + "%n"
                    : multiEpoch ? "multi-epoch mode (§3.3): %.2f epochs over the data, the first %.0f%% of them at patch level; both stages read all of it%n"
                    : oneStage ? "single pass over the training tokens, at " + level + "%n"
                    : "single pass: the patch stage reads the first %2$.0f%% of the training tokens, the token stage the rest%n",
                    passes, 100.0 * cfg.patchSteps() / cfg.steps());
            if (!multiEpoch && passes > 1.0)
                System.out.printf(Locale.ROOT, "note: the budget reads %.1f times as many tokens as the data holds, so each stage "
                        + "reads its part of the data %.1f times over; fewer --steps fit one pass, and --epochs %.1f is the paper's "
                        + "multi-epoch mode (§3.3), in which both stages read all of the data%n", passes, passes, passes);
            LlamaModel model = new LlamaModel(be, m);
            model.setRecompute(recompute);
            if (recompute) System.out.println("activation recompute: on (each layer runs again in the backward)");
            RunState state;
            if (resumed != null) {
                Checkpoints.loadWeights(checkpoint, model, be);
                state = resumed.state();
                System.out.println("resuming from " + checkpoint + " at " + state.globalStep() + " steps");
            } else if (init != null) {
                Checkpoints.loadWeights(init, model, be);
                state = RunState.start();
                System.out.println("initialized from " + init + " (a new run: fresh optimizer and schedule)");
            } else {
                model.initialize(be, cfg.seed());
                state = RunState.start();
            }
            List<dev.patchcore.train.StepRunner.Replica> replicas = new java.util.ArrayList<>();
            for (Backend rb : replicaBackends) replicas.add(dev.patchcore.train.StepRunner.Replica.copyOf(be, model, rb));
            madeRunFolder = !Files.exists(runDir, java.nio.file.LinkOption.NOFOLLOW_LINKS);
            Files.createDirectories(runDir);
            if (runLock == null) runLock = dev.patchcore.train.RunLock.acquire(runDir);
            Trainer trainer = new Trainer(be, cfg, dataset, runDir, System.out, multiEpoch).withReplicas(replicas);
            if (stopAfter != null) trainer.stopAfter(stopAfter);
            // Ctrl-C or SIGTERM: finish the current step, save a checkpoint and print the summary, then let the JVM exit.
            java.util.concurrent.CountDownLatch summarized = new java.util.concurrent.CountDownLatch(1);
            Thread hook = new Thread(() -> {
                trainer.requestStop();
                try { summarized.await(600, java.util.concurrent.TimeUnit.SECONDS); } catch (InterruptedException ignored) { /* exiting anyway */ }
            });
            Runtime.getRuntime().addShutdownHook(hook);
            try {
                List<Trainer.StageResult> results;
                try {
                    results = trainer.run(model, state, checkpoint);
                } catch (dev.patchcore.backend.cuda.GpuOutOfMemoryException e) {
                    List<String> hints = new java.util.ArrayList<>();
                    if (resumed == null) hints.add("a smaller --batch with a larger --accum keeps the tokens per step");
                    if (!recompute) hints.add("--recompute keeps one layer's activations instead of all");
                    throw new IllegalArgumentException(e.getMessage() + (hints.isEmpty() ? "" : "; " + String.join("; ", hints)), e);
                }
                try { Runtime.getRuntime().removeShutdownHook(hook); } catch (IllegalStateException ignored) { /* shutting down */ }
                for (Trainer.StageResult r : results)
                    System.out.printf(Locale.ROOT, "%s stage: %s, loss %.4f → %.4f, %s, %.0f tokens/s%n",
                            r.stage(), r.stepsText(), r.firstLoss(), r.lastLoss(),
                            r.validationText(), r.tokensPerSecond());
                System.out.println("checkpoint: " + Checkpoints.latest(runDir) + "   metrics: " + runDir.resolve("metrics.jsonl"));
            } finally {
                summarized.countDown();
            }
            return 0;
        } catch (java.io.IOException e) {
            removeIfUnused(runDir);
            throw new java.io.UncheckedIOException(e);
        } catch (RuntimeException | Error e) {
            removeIfUnused(runDir);
            throw e;
        } finally {
            BackendOptions.closeAll(backends);
        }
    }

    /** Whether this command created the run folder (it did not exist, not even as a link). */
    private boolean madeRunFolder;

    /**
     * After a failure: removes the run folder this command made if the run left nothing in it (it failed before its
     * first step: no checkpoint, an empty metrics log). A run that trained keeps its folder and its metrics, the record
     * of what went wrong.
     */
    private void removeIfUnused(Path runDir) {
        // Only with this command's lock: a folder another process locked is that process's, even if this one made it.
        if (!madeRunFolder || runLock == null || Checkpoints.exists(runDir)) return;
        try {
            runLock.close();
            runLock = null;
            dev.patchcore.train.RunLock.deleteFile(runDir);
            Path metrics = runDir.resolve("metrics.jsonl");
            if (Files.exists(metrics) && Files.size(metrics) > 0) return;
            Files.deleteIfExists(metrics);
            Files.deleteIfExists(Checkpoints.root(runDir));  // only if empty (else DirectoryNotEmptyException)
            Files.deleteIfExists(runDir);
        } catch (java.io.IOException ignored) { /* a folder with anything else in it stays */ }
    }

    /** The smallest --accum that gives every stage a micro-batch per device (the patch stage has K times fewer sequences). */
    private static String accumAdvice(TrainConfig cfg, int devices) {
        for (int a = cfg.accum() + 1; a <= 1 << 16; a++) {
            try {
                TrainConfig c = cfg.withAccum(a);
                if (dev.patchcore.train.Stage.plan(c).stream().allMatch(st -> st.accum() >= devices)) return "raise --accum to " + a;
            } catch (IllegalArgumentException notDivisible) {
                // batch × accum must be divisible by K: try the next
            }
        }
        return "raise --accum";
    }

    /** A --data value as recorded: "bundled", or the folder's absolute path (so --resume and eval find it from any folder). */
    private static String datasetArg(Path data) {
        return data.toString().equals(ShardTrainingData.BUNDLED) ? ShardTrainingData.BUNDLED : data.toAbsolutePath().normalize().toString();
    }

    /** What a folder holds, for a message: up to three names, or "" if it is empty or does not exist. */
    private static String contents(Path dir) {
        if (!Files.isDirectory(dir)) return "";
        try (var s = Files.list(dir)) {
            List<String> names = s.map(p -> p.getFileName().toString()).filter(n -> !n.equals(dev.patchcore.train.RunLock.FILE)).sorted().toList();
            return names.size() <= 3 ? String.join(", ", names) : String.join(", ", names.subList(0, 3)) + " and " + (names.size() - 3) + " more";
        } catch (java.io.IOException e) {
            return "";
        }
    }

    private long budget(ModelConfig model, int b, boolean paper, TrainingData dataset) {
        int given = (steps != null ? 1 : 0) + (tokens != null ? 1 : 0) + (epochs != null ? 1 : 0);
        if (given > 1) throw new IllegalArgumentException("give only one of --steps, --tokens, --epochs");
        long perStep = (long) b * accum * model.contextLength();
        if (steps != null) return steps;
        if (tokens != null) {
            if (tokens < 1) throw new IllegalArgumentException("--tokens must be positive");
            return Math.max(1, tokens / perStep);
        }
        if (epochs != null) {
            if (!(epochs > 0)) throw new IllegalArgumentException("--epochs must be positive");
            return Math.max(1, Math.round(epochs * dataset.trainTokens() / perStep));
        }
        return paper ? 180_000 : model.name().equals("small") ? 2000 : 1000;
    }
}
