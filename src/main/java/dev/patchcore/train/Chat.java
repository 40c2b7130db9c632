package dev.patchcore.train;

import dev.patchcore.train.Instructions.Message;

import java.util.List;

/**
 * How conversations become tokens for one tokenizer: one of patchcore's fixed formats ({@link ChatFormat}) or a model's
 * own chat template. {@code generate --chat} prompts with it and stops at its end of turn; {@code finetune --chat}
 * builds its examples with it, scoring each answer and its end of turn.
 */
public interface Chat {
    /** The name {@code --chat} took, recorded in fine-tuned checkpoints. */
    String label();

    /** Whether {@code id} ends an answer: generation stops there (the token is not printed). */
    boolean endsTurn(int id);

    /** The generation prompt after {@code messages}: their turns, then the assistant's header. */
    int[] prompt(List<Message> messages);

    /** The fine-tuning example of a record: its conversation's tokens, each answer and its end of turn scored. */
    Instructions.Example example(Instructions.Item item);

    /**
     * The tokens that take a conversation held as {@code sequence} — the prompts and answers so far, as the model read
     * and sampled them, the last answer ended by its end of turn ({@code ended}) or cut by the token limit — to the
     * generation prompt after {@code conversation}, whose messages from {@code fresh} on are new (the user's next turn);
     * or null where the conversation cannot be continued token for token (then it is read again from
     * {@link #prompt}).
     */
    int[] continuation(int[] sequence, boolean ended, List<Message> conversation, int fresh);
}
