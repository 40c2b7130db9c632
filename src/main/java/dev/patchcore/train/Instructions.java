package dev.patchcore.train;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
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
 * prompt's own tokens are scored.
 */
public final class Instructions {
    private Instructions() {}

    /** One instruction and its answer, as text. */
    public record Record(String prompt, String response) {}

    /**
     * Tokens of prompt + response + EOS; the targets from position {@code promptTokens} on (the response and EOS) are
     * scored.
     */
    public record Example(int[] ids, int promptTokens) {
        /** Scored targets when the sequence is cut to a context of {@code contextLength} (+1 for the last target). */
        public int scoredTargets(int contextLength) {
            return Math.max(0, Math.min(ids.length, contextLength + 1) - Math.max(1, promptTokens));
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
    public static List<Record> read(Path file) throws IOException {
        return read(file, null);
    }

    /**
     * As {@link #read(Path)}; with a chat format ({@code --chat}, else null) only {@code {"prompt", "response"}} records,
     * the prompt being the user's turn: an Alpaca record is refused, its template being a format of its own.
     */
    public static List<Record> read(Path file, ChatFormat chat) throws IOException {
        if (!Files.isRegularFile(file))
            throw new IllegalArgumentException(Files.isDirectory(file) ? file + " is a folder (expected a JSON or JSONL file of records)"
                    : file + ": no such file");
        // Invalid UTF-8 is read as U+FFFD, as prepare and eval read it, and said once.
        Utf8Reader.Text read = Utf8Reader.read(file);
        if (read.replaced() > 0) System.err.println("note: " + Utf8Reader.note(file.toString(), read.replaced()));
        String text = read.text();
        if (text.startsWith("\uFEFF")) text = text.substring(1);  // a byte-order mark
        List<Record> out = new ArrayList<>();
        if (text.stripLeading().startsWith("[")) {
            JsonElement all;
            try {
                all = JsonParser.parseString(text);
            } catch (RuntimeException e) {
                // (the exception class Gson names in its message is left out by Main.userMessage, as in every message)
                throw new IllegalArgumentException(file + " is not valid JSON: " + e.getMessage().lines().findFirst().orElse(""));
            }
            int i = 0;  // records counted from 1, as lines are
            for (JsonElement e : all.getAsJsonArray()) out.add(parse(e, file + " record " + ++i, chat));
        } else {
            String[] lines = text.split("\n", -1);
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].isBlank()) continue;
                JsonElement e;
                try {
                    e = JsonParser.parseString(lines[i]);
                } catch (RuntimeException ex) {
                    throw new IllegalArgumentException(file + " line " + (i + 1) + " is not valid JSON");
                }
                out.add(parse(e, file + " line " + (i + 1), chat));
            }
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + " holds no records");
        return out;
    }

    private static Record parse(JsonElement e, String where, ChatFormat chat) {
        if (!e.isJsonObject()) throw new IllegalArgumentException(where + " is not an object");
        JsonObject o = e.getAsJsonObject();
        if (o.has("instruction") && o.has("output") && chat != null)
            throw new IllegalArgumentException(where + " is an Alpaca record {\"instruction\", \"input\", \"output\"}: --chat "
                    + chat.label() + " takes {\"prompt\", \"response\"} records (the prompt is the user's turn)");
        if (o.has("instruction") && o.has("output"))
            return new Record(alpacaPrompt(string(o, "instruction", where), optionalString(o, "input", where)),
                    string(o, "output", where));
        if (o.has("prompt") && (o.has("response") || o.has("completion")))
            return new Record(string(o, "prompt", where), string(o, o.has("response") ? "response" : "completion", where));
        throw new IllegalArgumentException(where + ": expected {\"instruction\", \"input\", \"output\"} or {\"prompt\", \"response\"}");
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
        int[] prompt = tok.encode(r.prompt()), whole = tok.encode(r.prompt() + r.response());
        int shared = 0;
        while (shared < prompt.length && shared < whole.length && prompt[shared] == whole[shared]) shared++;
        int[] ids = java.util.Arrays.copyOf(whole, whole.length + 1);
        ids[whole.length] = tok.eosId();
        return new Example(ids, shared);
    }

    /**
     * Row {@code row} of a token-level batch of context T from {@code e}: inputs {@code [row·T, row·T + T)}, targets the
     * next tokens, the sequence cut to T + 1 tokens and padded with EOS. Returns the scored target range within the row,
     * {@code {from, to}} (rows {@code row·T + from .. row·T + to − 1}); everything else is masked.
     */
    static int[] fill(Example e, int row, int contextLength, int eos, int[] inputs, int[] targets) {
        int t = contextLength, n = Math.min(e.ids().length, t + 1), base = row * t;
        for (int p = 0; p < t; p++) {
            inputs[base + p] = p < n ? e.ids()[p] : eos;
            targets[base + p] = p + 1 < n ? e.ids()[p + 1] : eos;
        }
        // Target p predicts ids[p + 1]: scored when p + 1 >= promptTokens and p + 1 < n.
        int from = Math.max(0, e.promptTokens() - 1), to = n - 1;
        return new int[] {Math.min(from, to), to};
    }
}
