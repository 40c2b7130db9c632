package dev.patchcore.data;

import java.io.IOException;
import java.nio.file.Path;

/**
 * An opened dataset directory: the summary plus both shards, memory-mapped and checked
 * against each other and against the summary. Close it to unmap.
 */
public final class PreparedDataset implements AutoCloseable {

    private final Path dir;
    private final DatasetInfo info;
    private final TokenShard train;
    private final TokenShard val;

    private PreparedDataset(Path dir, DatasetInfo info, TokenShard train, TokenShard val) {
        this.dir = dir;
        this.info = info;
        this.train = train;
        this.val = val;
    }

    /** @throws IllegalArgumentException if the directory does not hold a complete, consistent dataset */
    public static PreparedDataset open(Path dir) throws IOException {
        DatasetInfo info = DatasetInfo.read(dir);
        TokenShard train = TokenShard.open(dir.resolve(DatasetPreparer.TRAIN_FILE));
        try {
            TokenShard val = TokenShard.open(dir.resolve(DatasetPreparer.VAL_FILE));
            try {
                check(dir, info, train.header(), info.trainTokens(), info.trainDocuments(), DatasetPreparer.TRAIN_FILE);
                check(dir, info, val.header(), info.valTokens(), info.valDocuments(), DatasetPreparer.VAL_FILE);
                return new PreparedDataset(dir, info, train, val);
            } catch (RuntimeException e) {
                val.close();
                throw e;
            }
        } catch (IOException | RuntimeException e) {
            train.close();
            throw e;
        }
    }

    /** True when {@link #open} would succeed; never throws for a bad dataset. */
    public static boolean isValid(Path dir) {
        try {
            open(dir).close();
            return true;
        } catch (IOException | IllegalArgumentException e) {
            return false;
        }
    }

    private static void check(Path dir, DatasetInfo info, ShardHeader h, long tokens, long documents, String file) {
        if (!h.tokenizerName().equals(info.tokenizer()) || h.vocabSize() != info.vocabSize() || h.eosId() != info.eosId()
                || h.tokenCount() != tokens || h.documentCount() != documents) {
            throw new IllegalArgumentException(dir.resolve(file) + " does not match " + DatasetInfo.FILE_NAME
                    + " (was the directory written by two runs?); re-run 'prepare'");
        }
    }

    public Path dir() { return dir; }

    public DatasetInfo info() { return info; }

    public TokenShard train() { return train; }

    public TokenShard val() { return val; }

    /** The tokenizer the shards were written with (a SentencePiece model from this folder's copy). */
    public Tokenizer tokenizer() {
        return Tokenizers.recorded(info.tokenizer(), dir);
    }

    @Override
    public void close() {
        try {
            train.close();
        } finally {
            val.close();
        }
    }
}
