package dev.patchcore.data;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The fixed 128-byte header of a token shard (layout in docs/data-format.md).
 * All integers little-endian; tokens follow at byte {@link #SIZE}.
 *
 * @param tokenBytes    2 (uint16, when vocabSize <= 65536) or 4 (uint32)
 * @param tokenCount    number of tokens after the header, EOS separators included
 * @param documentCount number of documents (EOS-terminated runs) in the shard
 */
public record ShardHeader(int tokenBytes, int vocabSize, int eosId, long tokenCount, long documentCount,
                          String tokenizerName) {

    public static final int SIZE = 128;
    public static final int VERSION = 1;
    static final byte[] MAGIC = "PCTOKENS".getBytes(StandardCharsets.US_ASCII);
    static final int MAX_NAME_BYTES = SIZE - 50;

    public ShardHeader {
        if (vocabSize <= 0) throw new IllegalArgumentException("vocab size must be positive, got " + vocabSize);
        if (tokenBytes != tokenBytesFor(vocabSize)) {
            throw new IllegalArgumentException("token width " + tokenBytes + " bytes does not match vocab size " + vocabSize
                    + " (expected " + tokenBytesFor(vocabSize) + ")");
        }
        if (eosId < 0 || eosId >= vocabSize) {
            throw new IllegalArgumentException("EOS id " + eosId + " is outside the vocabulary [0, " + vocabSize + ")");
        }
        if (tokenCount < 0 || documentCount < 0 || tokenCount > Long.MAX_VALUE / 8) {
            throw new IllegalArgumentException("impossible token/document count " + tokenCount + "/" + documentCount);
        }
        if (tokenizerName.getBytes(StandardCharsets.UTF_8).length > MAX_NAME_BYTES) {
            throw new IllegalArgumentException("tokenizer name longer than " + MAX_NAME_BYTES + " bytes: " + tokenizerName);
        }
    }

    /** uint16 while every id fits, else uint32. */
    public static int tokenBytesFor(int vocabSize) {
        return vocabSize <= 65_536 ? 2 : 4;
    }

    public static ShardHeader forTokenizer(Tokenizer tokenizer, long tokenCount, long documentCount) {
        return new ShardHeader(tokenBytesFor(tokenizer.vocabSize()), tokenizer.vocabSize(), tokenizer.eosId(),
                tokenCount, documentCount, tokenizer.name());
    }

    /** Size the whole file must have. */
    public long fileSize() {
        return SIZE + tokenCount * tokenBytes;
    }

    ByteBuffer encode() {
        byte[] name = tokenizerName.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC);                 //  0: magic
        b.putInt(VERSION);            //  8: format version
        b.putInt(tokenBytes);         // 12: bytes per token
        b.putInt(vocabSize);          // 16
        b.putInt(eosId);              // 20
        b.putLong(tokenCount);        // 24
        b.putLong(documentCount);     // 32
        b.putInt(SIZE);               // 40: header size = offset of the first token
        b.putInt(0);                  // 44: reserved
        b.putShort((short) name.length); // 48: name length, then UTF-8 name, zero padding
        b.put(name);
        return b.clear();
    }

    /**
     * Parses and validates a header.
     *
     * @param what     names the file in error messages
     * @param fileSize actual size of the file, checked against the token count
     */
    static ShardHeader decode(ByteBuffer raw, String what, long fileSize) {
        if (fileSize < SIZE) {
            throw new IllegalArgumentException(what + " is not a patchcore token shard: " + fileSize
                    + " bytes is shorter than the " + SIZE + "-byte header");
        }
        ByteBuffer b = raw.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[MAGIC.length];
        b.get(magic);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new IllegalArgumentException(what + " is not a patchcore token shard (bad magic bytes)");
        }
        int version = b.getInt();
        if (version != VERSION) {
            throw new IllegalArgumentException(what + " has shard format version " + version
                    + "; this build reads version " + VERSION + " (re-run 'prepare')");
        }
        int tokenBytes = b.getInt();
        int vocabSize = b.getInt();
        int eosId = b.getInt();
        long tokenCount = b.getLong();
        long documentCount = b.getLong();
        int headerSize = b.getInt();
        b.getInt();
        int nameLength = Short.toUnsignedInt(b.getShort());
        if (headerSize != SIZE || nameLength > MAX_NAME_BYTES) {
            throw new IllegalArgumentException(what + " has a corrupt header (header size " + headerSize
                    + ", name length " + nameLength + ")");
        }
        byte[] name = new byte[nameLength];
        b.get(name);
        ShardHeader header;
        try {
            header = new ShardHeader(tokenBytes, vocabSize, eosId, tokenCount, documentCount,
                    new String(name, StandardCharsets.UTF_8));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(what + " has a corrupt header: " + e.getMessage(), e);
        }
        if (header.fileSize() != fileSize) {
            throw new IllegalArgumentException(what + " is truncated or corrupt: header promises " + tokenCount
                    + " tokens (" + header.fileSize() + " bytes) but the file has " + fileSize + " bytes");
        }
        return header;
    }
}
