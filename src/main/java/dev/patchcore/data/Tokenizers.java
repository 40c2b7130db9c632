package dev.patchcore.data;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.EncodingRegistry;
import com.knuddels.jtokkit.api.EncodingType;

import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** Looks tokenizers up by name. Instances are cached: BPE tables take a moment to load. */
public final class Tokenizers {

    /** Names {@link #byName} accepts, canonical names first. */
    public static final List<String> NAMES = List.of("byte", "r50k_base", "cl100k_base", "o200k_base", "gpt2");

    private static final EncodingRegistry REGISTRY = Encodings.newLazyEncodingRegistry();
    private static final Map<String, Tokenizer> CACHE = new ConcurrentHashMap<>();

    private Tokenizers() {}

    /**
     * @param name one of {@link #NAMES}, case-insensitive; {@code gpt2} is an alias of {@code r50k_base}
     * @throws IllegalArgumentException for any other name
     */
    public static Tokenizer byName(String name) {
        String key = canonical(name);
        return CACHE.computeIfAbsent(key, Tokenizers::create);
    }

    private static String canonical(String name) {
        String key = name == null ? "" : name.trim().toLowerCase(Locale.ROOT);
        if (key.equals("gpt2")) return "r50k_base";
        if (!NAMES.contains(key)) {
            throw new IllegalArgumentException("unknown tokenizer '" + name + "': choose one of " + String.join(", ", NAMES));
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
