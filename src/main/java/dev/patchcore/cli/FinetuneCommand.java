package dev.patchcore.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.HuggingFaceTokenizerFiles;
import dev.patchcore.data.Plural;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.train.Chat;
import dev.patchcore.train.ChatFormat;
import dev.patchcore.train.TemplateChat;
import dev.patchcore.train.Checkpoints;
import dev.patchcore.train.FineTuner;
import dev.patchcore.train.HuggingFaceModel;
import dev.patchcore.train.Instructions;
import dev.patchcore.train.ModelFlops;
import dev.patchcore.train.StepRunner;
import dev.patchcore.train.TrainConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "finetune", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Instruction-tune a pretrained checkpoint (the paper fine-tunes on Alpaca-GPT4, §3.1): token-level training "
                + "with the loss on the response tokens only, into a new run folder that eval and generate read.",
                "Data: Stanford Alpaca records {\"instruction\", \"input\", \"output\"} (a JSON array such as alpaca_gpt4_data.json, "
                        + "or JSONL), posed with Alpaca's prompt template; or {\"prompt\", \"response\"} used as they are.",
                "Defaults are Stanford Alpaca's recipe: 3 epochs, lr 2e-5, 128 examples per step, warmup 3 %%, cosine decay, no weight decay."})
public final class FinetuneCommand implements Callable<Integer> {
    @Mixin CheckpointArg checkpoint;
    @Option(names = "--data", required = true, description = "instruction data (.json array or .jsonl)") Path data;
    @Option(names = "--out", required = true, description = "run folder to create") Path out;
    @Option(names = "--epochs", defaultValue = "3", description = "passes over the training examples (default: ${DEFAULT-VALUE})") int epochs;
    @Option(names = "--lr", defaultValue = "2e-5", description = "peak learning rate (default: ${DEFAULT-VALUE})") float lr;
    @Option(names = "--batch", defaultValue = "4", description = "examples per micro-batch (default: ${DEFAULT-VALUE})") int batch;
    @Option(names = "--accum", defaultValue = "32", description = "micro-batches per step (default: ${DEFAULT-VALUE})") int accum;
    @Option(names = "--warmup-ratio", defaultValue = "0.03", description = "warmup as a fraction of the steps (default: ${DEFAULT-VALUE})") double warmupRatio;
    @Option(names = "--weight-decay", defaultValue = "0", description = "AdamW weight decay (default: ${DEFAULT-VALUE})") float weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "global gradient-norm clipping, 0 = off (default: ${DEFAULT-VALUE})") float clip;
    @Option(names = "--val-fraction", defaultValue = "0.02", description = "examples held out for a validation loss (default: ${DEFAULT-VALUE})") double valFraction;
    @Option(names = "--seed", defaultValue = "1234", description = "seed of the held-out split and the example order (default: ${DEFAULT-VALUE})") long seed;
    @Option(names = "--log-every", defaultValue = "10", description = "console line every N steps (default: ${DEFAULT-VALUE})") int logEvery;
    @Option(names = "--recompute", description = "activation recompute per layer, as train --recompute") boolean recompute;
    @Option(names = "--devices", split = ",", paramLabel = "ID", description = "data parallelism over these GPUs (ordinals, e.g. "
            + "0,1,2,3; default: the one backend --backend picks; 0 alone is GPU 0, never the CPU), as train --devices: each step's micro-batches are dealt out over them and their "
            + "gradients summed; needs --accum of at least the number of devices. With --backend cpu, CPU replicas take turns (for testing)")
    List<Integer> devices;
    @Option(names = "--peak-tflops", paramLabel = "X", description = "each device's peak in TFLOP/s for the model FLOPs "
            + "utilization (MFU) the log prints, as train --peak-tflops (default: the GPU's dense bf16 peak where known; none on the CPU)")
    Double peakTflops;
    @Option(names = "--chat", paramLabel = "FORMAT", description = "pose {\"prompt\", \"response\"} records (one user "
            + "turn) and conversations ({\"messages\": [{\"role\", \"content\"}, ...]}, or ShareGPT's {\"conversations\"}) in an "
            + "instruct model's chat template, llama3 or chatml, its special tokens put in by their ids in the tokenizer (which must "
            + "have them), or template (the model folder's own Jinja chat_template, kept in the checkpoints); each answer and its "
            + "end-of-turn token are scored") String chat;
    @Mixin BackendOptions backendOptions;

    @Override public Integer call() throws IOException {
        if (epochs < 1 || batch < 1 || accum < 1) throw new IllegalArgumentException("--epochs, --batch and --accum must be positive");
        if (logEvery < 1) throw new IllegalArgumentException("--log-every must be at least 1 (got " + logEvery + ")");
        ModelFlops.checkPeakOption(peakTflops);
        if (devices != null && devices.size() > accum)
            throw new IllegalArgumentException("--devices " + BackendOptions.list(devices) + " needs --accum of at least " + devices.size()
                    + " (a micro-batch per device and step); it is " + accum);
        if (!(valFraction >= 0 && valFraction < 1)) throw new IllegalArgumentException("--val-fraction must lie in [0, 1)");
        if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new IllegalArgumentException("--warmup-ratio must lie in [0, 1]");
        if (Files.exists(out) && !isEmptyDirectory(out))
            throw new IllegalArgumentException(out + " exists and is not an empty folder; choose another --out");
        boolean created = !Files.exists(out);
        try {
            Files.createDirectories(out);  // now, so an --out that cannot be written is said before any work
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot create the --out folder: " + Main.userMessage(e), e);
        }
        try {
            return fineTune();
        } catch (IOException | RuntimeException | Error e) {
            // Failed before its first checkpoint: what this command wrote (the metrics file) goes, and the folder if it
            // made it, so the same --out can be given again.
            if (!Files.exists(out.resolve("checkpoints"))) {
                Files.deleteIfExists(out.resolve("metrics.jsonl"));
                if (created && isEmptyDirectory(out)) Files.deleteIfExists(out);
            }
            throw e;
        }
    }

    private int fineTune() throws IOException {
        Path ckpt = checkpoint.resolve();
        ModelConfig cfg = checkpoint.modelConfig(ckpt);
        Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
        Tokenizer tok = Tokenizers.recorded(meta.tokenizer(), ckpt);
        Chat template = chat == null ? null : ChatFormat.open(chat, tok, ckpt);
        if (meta.train() != null && meta.train().patchSteps() > 0 && meta.state() != null
                && meta.state().globalStep() <= meta.train().patchSteps())
            System.err.println("note: " + ckpt + " was saved " + (meta.state().stageIndex() == 0 ? "inside" : "at the end of")
                    + " the patch stage, before any token-level step; fine-tuning it at token level anyway");
        TrainConfig.requireStepFits(batch, accum, cfg.contextLength());

        List<Instructions.Item> records = Instructions.read(data, template == null ? null : template.label());
        // A Hugging Face model was pretrained with its tokenizer's begin-of-text token first (LLaMA's <s>), and Stanford
        // Alpaca's script tokenizes with it: every example starts with it (the checkpoints record it for generate), unless
        // a chat template, which writes its own, poses the examples
        int bos = template != null ? -1 : HuggingFaceModel.bosToPrepend(ckpt, meta, cfg.vocabSize());
        List<Instructions.Example> usable = new ArrayList<>();
        int[] order = FineTuner.shuffled(records.size(), seed, -1);  // the held-out split's order (epochs use 0, 1, ...)
        for (int i : order) {
            // Conversations come only with a template (Instructions.read refuses them without one)
            Instructions.Example e;
            try {
                e = template != null ? template.example(records.get(i)) : Instructions.encode(tok, (Instructions.Record) records.get(i), bos);
            } catch (IllegalArgumentException bad) {  // a model's own template refusing the record (raise_exception, ...)
                throw new IllegalArgumentException(data + " record " + (i + 1) + ": " + bad.getMessage(), bad);
            }
            if (e.scoredTargets(cfg.contextLength()) > 0) usable.add(e);
        }
        int skipped = records.size() - usable.size();
        // The held-out share of the usable examples, keeping one to train on
        int held = (int) Math.min(Math.round(valFraction * usable.size()), Math.max(0, usable.size() - 1L));
        List<Instructions.Example> val = List.copyOf(usable.subList(0, held)), train = List.copyOf(usable.subList(held, usable.size()));
        boolean contextGiven = checkpoint.context != null;  // then a longer --context is the remedy, not a new model
        if (train.isEmpty())
            throw new IllegalArgumentException("no example of " + data + " has a response inside " + (contextGiven ? "the --context of "
                    : "the model's context of ") + cfg.contextLength() + " tokens (" + (template == null
                    ? "Alpaca's prompt template alone is " + Plural.of(tok.encode(Instructions.alpacaPrompt("", null)).length, "token")
                    : "the chat template alone is " + Plural.of(template.example(new Instructions.Record("", "")).ids().length, "token"))
                    + " here): "
                    + (contextGiven ? "give a longer --context" : "fine-tune a model trained with a longer --context, e.g. train --context 256")
                    + ", or give {\"prompt\", \"response\"} records with short prompts");
        if (skipped > 0) System.err.printf(Locale.ROOT, "note: %d of %d examples skipped: their prompt (a conversation's turns before its first answer) fills the %d-token context%n",
                skipped, records.size(), cfg.contextLength());
        long steps = FineTuner.steps(train.size(), epochs, batch, accum);
        int warmup = (int) Math.ceil(warmupRatio * steps);  // as Hugging Face's get_warmup_steps
        TrainConfig tc = new TrainConfig(cfg, 1, 0, steps, batch, accum, lr, 0f, warmup, weightDecay, 0.9f, 0.999f, 1e-8f, clip,
                seed, 0, 0, 0, logEvery).checkRecipe();
        System.out.printf(Locale.ROOT, "fine-tuning %s (%s tokenizer) on %s into %s%n", ckpt, tok.name(), data, out);
        List<Backend> backends = backendOptions.openDevices(devices);
        try {
            Backend be = backends.getFirst();
            BackendOptions.printReplicas(backends, devices);
            LlamaModel model = new LlamaModel(be, cfg);
            model.setRecompute(recompute);
            Checkpoints.loadWeights(ckpt, model, be);
            List<StepRunner.Replica> replicas = new ArrayList<>();
            for (Backend rb : backends.subList(1, backends.size())) replicas.add(StepRunner.Replica.copyOf(be, model, rb));
            FineTuner tuner = new FineTuner(be, model, tc, epochs, train, val, out, System.out, data.toString(), tok.name(),
                    tokenizerFiles(tok, cfg.contextLength(), template, bos), tok.eosId())
                    .withReplicas(replicas);
            if (peakTflops != null) tuner.withPeakTflops(peakTflops);
            if (template != null) tuner.withChat(template.label());
            tuner.withBos(bos);
            // Ctrl-C or a SIGTERM: the step in progress finishes and its weights are saved, as train does
            try (StopOnSignal stop = new StopOnSignal(tuner::requestStop)) {
                FineTuner.Result r = tuner.run();
                stop.ranToItsEnd();
                System.out.printf(Locale.ROOT, "%s: %s, response loss %.4f → %.4f%s%ncheckpoint: %s%n", r.stopped() ? "stopped" : "fine-tuned",
                        Plural.of(r.steps(), "step"), r.firstLoss(), r.lastLoss(),
                        Double.isNaN(r.valLoss()) ? "" : String.format(Locale.ROOT, ", val %.4f", r.valLoss()), Checkpoints.latest(out));
            }
        } finally {
            BackendOptions.closeAll(backends);
        }
        return 0;
    }

    /**
     * The tokenizer's files for the checkpoints, and with a model's own chat template ({@code --chat template}) that
     * template as {@value TemplateChat#TEMPLATE_FILE} (transformers reads it there too), so generate and a later
     * finetune pose conversations in the checkpoint as in the fine-tuning; {@code bos}: the begin-of-text id every
     * example started with (negative: none), which the checkpoint's config then says its tokenizer adds.
     */
    private static HuggingFaceTokenizerFiles.Checkpoint tokenizerFiles(Tokenizer tok, int contextLength, Chat chat, int bos) {
        HuggingFaceTokenizerFiles.Checkpoint files = HuggingFaceTokenizerFiles.checkpoint(tok, contextLength);
        if (!(chat instanceof TemplateChat) && bos < 0) return files;
        Map<String, byte[]> withTemplate = new LinkedHashMap<>(files.files());
        byte[] config = withTemplate.get(TemplateChat.CONFIG_FILE);
        JsonObject c = config == null ? new JsonObject() : JsonParser.parseString(new String(config, StandardCharsets.UTF_8)).getAsJsonObject();
        if (bos >= 0) {
            // What transformers reads: its tokenizer puts the begin of text first, as the fine-tuning did
            c.addProperty("add_bos_token", true);
            for (String special : tok.specialTokens()) if (tok.specialId(special) == bos) c.addProperty("bos_token", special);
        }
        if (chat instanceof TemplateChat t) {
            withTemplate.put(TemplateChat.TEMPLATE_FILE, t.source().getBytes(StandardCharsets.UTF_8));
            // The bos_token and eos_token the template was rendered with: the configuration written for a tokenizer.model
            // names the end of text as the begin too (patchcore pretrains without a BOS), where LLaMA-2's template put <s>
            for (String[] token : new String[][] {{"bos_token", t.bosToken()}, {"eos_token", t.eosToken()}}) {
                if (token[1].isEmpty()) c.remove(token[0]);
                else c.addProperty(token[0], token[1]);
            }
            // The stops generation_config.json added (LLaMA-3-Instruct's <|eot_id|> beside an eos_token <|end_of_text|>)
            JsonArray stops = new JsonArray();
            for (int id : t.stopIds()) stops.add(id);
            JsonObject generation = new JsonObject();
            generation.add("eos_token_id", stops);
            withTemplate.put("generation_config.json", generation.toString().getBytes(StandardCharsets.UTF_8));
        }
        withTemplate.put(TemplateChat.CONFIG_FILE, new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(c)
                .getBytes(StandardCharsets.UTF_8));
        return new HuggingFaceTokenizerFiles.Checkpoint(files.eosId(), withTemplate, bos >= 0 ? bos : files.bosId());
    }

    private static boolean isEmptyDirectory(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) return false;
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        }
    }
}
