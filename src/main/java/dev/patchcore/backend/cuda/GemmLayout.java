package dev.patchcore.backend.cuda;

/**
 * A row-major product {@code C[M,N] = op(A)·op(B)} expressed as the column-major call cuBLASLt expects.
 *
 * <p>A row-major {@code R×C} matrix is the column-major {@code C×R} matrix (its transpose) with leading dimension C.
 * So {@code C = op(A)·op(B)} (row-major) is {@code Cᵀ = op(B)ᵀ·op(A)ᵀ} (column-major): cuBLAS's first operand is our
 * B with our B's transpose flag, its second is our A with our A's flag, m = N, n = M, k = K.
 *
 * @param transA        cuBLAS op for its first operand (our B)
 * @param transB        cuBLAS op for its second operand (our A)
 * @param aRows         column-major rows of cuBLAS's first operand as stored
 * @param aCols         its columns as stored
 * @param lda           its leading dimension
 * @param bRows         the same for the second operand
 * @param bCols         …
 * @param ldb           …
 * @param m             rows of the column-major result (= our N)
 * @param n             columns of the column-major result (= our M)
 * @param k             inner dimension
 * @param ldc           leading dimension of the result (= our N)
 */
public record GemmLayout(boolean transA, boolean transB, long aRows, long aCols, long lda, long bRows, long bCols, long ldb,
                         long m, long n, long k, long ldc) {

    /**
     * @param rowsA stored rows of our A (row-major), {@code colsA} its columns; likewise B. {@code tA}/{@code tB}: use
     *              the transpose of the stored matrix.
     */
    public static GemmLayout rowMajor(int rowsA, int colsA, boolean tA, int rowsB, int colsB, boolean tB) {
        long M = tA ? colsA : rowsA, K = tA ? rowsA : colsA;
        long KB = tB ? colsB : rowsB, N = tB ? rowsB : colsB;
        if (K != KB) throw new IllegalArgumentException("inner dimensions differ: " + K + " vs " + KB);
        return new GemmLayout(tB, tA, colsB, rowsB, Math.max(colsB, 1), colsA, rowsA, Math.max(colsA, 1), N, M, K, Math.max(N, 1));
    }

    /** y[N,out] = x[N,in] · w[out,in]ᵀ. */
    public static GemmLayout forward(int rows, int in, int out) { return rowMajor(rows, in, false, out, in, true); }

    /** dx[N,in] = dy[N,out] · w[out,in]. */
    public static GemmLayout backwardData(int rows, int in, int out) { return rowMajor(rows, out, false, out, in, false); }

    /** dW[out,in] += dy[N,out]ᵀ · x[N,in]. */
    public static GemmLayout backwardWeight(int rows, int in, int out) { return rowMajor(rows, out, true, rows, in, false); }
}
