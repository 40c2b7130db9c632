package dev.patchcore.train;

import dev.patchcore.data.Tokenizer;
import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * A chat template: an instruct model's format for one user turn and the assistant's answer, written with the
 * tokenizer's special tokens. Special tokens are never encoded from text (a literal {@code <|eot_id|>} in a prompt is
 * ordinary text, as everywhere in patchcore): the template puts each one in by its id, looked up by its exact spelling
 * among the tokenizer's special tokens ({@link Tokenizer#specialId}), and the text between two special tokens (the
 * template's own and the user's, joined) is encoded as one stretch, as Hugging Face's tokenizers split a rendered
 * conversation at its special tokens and encode the rest.
 *
 * <ul>
 *   <li>{@code llama3}: LLaMA-3-Instruct's template ({@code tokenizer_config.json}'s {@code chat_template} of
 *       Meta-Llama-3-8B-Instruct, without a system message):
 *       {@code <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{response}<|eot_id|>},
 *       each message's content stripped of surrounding whitespace (the template's {@code | trim}, Python's
 *       {@code str.strip()}).</li>
 *   <li>{@code chatml}: ChatML as Hugging Face's generic template writes it, without a system message and without BOS:
 *       {@code <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>} (the content as it
 *       is).</li>
 * </ul>
 * The generation prompt is the template up to {@code {response}}; the turn ends at the end-of-turn token.
 */
public enum ChatFormat {
    LLAMA3("llama3", List.of("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            "<|eot_id|>", true),
    CHATML("chatml", List.of("<|im_start|>", "<|im_end|>"), "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
            "<|im_end|>", false);

    /** Where the user's texts go in a template: the n-th text at the character n (characters no template spells). */
    private static final char PROMPT = 0, RESPONSE = 1;

    private final String label;
    private final List<String> specials;
    private final String generationPrompt, endOfTurn;  // the template up to the response, PROMPT marking the prompt
    private final boolean trim;

    ChatFormat(String label, List<String> specials, String generationPrompt, String endOfTurn, boolean trim) {
        this.label = label;
        this.specials = specials;
        this.generationPrompt = generationPrompt.replace("{prompt}", String.valueOf(PROMPT));
        this.endOfTurn = endOfTurn;
        this.trim = trim;
    }

    /** The name {@code --chat} takes. */
    public String label() { return label; }

    /** The special token that ends a turn ({@code <|eot_id|>}, {@code <|im_end|>}). */
    public String endOfTurn() { return endOfTurn; }

    /** The format {@code --chat NAME} names; an unknown name is refused naming the known ones. */
    public static ChatFormat byLabel(String name) {
        for (ChatFormat f : values()) if (f.label.equals(name.toLowerCase(Locale.ROOT))) return f;
        throw new IllegalArgumentException("unknown --chat format '" + name + "': choose one of "
                + Arrays.stream(values()).map(ChatFormat::label).collect(Collectors.joining(", ")));
    }

    /**
     * This format with {@code tok}'s ids for its special tokens.
     *
     * @throws IllegalArgumentException naming the first special token {@code tok} lacks
     */
    public Template with(Tokenizer tok) {
        Map<String, Integer> ids = new LinkedHashMap<>();
        for (String s : specials) {
            int id = tok.specialId(s);
            if (id < 0)
                throw new IllegalArgumentException("--chat " + label + " needs the special token " + s + ", which tokenizer " + tok.name()
                        + " does not have (a chat format takes the tokenizer of a model made for it, e.g. an instruct model's tokenizer.json)");
            ids.put(s, id);
        }
        return new Template(this, tok, ids);
    }

    /** A format bound to a tokenizer: token ids of prompts and examples. */
    public static final class Template {
        private final ChatFormat format;
        private final Tokenizer tok;
        private final Map<String, Integer> ids;

        private Template(ChatFormat format, Tokenizer tok, Map<String, Integer> ids) {
            this.format = format;
            this.tok = tok;
            this.ids = ids;
        }

        public ChatFormat format() { return format; }

        /** The end-of-turn token's id: generation stops there; fine-tuning scores it after the response. */
        public int endOfTurnId() { return ids.get(format.endOfTurn); }

        /** The generation prompt: {@code prompt} as the user's turn, then the assistant's header. */
        public int[] prompt(String prompt) {
            return render(format.generationPrompt, prompt);
        }

        /**
         * The example of a record: the generation prompt, the response and the end of turn, scored from the response's
         * first token on (from where the prompt's own tokens stop matching the whole, as {@link Instructions#encode}).
         */
        public Instructions.Example example(Instructions.Record r) {
            int[] prompt = prompt(r.prompt());
            int[] whole = render(format.generationPrompt + RESPONSE + format.endOfTurn, r.prompt(), r.response());
            int shared = 0;
            while (shared < prompt.length && shared < whole.length && prompt[shared] == whole[shared]) shared++;
            return new Instructions.Example(whole, shared);
        }

        /**
         * The ids of {@code template}, whose special tokens become their ids and whose text between them is encoded as
         * one stretch each, with {@code texts[n]} put in at the character n ({@link #PROMPT}, {@link #RESPONSE}): the
         * user's texts are never searched for special tokens.
         */
        private int[] render(String template, String... texts) {
            IntArrayList out = new IntArrayList();
            StringBuilder stretch = new StringBuilder();
            for (int i = 0; i < template.length(); ) {
                String special = specialAt(template, i);
                if (special != null) {
                    out.addElements(out.size(), tok.encode(stretch.toString()));
                    stretch.setLength(0);
                    out.add((int) ids.get(special));
                    i += special.length();
                } else {
                    char c = template.charAt(i++);
                    if (c < texts.length) stretch.append(format.trim ? pythonStrip(texts[c]) : texts[c]);
                    else stretch.append(c);
                }
            }
            out.addElements(out.size(), tok.encode(stretch.toString()));
            return out.toIntArray();
        }

        private String specialAt(String template, int i) {
            for (String s : format.specials) if (template.startsWith(s, i)) return s;
            return null;
        }
    }

    /**
     * {@code s} without leading and trailing whitespace as Python's {@code str.strip()} (Jinja's {@code trim}) takes it:
     * the characters of Unicode category Zs or bidirectional class WS, B or S — which, unlike {@link String#strip()},
     * include the no-break spaces U+00A0, U+2007 and U+202F.
     */
    static String pythonStrip(String s) {
        int from = 0, to = s.length();
        while (from < to && isPythonSpace(s.codePointAt(from))) from += Character.charCount(s.codePointAt(from));
        while (to > from && isPythonSpace(s.codePointBefore(to))) to -= Character.charCount(s.codePointBefore(to));
        return s.substring(from, to);
    }

    private static boolean isPythonSpace(int cp) {
        byte bidi = Character.getDirectionality(cp);
        return Character.getType(cp) == Character.SPACE_SEPARATOR || bidi == Character.DIRECTIONALITY_WHITESPACE
                || bidi == Character.DIRECTIONALITY_PARAGRAPH_SEPARATOR || bidi == Character.DIRECTIONALITY_SEGMENT_SEPARATOR;
    }
}
