package dev.patchcore.train;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.chat.ChatTemplate;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.train.Instructions.Message;
import dev.patchcore.train.Instructions.Role;
import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A model's own chat template ({@code --chat template}): the Jinja {@code chat_template} its folder ships
 * ({@code chat_template.jinja}, else {@code tokenizer_config.json}'s {@code chat_template}), rendered as transformers'
 * {@code apply_chat_template} renders it ({@link ChatTemplate}: messages, {@code bos_token}, {@code eos_token},
 * {@code add_generation_prompt}) and tokenized as Hugging Face's tokenizers tokenizes the rendered text: split at the
 * tokenizer's special tokens wherever they are spelled, the text between encoded as ordinary text. Unlike
 * {@link ChatFormat}, whose templates put special tokens in by id only, a special token's spelling inside a message is
 * then that token too — as with transformers.
 *
 * <p>Fine-tuning examples score each answer the way a growing conversation shows it: the tokens the conversation up to
 * the answer renders to (with the generation prompt) are the prompt, those it renders to with the answer the end; the
 * answer's scored tokens run from where the two stop agreeing to its last special token (its end of turn: ChatML's
 * {@code <|im_end|>}, LLaMA-2's {@code </s>}; text after it, as ChatML's {@code \n}, belongs to the next turn). A
 * template that renders earlier turns differently as the conversation grows (one that drops earlier reasoning, or
 * dates the system message) is refused for fine-tuning, naming the record.
 */
public final class TemplateChat implements Chat {
    public static final String LABEL = "template";
    /** transformers' file for a template of its own (read first), and the config that otherwise holds it. */
    public static final String TEMPLATE_FILE = "chat_template.jinja", CONFIG_FILE = "tokenizer_config.json";

    private final ChatTemplate template;
    private final String where, bos, eos;
    private final Tokenizer tok;
    private final Set<Integer> stops;
    /** The tokenizer's special tokens, longest first (a longer one wins where two start at the same place). */
    private final List<String> specials;
    private final Set<Integer> specialIds = new LinkedHashSet<>();

    /**
     * {@code source} rendered with {@code bos} / {@code eos} as {@code bos_token} / {@code eos_token} (either may be
     * ""), generation stopping at {@code stopIds} (and at {@code eos}'s id where the tokenizer has it).
     *
     * @throws IllegalArgumentException naming {@code where} if the template is not one {@link ChatTemplate} reads
     */
    public TemplateChat(String source, String where, Tokenizer tok, String bos, String eos, Set<Integer> stopIds) {
        this(parse(source, where), where, tok, bos, eos, stopIds);
    }

    private TemplateChat(ChatTemplate template, String where, Tokenizer tok, String bos, String eos, Set<Integer> stopIds) {
        this.template = template;
        this.where = where;
        this.tok = tok;
        this.bos = bos;
        this.eos = eos;
        this.specials = tok.specialTokens().stream().sorted(Comparator.comparingInt(String::length).reversed()).toList();
        for (String s : specials) specialIds.add(tok.specialId(s));
        Set<Integer> stop = new LinkedHashSet<>(stopIds);
        if (!eos.isEmpty() && tok.specialId(eos) >= 0) stop.add(tok.specialId(eos));
        if (stop.isEmpty()) throw new IllegalArgumentException(where + ": no end-of-turn token (an eos_token the tokenizer has as a special token)");
        this.stops = Set.copyOf(stop);
    }

    private static ChatTemplate parse(String source, String where) {
        try {
            return ChatTemplate.parse(source);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
        }
    }

    /**
     * The chat template of model folder {@code dir} (a Hugging Face folder or a checkpoint fine-tuned with it), as
     * {@link ChatTemplate#load} finds it ({@value #TEMPLATE_FILE}, else {@value #CONFIG_FILE}'s {@code chat_template});
     * {@code bos_token} and {@code eos_token} from that config; generation also stops at
     * {@code generation_config.json}'s {@code eos_token_id}s.
     *
     * @throws IllegalArgumentException in one line if the folder has no template or it cannot be read
     */
    public static TemplateChat fromFolder(Path dir, Tokenizer tok) {
        String where = dir.toString();
        java.util.Optional<ChatTemplate> template;
        try {
            template = ChatTemplate.load(dir);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + where + ": " + e.getMessage());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
        }
        if (template.isEmpty())
            throw new IllegalArgumentException(dir + " has no chat template (no " + TEMPLATE_FILE + ", no chat_template in its " + CONFIG_FILE
                    + "): give --chat " + ChatFormat.labels() + " instead");
        Path config = dir.resolve(CONFIG_FILE);
        JsonObject cfg = Files.isRegularFile(config) ? json(config) : new JsonObject();
        Set<Integer> stops = new LinkedHashSet<>();
        Path generation = dir.resolve("generation_config.json");
        if (Files.isRegularFile(generation)) {
            JsonElement ids = json(generation).get("eos_token_id");
            if (ids != null && ids.isJsonArray()) for (JsonElement id : ids.getAsJsonArray()) stops.add(tokenId(id, ids, generation));
            else if (ids != null && !ids.isJsonNull()) stops.add(tokenId(ids, ids, generation));
        }
        stops.removeIf(id -> id < 0 || id >= tok.vocabSize());
        return new TemplateChat(template.get(), where, tok, tokenText(cfg, "bos_token", tok), tokenText(cfg, "eos_token", tok), stops);
    }

    /**
     * {@code bos_token} / {@code eos_token} as transformers fills them in: the config's, else, for a SentencePiece
     * {@code tokenizer.model} read as a LLaMA tokenizer (no other {@code tokenizer_class} named), LlamaTokenizer's
     * defaults {@code <s>} / {@code </s>} where the model has them; "" where the config says null or nothing applies.
     */
    private static String tokenText(JsonObject cfg, String field, Tokenizer tok) {
        if (cfg.has(field)) return tokenText(cfg, field);
        String cls = string(cfg.get("tokenizer_class"));
        if (!(tok instanceof dev.patchcore.data.SentencePieceTokenizer) || cls != null && !cls.toLowerCase(java.util.Locale.ROOT).contains("llama"))
            return "";
        String llamaDefault = field.equals("bos_token") ? "<s>" : "</s>";
        return tok.specialId(llamaDefault) >= 0 ? llamaDefault : "";
    }

    /** The template's source, as a fine-tuned checkpoint keeps it ({@value #TEMPLATE_FILE}). */
    public String source() { return template.source(); }

    /** What the template renders as {@code bos_token} and {@code eos_token} ("" where the folder names none). */
    public String bosToken() { return bos; }

    public String eosToken() { return eos; }

    @Override public String label() { return LABEL; }

    @Override public boolean endsTurn(int id) { return stops.contains(id); }

    /** The ids that end an answer (eos_token's and generation_config.json's), as a fine-tuned checkpoint keeps them. */
    public Set<Integer> stopIds() { return stops; }

    @Override public int[] prompt(List<Message> messages) {
        return tokens(render(messages, true));
    }

    @Override public Instructions.Example example(Instructions.Item item) {
        List<Message> messages = switch (item) {
            case Instructions.Record r -> r.asConversation().messages();
            case Instructions.Conversation c -> c.messages();
        };
        int[] whole = tokens(render(messages, false));
        IntArrayList spans = new IntArrayList();
        for (int i = 0; i < messages.size(); i++) {
            if (messages.get(i).role() != Role.ASSISTANT) continue;
            int[] before = prompt(messages.subList(0, i)), upto = tokens(render(messages.subList(0, i + 1), false));
            if (!startsWith(whole, upto))
                throw new IllegalArgumentException(where + " renders the turns up to answer " + (spans.size() / 2 + 1)
                        + " differently once later turns follow, so its answers cannot be scored: give --chat " + ChatFormat.labels());
            int from = 0;
            while (from < before.length && from < upto.length && before[from] == upto[from]) from++;
            if (from < before.length - 1 || from < (spans.isEmpty() ? 0 : spans.getInt(spans.size() - 1)))
                throw new IllegalArgumentException(where + "'s generation prompt before answer " + (spans.size() / 2 + 1)
                        + " is not how the conversation continues with it, so the answer cannot be found: give --chat " + ChatFormat.labels());
            int to = upto.length;
            for (int j = upto.length - 1; j >= from; j--) {
                if (specialIds.contains(upto[j])) {
                    to = j + 1;  // the answer's end of turn; what follows it opens the next turn
                    break;
                }
            }
            spans.add(from);
            spans.add(to);
        }
        return new Instructions.Example(whole, spans.toIntArray());
    }

    /** The conversation's generation prompt, when it extends {@code sequence}: the rest of it; else null (read it again). */
    @Override public int[] continuation(int[] sequence, boolean ended, List<Message> conversation, int fresh) {
        int[] full = prompt(conversation);
        return startsWith(full, sequence) ? Arrays.copyOfRange(full, sequence.length, full.length) : null;
    }

    /** The template's text for {@code messages}, as apply_chat_template renders it. */
    public String render(List<Message> messages, boolean generationPrompt) {
        List<Map<String, Object>> list = new ArrayList<>();
        for (Message m : messages) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("role", m.role().label());
            o.put("content", m.content());
            list.add(o);
        }
        Map<String, Object> context = new LinkedHashMap<>();
        context.put("messages", list);
        context.put("bos_token", bos);
        context.put("eos_token", eos);
        context.put("add_generation_prompt", generationPrompt);
        try {
            return template.render(context);
        } catch (IllegalArgumentException e) {  // the template's raise_exception, or an expression it cannot evaluate
            throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
        }
    }

    /**
     * Rendered text as tokenizers encodes it: each special token where it is spelled (with the white space before or
     * after it that an {@code lstrip} / {@code rstrip} token takes), the text between as text.
     */
    int[] tokens(String text) {
        IntArrayList out = new IntArrayList();
        int start = 0;
        for (int i = 0; i < text.length(); ) {
            String special = specialAt(text, i);
            if (special == null) {
                i++;
                continue;
            }
            int end = i;
            if (tok.specialAbsorbsWhitespace(special, false)) while (end > start && isWhiteSpace(text.codePointBefore(end))) end -= Character.charCount(text.codePointBefore(end));
            if (end > start) out.addElements(out.size(), tok.encode(text.substring(start, end), start == 0));
            out.add(tok.specialId(special));
            i += special.length();
            if (tok.specialAbsorbsWhitespace(special, true)) while (i < text.length() && isWhiteSpace(text.codePointAt(i))) i += Character.charCount(text.codePointAt(i));
            start = i;
        }
        if (start < text.length()) out.addElements(out.size(), tok.encode(text.substring(start), start == 0));
        return out.toIntArray();
    }

    /** Unicode's White_Space (Rust's char::is_whitespace, which tokenizers' lstrip / rstrip use). */
    static boolean isWhiteSpace(int cp) {
        return cp >= 0x09 && cp <= 0x0D || cp == ' ' || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || cp >= 0x2000 && cp <= 0x200A
                || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    }

    private String specialAt(String text, int i) {
        for (String s : specials) if (text.startsWith(s, i)) return s;
        return null;
    }

    private static boolean startsWith(int[] ids, int[] prefix) {
        return prefix.length <= ids.length && Arrays.equals(ids, 0, prefix.length, prefix, 0, prefix.length);
    }

    /** An id of generation_config.json's eos_token_id ({@code all}): a whole number, else one error line naming the file. */
    private static int tokenId(JsonElement id, JsonElement all, Path file) {
        if (id.isJsonPrimitive() && id.getAsJsonPrimitive().isNumber()) {
            double v = id.getAsDouble();
            if (v == Math.rint(v) && Math.abs(v) <= Integer.MAX_VALUE) return (int) v;
        }
        throw new IllegalArgumentException(file + ": eos_token_id must be a token id or a list of them, got " + all);
    }

    /** A config's special token: a string, or {"content": ...} (transformers' AddedToken); "" where absent. */
    private static String tokenText(JsonObject cfg, String field) {
        JsonElement e = cfg.get(field);
        if (e != null && e.isJsonObject()) e = e.getAsJsonObject().get("content");
        String s = string(e);
        return s == null ? "" : s;
    }

    private static String string(JsonElement e) {
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isString() ? e.getAsString() : null;
    }

    private static JsonObject json(Path file) {
        try {
            JsonElement e = JsonParser.parseString(read(file));
            if (!e.isJsonObject()) throw new IllegalArgumentException(file + " is not a JSON object");
            return e.getAsJsonObject();
        } catch (com.google.gson.JsonParseException e) {
            throw new IllegalArgumentException(file + " is not valid JSON");
        }
    }

    private static String read(Path file) {
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage());
        }
    }
}
