package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cuda.GpuOutOfMemoryException;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.PatchMode;
import dev.patchcore.data.Plural;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.train.Checkpoints;
import dev.patchcore.train.HuggingFaceModel;
import dev.patchcore.train.ModelFlops;
import dev.patchcore.train.FineTuner;
import dev.patchcore.train.PatchOptions;
import dev.patchcore.train.RunLock;
import dev.patchcore.train.RunState;
import dev.patchcore.train.ShardTrainingData;
import dev.patchcore.train.Stage;
import dev.patchcore.train.StepRunner;
import dev.patchcore.train.TrainConfig;
import dev.patchcore.train.Trainer;
import dev.patchcore.train.TrainingData;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
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
    @Option(names = "--out", description = "run folder for checkpoints and metrics, new or empty (default: runs/<preset>-<time>, or -2, -3, ... "
            + "after it where a run of the same second has that name)")
    Path out;
    @Option(names = "--resume", description = "continue the run in this folder exactly where it stopped (its saved settings are used)")
    Path resume;
    @Option(names = "--init-from", paramLabel = "RUN_OR_CHECKPOINT", description = "start a new run from these weights instead of a "
            + "random initialization (e.g. continue pretraining a finished run on new data, or branch token stages from one "
            + "patch stage's checkpoint; also a Hugging Face LLaMA folder); without --preset the run takes its model, context "
            + "included (--context sets another); the tokenizer must be the data's")
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
    @Option(names = "--context", description = "token-level context T (default: the preset's, or the --init-from model's; "
            + "for a Hugging Face folder its max_position_embeddings, at most " + HuggingFaceModel.DEFAULT_CONTEXT + ")")
    Integer context;
    @Option(names = "--vocab", description = "model vocabulary (default: the dataset's; a mismatch is an error)")
    Integer vocab;
    @Option(names = "--kv-heads", description = "key/value heads, each serving heads / N query heads (grouped-query attention; "
            + "default: as many as query heads, the paper's multi-head attention)")
    Integer kvHeads;
    @Option(names = "--tie-embeddings", negatable = true, description = "one matrix as the input embedding and the LM head "
            + "(Hugging Face's tie_word_embeddings, as in LLaMA-3.2 and SmolLM); --no-tie-embeddings gives a tied --init-from "
            + "model its own LM head, a copy of the embedding (default: the --init-from model's, else two matrices as in the paper)")
    Boolean tieEmbeddings;

    @Option(names = "--lr", defaultValue = "3e-4", description = "peak learning rate (default: ${DEFAULT-VALUE})")
    float lr;
    @Option(names = "--min-lr-ratio", defaultValue = "0.1", description = "cosine decays to lr × this (default: ${DEFAULT-VALUE})")
    float minLrRatio;
    @Option(names = "--warmup", description = "warmup steps per stage (default: min(2000, stage steps/10))")
    Integer warmup;
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
            + "0,1,2,3; default: the one backend --backend picks; 0 alone is GPU 0, never the CPU): each step's micro-batches are dealt out over them and their gradients summed, so a "
            + "step is the same as on one GPU; every stage needs at least one micro-batch per device. With --backend cpu, "
            + "that many CPU replicas take turns (for testing)")
    List<Integer> devices;
    @Option(names = "--peak-tflops", paramLabel = "X", description = "each device's peak in TFLOP/s for the model FLOPs "
            + "utilization (MFU) the log prints (default: the GPU's dense bf16 peak from NVIDIA's data sheets where known: "
            + "H100, H200, GH200, A100; none on the CPU)")
    Double peakTflops;
    @Option(names = "--stop-after", hidden = true, description = "save and stop after this many steps overall (simulates an interruption)")
    Long stopAfter;

    @Mixin BackendOptions backendOptions;
    @Spec CommandSpec spec;

    /** The options a resumed run takes; all others are its saved settings. */
    private static final Set<String> RESUME_OPTIONS = Set.of("--resume", "--data", "--recompute", "--backend", "--cublaslt", "--devices",
            "--stop-after", "--eval-every", "--save-every", "--log-every", "--peak-tflops");

    /** This command's lock on the run folder (null until taken): released when the command ends, however it ends. */
    private RunLock runLock;

    @Override
    public Integer call() {
        try {
            return train();
        } finally {
            if (runLock != null) runLock.close();
        }
    }

    /**
     * What this command trains: the run folder, its settings and data; for a resumed run the checkpoint it continues
     * from and that checkpoint's meta ({@code resumed}), for a new one the --init-from checkpoint ({@code init}), else null.
     */
    private record RunSetup(Path runDir, TrainConfig cfg, TrainingData dataset, Path checkpoint, Checkpoints.Meta resumed, Path init) {}

    private int train() {
        PatchMode mode = PatchMode.parse(patchMode);  // a bad value is refused before any data is opened
        ModelFlops.checkPeakOption(peakTflops);
        if (resume != null && initFrom != null) throw new IllegalArgumentException("--init-from starts a new run; --resume continues one");
        RunSetup run;
        if (resume != null) {
            run = resumeRun();
            if (run == null) return 0;  // the run has finished
        } else {
            run = newRun(mode);
        }
        Path runDir = run.runDir();
        TrainConfig cfg = run.cfg();
        List<Stage> plan = Stage.plan(cfg);
        boolean multiEpoch = run.resumed() == null ? epochs != null : run.resumed().multiEpoch();
        // Data too short for a stage's windows is refused here, before the backend's and the plan's lines.
        Trainer.requireTrainingWindows(cfg, run.dataset(), multiEpoch, run.resumed() == null ? 0 : run.resumed().state().stageIndex());
        List<Backend> backends = backendOptions.openDevices(devices);
        try {
            Backend be = backends.getFirst();
            List<Backend> replicaBackends = backends.subList(1, backends.size());
            requireMicroBatchPerDevice(plan, run, backends.size());
            run = claimRunFolder(run);
            runDir = run.runDir();
            initNotes.forEach(System.err::println);
            BackendOptions.printReplicas(backends, devices);
            printPlan(run, multiEpoch);
            LlamaModel model = new LlamaModel(be, cfg.model());
            model.setRecompute(recompute);
            if (recompute) System.out.println("activation recompute: on (each layer runs again in the backward)");
            RunState state = loadWeights(run, model, be);
            List<StepRunner.Replica> replicas = new ArrayList<>();
            for (Backend rb : replicaBackends) replicas.add(StepRunner.Replica.copyOf(be, model, rb));
            Trainer trainer = new Trainer(be, cfg, run.dataset(), runDir, System.out, multiEpoch).withReplicas(replicas);
            if (stopAfter != null) trainer.stopAfter(stopAfter);
            if (peakTflops != null) trainer.withPeakTflops(peakTflops);
            trainWithStopHook(trainer, model, state, run);
            return 0;
        } catch (RuntimeException | Error e) {
            removeIfUnused(runDir);
            throw e;
        } finally {
            BackendOptions.closeAll(backends);
        }
    }

    /**
     * --resume: the run in that folder with its saved settings, after checking that the options, folder and data fit it
     * (and locking it); null if the run has finished (said so on the console).
     */
    private RunSetup resumeRun() {
        List<String> changed = spec.commandLine().getParseResult().matchedOptions().stream()
                .filter(o -> !RESUME_OPTIONS.contains(o.longestName()))
                .map(o -> o.negatable() && Boolean.FALSE.equals(o.getValue()) ? "--no-" + o.longestName().substring(2) : o.longestName())
                .toList();
        if (!changed.isEmpty())
            throw new IllegalArgumentException(String.join(", ", changed) + (changed.size() == 1 ? " is" : " are")
                    + " not taken with --resume: a run continues with its saved settings (only --recompute, --devices, --backend, "
                    + "--cublaslt, --eval-every, --save-every, --log-every and --peak-tflops may change, and --data may say where its dataset now is); "
                    + "to train on from its weights with new settings, start a new run with --init-from " + resume);
        // Weights but no run: a Hugging Face folder (its meta has no run state), or a checkpoint (a run's, or one copied out)
        if (!Checkpoints.exists(resume) && HuggingFaceModel.is(resume))
            throw new IllegalArgumentException(resume + " is a Hugging Face model folder, not a run folder; to train on from its "
                    + "weights, start a new run with --init-from " + resume);
        if (!Checkpoints.exists(resume) && Files.isRegularFile(resume.resolve(Checkpoints.MODEL))) {
            Path parent = resume.toAbsolutePath().normalize().getParent();
            if (parent != null && Checkpoints.isCheckpointsFolder(parent))
                throw new IllegalArgumentException("--resume takes the run folder, not one of its checkpoints: --resume " + parent.getParent());
            throw new IllegalArgumentException(resume + " is a checkpoint folder, not a run folder; to train on from its weights, "
                    + "start a new run with --init-from " + resume);
        }
        if (Checkpoints.isCheckpointsFolder(resume))
            throw new IllegalArgumentException("--resume takes the run folder, not its checkpoints folder: --resume "
                    + resume.toAbsolutePath().normalize().getParent());
        String missing = Checkpoints.missingLatest(resume);
        if (missing != null) throw new IllegalArgumentException(missing);
        if (!Checkpoints.exists(resume) && Files.isRegularFile(resume.resolve("metrics.jsonl"))) {
            requireNotInUse(resume);  // a run training there has no checkpoint yet either
            if (isEmptyFile(resume.resolve("metrics.jsonl")))
                throw new IllegalArgumentException(resume + " holds no checkpoint: its run stopped before its first step; start "
                        + "it again as a new run with --out " + resume);
            throw new IllegalArgumentException(resume + " holds no checkpoint: its run stopped before saving one (metrics.jsonl "
                    + "records how far it got); start it again as a new run (delete the folder, or choose another --out)");
        }
        // Locked before its checkpoint is read, which a process still training there would replace
        if (Checkpoints.exists(resume)) runLock = RunLock.acquire(resume);
        Path checkpoint = Checkpoints.latest(resume);
        Checkpoints.Meta resumed = Checkpoints.readMeta(checkpoint);
        if (resumed.dataset() == null)  // every version records it: damaged, or edited by hand
            throw new IllegalArgumentException(checkpoint.resolve(Checkpoints.TRAINER) + " is not a complete trainer.json (no 'dataset')");
        if (resumed.dataset().startsWith(FineTuner.DATASET_PREFIX))
            throw new IllegalArgumentException(resume + " is a fine-tuning run (finetune), which cannot be resumed; "
                    + "fine-tune its checkpoint again into a new folder");
        TrainConfig cfg = resumed.train();
        ParseResult parsed = spec.commandLine().getParseResult();
        if (parsed.hasMatchedOption("--eval-every") || parsed.hasMatchedOption("--save-every") || parsed.hasMatchedOption("--log-every"))
            cfg = cfg.withCadence(evalEvery != null ? evalEvery : cfg.evalEvery(),
                    parsed.hasMatchedOption("--save-every") ? saveEvery : cfg.saveEvery(),
                    parsed.hasMatchedOption("--log-every") ? logEvery : cfg.logEvery());
        if (resumed.state().globalStep() >= cfg.steps()) {
            System.out.printf(Locale.ROOT, "%s has finished: all %d steps are done (checkpoint %s); to train on from its weights, "
                    + "start a new run with --init-from %s%n", resume, cfg.steps(), checkpoint, resume);
            return null;
        }
        // --data: where the run's dataset is now (moved, or recorded relative to another folder by an older version)
        if (data == null && !ShardTrainingData.BUNDLED.equals(resumed.dataset()) && !Files.isDirectory(Path.of(resumed.dataset())))
            throw new IllegalArgumentException("the run's dataset " + resumed.dataset() + " is not there (moved? name where it is "
                    + "now with --data)");
        TrainingData dataset = ShardTrainingData.open(data != null ? datasetArg(data) : resumed.dataset());
        if (!dataset.isRecordedAs(resumed.datasetFingerprint()))
            throw new IllegalArgumentException("dataset " + dataset.description() + " is not the data this run was trained on (it was "
                    + resumed.datasetFingerprint() + "; it is " + dataset.fingerprint() + "); resume on that data (--data names "
                    + "where it is now), or start a new run from the checkpoint with --init-from " + resume);
        if (dataset.vocabSize() != cfg.model().vocabSize())
            throw new IllegalArgumentException("dataset " + dataset.description() + " has vocabulary " + dataset.vocabSize()
                    + " but the checkpoint's model has " + cfg.model().vocabSize());
        if (data != null) System.out.println("dataset: " + dataset.description() + " (the run recorded " + resumed.dataset() + ")");
        if (resumed.tokenizer() != null && !resumed.tokenizer().equals(dataset.tokenizer()))
            throw new IllegalArgumentException("dataset " + dataset.description() + " is now tokenized with " + dataset.tokenizer()
                    + " but the run was trained on " + resumed.tokenizer() + "; prepare it again with that tokenizer");
        return new RunSetup(resume, cfg, dataset, checkpoint, resumed, null);
    }

    /** A new run from the options, in a new or empty folder (--out, or runs/&lt;preset&gt;-&lt;time&gt;). */
    private RunSetup newRun(PatchMode mode) {
        if (out != null && Files.exists(out) && !Files.isDirectory(out))
            throw new IllegalArgumentException("--out " + out + " exists and is not a folder");
        // The folder is made only once the run starts; a path through a file is said now, before the plan is printed
        for (Path p = out == null ? null : out.toAbsolutePath().getParent(); p != null; p = p.getParent())
            if (Files.exists(p)) {
                if (!Files.isDirectory(p))
                    throw new IllegalArgumentException("cannot create the --out folder " + out + ": " + p + " is a file, not a folder");
                break;
            }
        // With --init-from and no --preset, the model is the checkpoint's (a Hugging Face folder's config.json included).
        boolean presetGiven = spec.commandLine().getParseResult().hasMatchedOption("--preset");
        Path initDir = initFrom == null ? null : Checkpoints.latest(initFrom);
        ModelConfig initModel = initDir == null ? null : Checkpoints.readModelConfig(initDir);  // read once
        ModelConfig model = initDir != null && !presetGiven ? initModel : ModelConfig.preset(preset);
        boolean paper = isPaperPreset(model);
        TrainingData dataset = ShardTrainingData.open(data == null ? ShardTrainingData.BUNDLED : datasetArg(data));
        if (vocab != null && vocab != dataset.vocabSize())
            throw new IllegalArgumentException("--vocab " + vocab + " does not match the dataset's vocabulary " + dataset.vocabSize()
                    + " (tokenizer " + dataset.tokenizer() + ")");
        model = model.withVocab(dataset.vocabSize());
        if (context != null) model = model.withContext(context);
        else if (initDir != null && !presetGiven) model = CheckpointArg.workingContext(model, initDir, null, initNotes::add);
        if (kvHeads != null) model = withKvHeads(model, kvHeads);
        // Tied or not as asked, else as the --init-from model is (a --preset has two matrices).
        if (tieEmbeddings != null) model = model.withTiedEmbeddings(tieEmbeddings);
        else if (initDir != null) model = model.withTiedEmbeddings(initModel.tiedEmbeddings());
        Path init = initDir == null ? null : initCheckpoint(initDir, initModel, model, dataset);
        int b = batch != null ? batch : paper ? 4 : 16;
        long total = budget(model, b, paper, dataset);
        if (warmup != null && warmup < 0) throw new IllegalArgumentException("--warmup must not be negative (got " + warmup + ")");
        TrainConfig cfg = new TrainConfig(model, patchSize, lambda, total, b, accum, lr, minLrRatio, warmup != null ? warmup : -1, weightDecay, beta1, beta2, eps, clip,
                seed, evalEvery != null ? evalEvery : paper ? 1000 : 100, evalBatches, saveEvery, logEvery,
                new PatchOptions(mode, inputProjection, outputProjection, shortPatchContext)).checkRecipe().requireBothStages();
        String label = initDir != null && !presetGiven ? model.name() : preset;
        Path runDir = out;
        if (out == null) {  // runs/<preset>-<time>, or -2, -3, ... after it where a run of the same second has it
            defaultRunName = Path.of("runs", label + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
            runDir = freeRunFolder(defaultRunName);
        }
        if (Checkpoints.exists(runDir))
            throw new IllegalArgumentException(runDir + " already holds a run; continue it with --resume " + runDir + " or choose another --out");
        String missing = Checkpoints.missingLatest(runDir);
        if (missing != null) throw new IllegalArgumentException(missing + "; continue it with --resume " + runDir + " then");
        String held = contents(runDir);
        if (held.equals("metrics.jsonl") && isEmptyFile(runDir.resolve("metrics.jsonl"))) {
            requireNotInUse(runDir);  // a run starting there has logged nothing yet
            held = "";  // stopped before its first step: nothing to keep, the new run starts there
        }
        if (held.equals("metrics.jsonl") || held.equals("checkpoints, metrics.jsonl")) {
            requireNotInUse(runDir);  // a run training there has no checkpoint yet either
            throw new IllegalArgumentException("--out " + runDir + " holds the metrics.jsonl of a run that stopped before its first "
                    + "checkpoint (nothing to resume); delete the folder to start again there, or choose another --out");
        }
        if (!held.isEmpty())
            throw new IllegalArgumentException("--out " + runDir + " is not empty (it holds " + held + "); a new run needs a new "
                    + "or empty folder: choose another --out");
        return new RunSetup(runDir, cfg, dataset, null, null, init);
    }

    /** {@code m} with --kv-heads {@code kv} (also bench speed's), refused in one line naming the option. */
    static ModelConfig withKvHeads(ModelConfig m, int kv) {
        if (kv < 1) throw new IllegalArgumentException("--kv-heads must be positive");
        try {
            return m.withKvHeads(kv);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--kv-heads: " + e.getMessage());
        }
    }

    /**
     * Notes on the --init-from folder for standard error, said once the run starts: bad input found after them is then
     * the one line an error is.
     */
    private final List<String> initNotes = new ArrayList<>();

    /** The --init-from checkpoint, once its model's shape and tokenizer are known to match this run's. */
    private Path initCheckpoint(Path init, ModelConfig from, ModelConfig model, TrainingData dataset) {
        String tok = Checkpoints.readMeta(init).tokenizer();
        List<String> differ = new ArrayList<>();
        if (from.layers() != model.layers()) differ.add("layers " + from.layers() + " vs " + model.layers());
        if (from.dim() != model.dim()) differ.add("d " + from.dim() + " vs " + model.dim());
        if (from.ffnDim() != model.ffnDim()) differ.add("ffn " + from.ffnDim() + " vs " + model.ffnDim());
        if (from.heads() != model.heads()) differ.add("heads " + from.heads() + " vs " + model.heads());
        if (from.groups() != model.groups()) differ.add("key/value heads " + from.kvHeads() + " vs " + model.kvHeads());
        if (!from.rope().equals(model.rope())) differ.add("RoPE " + from.rope().describe() + " vs " + model.rope().describe());
        // Tied into untied is a copy of the embedding; untied into tied would have to drop a trained LM head.
        if (!from.tiedEmbeddings() && model.tiedEmbeddings()) differ.add("its own LM head vs tied embeddings");
        if (from.normEps() != model.normEps()) differ.add("RMSNorm eps " + from.normEps() + " vs " + model.normEps());
        if (!differ.isEmpty())
            throw new IllegalArgumentException("--init-from " + init + " holds another model than this run's (" + String.join(", ", differ)
                    + ")" + shapeAdvice());
        if (from.vocabSize() != model.vocabSize())
            throw new IllegalArgumentException("--init-from " + init + " has a vocabulary of " + from.vocabSize() + "; the data ("
                    + dataset.description() + ", tokenizer " + dataset.tokenizer() + ") has " + model.vocabSize() + ": prepare the data "
                    + "with the checkpoint's tokenizer");
        if (tok != null && !tok.equals(dataset.tokenizer()))
            throw new IllegalArgumentException("--init-from " + init + " was trained with tokenizer " + tok + ", the data is "
                    + dataset.tokenizer());
        if (tok == null && HuggingFaceModel.is(init)) initNotes.add(HuggingFaceModel.noTokenizerNote(init));
        return init;
    }

    /** For a model other than the --init-from checkpoint's: the shape options given, which a new run could leave out. */
    private String shapeAdvice() {
        List<String> given = new ArrayList<>();
        if (spec.commandLine().getParseResult().hasMatchedOption("--preset")) given.add("--preset");
        if (kvHeads != null) given.add("--kv-heads");
        if (Boolean.TRUE.equals(tieEmbeddings)) given.add("--tie-embeddings");
        return given.isEmpty() ? "" : ": leave out " + String.join(" and ", given) + " to take the checkpoint's";
    }

    /** Fails with RunLock's "in use by another patchcore process" if a run holds {@code runDir}'s lock now. */
    private static void requireNotInUse(Path runDir) {
        if (Files.exists(runDir.resolve(RunLock.FILE))) RunLock.acquire(runDir).close();
    }

    /**
     * Whether a new run of this model takes the paper presets' defaults (--steps, --batch, --eval-every): every model but
     * tiny and small, known by name and shape, not by vocabulary (an --init-from tiny run on GPT-2 data is still tiny:
     * 1000 steps of 16 sequences, not 180000 of 4; a Hugging Face folder named "small" is not).
     */
    static boolean isPaperPreset(ModelConfig model) {
        for (String cpu : List.of("tiny", "small")) {
            ModelConfig p = ModelConfig.preset(cpu);
            if (model.name().equals(cpu) && model.dim() == p.dim() && model.layers() == p.layers()) return false;
        }
        return true;
    }

    /** Every stage still to run needs a micro-batch per device (checked once the devices are known to open). */
    private void requireMicroBatchPerDevice(List<Stage> plan, RunSetup run, int deviceCount) {
        boolean resuming = run.resumed() != null;
        int first = resuming ? Math.min(run.resumed().state().stageIndex(), plan.size()) : 0;
        for (Stage st : plan.subList(first, plan.size()))
            if (st.accum() < deviceCount)
                throw new IllegalArgumentException("--devices " + BackendOptions.list(devices) + " needs at least " + deviceCount
                        + " micro-batches per step in each stage; the " + st.name() + " stage has " + st.accum()
                        + (resuming ? " (use fewer devices for this run)" : " (" + accumAdvice(run.cfg(), deviceCount) + ")"));
    }

    /** The model, data and budget, and how the stages read the data. */
    private static void printPlan(RunSetup run, boolean multiEpoch) {
        TrainConfig cfg = run.cfg();
        TrainingData dataset = run.dataset();
        ModelConfig m = cfg.model();
        System.out.printf(Locale.ROOT, "model %s: %d layers, d=%d, ffn=%d, %d heads%s, vocab %d%s, T=%d, %.2fM parameters%n",
                m.name(), m.layers(), m.dim(), m.ffnDim(), m.heads(), m.groups() > 1 ? " (" + Plural.of(m.kvHeads(), "key/value head") + ")" : "",
                m.vocabSize(), m.tiedEmbeddings() ? " (tied embeddings)" : "", m.contextLength(), m.parameterCount() / 1e6);
        System.out.printf(Locale.ROOT, "data %s (%s tokenizer, %d training tokens); run folder %s%n", dataset.description(), dataset.tokenizer(), dataset.trainTokens(), run.runDir());
        System.out.printf(Locale.ROOT, "budget %s × %d tokens: patch stage %s (K=%d, λ=%.3f), token stage %s%n",
                Plural.of(cfg.steps(), "step"), cfg.tokensPerStep(), Plural.of(cfg.patchSteps(), "step"), cfg.patchSize(), cfg.lambda(),
                Plural.of(cfg.tokenSteps(), "step"));
        boolean oneStage = cfg.patchSteps() == 0 || cfg.tokenSteps() == 0;
        String level = cfg.patchSteps() == 0 ? "token level only" : "patch level only";
        double passes = (double) cfg.steps() * cfg.tokensPerStep() / dataset.trainTokens();
        double patchPercent = 100.0 * cfg.patchSteps() / cfg.steps();
        if (multiEpoch && oneStage)
            System.out.printf(Locale.ROOT, "multi-epoch mode (§3.3): %.2f epochs over the data, at %s%n", passes, level);
        else if (multiEpoch)
            System.out.printf(Locale.ROOT, "multi-epoch mode (§3.3): %.2f epochs over the data, the first %.0f%% of them at patch "
                    + "level; both stages draw their windows from all of it%n", passes, patchPercent);
        else if (oneStage)
            System.out.printf(Locale.ROOT, "single pass over the training tokens, at %s%n", level);
        else
            System.out.printf(Locale.ROOT, "single pass: the patch stage reads the first %.0f%% of the training tokens, the token "
                    + "stage the rest%n", patchPercent);
        if (!multiEpoch && passes > 1.0)
            System.out.printf(Locale.ROOT, "note: the budget reads %.1f times as many tokens as the data holds, so each stage "
                    + "reads its part of the data %.1f times over; fewer --steps fit one pass, and --epochs %.1f is the paper's "
                    + "multi-epoch mode (§3.3), in which both stages read all of the data%n", passes, passes, passes);
    }

    /**
     * Loads the weights training starts from (the resumed checkpoint's, the --init-from ones, or a seeded initialization)
     * and returns where it starts.
     */
    private static RunState loadWeights(RunSetup run, LlamaModel model, Backend be) {
        if (run.resumed() != null) {
            Checkpoints.loadWeights(run.checkpoint(), model, be);
            RunState state = run.resumed().state();
            System.out.println("resuming from " + run.checkpoint() + " at " + state.globalStep() + " steps");
            return state;
        }
        if (run.init() != null) {
            Checkpoints.loadWeights(run.init(), model, be);
            System.out.println("initialized from " + run.init() + " (a new run: fresh optimizer and schedule)");
        } else {
            model.initialize(be, run.cfg().seed());
        }
        return RunState.start();
    }

    /**
     * Trains and prints the summary. Ctrl-C or SIGTERM meanwhile: the trainer finishes the current step and saves a
     * checkpoint, and the summary is printed before the JVM exits.
     */
    private void trainWithStopHook(Trainer trainer, LlamaModel model, RunState state, RunSetup run) {
        try (StopOnSignal stop = new StopOnSignal(trainer::requestStop)) {
            List<Trainer.StageResult> results;
            try {
                results = trainer.run(model, state, run.checkpoint());
            } catch (GpuOutOfMemoryException e) {
                List<String> hints = new ArrayList<>();
                if (run.resumed() == null) hints.add("a smaller --batch with a larger --accum keeps the tokens per step");
                if (!recompute) hints.add("--recompute keeps one layer's activations instead of all");
                throw new IllegalArgumentException(e.getMessage() + (hints.isEmpty() ? "" : "; " + String.join("; ", hints)), e);
            }
            stop.ranToItsEnd();
            for (Trainer.StageResult r : results)
                System.out.printf(Locale.ROOT, "%s stage: %s, loss %.4f → %.4f, %s, %.0f tokens/s%n",
                        r.stage(), r.stepsText(), r.firstLoss(), r.lastLoss(),
                        r.validationText(), r.tokensPerSecond());
            String cost = costLine(results, run.cfg().tokensPerStep());
            if (cost != null) System.out.println(cost);
            System.out.println("checkpoint: " + Checkpoints.latest(run.runDir()) + "   metrics: " + run.runDir().resolve("metrics.jsonl"));
        }
    }

    /** The fewest steps of each stage for the cost line: a stage's first steps carry JIT compilation and GEMM tuning. */
    static final int MEASURED_STEPS = 20;

    /**
     * What the run's training steps cost against token-level training of the same steps (the paper's claim): each
     * stage's steps at its measured speed, against all of them at the token stage's speed (the token stage is the
     * baseline's step). Null unless this command trained both stages whole, each at least {@link #MEASURED_STEPS} steps.
     */
    static String costLine(List<Trainer.StageResult> results, long tokensPerStep) {
        if (results.size() != 2) return null;
        Trainer.StageResult patch = results.get(0), token = results.get(1);
        if (!patch.stage().equals("patch") || !(patch.tokensPerSecond() > 0) || !(token.tokensPerSecond() > 0)) return null;
        // Both stages trained whole by this command, and long enough that warm-up does not set their speeds.
        if (patch.fromStep() != 0 || token.fromStep() != 0 || patch.steps() < MEASURED_STEPS || token.steps() < MEASURED_STEPS) return null;
        long patchSteps = patch.steps(), tokenSteps = token.steps();  // both from step 0
        double run = (double) tokensPerStep * (patchSteps / patch.tokensPerSecond() + tokenSteps / token.tokensPerSecond());
        double baseline = (double) tokensPerStep * (patchSteps + tokenSteps) / token.tokensPerSecond();
        return String.format(Locale.ROOT, "cost: %.1f s of training steps, %.2f× the %.1f s of all %d steps at the token stage's "
                + "speed (token-level training; the paper: about 0.5× at K = 4, λ = 2/3)", run, run / baseline, baseline,
                patchSteps + tokenSteps);
    }

    /** A new run's default folder, runs/<preset>-<time>, before any -2, -3, ...; null with --out or --resume. */
    private Path defaultRunName;

    /** {@code name}, or the first of {@code name}-2, -3, ... that does not exist (not even as a link). */
    private static Path freeRunFolder(Path name) {
        Path dir = name;
        for (int next = 2; Files.exists(dir, LinkOption.NOFOLLOW_LINKS); next++) dir = Path.of(name + "-" + next);
        return dir;
    }

    /** Whether this command created the run folder (it did not exist, not even as a link). */
    private boolean madeRunFolder;
    /** The outermost folder this command created for the run folder: the run folder itself, or a parent it made. */
    private Path madeFrom;

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
            RunLock.deleteFile(runDir);
            Path metrics = runDir.resolve("metrics.jsonl");
            if (Files.exists(metrics) && Files.size(metrics) > 0) return;
            Files.deleteIfExists(metrics);
            Files.deleteIfExists(Checkpoints.root(runDir));  // only if empty (else DirectoryNotEmptyException)
            Files.deleteIfExists(runDir);
            for (Path p = runDir.toAbsolutePath().getParent(); p != null && p.startsWith(madeFrom); p = p.getParent())
                Files.deleteIfExists(p);  // the folders made to hold it, while empty
        } catch (IOException ignored) { /* a folder with anything else in it stays */ }
    }

    /**
     * Makes and locks the run folder (a resumed run's is locked already), before the plan names it. A new run's folder
     * is checked again once locked: another run may have taken it since {@link #newRun} found it free (two runs started
     * in the same second choose the same default name). Such a default name is passed over for the next free one
     * ({@code runs/tiny-<time>-2}, ...); a folder named by --out is refused as {@link #newRun} refuses it.
     */
    private RunSetup claimRunFolder(RunSetup run) {
        Path dir = run.runDir();
        while (true) {
            madeRunFolder = !Files.exists(dir, LinkOption.NOFOLLOW_LINKS);
            madeFrom = dir.toAbsolutePath();  // the outermost folder this makes (runs/ of the default --out, say)
            while (madeFrom.getParent() != null && !Files.exists(madeFrom.getParent(), LinkOption.NOFOLLOW_LINKS)) madeFrom = madeFrom.getParent();
            try {
                Files.createDirectories(dir);
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot create the " + (defaultRunName == null ? "--out" : "run") + " folder: "
                        + Main.userMessage(e), e);
            }
            if (runLock != null) return run;  // resumed: locked when its checkpoint was read
            String taken;
            try {
                runLock = RunLock.acquire(dir);
                String held = contents(dir);
                boolean fresh = held.isEmpty() || held.equals("metrics.jsonl") && isEmptyFile(dir.resolve("metrics.jsonl"));
                if (fresh) return new RunSetup(dir, run.cfg(), run.dataset(), run.checkpoint(), run.resumed(), run.init());
                runLock.close();
                runLock = null;
                taken = "--out " + dir + " is not empty (it holds " + held + "); a new run needs a new or empty folder: choose another --out";
            } catch (IllegalArgumentException inUse) {
                taken = inUse.getMessage();
            }
            if (defaultRunName == null) throw new IllegalArgumentException(taken);
            dir = freeRunFolder(defaultRunName);  // the next -N: taken counts as existing now
        }
    }

    /** The smallest --accum that gives every stage a micro-batch per device (the patch stage has K times fewer sequences). */
    private static String accumAdvice(TrainConfig cfg, int devices) {
        for (int a = cfg.accum() + 1; a <= 1 << 16; a++) {
            try {
                TrainConfig c = cfg.withAccum(a);
                if (Stage.plan(c).stream().allMatch(st -> st.accum() >= devices)) return "raise --accum to " + a;
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

    /** Whether {@code f} is a regular file of no bytes. */
    private static boolean isEmptyFile(Path f) {
        try {
            return Files.isRegularFile(f) && Files.size(f) == 0;
        } catch (IOException e) {
            return false;
        }
    }

    /** What a folder holds, for a message: up to three names (its lock file left out), or "" if it is empty or does not exist. */
    private static String contents(Path dir) {
        if (!Files.isDirectory(dir)) return "";
        try (var s = Files.list(dir)) {
            List<String> names = s.map(p -> p.getFileName().toString()).filter(n -> !n.equals(RunLock.FILE)).sorted().toList();
            return names.size() <= 3 ? String.join(", ", names) : String.join(", ", names.subList(0, 3)) + " and " + (names.size() - 3) + " more";
        } catch (IOException e) {
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
            long whole = Math.max(1, tokens / perStep);
            if (whole * perStep != tokens)
                System.out.printf(Locale.ROOT, "note: --tokens %d is %s of %d tokens (%d tokens): the budget is whole steps%n", tokens,
                        Plural.of(whole, "step"), perStep, whole * perStep);
            return whole;
        }
        if (epochs != null) {
            if (!(epochs > 0) || Double.isInfinite(epochs))
                throw new IllegalArgumentException("--epochs must be a positive number (got " + epochs + ")");
            return Math.max(1, Math.round(epochs * dataset.trainTokens() / perStep));
        }
        return paper ? 180_000 : model.name().equals("small") ? 2000 : 1000;
    }
}
