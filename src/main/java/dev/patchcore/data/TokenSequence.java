package dev.patchcore.data;

import java.util.Objects;

/** A read-only run of token ids addressed by a 64-bit index (a shard, or an array in tests). */
public interface TokenSequence {

    long length();

    /** Copies tokens {@code [from, from + count)} into {@code dst[offset ..]}. */
    void copy(long from, int[] dst, int offset, int count);

    /** The tokens {@code [start, end)} of this sequence, as a view (nothing is copied). */
    default TokenSequence slice(long start, long end) {
        Objects.checkFromToIndex(start, end, length());
        TokenSequence whole = this;
        return new TokenSequence() {
            @Override public long length() { return end - start; }

            @Override
            public void copy(long from, int[] dst, int offset, int count) {
                Objects.checkFromIndexSize(from, count, end - start);
                whole.copy(start + from, dst, offset, count);
            }
        };
    }

    /** {@code first}, then {@code rest} (a view: nothing is copied). */
    static TokenSequence prefixed(int first, TokenSequence rest) {
        Objects.requireNonNull(rest);
        return new TokenSequence() {
            @Override public long length() { return rest.length() + 1; }

            @Override
            public void copy(long from, int[] dst, int offset, int count) {
                Objects.checkFromIndexSize(from, count, length());
                if (count == 0) return;
                if (from == 0) {
                    dst[offset] = first;
                    rest.copy(0, dst, offset + 1, count - 1);
                } else {
                    rest.copy(from - 1, dst, offset, count);
                }
            }
        };
    }

    /** Wraps an array (not copied). */
    static TokenSequence of(int[] tokens) {
        Objects.requireNonNull(tokens);
        return new TokenSequence() {
            @Override public long length() { return tokens.length; }

            @Override
            public void copy(long from, int[] dst, int offset, int count) {
                Objects.checkFromIndexSize(from, count, tokens.length);
                System.arraycopy(tokens, (int) from, dst, offset, count);
            }
        };
    }
}
