package dev.patchcore.data;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Objects;

/**
 * A memory-mapped token shard. Mapping goes through {@link MemorySegment}, so shards
 * larger than 2 GB work; the mapping lives in a shared arena, so any thread may read and
 * {@link #close()} unmaps it (reading after close throws {@link IllegalStateException}).
 */
public final class TokenShard implements TokenSequence, AutoCloseable {

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final ShardHeader header;
    private final Arena arena;
    private final MemorySegment tokens;

    private TokenShard(Path path, ShardHeader header, Arena arena, MemorySegment tokens) {
        this.path = path;
        this.header = header;
        this.arena = arena;
        this.tokens = tokens;
    }

    /**
     * Maps a shard and validates its header.
     *
     * @throws IllegalArgumentException for a missing file or a bad magic, version, header or size
     */
    public static TokenShard open(Path path) throws IOException {
        try (FileChannel channel = openChannel(path)) {
            ShardHeader header = readHeader(channel, path);
            Arena arena = Arena.ofShared();
            try {
                MemorySegment body = header.tokenCount() == 0
                        ? MemorySegment.NULL
                        : channel.map(FileChannel.MapMode.READ_ONLY, ShardHeader.SIZE, header.fileSize() - ShardHeader.SIZE, arena);
                return new TokenShard(path, header, arena, body);
            } catch (IOException | RuntimeException e) {
                arena.close();
                throw e;
            }
        }
    }

    /** Reads and validates only the header, without mapping the tokens. */
    public static ShardHeader readHeader(Path path) throws IOException {
        try (FileChannel channel = openChannel(path)) {
            return readHeader(channel, path);
        }
    }

    private static FileChannel openChannel(Path path) throws IOException {
        if (!Files.isRegularFile(path)) throw new IllegalArgumentException("token shard not found: " + path);
        try {
            return FileChannel.open(path, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("token shard not found: " + path, e);
        }
    }

    private static ShardHeader readHeader(FileChannel channel, Path path) throws IOException {
        long size = channel.size();
        ByteBuffer raw = ByteBuffer.allocate(ShardHeader.SIZE);
        while (raw.hasRemaining() && channel.read(raw, raw.position()) > 0) {
            // keep reading: a channel may return the header in pieces
        }
        return ShardHeader.decode(raw.flip(), path.toString(), size);
    }

    public Path path() { return path; }

    public ShardHeader header() { return header; }

    @Override public long length() { return header.tokenCount(); }

    /** Token {@code i} (unsigned). */
    public int token(long i) {
        Objects.checkIndex(i, header.tokenCount());
        return header.tokenBytes() == 2
                ? Short.toUnsignedInt(tokens.getAtIndex(U16, i))
                : tokens.getAtIndex(U32, i);
    }

    /**
     * {@inheritDoc} Every id is checked against the shard's vocabulary as it is read (one comparison per token), so
     * a damaged shard is one clear error wherever it is read, instead of a wrong embedding row or a NaN loss.
     *
     * @throws IllegalArgumentException for an id outside the vocabulary
     */
    @Override
    public void copy(long from, int[] dst, int offset, int count) {
        Objects.checkFromIndexSize(from, count, header.tokenCount());
        Objects.checkFromIndexSize(offset, count, dst.length);
        if (header.tokenBytes() == 4) {
            MemorySegment.copy(tokens, U32, from * 4, dst, offset, count);
        } else {
            for (int j = 0; j < count; j++) dst[offset + j] = Short.toUnsignedInt(tokens.getAtIndex(U16, from + j));
        }
        int vocab = header.vocabSize();
        for (int j = 0; j < count; j++) {
            int id = dst[offset + j];
            if (id < 0 || id >= vocab)  // a u32 id of 2^31 or more reads as negative
                throw new IllegalArgumentException(path + " holds token id " + Integer.toUnsignedString(id) + " at token " + (from + j)
                        + ", outside its vocabulary of " + vocab + " (the file is damaged: prepare the dataset again)");
        }
    }

    @Override
    public void close() {
        arena.close();
    }

    @Override
    public String toString() {
        return path + " (" + header.tokenCount() + " tokens, " + header.tokenizerName() + ")";
    }
}
