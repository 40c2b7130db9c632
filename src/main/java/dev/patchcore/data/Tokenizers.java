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
 * Looks tokenizers up by name: the built-in ones ({@link #NAMES}) or a SentencePiece model file. Instances are
 * cached: BPE tables take a moment to load.
 */
public final class Tokenizers {

    /** Names {@link #byName} accepts, canonical names first. */
    public static final List<String> NAMES = List.of("byte", "r50k_base", "cl100k_base", "o200k_base", "gpt2");

    private static final EncodingRegistry REGISTRY = Encodings.newLazyEncodingRegistry();
    private static final Map<String, Tokenizer> CACHE = new ConcurrentHashMap<>();

    private Tokenizers() {}

    /**
     * @param name one of {@link #NAMES}, case-insensitive ({@code gpt2} is an alias of {@code r50k_base}), or the path
     *             of a SentencePiece {@code .model} file (e.g. LLaMA-2's {@code tokenizer.model})
     * @throws IllegalArgumentException for any other name, or a file that is not a SentencePiece model
     */
    public static Tokenizer byName(String name) {
        if (name != null && isModelFile(name)) return load(Path.of(name));
        if (name != null && name.startsWith(SentencePieceTokenizer.NAME_PREFIX)) {
            Tokenizer t = CACHE.get(name);
            if (t == null) throw new IllegalArgumentException("tokenizer " + name + " is a SentencePiece model: give its "
                    + ".model file (it is kept as " + SentencePieceTokenizer.FILE_NAME + " in dataset and checkpoint folders)");
            return t;
        }
        String key = canonical(name);
        return CACHE.computeIfAbsent(key, Tokenizers::create);
    }

    /**
     * The tokenizer a dataset or checkpoint folder was written with, by the name it recorded: a built-in one, or
     * the SentencePiece model kept in {@code dir} as {@value SentencePieceTokenizer#FILE_NAME}, checked to be the
     * file the name was made from.
     */
    public static Tokenizer recorded(String name, Path dir) {
        if (name == null)
            throw new IllegalArgumentException(dir + " names no tokenizer: a Hugging Face model folder needs its SentencePiece "
                    + SentencePieceTokenizer.FILE_NAME + " (LLaMA's; other tokenizer files are not read)");
        if (!name.startsWith(SentencePieceTokenizer.NAME_PREFIX)) return byName(name);
        Path file = dir.resolve(SentencePieceTokenizer.FILE_NAME);
        if (!Files.isRegularFile(file))  // checked even when the model is cached: the folder must be complete on its own
            throw new IllegalArgumentException(dir + " was written with SentencePiece tokenizer " + name + " but has no "
                    + SentencePieceTokenizer.FILE_NAME + "; copy the .model file there under that name");
        Tokenizer cached = CACHE.get(name);
        if (cached != null) return cached;
        Tokenizer t = load(file);
        if (!t.name().equals(name))
            throw new IllegalArgumentException(file + " is " + t.name() + ", not the model " + name + " that " + dir
                    + " was written with");
        return t;
    }

    /** The bytes of a SentencePiece tokenizer's model file, to keep beside data or weights; empty for the others. */
    public static java.util.Optional<byte[]> modelFile(Tokenizer t) {
        return t instanceof SentencePieceTokenizer sp ? java.util.Optional.of(sp.file()) : java.util.Optional.empty();
    }

    private static boolean isModelFile(String name) {
        if (name.endsWith(".model")) return true;
        if (NAMES.contains(name.trim().toLowerCase(Locale.ROOT))) return false;
        try {
            return Files.isRegularFile(Path.of(name));
        } catch (java.nio.file.InvalidPathException e) {
            return false;
        }
    }

    private static Tokenizer load(Path file) {
        SentencePieceTokenizer t;
        try {
            t = SentencePieceTokenizer.load(file);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("tokenizer model file " + file + " does not exist");
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read tokenizer model file " + file + ": " + e.getMessage());
        } catch (IllegalArgumentException e) {
            // A Hugging Face tokenizer.json (or vocab.json) is JSON: say what is read instead of "malformed protobuf".
            String hint = file.getFileName().toString().endsWith(".json")
                    ? " (Hugging Face tokenizer files are written with checkpoints, not read: give a SentencePiece .model "
                    + "file or one of " + String.join(", ", NAMES) + ")" : "";
            throw new IllegalArgumentException(file + ": " + e.getMessage() + hint);
        }
        Tokenizer prior = CACHE.putIfAbsent(t.name(), t);
        return prior != null ? prior : t;
    }

    private static String canonical(String name) {
        String key = name == null ? "" : name.trim().toLowerCase(Locale.ROOT);
        if (key.equals("gpt2")) return "r50k_base";
        if (!NAMES.contains(key)) {
            boolean folder = false;
            try {
                folder = name != null && Files.isRegularFile(Path.of(name).resolve(SentencePieceTokenizer.FILE_NAME));
            } catch (java.nio.file.InvalidPathException ignored) {
                // not a path
            }
            if (folder)
                throw new IllegalArgumentException("--tokenizer " + name + " is a folder: give its SentencePiece model, "
                        + Path.of(name).resolve(SentencePieceTokenizer.FILE_NAME));
            throw new IllegalArgumentException("unknown tokenizer '" + name + "': choose one of " + String.join(", ", NAMES)
                    + ", or give a SentencePiece .model file");
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
