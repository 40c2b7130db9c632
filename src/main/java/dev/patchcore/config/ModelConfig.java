package dev.patchcore.config;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Shape of a LLaMA-style decoder. {@code contextLength} is the token-level block T; the patch stage reads K·T
 * tokens as T patches, so positions never exceed T. {@code kvHeads} key/value heads serve the query heads in groups
 * of heads / kvHeads (grouped-query attention, as LLaMA-2 70B and LLaMA-3); equal to {@code heads} (multi-head
 * attention, the paper's models and every preset) when 0, which is also what a checkpoint written before the field
 * existed records. {@code ropeScaling} is null for the plain rotary frequencies (every preset), or LLaMA-3's scaling
 * of them ({@link Rope.Scaling}, read from a Hugging Face folder). {@code tiedEmbeddings}: the LM head is the input
 * embedding (one matrix, as in LLaMA-3.2, SmolLM and Hugging Face's {@code tie_word_embeddings}); the paper's models
 * and every preset have two.
 */
public record ModelConfig(String name, int vocabSize, int dim, int ffnDim, int layers, int heads,
                          int contextLength, float ropeTheta, float normEps, int kvHeads, Rope.Scaling ropeScaling,
                          boolean tiedEmbeddings) {

    /** A multi-head-attention model (as many key/value heads as query heads). */
    public ModelConfig(String name, int vocabSize, int dim, int ffnDim, int layers, int heads, int contextLength, float ropeTheta,
                       float normEps) {
        this(name, vocabSize, dim, ffnDim, layers, heads, contextLength, ropeTheta, normEps, heads);
    }

    /** A model with the plain rotary frequencies and untied embeddings. */
    public ModelConfig(String name, int vocabSize, int dim, int ffnDim, int layers, int heads, int contextLength, float ropeTheta,
                       float normEps, int kvHeads) {
        this(name, vocabSize, dim, ffnDim, layers, heads, contextLength, ropeTheta, normEps, kvHeads, null, false);
    }

    public ModelConfig {
        if (heads <= 0) throw new IllegalArgumentException("heads must be positive");
        if (dim <= 0) throw new IllegalArgumentException("dim must be positive");
        if (kvHeads == 0) kvHeads = heads;
        if (kvHeads < 0 || heads % kvHeads != 0)
            throw new IllegalArgumentException(kvHeads + " key/value heads do not divide " + heads + " query heads into groups");
        if (dim % heads != 0) throw new IllegalArgumentException("dim " + dim + " not divisible by heads " + heads);
        if ((dim / heads) % 2 != 0) throw new IllegalArgumentException("head dimension must be even for RoPE");
        if (vocabSize <= 0 || layers <= 0 || ffnDim <= 0 || contextLength <= 0)
            throw new IllegalArgumentException("model sizes must be positive");
        if (vocabSize > MAX_VOCAB) throw new IllegalArgumentException("a vocabulary of " + vocabSize + " is more than 2^24 tokens");
    }

    /** The largest vocabulary (2^24; the largest in use are about 2^18): its padded rows stay far inside an int. */
    public static final int MAX_VOCAB = 1 << 24;

    public int headDim() { return dim / heads; }

    /** The rotary position embedding's frequencies. */
    public Rope rope() { return new Rope(ropeTheta, ropeScaling); }

    /** Width of the key and value projections: kvHeads · headDim. */
    public int kvDim() { return kvHeads * headDim(); }

    /** Query heads per key/value head (1: multi-head attention). */
    public int groups() { return heads / kvHeads; }

    public ModelConfig withKvHeads(int kv) {
        return new ModelConfig(name, vocabSize, dim, ffnDim, layers, heads, contextLength, ropeTheta, normEps, kv, ropeScaling,
                tiedEmbeddings);
    }

    /** The same model with one embedding matrix serving as the LM head too, or two. */
    public ModelConfig withTiedEmbeddings(boolean tied) {
        return new ModelConfig(name, vocabSize, dim, ffnDim, layers, heads, contextLength, ropeTheta, normEps, kvHeads, ropeScaling, tied);
    }

    /** Rows of the embedding and LM head: the vocabulary rounded up to 64, so logits rows stay 16-byte aligned
     *  for tensor-core GEMMs and vectorized loads (GPT-2's 50257 becomes 50304). The extra rows are never a target. */
    public int paddedVocab() { return (vocabSize + 63) / 64 * 64; }

    public ModelConfig withVocab(int v) {
        return new ModelConfig(name, v, dim, ffnDim, layers, heads, contextLength, ropeTheta, normEps, kvHeads, ropeScaling, tiedEmbeddings);
    }

    public ModelConfig withContext(int t) {
        if (t < 1) throw new IllegalArgumentException("--context must be positive");
        return new ModelConfig(name, vocabSize, dim, ffnDim, layers, heads, t, ropeTheta, normEps, kvHeads, ropeScaling, tiedEmbeddings);
    }

    /**
     * Parameter count (the input and, unless tied, output embeddings of the vocabulary's rows: the padding rows are
     * zeros no token reads, and checkpoints leave them out).
     */
    public long parameterCount() {
        long perLayer = 2L * dim * dim + 2L * kvDim() * dim + 3L * dim * ffnDim + 2L * dim;
        return (tiedEmbeddings ? 1L : 2L) * vocabSize * dim + layers * perLayer + dim;
    }

    /** Paper §3.1 sizes (LLaMA-2 vocabulary 32000, T = 2048) plus small sizes that train on a CPU. */
    public static final Map<String, ModelConfig> PRESETS = presets();

    private static Map<String, ModelConfig> presets() {
        Map<String, ModelConfig> m = new LinkedHashMap<>();
        m.put("tiny", new ModelConfig("tiny", 257, 128, 352, 4, 4, 64, 10000f, 1e-5f));
        m.put("small", new ModelConfig("small", 257, 256, 688, 6, 8, 128, 10000f, 1e-5f));
        m.put("370m", new ModelConfig("370m", 32000, 1024, 2752, 24, 16, 2048, 10000f, 1e-5f));
        m.put("780m", new ModelConfig("780m", 32000, 1536, 4128, 24, 16, 2048, 10000f, 1e-5f));
        m.put("1.3b", new ModelConfig("1.3b", 32000, 2048, 5504, 24, 16, 2048, 10000f, 1e-5f));
        m.put("2.7b", new ModelConfig("2.7b", 32000, 2560, 6880, 32, 32, 2048, 10000f, 1e-5f));
        return java.util.Collections.unmodifiableMap(m);  // in size order, for the error message
    }

    /** A preset by name, case-insensitively. */
    public static ModelConfig preset(String name) {
        ModelConfig c = PRESETS.get(name.toLowerCase(java.util.Locale.ROOT));
        if (c == null) throw new IllegalArgumentException("unknown preset '" + name + "' (choose from " + String.join(", ", PRESETS.keySet()) + ")");
        return c;
    }
}
