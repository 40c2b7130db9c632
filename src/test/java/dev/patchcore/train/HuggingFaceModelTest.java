package dev.patchcore.train;

import com.google.gson.JsonObject;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.backend.cuda.Bf16;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Hugging Face LLaMA folders read as checkpoints: config.json, sharded BF16/F16 weights, tied embeddings, refusals. */
class HuggingFaceModelTest {
    static final ModelConfig SHAPE = new ModelConfig("x", 97, 32, 88, 2, 2, 48, 10000f, 1e-5f);

    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream out = console.out, err = console.err;

    /** LlamaConfig's fields for {@code c} (as patchcore's checkpoints write them), with an explicit null rope_scaling. */
    static JsonObject config(ModelConfig c) {
        JsonObject o = com.google.gson.JsonParser.parseString(Checkpoints.huggingFaceConfig(c, -1)).getAsJsonObject();
        o.add("rope_scaling", com.google.gson.JsonNull.INSTANCE);
        return o;
    }

    /** A tensor to write: values (already representable in {@code dtype}), its shape and dtype (F32, BF16 or F16). */
    record T(float[] values, int[] shape, String dtype) {}

    /** A safetensors file written by hand (not by SafeTensors.write, which writes F32 only). */
    static void write(Path file, Map<String, T> tensors) throws IOException {
        JsonObject header = new JsonObject();
        long offset = 0;
        for (var e : tensors.entrySet()) {
            JsonObject t = new JsonObject();
            t.addProperty("dtype", e.getValue().dtype());
            com.google.gson.JsonArray shape = new com.google.gson.JsonArray();
            for (int s : e.getValue().shape()) shape.add(s);
            t.add("shape", shape);
            long bytes = (long) e.getValue().values().length * (e.getValue().dtype().equals("F32") ? 4 : 2);
            com.google.gson.JsonArray off = new com.google.gson.JsonArray();
            off.add(offset);
            off.add(offset + bytes);
            t.add("data_offsets", off);
            header.add(e.getKey(), t);
            offset += bytes;
        }
        byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length).array());
            out.write(h);
            for (T t : tensors.values()) {
                boolean f32 = t.dtype().equals("F32");
                ByteBuffer b = ByteBuffer.allocate(t.values().length * (f32 ? 4 : 2)).order(ByteOrder.LITTLE_ENDIAN);
                for (float v : t.values()) {
                    if (f32) b.putFloat(v);
                    else if (t.dtype().equals("BF16")) b.putShort((short) (Float.floatToRawIntBits(v) >>> 16));
                    else b.putShort(Float.floatToFloat16(v));
                }
                out.write(b.array());
            }
        }
    }

    /** Random values of the model's parameters (vocabulary rows only), exact in {@code dtype}. */
    static Map<String, T> weights(ModelConfig c, String dtype, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        Map<String, T> w = new LinkedHashMap<>();
        try (CpuBackend be = new CpuBackend(1)) {
            for (Parameter p : new LlamaModel(be, c).parameters()) {
                int[] shape = p.shape();
                if (LlamaModel.VOCABULARY_ROWS.contains(p.name())) shape[0] = c.vocabSize();
                int n = shape.length == 2 ? shape[0] * shape[1] : shape[0];
                float[] v = new float[n];
                for (int i = 0; i < n; i++) {
                    float x = (float) (r.nextGaussian() * 0.1);
                    v[i] = dtype.equals("BF16") ? Bf16.round(x) : dtype.equals("F16") ? Float.float16ToFloat(Float.floatToFloat16(x)) : x;
                }
                w.put(p.name(), new T(v, shape, dtype));
            }
        }
        return w;
    }

    /** The index of {@code map} (tensor → shard) and a config.json of {@link #SHAPE} with tied embeddings; returns the index. */
    private static JsonObject writeTiedIndexed(Path dir, JsonObject map) throws IOException {
        JsonObject index = new JsonObject();
        index.add("weight_map", map);
        Files.writeString(dir.resolve(HuggingFaceModel.INDEX), index.toString());
        JsonObject cfg = config(SHAPE);
        cfg.addProperty("tie_word_embeddings", true);
        Files.writeString(dir.resolve(HuggingFaceModel.CONFIG), cfg.toString());
        return index;
    }

    @Test void shardedBf16AndF16WithTiedEmbeddingsLoadExactly(@TempDir Path dir) throws IOException {
        Map<String, T> bf16 = weights(SHAPE, "BF16", 1), f16 = weights(SHAPE, "F16", 2);
        Map<String, T> shard1 = new LinkedHashMap<>(), shard2 = new LinkedHashMap<>();
        JsonObject map = new JsonObject();
        for (String name : bf16.keySet()) {
            if (name.equals("lm_head.weight")) continue;  // tied: the output embedding is the input one
            boolean first = name.startsWith("model.layers.0.") || name.startsWith("model.embed");
            (first ? shard1 : shard2).put(name, first ? bf16.get(name) : f16.get(name));
            map.addProperty(name, first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
        }
        shard1.put("model.layers.0.self_attn.rotary_emb.inv_freq", new T(new float[] {1, 0.1f}, new int[] {2}, "F32"));  // unused
        map.addProperty("model.layers.0.self_attn.rotary_emb.inv_freq", "model-00001-of-00002.safetensors");
        write(dir.resolve("model-00001-of-00002.safetensors"), shard1);
        write(dir.resolve("model-00002-of-00002.safetensors"), shard2);
        writeTiedIndexed(dir, map);

        assertTrue(HuggingFaceModel.is(dir));
        assertEquals(dir, Checkpoints.latest(dir));
        ModelConfig read = Checkpoints.readModelConfig(dir);
        assertEquals(SHAPE.withContext(48), new ModelConfig("x", read.vocabSize(), read.dim(), read.ffnDim(), read.layers(), read.heads(),
                read.contextLength(), read.ropeTheta(), read.normEps()));
        assertTrue(read.tiedEmbeddings());
        assertEquals(null, Checkpoints.readMeta(dir).tokenizer(), "no tokenizer.model");
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, read);
            Checkpoints.loadWeights(dir, m, be);
            for (Parameter p : m.parameters()) {
                String from = p.name().equals("lm_head.weight") ? "model.embed_tokens.weight" : p.name();
                float[] want = (shard1.containsKey(from) ? shard1 : shard2).get(from).values();
                float[] got = be.download(p.master());
                assertArrayEquals(want, java.util.Arrays.copyOf(got, want.length), p.name());
                for (int i = want.length; i < got.length; i++) assertEquals(0f, got[i], p.name() + " padding row");
            }
        }
    }

    @Test void whatTheModelDoesNotComputeIsRefusedInOneLine(@TempDir Path dir) throws IOException {
        write(dir.resolve("model.safetensors"), weights(SHAPE, "F32", 3));
        Map<String, String> wrong = new LinkedHashMap<>();
        wrong.put("\"num_key_value_heads\": 3", "3 key/value heads do not divide 2 query heads into groups");
        wrong.put("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling of type 'linear' is not supported");
        wrong.put("\"model_type\": \"qwen2\"", "describes a 'qwen2' model");
        wrong.put("\"model_type\": \"mistral\", \"sliding_window\": 4096", "sliding-window attention (sliding_window 4096) is not supported");
        wrong.put("\"attention_bias\": true", "attention_bias is not supported");
        wrong.put("\"hidden_act\": \"gelu\"", "hidden_act 'gelu' is not supported");
        wrong.put("\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}", "rope_parameters of type 'yarn' is not supported");
        wrong.put("\"rope_parameters\": {\"rope_type\": \"llama3\"}", "rope_parameters has no factor");
        wrong.put("\"rope_scaling\": {\"factor\": 8.0}", "rope_scaling has no rope_type");
        // transformers 4 copies "type" over "rope_type": the two disagreeing is not read as either
        wrong.put("\"rope_scaling\": {\"rope_type\": \"llama3\", \"type\": \"linear\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                + "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}",
                "rope_scaling's rope_type 'llama3' and type 'linear' disagree");
        wrong.put("\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}",
                "rope_theta 10000.0 and rope_parameters's rope_theta 500000.0 disagree");
        wrong.put("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                + "\"original_max_position_embeddings\": 64}, \"rope_parameters\": {\"rope_type\": \"default\"}",
                "rope_scaling and rope_parameters disagree (theta 10000.0, llama3 factor 8.0 low 1.0 high 4.0 original 64 vs theta 10000.0, "
                + "no scaling); patchcore does not guess which one the model was trained with");
        wrong.put("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
                + "\"original_max_position_embeddings\": 8192}", "rope_scaling: RoPE scaling needs 0 < low_freq_factor < high_freq_factor");
        wrong.put("\"model_type\": null", "has no model_type");
        wrong.put("\"rms_norm_eps\": \"1e-5x\"", "rms_norm_eps is not a number (\"1e-5x\")");
        wrong.put("\"mlp_bias\": \"no\"", "mlp_bias is not true or false");
        wrong.put("\"vocab_size\": 97.5", "vocab_size is not a whole number (97.5)");
        wrong.put("\"vocab_size\": \"97\"", "vocab_size is not a whole number");
        wrong.put("\"num_attention_heads\": 0", "must be positive");
        for (var e : wrong.entrySet()) {
            JsonObject cfg = config(SHAPE);
            JsonObject patch = com.google.gson.JsonParser.parseString("{" + e.getKey() + "}").getAsJsonObject();
            patch.entrySet().forEach(p -> cfg.add(p.getKey(), p.getValue()));
            Files.writeString(dir.resolve("config.json"), cfg.toString());
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readModelConfig(dir));
            assertTrue(ex.getMessage().contains(e.getValue()), ex.getMessage());
        }
        // Null is absent, as in LlamaConfig; transformers 5 keeps the RoPE base in rope_parameters.
        JsonObject nulls = config(SHAPE);
        for (String key : List.of("attention_bias", "rope_theta", "tie_word_embeddings", "hidden_act", "rms_norm_eps"))
            nulls.add(key, com.google.gson.JsonNull.INSTANCE);
        Files.writeString(dir.resolve("config.json"), nulls.toString());
        assertEquals(1e-6f, Checkpoints.readModelConfig(dir).normEps(), "LlamaConfig's default");
        assertEquals(10000f, Checkpoints.readModelConfig(dir).ropeTheta());
        JsonObject v5 = config(SHAPE);
        v5.remove("rope_theta");
        v5.add("rope_parameters", com.google.gson.JsonParser.parseString("{\"rope_type\": \"default\", \"rope_theta\": 500000.0}"));
        Files.writeString(dir.resolve("config.json"), v5.toString());
        assertEquals(500000f, Checkpoints.readModelConfig(dir).ropeTheta(), "transformers 5's rope_parameters");
        // LLaMA-3.2's, in both spellings; a checkpoint writes it back as rope_scaling.
        v5.add("rope_parameters", com.google.gson.JsonParser.parseString("{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
                + "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}"));
        Files.writeString(dir.resolve("config.json"), v5.toString());
        ModelConfig llama32 = Checkpoints.readModelConfig(dir);
        assertEquals(new dev.patchcore.config.Rope(500000f, new dev.patchcore.config.Rope.Scaling(32f, 1f, 4f, 8192)), llama32.rope());
        JsonObject written = com.google.gson.JsonParser.parseString(Checkpoints.huggingFaceConfig(llama32, 2)).getAsJsonObject();
        assertEquals("{\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                + "\"original_max_position_embeddings\":8192}", written.get("rope_scaling").toString());
        assertEquals(32 * 8192, written.get("max_position_embeddings").getAsInt(), "past the original context: factor × original "
                + "(context " + llama32.contextLength() + ")");
        Files.writeString(dir.resolve("config.json"), written.toString());
        assertEquals(llama32.rope(), Checkpoints.readModelConfig(dir).rope());
        JsonObject mistral = config(SHAPE);
        mistral.addProperty("model_type", "mistral");
        mistral.add("sliding_window", com.google.gson.JsonNull.INSTANCE);
        Files.writeString(dir.resolve("config.json"), mistral.toString());
        assertEquals(SHAPE.dim(), Checkpoints.readModelConfig(dir).dim(), "Mistral without a sliding window reads as LLaMA");
        // Without the key, MistralConfig's default window (4096) applies in transformers: not taken for none.
        mistral.remove("sliding_window");
        Files.writeString(dir.resolve("config.json"), mistral.toString());
        IllegalArgumentException noWindowKey = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readModelConfig(dir));
        assertTrue(noWindowKey.getMessage().contains("sliding-window attention (no sliding_window: MistralConfig's default 4096) is not supported"),
                noWindowKey.getMessage());
        // Untied, but without lm_head.weight: named.
        Files.writeString(dir.resolve("config.json"), config(SHAPE).toString());
        Map<String, T> noHead = weights(SHAPE, "F32", 3);
        noHead.remove("lm_head.weight");
        write(dir.resolve("model.safetensors"), noHead);
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, Checkpoints.readModelConfig(dir));
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Checkpoints.loadWeights(dir, m, be));
            assertTrue(ex.getMessage().contains("has no tensor lm_head.weight (and config.json's tie_word_embeddings is not true)"), ex.getMessage());
        }
    }

    /**
     * A run's checkpoint rewritten as a Hugging Face folder (its config.json and tokenizer.model, the weights as BF16 in
     * two shards): eval scores it as the run within bf16 rounding, generate reads it, and train --init-from starts a new
     * run from it with its shape (no --preset); data of another tokenizer is refused.
     */
    @Test void aHuggingFaceFolderWorksWhereACheckpointDoes(@TempDir Path dir) throws IOException {
        Path model = dev.patchcore.data.SentencePieceFixture.model(dir), text = dev.patchcore.data.SentencePieceFixture.text(dir);
        Path ds = dir.resolve("ds"), run = dir.resolve("run");
        assertEquals(0, dev.patchcore.cli.Main.run("prepare", "--tokenizer", model.toString(), "--out", ds.toString(), text.toString()), err.toString());
        assertEquals(0, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                "--steps", "6", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path ckpt = Checkpoints.latest(run), hf = dir.resolve("hf");
        Files.createDirectories(hf);
        Files.copy(ckpt.resolve("config.json"), hf.resolve("config.json"));
        Files.copy(ckpt.resolve("tokenizer.model"), hf.resolve("tokenizer.model"));
        Map<String, T> s1 = new LinkedHashMap<>(), s2 = new LinkedHashMap<>();
        JsonObject map = new JsonObject();
        try (var r = new dev.patchcore.checkpoint.SafeTensors.Reader(ckpt.resolve("model.safetensors"))) {
            for (String name : r.names()) {
                float[] v = r.read(name);
                for (int i = 0; i < v.length; i++) v[i] = Bf16.round(v[i]);
                boolean first = name.startsWith("model.embed") || name.startsWith("model.layers.0.");
                (first ? s1 : s2).put(name, new T(v, r.shape(name), "BF16"));
                map.addProperty(name, first ? "a.safetensors" : "b.safetensors");
            }
        }
        write(hf.resolve("a.safetensors"), s1);
        write(hf.resolve("b.safetensors"), s2);
        JsonObject index = new JsonObject();
        index.add("weight_map", map);
        Files.writeString(hf.resolve(HuggingFaceModel.INDEX), index.toString());

        assertEquals(evalLoss(run, ds), evalLoss(hf, ds), 0.02, "the same weights, rounded to bf16");
        out.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("generate", hf.toString(), "--backend", "cpu", "--prompt", "The jury", "--tokens", "4"), err.toString());
        assertTrue(out.toString().startsWith("The jury"), out.toString());
        out.reset();
        Path run2 = dir.resolve("run2");
        assertEquals(0, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--init-from", hf.toString(), "--data", ds.toString(),
                "--out", run2.toString(), "--steps", "2", "--batch", "4", "--context", "16", "--eval-every", "0"), err.toString());
        assertTrue(out.toString().contains("initialized from " + hf), out.toString());
        assertEquals(Checkpoints.readModelConfig(ckpt).dim(), Checkpoints.readModelConfig(Checkpoints.latest(run2)).dim());
        err.reset();
        assertEquals(2, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--init-from", hf.toString(), "--out", dir.resolve("run3").toString(),
                "--steps", "2"));  // the bundled byte-level corpus: another vocabulary
        assertTrue(err.toString().startsWith("error: --init-from " + hf) && err.toString().contains("vocab"), err.toString());
    }

    /** The loss `eval CKPT --data DS` prints. */
    private double evalLoss(Path ckpt, Path ds) {
        out.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("eval", ckpt.toString(), "--backend", "cpu", "--data", ds.toString()), err.toString());
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("loss (\\d+\\.\\d+)").matcher(out.toString());
        assertTrue(m.find(), out.toString());
        return Double.parseDouble(m.group(1));
    }

    /**
     * Tied embeddings read as a tied model (no lm_head parameter); a model with its own head (--no-tie-embeddings)
     * starts it as the input embedding even where the file also has an lm_head (as transformers ties them); an
     * embedding of more rows than vocab_size is refused; a sharded folder given by a relative path loads; a shard name
     * that is not a plain file name is refused.
     */
    @Test void tiedEmbeddingsWinAndTheVocabularyRowsMustBeVocabSize(@TempDir Path dir) throws IOException {
        Map<String, T> w = weights(SHAPE, "F32", 5);
        write(dir.resolve("a.safetensors"), w);
        JsonObject map = new JsonObject();
        for (String name : w.keySet()) map.addProperty(name, "a.safetensors");
        JsonObject index = writeTiedIndexed(dir, map);
        assertTrue(Checkpoints.readModelConfig(dir).tiedEmbeddings());
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel tied = new LlamaModel(be, Checkpoints.readModelConfig(dir));
            Checkpoints.loadWeights(dir, tied, be);
            assertTrue(tied.parameters().stream().noneMatch(p -> p.name().equals("lm_head.weight")));
            LlamaModel m = new LlamaModel(be, Checkpoints.readModelConfig(dir).withTiedEmbeddings(false));
            Path relative = Path.of("").toAbsolutePath().relativize(dir.toAbsolutePath());
            Checkpoints.loadWeights(relative, m, be);
            float[] head = be.download(m.parameters().getLast().master()), embed = be.download(m.parameters().getFirst().master());
            assertArrayEquals(embed, head, "lm_head is the input embedding");
            Map<String, T> padded = new LinkedHashMap<>(w);
            T e = w.get("model.embed_tokens.weight");
            padded.put("model.embed_tokens.weight", new T(java.util.Arrays.copyOf(e.values(), SHAPE.paddedVocab() * SHAPE.dim()),
                    new int[] {SHAPE.paddedVocab(), SHAPE.dim()}, "F32"));
            write(dir.resolve("a.safetensors"), padded);
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Checkpoints.loadWeights(dir, m, be));
            assertTrue(ex.getMessage().contains("has shape [128, 32], the model of config.json expects [97, 32]"), ex.getMessage());
        }
        map.addProperty("model.norm.weight", "../a.safetensors");
        Files.writeString(dir.resolve(HuggingFaceModel.INDEX), index.toString());
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> HuggingFaceModel.weightFiles(dir));
        assertTrue(ex.getMessage().contains("names a shard that is not a file name in its folder: '../a.safetensors'"), ex.getMessage());
    }

    /**
     * An independent check of the Hugging Face semantics (names, layouts, rotate_half RoPE at theta 500, repeat_kv):
     * the mean next-token loss of a model whose weights are a formula, as tools/reference/hf_llama_reference.py
     * computes it in float64 NumPy from transformers' LlamaForCausalLM, against patchcore's forward of the same weights
     * read from a Hugging Face folder, with multi-head and with grouped-query attention, and with LLaMA-3's RoPE
     * scaling (factor 8, low/high frequency factors 1 and 4, an original context of 64: of the 8 frequencies of
     * Dh = 16 at theta 500, 2 are kept, 1 is blended and 5 are divided by 8).
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0} heads, {1} key/value heads, llama3 RoPE {3}: loss {2}")
    @org.junit.jupiter.params.provider.CsvSource({"2, 2, 4.2782336185, false", "2, 1, 4.2210356352, false",  // [--heads H] [--kv-heads KV]
            "4, 4, 4.2713803933, false", "4, 2, 4.3686352916, false",
            "2, 2, 4.2752038054, true", "4, 2, 4.3873612131, true"})  // [--llama3 8 1 4 64]
    void theForwardOfAHuggingFaceFolderMatchesTheNumpyReference(int heads, int kvHeads, double reference, boolean llama3,
                                                                @TempDir Path dir) throws IOException {
        ModelConfig shape = new ModelConfig("ref", 97, 32, 88, 2, heads, 40, 500f, 1e-5f, kvHeads);
        Map<String, T> w = new LinkedHashMap<>();
        try (CpuBackend be = new CpuBackend(1)) {
            int k = 0;
            for (Parameter p : new LlamaModel(be, shape).parameters()) {
                int[] dims = p.shape();
                if (LlamaModel.VOCABULARY_ROWS.contains(p.name())) dims[0] = shape.vocabSize();
                float[] v = new float[dims.length == 2 ? dims[0] * dims[1] : dims[0]];
                for (int i = 0; i < v.length; i++)
                    v[i] = (float) (dims.length == 2 ? 0.1 * Math.sin(0.37 * i + 1.3 * k) : 1 + 0.1 * Math.cos(i + k));
                w.put(p.name(), new T(v, dims, "F32"));
                k++;
            }
        }
        write(dir.resolve("model.safetensors"), w);
        JsonObject cfg = config(shape);
        cfg.remove("torch_dtype");
        if (llama3) cfg.add("rope_scaling", com.google.gson.JsonParser.parseString("{\"rope_type\": \"llama3\", \"factor\": 8.0, "
                + "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}"));
        Files.writeString(dir.resolve(HuggingFaceModel.CONFIG), cfg.toString());
        assertEquals(llama3, Checkpoints.readModelConfig(dir).rope().scaled());
        int t = 40, vocab = shape.vocabSize();
        int[] tokens = new int[t];
        for (int j = 0; j < t; j++) tokens[j] = (37 * j + 11) % vocab;
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel m = new LlamaModel(be, Checkpoints.readModelConfig(dir));
            Checkpoints.loadWeights(dir, m, be);
            dev.patchcore.tensor.Tensor ids = be.scratch(dev.patchcore.tensor.DType.I32, 1, t);
            be.uploadInts(ids, tokens);
            float[] logits = be.download(m.forward(new Tape(be), ids, 1, 1).value());
            int stride = logits.length / t;
            double loss = 0;
            for (int j = 0; j + 1 < t; j++) {
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int v = 0; v < vocab; v++) max = Math.max(max, logits[j * stride + v]);
                for (int v = 0; v < vocab; v++) sum += Math.exp(logits[j * stride + v] - max);
                loss -= logits[j * stride + tokens[j + 1]] - max - Math.log(sum);
            }
            assertEquals(reference, loss / (t - 1), 2e-5, "hf_llama_reference.py --heads " + heads + " --kv-heads " + kvHeads
                    + (llama3 ? " --llama3 8 1 4 64" : "") + "'s loss");
        }
    }

    /** generate puts config.json's bos_token_id first where the tokenizer adds it (LlamaTokenizer's default). */
    @Test void theBeginOfTextTokenIsPrependedAsTheTokenizerSays(@TempDir Path dir) throws IOException {
        write(dir.resolve("model.safetensors"), weights(SHAPE, "F32", 7));
        JsonObject cfg = config(SHAPE);
        cfg.addProperty("bos_token_id", 1);
        Files.writeString(dir.resolve("config.json"), cfg.toString());
        assertEquals(-1, HuggingFaceModel.bosToPrepend(dir), "no tokenizer files: nothing to go by");
        dev.patchcore.data.SentencePieceFixture.model(dir);
        Files.move(dir.resolve("tok.model"), dir.resolve("tokenizer.model"));
        assertEquals(1, HuggingFaceModel.bosToPrepend(dir), "a SentencePiece tokenizer.model alone: LlamaTokenizer's default");
        Map<String, Integer> configs = Map.of("{\"tokenizer_class\": \"LlamaTokenizer\"}", 1, "{\"add_bos_token\": false}", -1,
                "{\"tokenizer_class\": \"GPT2Tokenizer\"}", -1, "{\"tokenizer_class\": \"GPT2Tokenizer\", \"add_bos_token\": true}", 1);
        for (var e : configs.entrySet()) {
            Files.writeString(dir.resolve("tokenizer_config.json"), e.getKey());
            assertEquals((int) e.getValue(), HuggingFaceModel.bosToPrepend(dir), e.getKey());
        }
        cfg.remove("bos_token_id");
        Files.writeString(dir.resolve("config.json"), cfg.toString());
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"add_bos_token\": true}");
        assertEquals(-1, HuggingFaceModel.bosToPrepend(dir), "no bos_token_id");
        // A tokenizer.json patchcore does not read (a Unigram model) and no tokenizer.model: the folder names no
        // tokenizer (eval --data and train --init-from check the vocabulary alone); what needs the text says why.
        Files.move(dir.resolve("tokenizer.model"), dir.resolve("tokenizer.model.away"));
        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
        org.junit.jupiter.api.Assertions.assertNull(Checkpoints.readMeta(dir).tokenizer());
        IllegalArgumentException why = assertThrows(IllegalArgumentException.class,
                () -> dev.patchcore.data.Tokenizers.recorded(null, dir));
        assertTrue(why.getMessage().endsWith("has a Unigram model; patchcore reads BPE tokenizer.json files, byte-level or "
                + "SentencePiece-style with byte fallback (for a SentencePiece model, give its tokenizer.model)"), why.getMessage());
        Files.delete(dir.resolve("tokenizer.json"));
        Files.move(dir.resolve("tokenizer.model.away"), dir.resolve("tokenizer.model"));
        // The tokenizer's 1000 pieces against vocab_size 97: refused for every command (they all read the meta).
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(dir));
        assertTrue(ex.getMessage().contains("config.json's vocab_size 97 is not its tokenizer.model's 1000 pieces"), ex.getMessage());
        assertFalse(ex.getMessage().contains("padded"), "fewer rows than pieces is no padding: " + ex.getMessage());
    }

    /**
     * A LLaMA-2-style folder that ships tokenizer.json alone (byte fallback, the test model llama_bpe.model converted as
     * transformers converts it): its tokenizer is read, generate puts {@code <s>} first (the post-processor's; with
     * none, config.json's bos_token_id for a LLaMA tokenizer class) and prints text; a tokenizer.model beside it is
     * preferred.
     */
    @Test void aSentencePieceStyleTokenizerJsonServesAFolderWithoutTokenizerModel(@TempDir Path dir) throws IOException {
        ModelConfig shape = new ModelConfig("x", 1000, 32, 88, 2, 2, 48, 10000f, 1e-5f);
        write(dir.resolve("model.safetensors"), weights(shape, "F32", 7));
        JsonObject cfg = config(shape);
        cfg.addProperty("bos_token_id", 1);
        Files.writeString(dir.resolve("config.json"), cfg.toString());
        byte[] json = dev.patchcore.data.HuggingFaceBpeTokenizerTest.resource("spbpe-tokenizer.json");
        Files.write(dir.resolve("tokenizer.json"), json);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": true, "
                + "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
        String name = Checkpoints.readMeta(dir).tokenizer();
        assertTrue(name.startsWith("hf-bpe-"), name);
        assertEquals(1, HuggingFaceModel.bosToPrepend(dir), "<s>, from the post-processor");
        out.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("generate", dir.toString(), "--backend", "cpu", "--prompt", "The jury caf\u00e9",
                "--tokens", "6"), err.toString());
        assertTrue(out.toString().startsWith("The jury caf\u00e9"), out.toString());
        assertFalse(out.toString().contains("\u2581") || out.toString().contains("<0x"), out.toString());

        JsonObject noTemplate = com.google.gson.JsonParser.parseString(new String(json, java.nio.charset.StandardCharsets.UTF_8))
                .getAsJsonObject();
        noTemplate.add("post_processor", com.google.gson.JsonNull.INSTANCE);
        Files.writeString(dir.resolve("tokenizer.json"), noTemplate.toString());
        assertEquals(1, HuggingFaceModel.bosToPrepend(dir), "LlamaTokenizerFast adds <s> itself: config.json's bos_token_id");
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"</s>\"}");
        assertEquals(-1, HuggingFaceModel.bosToPrepend(dir), "PreTrainedTokenizerFast follows the post-processor: none");
        Files.write(dir.resolve("tokenizer.json"), json);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"add_bos_token\": false}");
        assertEquals(-1, HuggingFaceModel.bosToPrepend(dir), "add_bos_token false");

        dev.patchcore.data.SentencePieceFixture.model(dir);
        Files.move(dir.resolve("tok.model"), dir.resolve("tokenizer.model"));
        name = Checkpoints.readMeta(dir).tokenizer();
        assertTrue(name.startsWith("sentencepiece-"), "the tokenizer.model is preferred: " + name);
    }

    /** A patchcore checkpoint has the same config.json; it is not taken for a Hugging Face folder, even cut short. */
    @Test void aPatchcoreCheckpointIsNotAHuggingFaceFolder(@TempDir Path root) throws IOException {
        Path dir = root.resolve("run/checkpoints/step-00000004"), copy = root.resolve("copy");
        Files.createDirectories(dir);
        Files.createDirectories(copy);
        Files.writeString(dir.resolve("config.json"), config(SHAPE).toString());
        dev.patchcore.checkpoint.SafeTensors.write(dir.resolve("model.safetensors"),
                List.of(new dev.patchcore.checkpoint.SafeTensors.Entry("w", new int[] {1}, () -> new float[] {1})), Map.of("patchcore.config", "{}"));
        assertFalse(HuggingFaceModel.is(dir), "a run's checkpoint cut short before its trainer.json");
        for (String f : List.of("config.json", "model.safetensors")) Files.copy(dir.resolve(f), copy.resolve(f));
        assertTrue(HuggingFaceModel.is(copy), "its Hugging Face files in a folder of their own");
        Files.writeString(dir.resolve("model.safetensors"), "cut");
        assertFalse(HuggingFaceModel.is(dir), "unreadable weights: the checkpoint path reports them");
    }

    /** A checkpoint's files copied out of its run (as for an upload to the Hub) read back as the same model. */
    @Test void aCheckpointsHuggingFaceFilesReadBack(@TempDir Path dir) throws IOException {
        Path run = dir.resolve("run"), copied = dir.resolve("copied");
        assertEquals(0, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--out", run.toString(), "--kv-heads", "2",
                "--steps", "2", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path ckpt = Checkpoints.latest(run);
        Files.createDirectories(copied);
        for (String f : List.of("config.json", "model.safetensors")) Files.copy(ckpt.resolve(f), copied.resolve(f));
        assertTrue(HuggingFaceModel.is(copied));
        ModelConfig saved = Checkpoints.readModelConfig(ckpt), read = Checkpoints.readModelConfig(copied);
        assertEquals(2, read.kvHeads(), "the run's --kv-heads, as num_key_value_heads");
        assertEquals(saved, new ModelConfig(saved.name(), read.vocabSize(), read.dim(), read.ffnDim(), read.layers(), read.heads(),
                read.contextLength(), read.ropeTheta(), read.normEps(), read.kvHeads(), read.ropeScaling(), read.tiedEmbeddings()),
                "the same model (named after its folder)");
        try (CpuBackend be = new CpuBackend(1)) {
            LlamaModel a = LlamaModel.forInference(be, saved), b = LlamaModel.forInference(be, read);
            Checkpoints.loadWeights(ckpt, a, be);
            Checkpoints.loadWeights(copied, b, be);
            for (int i = 0; i < a.parameters().size(); i++)
                assertArrayEquals(be.download(a.parameters().get(i).master()), be.download(b.parameters().get(i).master()), a.parameters().get(i).name());
        }
    }

    /**
     * A byte-level BPE tokenizer.json (a LLaMA-3-style fixture) from prepare to a Hugging Face folder: the dataset and
     * the checkpoint carry tokenizer.json and its tokenizer_config.json; the checkpoint's files copied out read back as
     * a Hugging Face folder with the same tokenizer, so eval scores it as the run and train --init-from takes the data;
     * its post-processor's begin-of-text token is the one generate puts first.
     */
    @Test void aTokenizerJsonTravelsFromPrepareToAHuggingFaceFolder(@TempDir Path dir) throws IOException {
        Path tok = Files.createDirectories(dir.resolve("tok")), text = dev.patchcore.data.SentencePieceFixture.text(dir);
        Files.write(tok.resolve("tokenizer.json"), dev.patchcore.data.HuggingFaceBpeTokenizerTest.resource("tokenizer.json"));
        Files.writeString(tok.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|end_of_text|>\", \"tokenizer_class\": \"PreTrainedTokenizerFast\"}");
        Path ds = dir.resolve("ds"), run = dir.resolve("run"), hf = Files.createDirectories(dir.resolve("hf"));
        assertEquals(0, dev.patchcore.cli.Main.run("prepare", "--tokenizer", tok.resolve("tokenizer.json").toString(), "--out", ds.toString(),
                text.toString()), err.toString());
        assertArrayEquals(Files.readAllBytes(tok.resolve("tokenizer_config.json")), Files.readAllBytes(ds.resolve("tokenizer_config.json")));
        assertEquals(0, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--data", ds.toString(), "--out", run.toString(),
                "--steps", "4", "--context", "16", "--batch", "4", "--eval-every", "0"), err.toString());
        Path ckpt = Checkpoints.latest(run);
        for (String f : List.of("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"))
            Files.copy(ckpt.resolve(f), hf.resolve(f));
        String name = Checkpoints.readMeta(ckpt).tokenizer();
        assertTrue(name.startsWith("hf-bpe-"), name);
        assertEquals(name, Checkpoints.readMeta(hf).tokenizer(), "the copied folder names the same tokenizer");
        assertEquals(evalLoss(run, ds), evalLoss(hf, ds), 1e-9, "the same weights and tokens");
        assertEquals(0, dev.patchcore.cli.Main.run("train", "--backend", "cpu", "--init-from", hf.toString(), "--data", ds.toString(),
                "--out", dir.resolve("run2").toString(), "--steps", "2", "--batch", "4", "--context", "16", "--eval-every", "0"), err.toString());
        out.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("generate", hf.toString(), "--backend", "cpu", "--prompt", "The jury", "--tokens", "3"),
                err.toString());
        assertTrue(out.toString().startsWith("The jury"), out.toString());

        assertEquals(-1, HuggingFaceModel.bosToPrepend(hf), "the checkpoint's config says add_bos_token false: trained without");
        Files.writeString(hf.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|end_of_text|>\"}");
        assertEquals(3000, HuggingFaceModel.bosToPrepend(hf), "<|begin_of_text|>, from the post-processor");
        // LLaMA-3.2's config says 131072 positions: used with a context of at most 4096 unless --context says more.
        JsonObject cfg = com.google.gson.JsonParser.parseString(Files.readString(hf.resolve("config.json"))).getAsJsonObject();
        cfg.addProperty("max_position_embeddings", 131072);
        Files.writeString(hf.resolve("config.json"), cfg.toString());
        err.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("generate", hf.toString(), "--backend", "cpu", "--prompt", "The jury", "--tokens", "2"),
                err.toString());
        assertTrue(err.toString().contains("max_position_embeddings is 131072; using a context of 4096 tokens (--context sets another)"),
                err.toString());
        err.reset();
        assertEquals(0, dev.patchcore.cli.Main.run("eval", hf.toString(), "--backend", "cpu", "--data", ds.toString(), "--context", "16"),
                err.toString());
        assertFalse(err.toString().contains("using a context"), err.toString());
        cfg.addProperty("vocab_size", 3072);
        Files.writeString(hf.resolve("config.json"), cfg.toString());
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Checkpoints.readMeta(hf));
        assertTrue(ex.getMessage().contains("config.json's vocab_size 3072 is not its tokenizer.json's 3002 tokens (a vocabulary padded past "
                + "the tokenizer's)"), ex.getMessage());
    }
    /**
     * A folder with a config.json but no weights patchcore reads is said to be one (PyTorch weights, or safetensors
     * without model.safetensors or its index), not "no checkpoint ... (expected checkpoints/latest)", a run folder's
     * error.
     */
    @Test void aHuggingFaceFolderWithoutSafetensorsWeightsIsNamedAsOne(@TempDir Path dir) throws IOException {
        Files.writeString(dir.resolve("config.json"), config(SHAPE).toString());
        var e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.latest(dir));
        assertEquals(dir + " holds a config.json but no weights patchcore reads: model.safetensors, or model.safetensors.index.json "
                + "and the shards it names", e.getMessage());
        write(dir.resolve("model-00001-of-00001.safetensors"), weights(SHAPE, "F32", 3));  // its index missing
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.latest(dir));
        assertTrue(e.getMessage().startsWith(dir + " holds a config.json but no weights patchcore reads"), e.getMessage());
        Files.writeString(dir.resolve("pytorch_model.bin"), "");
        e = assertThrows(IllegalArgumentException.class, () -> Checkpoints.latest(dir));
        assertTrue(e.getMessage().startsWith(dir + " holds PyTorch weights (pytorch_model.bin)"), e.getMessage());
    }
}
