package dev.patchcore.eval;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Utf8Reader;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

/**
 * Zero-shot multiple-choice evaluation the way lm-evaluation-harness scores it (the paper's MMLU, HellaSwag, PIQA,
 * WinoGrande, ARC, §3.1): each choice is appended to the question's context, the model's log-likelihood of the
 * choice's tokens given the context is summed, and the question counts as right when the labelled choice has the
 * highest sum ({@code acc}) or the highest sum per character of the choice ({@code acc_norm}).
 *
 * <p>Input: JSONL, one question per line: {@code {"context": "...", "choices": ["...", ...], "label": 0}};
 * {@code query} / {@code gold} are accepted too, and a label may be a numeric string. The Hugging Face records of
 * HellaSwag, PIQA, ARC, MMLU and WinoGrande are read as they are and posed with the harness's prompts
 * ({@link HarnessTasks}).
 *
 * <p>Context and choice are joined by one space (the harness's target delimiter) unless the context is empty or ends
 * in whitespace or the choice starts with whitespace (here the delimiter is not doubled, where the harness would).
 * As the harness does, whitespace at the end of the context moves to the front of the continuation, so a BPE
 * tokenizer sees " blue", not " " then "blue"; the choice's tokens are those of the whole text (context +
 * continuation) after as many tokens as the context alone encodes to. An empty context is replaced by the
 * end-of-text token. A sequence longer than the model's context keeps its last T + 1 tokens. The choices of one
 * question go through the model as one batch, padded at the end (causal attention: padding cannot change an earlier
 * position).
 */
public final class MultipleChoice {

    /**
     * One question: for each choice the context it follows (the same for all but WinoGrande's, whose choices are
     * different contexts before one shared continuation), the choices, and the index of the right one.
     */
    public record Question(List<String> contexts, List<String> choices, int label) {
        public Question {
            if (choices.size() < 2) throw new IllegalArgumentException("a question needs at least 2 choices");
            if (contexts.size() != choices.size())
                throw new IllegalArgumentException(contexts.size() + " contexts for " + choices.size() + " choices");
            if (label < 0 || label >= choices.size())
                throw new IllegalArgumentException("label " + label + " is not one of the " + choices.size() + " choices");
            contexts = List.copyOf(contexts);
            choices = List.copyOf(choices);
        }

        /** The usual question: one context, several continuations. */
        public Question(String context, List<String> choices, int label) {
            this(java.util.Collections.nCopies(choices.size(), context), choices, label);
        }

        /** The context choice {@code i} follows. */
        public String context(int i) { return contexts.get(i); }
    }

    /**
     * Accuracy by summed log-likelihood and by log-likelihood per character, over {@code questions}; {@code truncated}
     * of them had a choice's context + continuation longer than the model reads, cut to its last T + 1 tokens, and
     * {@code answersCut} of those a choice longer than T tokens itself, whose first tokens then go unscored.
     */
    public record Result(int questions, int correct, int correctNorm, int truncated, int answersCut) {
        public double acc() { return (double) correct / questions; }

        public double accNorm() { return (double) correctNorm / questions; }

        /** Standard error of an accuracy over this many questions (binomial). */
        public double stderr(double p) { return Math.sqrt(p * (1 - p) / Math.max(1, questions - 1)); }
    }

    private final Backend be;
    private final LlamaModel model;
    private final Tokenizer tokenizer;
    private final Tape tape;
    private final int prefix;

    public MultipleChoice(Backend be, LlamaModel model, Tokenizer tokenizer) {
        this(be, model, tokenizer, -1);
    }

    /**
     * With {@code prefix} ≥ 0, every context starts with that token (a begin-of-text token, as lm-evaluation-harness
     * encodes when it adds the tokenizer's BOS: its {@code add_bos_token}), an empty context being that token alone.
     */
    public MultipleChoice(Backend be, LlamaModel model, Tokenizer tokenizer, int prefix) {
        this.be = be;
        this.model = model;
        this.tokenizer = tokenizer;
        this.tape = new Tape(be);
        this.prefix = prefix;
    }

    /** Reads a JSONL file of questions; a malformed line is an IllegalArgumentException naming file and line. */
    private static final String EXPECTED = " (expected {\"context\": \"...\", \"choices\": [\"...\", ...], \"label\": N}, or a"
            + " record of HellaSwag, PIQA, ARC, MMLU or WinoGrande as their Hugging Face datasets hold them)";

    public static List<Question> read(Path file, long max) throws IOException {
        return read(file, max, note -> { });
    }

    /** As above; {@code note} hears of invalid UTF-8, which is read as U+FFFD (as {@code prepare} and {@code eval --text} do). */
    public static List<Question> read(Path file, long max, Consumer<String> note) throws IOException {
        if (Files.isDirectory(file)) throw new IllegalArgumentException(file + " is a folder, not a JSONL file");
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException(file + ": no such file");
        List<Question> out = new ArrayList<>();
        try (Utf8Reader utf8 = new Utf8Reader(Files.newInputStream(file)); BufferedReader r = new BufferedReader(utf8)) {
            String line;
            int n = 0;
            while ((line = r.readLine()) != null && (max <= 0 || out.size() < max)) {
                n++;
                if (n == 1 && line.startsWith("\uFEFF")) line = line.substring(1);  // a byte-order mark
                if (line.isBlank()) continue;
                Question q;
                JsonElement record;
                try {
                    record = JsonParser.parseString(line);
                } catch (com.google.gson.JsonParseException e) {
                    throw new IllegalArgumentException(file + " line " + n + " is not valid JSON" + EXPECTED);
                }
                if (!record.isJsonObject())
                    throw new IllegalArgumentException(file + " line " + n + " is a JSON " + kind(record) + ", not an object" + EXPECTED);
                try {
                    q = parse(record.getAsJsonObject());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(file + " line " + n + ": " + e.getMessage() + EXPECTED);
                } catch (RuntimeException e) {  // Gson's own, for a field of another type than the record's format has
                    // (a field that is missing altogether fails as a NullPointerException, whose message is Java's)
                    throw new IllegalArgumentException(file + " line " + n + ": a field is missing, null or of the wrong type"
                            + (e instanceof NullPointerException ? "" : " (" + e.getClass().getSimpleName() + ": " + e.getMessage() + ")")
                            + EXPECTED);
                }
                // Checked here, where the line is known, not when scoring reaches it.
                int empty = q.choices().indexOf("");
                if (empty >= 0) throw new IllegalArgumentException(file + " line " + n + ": choice " + empty + " is empty");
                out.add(q);
            }
            if (utf8.replaced() > 0) note.accept(Utf8Reader.note(file.toString(), utf8.replaced()));
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + " holds no questions");
        return out;
    }

    /**
     * A question from one JSONL record: the Hugging Face records of the paper's benchmarks get lm-evaluation-harness's
     * zero-shot prompts ({@link HarnessTasks}); anything else is read as {@code {"context", "choices", "label"}}.
     */
    static Question parse(JsonObject o) {
        Question task = HarnessTasks.parse(o);
        if (task != null) return task;
        JsonElement ctx = first(o, "context", "ctx", "query");
        JsonElement choices = first(o, "choices", "endings");
        JsonElement label = first(o, "label", "gold");
        if (ctx == null || choices == null || label == null) throw new IllegalArgumentException("missing context, choices or label");
        if (!ctx.isJsonPrimitive() || !ctx.getAsJsonPrimitive().isString())
            throw new IllegalArgumentException("context is a JSON " + kind(ctx) + ", not a string");
        return new Question(ctx.getAsString(), strings(choices, "choices"), index(label, "label"));
    }

    /** A JSON list of strings. */
    static List<String> strings(JsonElement list, String what) {
        if (list == null || !list.isJsonArray()) throw new IllegalArgumentException(what + " is not a list");
        List<String> out = new ArrayList<>();
        for (JsonElement c : list.getAsJsonArray()) {
            if (!c.isJsonPrimitive() || !c.getAsJsonPrimitive().isString())
                throw new IllegalArgumentException(what + " item " + out.size() + " is a JSON " + kind(c) + ", not a string");
            out.add(c.getAsString());
        }
        return out;
    }

    /** A choice index given as a number or a numeric string. */
    static int index(JsonElement label, String what) {
        if (label == null || label.isJsonNull()) throw new IllegalArgumentException(what + " is missing");
        if (!label.isJsonPrimitive()) throw new IllegalArgumentException(what + " is a JSON " + kind(label) + ", not a choice index");
        if (label.getAsString().isBlank())
            throw new IllegalArgumentException(what + " is empty: a record of a test split, which has no answers? (score the "
                    + "validation split)");
        int index;
        try {
            index = Integer.parseInt(label.getAsString().strip());
        } catch (NumberFormatException | UnsupportedOperationException | IllegalStateException e) {
            throw new IllegalArgumentException(what + " " + label + " is not a choice index");  // as JSON: "x" or 1.5
        }
        if (index == -1)  // PIQA's and others' test splits mark the unknown answer so
            throw new IllegalArgumentException(what + " is -1: a record of a test split, which has no answers? (score the "
                    + "validation split)");
        return index;
    }

    /** "null", "number", "string", "array" or "object", for messages. */
    static String kind(JsonElement e) {
        if (e.isJsonNull()) return "null";
        if (e.isJsonArray()) return "array";
        if (e.isJsonObject()) return "object";
        return e.getAsJsonPrimitive().isString() ? "string" : e.getAsJsonPrimitive().isNumber() ? "number" : "boolean";
    }

    static JsonElement first(JsonObject o, String... names) {
        for (String n : names) if (o.has(n) && !o.get(n).isJsonNull()) return o.get(n);
        return null;
    }

    /**
     * The text scored for this choice: the context's trailing whitespace (moved here, as the harness's
     * {@code _encode_pair} does), then one space unless that whitespace, an empty context or the choice already
     * separates them, then the choice. The context is read without its trailing whitespace.
     */
    static String continuation(String context, String choice) {
        String core = context.stripTrailing(), trailing = context.substring(core.length());
        boolean join = !core.isEmpty() && trailing.isEmpty() && !choice.isEmpty() && !Character.isWhitespace(choice.charAt(0));
        return trailing + (join ? " " : "") + choice;
    }

    /** Scores every question and counts the right answers. */
    public Result evaluate(List<Question> questions) {
        int correct = 0, correctNorm = 0, truncated = 0, answersCut = 0, context = model.config().contextLength();
        for (int k = 0; k < questions.size(); k++) {
            Question q = questions.get(k);
            double[] ll;
            try {
                Encoded[] e = encodeAll(q);
                // Counted so the command can say so: the cut is silent in the scores.
                if (Arrays.stream(e).anyMatch(x -> x.tokens().length > context + 1)) truncated++;
                if (Arrays.stream(e).anyMatch(x -> x.scored() > context)) answersCut++;
                ll = logLikelihoods(e);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("question " + (k + 1) + ": " + e.getMessage(), e);
            }
            int[] pick = picks(ll, q.choices());
            if (pick[0] == q.label()) correct++;
            if (pick[1] == q.label()) correctNorm++;
        }
        return new Result(questions.size(), correct, correctNorm, truncated, answersCut);
    }

    /** A choice's length as the harness's Python {@code len} counts it: in code points (an emoji is one). */
    private static int characters(String s) { return s.codePointCount(0, s.length()); }

    /** The choice with the highest log-likelihood and the one with the highest per character (first on ties). */
    static int[] picks(double[] ll, List<String> choices) {
        int best = 0, bestNorm = 0;
        for (int i = 1; i < ll.length; i++) {
            if (ll[i] > ll[best]) best = i;
            if (ll[i] / Math.max(1, characters(choices.get(i))) > ll[bestNorm] / Math.max(1, characters(choices.get(bestNorm)))) bestNorm = i;
        }
        return new int[] {best, bestNorm};
    }

    /** The tokens of context and choice, the last {@code scored} of them the choice's. */
    record Encoded(int[] tokens, int scored) {}

    /**
     * Context and choice {@code i} as the harness's {@code _encode_pair} tokenizes them for a decoder model: the
     * context alone, then the tokens of context + continuation past the context's token count, so a tokenizer that
     * prefixes a space to a text (SentencePiece) or merges across the boundary sees the one text the model would
     * read. An empty context becomes the end-of-text token; with a prefix token, the context starts with it instead (an
     * empty one is the prefix alone).
     */
    Encoded encode(Question q, int i) {
        String core = q.context(i).stripTrailing();  // its trailing whitespace goes to the continuation
        String continuation = continuation(q.context(i), q.choices().get(i));
        int[] ctx = tokenizer.encode(core), cont;
        if (ctx.length == 0) {
            ctx = new int[] {prefix >= 0 ? prefix : tokenizer.eosId()};
            cont = tokenizer.encode(continuation);
        } else {
            int[] whole = tokenizer.encode(core + continuation);
            cont = Arrays.copyOfRange(whole, Math.min(ctx.length, whole.length), whole.length);
            if (prefix >= 0) ctx = concat(new int[] {prefix}, ctx);
        }
        if (cont.length == 0) throw new IllegalArgumentException("choice " + i + " adds no tokens to its context");
        return new Encoded(concat(ctx, cont), cont.length);
    }

    /** Σ log p(choice tokens | context) for each choice of {@code q}, in nats. */
    public double[] logLikelihoods(Question q) {
        return logLikelihoods(encodeAll(q));
    }

    private Encoded[] encodeAll(Question q) {
        Encoded[] e = new Encoded[q.choices().size()];
        for (int i = 0; i < e.length; i++) e[i] = encode(q, i);
        return e;
    }

    private double[] logLikelihoods(Encoded[] e) {
        int[][] seqs = new int[e.length][];
        int[] scored = new int[e.length];
        for (int i = 0; i < e.length; i++) {
            seqs[i] = e[i].tokens();
            scored[i] = e[i].scored();
        }
        return logLikelihoods(seqs, scored);
    }

    /**
     * For each sequence, Σ log p(token | the tokens before it) over its last {@code scored[i]} tokens, reading at most
     * the model's context T (a longer sequence keeps its last T + 1 tokens; at most T tokens are scored).
     */
    double[] logLikelihoods(int[][] seqs, int[] scored) {
        int context = model.config().contextLength(), n = seqs.length, t = 0;
        int[][] windows = new int[n][];
        for (int i = 0; i < n; i++) {
            int[] s = seqs[i];
            windows[i] = s.length > context + 1 ? Arrays.copyOfRange(s, s.length - context - 1, s.length) : s;
            t = Math.max(t, windows[i].length - 1);
        }
        int pad = tokenizer.eosId();
        int[] in = new int[n * t], tg = new int[n * t];
        Arrays.fill(in, pad);
        Arrays.fill(tg, pad);
        for (int i = 0; i < n; i++) {
            int len = windows[i].length - 1;
            System.arraycopy(windows[i], 0, in, i * t, len);
            System.arraycopy(windows[i], 1, tg, i * t, len);
        }
        Tensor tokens = be.scratch(DType.I32, n, t), targets = be.scratch(DType.I32, n * t, 1);
        be.uploadInts(tokens, in);
        be.uploadInts(targets, tg);
        Var logits = model.forward(tape, tokens, n, 1);
        float[] nll = be.download(tape.crossEntropyK(logits, targets, model.config().vocabSize(), 0f));
        tape.clear();
        be.releaseScratch();
        double[] ll = new double[n];
        for (int i = 0; i < n; i++) {
            int len = windows[i].length - 1, k = Math.min(scored[i], len);
            for (int j = len - k; j < len; j++) ll[i] -= nll[i * t + j];
        }
        return ll;
    }

    private static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
