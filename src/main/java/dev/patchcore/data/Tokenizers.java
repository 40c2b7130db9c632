package dev.patchcore.data;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.EncodingRegistry;
import com.knuddels.jtokkit.api.EncodingType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Looks tokenizers up by name: the built-in ones ({@link #NAMES}), a SentencePiece model file, or a Hugging Face
 * {@code tokenizer.json} (BPE: byte-level, or SentencePiece-style with byte fallback). Instances are cached: BPE tables
 * take a moment to load.
 */
public final class Tokenizers {

    /** Names {@link #byName} accepts, canonical names first. */
    public static final List<String> NAMES = List.of("byte", "r50k_base", "cl100k_base", "o200k_base", "gpt2");

    private static final EncodingRegistry REGISTRY = Encodings.newLazyEncodingRegistry();
    private static final Map<String, Tokenizer> CACHE = new ConcurrentHashMap<>();

    private Tokenizers() {}

    /**
     * @param name one of {@link #NAMES}, case-insensitive ({@code gpt2} is an alias of {@code r50k_base}), the path
     *             of a SentencePiece {@code .model} file (e.g. LLaMA-2's {@code tokenizer.model}), or the path of a
     *             Hugging Face {@code .json} tokenizer file (e.g. LLaMA-3's or LLaMA-2's {@code tokenizer.json}; the
     *             {@code tokenizer_config.json} beside it names its end of text)
     * @throws IllegalArgumentException for any other name, or a file that is neither
     */
    public static Tokenizer byName(String name) {
        if (name != null && isModelFile(name)) return load(Path.of(name));
        if (name != null && (name.startsWith(SentencePieceTokenizer.NAME_PREFIX) || name.startsWith(HuggingFaceBpeTokenizer.NAME_PREFIX))) {
            Tokenizer t = CACHE.get(name);
            boolean sp = name.startsWith(SentencePieceTokenizer.NAME_PREFIX);
            if (t == null) throw new IllegalArgumentException("tokenizer " + name + " is a " + (sp ? "SentencePiece model: give its .model file"
                    : "Hugging Face tokenizer: give its tokenizer.json") + " (it is kept as " + (sp ? SentencePieceTokenizer.FILE_NAME
                    : HuggingFaceBpeTokenizer.FILE_NAME) + " in dataset and checkpoint folders)");
            return t;
        }
        String key = canonical(name);
        return CACHE.computeIfAbsent(key, Tokenizers::create);
    }

    /**
     * The tokenizer a dataset or checkpoint folder was written with, by the name it recorded: a built-in one, or
     * the file kept in {@code dir} ({@value SentencePieceTokenizer#FILE_NAME}, or {@value HuggingFaceBpeTokenizer#FILE_NAME}
     * with its {@value HuggingFaceBpeTokenizer#CONFIG_FILE_NAME}), checked to be the file the name was made from.
     */
    public static Tokenizer recorded(String name, Path dir) {
        if (name == null) {
            // A Hugging Face folder whose tokenizer.json is not one patchcore reads: say why.
            Path json = dir.resolve(HuggingFaceBpeTokenizer.FILE_NAME);
            if (Files.isRegularFile(json)) byName(json.toString());
            throw new IllegalArgumentException(dir + " names no tokenizer: a Hugging Face model folder needs its SentencePiece "
                    + SentencePieceTokenizer.FILE_NAME + " or its BPE " + HuggingFaceBpeTokenizer.FILE_NAME);
        }
        boolean sp = name.startsWith(SentencePieceTokenizer.NAME_PREFIX);
        if (!sp && !name.startsWith(HuggingFaceBpeTokenizer.NAME_PREFIX)) return byName(name);
        String fileName = sp ? SentencePieceTokenizer.FILE_NAME : HuggingFaceBpeTokenizer.FILE_NAME;
        Path file = dir.resolve(fileName);
        if (!Files.isRegularFile(file))  // checked even when the model is cached: the folder must be complete on its own
            throw new IllegalArgumentException(dir + " was written with " + (sp ? "SentencePiece" : "Hugging Face") + " tokenizer " + name
                    + " but has no " + fileName + "; copy the " + (sp ? ".model file" : "tokenizer.json (and its tokenizer_config.json)")
                    + " there under that name");
        Tokenizer cached = CACHE.get(name);
        if (cached != null && sameFiles(cached, dir)) return cached;
        Tokenizer t = load(file);
        if (!t.name().equals(name))
            throw new IllegalArgumentException(file + " is " + t.name() + ", not the " + (sp ? "model " : "tokenizer ") + name + " that "
                    + dir + " was written with");
        return t;
    }

    /**
     * The files a tokenizer keeps beside data or weights, name → bytes: a SentencePiece model's {@code tokenizer.model};
     * a Hugging Face tokenizer's {@code tokenizer.json} and, if it was read with one, its {@code tokenizer_config.json};
     * none for the built-in ones.
     */
    public static Map<String, byte[]> files(Tokenizer t) {
        if (t instanceof SentencePieceTokenizer sp) return Map.of(SentencePieceTokenizer.FILE_NAME, sp.file());
        if (t instanceof HuggingFaceBpeTokenizer hf) return hf.files();
        return Map.of();
    }

    /** Every file name {@link #files} may use. */
    public static final List<String> FILE_NAMES = List.of(SentencePieceTokenizer.FILE_NAME, HuggingFaceBpeTokenizer.FILE_NAME,
            HuggingFaceBpeTokenizer.CONFIG_FILE_NAME);

    private static boolean isModelFile(String name) {
        if (name.endsWith(".model") || name.endsWith(".json")) return true;
        if (NAMES.contains(name.trim().toLowerCase(Locale.ROOT))) return false;
        try {
            return Files.isRegularFile(Path.of(name));
        } catch (java.nio.file.InvalidPathException e) {
            return false;
        }
    }

    /** A file as last read: its path, size and modification times (with those of a tokenizer.json's config beside it). */
    private record FileStamp(Path path, long size, long modified, long configSize, long configModified) {
        static FileStamp of(Path file) throws IOException {
            Path abs = file.toAbsolutePath().normalize(), config = abs.resolveSibling(HuggingFaceBpeTokenizer.CONFIG_FILE_NAME);
            boolean hasConfig = Files.isRegularFile(config);
            return new FileStamp(abs, Files.size(abs), Files.getLastModifiedTime(abs).toMillis(),
                    hasConfig ? Files.size(config) : -1, hasConfig ? Files.getLastModifiedTime(config).toMillis() : -1);
        }
    }

    /** Tokenizers by the file they were read from, so that a command naming the same file twice parses it once. */
    private static final Map<FileStamp, Tokenizer> BY_FILE = new ConcurrentHashMap<>();

    private static Tokenizer load(Path file) {
        FileStamp stamp;
        Tokenizer t;
        try {
            stamp = FileStamp.of(file);
            t = BY_FILE.get(stamp);
            if (t != null) return t;
            t = HuggingFaceBpeTokenizer.isJson(file) ? HuggingFaceBpeTokenizer.load(file) : SentencePieceTokenizer.load(file);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("tokenizer file " + file + " does not exist");
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read tokenizer file " + file + ": " + e.getMessage());
        } catch (IllegalArgumentException e) {
            if (HuggingFaceBpeTokenizer.isJson(file)) throw e;  // its messages name the file
            throw new IllegalArgumentException(file + ": " + e.getMessage());
        }
        // cl100k_base or o200k_base spelled as a tokenizer.json (a patchcore checkpoint's) is that encoding.
        String tiktoken = t instanceof HuggingFaceBpeTokenizer hf ? hf.tiktokenEquivalent() : null;
        if (tiktoken != null) {
            t = byName(tiktoken);
        } else {
            Tokenizer prior = CACHE.putIfAbsent(t.name(), t);
            if (prior != null && sameFiles(prior, t)) t = prior;
        }
        Tokenizer first = BY_FILE.putIfAbsent(stamp, t);  // two threads that read the same file share the first
        return first != null ? first : t;
    }

    /**
     * Whether a cached tokenizer is the one {@code dir}'s files make. The name covers what encodes; a Hugging Face
     * tokenizer's {@code tokenizer_config.json} may differ and still name the same end of text, and the files a
     * dataset or checkpoint receives are the instance's own, so such an instance is not shared.
     */
    private static boolean sameFiles(Tokenizer cached, Path dir) {
        if (!(cached instanceof HuggingFaceBpeTokenizer hf)) return true;
        Path config = (dir == null ? Path.of(".") : dir).resolve(HuggingFaceBpeTokenizer.CONFIG_FILE_NAME);
        byte[] mine = hf.config();
        try {
            return Files.isRegularFile(config) ? mine != null && java.util.Arrays.equals(mine, Files.readAllBytes(config)) : mine == null;
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * Whether a cached tokenizer is {@code loaded}, read just now, as {@link #sameFiles(Tokenizer, Path)} asks of a
     * folder: compared with the {@value HuggingFaceBpeTokenizer#CONFIG_FILE_NAME} that was read with it (none where
     * its file is not named {@value HuggingFaceBpeTokenizer#FILE_NAME}), not with what is on disk now.
     */
    private static boolean sameFiles(Tokenizer cached, Tokenizer loaded) {
        if (!(cached instanceof HuggingFaceBpeTokenizer hf)) return true;
        return loaded instanceof HuggingFaceBpeTokenizer other && hf.sameConfig(other);
    }

    private static String canonical(String name) {
        String key = name == null ? "" : name.trim().toLowerCase(Locale.ROOT);
        if (key.equals("gpt2")) return "r50k_base";
        if (!NAMES.contains(key)) {
            boolean folder = false;
            try {
                folder = name != null && Files.isDirectory(Path.of(name));
            } catch (java.nio.file.InvalidPathException ignored) {
                // not a path
            }
            if (folder) {
                for (String file : List.of(SentencePieceTokenizer.FILE_NAME, HuggingFaceBpeTokenizer.FILE_NAME))
                    if (Files.isRegularFile(Path.of(name).resolve(file)))
                        throw new IllegalArgumentException("--tokenizer " + name + " is a folder: give its tokenizer file, "
                                + Path.of(name).resolve(file));
            }
            throw new IllegalArgumentException("unknown tokenizer '" + name + "': choose one of " + String.join(", ", NAMES)
                    + ", or give a SentencePiece .model file or a Hugging Face tokenizer.json");
        }
        return key;
    }

    private static Tokenizer create(String key) {
        // vocabSize = largest special id + 1 = tiktoken's n_vocab.
        return switch (key) {
            case "byte" -> ByteTokenizer.INSTANCE;
            case "r50k_base" -> new TiktokenTokenizer(REGISTRY.getEncoding(EncodingType.R50K_BASE), 50_257, 50_256);
            case "cl100k_base" -> new TiktokenTokenizer(REGISTRY.getEncoding(EncodingType.CL100K_BASE), 100_277, 100_257);
            case "o200k_base" -> new TiktokenTokenizer(REGISTRY.getEncoding(EncodingType.O200K_BASE), 200_019, 199_999);
            default -> throw new IllegalStateException("no factory for tokenizer " + key);
        };
    }
}
