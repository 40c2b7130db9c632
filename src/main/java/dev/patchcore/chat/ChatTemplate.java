package dev.patchcore.chat;

import java.time.Clock;
import java.time.ZonedDateTime;
import java.util.List;
import java.util.Map;

/**
 * A Hugging Face chat template ({@code tokenizer_config.json}'s {@code chat_template}, or {@code chat_template.jinja}),
 * rendered as transformers' {@code apply_chat_template} renders it: Python Jinja2 in an
 * {@code ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)} with the loop-controls extension,
 * {@code raise_exception}, {@code strftime_now} and a {@code tojson} that does not escape non-ASCII. This is the subset
 * of Jinja2 that chat templates use; docs/chat-templates.md lists it. Anything outside it is refused when parsed, with
 * the construct and its line and column, rather than rendered differently.
 *
 * <p>The context's values are Strings, Booleans, Numbers, null, Lists and Maps (nested freely): {@code messages} (a
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
