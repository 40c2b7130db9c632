package dev.patchcore.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * A SentencePiece model file ({@code tokenizer.model}, e.g. LLaMA-2's 32000-piece BPE vocabulary, the paper's
 * tokenizer), read without the SentencePiece library and encoding exactly as its {@code encode(text)} does with
 * default options (no BOS/EOS added, no sampling).
 *
 * <p>What it implements, following sentencepiece 0.2's {@code normalizer.cc}, {@code bpe_model.cc},
 * {@code unigram_model.cc} and {@code sentencepiece_processor.cc}:
 * <ul>
 *   <li>normalization: the precompiled character map (a Darts double-array trie of UTF-8 byte sequences, longest
 *       match wins; empty for the "identity" rule, as in LLaMA), user-defined symbols kept whole, malformed UTF-8
 *       → U+FFFD, {@code remove_extra_whitespaces}, {@code add_dummy_prefix}, {@code escape_whitespaces} (space →
 *       U+2581 "▁"), {@code treat_whitespace_as_suffix};</li>
 *   <li>BPE models: repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece (leftmost
 *       first on ties), re-splitting merged pieces of type UNUSED;</li>
 *   <li>unigram models: the Viterbi best segmentation by piece score, unknown characters at the lowest score − 10,
 *       user-defined pieces preferred;</li>
 *   <li>unknown pieces become their UTF-8 bytes ({@code <0xAB>} pieces) when the model has {@code byte_fallback},
 *       else the unknown id;</li>
 *   <li>decoding: "▁" → space, the leading space of the text dropped, byte pieces joined and decoded as UTF-8 (each
 *       malformed byte → U+FFFD), control pieces invisible except EOS (decoded as its piece, e.g. {@code </s>}, so
 *       document boundaries stay visible), the unknown id → the model's unknown surface (" ⁇ ").</li>
 * </ul>
 * WORD and CHAR models and models with denormalization rules are refused with an error naming the reason. The EOS
 * piece ({@code eos_id}, {@code </s>} in LLaMA) separates documents in shards, as EOS does for the other tokenizers.
 *
 * <p>The name is {@code sentencepiece-} and the first 16 hex digits of the file's SHA-256, so a dataset or
 * checkpoint can check that the file it is given is the one it was written with.
 */
public final class SentencePieceTokenizer implements Tokenizer {

    /** File name under which a dataset folder or a checkpoint keeps its copy of the model. */
    public static final String FILE_NAME = "tokenizer.model";
    /** Prefix of every SentencePiece tokenizer name. */
    public static final String NAME_PREFIX = "sentencepiece-";

    private static final String SPACE = "\u2581";
    private static final byte[] SPACE_UTF8 = SPACE.getBytes(StandardCharsets.UTF_8);
    private static final byte[] REPLACEMENT_UTF8 = "\uFFFD".getBytes(StandardCharsets.UTF_8);
    private static final float UNK_PENALTY = 10.0f;

    // SentencePiece.Type and TrainerSpec.ModelType values of sentencepiece_model.proto.
    private static final int NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;
    private static final int UNIGRAM = 1, BPE = 2;

    private final byte[] file;
    private final String name;
    private final String[] pieces;
    private final float[] scores;
    private final int[] types;
    private final boolean bpe;
    private final boolean byteFallback;
    private final int unkId, eosId;
    private final String unkSurface;
    private final boolean addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces, whitespaceAsSuffix;
    /** Precompiled character map: double-array units, and the NUL-separated replacement strings they index. */
    private final int[] trie;
    private final byte[] replacements;
    /** Pieces a BPE merge or the unigram lattice may produce: NORMAL, USER_DEFINED, UNUSED (as SentencePiece's pieces_). */
    private final Map<String, Integer> pieceIds = new HashMap<>();
    /** CONTROL, UNKNOWN and BYTE pieces (SentencePiece's reserved_id_map_). */
    private final Map<String, Integer> reservedIds = new HashMap<>();
    /** User-defined symbols as UTF-8, longest first: matched whole before normalization and splitting. */
    private final byte[][] userSymbols;
    private final String[] userSymbolText;
    private final int[] byteIds = new int[256];
    private final int maxPieceChars;
    private final float minScore;

    private SentencePieceTokenizer(byte[] file) {
        this.file = file;
        this.name = NAME_PREFIX + sha256(file).substring(0, 16);
        ModelProto m = ModelProto.parse(file);
        int n = m.pieces.size();
        if (n == 0) throw new IllegalArgumentException("the SentencePiece model has no pieces");
        pieces = new String[n];
        scores = new float[n];
        types = new int[n];
        java.util.Arrays.fill(byteIds, -1);
        Trainer t = m.trainer;
        if (t.modelType != BPE && t.modelType != UNIGRAM)
            throw new IllegalArgumentException("SentencePiece model type " + t.modelType
                    + " is not supported (only BPE and unigram models are)");
        bpe = t.modelType == BPE;
        byteFallback = t.byteFallback;
        // The checks of model_interface.cc InitializePieces: a model the library refuses is refused here too.
        List<byte[]> user = new ArrayList<>();
        int maxChars = 1, unk = -1;
        float min = Float.MAX_VALUE;
        for (int i = 0; i < n; i++) {
            Piece p = m.pieces.get(i);
            if (p.text.isEmpty()) throw new IllegalArgumentException("piece " + i + " is empty");
            if (p.text.indexOf('\0') >= 0) throw new IllegalArgumentException("piece " + i + " holds a NUL character");
            if (p.text.getBytes(StandardCharsets.UTF_8).length >= 8000) throw new IllegalArgumentException("piece " + i + " is too long");
            pieces[i] = p.text;
            scores[i] = p.score;
            types[i] = p.type;
            Map<String, Integer> map = switch (p.type) {
                case NORMAL, USER_DEFINED, UNUSED -> pieceIds;
                case CONTROL, UNKNOWN, BYTE -> reservedIds;
                default -> throw new IllegalArgumentException("piece " + i + " has unknown type " + p.type);
            };
            if (map.putIfAbsent(p.text, i) != null) throw new IllegalArgumentException("piece '" + p.text + "' is defined twice");
            if (p.type == UNKNOWN) {
                if (unk >= 0) throw new IllegalArgumentException("the model has two unknown pieces (" + unk + " and " + i + ")");
                unk = i;
            }
            if (p.type == BYTE) {
                if (!byteFallback) throw new IllegalArgumentException("byte piece " + p.text + " in a model without byte_fallback");
                int b = byteOfPiece(p.text);
                if (b < 0) throw new IllegalArgumentException("byte piece " + i + " is '" + p.text + "', not <0xXX>");
                byteIds[b] = i;
            }
            if (p.type == USER_DEFINED) user.add(p.text.getBytes(StandardCharsets.UTF_8));
            if (p.type == NORMAL) min = Math.min(min, p.score);
            maxChars = Math.max(maxChars, p.text.length());
        }
        user.sort((a, b) -> b.length - a.length);
        userSymbols = user.toArray(byte[][]::new);
        userSymbolText = user.stream().map(u -> new String(u, StandardCharsets.UTF_8)).toArray(String[]::new);
        maxPieceChars = maxChars;
        minScore = min;
        if (byteFallback) {
            for (int b = 0; b < 256; b++)
                if (byteIds[b] < 0) throw new IllegalArgumentException(String.format(
                        "the model has byte_fallback but no piece <0x%02X>", b));
        }
        if (unk < 0) throw new IllegalArgumentException("the model has no unknown piece");
        unkId = unk;
        // As SentencePieceProcessor::eos_id(): the eos_piece's id when it is a control piece.
        Integer eos = reservedIds.get(t.eosPiece);
        if (eos == null || types[eos] != CONTROL)
            throw new IllegalArgumentException("the model has no end-of-sentence piece (" + t.eosPiece
                    + "); patchcore separates documents with it");
        eosId = eos;
        unkSurface = t.unkSurface;
        whitespaceAsSuffix = t.whitespaceAsSuffix;

        Normalizer ns = m.normalizer;
        addDummyPrefix = ns.addDummyPrefix;
        removeExtraWhitespaces = ns.removeExtraWhitespaces;
        escapeWhitespaces = ns.escapeWhitespaces;
        if (ns.charsmap.length == 0) {
            trie = null;
            replacements = null;
        } else {
            ByteBuffer b = ByteBuffer.wrap(ns.charsmap).order(ByteOrder.LITTLE_ENDIAN);
            if (ns.charsmap.length < 4) throw new IllegalArgumentException("precompiled_charsmap is truncated");
            int trieBytes = b.getInt(0);
            if (trieBytes < 4 || trieBytes % 4 != 0 || trieBytes > ns.charsmap.length - 4)
                throw new IllegalArgumentException("precompiled_charsmap has a bad trie size " + trieBytes);
            trie = new int[trieBytes / 4];
            for (int i = 0; i < trie.length; i++) trie[i] = b.getInt(4 + 4 * i);
            replacements = java.util.Arrays.copyOfRange(ns.charsmap, 4 + trieBytes, ns.charsmap.length);
        }
        if (m.denormalizerRules)
            throw new IllegalArgumentException("SentencePiece models with denormalization rules are not supported");
    }

    /**
     * Reads a {@code .model} file.
     *
     * @throws IllegalArgumentException if the file is not a SentencePiece model this class can encode with
     */
    public static SentencePieceTokenizer load(Path path) throws IOException {
        return fromBytes(Files.readAllBytes(path));
    }

    /** A model from the bytes of a {@code .model} file. */
    public static SentencePieceTokenizer fromBytes(byte[] file) {
        return new SentencePieceTokenizer(file.clone());
    }

    /** The bytes of the model file, to be copied next to data or weights that need it. */
    public byte[] file() { return file.clone(); }

    @Override public String name() { return name; }

    @Override public int vocabSize() { return pieces.length; }

    @Override public int eosId() { return eosId; }

    /** A control piece's id (LLaMA-2's {@code <s>}, {@code </s>}), by its exact text; −1 for any other text. */
    @Override public int specialId(String token) {
        Integer id = reservedIds.get(token);
        return id != null && types[id] == CONTROL ? id : -1;
    }

    @Override public java.util.Set<String> specialTokens() {
        java.util.Set<String> out = new java.util.TreeSet<>();
        for (var e : reservedIds.entrySet()) if (types[e.getValue()] == CONTROL) out.add(e.getKey());
        return out;
    }

    /** The id of the unknown piece. */
    public int unkId() { return unkId; }

    /**
     * Whether Hugging Face's LLaMA tokenizer conversion (which assumes all of this) encodes as the model does: BPE with
     * byte fallback, no normalization map, a dummy prefix, spaces neither collapsed nor trailing, no user-defined
     * symbols, the unknown piece at id 0. LLaMA-2's {@code tokenizer.model} is such a model.
     */
    public boolean isLlamaStyle() {
        return bpe && byteFallback && trie == null && addDummyPrefix && !removeExtraWhitespaces && escapeWhitespaces
                && !whitespaceAsSuffix && userSymbols.length == 0 && unkId == 0;
    }

    /** The piece text of an id (as in the model file: "▁" for space, {@code <0x0A>} for a byte). */
    public String piece(int id) {
        checkId(id);
        return pieces[id];
    }

    // ---------------------------------------------------------------- encoding

    @Override
    public int[] encode(String text) {
        String normalized = normalize(text);
        if (normalized.isEmpty()) return new int[0];
        List<Segment> segments = bpe ? bpeSegments(normalized) : unigramSegments(normalized);
        int[] ids = new int[segments.size()];
        int count = 0;
        boolean prevUnknown = false;
        for (Segment seg : segments) {
            String s = seg.text();
            int id = seg.id();
            boolean unknown = types[id] == UNKNOWN;
            if (unknown && !byteFallback && prevUnknown) continue;  // a run of unknown pieces is one unknown token
            prevUnknown = unknown;
            if (unknown && byteFallback) {
                byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
                if (count + bytes.length > ids.length) ids = java.util.Arrays.copyOf(ids, Math.max(2 * ids.length, count + bytes.length));
                for (byte b : bytes) ids[count++] = byteIds[b & 0xFF];
            } else {
                if (count == ids.length) ids = java.util.Arrays.copyOf(ids, 2 * ids.length + 1);
                ids[count++] = id;
            }
        }
        return count == ids.length ? ids : java.util.Arrays.copyOf(ids, count);
    }

    /** A piece of the segmented text and its id (the unknown id for text that is no piece). */
    private record Segment(String text, int id) {}

    /** SentencePiece's PieceToId: reserved pieces first, then the others, else the unknown id. */
    private int idOf(String piece) {
        Integer id = reservedIds.get(piece);
        if (id == null) id = pieceIds.get(piece);
        return id == null ? unkId : id;
    }

    /** The normalized text, "▁" for spaces: SentencePiece's Normalizer::Normalize. */
    String normalize(String text) {
        byte[] in = Utf8.bytes(text);  // an unpaired surrogate as U+FFFD
        int pos = 0;
        int[] consumed = new int[1];
        if (removeExtraWhitespaces) {
            while (pos < in.length) {
                byte[] p = normalizePrefix(in, pos, consumed);
                if (p.length != 1 || p[0] != ' ') break;
                pos += consumed[0];
            }
        }
        if (pos == in.length) return "";
        ByteArrayOutputStream out = new ByteArrayOutputStream(in.length + 16);
        if (!whitespaceAsSuffix && addDummyPrefix) addSpace(out);
        boolean prevSpace = removeExtraWhitespaces;
        while (pos < in.length) {
            byte[] p = normalizePrefix(in, pos, consumed);
            int s = 0;
            while (prevSpace && s < p.length && p[s] == ' ') s++;
            if (s < p.length) {
                for (int k = s; k < p.length; k++) {
                    if (escapeWhitespaces && p[k] == ' ') out.writeBytes(SPACE_UTF8);
                    else out.write(p[k]);
                }
                prevSpace = p[p.length - 1] == ' ';
            }
            pos += consumed[0];
            if (!removeExtraWhitespaces) prevSpace = false;
        }
        byte[] norm = out.toByteArray();
        int end = norm.length;
        if (removeExtraWhitespaces) {
            byte[] space = escapeWhitespaces ? SPACE_UTF8 : new byte[]{' '};
            while (end >= space.length && java.util.Arrays.equals(norm, end - space.length, end, space, 0, space.length))
                end -= space.length;
        }
        String result = new String(norm, 0, end, StandardCharsets.UTF_8);
        if (whitespaceAsSuffix && addDummyPrefix) result += escapeWhitespaces ? SPACE : " ";
        return result;
    }

    private void addSpace(ByteArrayOutputStream out) {
        if (escapeWhitespaces) out.writeBytes(SPACE_UTF8);
        else out.write(' ');
    }

    /**
     * Normalizer::NormalizePrefix: the replacement for the longest rule matching at {@code pos} (a user-defined
     * symbol is kept as it is), or the one UTF-8 character there, or U+FFFD for one malformed byte.
     */
    private byte[] normalizePrefix(byte[] in, int pos, int[] consumed) {
        int user = userSymbolAt(in, pos);
        if (user > 0) {
            consumed[0] = user;
            return java.util.Arrays.copyOfRange(in, pos, pos + user);
        }
        if (trie != null) {
            long match = longestRule(in, pos);
            if (match >= 0) {
                int length = (int) (match >>> 32), value = (int) match;
                if (value < 0 || value >= replacements.length)
                    throw new IllegalArgumentException("the model's precompiled_charsmap is corrupt (replacement offset "
                            + value + " outside its " + replacements.length + " bytes)");
                int end = value;
                while (end < replacements.length && replacements[end] != 0) end++;
                consumed[0] = length;
                return java.util.Arrays.copyOfRange(replacements, value, end);
            }
        }
        int len = utf8Length(in, pos);
        if (len < 0) {
            consumed[0] = 1;
            return REPLACEMENT_UTF8;
        }
        consumed[0] = len;
        return java.util.Arrays.copyOfRange(in, pos, pos + len);
    }

    /** Length in bytes of the longest user-defined symbol starting at {@code pos}, or 0. */
    private int userSymbolAt(byte[] in, int pos) {
        for (byte[] u : userSymbols) {
            if (u.length <= in.length - pos && java.util.Arrays.equals(in, pos, pos + u.length, u, 0, u.length)) return u.length;
        }
        return 0;
    }

    /**
     * Darts-clone commonPrefixSearch over the character map, keeping the longest match (among the first 32, as
     * SentencePiece does): {@code (length << 32) | value}, or −1.
     */
    private long longestRule(byte[] key, int pos) {
        int node = 0;
        int unit = trie[0];
        node ^= offset(unit);
        long best = -1;
        int found = 0;
        for (int i = pos; i < key.length; i++) {
            int c = key[i] & 0xFF;
            node ^= c;
            if (node < 0 || node >= trie.length) return best;
            unit = trie[node];
            if (label(unit) != c) return best;
            node ^= offset(unit);
            if (node < 0 || node >= trie.length) return best;
            if (((unit >>> 8) & 1) == 1) {
                if (found++ < 32) best = ((long) (i + 1 - pos) << 32) | (trie[node] & 0x7FFFFFFFL);
            }
        }
        return best;
    }

    private static int label(int unit) { return unit & (0x80000000 | 0xFF); }

    private static int offset(int unit) { return (unit >>> 10) << ((unit & (1 << 9)) >>> 6); }

    /** Byte length of the well-formed UTF-8 character at {@code pos}, or −1 if it is malformed. */
    private static int utf8Length(byte[] in, int pos) {
        int b0 = in[pos] & 0xFF;
        int len, min;
        if (b0 < 0x80) return 1;
        else if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; min = 0x80; }
        else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; min = 0x800; }
        else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; min = 0x10000; }
        else return -1;
        if (pos + len > in.length) return -1;
        int cp = b0 & (0xFF >>> (len + 1));
        for (int k = 1; k < len; k++) {
            int b = in[pos + k] & 0xFF;
            if ((b & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (b & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
        return len;
    }

    /** Length in chars of the longest user-defined symbol starting at {@code i}, or 0. */
    private int userSymbolAt(String s, int i) {
        for (String sym : userSymbolText) if (s.startsWith(sym, i)) return sym.length();
        return 0;
    }

    /** A candidate merge of two adjacent symbols (SentencePiece's SymbolPair). */
    private record Pair(int left, int right, float score, int size) {}

    private List<Segment> bpeSegments(String text) {
        // Split into characters (user-defined symbols whole and frozen), as bpe_model.cc does.
        int[] start = new int[text.length()], length = new int[text.length()];
        boolean[] freeze = new boolean[text.length()];
        int n = 0;
        for (int i = 0; i < text.length(); n++) {
            int user = userSymbolAt(text, i);
            start[n] = i;
            length[n] = user > 0 ? user : Character.charCount(text.codePointAt(i));
            freeze[n] = user > 0;
            i += length[n];
        }
        int[] prev = new int[n], next = new int[n];
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        PriorityQueue<Pair> agenda = new PriorityQueue<>((a, b) -> a.score != b.score
                ? Float.compare(b.score, a.score) : Integer.compare(a.left, b.left));
        Map<String, String[]> reverseMerge = new HashMap<>();
        for (int i = 1; i < n; i++) addPair(text, i - 1, i, start, length, freeze, agenda, reverseMerge);
        while (!agenda.isEmpty()) {
            Pair top = agenda.poll();
            if (length[top.left] == 0 || length[top.right] == 0 || length[top.left] + length[top.right] != top.size) continue;
            length[top.left] += length[top.right];
            next[top.left] = next[top.right];
            if (next[top.right] >= 0) prev[next[top.right]] = top.left;
            length[top.right] = 0;
            addPair(text, prev[top.left], top.left, start, length, freeze, agenda, reverseMerge);
            addPair(text, top.left, next[top.left], start, length, freeze, agenda, reverseMerge);
        }
        List<Segment> out = new ArrayList<>(n);
        for (int i = 0; i != -1 && n > 0; i = next[i]) resegment(text.substring(start[i], start[i] + length[i]), reverseMerge, out);
        return out;
    }

    private void addPair(String text, int left, int right, int[] start, int[] length, boolean[] freeze,
                         PriorityQueue<Pair> agenda, Map<String, String[]> reverseMerge) {
        if (left == -1 || right == -1 || freeze[left] || freeze[right]) return;
        int size = length[left] + length[right];
        String merged = text.substring(start[left], start[left] + size);
        Integer id = pieceIds.get(merged);
        if (id == null) return;
        agenda.add(new Pair(left, right, scores[id], size));
        if (types[id] == UNUSED) {
            reverseMerge.put(merged, new String[]{text.substring(start[left], start[left] + length[left]),
                    text.substring(start[right], start[right] + length[right])});
        }
    }

    /** A merged piece of type UNUSED is split back into the two pieces it was merged from, recursively. */
    private void resegment(String w, Map<String, String[]> reverseMerge, List<Segment> out) {
        int id = idOf(w);
        String[] parts = types[id] == UNUSED ? reverseMerge.get(w) : null;
        if (parts == null) {
            out.add(new Segment(w, id));
            return;
        }
        resegment(parts[0], reverseMerge, out);
        resegment(parts[1], reverseMerge, out);
    }

    /**
     * unigram_model.cc EncodeOptimized: the best path through all pieces that match, by summed score; the ids are the
     * path's (a character no piece covers is the unknown id even when its text is a control piece's).
     */
    private List<Segment> unigramSegments(String text) {
        int size = text.length();
        float unkScore = minScore - UNK_PENALTY;
        float[] best = new float[size + 1];
        int[] from = new int[size + 1], idAt = new int[size + 1];
        java.util.Arrays.fill(from, -1);
        for (int startsAt = 0; startsAt < size; ) {
            float tillHere = best[startsAt];
            int charLen = Character.charCount(text.codePointAt(startsAt));
            boolean hasSingle = false;
            int limit = Math.min(size, startsAt + maxPieceChars);
            for (int end = startsAt + 1; end <= limit; end++) {
                Integer id = pieceIds.get(text.substring(startsAt, end));
                if (id == null || types[id] == UNUSED) continue;
                float score = types[id] == USER_DEFINED ? userDefinedScore(text.substring(startsAt, end)) : scores[id];
                float candidate = score + tillHere;
                if (from[end] == -1 || candidate > best[end]) {
                    best[end] = candidate;
                    from[end] = startsAt;
                    idAt[end] = id;
                }
                if (end - startsAt == charLen) hasSingle = true;
            }
            if (!hasSingle) {
                int end = startsAt + charLen;
                float candidate = unkScore + tillHere;
                if (from[end] == -1 || candidate > best[end]) {
                    best[end] = candidate;
                    from[end] = startsAt;
                    idAt[end] = unkId;
                }
            }
            startsAt += charLen;
        }
        List<Segment> out = new ArrayList<>();
        for (int end = size; end > 0; end = from[end]) out.add(new Segment(text.substring(from[end], end), idAt[end]));
        java.util.Collections.reverse(out);
        return out;
    }

    /**
     * The lattice score of a user-defined piece: a bonus growing with its UTF-8 length, 0.1·(bytes − 1) in float, so it
     * wins over the (negative-scored) normal pieces. This is what sentencepiece 0.2.2 computes, measured against it
     * (its source reads {@code length * max_score_ - 0.1}; the fixtures pin the behaviour down).
     */
    private static float userDefinedScore(String piece) {
        return 0.1f * (piece.getBytes(StandardCharsets.UTF_8).length - 1);
    }

    // ---------------------------------------------------------------- decoding

    @Override
    public String decode(int[] ids) {
        StringBuilder out = new StringBuilder();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        // The dummy-prefix space is dropped from the first piece that starts with one while nothing visible has
        // been written yet; with remove_extra_whitespaces, from every such piece until text appears.
        boolean leading = true, leadingSpaceDropped = false;
        for (int id : ids) {
            checkId(id);
            if (types[id] == BYTE) {
                bytes.write(byteOfPiece(pieces[id]));
                continue;
            }
            appendBytes(bytes, out);
            if (leadingSpaceDropped || !out.isEmpty()) leading = false;
            leadingSpaceDropped = false;
            if (id == eosId) out.append(pieces[id]);
            else if (types[id] == CONTROL) continue;
            else if (types[id] == UNKNOWN) out.append(unkSurface);
            else {
                String p = pieces[id];
                if (leading && (addDummyPrefix || removeExtraWhitespaces) && p.startsWith(SPACE)) {
                    p = p.substring(SPACE.length());
                    leadingSpaceDropped = !removeExtraWhitespaces;
                }
                out.append(p.replace(SPACE, " "));
            }
        }
        appendBytes(bytes, out);
        return out.toString();
    }

    /** Decodes pending byte pieces as SentencePiece does: each malformed byte becomes one U+FFFD. */
    static void appendBytes(ByteArrayOutputStream pending, StringBuilder out) {
        if (pending.size() == 0) return;
        byte[] b = pending.toByteArray();
        pending.reset();
        for (int i = 0; i < b.length; ) {
            int len = utf8Length(b, i);
            if (len < 0) {
                out.append('\uFFFD');
                i++;
            } else {
                out.append(new String(b, i, len, StandardCharsets.UTF_8));
                i += len;
            }
        }
    }

    private void checkId(int id) {
        if (id < 0 || id >= pieces.length)
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + pieces.length
                    + ") of tokenizer '" + name + "'");
    }

    /** The byte of a {@code <0xAB>} piece (exactly as sentencepiece writes it: two upper-case hex digits), or −1. */
    private static int byteOfPiece(String p) {
        if (p.length() != 6 || !p.startsWith("<0x") || p.charAt(5) != '>') return -1;
        int hi = hexDigit(p.charAt(3)), lo = hexDigit(p.charAt(4));
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    private static int hexDigit(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    }

    @Override public String toString() { return name; }

    private static String sha256(byte[] b) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---------------------------------------------------------------- the protobuf file

    private record Piece(String text, float score, int type) {}

    private static final class Trainer {
        int modelType = UNIGRAM;
        boolean byteFallback, whitespaceAsSuffix;
        String eosPiece = "</s>";
        String unkSurface = " \u2047 ";
    }

    private static final class Normalizer {
        byte[] charsmap = new byte[0];
        boolean addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;
    }

    /** The fields of sentencepiece_model.proto's ModelProto that encoding and decoding need. */
    private static final class ModelProto {
        final List<Piece> pieces = new ArrayList<>();
        Trainer trainer = new Trainer();
        Normalizer normalizer = new Normalizer();
        boolean denormalizerRules;

        static ModelProto parse(byte[] file) {
            ModelProto m = new ModelProto();
            Proto r = new Proto(file, 0, file.length);
            while (r.more()) {
                int tag = r.tag();
                switch (tag) {
                    case (1 << 3) | 2 -> m.pieces.add(piece(r.message()));
                    case (2 << 3) | 2 -> m.trainer = trainer(r.message());
                    case (3 << 3) | 2 -> m.normalizer = normalizer(r.message());
                    case (5 << 3) | 2 -> m.denormalizerRules = normalizer(r.message()).charsmap.length > 0;
                    default -> r.skip(tag);
                }
            }
            return m;
        }

        private static Piece piece(Proto r) {
            String text = "";
            float score = 0;
            int type = NORMAL;
            while (r.more()) {
                int tag = r.tag();
                switch (tag) {
                    case (1 << 3) | 2 -> text = r.string();
                    case (2 << 3) | 5 -> score = Float.intBitsToFloat(r.fixed32());
                    case (3 << 3) -> type = (int) r.varint();
                    default -> r.skip(tag);
                }
            }
            return new Piece(text, score, type);
        }

        private static Trainer trainer(Proto r) {
            Trainer t = new Trainer();
            while (r.more()) {
                int tag = r.tag();
                switch (tag) {
                    case (3 << 3) -> t.modelType = (int) r.varint();
                    case (24 << 3) -> t.whitespaceAsSuffix = r.varint() != 0;
                    case (35 << 3) -> t.byteFallback = r.varint() != 0;
                    case (47 << 3) | 2 -> {
                        String piece = r.string();
                        if (!piece.isEmpty()) t.eosPiece = piece;
                    }
                    case (44 << 3) | 2 -> t.unkSurface = r.string();
                    default -> r.skip(tag);
                }
            }
            return t;
        }

        private static Normalizer normalizer(Proto r) {
            Normalizer n = new Normalizer();
            while (r.more()) {
                int tag = r.tag();
                switch (tag) {
                    case (2 << 3) | 2 -> n.charsmap = r.bytes();
                    case (3 << 3) -> n.addDummyPrefix = r.varint() != 0;
                    case (4 << 3) -> n.removeExtraWhitespaces = r.varint() != 0;
                    case (5 << 3) -> n.escapeWhitespaces = r.varint() != 0;
                    default -> r.skip(tag);
                }
            }
            return n;
        }
    }

    /** A protobuf wire-format reader over a byte range; malformed input is an IllegalArgumentException. */
    private static final class Proto {
        private final byte[] b;
        private int pos;
        private final int end;

        Proto(byte[] b, int pos, int end) {
            this.b = b;
            this.pos = pos;
            this.end = end;
        }

        boolean more() { return pos < end; }

        int tag() { return (int) varint(); }

        long varint() {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                if (pos >= end) throw bad();
                int x = b[pos++] & 0xFF;
                v |= (long) (x & 0x7F) << shift;
                if (x < 0x80) return v;
            }
            throw bad();
        }

        int fixed32() {
            if (end - pos < 4) throw bad();
            int v = (b[pos] & 0xFF) | (b[pos + 1] & 0xFF) << 8 | (b[pos + 2] & 0xFF) << 16 | (b[pos + 3] & 0xFF) << 24;
            pos += 4;
            return v;
        }

        private int length() {
            long len = varint();
            if (len < 0 || len > end - pos) throw bad();
            return (int) len;
        }

        Proto message() {
            int len = length();
            Proto m = new Proto(b, pos, pos + len);
            pos += len;
            return m;
        }

        byte[] bytes() {
            int len = length();
            byte[] out = java.util.Arrays.copyOfRange(b, pos, pos + len);
            pos += len;
            return out;
        }

        String string() { return new String(bytes(), StandardCharsets.UTF_8); }

        void skip(int tag) {
            switch (tag & 7) {
                case 0 -> varint();
                case 1 -> { if (end - pos < 8) throw bad(); pos += 8; }
                case 2 -> {
                    int len = length();  // (not `pos += length()`: that would add to pos as it was before the length)
                    pos += len;
                }
                case 5 -> { if (end - pos < 4) throw bad(); pos += 4; }
                default -> throw bad();
            }
        }

        private static IllegalArgumentException bad() {
            return new IllegalArgumentException("not a SentencePiece model file (malformed protobuf)");
        }
    }
}
