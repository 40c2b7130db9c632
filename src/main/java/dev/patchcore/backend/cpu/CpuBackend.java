package dev.patchcore.backend.cpu;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Device;
import dev.patchcore.tensor.Tensor;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * The Java backend: fp32 compute on heap arrays, multi-threaded over rows, heads or output tiles. It is the
 * reference every other backend is checked against, so each op follows the {@link Backend} javadoc literally.
 * Not thread-safe: one training loop drives it (the ops themselves fan out to the pool).
 */
public final class CpuBackend implements DecodingBackend {
    /** Elements per parallel chunk for element-wise and row-wise ops; below this, threading costs more than it saves. */
    private static final int GRAIN = 1 << 14;

    private final Parallel par;
    private final CpuKernels kern;
    private final FlashAttention flash;
    private final ScratchPool pool = new ScratchPool();
    private final Map<RopeKey, RopeTable> ropeTables = new HashMap<>();
    private double[] partials = new double[REDUCE_CHUNKS];
    private long persistentBytes;
    private boolean poisonScratch;

    public CpuBackend() { this(Runtime.getRuntime().availableProcessors()); }

    public CpuBackend(int threads) { this(threads, CpuKernels.best()); }

    CpuBackend(int threads, CpuKernels kernel) {
        this.par = new Parallel(threads);
        this.kern = kernel;
        this.flash = new FlashAttention(kernel, par);
    }

    @Override public String name() { return "cpu"; }

    @Override public Device device() { return Device.CPU; }

    @Override public DType activationType() { return DType.F32; }

    public int threads() { return par.threads(); }

    /** Which inner kernels run: "vector-512bit" etc. with the Vector API, "scalar" without it. */
    public String kernelName() { return kern.name(); }

    /** Bytes held by the scratch pool (free and handed out); constant over repeats of a step of fixed shapes. */
    public long pooledBytes() { return pool.pooledBytes(); }

    /** Bytes of live persistent tensors ({@link #allocate} minus {@link #free}). */
    public long persistentBytes() { return persistentBytes; }

    /** Tests: fill every scratch tensor with NaN when handed out, so an op that leaves elements unwritten shows. */
    void poisonScratch(boolean on) { this.poisonScratch = on; }

    // ---------------------------------------------------------------- memory

    @Override
    public Tensor allocate(DType dtype, int... shape) {
        Tensor t = new Tensor(CpuStorage.of(dtype, count(shape)), dtype, shape);
        persistentBytes += t.bytes();
        return t;
    }

    @Override
    public void free(Tensor t) {
        cpu(t);
        persistentBytes -= t.storage().bytes();
    }

    @Override
    public Tensor scratch(DType dtype, int... shape) {
        CpuStorage s = pool.take(dtype, count(shape));
        if (poisonScratch) {
            if (s.dtype() == DType.F32) Arrays.fill(s.floats(), Float.NaN);
            else Arrays.fill(s.ints(), Integer.MIN_VALUE);
        }
        return new Tensor(s, dtype, shape);
    }

    @Override public void releaseScratch() { pool.releaseAll(); }

    @Override public long scratchMark() { return pool.mark(); }

    @Override public void releaseScratchTo(long mark) { pool.releaseTo(Math.toIntExact(mark)); }

    @Override
    public void upload(Tensor dst, float[] src) {
        checkLength(dst, src.length);
        int o = CpuStorage.offset(dst);
        if (dst.dtype() == DType.F32) {
            System.arraycopy(src, 0, CpuStorage.floats(dst), o, src.length);
        } else {
            int[] d = CpuStorage.ints(dst);
            for (int i = 0; i < src.length; i++) {
                int v = (int) src[i];
                if (v != src[i]) throw new IllegalArgumentException("value " + src[i] + " is not an integer, cannot upload into " + dst);
                d[o + i] = v;
            }
        }
    }

    @Override
    public void uploadInts(Tensor dst, int[] src) {
        checkLength(dst, src.length);
        int o = CpuStorage.offset(dst);
        if (dst.dtype() == DType.I32) {
            System.arraycopy(src, 0, CpuStorage.ints(dst), o, src.length);
        } else {
            float[] d = CpuStorage.floats(dst);
            for (int i = 0; i < src.length; i++) d[o + i] = src[i];
        }
    }

    @Override
    public float[] download(Tensor src) {
        int n = (int) src.numel(), o = CpuStorage.offset(src);
        if (src.dtype() == DType.F32) return Arrays.copyOfRange(CpuStorage.floats(src), o, o + n);
        int[] s = CpuStorage.ints(src);
        float[] r = new float[n];
        for (int i = 0; i < n; i++) r[i] = s[o + i];
        return r;
    }

    @Override
    public int[] downloadInts(Tensor src) {
        int n = (int) src.numel(), o = CpuStorage.offset(src);
        if (src.dtype() == DType.I32) return Arrays.copyOfRange(CpuStorage.ints(src), o, o + n);
        float[] s = CpuStorage.floats(src);
        int[] r = new int[n];
        for (int i = 0; i < n; i++) {
            r[i] = (int) s[o + i];
            if (r[i] != s[o + i]) throw new IllegalArgumentException("value " + s[o + i] + " of " + src + " is not an integer");
        }
        return r;
    }

    @Override
    public void zero(Tensor t) {
        int o = CpuStorage.offset(t), n = (int) t.numel();
        if (t.dtype() == DType.F32) Arrays.fill(CpuStorage.floats(t), o, o + n, 0f);
        else Arrays.fill(CpuStorage.ints(t), o, o + n, 0);
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        require(src.numel() == dst.numel(), "copy needs equal element counts: " + src + " → " + dst);
        int n = (int) src.numel();
        if (src.dtype() == DType.F32 && dst.dtype() == DType.F32)
            System.arraycopy(CpuStorage.floats(src), CpuStorage.offset(src), CpuStorage.floats(dst), CpuStorage.offset(dst), n);
        else if (src.dtype() == DType.I32 && dst.dtype() == DType.I32)
            System.arraycopy(CpuStorage.ints(src), CpuStorage.offset(src), CpuStorage.ints(dst), CpuStorage.offset(dst), n);
        else if (src.dtype() == DType.I32 && dst.dtype() == DType.F32)
            uploadInts(dst, downloadInts(src));
        else
            throw new IllegalArgumentException("the CPU backend cannot convert " + src.dtype() + " to " + dst.dtype());
    }

    @Override public void synchronize() {}

    // ---------------------------------------------------------------- embedding

    @Override
    public Tensor patchEmbed(Tensor table, Tensor tokens, int k) {
        int vocab = table.dim(0), d = table.dim(1);
        int batch = tokens.rank() == 1 ? 1 : tokens.dim(0);
        int tk = (int) (tokens.numel() / Math.max(1, batch));
        require(k >= 1 && tk % k == 0, "patch size " + k + " does not divide the " + tk + " tokens per sequence");
        int rows = batch * (tk / k);
        Tensor out = scratch(DType.F32, rows, d);
        float[] tab = CpuStorage.floats(table), y = CpuStorage.floats(out);
        int[] tok = CpuStorage.ints(tokens);
        int to = CpuStorage.offset(table), ko = CpuStorage.offset(tokens);
        checkTokens(tok, ko, (int) tokens.numel(), vocab);
        float invK = 1f / k;
        par.forRange(rows, Math.max(1, GRAIN / d), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int yo = r * d;
                // Row r of the output is patch r of the flattened [B·T] order; its K tokens are consecutive.
                System.arraycopy(tab, to + tok[ko + r * k] * d, y, yo, d);
                for (int j = 1; j < k; j++) {
                    int src = to + tok[ko + r * k + j] * d;
                    for (int c = 0; c < d; c++) y[yo + c] += tab[src + c];
                }
                if (k > 1) for (int c = 0; c < d; c++) y[yo + c] *= invK;
            }
        });
        return out;
    }

    @Override
    public void patchEmbedBackward(Tensor dOut, Tensor tokens, int k, Tensor dTable) {
        int vocab = dTable.dim(0), d = dTable.dim(1);
        int rows = (int) (dOut.numel() / d);
        require(tokens.numel() == (long) rows * k, "patchEmbedBackward: " + tokens + " does not hold " + rows + " patches of " + k + " tokens");
        float[] g = CpuStorage.floats(dOut), dt = CpuStorage.floats(dTable);
        int[] tok = CpuStorage.ints(tokens);
        int go = CpuStorage.offset(dOut), dto = CpuStorage.offset(dTable), ko = CpuStorage.offset(tokens);
        checkTokens(tok, ko, (int) tokens.numel(), vocab);
        float invK = 1f / k;
        // Each task owns a column range of dTable and walks the tokens in order: race-free and deterministic.
        int colChunk = Math.max(16, (d + par.threads() - 1) / par.threads());
        int tasks = (d + colChunk - 1) / colChunk;
        par.forEach(tasks, t -> {
            int c0 = t * colChunk, c1 = Math.min(d, c0 + colChunk);
            for (int r = 0; r < rows; r++) {
                int gr = go + r * d;
                for (int j = 0; j < k; j++) {
                    int dr = dto + tok[ko + r * k + j] * d;
                    for (int c = c0; c < c1; c++) dt[dr + c] += g[gr + c] * invK;
                }
            }
        });
    }

    // ---------------------------------------------------------------- matmul

    @Override
    public Tensor matmul(Tensor x, Tensor w) {
        int out = w.dim(0), in = w.dim(1);
        require(w.rank() == 2 && x.dim(-1) == in, "matmul: input width " + x.dim(-1) + " does not match weight " + w);
        int n = (int) (x.numel() / in);
        Tensor y = scratch(DType.F32, n, out);
        // y = x · wᵀ as an NN product against wᵀ [in, out], so the micro-kernel streams contiguous rows of B.
        Tensor wt = scratch(DType.F32, in, out);
        Gemm.transpose(par, CpuStorage.floats(w), CpuStorage.offset(w), out, in, CpuStorage.floats(wt), 0);
        Gemm.multiply(par, kern, false, CpuStorage.floats(x), CpuStorage.offset(x), in, CpuStorage.floats(wt), 0, out,
                CpuStorage.floats(y), 0, out, n, out, in);
        return y;
    }

    @Override
    public Tensor matmulBackward(Tensor dy, Tensor x, Tensor w, Tensor dW, boolean needDx) {
        int out = w.dim(0), in = w.dim(1);
        int n = (int) (x.numel() / in);
        require(dy.numel() == (long) n * out, "matmulBackward: dy " + dy + " does not match " + n + " rows × " + out);
        require(dW.numel() == w.numel(), "matmulBackward: dW " + dW + " does not match weight " + w);
        float[] g = CpuStorage.floats(dy);
        int go = CpuStorage.offset(dy);
        // dW[out, in] += dyᵀ[out, N] · x[N, in], reading dy transposed in place (A(i, p) = dy[p, i])
        Gemm.multiply(par, kern, true, g, go, 1, out, CpuStorage.floats(x), CpuStorage.offset(x), in,
                CpuStorage.floats(dW), CpuStorage.offset(dW), in, out, in, n);
        if (!needDx) return null;
        // dx[N, in] = dy[N, out] · w[out, in]
        Tensor dx = scratch(DType.F32, n, in);
        Gemm.multiply(par, kern, false, g, go, out, CpuStorage.floats(w), CpuStorage.offset(w), in,
                CpuStorage.floats(dx), 0, in, n, in, out);
        return dx;
    }

    // ---------------------------------------------------------------- RMSNorm

    @Override
    public RmsNormOut rmsNorm(Tensor x, Tensor gain, float eps) {
        int d = (int) gain.numel();
        int n = rowsOf(x, d, "rmsNorm");
        Tensor y = scratch(DType.F32, n, d), rstd = scratch(DType.F32, n);
        float[] xs = CpuStorage.floats(x);
        normalizeRows(xs, CpuStorage.offset(x), gain, eps, CpuStorage.floats(y), CpuStorage.floats(rstd), n, d);
        return new RmsNormOut(y, rstd);
    }

    @Override
    public AddRmsNormOut addRmsNorm(Tensor residual, Tensor branch, Tensor gain, float eps) {
        int d = (int) gain.numel();
        int n = rowsOf(residual, d, "addRmsNorm");
        require(branch.numel() == residual.numel(), "addRmsNorm: " + residual + " and " + branch + " differ in size");
        Tensor sum = scratch(DType.F32, n, d), y = scratch(DType.F32, n, d), rstd = scratch(DType.F32, n);
        float[] a = CpuStorage.floats(residual), b = CpuStorage.floats(branch), s = CpuStorage.floats(sum);
        int ao = CpuStorage.offset(residual), bo = CpuStorage.offset(branch);
        float[] ys = CpuStorage.floats(y), rs = CpuStorage.floats(rstd), gs = CpuStorage.floats(gain);
        int gOff = CpuStorage.offset(gain);
        par.forRange(n, Math.max(1, GRAIN / d), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int o = r * d;
                for (int c = 0; c < d; c++) s[o + c] = a[ao + o + c] + b[bo + o + c];
                normalizeRow(s, o, gs, gOff, eps, ys, o, rs, r, d);
            }
        });
        return new AddRmsNormOut(sum, y, rstd);
    }

    private void normalizeRows(float[] xs, int xo, Tensor gain, float eps, float[] ys, float[] rs, int n, int d) {
        float[] gs = CpuStorage.floats(gain);
        int gOff = CpuStorage.offset(gain);
        par.forRange(n, Math.max(1, GRAIN / d), (r0, r1) -> {
            for (int r = r0; r < r1; r++) normalizeRow(xs, xo + r * d, gs, gOff, eps, ys, r * d, rs, r, d);
        });
    }

    private static void normalizeRow(float[] x, int xo, float[] g, int go, float eps, float[] y, int yo, float[] rstd, int r, int d) {
        double ss = 0;
        for (int c = 0; c < d; c++) ss += (double) x[xo + c] * x[xo + c];
        float rs = (float) (1.0 / Math.sqrt(ss / d + eps));
        rstd[r] = rs;
        for (int c = 0; c < d; c++) y[yo + c] = x[xo + c] * rs * g[go + c];
    }

    @Override
    public Tensor rmsNormBackward(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain) {
        int n = rmsNormBackwardRows(dy, x, gain, rstd, dGain, "rmsNormBackward");
        Tensor dx = scratch(DType.F32, n, (int) gain.numel());
        rmsNormBackwardInto(dy, x, gain, rstd, dGain, dx, false);
        return dx;
    }

    /** One pass: each dx value is added to dxAcc's in float before its single store. */
    @Override
    public Tensor rmsNormBackwardAccumulate(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor dxAcc) {
        rmsNormBackwardRows(dy, x, gain, rstd, dGain, "rmsNormBackwardAccumulate");
        require(dxAcc != null && dxAcc.numel() == x.numel() && dxAcc.dim(-1) == x.dim(-1),
                "rmsNormBackwardAccumulate: dxAcc " + dxAcc + " does not match x " + x);
        require(dxAcc.dtype() == x.dtype(), "rmsNormBackwardAccumulate: dxAcc " + dxAcc + " is not of x's dtype " + x.dtype());
        require(!dxAcc.overlaps(dy) && !dxAcc.overlaps(x), "rmsNormBackwardAccumulate: dxAcc " + dxAcc + " shares memory with dy or x");
        rmsNormBackwardInto(dy, x, gain, rstd, dGain, dxAcc, true);
        return dxAcc;
    }

    /** The rows of an RMSNorm backward's inputs, after checking that their sizes agree. */
    private static int rmsNormBackwardRows(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, String op) {
        int d = (int) gain.numel();
        int n = rowsOf(x, d, op);
        require(dy.numel() == x.numel() && rstd.numel() == n && dGain.numel() == d, op + ": mismatched shapes");
        return n;
    }

    /** dx = RMSNorm's input gradient into {@code out} (added to it when {@code accumulate}); dGain += Σ dy·x·rstd. */
    private void rmsNormBackwardInto(Tensor dy, Tensor x, Tensor gain, Tensor rstd, Tensor dGain, Tensor out, boolean accumulate) {
        int d = (int) gain.numel();
        int n = (int) (x.numel() / d);
        float[] g = CpuStorage.floats(dy), xs = CpuStorage.floats(x), gs = CpuStorage.floats(gain), rs = CpuStorage.floats(rstd);
        float[] dxs = CpuStorage.floats(out), dgs = CpuStorage.floats(dGain);
        int go = CpuStorage.offset(dy), xo = CpuStorage.offset(x), gno = CpuStorage.offset(gain), ro = CpuStorage.offset(rstd);
        int dgo = CpuStorage.offset(dGain), oo = CpuStorage.offset(out);
        // dx = r·(g∘dy) − x·r³/d·Σ(dy∘g∘x), with r = rstd.
        par.forRange(n, Math.max(1, GRAIN / d), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int a = go + r * d, b = xo + r * d, o = oo + r * d;
                float rr = rs[ro + r];
                double dot = 0;
                for (int c = 0; c < d; c++) dot += (double) g[a + c] * gs[gno + c] * xs[b + c];
                float coef = (float) (dot * rr * rr * rr / d);
                if (accumulate) for (int c = 0; c < d; c++) dxs[o + c] += rr * gs[gno + c] * g[a + c] - coef * xs[b + c];
                else for (int c = 0; c < d; c++) dxs[o + c] = rr * gs[gno + c] * g[a + c] - coef * xs[b + c];
            }
        });
        // dGain by column ranges so each element is summed by one thread in row order (deterministic).
        int colChunk = Math.max(16, (d + par.threads() - 1) / par.threads());
        par.forEach((d + colChunk - 1) / colChunk, t -> {
            int c0 = t * colChunk, c1 = Math.min(d, c0 + colChunk);
            for (int r = 0; r < n; r++) {
                int a = go + r * d, b = xo + r * d;
                float rr = rs[ro + r];
                for (int c = c0; c < c1; c++) dgs[dgo + c] += g[a + c] * xs[b + c] * rr;
            }
        });
    }

    // ---------------------------------------------------------------- RoPE

    private record RopeKey(int seqLen, int headDim, Rope rope) {}

    /** cos/sin of position t and frequency i at [t·half + i]; computed once per (T, Dh, frequencies) in double. */
    private record RopeTable(float[] cos, float[] sin) {
        static RopeTable of(RopeKey key) {
            int half = key.headDim / 2;
            double[] invFreq = key.rope.invFreq(key.headDim);
            float[] c = new float[key.seqLen * half], s = new float[key.seqLen * half];
            for (int t = 0; t < key.seqLen; t++)
                for (int i = 0; i < half; i++) {
                    double angle = t * invFreq[i];
                    c[t * half + i] = (float) Math.cos(angle);
                    s[t * half + i] = (float) Math.sin(angle);
                }
            return new RopeTable(c, s);
        }
    }

    @Override
    public Tensor rope(Tensor x, int seqLen, int heads, Rope rope) {
        return rotate(x, seqLen, 0, seqLen, heads, rope, 1f);
    }

    @Override
    public Tensor ropeBackward(Tensor dy, int seqLen, int heads, Rope rope) {
        // The rotation is orthogonal, so its transpose (the gradient) is the rotation by −angle.
        return rotate(dy, seqLen, 0, seqLen, heads, rope, -1f);
    }

    @Override
    public Tensor ropeAt(Tensor x, int start, int heads, Rope rope) {
        require(start >= 0, "ropeAt: negative start " + start);
        int n = (int) (x.numel() / x.dim(-1));
        return rotate(x, n, start, Integer.highestOneBit(Math.max(1, start + n - 1)) << 1, heads, rope, 1f);
    }

    /**
     * Rotates row r by the angles of position start + (r mod seqLen), read from a table of {@code positions} ≥ start +
     * seqLen positions. A table's values do not depend on its length, so generation's positions read tables of powers
     * of two (a handful however long it runs) with the same bits as the training forward's.
     */
    private Tensor rotate(Tensor x, int seqLen, int start, int positions, int heads, Rope rope, float sign) {
        int width = x.dim(-1);
        require(heads > 0 && width % heads == 0 && (width / heads) % 2 == 0, "rope: width " + width + " is not " + heads + " heads of even size");
        int n = (int) (x.numel() / width);
        require(seqLen > 0 && n % seqLen == 0, "rope: " + n + " rows are not whole sequences of " + seqLen);
        int headDim = width / heads, half = headDim / 2;
        RopeTable tab = ropeTables.computeIfAbsent(new RopeKey(positions, headDim, rope), RopeTable::of);
        Tensor y = scratch(DType.F32, n, width);
        float[] xs = CpuStorage.floats(x), ys = CpuStorage.floats(y), cos = tab.cos, sin = tab.sin;
        int xo = CpuStorage.offset(x);
        par.forRange(n, Math.max(1, GRAIN / width), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int t = start + r % seqLen;
                for (int h = 0; h < heads; h++) {
                    int a = xo + r * width + h * headDim, o = r * width + h * headDim;
                    for (int i = 0; i < half; i++) {
                        float c = cos[t * half + i], s = sign * sin[t * half + i];
                        float x1 = xs[a + i], x2 = xs[a + i + half];
                        ys[o + i] = x1 * c - x2 * s;
                        ys[o + i + half] = x2 * c + x1 * s;
                    }
                }
            }
        });
        return y;
    }

    // ---------------------------------------------------------------- attention

    @Override
    public AttentionOut attention(Tensor q, Tensor k, Tensor v, int seqLen, int heads) {
        int width = q.dim(-1);
        int n = checkAttention(q, k, v, seqLen, heads);
        int batch = n / seqLen;
        Tensor out = scratch(DType.F32, n, width), lse = scratch(DType.F32, batch, heads, seqLen);
        flash.forward(CpuStorage.floats(q), CpuStorage.offset(q), CpuStorage.floats(k), CpuStorage.offset(k),
                CpuStorage.floats(v), CpuStorage.offset(v), CpuStorage.floats(out), 0, CpuStorage.floats(lse), 0,
                batch, seqLen, heads, width / heads);
        return new AttentionOut(out, lse);
    }

    @Override
    public AttentionGrads attentionBackward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, int seqLen, int heads) {
        int width = q.dim(-1);
        int n = checkAttention(q, k, v, seqLen, heads);
        require(dOut.numel() == q.numel() && out.numel() == q.numel() && lse.numel() == (long) n * heads,
                "attentionBackward: dOut, out or lse does not match q " + q);
        Tensor dq = scratch(DType.F32, n, width), dk = scratch(DType.F32, n, width), dv = scratch(DType.F32, n, width);
        flash.backward(CpuStorage.floats(dOut), CpuStorage.offset(dOut), CpuStorage.floats(q), CpuStorage.offset(q),
                CpuStorage.floats(k), CpuStorage.offset(k), CpuStorage.floats(v), CpuStorage.offset(v),
                CpuStorage.floats(out), CpuStorage.offset(out), CpuStorage.floats(lse), CpuStorage.offset(lse),
                CpuStorage.floats(dq), 0, CpuStorage.floats(dk), 0, CpuStorage.floats(dv), 0,
                n / seqLen, seqLen, heads, width / heads);
        return new AttentionGrads(dq, dk, dv);
    }

    /** attendCached's scores of one query and head, per thread. */
    private final ThreadScratch cachedScores = new ThreadScratch();

    @Override
    public Tensor attendCached(Tensor q, Tensor keys, Tensor values, int start, int heads, int kvHeads) {
        DecodingBackend.checkCached(q, keys, values, start, heads, kvHeads);
        int width = q.dim(-1), n = (int) (q.numel() / width);
        int headDim = width / heads, kvWidth = kvHeads * headDim, groups = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        Tensor out = scratch(DType.F32, n, width);
        float[] qs = CpuStorage.floats(q), ks = CpuStorage.floats(keys), vs = CpuStorage.floats(values), os = CpuStorage.floats(out);
        int qo = CpuStorage.offset(q), ko = CpuStorage.offset(keys), vo = CpuStorage.offset(values);
        par.forRange(n * heads, Math.max(1, GRAIN / ((start + n) * headDim)), (i0, i1) -> {
            float[] w = cachedScores.floats(start + n);
            for (int item = i0; item < i1; item++) {
                int i = item / heads, h = item % heads, seen = start + i + 1, qa = qo + i * width + h * headDim;
                int kv = h / groups * headDim;  // this head's key/value head
                float max = Float.NEGATIVE_INFINITY;
                for (int j = 0; j < seen; j++) {
                    int ka = ko + j * kvWidth + kv;
                    float dot = 0;
                    for (int c = 0; c < headDim; c++) dot += qs[qa + c] * ks[ka + c];
                    w[j] = dot * scale;
                    max = Math.max(max, w[j]);
                }
                double sum = 0;
                for (int j = 0; j < seen; j++) sum += w[j] = (float) Math.exp(w[j] - max);
                float inv = (float) (1 / sum);
                int oa = i * width + h * headDim;
                Arrays.fill(os, oa, oa + headDim, 0f);
                for (int j = 0; j < seen; j++) {
                    float p = w[j] * inv;
                    int va = vo + j * kvWidth + kv;
                    for (int c = 0; c < headDim; c++) os[oa + c] += p * vs[va + c];
                }
            }
        });
        return out;
    }

    private static int checkAttention(Tensor q, Tensor k, Tensor v, int seqLen, int heads) {
        int width = q.dim(-1);
        require(k.numel() == q.numel() && v.numel() == q.numel(), "attention: q, k, v differ in size");
        require(heads > 0 && width % heads == 0, "attention: width " + width + " not divisible by " + heads + " heads");
        int n = (int) (q.numel() / width);
        require(seqLen > 0 && n % seqLen == 0, "attention: " + n + " rows are not whole sequences of " + seqLen);
        return n;
    }

    // ---------------------------------------------------------------- SwiGLU, add

    @Override
    public Tensor repeatHeads(Tensor x, int kvHeads, int groups) {
        int width = x.dim(-1), n = (int) (x.numel() / width);
        require(kvHeads > 0 && groups > 0 && width % kvHeads == 0, "repeatHeads: width " + width + " is not " + kvHeads + " heads");
        int dh = width / kvHeads, out = width * groups;
        Tensor y = scratch(DType.F32, n, out);
        float[] xs = CpuStorage.floats(x), ys = CpuStorage.floats(y);
        int xo = CpuStorage.offset(x);
        par.forRange(n, Math.max(1, GRAIN / out), (r0, r1) -> {
            for (int r = r0; r < r1; r++)
                for (int h = 0; h < kvHeads * groups; h++)
                    System.arraycopy(xs, xo + r * width + h / groups * dh, ys, r * out + h * dh, dh);
        });
        return y;
    }

    @Override
    public Tensor repeatHeadsBackward(Tensor dy, int kvHeads, int groups) {
        int out = dy.dim(-1), n = (int) (dy.numel() / out);
        require(kvHeads > 0 && groups > 0 && out % (kvHeads * groups) == 0, "repeatHeadsBackward: width " + out + " is not "
                + kvHeads * groups + " heads");
        int dh = out / (kvHeads * groups), width = kvHeads * dh;
        Tensor dx = scratch(DType.F32, n, width);
        float[] gs = CpuStorage.floats(dy), ds = CpuStorage.floats(dx);
        int go = CpuStorage.offset(dy);
        par.forRange(n, Math.max(1, GRAIN / out), (r0, r1) -> {
            for (int r = r0; r < r1; r++)
                for (int j = 0; j < kvHeads; j++)
                    for (int c = 0; c < dh; c++) {
                        float sum = 0;  // the group's heads in order
                        for (int g = 0; g < groups; g++) sum += gs[go + r * out + (j * groups + g) * dh + c];
                        ds[r * width + j * dh + c] = sum;
                    }
        });
        return dx;
    }

    @Override
    public Tensor swiglu(Tensor gate, Tensor up) {
        require(gate.numel() == up.numel(), "swiglu: gate " + gate + " and up " + up + " differ in size");
        Tensor y = scratch(DType.F32, gate.shape());
        float[] g = CpuStorage.floats(gate), u = CpuStorage.floats(up), ys = CpuStorage.floats(y);
        int go = CpuStorage.offset(gate), uo = CpuStorage.offset(up);
        par.forRange((int) gate.numel(), GRAIN, (i0, i1) -> {
            kern.exp(g, go + i0, ys, i0, i1 - i0, -1f, 0f);  // e^(−a), then silu(a)·u = a / (1 + e^(−a)) · u
            for (int i = i0; i < i1; i++) ys[i] = g[go + i] / (1f + ys[i]) * u[uo + i];
        });
        return y;
    }

    @Override
    public SwiGluGrads swigluBackward(Tensor dy, Tensor gate, Tensor up) {
        require(gate.numel() == up.numel() && dy.numel() == gate.numel(), "swigluBackward: mismatched sizes");
        Tensor dGate = scratch(DType.F32, gate.shape()), dUp = scratch(DType.F32, gate.shape());
        float[] d = CpuStorage.floats(dy), g = CpuStorage.floats(gate), u = CpuStorage.floats(up);
        float[] dg = CpuStorage.floats(dGate), du = CpuStorage.floats(dUp);
        int dOff = CpuStorage.offset(dy), go = CpuStorage.offset(gate), uo = CpuStorage.offset(up);
        par.forRange((int) gate.numel(), GRAIN, (i0, i1) -> {
            kern.exp(g, go + i0, dg, i0, i1 - i0, -1f, 0f);  // e^(−a) first, in dGate's own slots
            for (int i = i0; i < i1; i++) {
                float a = g[go + i], sig = 1f / (1f + dg[i]), dyi = d[dOff + i];
                du[i] = dyi * a * sig;
                // d silu(a)/da = σ(a)·(1 + a·(1 − σ(a)))
                dg[i] = dyi * u[uo + i] * sig * (1f + a * (1f - sig));
            }
        });
        return new SwiGluGrads(dGate, dUp);
    }

    @Override
    public Tensor add(Tensor x, Tensor y) {
        require(x.numel() == y.numel(), "add: " + x + " and " + y + " differ in size");
        Tensor out = scratch(DType.F32, x.shape());
        float[] a = CpuStorage.floats(x), b = CpuStorage.floats(y), o = CpuStorage.floats(out);
        int ao = CpuStorage.offset(x), bo = CpuStorage.offset(y);
        par.forRange((int) x.numel(), GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) o[i] = a[ao + i] + b[bo + i];
        });
        return out;
    }

    @Override
    public void addInPlace(Tensor acc, Tensor x) {
        require(acc.numel() == x.numel(), "addInPlace: " + acc + " and " + x + " differ in size");
        float[] a = CpuStorage.floats(acc), b = CpuStorage.floats(x);
        int ao = CpuStorage.offset(acc), bo = CpuStorage.offset(x);
        par.forRange((int) x.numel(), GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) a[ao + i] += b[bo + i];
        });
    }

    // ---------------------------------------------------------------- loss

    @Override
    public Tensor crossEntropyK(Tensor logits, Tensor targets, int vocab, float gradScale) {
        int stride = logits.dim(-1);
        require(vocab >= 1 && vocab <= stride, "crossEntropyK: vocab " + vocab + " outside [1, " + stride + "]");
        int n = (int) (logits.numel() / stride);
        require(n > 0 && targets.numel() % n == 0, "crossEntropyK: " + targets.numel() + " targets for " + n + " rows");
        int k = (int) (targets.numel() / n);
        require(k >= 1, "crossEntropyK: no targets");
        Tensor rowLoss = scratch(DType.F32, n);
        float[] z = CpuStorage.floats(logits), loss = CpuStorage.floats(rowLoss);
        int[] tg = CpuStorage.ints(targets);
        int zo = CpuStorage.offset(logits), to = CpuStorage.offset(targets);
        checkTokens(tg, to, n * k, vocab);
        float invK = 1f / k;
        par.forRange(n, Math.max(1, GRAIN / stride), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int o = zo + r * stride;
                float max = Float.NEGATIVE_INFINITY;
                for (int c = 0; c < vocab; c++) max = Math.max(max, z[o + c]);
                // Paper App. A: log_softmax once per row, nll against each of the K targets, averaged over K.
                // Σ (max − z_t), each difference exact in double: lse − mean(z_t) = log Σ e^(z − max) + this / K. (As
                // (K·lse − Σ z_t) / K the two terms near K·max cancelled, and log V vanished once |z| reached ~1e16.)
                double targetGap = 0;
                for (int j = 0; j < k; j++) targetGap += (double) max - z[o + tg[to + r * k + j]];
                // e^(z − max): into the logits themselves when they become the gradient, else into scratch.
                float[] e = gradScale != 0f ? z : expRows.floats(vocab);
                int eo = gradScale != 0f ? o : 0;
                double sumExp = kern.exp(z, o, e, eo, vocab, 1f, -max);
                loss[r] = (float) (Math.log(sumExp) + targetGap / k);
                if (gradScale != 0f) {
                    float norm = (float) (gradScale / sumExp);  // softmax = e^(z − max) / Σ
                    for (int c = 0; c < vocab; c++) z[o + c] *= norm;
                    for (int c = vocab; c < stride; c++) z[o + c] = 0f;
                    float hit = gradScale * invK;
                    for (int j = 0; j < k; j++) z[o + tg[to + r * k + j]] -= hit;
                }
            }
        });
        return rowLoss;
    }

    /** The loss-only cross-entropy's row of exponentials, per thread. */
    private final ThreadScratch expRows = new ThreadScratch();

    // ---------------------------------------------------------------- reductions, optimizer

    @Override
    public double sumOfSquares(List<Tensor> tensors) {
        double total = 0;
        for (Tensor t : tensors) total += reduce(t, true);
        return total;
    }

    @Override
    public double sum(Tensor t) { return reduce(t, false); }

    @Override
    public long countAbsAbove(Tensor x, float threshold) {
        require(x.dtype() == DType.F32, "countAbsAbove: " + x + " must be F32 on the CPU");
        float[] a = CpuStorage.floats(x);
        int o = CpuStorage.offset(x);
        LongAdder count = new LongAdder();  // integer sums: exact in any order
        par.forRange((int) x.numel(), GRAIN, (i0, i1) -> {
            long k = 0;
            for (int i = i0; i < i1; i++) if (Math.abs(a[o + i]) > threshold) k++;
            count.add(k);
        });
        return count.sum();
    }

    /** Most chunks of a {@link #reduce}: a constant, so the chunk boundaries (and the sum's bits) do not follow the thread count. */
    private static final int REDUCE_CHUNKS = 64;

    /**
     * Fixed chunking and an in-order sum of the chunk partials, so the result depends neither on thread timing nor on
     * the thread count (chunks of 4 per thread made the gradient norm, hence clipping, and the step loss differ in the
     * last bits between thread counts).
     */
    private double reduce(Tensor t, boolean squares) {
        float[] a = CpuStorage.floats(t);
        int o = CpuStorage.offset(t), n = (int) t.numel();
        int chunks = Math.max(1, Math.min(n / GRAIN, REDUCE_CHUNKS));
        if (partials.length < chunks) partials = new double[chunks];
        double[] p = partials;
        par.forEach(chunks, c -> {
            int i0 = (int) ((long) n * c / chunks), i1 = (int) ((long) n * (c + 1) / chunks);
            double s = 0;
            if (squares) for (int i = i0; i < i1; i++) s += (double) a[o + i] * a[o + i];
            else for (int i = i0; i < i1; i++) s += a[o + i];
            p[c] = s;
        });
        double total = 0;
        for (int c = 0; c < chunks; c++) total += p[c];
        return total;
    }

    @Override
    public void adamW(Tensor master, Tensor grad, Tensor m, Tensor v, Tensor compute, AdamWStep s) {
        require(s.step() >= 1, "adamW step is 1-based, got " + s.step());
        long n = master.numel();
        require(grad.numel() == n && m.numel() == n && v.numel() == n && (compute == null || compute.numel() == n),
                "adamW: master, grad and moments differ in size");
        float[] w = CpuStorage.floats(master), g = CpuStorage.floats(grad), ms = CpuStorage.floats(m), vs = CpuStorage.floats(v);
        int wo = CpuStorage.offset(master), go = CpuStorage.offset(grad), mo = CpuStorage.offset(m), vo = CpuStorage.offset(v);
        float b1 = s.beta1(), b2 = s.beta2(), lr = s.lr(), eps = s.eps(), wd = s.weightDecay(), scale = s.gradScale();
        float bc1 = (float) (1 - Math.pow(b1, s.step())), bc2 = (float) (1 - Math.pow(b2, s.step()));
        par.forRange((int) n, GRAIN, (i0, i1) ->
                kern.adamw(w, wo + i0, g, go + i0, ms, mo + i0, vs, vo + i0, i1 - i0, scale, b1, b2, bc1, bc2, lr, eps, wd));
        // On CPU the compute copy is normally the master itself; copy only when a distinct tensor was given.
        if (compute != null && (compute.storage() != master.storage() || compute.offset() != master.offset())) copy(master, compute);
    }

    @Override
    public void close() { par.close(); }

    // ---------------------------------------------------------------- checks

    private static long count(int[] shape) {
        long n = 1;
        for (int s : shape) {
            if (s < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            n *= s;
        }
        return n;
    }

    private static void cpu(Tensor t) {
        if (!(t.storage() instanceof CpuStorage)) throw new IllegalArgumentException("not a CPU tensor: " + t);
    }

    private static int rowsOf(Tensor x, int d, String op) {
        require(d > 0 && x.dim(-1) == d, op + ": width of " + x + " does not match gain of " + d);
        return (int) (x.numel() / d);
    }

    private static void checkLength(Tensor t, int length) {
        require(t.numel() == length, "cannot copy " + length + " values into " + t);
    }

    private static void checkTokens(int[] ids, int off, int n, int vocab) {
        for (int i = 0; i < n; i++) {
            int id = ids[off + i];
            if (id < 0 || id >= vocab)
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + vocab);
        }
    }

    private static void require(boolean ok, String message) {
        if (!ok) throw new IllegalArgumentException(message);
    }
}
