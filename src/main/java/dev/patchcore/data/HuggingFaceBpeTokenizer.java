package dev.patchcore.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import it.unimi.dsi.fastutil.ints.IntArrayList;
import it.unimi.dsi.fastutil.longs.Long2LongOpenHashMap;
import it.unimi.dsi.fastutil.objects.Object2IntOpenHashMap;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * A Hugging Face {@code tokenizer.json} with a BPE model: byte-level (the tokenizers of LLaMA-3, GPT-2, SmolLM, Qwen2
 * and most models since) or SentencePiece-style with byte fallback (LLaMA-2's, TinyLlama's, Mistral's). Encoding
 * follows the {@code tokenizers} library step by step:
 * <ol>
 *   <li>tokens added after training that are not special (the {@code added_tokens} with {@code "special": false}) are
 *       found in the text first, leftmost and longest, and become their ids. Special tokens are not: their text is
 *       ordinary text, as the {@link Tokenizer} contract says;</li>
 *   <li>the rest is normalized ({@code NFC}, {@code NFD}, {@code NFKC}, {@code NFKD}, {@code Lowercase},
 *       {@code Prepend}, {@code Replace}, or a {@code Sequence} of them: LLaMA-2's is Prepend("▁") then
 *       Replace(" " → "▁"));</li>
 *   <li>pre-tokenized: {@code Split} by a regular expression (pieces and matches isolated, or matches removed),
 *       {@code Digits}, {@code ByteLevel} (GPT-2's pattern where {@code use_regex}, a space before each piece where
 *       {@code add_prefix_space}), {@code Metaspace} (spaces → "▁", a "▁" put first by {@code prepend_scheme}
 *       {@code always}, {@code first} — the piece that begins the text only — or {@code never}, split before each
 *       "▁" where {@code split}), or a {@code Sequence} of them. A byte-level file has the ByteLevel step; a file
 *       without it is SentencePiece-style and needs {@code byte_fallback};</li>
 *   <li>each piece is merged by BPE, the pair with the lowest merge rank first (leftmost on ties); with
 *       {@code ignore_merges}, a piece that is itself a token is taken whole. Byte-level: the piece's UTF-8 bytes are
 *       the symbols. SentencePiece-style: its characters are; one that is not a token becomes the {@code <0xAB>} tokens
 *       of its UTF-8 bytes (byte fallback), or, where those are missing, the unknown token (one for a run of such
 *       characters with {@code fuse_unk}).</li>
 * </ol>
 * The regular expressions are Oniguruma's, as written in the file; they are compiled as Java patterns with Unicode
 * character classes ({@code \s} is Unicode white space there too). Decoding, byte-level: each token back through GPT-2's
 * byte → character table ({@code ByteLevel} decoder); a token spelled with other characters (an added token such as
 * {@code "<|end_of_text|>"}) decodes to its own text. SentencePiece-style: the tokens as the file spells them (a special
 * token as its content) through the file's decoder ({@link HuggingFaceDecoder}: LLaMA-2's Replace("▁" → " "),
 * ByteFallback, Fuse, Strip one leading space).
 *
 * <p>The end-of-text id comes from {@code tokenizer_config.json}'s {@code eos_token} when that file lies beside
 * {@code tokenizer.json}, else from the first special token named as one of {@link #END_OF_TEXT}. The begin-of-text id
 * is the special token the post-processor's template puts first, if any ({@link #bosId()}); patchcore's data never
 * carries it, {@code generate} puts it before a Hugging Face model's prompt. The name is {@value #NAME_PREFIX} and the
 * first 16 hex digits of the SHA-256 of the file and the end-of-text id.
 */
public final class HuggingFaceBpeTokenizer implements Tokenizer {

    /** The file name of the tokenizer in dataset, checkpoint and Hugging Face model folders. */
    public static final String FILE_NAME = "tokenizer.json";
    /** The file that names its special tokens, read when it lies beside {@link #FILE_NAME}. */
    public static final String CONFIG_FILE_NAME = "tokenizer_config.json";
    public static final String NAME_PREFIX = "hf-bpe-";
    /** Special tokens taken for the end of text when no {@code tokenizer_config.json} names it, in this order. */
    static final List<String> END_OF_TEXT = List.of("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>");

    /** GPT-2's pre-tokenization pattern, used by {@code ByteLevel} with {@code use_regex}. */
    private static final String GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    private static final int CACHE_LIMIT = 1 << 16;

    private final String name;
    private final byte[] file, config;
    private final int vocabSize, eosId, bosId;
    private final Map<String, Integer> specialIds;  // special added token's content → id
    private final Map<String, Integer> specialStrips;  // special added token's content → 1 (lstrip) | 2 (rstrip), where set
    private final String[] spelled;               // id → the token as the file spells it; null for unassigned ids
    private final boolean byteLevel;              // a ByteLevel pre-tokenizer: else SentencePiece-style
    private final byte[][] tokenBytes;            // byte-level: id → the bytes it decodes to; null for unassigned ids
    private final int[] charIds = new int[512];   // byte-level character (GPT-2's map of a byte) → its one-byte token's id
    private final int[] byteIds = new int[256];   // SentencePiece-style: byte → its <0xAB> token's id, −1 where none
    private final int unkId;                      // SentencePiece-style: the unknown token's id, −1 where none
    private final boolean fuseUnk;
    private final HuggingFaceDecoder decoder;     // SentencePiece-style
    private final Object2IntOpenHashMap<String> tokenIds;  // spelling → id (the BPE vocabulary)
    private final Long2LongOpenHashMap merges;    // (left id << 32 | right id) → (rank << 32 | merged id)
    private final boolean ignoreMerges;
    private final UnaryOperator<String> normalizer;
    private final boolean normalizes;             // the file has a normalizer
    private final List<PreTokenizer> preTokenizers;
    private final AddedWords rawWords, normalizedWords;  // non-special added tokens found before / after normalization
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    private HuggingFaceBpeTokenizer(byte[] file, byte[] config, String where) {
        this.file = file;
        this.config = config;
        JsonObject root = parse(file, where);
        JsonObject model = object(root, "model", where);
        if (model == null)
            throw bad(where, "has no \"model\": it is not a Hugging Face tokenizer.json (give one, a SentencePiece .model file, or "
                    + "one of " + String.join(", ", Tokenizers.NAMES) + ")");
        String type = string(model, "type", where);
        if (type != null && !type.equals("BPE"))
            throw bad(where, "has a " + type + " model; patchcore reads BPE tokenizer.json files, byte-level or SentencePiece-style "
                    + "with byte fallback (for a SentencePiece model, give its tokenizer.model)");
        boolean byteFallback = bool(model, "byte_fallback", where);
        for (String affix : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
            String s = string(model, affix, where);
            if (s != null && !s.isEmpty()) throw bad(where, "uses a " + affix + ", which is not supported");
        }
        JsonElement dropout = model.get("dropout");
        if (dropout != null && !dropout.isJsonNull()
                && (!dropout.isJsonPrimitive() || !dropout.getAsJsonPrimitive().isNumber() || dropout.getAsDouble() != 0))
            throw bad(where, "has BPE dropout " + dropout + "; only deterministic BPE is supported");
        ignoreMerges = bool(model, "ignore_merges", where);
        preTokenizers = new ArrayList<>();
        preTokenizers(root.get("pre_tokenizer"), where, preTokenizers);
        byteLevel = preTokenizers.stream().anyMatch(p -> p instanceof ByteLevel);
        if (byteLevel && byteFallback)
            throw bad(where, "has a ByteLevel pre-tokenizer and a BPE with byte fallback, which do not go together; it is not supported");
        if (byteLevel && preTokenizers.stream().anyMatch(p -> p instanceof Metaspace))
            throw bad(where, "has both a ByteLevel and a Metaspace pre-tokenizer; it is not supported");
        if (!byteLevel && !byteFallback)
            throw bad(where, "has no ByteLevel pre-tokenizer and no byte fallback; patchcore reads byte-level BPE and SentencePiece-style "
                    + "BPE with byte_fallback (for a SentencePiece model, give its tokenizer.model)");

        // The vocabulary and the added tokens.
        JsonObject vocab = object(model, "vocab", where);
        if (vocab == null) throw bad(where, "has no model vocab");
        tokenIds = new Object2IntOpenHashMap<>(vocab.size());
        tokenIds.defaultReturnValue(-1);
        int maxId = -1;
        for (var e : vocab.entrySet()) {
            int id = id(e.getValue(), where);
            tokenIds.put(e.getKey(), id);
            maxId = Math.max(maxId, id);
        }
        // An added token whose text is already a token of the vocabulary has that token's id, as in tokenizers.
        // normalized (default: not for special tokens): found in the normalized text rather than the raw one.
        record Added(int id, String content, boolean special, boolean normalized) {}
        Map<String, Integer> strips = new java.util.HashMap<>();
        List<Added> added = new ArrayList<>();
        java.util.Set<String> contents = new java.util.HashSet<>();
        JsonArray addedTokens = array(root, "added_tokens", where);
        if (addedTokens != null) {
            for (JsonElement el : addedTokens) {
                if (!el.isJsonObject()) throw bad(where, "has an added token that is not an object");
                JsonObject t = el.getAsJsonObject();
                String content = string(t, "content", where);
                if (content == null || content.isEmpty()) throw bad(where, "has an added token without content");
                boolean special = bool(t, "special", where);
                int known = tokenIds.getInt(content);
                Added a = new Added(known >= 0 ? known : id(t.get("id"), where), content, special,
                        t.has("normalized") && !t.get("normalized").isJsonNull() ? bool(t, "normalized", where) : !special);
                if (!special && (bool(t, "single_word", where) || bool(t, "lstrip", where) || bool(t, "rstrip", where)))
                    throw bad(where, "added token " + quoted(content) + " uses single_word/lstrip/rstrip, which are not supported");
                if (!contents.add(content)) continue;  // listed twice: the first counts
                int strip = (special && bool(t, "lstrip", where) ? 1 : 0) | (special && bool(t, "rstrip", where) ? 2 : 0);
                if (strip != 0) strips.put(content, strip);
                added.add(a);
                maxId = Math.max(maxId, a.id());
            }
        }
        vocabSize = maxId + 1;
        if (byteLevel && vocabSize < 256) throw bad(where, "has only " + vocabSize + " tokens; a byte-level BPE has at least 256");

        spelled = new String[vocabSize];
        for (var e : tokenIds.object2IntEntrySet()) spelled[e.getIntValue()] = e.getKey();
        for (Added a : added) spelled[a.id()] = a.content();
        int[] charToByte = new int[charIds.length];
        Arrays.fill(byteIds, -1);
        if (byteLevel) {
            String[] unicode = HuggingFaceTokenizerFiles.bytesToUnicode();
            Arrays.fill(charToByte, -1);
            for (int b = 0; b < 256; b++) {
                char c = unicode[b].charAt(0);
                charToByte[c] = b;
                charIds[c] = tokenIds.getInt(unicode[b]);
                if (charIds[c] < 0)
                    throw bad(where, "has no token for byte " + b + " (" + quoted(unicode[b]) + "): it is not a byte-level BPE");
            }
            tokenBytes = new byte[vocabSize][];
            for (int id = 0; id < vocabSize; id++) if (spelled[id] != null) tokenBytes[id] = decodeToken(spelled[id], charToByte);
            unkId = -1;
            fuseUnk = false;
            decoder = null;
        } else {
            // tokenizers looks a byte's token up as format!("<{b:#04X}>"): "<0x0A>".
            for (int b = 0; b < 256; b++) byteIds[b] = tokenIds.getInt(String.format("<0x%02X>", b));
            String unk = string(model, "unk_token", where);
            unkId = unk == null ? -1 : tokenIds.getInt(unk);
            if (unk != null && unkId < 0) throw bad(where, "names unk_token " + quoted(unk) + ", which is not in its vocab");
            fuseUnk = bool(model, "fuse_unk", where);
            decoder = HuggingFaceDecoder.of(root.get("decoder"), where);
            tokenBytes = null;
        }

        // Merges: "left right" strings (older files) or [left, right] arrays; the rank is the position (a pair listed
        // twice takes its last rank, as in tokenizers).
        JsonArray mergeList = array(model, "merges", where);
        merges = new Long2LongOpenHashMap(mergeList == null ? 0 : mergeList.size());
        merges.defaultReturnValue(-1);
        if (mergeList != null) {
            for (int rank = 0; rank < mergeList.size(); rank++) {
                String[] pair = mergePair(mergeList.get(rank), where);
                int left = tokenIds.getInt(pair[0]), right = tokenIds.getInt(pair[1]), merged = tokenIds.getInt(pair[0] + pair[1]);
                if (left < 0 || right < 0 || merged < 0)
                    throw bad(where, "merge " + (rank + 1) + " (" + quoted(pair[0] + " " + pair[1]) + ") names a token not in its vocab");
                merges.put((long) left << 32 | right, (long) rank << 32 | merged);
            }
        }

        normalizer = normalizer(root.get("normalizer"), where);
        normalizes = root.get("normalizer") != null && !root.get("normalizer").isJsonNull();
        // A normalized added token is looked for as the normalizer spells it (as tokenizers does); of two that spell
        // the same, the first listed.
        Map<String, Integer> raw = new java.util.LinkedHashMap<>(), normalized = new java.util.LinkedHashMap<>();
        for (Added a : added) {
            if (a.special()) continue;
            if (a.normalized()) {
                String key = normalizer.apply(a.content());
                if (!key.isEmpty()) normalized.putIfAbsent(key, a.id());
                if (byteLevel && tokenIds.getInt(a.content()) < 0) tokenBytes[a.id()] = decodeToken(key, charToByte);  // decodes as normalized
            } else {
                raw.putIfAbsent(a.content(), a.id());
            }
        }
        rawWords = new AddedWords(raw);
        normalizedWords = new AddedWords(normalized);

        // Special tokens: the end of text, and the begin of text the post-processor adds.
        Map<String, Integer> specialIds = new java.util.HashMap<>();
        for (Added a : added) if (a.special()) specialIds.putIfAbsent(a.content(), a.id());
        this.specialIds = Map.copyOf(specialIds);
        this.specialStrips = Map.copyOf(strips);
        eosId = endOfText(config, specialIds, where);
        bosId = beginOfText(root.get("post_processor"), where);
        name = NAME_PREFIX + sha256(file, eosId).substring(0, 16);
    }

    /** Reads {@code file} and, when it is named {@value #FILE_NAME}, the {@value #CONFIG_FILE_NAME} beside it. */
    public static HuggingFaceBpeTokenizer load(Path file) throws IOException {
        byte[] json = Files.readAllBytes(file);
        Path cfg = file.resolveSibling(CONFIG_FILE_NAME);
        byte[] config = file.getFileName().toString().equals(FILE_NAME) && Files.isRegularFile(cfg) ? Files.readAllBytes(cfg) : null;
        return new HuggingFaceBpeTokenizer(json, config, file.toString());
    }

    /**
     * @param config the {@value #CONFIG_FILE_NAME} that goes with it, or null
     * @throws IllegalArgumentException (one line, naming {@code where}) for a file this class does not read
     */
    public static HuggingFaceBpeTokenizer fromBytes(byte[] file, byte[] config, String where) {
        return new HuggingFaceBpeTokenizer(file.clone(), config == null ? null : config.clone(), where);
    }

    /** Whether {@code file} is a Hugging Face tokenizer file this class would be asked to read (by its name). */
    static boolean isJson(Path file) {
        return file.getFileName() != null && file.getFileName().toString().endsWith(".json");
    }

    /** The files to keep beside data or weights: {@value #FILE_NAME}, and {@value #CONFIG_FILE_NAME} if it was read. */
    public Map<String, byte[]> files() {
        Map<String, byte[]> out = new java.util.LinkedHashMap<>();
        out.put(FILE_NAME, file.clone());
        if (config != null) out.put(CONFIG_FILE_NAME, config.clone());
        return java.util.Collections.unmodifiableMap(out);
    }

    /** Whether a {@value #CONFIG_FILE_NAME} was read with the tokenizer. */
    public boolean hasConfig() { return config != null; }

    /** The {@value #CONFIG_FILE_NAME} read with the tokenizer (a copy), or null: without copying tokenizer.json too. */
    byte[] config() { return config == null ? null : config.clone(); }

    /** Whether {@code other} was read with the same {@value #CONFIG_FILE_NAME} as this one, or both without one. */
    boolean sameConfig(HuggingFaceBpeTokenizer other) { return Arrays.equals(config, other.config); }

    @Override public String name() { return name; }

    @Override public int vocabSize() { return vocabSize; }

    @Override public int eosId() { return eosId; }

    @Override public int specialId(String token) { return specialIds.getOrDefault(token, -1); }

    @Override public java.util.Set<String> specialTokens() { return specialIds.keySet(); }

    @Override public boolean specialAbsorbsWhitespace(String token, boolean after) {
        return (specialStrips.getOrDefault(token, 0) & (after ? 2 : 1)) != 0;
    }

    /** Whether the file is a byte-level BPE (a ByteLevel pre-tokenizer), not a SentencePiece-style one (byte fallback). */
    public boolean isByteLevel() { return byteLevel; }

    /** The special token the tokenizer's post-processor puts before a text (LLaMA-3's {@code <|begin_of_text|>}), or −1. */
    public int bosId() { return bosId; }

    /** A token as the file spells it (byte-level characters, or an added token's content); null for an unassigned id. */
    public String token(int id) {
        if (id < 0 || id >= vocabSize)
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + vocabSize + ")");
        return spelled[id];
    }

    @Override
    public int[] encode(String text) { return encode(text, true); }

    /**
     * {@link #encode(String)}, told whether the text begins what tokenizers is given: false for text that follows a
     * special token a chat template put in by its id (tokenizers encodes a rendered conversation whole, split at its
     * special tokens). Only a Metaspace pre-tokenizer with {@code prepend_scheme} "first" looks at it: it puts "▁"
     * before the text that begins the input only.
     */
    @Override
    public int[] encode(String text, boolean beginsText) {
        IntArrayList out = new IntArrayList(text.length() / 3 + 4);
        // As tokenizers: added tokens matched in the raw text first, then the rest normalized, then those matched in
        // the normalized text; what is left is pre-tokenized and merged. A stretch begins the text where both splits
        // left it at their start (Metaspace's prepend_scheme "first" looks at that).
        rawWords.split(text, out, (raw, rawFirst) -> normalizedWords.split(normalizer.apply(raw), out,
                (rest, first) -> encodePlain(rest, beginsText && rawFirst && first, out)));
        return out.toIntArray();
    }

    private void encodePlain(String text, boolean atStart, IntArrayList out) {
        List<String> pieces = List.of(text);
        for (PreTokenizer p : preTokenizers) {
            List<String> next = new ArrayList<>(pieces.size() * 2);
            for (int i = 0; i < pieces.size(); i++) {
                p.split(pieces.get(i), atStart && i == 0, next);
                // The first piece still begins the text unless a Split removed what began it.
                if (i == 0 && p instanceof Split split && !split.keepMatches() && split.matchesAtStart(pieces.get(0))) atStart = false;
            }
            pieces = next;
        }
        for (String piece : pieces) {
            if (piece.isEmpty()) continue;
            int[] ids = cache.get(piece);
            if (ids == null) {
                ids = byteLevel ? bpe(piece) : bpeChars(piece);
                if (cache.size() >= CACHE_LIMIT) cache.clear();
                if (piece.length() <= 256) cache.put(piece, ids);
            }
            out.addElements(out.size(), ids);
        }
    }

    /**
     * Added tokens found in a text, leftmost first and then longest (as tokenizers' leftmost-longest matching): a
     * scan that tries, at each position, only the tokens starting with the character there.
     */
    private static final class AddedWords {
        private final Map<Character, String[]> byFirst = new java.util.HashMap<>();
        private final Map<String, Integer> ids;

        AddedWords(Map<String, Integer> ids) {
            this.ids = ids;
            Map<Character, List<String>> lists = new java.util.HashMap<>();
            for (String w : ids.keySet()) lists.computeIfAbsent(w.charAt(0), c -> new ArrayList<>()).add(w);
            lists.forEach((c, l) -> byFirst.put(c, l.stream().sorted((x, y) -> Integer.compare(y.length(), x.length()))
                    .toArray(String[]::new)));
        }

        boolean isEmpty() { return ids.isEmpty(); }

        /** Text between added tokens, and whether it begins the text it was found in. */
        interface Rest {
            void accept(String stretch, boolean first);
        }

        /** Appends the ids of the added tokens in {@code text} to {@code out}, and hands each stretch between them to {@code rest}. */
        void split(String text, IntArrayList out, Rest rest) {
            if (byFirst.isEmpty()) {
                if (!text.isEmpty()) rest.accept(text, true);
                return;
            }
            int from = 0;
            for (int i = 0; i < text.length(); i++) {
                String[] candidates = byFirst.get(text.charAt(i));
                if (candidates == null) continue;
                for (String w : candidates) {
                    if (!text.startsWith(w, i)) continue;
                    if (i > from) rest.accept(text.substring(from, i), from == 0);
                    out.add((int) ids.get(w));
                    from = i + w.length();
                    i = from - 1;
                    break;
                }
            }
            if (from < text.length()) rest.accept(text.substring(from), from == 0);
        }
    }

    /**
     * The BPE of one pre-tokenized piece (its byte-level spelling): the pair of lowest rank merged first, the leftmost
     * of equal ones. Short pieces rescan their pairs after each merge; long ones (a run of spaces, a line of CJK)
     * keep their pairs in a heap ordered by (rank, position), as tokenizers does, so a piece costs O(n log n).
     */
    private int[] bpe(String piece) {
        if (ignoreMerges) {
            int whole = tokenIds.getInt(piece);
            if (whole >= 0) return new int[] {whole};
        }
        int n = piece.length();
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = charIds[piece.charAt(i)];  // ByteLevel spelled every byte as one of these
        return n > 32 ? bpeHeap(ids) : bpeScan(ids);
    }

    /**
     * SentencePiece-style BPE of one piece, as tokenizers' merge_word: each character its token; one that is none, the
     * {@code <0xAB>} tokens of its UTF-8 bytes, else the unknown token (a run of them one token with fuse_unk; without
     * an unknown token the character is dropped, as there). Then the merges.
     */
    private int[] bpeChars(String piece) {
        if (ignoreMerges) {
            int whole = tokenIds.getInt(piece);
            if (whole >= 0) return new int[] {whole};
        }
        IntArrayList ids = new IntArrayList(piece.length());
        boolean unknown = false;  // an unknown token not yet added (tokenizers adds it when a known character follows)
        for (int i = 0; i < piece.length(); ) {
            int cp = piece.codePointAt(i);
            i += Character.charCount(cp);
            String c = cp >= 0xD800 && cp <= 0xDFFF ? "\uFFFD" : Character.toString(cp);  // an unpaired surrogate as U+FFFD
            int id = tokenIds.getInt(c);
            if (id >= 0) {
                if (unknown) ids.add(unkId);
                unknown = false;
                ids.add(id);
                continue;
            }
            byte[] bytes = c.getBytes(StandardCharsets.UTF_8);
            boolean spelled = true;
            for (byte b : bytes) spelled &= byteIds[b & 0xFF] >= 0;
            if (spelled) {
                for (byte b : bytes) ids.add(byteIds[b & 0xFF]);
                continue;
            }
            if (unkId < 0) continue;
            if (unknown && !fuseUnk) ids.add(unkId);
            unknown = true;
        }
        if (unknown) ids.add(unkId);
        int[] symbols = ids.toIntArray();
        return symbols.length > 32 ? bpeHeap(symbols) : bpeScan(symbols);
    }

    private int[] bpeScan(int[] ids) {
        int n = ids.length;
        while (n > 1) {
            long best = Long.MAX_VALUE;
            int at = -1;
            for (int i = 0; i + 1 < n; i++) {
                long m = merges.get((long) ids[i] << 32 | ids[i + 1]);
                if (m >= 0 && m < best) {  // ranks in the high half: the lowest rank wins, then the leftmost pair
                    best = m;
                    at = i;
                }
            }
            if (at < 0) break;
            ids[at] = (int) best;
            System.arraycopy(ids, at + 2, ids, at + 1, n - at - 2);
            n--;
        }
        return n == ids.length ? ids : Arrays.copyOf(ids, n);
    }

    /** Symbols in a linked list (a merged pair lives on at its left position); heap entries rank << 32 | position. */
    private int[] bpeHeap(int[] ids) {
        int n = ids.length;
        int[] next = new int[n], prev = new int[n];
        for (int i = 0; i < n; i++) {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        it.unimi.dsi.fastutil.longs.LongHeapPriorityQueue heap = new it.unimi.dsi.fastutil.longs.LongHeapPriorityQueue(n);
        for (int i = 0; i + 1 < n; i++) push(heap, ids, i, i + 1);
        int alive = n;
        while (!heap.isEmpty()) {
            long top = heap.dequeueLong();
            int at = (int) top, rank = (int) (top >>> 32), right = next[at];
            if (ids[at] < 0 || right < 0) continue;  // merged away, or no right neighbour any more
            long m = merges.get((long) ids[at] << 32 | ids[right]);
            if (m < 0 || (int) (m >>> 32) != rank) continue;  // a stale entry: the pair there has changed
            ids[at] = (int) m;
            ids[right] = -1;
            next[at] = next[right];
            if (next[at] >= 0) prev[next[at]] = at;
            alive--;
            if (prev[at] >= 0) push(heap, ids, prev[at], at);
            if (next[at] >= 0) push(heap, ids, at, next[at]);
        }
        int[] out = new int[alive];
        for (int i = 0, k = 0; i >= 0; i = next[i]) out[k++] = ids[i];
        return out;
    }

    private void push(it.unimi.dsi.fastutil.longs.LongHeapPriorityQueue heap, int[] ids, int left, int right) {
        long m = merges.get((long) ids[left] << 32 | ids[right]);
        if (m >= 0) heap.enqueue((m >>> 32) << 32 | left);
    }

    @Override
    public String decode(int[] ids) {
        for (int id : ids)
            if (id < 0 || id >= vocabSize)
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + vocabSize + ") of tokenizer '"
                        + name + "'");
        if (!byteLevel) {
            List<String> tokens = new ArrayList<>(ids.length);
            for (int id : ids) tokens.add(spelled[id] != null ? spelled[id] : "\uFFFD");
            return decoder.decode(tokens);
        }
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            byte[] b = tokenBytes[id];
            bytes.writeBytes(b != null ? b : REPLACEMENT);
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Override public String toString() { return name; }

    /**
     * "cl100k_base" or "o200k_base" when this file is that tiktoken encoding spelled as a tokenizer.json (as patchcore
     * writes into checkpoints, before and after 2026-11-27, or as converters write it): no normalizer, tiktoken's split
     * pattern, byte-level without a regex, ignore_merges, no non-special added token, the same bytes for every token id
     * and the same end of text; else null. Such a file then names the built-in encoding, so a checkpoint's copied-out folder still matches data
     * prepared with it.
     */
    public String tiktokenEquivalent() {
        if (normalizes || !ignoreMerges || !rawWords.isEmpty() || !normalizedWords.isEmpty() || preTokenizers.size() != 2
                || !(preTokenizers.get(0) instanceof Split split) || !split.keepMatches()
                || !(preTokenizers.get(1) instanceof ByteLevel bl) || bl.addPrefixSpace || bl.gpt2 != null) return null;
        String pattern = split.pattern().pattern();
        String encoding = pattern.equals(HuggingFaceTokenizerFiles.CL100K_PATTERN) ? "cl100k_base"
                : pattern.equals(HuggingFaceTokenizerFiles.O200K_PATTERN) ? "o200k_base" : null;
        if (encoding == null) return null;
        if (!(Tokenizers.byName(encoding) instanceof TiktokenTokenizer tiktoken)) return null;
        if (eosId != tiktoken.eosId() || vocabSize > tiktoken.vocabSize()) return null;
        for (int id = 0; id < eosId; id++)  // the ranked tokens (the special ones come after them)
            if (!Arrays.equals(tokenBytes[id], tiktoken.tokenBytes(id))) return null;
        return encoding;
    }

    private static final byte[] REPLACEMENT = "\uFFFD".getBytes(StandardCharsets.UTF_8);

    /** The ByteLevel decoder's rule: a token whose every character is in the byte map is those bytes, else its UTF-8. */
    private static byte[] decodeToken(String token, int[] charToByte) {
        byte[] out = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            char c = token.charAt(i);
            int b = c < charToByte.length ? charToByte[c] : -1;
            if (b < 0) return token.getBytes(StandardCharsets.UTF_8);
            out[i] = (byte) b;
        }
        return out;
    }

    // ---- pre-tokenizers -------------------------------------------------------------------------------------------

    /** One step of pre-tokenization: appends the pieces of {@code s} to {@code out}. */
    private interface PreTokenizer {
        void split(String s, List<String> out);

        /** {@link #split(String, List)}, told whether {@code s} begins the text (for Metaspace's prepend_scheme first). */
        default void split(String s, boolean atStart, List<String> out) { split(s, out); }
    }

    /** {@code Split} with behavior {@code Isolated} (matches and the text between them) or {@code Removed} (between only). */
    private record Split(Pattern pattern, boolean keepMatches) implements PreTokenizer {
        @Override public void split(String s, List<String> out) {
            Matcher m = pattern.matcher(s);
            int last = 0;
            while (m.find()) {
                if (m.end() == m.start()) continue;  // an empty match splits nothing
                if (m.start() > last) out.add(s.substring(last, m.start()));
                if (keepMatches) out.add(m.group());
                last = m.end();
            }
            if (last < s.length()) out.add(s.substring(last));
        }

        /** Whether a (non-empty) match begins {@code s}. */
        boolean matchesAtStart(String s) {
            Matcher m = pattern.matcher(s);
            return m.lookingAt() && m.end() > 0;
        }
    }

    /** How a {@code Metaspace} pre-tokenizer or decoder puts "▁" first: always, for the piece that begins the text, never. */
    enum Prepend { ALWAYS, FIRST, NEVER }

    /**
     * {@code Metaspace}: spaces → the replacement ("▁"), one put first by the prepend scheme where the piece does not
     * begin with it already, and with {@code split} the piece cut before each replacement (which begins the next piece).
     */
    private record Metaspace(String replacement, Prepend prepend, boolean splits) implements PreTokenizer {
        @Override public void split(String s, List<String> out) { split(s, false, out); }

        @Override public void split(String s, boolean atStart, List<String> out) {
            String r = s.replace(" ", replacement);
            if (!r.startsWith(replacement) && (prepend == Prepend.ALWAYS || prepend == Prepend.FIRST && atStart)) r = replacement + r;
            if (!splits) {
                out.add(r);
                return;
            }
            int from = 0;
            for (int at = r.indexOf(replacement, 1); at > 0; at = r.indexOf(replacement, at + replacement.length())) {
                if (at > from) out.add(r.substring(from, at));
                from = at;
            }
            if (from < r.length()) out.add(r.substring(from));
        }
    }

    /** A Metaspace's replacement: one character (tokenizers' is a char). */
    static String replacement(JsonObject o, String where) {
        String r = string(o, "replacement", where);
        if (r == null || r.codePointCount(0, r.length()) != 1) throw bad(where, "has a Metaspace whose replacement is not one character");
        return r;
    }

    /** A Metaspace's prepend_scheme; in older files add_prefix_space (true: always), as tokenizers reads them. */
    static Prepend prependScheme(JsonObject o, String where) {
        String scheme = string(o, "prepend_scheme", where);
        if (scheme == null) {
            if (o.has("add_prefix_space") && !bool(o, "add_prefix_space", where))
                throw bad(where, "has a Metaspace with add_prefix_space false and no prepend_scheme, which tokenizers refuses too");
            return Prepend.ALWAYS;
        }
        return switch (scheme) {
            case "always" -> Prepend.ALWAYS;
            case "first" -> Prepend.FIRST;
            case "never" -> Prepend.NEVER;
            default -> throw bad(where, "has a Metaspace with prepend_scheme " + quoted(scheme) + " (always, first and never are read)");
        };
    }

    /** A {@code pattern} field, {@code {"String": ...}} or {@code {"Regex": ...}}, compiled (for Split and Replace). */
    static Pattern pattern(JsonObject o, String what, String where) {
        JsonObject pattern = object(o, "pattern", where);
        if (pattern == null) throw bad(where, "has a " + what + " without a pattern");
        String text = pattern.has("Regex") ? null : string(pattern, "String", where);  // null where absent or null
        String regex = pattern.has("Regex") ? string(pattern, "Regex", where) : text != null ? Pattern.quote(text) : null;
        if (regex == null) throw bad(where, "has a " + what + " pattern that is neither Regex nor String");
        try {
            return Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS);
        } catch (PatternSyntaxException e) {
            throw bad(where, "has a " + what + " pattern Java cannot compile: " + e.getDescription());
        }
    }

    /** {@code Digits}: each digit alone, or runs of digits, split from the rest (Rust's {@code char::is_numeric}). */
    private record Digits(boolean individual) implements PreTokenizer {
        @Override public void split(String s, List<String> out) {
            int start = 0;
            boolean inDigits = false;
            for (int i = 0; i < s.length(); ) {
                int cp = s.codePointAt(i);
                boolean digit = isNumeric(cp);
                if (i > start && (digit != inDigits || (digit && individual))) {
                    out.add(s.substring(start, i));
                    start = i;
                }
                inDigits = digit;
                i += Character.charCount(cp);
            }
            if (start < s.length()) out.add(s.substring(start));
        }

        private static boolean isNumeric(int cp) {
            int t = Character.getType(cp);
            return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
        }
    }

    /** {@code ByteLevel}: a space before each piece if asked, GPT-2's split if asked, then UTF-8 bytes as characters. */
    private static final class ByteLevel implements PreTokenizer {
        private static final String[] UNICODE = HuggingFaceTokenizerFiles.bytesToUnicode();
        private final boolean addPrefixSpace;
        private final Split gpt2;

        ByteLevel(boolean addPrefixSpace, boolean useRegex) {
            this.addPrefixSpace = addPrefixSpace;
            this.gpt2 = useRegex ? new Split(Pattern.compile(GPT2_PATTERN, Pattern.UNICODE_CHARACTER_CLASS), true) : null;
        }

        @Override public void split(String s, List<String> out) {
            if (addPrefixSpace && !s.startsWith(" ")) s = " " + s;
            List<String> pieces = new ArrayList<>(2);
            if (gpt2 != null) gpt2.split(s, pieces);
            else pieces.add(s);
            for (String piece : pieces) {
                StringBuilder b = new StringBuilder(piece.length() + 4);
                for (byte x : Utf8.bytes(piece)) b.append(UNICODE[x & 0xFF]);  // an unpaired surrogate as U+FFFD
                out.add(b.toString());
            }
        }
    }

    private static void preTokenizers(JsonElement el, String where, List<PreTokenizer> out) {
        if (el == null || el.isJsonNull()) return;
        if (!el.isJsonObject()) throw bad(where, "has a pre_tokenizer that is not an object");
        JsonObject o = el.getAsJsonObject();
        String type = string(o, "type", where);
        switch (type == null ? "" : type) {
            case "Sequence" -> {
                JsonArray list = array(o, "pretokenizers", where);
                if (list != null) for (JsonElement p : list) preTokenizers(p, where, out);
            }
            case "ByteLevel" -> out.add(new ByteLevel(bool(o, "add_prefix_space", where),
                    !o.has("use_regex") || bool(o, "use_regex", where)));
            case "Digits" -> out.add(new Digits(bool(o, "individual_digits", where)));
            case "Split" -> {
                if (bool(o, "invert", where)) throw bad(where, "has an inverted Split pre-tokenizer, which is not supported");
                String behavior = string(o, "behavior", where);
                if (!"Isolated".equals(behavior) && !"Removed".equals(behavior))
                    throw bad(where, "has a Split pre-tokenizer with behavior " + behavior + " (Isolated and Removed are supported)");
                out.add(new Split(pattern(o, "Split pre-tokenizer", where), behavior.equals("Isolated")));
            }
            case "Metaspace" -> {
                boolean split = o.get("split") == null || o.get("split").isJsonNull() || bool(o, "split", where);  // tokenizers' default
                out.add(new Metaspace(replacement(o, where), prependScheme(o, where), split));
            }
            default -> throw bad(where, "has a " + (type == null ? "typeless" : type) + " pre-tokenizer, which is not supported "
                    + "(ByteLevel, Metaspace, Split, Digits and Sequence are)");
        }
    }

    private static UnaryOperator<String> normalizer(JsonElement el, String where) {
        if (el == null || el.isJsonNull()) return UnaryOperator.identity();
        if (!el.isJsonObject()) throw bad(where, "has a normalizer that is not an object");
        JsonObject o = el.getAsJsonObject();
        String type = string(o, "type", where);
        return switch (type == null ? "" : type) {
            case "NFC" -> s -> Normalizer.normalize(s, Normalizer.Form.NFC);
            case "NFD" -> s -> Normalizer.normalize(s, Normalizer.Form.NFD);
            case "NFKC" -> s -> Normalizer.normalize(s, Normalizer.Form.NFKC);
            case "NFKD" -> s -> Normalizer.normalize(s, Normalizer.Form.NFKD);
            case "Lowercase" -> HuggingFaceBpeTokenizer::lowercase;
            case "Prepend" -> {
                String prefix = string(o, "prepend", where);
                if (prefix == null) throw bad(where, "has a Prepend normalizer without its prepend");
                yield s -> s.isEmpty() ? s : prefix + s;
            }
            case "Replace" -> {
                Pattern p = pattern(o, "Replace normalizer", where);
                String content = string(o, "content", where), with = Matcher.quoteReplacement(content == null ? "" : content);
                yield s -> p.matcher(s).replaceAll(with);
            }
            case "Sequence" -> {
                JsonArray list = array(o, "normalizers", where);
                UnaryOperator<String> all = UnaryOperator.identity();
                if (list != null) for (JsonElement n : list) {
                    UnaryOperator<String> before = all, step = normalizer(n, where);
                    all = s -> step.apply(before.apply(s));
                }
                yield all;
            }
            default -> throw bad(where, "has a " + (type == null ? "typeless" : type) + " normalizer, which is not supported (NFC, NFD, "
                    + "NFKC, NFKD, Lowercase, Prepend, Replace and Sequence are)");
        };
    }

    // ---- special tokens -------------------------------------------------------------------------------------------

    private int endOfText(byte[] config, Map<String, Integer> specialIds, String where) {
        if (config != null) {
            String cfgWhere = where + "'s " + CONFIG_FILE_NAME;
            JsonObject c = parse(config, cfgWhere);
            JsonElement eos = c.get("eos_token");
            String content = eos == null || eos.isJsonNull() ? null
                    : isString(eos) ? eos.getAsString()
                    : eos.isJsonObject() ? string(eos.getAsJsonObject(), "content", cfgWhere) : null;
            if (eos != null && !eos.isJsonNull() && content == null)
                throw bad(cfgWhere, "has an eos_token that is neither a string nor an object with its content: " + eos);
            if (content != null) {
                Integer id = specialIds.get(content);
                if (id == null && tokenIds.containsKey(content)) id = tokenIds.getInt(content);
                if (id == null) throw bad(cfgWhere, "names eos_token " + quoted(content) + ", which is not a token of the tokenizer");
                return id;
            }
        }
        for (String candidate : END_OF_TEXT) {
            Integer id = specialIds.get(candidate);
            if (id != null) return id;
        }
        throw bad(where, "names no end-of-text token: put its " + CONFIG_FILE_NAME + " (with eos_token) beside it, named "
                + FILE_NAME + " (" + String.join(", ", END_OF_TEXT) + " are recognized without one)");
    }

    /** The id of the special token a TemplateProcessing post-processor puts first for one sequence, or −1. */
    private static int beginOfText(JsonElement el, String where) {
        if (el == null || !el.isJsonObject()) return -1;
        JsonObject o = el.getAsJsonObject();
        String type = string(o, "type", where);
        if ("Sequence".equals(type)) {
            JsonArray list = array(o, "processors", where);
            int bos = -1;
            if (list != null) for (JsonElement p : list) bos = Math.max(bos, beginOfText(p, where));
            return bos;
        }
        if (!"TemplateProcessing".equals(type)) return -1;
        String at = where.endsWith("post-processor") ? where : where + "'s post-processor";
        JsonArray single = array(o, "single", at);
        if (single == null || single.isEmpty() || !single.get(0).isJsonObject()) return -1;
        JsonObject first = object(single.get(0).getAsJsonObject(), "SpecialToken", at);
        if (first == null) return -1;
        String token = string(first, "id", at);
        JsonObject specials = object(o, "special_tokens", at);
        JsonObject entry = specials == null || token == null ? null : object(specials, token, at);
        JsonArray ids = entry == null ? null : array(entry, "ids", at);
        return ids == null || ids.size() != 1 ? -1 : id(ids.get(0), at);
    }

    // ---- JSON -----------------------------------------------------------------------------------------------------

    private static JsonObject parse(byte[] json, String where) {
        try {
            JsonElement e = JsonParser.parseString(new String(json, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) throw bad(where, "is not a JSON object");
            return e.getAsJsonObject();
        } catch (JsonParseException | IllegalStateException e) {
            // Gson's message, less the exception class it wraps and its advice to its programmer: where the file fails
            String why = firstLine(e.getMessage()).replaceFirst("^(?:[a-z]\\w*\\.)+[A-Z]\\w*Exception: ", "")
                    .replace("Use JsonReader.setStrictness(Strictness.LENIENT) to accept malformed JSON ", "");
            throw bad(where, "is not valid JSON (" + why + ")");
        }
    }

    private static String[] mergePair(JsonElement m, String where) {
        if (m.isJsonArray() && m.getAsJsonArray().size() == 2 && isString(m.getAsJsonArray().get(0)) && isString(m.getAsJsonArray().get(1)))
            return new String[] {m.getAsJsonArray().get(0).getAsString(), m.getAsJsonArray().get(1).getAsString()};
        if (isString(m)) {
            String s = m.getAsString();
            int sp = s.indexOf(' ');
            if (sp > 0 && sp == s.lastIndexOf(' ')) return new String[] {s.substring(0, sp), s.substring(sp + 1)};
        }
        throw bad(where, "has a merge that is not two tokens: " + m);
    }

    private static boolean isString(JsonElement e) {
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isString();
    }

    /** A token id: a whole number below 2^24, the most tokens a model here has (ModelConfig.MAX_VOCAB). */
    private static int id(JsonElement e, String where) {
        if (e == null || !e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw bad(where, "has a token id that is not a number");
        double d = e.getAsDouble();
        if (d < 0 || d != Math.rint(d) || d >= dev.patchcore.config.ModelConfig.MAX_VOCAB)
            throw bad(where, "has token id " + e + ", not a whole number below 2^24 (the largest vocabulary patchcore trains)");
        return (int) d;
    }

    /**
     * tokenizers' Lowercase: each character's own lowercase (Rust's char::to_lowercase, a full mapping without
     * context), so a capital sigma is always σ, never the final ς that String.toLowerCase chooses at a word's end.
     */
    static String lowercase(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            int n = Character.charCount(cp);
            if (cp < 128) b.append((char) Character.toLowerCase(cp));
            else b.append(s.substring(i, i + n).toLowerCase(java.util.Locale.ROOT));  // alone: no final-sigma context
            i += n;
        }
        return b.toString();
    }

    static JsonObject object(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonObject()) throw bad(where, "has a \"" + key + "\" that is not an object");
        return e.getAsJsonObject();
    }

    static JsonArray array(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonArray()) throw bad(where, "has a \"" + key + "\" that is not a list");
        return e.getAsJsonArray();
    }

    static String string(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw bad(where, "has a \"" + key + "\" that is not a string");
        return e.getAsString();
    }

    static boolean bool(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return false;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) throw bad(where, "has a \"" + key + "\" that is not true or false");
        return e.getAsBoolean();
    }

    static IllegalArgumentException bad(String where, String what) {
        return new IllegalArgumentException(where + " " + what);
    }

    private static String quoted(String s) {
        return '"' + s.replace("\n", "\\n") + '"';
    }

    private static String firstLine(String s) {
        if (s == null) return "unreadable";
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    private static String sha256(byte[] file, int eos) {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-256");
            d.update(file);
            d.update(("\neos " + eos).getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

}
