package dev.patchcore.train;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.checkpoint.SafeTensors;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.config.Rope;
import dev.patchcore.data.HuggingFaceBpeTokenizer;
import dev.patchcore.data.SentencePieceTokenizer;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.model.LlamaModel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * A Hugging Face {@code LlamaForCausalLM} folder (from the Hub, or any {@code save_pretrained}; also
 * {@code MistralForCausalLM} without a sliding window, whose modules are LLaMA's) read as a checkpoint:
 * {@code config.json}, the weights in {@code model.safetensors} or shards named by {@code model.safetensors.index.json}
 * (F32, BF16 or F16), and, for text, a SentencePiece {@code tokenizer.model} or a BPE {@code tokenizer.json} (byte-level, or
 * SentencePiece-style with byte fallback).
 * {@code train --init-from}, {@code eval}, {@code generate} and {@code finetune} take such a folder where they take a
 * checkpoint.
 *
 * <p>The architecture must be the one {@link LlamaModel} computes: multi-head or grouped-query attention, RoPE
 * plain or scaled as LLaMA-3.1/3.2 scale it ("llama3"), SiLU, no biases. Tied input and output embeddings stay tied
 * (one matrix) unless the model asks for two ({@code train --no-tie-embeddings}): then the LM head starts as a copy of
 * the embedding.
 */
public final class HuggingFaceModel {
    public static final String CONFIG = "config.json";
    public static final String INDEX = "model.safetensors.index.json";
    /** The context a folder's model is used with when none is given and its max_position_embeddings is longer. */
    public static final int DEFAULT_CONTEXT = 4096;

    private HuggingFaceModel() {}

    /**
     * A Hugging Face folder, not a patchcore checkpoint. A patchcore checkpoint holds the same config.json, but also
     * trainer.json; one whose save was cut short lacks it, and is told apart by its place (a run's {@code checkpoints/}
     * folder) and by its model.safetensors, which records patchcore's model config. A checkpoint's Hugging Face files
     * copied into a folder of their own are a Hugging Face folder.
     */
    public static boolean is(Path dir) {
        if (!Files.isRegularFile(dir.resolve(CONFIG)) || Files.exists(dir.resolve(Checkpoints.TRAINER))) return false;
        if (Files.isRegularFile(dir.resolve(INDEX))) return true;
        if (!Files.isRegularFile(dir.resolve(Checkpoints.MODEL))) return false;
        Path parent = dir.toAbsolutePath().normalize().getParent();
        boolean inRun = parent != null && parent.getFileName() != null && parent.getFileName().toString().equals("checkpoints");
        if (!inRun) return true;  // only a folder in a run's checkpoints/ needs its header read
        try (SafeTensors.Reader r = new SafeTensors.Reader(dir.resolve(Checkpoints.MODEL))) {
            return !r.metadata().containsKey("patchcore.config");
        } catch (RuntimeException e) {
            return false;  // not readable as safetensors: let the checkpoint path report it
        }
    }

    /** The model's shape from config.json (its context: max_position_embeddings), refusing what LlamaModel does not compute. */
    public static ModelConfig config(Path dir) {
        JsonObject c = json(dir.resolve(CONFIG));
        String where = dir.resolve(CONFIG).toString();
        String type = string(c, "model_type", where);
        if (type == null) throw new IllegalArgumentException(where + " has no model_type (patchcore reads LLaMA models: \"llama\")");
        if (!type.equals("llama") && !type.equals("mistral"))
            throw new IllegalArgumentException(where + " describes a '" + type + "' model; patchcore reads LLaMA models (model_type \"llama\", "
                    + "or \"mistral\" without a sliding window)");
        // Mistral's modules and tensor names are LLaMA's; its attention is LLaMA's where no sliding window limits it. A
        // config.json without the key has MistralConfig's default window, 4096 (only an explicit null is none).
        if (type.equals("mistral") && (field(c, "sliding_window") != null || !c.has("sliding_window")))
            throw new IllegalArgumentException(where + ": sliding-window attention (" + (c.has("sliding_window")
                    ? "sliding_window " + c.get("sliding_window") : "no sliding_window: MistralConfig's default 4096")
                    + ") is not supported; Mistral models with \"sliding_window\": null read as LLaMA");
        // Sizes are checked by ModelConfig (its message, with this file's name, below); 0 key/value heads would mean "as
        // many as query heads" there, so it is refused here.
        int dim = integer(c, "hidden_size", where, null), heads = integer(c, "num_attention_heads", where, null);
        int kvHeads = integer(c, "num_key_value_heads", where, heads);
        if (field(c, "num_key_value_heads") != null && kvHeads < 1)
            throw new IllegalArgumentException(where + ": num_key_value_heads must be positive");
        if (field(c, "head_dim") != null && integer(c, "head_dim", where, null) * heads != dim)
            throw new IllegalArgumentException(where + ": head_dim × num_attention_heads ≠ hidden_size is not supported");
        // RoPE: transformers 4 writes rope_theta (and rope_scaling for variants), transformers 5 rope_parameters
        // {rope_theta, rope_type, ...}. The plain rotation ("default") and LLaMA-3's scaled one ("llama3") are computed.
        // Each of the three places says the same where it says anything: a mix of two of them is refused.
        Float topTheta = field(c, "rope_theta") == null ? null : number(c, "rope_theta", where, 0f);
        Rope rope = null;
        String ropeFrom = null;
        for (String key : List.of("rope_scaling", "rope_parameters")) {
            JsonObject r = object(c, key, where);
            if (r == null) continue;
            Rope read = rope(r, key, where, topTheta);
            if (rope != null && !rope.equals(read))
                throw new IllegalArgumentException(where + ": " + ropeFrom + " and " + key + " disagree (" + rope.describe() + " vs "
                        + read.describe() + "); patchcore does not guess which one the model was trained with");
            rope = read;
            ropeFrom = key;
        }
        if (rope == null) rope = Rope.of(topTheta != null ? topTheta : 10000f);
        float theta = rope.theta();
        Rope.Scaling scaling = rope.scaling();
        for (String bias : List.of("attention_bias", "mlp_bias"))
            if (bool(c, bias, where, false)) throw new IllegalArgumentException(where + ": " + bias + " is not supported");
        String act = string(c, "hidden_act", where);
        if (act != null && !act.equals("silu") && !act.equals("swish"))
            throw new IllegalArgumentException(where + ": hidden_act '" + act + "' is not supported (SiLU only)");
        float eps = number(c, "rms_norm_eps", where, 1e-6f);  // LlamaConfig's default
        int context = integer(c, "max_position_embeddings", where, 2048);
        Path abs = dir.toAbsolutePath().normalize();
        String name = abs.getFileName() == null ? "hf" : abs.getFileName().toString();
        try {
            return new ModelConfig(name, integer(c, "vocab_size", where, null), dim, integer(c, "intermediate_size", where, null),
                    integer(c, "num_hidden_layers", where, null), heads, context, theta, eps, kvHeads, scaling,
                    bool(c, "tie_word_embeddings", where, false));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage());
        }
    }

    /**
     * The RoPE of a rope_scaling or rope_parameters object: "default" (also rope_parameters without a type), or
     * "llama3" with its four numbers. Its rope_theta, where it has one, must agree with the top-level one.
     */
    private static Rope rope(JsonObject r, String key, String where, Float topTheta) {
        String at = where + " " + key;
        String type = r.has("rope_type") ? string(r, "rope_type", at) : r.has("type") ? string(r, "type", at)
                : key.equals("rope_parameters") ? "default" : null;
        // transformers 4 copies "type" over "rope_type" (the older spelling wins); a file naming two types is not guessed at
        if (r.has("rope_type") && r.has("type") && type != null && !type.equals(string(r, "type", at)))
            throw new IllegalArgumentException(where + ": " + key + "'s rope_type '" + type + "' and type '" + string(r, "type", at)
                    + "' disagree; patchcore does not guess which one the model was trained with");
        if (type == null)
            throw new IllegalArgumentException(where + ": " + key + " has no rope_type (patchcore's RoPE is the plain one, "
                    + "\"default\", or LLaMA-3's \"llama3\")");
        Float theta = field(r, "rope_theta") == null ? null : number(r, "rope_theta", at, 0f);
        if (theta != null && topTheta != null && !theta.equals(topTheta))
            throw new IllegalArgumentException(where + ": rope_theta " + topTheta + " and " + key + "'s rope_theta " + theta + " disagree");
        float base = theta != null ? theta : topTheta != null ? topTheta : 10000f;
        if (type.equals("default")) return Rope.of(base);
        if (!type.equals("llama3"))
            throw new IllegalArgumentException(where + ": " + key + " of type '" + type + "' is not supported (patchcore's RoPE "
                    + "is the plain one or LLaMA-3's \"llama3\")");
        try {
            return new Rope(base, new Rope.Scaling(number(r, "factor", at), number(r, "low_freq_factor", at),
                    number(r, "high_freq_factor", at), integer(r, "original_max_position_embeddings", at, null)));
        } catch (IllegalArgumentException e) {
            throw e.getMessage().startsWith(at) ? e : new IllegalArgumentException(at + ": " + e.getMessage());
        }
    }

    /** Whether the output embedding is the input one (config.json's tie_word_embeddings; LlamaConfig's default is false). */
    static boolean tied(Path dir) {
        return bool(json(dir.resolve(CONFIG)), "tie_word_embeddings", dir.resolve(CONFIG).toString(), false);
    }

    /**
     * The folder's tokenizer: its SentencePiece tokenizer.model (LLaMA-1/2, Mistral), else its BPE tokenizer.json
     * (byte-level: LLaMA-3, SmolLM; SentencePiece-style with byte fallback: LLaMA-2, TinyLlama, Mistral folders without
     * a tokenizer.model; the tokenizer_config.json beside it names the end of text), else null. Of the two, the
     * tokenizer.model: it is the original the tokenizer.json was converted from (they encode alike), and data and
     * checkpoints made from such a folder before tokenizer.json was read name it. A tokenizer.json patchcore does not
     * read (WordPiece, Unigram, ...) is null too: the
     * weights still serve eval --data and train --init-from, which check the vocabulary size alone; the commands that
     * need the text (generate, finetune, eval --text) then say why the file is refused.
     */
    private static Tokenizer tokenizer(Path dir) {
        Path model = dir.resolve(SentencePieceTokenizer.FILE_NAME), json = dir.resolve(HuggingFaceBpeTokenizer.FILE_NAME);
        if (Files.isRegularFile(model)) return Tokenizers.byName(model.toString());
        if (!Files.isRegularFile(json)) return null;
        try {
            return Tokenizers.byName(json.toString());
        } catch (IllegalArgumentException notRead) {
            return null;
        }
    }

    /**
     * The begin-of-text id to put before a prompt, or -1. With a SentencePiece tokenizer.model: config.json's
     * bos_token_id where the tokenizer adds it (tokenizer_config.json's add_bos_token; LlamaTokenizer's default is
     * true, so without that file it adds it). With a tokenizer.json: the token its post-processor puts first (LLaMA-3's
     * {@code <|begin_of_text|>}, LLaMA-2's {@code <s>}), unless tokenizer_config.json says {@code "add_bos_token": false};
     * for a SentencePiece-style one whose post-processor puts none, config.json's bos_token_id where tokenizer_config.json
     * names a LLaMA tokenizer class (LlamaTokenizerFast builds its post-processor from add_bos_token, true by default).
     */
    public static int bosToPrepend(Path dir) {
        Path tc = dir.resolve("tokenizer_config.json");
        JsonObject t = Files.isRegularFile(tc) ? json(tc) : null;
        boolean sentencePiece = Files.isRegularFile(dir.resolve(SentencePieceTokenizer.FILE_NAME));
        boolean add = sentencePiece;  // LlamaTokenizer's default
        if (!sentencePiece && Files.isRegularFile(dir.resolve(HuggingFaceBpeTokenizer.FILE_NAME))) {
            if (t != null && !bool(t, "add_bos_token", tc.toString(), true)) return -1;
            if (!(tokenizer(dir) instanceof HuggingFaceBpeTokenizer hf)) return -1;
            if (hf.bosId() >= 0 || hf.isByteLevel()) return hf.bosId();
            String cls = t == null ? null : string(t, "tokenizer_class", tc.toString());
            add = cls != null && cls.contains("llama");
        } else if (t != null) {
            String cls = string(t, "tokenizer_class", tc.toString());
            add = bool(t, "add_bos_token", tc.toString(), cls != null ? cls.contains("llama") : add);
        }
        if (!add) return -1;
        JsonObject c = json(dir.resolve(CONFIG));
        return field(c, "bos_token_id") == null ? -1 : integer(c, "bos_token_id", dir.resolve(CONFIG).toString(), null);
    }

    /**
     * The begin-of-text id to put before a prompt of checkpoint or folder {@code dir} ({@code meta}: its
     * {@link Checkpoints#readMeta}), or -1: the one a fine-tuning run recorded putting before its examples, else
     * {@link #bosToPrepend(Path, int)}'s.
     */
    public static int bosToPrepend(Path dir, Checkpoints.Meta meta, int vocab) {
        if (meta != null && meta.bos() != null) return meta.bos() >= 0 && meta.bos() < vocab ? meta.bos() : -1;
        return bosToPrepend(dir, vocab);
    }

    /**
     * {@link #bosToPrepend(Path)} for a model of {@code vocab} tokens: -1 unless {@code dir} is a Hugging Face folder
     * ({@link #is}) whose begin-of-text id is one of the model's, in [0, {@code vocab}).
     */
    public static int bosToPrepend(Path dir, int vocab) {
        if (!is(dir)) return -1;
        int bos = bosToPrepend(dir);
        return bos >= 0 && bos < vocab ? bos : -1;
    }

    /**
     * The note for a Hugging Face folder {@code dir} that names no tokenizer (eval --data, train --init-from): its
     * vocabulary size alone was checked against the data's.
     */
    public static String noTokenizerNote(Path dir) {
        return "note: " + dir + " has no tokenizer patchcore reads (a tokenizer.model, or a BPE tokenizer.json): only "
                + "its vocabulary size could be checked against the data's";
    }

    /**
     * A checkpoint's meta for the folder: its tokenizer, nothing of a training run. A vocab_size padded past the
     * tokenizer's pieces (CodeLlama's 32016 for 32000) is refused here, for every command: patchcore's model and
     * tokenizer share one vocabulary.
     */
    static Checkpoints.Meta meta(Path dir) {
        Tokenizer tok = tokenizer(dir);  // its model file is read once
        if (tok != null && tok.vocabSize() != config(dir).vocabSize())
            throw new IllegalArgumentException(dir + ": config.json's vocab_size " + config(dir).vocabSize() + " is not its "
                    + (tok instanceof HuggingFaceBpeTokenizer ? "tokenizer.json's " + tok.vocabSize() + " tokens"
                    : "tokenizer.model's " + tok.vocabSize() + " pieces") + (config(dir).vocabSize() > tok.vocabSize()
                    ? " (a vocabulary padded past the tokenizer's), which patchcore does not support"
                    : ": the model has no row for the tokenizer's last " + (tok.vocabSize() - config(dir).vocabSize()) + " ids"));
        return new Checkpoints.Meta(0, null, null, tok == null ? null : tok.name(), false, null, 0);
    }

    /**
     * Loads {@code params} from the folder's weights; {@code vocab}: the model's vocabulary (the rows the file holds).
     * Tensors the model has no use for (a saved {@code rotary_emb.inv_freq}) are left alone.
     */
    static void load(Path dir, List<Parameter> params, Backend be, int vocab) {
        Map<String, Path> files = weightFiles(dir);
        boolean tied = tied(dir);
        Map<Path, SafeTensors.Reader> open = new HashMap<>();
        try {
            for (Parameter p : params) {
                String name = p.name();
                if (tied && name.equals("lm_head.weight")) name = "model.embed_tokens.weight";  // as transformers ties them
                Path file = files.get(name);
                if (file == null) throw new IllegalArgumentException(dir + " has no tensor " + name + (name.equals("lm_head.weight")
                        ? " (and config.json's tie_word_embeddings is not true)" : ""));
                SafeTensors.Reader r = open.computeIfAbsent(file, SafeTensors.Reader::new);
                int[] saved = r.shape(name), want = p.shape();
                if (LlamaModel.VOCABULARY_ROWS.contains(p.name())) want = new int[] {vocab, want[1]};  // the file holds vocab_size rows
                if (!Arrays.equals(saved, want))
                    throw new IllegalArgumentException(file + ": tensor " + name + " has shape " + Arrays.toString(saved)
                            + ", the model of config.json expects " + Arrays.toString(want));
                float[] w = r.read(name);
                p.load(be, w.length == p.numel() ? w : Arrays.copyOf(w, Math.toIntExact(p.numel())));  // padding rows stay 0
            }
        } finally {
            open.values().forEach(SafeTensors.Reader::close);
        }
    }

    /** Tensor name → the file holding it: model.safetensors alone, or the shards of model.safetensors.index.json. */
    static Map<String, Path> weightFiles(Path dir) {
        Map<String, Path> files = new HashMap<>();
        Path index = dir.resolve(INDEX);
        if (!Files.isRegularFile(dir.resolve(Checkpoints.MODEL)) && Files.isRegularFile(index)) {  // one file first, as transformers
            JsonElement map = json(index).get("weight_map");
            if (map == null || !map.isJsonObject()) throw new IllegalArgumentException(index + " has no weight_map");
            Set<String> shards = new LinkedHashSet<>();
            for (var e : map.getAsJsonObject().entrySet()) {
                String shard = e.getValue().isJsonPrimitive() ? e.getValue().getAsString() : "";
                if (shard.isEmpty() || shard.contains("/") || shard.contains("\\") || shard.equals("..") || shard.equals("."))
                    throw new IllegalArgumentException(index + " names a shard that is not a file name in its folder: '" + shard + "'");
                files.put(e.getKey(), dir.resolve(shard));
                shards.add(shard);
            }
            for (String shard : shards)
                if (!Files.isRegularFile(dir.resolve(shard))) throw new IllegalArgumentException(index + " names shard " + shard + ", which is missing");
        } else {
            Path file = dir.resolve(Checkpoints.MODEL);
            try (SafeTensors.Reader r = new SafeTensors.Reader(file)) {
                for (String name : r.names()) files.put(name, file);
            }
        }
        return files;
    }

    private static JsonObject json(Path file) {
        try {
            JsonObject o = new Gson().fromJson(Files.readString(file), JsonObject.class);
            if (o == null) throw new IllegalArgumentException(file + " is empty");
            return o;
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(file + " does not exist");
        } catch (com.google.gson.JsonParseException e) {
            throw new IllegalArgumentException(file + " is not a JSON object");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    // Typed fields of config.json: null is absent (as in LlamaConfig), a value of another type is named.

    private static JsonElement field(JsonObject c, String key) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? null : e;
    }

    private static IllegalArgumentException wrongType(String where, String key, JsonElement e, String what) {
        return new IllegalArgumentException(where + ": " + key + " is not " + what + " (" + e + ")");
    }

    private static String string(JsonObject c, String key, String where) {
        JsonElement e = field(c, key);
        if (e == null) return null;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw wrongType(where, key, e, "a string");
        return e.getAsString().toLowerCase(Locale.ROOT);
    }

    private static boolean bool(JsonObject c, String key, String where, boolean absent) {
        JsonElement e = field(c, key);
        if (e == null) return absent;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) throw wrongType(where, key, e, "true or false");
        return e.getAsBoolean();
    }

    /** A required positive number. */
    private static float number(JsonObject c, String key, String where) {
        if (field(c, key) == null) throw new IllegalArgumentException(where + " has no " + key);
        return number(c, key, where, 1f);
    }

    private static float number(JsonObject c, String key, String where, float absent) {
        JsonElement e = field(c, key);
        if (e == null) return absent;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw wrongType(where, key, e, "a number");
        float v = e.getAsFloat();
        if (!(v > 0) || Float.isInfinite(v)) throw wrongType(where, key, e, "a positive number");
        return v;
    }

    /** A whole number; {@code absent} null: required. */
    private static int integer(JsonObject c, String key, String where, Integer absent) {
        JsonElement e = field(c, key);
        if (e == null) {
            if (absent == null) throw new IllegalArgumentException(where + " has no " + key);
            return absent;
        }
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw wrongType(where, key, e, "a whole number");
        double v = e.getAsDouble();
        if (v != Math.rint(v) || Math.abs(v) > Integer.MAX_VALUE) throw wrongType(where, key, e, "a whole number");
        return (int) v;
    }

    private static JsonObject object(JsonObject c, String key, String where) {
        JsonElement e = field(c, key);
        if (e == null) return null;
        if (!e.isJsonObject()) throw wrongType(where, key, e, "an object");
        return e.getAsJsonObject();
    }
}
