package dev.patchcore.cli;

import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.data.Plural;
import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;
import dev.patchcore.eval.Generator;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.train.Chat;
import dev.patchcore.train.ChatFormat;
import dev.patchcore.train.Checkpoints;
import dev.patchcore.train.HuggingFaceModel;
import dev.patchcore.train.Instructions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Sample text from a checkpoint, token by token (temperature, top-k, top-p; temperature 0 = greedy).")
public final class GenerateCommand implements Callable<Integer> {
    @Mixin CheckpointArg checkpoint;
    @Option(names = "--prompt", description = "text to continue (default: \"The\"); with --interactive, the first user turn") String prompt;
    @Option(names = "--tokens", defaultValue = "200", description = "tokens to generate (default: ${DEFAULT-VALUE})") int tokens;
    @Option(names = "--temperature", defaultValue = "0.8",
            description = "softmax temperature; 0 = greedy, always the most likely token (default: ${DEFAULT-VALUE})") float temperature;
    @Option(names = "--top-k", defaultValue = "40", description = "sample among the k most likely tokens, 0 = all (default: ${DEFAULT-VALUE})") int topK;
    @Option(names = "--top-p", defaultValue = "1", description = "then sample among the most likely tokens whose probabilities "
            + "add up to p (nucleus sampling), 1 = all (default: ${DEFAULT-VALUE})") float topP;
    @Option(names = "--seed", defaultValue = "1", description = "sampling seed (default: ${DEFAULT-VALUE})") long seed;
    @Option(names = "--alpaca", description = "pose the prompt as an instruction in Stanford Alpaca's template (for a model "
            + "fine-tuned with `finetune` on Alpaca data) and print only the response") boolean alpaca;
    @Option(names = "--input", description = "with --alpaca: the record's input, the context the instruction refers to (Alpaca's "
            + "template with an input section)") String input;
    @Option(names = "--chat", paramLabel = "FORMAT", description = "pose the prompt as one user turn in an instruct model's chat "
            + "template, llama3 or chatml (special tokens put in by their ids in the tokenizer, which must have them) or template "
            + "(the model folder's own Jinja chat_template, as transformers renders it), print only the answer and stop at the "
            + "end-of-turn token") String chat;
    @Option(names = "--interactive", description = "with --chat: a conversation on the terminal, each line of standard input a "
            + "user turn (after --prompt's, if given), each answer printed and kept in the conversation the next turn reads; ends "
            + "at the end of input") boolean interactive;
    @Option(names = "--system", paramLabel = "TEXT", description = "with --chat: a system message before the user's turn (the "
            + "instructions or persona an instruct model is given)") String system;
    @Mixin BackendOptions backendOptions;

    /**
     * The note for a prompt longer than the model's context, or null: the model reads only the last T tokens (the
     * Generator's window), which for a templated prompt ({@code --alpaca}: "Alpaca prompt", {@code --chat}: "chat prompt";
     * null: a plain one) may leave out the instruction itself. {@code downloaded}: the checkpoint is a Hugging Face
     * folder, for which training with a longer context is no advice (the note leaves it out); {@code contextGiven}: the
     * window is the one --context set, and a longer one is the advice. {@code dropped}: the tokens before the window
     * ({@link Generator.Session#windowStart}: a first prompt's beyond the last T; a conversation whose window outgrows T
     * keeps its last ⌈T/2⌉ tokens).
     */
    static String truncationNote(int promptTokens, int dropped, int context, String template, boolean downloaded, boolean contextGiven) {
        if (dropped <= 0) return null;
        String advice = contextGiven ? "; a longer --context reads more of it"
                : downloaded ? "" : "; a model trained with a longer --context reads it all";
        return "note: the " + (template != null ? template : "prompt") + " is " + promptTokens + " tokens, longer than "
                + (contextGiven ? "the --context of " : "the model's context of ") + context + ": its first "
                + Plural.of(dropped, "token") + (dropped == 1 ? " is" : " are") + " dropped"
                + (template != null ? ", and with them perhaps the instruction" : "") + advice;
    }

    /**
     * The speed line on stderr: the tokens printed (and the token that stopped them, {@code stop}: "the end of text",
     * "the end of turn", or null), the time to the first sampled token (reading the prompt) and the rate of those after
     * it (one position's forward per token with a KV cache).
     */
    public static String speed(long sampled, String stop, int promptTokens, long firstNanos, long restNanos) {
        String tokens = Plural.of(sampled - (stop != null ? 1 : 0), "token") + (stop != null ? " and " + stop : "");
        String line = String.format(Locale.ROOT, "generate: %s in %.2f s; the first after %.2f s (reading %s)",
                tokens, (firstNanos + restNanos) / 1e9, firstNanos / 1e9, Plural.of(promptTokens, "prompt token"));
        return sampled > 1 && restNanos > 0
                ? line + String.format(Locale.ROOT, ", then %.1f tokens/s", (sampled - 1) / (restNanos / 1e9)) : line;
    }

    /**
     * The note for a checkpoint fine-tuned in chat format {@code tuned} ({@code finetune --chat}; null: none recorded)
     * when generate poses the prompt otherwise ({@code given}: its --chat, null without), or null.
     */
    static String chatNote(String tuned, String given, boolean alpaca) {
        if (tuned == null || tuned.equals(given)) return null;
        return "note: this checkpoint was fine-tuned with --chat " + tuned + (given != null ? ", not " + given : "")
                + "; give --chat " + tuned + " to pose the prompt as its user turn" + (given == null && !alpaca ? " (without it the prompt is plain text to continue)" : "");
    }

    /** The messages of a chat prompt: the system message if given, then the prompt as the user's turn. */
    static List<Instructions.Message> chatTurns(String system, String prompt) {
        Instructions.Message user = new Instructions.Message(Instructions.Role.USER, prompt);
        return system == null ? List.of(user) : List.of(new Instructions.Message(Instructions.Role.SYSTEM, system), user);
    }

    @Override public Integer call() throws java.io.IOException {
        // Every option and the prompt are checked before the backend opens (its line on stderr would come first).
        if (tokens < 1) throw new IllegalArgumentException("--tokens must be at least 1");
        if (!(temperature >= 0 && temperature < Float.POSITIVE_INFINITY))
            throw new IllegalArgumentException("--temperature must be a finite number, 0 or more (0 = greedy), got " + temperature);
        if (topK < 0) throw new IllegalArgumentException("--top-k must not be negative (0 = the whole vocabulary)");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("--top-p must lie in (0, 1] (1 = the whole vocabulary), got " + topP);
        Path ckpt = checkpoint.resolve();
        ModelConfig cfg = checkpoint.modelConfig(ckpt);
        Checkpoints.Meta meta = Checkpoints.readMeta(ckpt);
        Tokenizer tok = Tokenizers.recorded(meta.tokenizer(), ckpt);
        if (input != null && !alpaca) throw new IllegalArgumentException("--input is the Alpaca record's input: give it with --alpaca");
        if (alpaca && chat != null) throw new IllegalArgumentException("--alpaca and --chat are two prompt formats: give one of them");
        if (system != null && chat == null) throw new IllegalArgumentException("--system is a chat template's system message: give it with --chat");
        if (interactive && chat == null) throw new IllegalArgumentException("--interactive is a conversation in a chat template: give it with --chat");
        if (!interactive && prompt == null) prompt = "The";
        Chat template = chat == null ? null : ChatFormat.open(chat, tok, ckpt);
        String tuned = chatNote(meta.chat(), template == null ? null : template.label(), alpaca);
        if (interactive) return converse(ckpt, cfg, tok, template, tuned);
        int[] promptIds = template != null ? template.prompt(chatTurns(system, prompt))
                : tok.encode(alpaca ? Instructions.alpacaPrompt(prompt, input) : prompt);
        // A Hugging Face model was pretrained with its tokenizer's begin-of-text token first (LLaMA's <s>): put it there,
        // unless a chat template, which writes its own, made the prompt.
        int bos = template != null ? -1 : HuggingFaceModel.bosToPrepend(ckpt, meta, cfg.vocabSize());
        if (promptIds.length == 0 && bos < 0) throw new IllegalArgumentException("the prompt is empty (give --prompt some text)");
        if (bos >= 0) {
            int[] withBos = new int[promptIds.length + 1];
            withBos[0] = bos;
            System.arraycopy(promptIds, 0, withBos, 1, promptIds.length);
            promptIds = withBos;
        }
        Generator.requireRoom(promptIds.length, tokens);
        if (tuned != null) System.err.println(tuned);
        try (Backend be = backendOptions.open(System.err)) {  // stdout is the generated text alone
            LlamaModel model = LlamaModel.forInference(be, cfg);
            Checkpoints.loadWeights(ckpt, model, be);
            boolean answerOnly = alpaca || template != null;
            // The text appears as it is sampled: the prompt (without --alpaca or --chat), then each token's text.
            if (!answerOnly) System.out.print(prompt);
            try (Generator.Session session = new Generator(be, model).session()) {
                sample(session, ckpt, cfg, tok, template, promptIds, alpaca ? "Alpaca prompt" : template != null ? "chat prompt" : null,
                        answerOnly, seed);
            }
        }
        return 0;
    }

    /**
     * Appends {@code promptIds} to the session's sequence, samples and prints an answer (after the truncation note if
     * the window drops some of the sequence), then the speed line on stderr; returns the sampled tokens, the last one
     * the token that stopped them if one did. The end of text (EOS) stops the generation, and with a chat template the
     * end of turn; neither is printed.
     */
    private int[] sample(Generator.Session session, Path ckpt, ModelConfig cfg, Tokenizer tok, Chat template, int[] promptIds,
                         String templateName, boolean answerOnly, long seed) {
        int[] before = session.sequence(), context = java.util.Arrays.copyOf(before, before.length + promptIds.length);
        System.arraycopy(promptIds, 0, context, before.length, promptIds.length);
        String note = truncationNote(context.length, session.windowStart(promptIds.length), cfg.contextLength(), templateName,
                HuggingFaceModel.is(ckpt), checkpoint.context != null);
        if (note != null) System.err.println(note);
        TextStream stream = new TextStream(tok, context, answerOnly, System.out);
        long start = System.nanoTime();
        long[] first = {0}, count = {0};
        String[] stop = {null};
        int[] sampled = session.generate(promptIds, tokens, temperature, topK, topP, id -> id == tok.eosId() || template != null && template.endsTurn(id), seed, id -> {
            if (count[0]++ == 0) first[0] = System.nanoTime();
            if (template != null && template.endsTurn(id)) stop[0] = "the end of turn";
            else if (id == tok.eosId()) stop[0] = "the end of text";
            else stream.accept(id);
        });
        stream.finish();
        System.err.println(speed(count[0], stop[0], Math.min(promptIds.length, cfg.contextLength()), first[0] - start,
                System.nanoTime() - first[0]));
        return sampled;
    }

    /**
     * --interactive: each line of standard input (after --prompt, if given) is a user turn. The conversation is kept as
     * the tokens the model read and wrote (its answers as sampled, not re-encoded from their text), so a KV cache keeps
     * it between turns and each turn reads only its new tokens: the user's turn between the last answer's end of turn
     * and the next assistant header ({@link ChatFormat.Template#continuation}). A "> " on stderr asks for the next line
     * on a terminal; blank lines are skipped; the end of input ends the conversation.
     */
    private int converse(Path ckpt, ModelConfig cfg, Tokenizer tok, Chat template, String tuned) throws java.io.IOException {
        Generator.requireRoom(1, tokens);
        if (tuned != null) System.err.println(tuned);
        List<Instructions.Message> conversation = new java.util.ArrayList<>();
        if (system != null) conversation.add(new Instructions.Message(Instructions.Role.SYSTEM, system));
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
        boolean asking = System.console() != null, ended = true, readAgain = false;
        try (Backend be = backendOptions.open(System.err)) {
            LlamaModel model = LlamaModel.forInference(be, cfg);
            Checkpoints.loadWeights(ckpt, model, be);
            Generator generator = new Generator(be, model);
            Generator.Session session = null;
            try {
                String line = prompt;
                for (int n = 0; ; n++) {
                    while (line == null || line.isBlank()) {
                        if (asking) {
                            System.err.print("> ");
                            System.err.flush();
                        }
                        line = in.readLine();
                        if (line == null) return 0;
                    }
                    int fresh = conversation.size();
                    conversation.add(new Instructions.Message(Instructions.Role.USER, line));
                    int[] more = session == null || readAgain ? null : template.continuation(session.sequence(), ended, conversation, fresh);
                    if (more == null) {  // the first turn, a template that cannot continue token for token, or after an EOS: read it all
                        if (session != null) session.close();
                        session = generator.session();
                        more = template.prompt(conversation);
                    }
                    int[] answer = sample(session, ckpt, cfg, tok, template, more, "conversation", true, seed + n);
                    ended = answer.length > 0 && template.endsTurn(answer[answer.length - 1]);
                    boolean stopped = ended || answer.length > 0 && answer[answer.length - 1] == tok.eosId();
                    readAgain = stopped && !ended;  // an EOS that is not the end of turn is no token the conversation holds
                    // The answer as text (a template renders it again); the token that stopped it is the template's to write
                    conversation.add(new Instructions.Message(Instructions.Role.ASSISTANT,
                            tok.decode(java.util.Arrays.copyOf(answer, answer.length - (stopped ? 1 : 0)))));
                    line = null;
                }
            } finally {
                if (session != null) session.close();
            }
        }
    }
}
