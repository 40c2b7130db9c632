package dev.patchcore.data;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Streams tokens into a shard file. Memory use is one fixed buffer, whatever the corpus size:
 * the header is written as a placeholder first and rewritten with the final counts by
 * {@link #close()}. A file whose writer was not closed keeps a zero token count in its
 * header, so once any tokens have reached the disk it fails the reader's size check: a
 * crash mid-write does not leave a plausible-looking shard.
 */
public final class ShardWriter implements AutoCloseable {

    private static final int BUFFER_BYTES = 1 << 20;

    private final Path path;
    private final Tokenizer tokenizer;
    private final int tokenBytes;
    private final FileChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    private long tokenCount;
    private long documentCount;
    private boolean closed;

    /** Creates (or truncates) {@code path}. */
    public ShardWriter(Path path, Tokenizer tokenizer) throws IOException {
        this.path = path;
        this.tokenizer = tokenizer;
        this.tokenBytes = ShardHeader.tokenBytesFor(tokenizer.vocabSize());
        this.channel = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING);
        try {
            writeFully(ShardHeader.forTokenizer(tokenizer, 0, 0).encode(), 0);
            channel.position(ShardHeader.SIZE);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    /** Appends one document's tokens followed by the EOS separator. */
    public void writeDocument(int[] tokens) throws IOException {
        write(tokens, 0, tokens.length);
        put(tokenizer.eosId());
        documentCount++;
    }

    /** Appends raw tokens (no separator). Each must lie in {@code [0, vocabSize)}. */
    public void write(int[] tokens, int offset, int length) throws IOException {
        int vocab = tokenizer.vocabSize();
        for (int i = offset; i < offset + length; i++) {
            int t = tokens[i];
            if (t < 0 || t >= vocab) {
                throw new IllegalArgumentException("token id " + t + " is outside the vocabulary [0, " + vocab + ") of " + path);
            }
            put(t);
        }
    }

    private void put(int token) throws IOException {
        if (buffer.remaining() < tokenBytes) flush();
        if (tokenBytes == 2) buffer.putShort((short) token);
        else buffer.putInt(token);
        tokenCount++;
    }

    private void flush() throws IOException {
        buffer.flip();
        while (buffer.hasRemaining()) channel.write(buffer);
        buffer.clear();
    }

    private void writeFully(ByteBuffer b, long position) throws IOException {
        while (b.hasRemaining()) position += channel.write(b, position);
    }

    public long tokenCount() { return tokenCount; }

    public long documentCount() { return documentCount; }

    /** Flushes, writes the final header and syncs the file to disk. */
    @Override
    public void close() throws IOException {
        if (closed) return;
        closed = true;
        try (channel) {
            flush();
            writeFully(ShardHeader.forTokenizer(tokenizer, tokenCount, documentCount).encode(), 0);
            channel.force(true);
        }
    }
}
