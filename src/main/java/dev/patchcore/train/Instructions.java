package dev.patchcore.train;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Utf8Reader;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Instruction-tuning data (the paper fine-tunes its pretrained models on Alpaca-GPT4, §3.1): records of
 * {@code {"instruction", "input", "output"}} (Stanford Alpaca's layout, a JSON array as {@code alpaca_gpt4_data.json}
 * ships, or one object per line) or {@code {"prompt", "response"}}, posed with Stanford Alpaca's prompt template and
 * tokenized as its training script does: the tokens of prompt + response, then EOS, of which only those after the
 * prompt's own tokens are scored. With a chat format ({@link ChatFormat}) also conversations: {@code {"messages":
 * [{"role", "content"}, ...]}} (the layout of Hugging Face's chat templates and OpenAI's fine-tuning files) or ShareGPT's
 * {@code {"conversations": [{"from", "value"}, ...]}}, of which every assistant turn is scored.
 */
public final class Instructions {
    private Instructions() {}

    /** A record of the data: one prompt and its answer, or a conversation. */
    public sealed interface Item permits Record, Conversation {}

    /** One instruction and its answer, as text. */
    public record Record(String prompt, String response) implements Item {
        /** The record as a conversation: the prompt as the user's turn, the response as the assistant's. */
        public Conversation asConversation() {
            return new Conversation(List.of(new Message(Role.USER, prompt), new Message(Role.ASSISTANT, response)));
        }
    }

    /** Who speaks a message, by the name chat templates write. */
    public enum Role {
        SYSTEM("system"), USER("user"), ASSISTANT("assistant");

        private final String label;

        Role(String label) { this.label = label; }

        /** The name in a {@code "role"} field and in the templates' headers. */
        public String label() { return label; }
    }

    public record Message(Role role, String content) {}

    /**
     * Messages in order: a system message may come first only; the rest are the user's and the assistant's turns, of
     * which the assistant's are scored. Messages after the last assistant turn (which nothing would score) are dropped
     * when read.
     */
    public record Conversation(List<Message> messages) implements Item {
        public Conversation {
            messages = List.copyOf(messages);
        }
    }

    /**
     * Tokens of an example; the tokens at positions {@code [scored[2i], scored[2i+1])} are the scored targets (each
     * predicted from the token before it), the spans in increasing order. A prompt and its answer
     * has one span, from the answer's first token to the end; a conversation one per assistant turn.
     */
    public record Example(int[] ids, int[] scored) {
        public Example {
            if (scored.length % 2 != 0) throw new IllegalArgumentException("scored spans come in pairs: " + scored.length);
            for (int i = 0, last = 0; i < scored.length; i += 2) {
                if (scored[i] < last || scored[i] > scored[i + 1] || scored[i + 1] > ids.length)
                    throw new IllegalArgumentException("scored span [" + scored[i] + ", " + scored[i + 1] + ") out of order or past the "
                            + ids.length + " tokens");
                last = scored[i + 1];
            }
        }

        /** One span: the tokens from {@code promptTokens} on are scored. */
        public Example(int[] ids, int promptTokens) {
            this(ids, new int[] {promptTokens, ids.length});
        }

        /** The first scored token's position (the tokens before it are the first prompt); the length if none is scored. */
        public int promptTokens() {
            return scored.length == 0 ? ids.length : scored[0];
        }

        /** Scored targets when the sequence is cut to a context of {@code contextLength} (+1 for the last target). */
        public int scoredTargets(int contextLength) {
            int n = Math.min(ids.length, contextLength + 1), count = 0;
            for (int i = 0; i < scored.length; i += 2) count += Math.max(0, Math.min(n, scored[i + 1]) - Math.max(1, scored[i]));
            return count;
        }
    }

    static final String PROMPT_INPUT = "Below is an instruction that describes a task, paired with an input that provides further "
            + "context. Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:";
    static final String PROMPT_NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately "
            + "completes the request.\n\n### Instruction:\n%s\n\n### Response:";

    /** Stanford Alpaca's prompt for an instruction and its (possibly empty) input. */
    public static String alpacaPrompt(String instruction, String input) {
        return input == null || input.isEmpty() ? PROMPT_NO_INPUT.formatted(instruction) : PROMPT_INPUT.formatted(instruction, input);
    }

    /** Reads a JSON array or JSONL file of records; a malformed one is an IllegalArgumentException naming it. */
    public static List<Item> read(Path file) throws IOException {
        return read(file, null);
    }

    /**
     * As {@link #read(Path)}; with a chat format ({@code --chat}'s name, else null) {@code {"prompt", "response"}} records (the
     * prompt being the user's turn) and conversations, which need one; an Alpaca record is refused with a chat format,
     * its template being a format of its own.
     */
    public static List<Item> read(Path file, String chat) throws IOException {
        if (!Files.isRegularFile(file))
            throw new IllegalArgumentException(Files.isDirectory(file) ? file + " is a folder (expected a JSON or JSONL file of records)"
                    : file + ": no such file");
        // A compressed file (which prepare would read) is no text: say so, not that its first line is not JSON
        try (java.io.InputStream in = Files.newInputStream(file)) {
            byte[] head = in.readNBytes(4);
            String compressed = head.length >= 2 && (head[0] & 0xFF) == 0x1F && (head[1] & 0xFF) == 0x8B ? "gzip"
                    : head.length == 4 && (head[0] & 0xFF) == 0x28 && (head[1] & 0xFF) == 0xB5 && (head[2] & 0xFF) == 0x2F
                    && (head[3] & 0xFF) == 0xFD ? "zstd" : null;
            if (compressed != null)
                throw new IllegalArgumentException(file + " is " + compressed + "-compressed: finetune reads a JSON or JSONL file as text; decompress it first");
        }
        // Invalid UTF-8 is read as U+FFFD, as prepare and eval read it, and said once.
        Utf8Reader.Text read = Utf8Reader.read(file);
        if (read.replaced() > 0) System.err.println("note: " + Utf8Reader.note(file.toString(), read.replaced()));
        String text = read.text();
        if (text.startsWith("\uFEFF")) text = text.substring(1);  // a byte-order mark
        List<Item> out = new ArrayList<>();
        if (text.stripLeading().startsWith("[")) {
            JsonElement all;
            try {
                all = strictJson(text);
            } catch (IOException | RuntimeException e) {
                // (the exception class Gson names in its message is left out by Main.userMessage, as in every message)
                throw new IllegalArgumentException(file + " is not valid JSON: " + why(e));
            }
            int i = 0;  // records counted from 1, as lines are
            for (JsonElement e : all.getAsJsonArray()) out.add(parse(e, file + " record " + ++i, chat));
        } else {
            String[] lines = text.split("\n", -1);
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].isBlank()) continue;
                JsonElement e;
                try {
                    e = strictJson(lines[i]);
                } catch (IOException | RuntimeException ex) {
                    throw new IllegalArgumentException(file + " line " + (i + 1) + " is not valid JSON (" + why(ex).replaceFirst("at line 1 column ", "at column ") + ")");
                }
                out.add(parse(e, file + " line " + (i + 1), chat));
            }
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + " holds no records");
        return out;
    }

    private static final com.google.gson.TypeAdapter<JsonElement> JSON = new com.google.gson.Gson().getAdapter(JsonElement.class);

    /**
     * One JSON value, read strictly, as Python's json (Stanford Alpaca's jload) and prepare read it: Gson's lenient
     * parser would take single quotes, unquoted words, comments and a trailing comma's null, and train on its guess.
     */
    private static JsonElement strictJson(String text) throws IOException {
        com.google.gson.stream.JsonReader reader = new com.google.gson.stream.JsonReader(new java.io.StringReader(text));
        reader.setStrictness(com.google.gson.Strictness.STRICT);
        JsonElement e = JSON.read(reader);
        if (reader.peek() != com.google.gson.stream.JsonToken.END_DOCUMENT) throw new IOException("unexpected data after the JSON value");
        return e;
    }

    /** A JSON failure's first line, without Gson's advice to its programmer ("Use JsonReader.setStrictness(...) to accept ..."). */
    private static String why(Exception e) {
        return String.valueOf(e.getMessage()).lines().findFirst().orElse("")
                .replaceFirst("^Use JsonReader\\.setStrictness\\(Strictness\\.LENIENT\\) to accept malformed JSON ", "");
    }

    private static Item parse(JsonElement e, String where, String chat) {
        if (!e.isJsonObject()) throw new IllegalArgumentException(where + " is not an object");
        JsonObject o = e.getAsJsonObject();
        if (o.has("instruction") && o.has("output") && chat != null)
            throw new IllegalArgumentException(where + " is an Alpaca record {\"instruction\", \"input\", \"output\"}: --chat "
                    + chat + " takes {\"prompt\", \"response\"} records (the prompt is the user's turn) or conversations");
        if (o.has("instruction") && o.has("output"))
            return new Record(alpacaPrompt(string(o, "instruction", where), optionalString(o, "input", where)),
                    string(o, "output", where));
        if (o.has("prompt") && (o.has("response") || o.has("completion")))
            return new Record(string(o, "prompt", where), string(o, o.has("response") ? "response" : "completion", where));
        if (o.has("messages") || o.has("conversations")) {
            boolean shareGpt = !o.has("messages");
            if (chat == null)
                throw new IllegalArgumentException(where + " is a conversation {\"" + (shareGpt ? "conversations" : "messages")
                        + "\": [...]}: give --chat " + ChatFormat.labels() + "|" + TemplateChat.LABEL + ", the template its turns are written in");
            return conversation(o, shareGpt, where);
        }
        throw new IllegalArgumentException(where + ": expected {\"instruction\", \"input\", \"output\"}, {\"prompt\", \"response\"}, "
                + "{\"messages\": [{\"role\", \"content\"}, ...]} or {\"conversations\": [{\"from\", \"value\"}, ...]}");
    }

    /**
     * {@code {"messages": [{"role", "content"}]}} (roles system, user, assistant) or ShareGPT's {@code {"conversations":
     * [{"from", "value"}]}} (system, human or user, gpt or assistant): a system message first at most, an assistant turn
     * at least; what follows the last assistant turn is dropped.
     */
    private static Conversation conversation(JsonObject o, boolean shareGpt, String where) {
        String field = shareGpt ? "conversations" : "messages", roleField = shareGpt ? "from" : "role", textField = shareGpt ? "value" : "content";
        JsonElement list = o.get(field);
        if (!list.isJsonArray()) throw new IllegalArgumentException(where + ": field " + field + " must be an array, got " + jsonType(list));
        List<Message> messages = new ArrayList<>();
        int lastAnswer = -1;
        for (JsonElement m : list.getAsJsonArray()) {
            String at = where + " " + field + "[" + messages.size() + "]";
            if (!m.isJsonObject()) throw new IllegalArgumentException(at + " is not an object");
            JsonObject mo = m.getAsJsonObject();
            Role role = role(string(mo, roleField, at), shareGpt, at);
            if (role == Role.SYSTEM && !messages.isEmpty())
                throw new IllegalArgumentException(at + ": a system message comes first, before the turns");
            if (role == Role.ASSISTANT) lastAnswer = messages.size();
            messages.add(new Message(role, string(mo, textField, at)));
        }
        if (lastAnswer < 0) throw new IllegalArgumentException(where + ": no assistant turn, so nothing to learn from it");
        return new Conversation(messages.subList(0, lastAnswer + 1));
    }

    private static Role role(String name, boolean shareGpt, String where) {
        String n = name.toLowerCase(java.util.Locale.ROOT);
        switch (n) {
            case "system": return Role.SYSTEM;
            case "user": return Role.USER;
            case "assistant": return Role.ASSISTANT;
            case "human": if (shareGpt) return Role.USER; break;
            case "gpt": if (shareGpt) return Role.ASSISTANT; break;
            default: break;
        }
        throw new IllegalArgumentException(where + ": unknown " + (shareGpt ? "speaker \"from\": \"" : "role \"") + name + "\" (expected "
                + (shareGpt ? "system, human or gpt" : "system, user or assistant") + ")");
    }

    /** A field that must be a JSON string (as prepare requires of "text": a number or null is a mistake in the data). */
    private static String string(JsonObject o, String field, String where) {
        JsonElement v = o.get(field);
        if (v == null || !v.isJsonPrimitive() || !v.getAsJsonPrimitive().isString())
            throw new IllegalArgumentException(where + ": field " + field + " must be a string, got " + jsonType(v));
        return v.getAsString();
    }

    /** Alpaca's "input": absent, null or "" when the instruction has none. */
    private static String optionalString(JsonObject o, String field, String where) {
        JsonElement v = o.get(field);
        return v == null || v.isJsonNull() ? "" : string(o, field, where);
    }

    private static String jsonType(JsonElement v) {
        if (v == null || v.isJsonNull()) return "null";
        if (v.isJsonObject()) return "an object";
        if (v.isJsonArray()) return "an array";
        return v.getAsJsonPrimitive().isNumber() ? "a number" : "a boolean";
    }

    /**
     * The example of a record: the tokens of prompt + response, then EOS. Scoring starts where the prompt's own tokens
     * stop matching the whole text's (Stanford Alpaca's script takes the prompt's token count, which is the same unless
     * the prompt's last token merges into the response's first, as " " + "Paris" → " Paris": then that token is scored).
     */
    public static Example encode(Tokenizer tok, Record r) {
        return encode(tok, r, -1);
    }

    /**
     * {@link #encode(Tokenizer, Record)} with begin-of-text id {@code bos} first where it is not negative (as Stanford
     * Alpaca's script tokenizes for LLaMA, whose tokenizer adds {@code <s>}), unscored.
     */
    public static Example encode(Tokenizer tok, Record r, int bos) {
        int[] prompt = tok.encode(r.prompt()), whole = tok.encode(r.prompt() + r.response());
        int shared = 0;
        while (shared < prompt.length && shared < whole.length && prompt[shared] == whole[shared]) shared++;
        int first = bos >= 0 ? 1 : 0;
        int[] ids = new int[first + whole.length + 1];
        if (bos >= 0) ids[0] = bos;
        System.arraycopy(whole, 0, ids, first, whole.length);
        ids[ids.length - 1] = tok.eosId();
        return new Example(ids, first + shared);
    }

    /**
     * Row {@code row} of a token-level batch of context T from {@code e}: inputs {@code [row·T, row·T + T)}, targets the
     * next tokens, the sequence cut to T + 1 tokens and padded with EOS. Returns the scored target ranges within the row
     * as pairs {@code {from, to, from, to, ...}} (rows {@code row·T + from .. row·T + to − 1}), in order, none empty;
     * everything else is masked.
     */
    static int[] fill(Example e, int row, int contextLength, int eos, int[] inputs, int[] targets) {
        int t = contextLength, n = Math.min(e.ids().length, t + 1), base = row * t;
        for (int p = 0; p < t; p++) {
            inputs[base + p] = p < n ? e.ids()[p] : eos;
            targets[base + p] = p + 1 < n ? e.ids()[p + 1] : eos;
        }
        // Target p predicts ids[p + 1]: scored when p + 1 lies in a span and p + 1 < n.
        int[] s = e.scored(), ranges = new int[s.length];
        int k = 0;
        for (int i = 0; i < s.length; i += 2) {
            int from = Math.max(0, s[i] - 1), to = Math.min(s[i + 1], n) - 1;
            if (from >= to) continue;
            ranges[k++] = from;
            ranges[k++] = to;
        }
        return java.util.Arrays.copyOf(ranges, k);
    }
}
