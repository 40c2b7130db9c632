package dev.patchcore.train;

import dev.patchcore.data.Tokenizer;
import dev.patchcore.train.Instructions.Message;
import dev.patchcore.train.Instructions.Role;
import it.unimi.dsi.fastutil.ints.IntArrayList;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * A chat template: an instruct model's format for a conversation (an optional system message, then the user's and the
 * assistant's turns), written with the tokenizer's special tokens. Special tokens are never encoded from text (a
 * literal {@code <|eot_id|>} in a message is ordinary text, as everywhere in patchcore): the template puts each one in
 * by its id, looked up by its exact spelling among the tokenizer's special tokens ({@link Tokenizer#specialId}), and
 * the text between two special tokens (the template's own and the messages', joined) is encoded as one stretch, as
 * Hugging Face's tokenizers split a rendered conversation at its special tokens and encode the rest.
 *
 * <ul>
 *   <li>{@code llama3}: LLaMA-3-Instruct's template ({@code tokenizer_config.json}'s {@code chat_template} of
 *       Meta-Llama-3-8B-Instruct): {@code <|begin_of_text|>}, then per message
 *       {@code <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>}, each message's content stripped of
 *       surrounding whitespace (the template's {@code | trim}, Python's {@code str.strip()}).</li>
 *   <li>{@code chatml}: ChatML as Hugging Face's generic template writes it, without BOS: per message
 *       {@code <|im_start|>{role}\n{content}<|im_end|>\n} (the content as it is).</li>
 * </ul>
 * The generation prompt is the messages, then the assistant's header; the answer ends at the end-of-turn token. In a
 * fine-tuning example each assistant turn's content and its end-of-turn token are scored (a ChatML turn's {@code \n}
 * after {@code <|im_end|>} is not: the example ends at its last answer's end of turn).
 */
public enum ChatFormat {
    LLAMA3("llama3", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "\n\n", "<|eot_id|>", "", true),
    CHATML("chatml", null, "<|im_start|>", null, "\n", "<|im_end|>", "\n", false);

    private final String label;
    private final String bos, headerStart, headerEnd, headerTail, endOfTurn, separator;  // bos, headerEnd: null if none
    private final boolean trim;

    ChatFormat(String label, String bos, String headerStart, String headerEnd, String headerTail, String endOfTurn, String separator,
               boolean trim) {
        this.label = label;
        this.bos = bos;
        this.headerStart = headerStart;
        this.headerEnd = headerEnd;
        this.headerTail = headerTail;
        this.endOfTurn = endOfTurn;
        this.separator = separator;
        this.trim = trim;
    }

    /** The name {@code --chat} takes. */
    public String label() { return label; }

    /** The special token that ends a turn ({@code <|eot_id|>}, {@code <|im_end|>}). */
    public String endOfTurn() { return endOfTurn; }

    /** The names {@code --chat} takes, as "llama3|chatml". */
    public static String labels() {
        return Arrays.stream(values()).map(ChatFormat::label).collect(Collectors.joining("|"));
    }

    /** The format {@code --chat NAME} names; an unknown name is refused naming the known ones. */
    public static ChatFormat byLabel(String name) {
        for (ChatFormat f : values()) if (f.label.equals(name.toLowerCase(Locale.ROOT))) return f;
        throw new IllegalArgumentException("unknown --chat format '" + name + "': choose one of "
                + Arrays.stream(values()).map(ChatFormat::label).collect(Collectors.joining(", ")) + " or " + TemplateChat.LABEL + " (the model's own)");
    }

    /**
     * The chat {@code --chat NAME} names for a model whose tokenizer is {@code tok} ({@code checkpoint}: its folder):
     * one of the fixed formats, or {@value TemplateChat#LABEL}, the folder's own chat template ({@link TemplateChat}).
     *
     * @throws IllegalArgumentException for an unknown name, a tokenizer without the format's special tokens, or a
     *                                  folder without a chat template it can read
     */
    public static Chat open(String name, Tokenizer tok, java.nio.file.Path checkpoint) {
        if (name.equalsIgnoreCase(TemplateChat.LABEL)) return TemplateChat.fromFolder(checkpoint, tok);
        return byLabel(name).with(tok);
    }

    /** The special tokens the format writes, in the order they are looked up. */
    private List<String> specials() {
        return Stream.of(bos, headerStart, headerEnd, endOfTurn).filter(Objects::nonNull).toList();
    }

    /**
     * This format with {@code tok}'s ids for its special tokens.
     *
     * @throws IllegalArgumentException naming the first special token {@code tok} lacks
     */
    public Template with(Tokenizer tok) {
        Map<String, Integer> ids = new LinkedHashMap<>();
        for (String s : specials()) {
            int id = tok.specialId(s);
            if (id < 0)
                throw new IllegalArgumentException("--chat " + label + " needs the special token " + s + ", which tokenizer " + tok.name()
                        + " does not have (a chat format takes the tokenizer of a model made for it, e.g. an instruct model's tokenizer.json)");
            ids.put(s, id);
        }
        return new Template(this, tok, ids);
    }

    /** A format bound to a tokenizer: token ids of prompts and examples. */
    public static final class Template implements Chat {
        private final ChatFormat format;
        private final Tokenizer tok;
        private final Map<String, Integer> ids;

        private Template(ChatFormat format, Tokenizer tok, Map<String, Integer> ids) {
            this.format = format;
            this.tok = tok;
            this.ids = ids;
        }

        public ChatFormat format() { return format; }

        @Override public String label() { return format.label; }

        @Override public boolean endsTurn(int id) { return id == endOfTurnId(); }

        public Tokenizer tokenizer() { return tok; }

        /** The end-of-turn token's id: generation stops there; fine-tuning scores it after each answer. */
        public int endOfTurnId() { return ids.get(format.endOfTurn); }

        /** The generation prompt: {@code prompt} as the user's turn, then the assistant's header. */
        public int[] prompt(String prompt) {
            return prompt(List.of(new Message(Role.USER, prompt)));
        }

        @Override
        public int[] prompt(List<Message> messages) {
            Renderer r = new Renderer();
            r.messages(messages, true);
            if (!messages.isEmpty()) r.text(format.separator);
            r.header(Role.ASSISTANT);
            return r.finish();
        }

        /**
         * What follows an answer that a generation prompt received, up to the next answer: the end of turn if the answer
         * did not end with it ({@code ended} false: cut by the token limit), then {@code messages} and the assistant's
         * header. The prompt, the answer's tokens and this are {@link #prompt(List)} of the whole conversation where the
         * answer's text encodes to the same tokens; a conversation kept as tokens this way is what the model read and
         * wrote, whatever its text encodes to.
         */
        /** {@link #continuation(boolean, List)} of the new messages: the format never needs the earlier ones. */
        @Override
        public int[] continuation(int[] sequence, boolean ended, List<Message> conversation, int fresh) {
            return continuation(ended, conversation.subList(fresh, conversation.size()));
        }

        public int[] continuation(boolean ended, List<Message> messages) {
            Renderer r = new Renderer();
            r.atStart = false;
            if (!ended) r.special(format.endOfTurn);
            r.text(format.separator);
            r.messages(messages, false);
            if (!messages.isEmpty()) r.text(format.separator);
            r.header(Role.ASSISTANT);
            return r.finish();
        }

        /**
         * The example of a record: its conversation's messages, each assistant turn's content and end of turn scored from
         * the content's first token on (from where the tokens of the text before it stop matching the whole's, as
         * {@link Instructions#encode}: a header's last token merged into the content's first is scored).
         */
        @Override
        public Instructions.Example example(Instructions.Item item) {
            Instructions.Conversation c = switch (item) {
                case Instructions.Record r -> r.asConversation();
                case Instructions.Conversation conversation -> conversation;
            };
            Renderer r = new Renderer();
            r.messages(c.messages(), true);
            int[] ids = r.finish();
            return new Instructions.Example(ids, r.spans.toIntArray());
        }

        /**
         * Token ids of a rendered conversation: special tokens by their ids, the text between two of them encoded as one
         * stretch (the messages' texts never searched for special tokens), and the scored spans of assistant turns.
         */
        private final class Renderer {
            final IntArrayList out = new IntArrayList(), spans = new IntArrayList();
            final StringBuilder stretch = new StringBuilder();
            int scoredChars = -1;  // where in the stretch the scored text begins (-1: nothing scored in it)
            int scoredFrom;        // the token where the last flushed scored text begins
            boolean atStart = true;  // the first text rendered begins the input (a continuation's does not)

            /** The messages, each under its header and ended by the end of turn; {@code first}: at the start (BOS first). */
            void messages(List<Message> messages, boolean first) {
                if (first && format.bos != null) special(format.bos);
                for (int i = 0; i < messages.size(); i++) {
                    if (i > 0) text(format.separator);
                    Message m = messages.get(i);
                    header(m.role());
                    boolean scored = m.role() == Role.ASSISTANT;
                    if (scored) scoredChars = stretch.length();
                    text(format.trim ? pythonStrip(m.content()) : m.content());
                    special(format.endOfTurn);
                    if (scored) {
                        spans.add(scoredFrom);
                        spans.add(out.size());
                    }
                }
            }

            void header(Role role) {
                special(format.headerStart);
                text(role.label());
                if (format.headerEnd != null) special(format.headerEnd);
                text(format.headerTail);
            }

            void text(String s) { stretch.append(s); }

            void special(String s) {
                flush();
                out.add((int) ids.get(s));
            }

            int[] finish() {
                flush();
                return out.toIntArray();
            }

            /**
             * Encodes the stretch (as beginning the text only where no token precedes it); where scored text begins in
             * it, the first token that the text before it does not share.
             */
            private void flush() {
                boolean begins = atStart && out.isEmpty();
                int[] all = tok.encode(stretch.toString(), begins);
                if (scoredChars >= 0) {
                    int[] before = tok.encode(stretch.substring(0, scoredChars), begins);
                    int shared = 0;
                    while (shared < before.length && shared < all.length && before[shared] == all[shared]) shared++;
                    scoredFrom = out.size() + shared;
                    scoredChars = -1;
                }
                out.addElements(out.size(), all);
                stretch.setLength(0);
            }
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
