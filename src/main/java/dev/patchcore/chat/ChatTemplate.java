package dev.patchcore.chat;

import com.google.gson.JsonElement;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.ZonedDateTime;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A Hugging Face chat template ({@code tokenizer_config.json}'s {@code chat_template}, or {@code chat_template.jinja}),
 * rendered as transformers' {@code apply_chat_template} renders it: Python Jinja2 in an
 * {@code ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)} with the loop-controls extension,
 * {@code raise_exception}, {@code strftime_now} and a {@code tojson} that does not escape non-ASCII. This is the subset
 * of Jinja2 that chat templates use; docs/chat-templates.md lists it. Anything outside it is refused when parsed, with
 * the construct and its line and column, rather than rendered differently.
 *
 * <p>The context's values are Strings, Booleans, Numbers, null, Lists and Maps (nested freely), or gson JSON elements
 * (JSON integers stay integers, as Python's {@code json.loads} keeps them): {@code messages} (a
 * list of maps with {@code role} and {@code content}), {@code bos_token}, {@code eos_token},
 * {@code add_generation_prompt}, and whatever else a template reads. A name the context lacks is Jinja2's Undefined:
 * it prints as nothing, is false, and {@code is defined} is false.
 *
 * <p>Instances are immutable and may render concurrently.
 */
public final class ChatTemplate {
    /** What a template's {@code raise_exception(message)} throws: the message is the template's own. */
    public static final class RaisedException extends IllegalArgumentException {
        RaisedException(String message) {
            super(message);
        }
    }

    private final String source;
    private final List<Node> body;

    private ChatTemplate(String source, List<Node> body) {
        this.source = source;
        this.body = body;
    }

    /**
     * Parses a template.
     *
     * @throws IllegalArgumentException (one line) naming the unsupported or invalid construct, its line and column
     */
    public static ChatTemplate parse(String source) {
        String normalized = Lexer.normalize(source);
        return new ChatTemplate(normalized, Parser.parse(normalized));
    }

    /**
     * The chat template of a Hugging Face model folder, as transformers finds it: {@code chat_template.jinja} when the
     * folder has one, else {@code tokenizer_config.json}'s {@code chat_template} (a string, or a list of named
     * templates, of which the one named {@code default} is the one {@code apply_chat_template} uses).
     *
     * @return empty when the folder has no chat template
     * @throws IllegalArgumentException when the template cannot be parsed, or tokenizer_config.json is malformed
     */
    public static Optional<ChatTemplate> load(Path folder) throws IOException {
        Path jinja = folder.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) return Optional.of(parse(Files.readString(jinja)));
        Path config = folder.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(config)) return Optional.empty();
        JsonElement root;
        try {
            root = JsonParser.parseString(Files.readString(config));
        } catch (JsonParseException e) {
            throw new IllegalArgumentException(config + " is not valid JSON: " + e.getMessage(), e);
        }
        JsonElement t = root.isJsonObject() ? root.getAsJsonObject().get("chat_template") : null;
        if (t == null || t.isJsonNull()) return Optional.empty();
        if (t.isJsonPrimitive() && t.getAsJsonPrimitive().isString()) return Optional.of(parse(t.getAsString()));
        if (t.isJsonArray()) {
            for (JsonElement e : t.getAsJsonArray()) {
                if (e.isJsonObject() && e.getAsJsonObject().has("name") && e.getAsJsonObject().has("template")
                        && "default".equals(e.getAsJsonObject().get("name").getAsString())) {
                    return Optional.of(parse(e.getAsJsonObject().get("template").getAsString()));
                }
            }
            throw new IllegalArgumentException(config + ": chat_template is a list of named templates without one named 'default'");
        }
        throw new IllegalArgumentException(config + ": chat_template is neither a string nor a list of named templates");
    }

    /** The template's text (line ends normalized to \n), as a folder keeps it in {@code chat_template.jinja}. */
    public String source() { return source; }

    /** Renders with the system clock for {@code strftime_now}. */
    public String render(Map<String, ?> context) {
        return render(context, Clock.systemDefaultZone());
    }

    /**
     * Renders the template.
     *
     * @param clock what {@code strftime_now} reads (Python's {@code datetime.now()}: the clock's zone's local time)
     * @throws RaisedException when the template calls {@code raise_exception}
     * @throws IllegalArgumentException when rendering fails as Jinja2's would (an undefined value used as an operand,
     *     a type error), naming the line and column
     */
    public String render(Map<String, ?> context, Clock clock) {
        Renderer.Scope globals = new Renderer.Scope(null);
        globals.vars.putAll(Builtins.globals(ZonedDateTime.now(clock)));
        Renderer.Scope root = new Renderer.Scope(globals);
        for (Map.Entry<String, ?> e : context.entrySet()) root.vars.put(e.getKey(), Py.fromJava(e.getValue()));
        StringBuilder out = new StringBuilder();
        new Renderer(source).render(body, root, out);
        return out.toString();
    }
}
