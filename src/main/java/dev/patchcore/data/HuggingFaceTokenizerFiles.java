package dev.patchcore.data;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The tokenizer files a checkpoint folder carries beside its Hugging Face {@code config.json} and weights, so that
 * {@code AutoTokenizer.from_pretrained(folder)} (and lm-evaluation-harness's {@code hf} model) reads the tokens the
 * model was trained on:
 * <ul>
 *   <li>GPT-2 BPE ({@code r50k_base}): {@code vocab.json} and {@code merges.txt} in GPT-2's byte-to-unicode spelling,
 *       derived from the tiktoken ranks (the merge that forms each token is the BPE of its bytes over the lower ranks,
 *       in rank order), and a {@code tokenizer_config.json} naming {@code GPT2Tokenizer};</li>
 *   <li>SentencePiece: the {@code tokenizer.model} itself and, for a LLaMA-style model (BPE, byte fallback, identity
 *       normalization, a dummy prefix, spaces kept), a {@code tokenizer_config.json} naming {@code LlamaTokenizer}
 *       without an added BOS (patchcore trains without one; BOS is set to EOS, its document separator);</li>
 *   <li>a Hugging Face {@code tokenizer.json}: the file itself, and its {@code tokenizer_config.json} (or, if it was
 *       read without one, a {@code PreTrainedTokenizerFast} config naming the end-of-text token it was read with);</li>
 *   <li>{@code cl100k_base} and {@code o200k_base}: a {@code tokenizer.json} for {@code PreTrainedTokenizerFast} —
 *       tiktoken's split pattern, byte-level BPE over the same derived merges, {@code ignore_merges} (tiktoken takes a
 *       piece that is itself a token whole), {@code <|endoftext|>} as the added special token;</li>
 *   <li>the byte tokenizer: none (no Hugging Face tokenizer class reads raw bytes as ids 0–255).</li>
 * </ul>
 */
public final class HuggingFaceTokenizerFiles {
    private HuggingFaceTokenizerFiles() {}

    /**
     * What a checkpoint records of its tokenizer: the end-of-text id (config.json's eos_token_id), its files, and the
     * begin-of-text id (config.json's bos_token_id): the end of text, as patchcore pretrains without a BOS, unless a
     * fine-tuning run put a Hugging Face model's own before every example.
     */
    public record Checkpoint(int eosId, Map<String, byte[]> files, int bosId) {
        /** No tokenizer information (tests that build models without data). */
        public static final Checkpoint NONE = new Checkpoint(-1, Map.of());

        public Checkpoint(int eosId, Map<String, byte[]> files) {
            this(eosId, files, eosId);
        }
    }


    /** The tokenizer record of a checkpoint of a model with context {@code contextLength}. */
    public static Checkpoint checkpoint(Tokenizer tok, int contextLength) {
        return new Checkpoint(tok.eosId(), of(tok, contextLength));
    }

    /**
     * File name → contents for a checkpoint of a model with context {@code contextLength}; empty when there are none.
     * A SentencePiece model is always kept (eval and generate read it); its {@code LlamaTokenizer} config only when the
     * model is one Hugging Face's LLaMA conversion reproduces ({@link SentencePieceTokenizer#isLlamaStyle()}). The
     * begin-of-text token is the end-of-text one, as patchcore separates documents with EOS and never trains on a BOS.
     */
    public static Map<String, byte[]> of(Tokenizer tok, int contextLength) {
        Map<String, byte[]> out = new LinkedHashMap<>();
        if (tok instanceof SentencePieceTokenizer sp) {
            out.put(SentencePieceTokenizer.FILE_NAME, sp.file());
            if (sp.isLlamaStyle()) {
                JsonObject c = new JsonObject();
                c.addProperty("tokenizer_class", "LlamaTokenizer");
                c.addProperty("add_bos_token", false);
                c.addProperty("add_eos_token", false);
                c.addProperty("bos_token", sp.piece(sp.eosId()));
                c.addProperty("eos_token", sp.piece(sp.eosId()));
                c.addProperty("unk_token", sp.piece(sp.unkId()));
                c.addProperty("clean_up_tokenization_spaces", false);
                c.addProperty("model_max_length", contextLength);
                out.put("tokenizer_config.json", json(c));
            }
        } else if (tok instanceof HuggingFaceBpeTokenizer hf) {
            // The file trained with, as it was. Its config as it was (or one naming the end of text it was read with),
            // saying add_bos_token false where the post-processor adds a BOS: patchcore trained without one, and reads
            // the folder back that way (transformers' PreTrainedTokenizerFast itself follows the post-processor).
            out.putAll(hf.files());
            JsonObject c;
            if (hf.hasConfig()) {
                c = JsonParser.parseString(new String(hf.config(), StandardCharsets.UTF_8)).getAsJsonObject();
            } else {
                c = new JsonObject();
                c.addProperty("tokenizer_class", "PreTrainedTokenizerFast");
                c.addProperty("eos_token", hf.token(hf.eosId()));
                c.addProperty("clean_up_tokenization_spaces", false);
                c.addProperty("model_max_length", contextLength);
            }
            if (hf.bosId() >= 0) c.addProperty("add_bos_token", false);
            if (!hf.hasConfig() || hf.bosId() >= 0) out.put(HuggingFaceBpeTokenizer.CONFIG_FILE_NAME, json(c));
        } else if (tok.name().equals("cl100k_base") || tok.name().equals("o200k_base")) {
            out.put("tokenizer.json", tiktokenJson(tok.name(), tok.eosId()));
            out.put("tokenizer_config.json", json(endOfTextConfig("PreTrainedTokenizerFast", contextLength)));
        } else if (tok.name().equals("r50k_base")) {
            out.putAll(gpt2());
            JsonObject c = endOfTextConfig("GPT2Tokenizer", contextLength);
            c.addProperty("unk_token", "<|endoftext|>");
            c.addProperty("add_prefix_space", false);
            out.put("tokenizer_config.json", json(c));
        }
        return Collections.unmodifiableMap(out);
    }

    /** The tokenizer_config.json of a tiktoken encoding: {@code <|endoftext|>} as begin and end of text. */
    private static JsonObject endOfTextConfig(String tokenizerClass, int contextLength) {
        JsonObject c = new JsonObject();
        c.addProperty("tokenizer_class", tokenizerClass);
        c.addProperty("bos_token", "<|endoftext|>");
        c.addProperty("eos_token", "<|endoftext|>");
        c.addProperty("clean_up_tokenization_spaces", false);
        c.addProperty("model_max_length", contextLength);
        return c;
    }

    private static byte[] json(JsonObject o) {
        return new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(o).getBytes(StandardCharsets.UTF_8);
    }

    /** tiktoken's pre-tokenization patterns (as in tiktoken's openai_public.py). */
    static final String CL100K_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static final String O200K_PATTERN = String.join("|",
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            "\\p{N}{1,3}", " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*", "\\s*[\\r\\n]+", "\\s+(?!\\S)", "\\s+");

    private static final Map<String, byte[]> TIKTOKEN_JSON = new java.util.concurrent.ConcurrentHashMap<>();

    /** The tokenizer.json of cl100k_base or o200k_base (end of text = token {@code eos}), built once per encoding. */
    static byte[] tiktokenJson(String name, int eos) {
        return TIKTOKEN_JSON.computeIfAbsent(name, n -> buildTiktokenJson(n, eos));
    }

    private static byte[] buildTiktokenJson(String name, int eos) {
        boolean cl = name.equals("cl100k_base");
        ByteLevelBpe bpe = ByteLevelBpe.of("/com/knuddels/jtokkit/" + name + ".tiktoken");
        JsonObject vocab = new JsonObject();
        for (int i = 0; i < bpe.vocab().size(); i++) vocab.addProperty(bpe.vocab().get(i), i);
        com.google.gson.JsonArray merges = new com.google.gson.JsonArray();
        bpe.merges().forEach(merges::add);
        JsonObject model = new JsonObject();
        model.addProperty("type", "BPE");
        model.add("dropout", null);
        model.add("unk_token", null);
        model.addProperty("continuing_subword_prefix", "");
        model.addProperty("end_of_word_suffix", "");
        model.addProperty("fuse_unk", false);
        model.addProperty("byte_fallback", false);
        model.addProperty("ignore_merges", true);
        model.add("vocab", vocab);
        model.add("merges", merges);
        JsonObject split = new JsonObject();
        split.addProperty("type", "Split");
        JsonObject pattern = new JsonObject();
        pattern.addProperty("Regex", cl ? CL100K_PATTERN : O200K_PATTERN);
        split.add("pattern", pattern);
        split.addProperty("behavior", "Isolated");
        split.addProperty("invert", false);
        com.google.gson.JsonArray pre = new com.google.gson.JsonArray();
        pre.add(split);
        pre.add(byteLevel(false, false));
        JsonObject preTokenizer = new JsonObject();
        preTokenizer.addProperty("type", "Sequence");
        preTokenizer.add("pretokenizers", pre);
        JsonObject decoder = byteLevel(true, true);
        // tiktoken's special tokens (openai_public.py), so that the file's ids cover the model's vocabulary.
        Map<String, Integer> specials = new LinkedHashMap<>();
        specials.put("<|endoftext|>", eos);
        if (cl) {
            specials.put("<|fim_prefix|>", 100_258);
            specials.put("<|fim_middle|>", 100_259);
            specials.put("<|fim_suffix|>", 100_260);
            specials.put("<|endofprompt|>", 100_276);
        } else {
            specials.put("<|endofprompt|>", 200_018);
        }
        com.google.gson.JsonArray added = new com.google.gson.JsonArray();
        specials.forEach((content, id) -> {
            JsonObject special = new JsonObject();
            special.addProperty("id", id);
            special.addProperty("content", content);
            special.addProperty("single_word", false);
            special.addProperty("lstrip", false);
            special.addProperty("rstrip", false);
            special.addProperty("normalized", false);
            special.addProperty("special", true);
            added.add(special);
        });
        JsonObject root = new JsonObject();
        root.addProperty("version", "1.0");
        root.add("truncation", null);
        root.add("padding", null);
        root.add("added_tokens", added);
        root.add("normalizer", null);
        root.add("pre_tokenizer", preTokenizer);
        root.add("post_processor", null);
        root.add("decoder", decoder);
        root.add("model", model);
        return new GsonBuilder().disableHtmlEscaping().serializeNulls().create().toJson(root).getBytes(StandardCharsets.UTF_8);
    }

    /** tokenizers' ByteLevel component (a pre-tokenizer or a decoder), offsets trimmed. */
    private static JsonObject byteLevel(boolean addPrefixSpace, boolean useRegex) {
        JsonObject o = new JsonObject();
        o.addProperty("type", "ByteLevel");
        o.addProperty("add_prefix_space", addPrefixSpace);
        o.addProperty("trim_offsets", true);
        o.addProperty("use_regex", useRegex);
        return o;
    }

    /** GPT-2's vocab.json and merges.txt, built once from JTokkit's r50k_base ranks. */
    static Map<String, byte[]> gpt2() { return Gpt2.FILES; }

    /** Built on first use (class initialization is lazy and thread-safe). */
    private static final class Gpt2 {
        static final Map<String, byte[]> FILES = buildGpt2();
    }

    private static Map<String, byte[]> buildGpt2() {
        ByteLevelBpe bpe = ByteLevelBpe.of("/com/knuddels/jtokkit/r50k_base.tiktoken");
        StringBuilder vocab = new StringBuilder("{");
        for (int i = 0; i < bpe.vocab().size(); i++) {
            if (i > 0) vocab.append(',');
            vocab.append(quote(bpe.vocab().get(i))).append(':').append(i);
        }
        vocab.append(',').append(quote("<|endoftext|>")).append(':').append(bpe.vocab().size()).append('}');
        StringBuilder merges = new StringBuilder("#version: 0.2\n");
        for (String m : bpe.merges()) merges.append(m).append('\n');
        Map<String, byte[]> out = new LinkedHashMap<>();
        out.put("vocab.json", vocab.toString().getBytes(StandardCharsets.UTF_8));
        out.put("merges.txt", merges.toString().getBytes(StandardCharsets.UTF_8));
        return out;
    }

    /**
     * A tiktoken rank file as Hugging Face's byte-level BPE spells it: the tokens in rank order through GPT-2's byte →
     * character map, and for every multi-byte token (in rank order) the merge "left right" that forms it.
     */
    record ByteLevelBpe(List<String> vocab, List<String> merges) {
        static ByteLevelBpe of(String resource) {
            List<byte[]> tokens = ranks(resource);
            Map<Key, Integer> rank = new HashMap<>();
            for (int i = 0; i < tokens.size(); i++) rank.put(new Key(tokens.get(i)), i);
            String[] unicode = bytesToUnicode();
            List<String> vocab = new ArrayList<>(tokens.size()), merges = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                byte[] t = tokens.get(i);
                vocab.add(spell(t, unicode));
                if (t.length > 1) {
                    byte[][] pair = lastMerge(t, i, rank);
                    merges.add(spell(pair[0], unicode) + " " + spell(pair[1], unicode));
                }
            }
            return new ByteLevelBpe(vocab, merges);
        }
    }

    private static final com.google.gson.Gson PLAIN = new GsonBuilder().disableHtmlEscaping().create();

    private static String quote(String s) {
        return PLAIN.toJson(s);
    }

    /**
     * The two tokens whose merge forms token {@code r}: byte-pair encoding of its bytes with the merges of rank below r
     * (lowest rank first), which ends in exactly two parts for a token of the vocabulary.
     */
    static byte[][] lastMerge(byte[] token, int r, Map<Key, Integer> rank) {
        List<byte[]> parts = new ArrayList<>();
        for (byte b : token) parts.add(new byte[] {b});
        while (parts.size() > 2) {
            int best = -1, bestRank = Integer.MAX_VALUE;
            for (int i = 0; i + 1 < parts.size(); i++) {
                Integer k = rank.get(new Key(concat(parts.get(i), parts.get(i + 1))));
                if (k != null && k < r && k < bestRank) {
                    bestRank = k;
                    best = i;
                }
            }
            if (best < 0) break;
            parts.set(best, concat(parts.get(best), parts.get(best + 1)));
            parts.remove(best + 1);
        }
        if (parts.size() != 2) throw new IllegalStateException("token " + r + " does not split into one merge");
        return new byte[][] {parts.get(0), parts.get(1)};
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] c = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    /** GPT-2's reversible byte → printable-character map (its {@code bytes_to_unicode}). */
    static String[] bytesToUnicode() {
        String[] map = new String[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? String.valueOf((char) b) : String.valueOf((char) (256 + n++));
        }
        return map;
    }

    private static String spell(byte[] token, String[] unicode) {
        StringBuilder s = new StringBuilder();
        for (byte b : token) s.append(unicode[b & 0xFF]);
        return s.toString();
    }

    /** Token bytes in rank order from a tiktoken file ({@code base64 rank} per line; ranks are 0..n−1). */
    private static List<byte[]> ranks(String resource) {
        try (InputStream in = HuggingFaceTokenizerFiles.class.getResourceAsStream(resource)) {
            if (in == null) throw new IllegalStateException("JTokkit resource " + resource + " is missing");
            List<byte[]> out = new ArrayList<>();
            BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII));
            String line;
            while ((line = r.readLine()) != null) {
                if (line.isBlank()) continue;
                int sp = line.indexOf(' ');
                int rank = Integer.parseInt(line.substring(sp + 1).strip());
                if (rank != out.size()) throw new IllegalStateException(resource + ": rank " + rank + " out of order");
                out.add(Base64.getDecoder().decode(line.substring(0, sp)));
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A byte array as a hash key. */
    record Key(byte[] bytes) {
        @Override public boolean equals(Object o) { return o instanceof Key k && java.util.Arrays.equals(bytes, k.bytes); }

        @Override public int hashCode() { return java.util.Arrays.hashCode(bytes); }
    }
}
