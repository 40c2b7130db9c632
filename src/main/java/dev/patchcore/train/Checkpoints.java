package dev.patchcore.train;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.checkpoint.AtomicFiles;
import dev.patchcore.checkpoint.SafeTensors;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.config.Rope;
import dev.patchcore.data.HuggingFaceTokenizerFiles;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.model.PatchProjections;
import dev.patchcore.tensor.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * A run folder's checkpoints: {@code checkpoints/step-NNNNNNNN/} holds {@code model.safetensors} (Hugging Face names,
 * fp32), {@code optimizer.safetensors} (AdamW moments) and {@code trainer.json} (configs, stage, step, data cursor);
 * {@code checkpoints/latest} names the newest complete one and is replaced atomically only after all its files are
 * durable, so a crash at any moment leaves the previous checkpoint intact.
 */
public final class Checkpoints {
    public static final String MODEL = "model.safetensors", OPTIMIZER = "optimizer.safetensors", TRAINER = "trainer.json";
    private static final Gson GSON = new GsonBuilder().serializeSpecialFloatingPointValues().setPrettyPrinting().create();
    private static final int KEEP = 2;
    /** {@link Meta#format} of the checkpoints this version writes. */
    public static final int FORMAT = 1;

    private Checkpoints() {}

    /**
     * {@code trainer.json}: the training config, where the run is, and the data it reads; {@code datasetFingerprint}
     * ({@link TrainingData#fingerprint}, null in checkpoints of older versions) lets a resume tell other data from it.
     */
    public record Meta(int format, TrainConfig train, String dataset, String tokenizer, boolean multiEpoch, RunState state, int optimizerStep,
                       String datasetFingerprint, Map<String, String> checksums, String chat, Integer bos) {
        public Meta(int format, TrainConfig train, String dataset, String tokenizer, boolean multiEpoch, RunState state, int optimizerStep) {
            this(format, train, dataset, tokenizer, multiEpoch, state, optimizerStep, null);
        }

        public Meta(int format, TrainConfig train, String dataset, String tokenizer, boolean multiEpoch, RunState state, int optimizerStep,
                    String datasetFingerprint) {
            this(format, train, dataset, tokenizer, multiEpoch, state, optimizerStep, datasetFingerprint, null, null, null);
        }

        /**
         * The same, recording the CRC-32C of the checkpoint's tensor files ({@code "crc32c:" + 8 hex digits} by file
         * name; null in checkpoints of older versions): a load checks them, so bytes damaged since the save are said,
         * not trained on.
         */
        Meta withChecksums(Map<String, String> sums) {
            return new Meta(format, train, dataset, tokenizer, multiEpoch, state, optimizerStep, datasetFingerprint, sums, chat, bos);
        }

        /**
         * The same, recording the chat format ({@link ChatFormat#label}) a fine-tuning run posed its examples in (null:
         * none, and in checkpoints of older versions), which {@code generate} names when not given it.
         */
        public Meta withChat(String chatFormat) {
            return new Meta(format, train, dataset, tokenizer, multiEpoch, state, optimizerStep, datasetFingerprint, checksums, chatFormat, bos);
        }

        /**
         * The same, recording the begin-of-text id a fine-tuning run put before every example (null: none, and in
         * checkpoints of older versions): a Hugging Face model's, which it was pretrained with; {@code generate} and
         * {@code eval --bos} put it first too.
         */
        public Meta withBos(Integer bosId) {
            return new Meta(format, train, dataset, tokenizer, multiEpoch, state, optimizerStep, datasetFingerprint, checksums, chat, bosId);
        }
    }

    public static Path root(Path runDir) { return runDir.resolve("checkpoints"); }

    public static boolean exists(Path runDir) { return Files.isRegularFile(root(runDir).resolve("latest")); }

    /**
     * Writes checkpoint {@code step-N} and points {@code latest} at it, with {@code tokenizerFiles} (name → contents:
     * a SentencePiece {@code tokenizer.model} or a Hugging Face {@code tokenizer.json}, where eval and generate look for
     * them, and Hugging Face's tokenizer files).
     */
    public static void save(Path runDir, LlamaModel model, PatchProjections proj, AdamW opt, Meta meta,
                            HuggingFaceTokenizerFiles.Checkpoint tokenizer, Backend be) {
        String name = String.format(Locale.ROOT, "step-%08d", meta.state().globalStep());
        Path dir = root(runDir).resolve(name);
        // A folder of this name that latest does not name is from steps the run no longer stands behind (latest was
        // pointed back at an older checkpoint by hand): cleared, so no file of it outlives this save.
        String previous = latestName(runDir);
        if (Files.isDirectory(dir) && !name.equals(previous)) deleteTree(dir);
        List<SafeTensors.Entry> moments = new ArrayList<>();
        if (opt != null) {
            for (int i = 0; i < opt.parameters().size(); i++) {
                Parameter p = opt.parameters().get(i);
                Tensor m1 = opt.firstMoments().get(i), m2 = opt.secondMoments().get(i);
                moments.add(new SafeTensors.Entry(p.name() + ".exp_avg", p.shape(), () -> be.download(m1)));
                moments.add(new SafeTensors.Entry(p.name() + ".exp_avg_sq", p.shape(), () -> be.download(m2)));
            }
        }
        Map<String, String> sums = new TreeMap<>();
        sums.put(MODEL, checksum(SafeTensors.write(dir.resolve(MODEL), weights(model, be),
                Map.of("format", "pt", "patchcore.config", GSON.toJson(model.config())))));
        if (proj != null)
            sums.put(PatchProjections.FILE, checksum(SafeTensors.write(dir.resolve(PatchProjections.FILE), entries(proj.parameters(), be),
                    Map.of("format", "pt"))));
        sums.put(OPTIMIZER, checksum(SafeTensors.write(dir.resolve(OPTIMIZER), moments, Map.of("step", Integer.toString(meta.optimizerStep())))));
        AtomicFiles.writeString(dir.resolve("config.json"), huggingFaceConfig(model.config(), tokenizer.bosId(), tokenizer.eosId()));
        tokenizer.files().forEach((file, bytes) -> AtomicFiles.writeBytes(dir.resolve(file), bytes));
        // Last: a folder with a trainer.json is complete (a save stopped before it is not offered to continue from)
        AtomicFiles.writeString(dir.resolve(TRAINER), GSON.toJson(meta.withChecksums(sums)));
        AtomicFiles.writeString(root(runDir).resolve("latest"), name + "\n");
        prune(runDir, previousStep(runDir, previous), stepOf(name));
    }

    /** The model's weights as a checkpoint holds them: the vocabulary's rows only of the padded embedding and LM head. */
    private static List<SafeTensors.Entry> weights(LlamaModel model, Backend be) {
        int vocab = model.config().vocabSize();
        List<SafeTensors.Entry> out = new ArrayList<>();
        for (Parameter p : model.parameters()) {
            if (!LlamaModel.VOCABULARY_ROWS.contains(p.name()) || p.shape()[0] == vocab) {
                out.add(new SafeTensors.Entry(p.name(), p.shape(), () -> be.download(p.master())));
                continue;
            }
            int cols = p.shape()[1];
            out.add(new SafeTensors.Entry(p.name(), new int[] {vocab, cols},
                    () -> Arrays.copyOf(be.download(p.master()), Math.multiplyExact(vocab, cols))));
        }
        return out;
    }

    private static List<SafeTensors.Entry> entries(List<Parameter> params, Backend be) {
        List<SafeTensors.Entry> out = new ArrayList<>();
        for (Parameter p : params) out.add(new SafeTensors.Entry(p.name(), p.shape(), () -> be.download(p.master())));
        return out;
    }

    /**
     * After the save of step {@code newest}, whose previous checkpoint was step {@code previous}: deletes the folders of
     * the steps in between (this run did not write them: they are from steps it no longer stands behind, after latest
     * was pointed back by hand) and all but the {@link #KEEP} newest up to {@code newest}. Folders of later steps are
     * left until the run passes them.
     */
    private static void prune(Path runDir, long previous, long newest) {
        try (Stream<Path> s = Files.list(root(runDir))) {
            List<Path> kept = new ArrayList<>();
            for (Path p : s.filter(Files::isDirectory).sorted(Comparator.comparingLong(p -> stepOf(p.getFileName().toString()))).toList()) {
                long step = stepOf(p.getFileName().toString());
                if (step < 0 || step > newest) continue;
                if (step > previous && step < newest) deleteTree(p);
                else kept.add(p);
            }
            for (int i = 0; i < kept.size() - KEEP; i++) deleteTree(kept.get(i));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot prune old checkpoints: " + e.getMessage(), e);
        }
    }

    /**
     * The global step of the checkpoint latest named before this save (a folder named by hand, such as a copy called
     * "backup", by its trainer.json); with none, or one that cannot be read, {@code Long.MAX_VALUE}: nothing then counts
     * as in between.
     */
    private static long previousStep(Path runDir, String previous) {
        if (previous == null) return Long.MAX_VALUE;
        if (stepOf(previous) >= 0) return stepOf(previous);
        try {
            return readMeta(root(runDir).resolve(previous)).state().globalStep();
        } catch (RuntimeException unreadable) {
            return Long.MAX_VALUE;
        }
    }

    /** The step of a checkpoint folder's name ({@code step-00000040} → 40), or −1 for any other name. */
    static long stepOf(String folderName) {
        if (!folderName.matches("step-[0-9]{1,18}")) return -1;
        return Long.parseLong(folderName.substring("step-".length()));
    }

    /** What {@code checkpoints/latest} names, or null when there is none yet. */
    private static String latestName(Path runDir) {
        Path pointer = root(runDir).resolve("latest");
        try {
            return Files.isRegularFile(pointer) ? Files.readString(pointer).strip() : null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + pointer + ": " + e.getMessage(), e);
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(f);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete " + dir + ": " + e.getMessage(), e);
        }
    }

    /** The newest complete checkpoint folder of a run, or of a folder that is itself a checkpoint. */
    public static Path latest(Path dir) {
        if (Files.isRegularFile(dir.resolve(MODEL)) || HuggingFaceModel.is(dir)) return dir;
        if (!Files.isDirectory(dir))
            throw new IllegalArgumentException(dir + (Files.exists(dir) ? " is not a folder" : " does not exist") + " (expected a run folder or a checkpoint folder)");
        if (isCheckpointsFolder(dir)) return latest(dir.toAbsolutePath().normalize().getParent());
        Path pointer = root(dir).resolve("latest");
        String missing = missingLatest(dir);
        if (missing != null) throw new IllegalArgumentException(missing);
        if (!Files.isRegularFile(pointer) && Files.isRegularFile(dir.resolve(HuggingFaceModel.CONFIG))
                && (Files.isRegularFile(dir.resolve("pytorch_model.bin")) || Files.isRegularFile(dir.resolve("pytorch_model.bin.index.json"))))
            throw new IllegalArgumentException(dir + " holds PyTorch weights (pytorch_model.bin); patchcore reads safetensors only: "
                    + "save the model again with save_pretrained(..., safe_serialization=True)");
        if (!Files.isRegularFile(pointer) && Files.isRegularFile(dir.resolve(HuggingFaceModel.CONFIG)))
            throw new IllegalArgumentException(dir + " holds a config.json but no weights patchcore reads: model.safetensors, or "
                    + "model.safetensors.index.json and the shards it names");
        if (!Files.isRegularFile(pointer))
            throw new IllegalArgumentException("no checkpoint in " + dir + " (expected " + pointer + ")");
        String name;
        try {
            name = Files.readString(pointer).strip();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + pointer + ": " + e.getMessage(), e);
        }
        Path target = root(dir).resolve(name);
        if (name.isEmpty() || !Files.isRegularFile(target.resolve(MODEL)) || !Files.isRegularFile(target.resolve(TRAINER)))
            throw new IllegalArgumentException(pointer + " names '" + name + "', which is not a complete checkpoint (the run folder "
                    + "was changed by hand?); the folder holds " + listed(dir));
        return target;
    }

    /**
     * The complete checkpoint folders of a run (weights and trainer.json; a save stopped partway leaves one without the
     * latter, which it writes last), by name, or none.
     */
    public static List<String> complete(Path runDir) {
        try (var s = Files.list(root(runDir))) {
            return s.filter(p -> Files.isRegularFile(p.resolve(MODEL)) && Files.isRegularFile(p.resolve(TRAINER)))
                    .map(p -> p.getFileName().toString()).sorted().toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    /** The complete checkpoint folders of a run and how to continue from one, for a message. */
    private static String listed(Path runDir) {
        List<String> names = complete(runDir);
        return names.isEmpty() ? "no complete checkpoint" : String.join(", ", names) + " (write the name of one into "
                + root(runDir).resolve("latest") + " to continue from it)";
    }

    /**
     * The error for a run folder whose {@code checkpoints/latest} is missing although complete checkpoints are there
     * (removed by hand), or null when there are none: what to restore, never advice that would delete them.
     */
    public static String missingLatest(Path runDir) {
        if (Files.isRegularFile(root(runDir).resolve("latest")) || complete(runDir).isEmpty()) return null;
        return runDir + " has no " + root(runDir).resolve("latest") + ", but holds " + listed(runDir);
    }

    /** Whether {@code dir} is the {@code checkpoints} folder of a run (not the run folder itself). */
    public static boolean isCheckpointsFolder(Path dir) {
        Path abs = dir.toAbsolutePath().normalize();
        return abs.getFileName() != null && abs.getFileName().toString().equals("checkpoints") && abs.getParent() != null
                && (exists(abs.getParent()) || !complete(abs.getParent()).isEmpty());
    }

    public static Meta readMeta(Path checkpoint) {
        if (HuggingFaceModel.is(checkpoint)) return HuggingFaceModel.meta(checkpoint);
        Path f = checkpoint.resolve(TRAINER);
        try {
            String json = Files.readString(f);
            Meta m;
            try {
                m = GSON.fromJson(json, Meta.class);
            } catch (RuntimeException e) {  // not JSON, or values a record refuses (Gson wraps what its constructor throws)
                Throwable why = e.getCause() != null && !(e instanceof com.google.gson.JsonSyntaxException) ? e.getCause() : e;
                throw new IllegalArgumentException(f + " is not a valid trainer.json (" + String.valueOf(why.getMessage()).lines().findFirst().orElse("") + ")");
            }
            if (m == null) throw new IllegalArgumentException(f + " is empty");
            String missing = m.train() == null ? "train" : m.train().model() == null ? "train.model" : m.state() == null ? "state" : null;
            if (missing != null) throw new IllegalArgumentException(f + " is not a complete trainer.json (no '" + missing + "')");
            return m;
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("cannot read " + f + ": no such file");
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + f + ": " + e.getMessage());
        }
    }

    public static ModelConfig readModelConfig(Path checkpoint) {
        if (HuggingFaceModel.is(checkpoint)) return HuggingFaceModel.config(checkpoint);
        ModelConfig checked;
        try (SafeTensors.Reader r = new SafeTensors.Reader(checkpoint.resolve(MODEL))) {
            String json = r.metadata().get("patchcore.config");
            if (json == null) throw new IllegalArgumentException(checkpoint.resolve(MODEL) + " has no patchcore model config");
            try {
                ModelConfig c = GSON.fromJson(json, ModelConfig.class);
                if (c == null) throw new IllegalArgumentException("empty");
                checked = c;
            } catch (RuntimeException e) {  // not JSON, or values the record refuses (Gson wraps what its constructor throws)
                Throwable why = e.getCause() != null && !(e instanceof com.google.gson.JsonSyntaxException) ? e.getCause() : e;
                throw new IllegalArgumentException(checkpoint.resolve(MODEL) + " has an invalid patchcore model config ("
                        + String.valueOf(why.getMessage()).lines().findFirst().orElse("") + ")");
            }
        }
        // A model file that is not the one saved here (another run's, copied over it) carries another config than
        // trainer.json's: said as the damage it is now, not later by a check of that config against the data, which
        // would mix the two files' answers ("trained with byte (vocabulary 1000)").
        if (Files.isRegularFile(checkpoint.resolve(TRAINER)) && !checked.equals(readMeta(checkpoint).train().model()))
            verify(checkpoint, MODEL);
        return checked;
    }

    public static void loadWeights(Path checkpoint, LlamaModel model, Backend be) {
        if (HuggingFaceModel.is(checkpoint)) {
            HuggingFaceModel.load(checkpoint, model.parameters(), be, model.config().vocabSize());
            return;
        }
        verify(checkpoint, MODEL);
        load(checkpoint.resolve(MODEL), model.parameters(), be, model.config().vocabSize());
    }

    private static String checksum(long crc) { return String.format(Locale.ROOT, "crc32c:%08x", crc); }

    /**
     * Checks {@code file} of the checkpoint against the checksum its trainer.json recorded at the save (nothing to
     * check in a folder without one, or a checkpoint of an older version).
     */
    static void verify(Path checkpoint, String file) {
        if (!Files.isRegularFile(checkpoint.resolve(TRAINER))) return;
        Map<String, String> sums = readMeta(checkpoint).checksums();
        String recorded = sums == null ? null : sums.get(file);
        if (recorded == null) return;
        String now = checksum(SafeTensors.crc32c(checkpoint.resolve(file)));
        if (!now.equals(recorded))
            throw new IllegalArgumentException(checkpoint.resolve(file) + " is damaged: its bytes have changed since it was saved "
                    + "(" + now + ", its trainer.json recorded " + recorded + ")" + olderCheckpoints(checkpoint));
    }

    /** For a damaged checkpoint of a run: the run's other complete checkpoints, one of which may be intact. */
    private static String olderCheckpoints(Path checkpoint) {
        Path abs = checkpoint.toAbsolutePath().normalize(), root = abs.getParent();
        if (root == null || root.getFileName() == null || !root.getFileName().toString().equals("checkpoints")) return "";
        List<String> others = complete(root.getParent()).stream().filter(n -> !n.equals(abs.getFileName().toString())).toList();
        return others.isEmpty() ? "" : "; the run also holds " + String.join(", ", others) + " (write the name of one into "
                + root.resolve("latest") + " to continue from it)";
    }

    /** Whether the checkpoint holds paper §3.7's patch projections (one saved in a patch stage that trained them). */
    public static boolean hasProjections(Path checkpoint) { return Files.isRegularFile(checkpoint.resolve(PatchProjections.FILE)); }

    /** The patch projections a checkpoint holds, created on {@code be} and loaded (see {@link #hasProjections}). */
    public static PatchProjections readProjections(Path checkpoint, ModelConfig config, Backend be) {
        verify(checkpoint, PatchProjections.FILE);
        Path file = checkpoint.resolve(PatchProjections.FILE);
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            boolean in = r.has(PatchProjections.INPUT), out = r.has(PatchProjections.OUTPUT);
            if (!in && !out) throw new IllegalArgumentException(file + " holds no patch projection");
            int k = in ? r.shape(PatchProjections.INPUT)[1] / config.dim() : r.shape(PatchProjections.OUTPUT)[0] / config.dim();
            PatchProjections proj = new PatchProjections(be, config, k, in, out);
            load(r, proj.parameters(), be, -1);
            return proj;
        }
    }

    public static void loadProjections(Path checkpoint, PatchProjections proj, Backend be) {
        verify(checkpoint, PatchProjections.FILE);
        load(checkpoint.resolve(PatchProjections.FILE), proj.parameters(), be, -1);
    }

    private static void load(Path file, List<Parameter> params, Backend be, int vocab) {
        try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
            load(r, params, be, vocab);
        }
    }

    /** Loads {@code params} from {@code r}; {@code vocab}: the model's vocabulary, whose rows a checkpoint holds (-1: none). */
    private static void load(SafeTensors.Reader r, List<Parameter> params, Backend be, int vocab) {
        for (Parameter p : params) {
            // A model with its own LM head from a tied checkpoint (one without lm_head.weight): a copy of the embedding.
            String name = p.name().equals("lm_head.weight") && !r.names().contains(p.name()) && savedTied(r) ? "model.embed_tokens.weight" : p.name();
            int[] saved = r.shape(name);
            if (LlamaModel.VOCABULARY_ROWS.contains(p.name()) && saved.length == 2 && p.shape().length == 2 && saved[1] == p.shape()[1]
                    && saved[0] == vocab && vocab < p.shape()[0]) {
                // The vocabulary's rows (checkpoints since 2026-11-27); the padding rows stay zero.
                p.load(be, Arrays.copyOf(r.read(name), Math.multiplyExact(p.shape()[0], p.shape()[1])));
                continue;
            }
            if (!Arrays.equals(saved, p.shape()))
                throw new IllegalArgumentException("checkpoint tensor " + name + " has shape "
                        + Arrays.toString(saved) + ", model expects " + Arrays.toString(p.shape()));
            p.load(be, r.read(name));
        }
    }

    /** Whether the model a checkpoint file was saved from had tied embeddings (its metadata's model config says so). */
    private static boolean savedTied(SafeTensors.Reader r) {
        String json = r.metadata().get("patchcore.config");
        try {
            return json != null && GSON.fromJson(json, ModelConfig.class).tiedEmbeddings();
        } catch (RuntimeException e) {
            return false;
        }
    }

    /** Restores the moments into every optimizer of {@code opts} (data-parallel replicas' alike), the file read once. */
    public static void loadOptimizer(Path checkpoint, List<AdamW> opts, int step) {
        verify(checkpoint, OPTIMIZER);
        try (SafeTensors.Reader r = new SafeTensors.Reader(checkpoint.resolve(OPTIMIZER))) {
            List<float[]> m = new ArrayList<>(), v = new ArrayList<>();
            for (Parameter p : opts.getFirst().parameters()) {
                m.add(r.read(p.name() + ".exp_avg"));
                v.add(r.read(p.name() + ".exp_avg_sq"));
            }
            for (AdamW opt : opts) opt.restore(step, m, v);
        }
    }

    /**
     * A Hugging Face {@code LlamaConfig} for the weights, so {@code LlamaForCausalLM.from_pretrained(dir)} can read them.
     *
     * {@code eosId} (negative: unknown) is written as both the end- and the begin-of-text id: patchcore separates
     * documents with EOS and never trains on a BOS (LlamaConfig's defaults, 1 and 2, would stop generation at
     * whatever token 2 is in the data's vocabulary).
     */
    static String huggingFaceConfig(ModelConfig c, int eosId) {
        return huggingFaceConfig(c, eosId, eosId);
    }

    /** As {@link #huggingFaceConfig(ModelConfig, int)}, with begin-of-text id {@code bosId} (a fine-tuned Hugging Face model's). */
    static String huggingFaceConfig(ModelConfig c, int bosId, int eosId) {
        JsonObject o = new JsonObject();
        com.google.gson.JsonArray arch = new com.google.gson.JsonArray();
        arch.add("LlamaForCausalLM");
        o.add("architectures", arch);
        o.addProperty("model_type", "llama");
        o.addProperty("hidden_size", c.dim());
        o.addProperty("intermediate_size", c.ffnDim());
        o.addProperty("num_hidden_layers", c.layers());
        o.addProperty("num_attention_heads", c.heads());
        o.addProperty("num_key_value_heads", c.kvHeads());
        o.addProperty("vocab_size", c.vocabSize());  // the checkpoint holds the vocabulary's rows only (LlamaModel.VOCABULARY_ROWS)
        // Scaled RoPE (LLaMA-3's) stretches an original context by its factor; transformers warns unless
        // max_position_embeddings lies past the original one, so the stretched context is written where it is longer.
        o.addProperty("max_position_embeddings", c.ropeScaling() == null ? c.contextLength()
                : (int) Math.max(c.contextLength(), Math.min(Integer.MAX_VALUE,
                        Math.ceil((double) c.ropeScaling().factor() * c.ropeScaling().originalContext()))));
        o.addProperty("rms_norm_eps", c.normEps());
        o.addProperty("rope_theta", c.ropeTheta());
        if (c.ropeScaling() != null) {
            Rope.Scaling r = c.ropeScaling();
            JsonObject scaling = new JsonObject();
            scaling.addProperty("rope_type", "llama3");
            scaling.addProperty("factor", r.factor());
            scaling.addProperty("low_freq_factor", r.lowFreqFactor());
            scaling.addProperty("high_freq_factor", r.highFreqFactor());
            scaling.addProperty("original_max_position_embeddings", r.originalContext());
            o.add("rope_scaling", scaling);
        }
        o.addProperty("hidden_act", "silu");
        o.addProperty("tie_word_embeddings", c.tiedEmbeddings());
        o.addProperty("attention_bias", false);
        o.addProperty("mlp_bias", false);
        o.addProperty("torch_dtype", "float32");
        if (eosId >= 0) {
            o.addProperty("bos_token_id", bosId >= 0 ? bosId : eosId);
            o.addProperty("eos_token_id", eosId);
        }
        return GSON.toJson(o);
    }
}
