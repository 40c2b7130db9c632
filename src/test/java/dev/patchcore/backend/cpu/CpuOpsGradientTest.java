package dev.patchcore.backend.cpu;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend.AddRmsNormOut;
import dev.patchcore.backend.Backend.AttentionGrads;
import dev.patchcore.backend.Backend.AttentionOut;
import dev.patchcore.backend.Backend.RmsNormOut;
import dev.patchcore.backend.Backend.SwiGluGrads;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;
import java.util.Random;

import static dev.patchcore.backend.cpu.GradCheck.assertClose;
import static dev.patchcore.backend.cpu.GradCheck.numeric;
import static dev.patchcore.backend.cpu.GradCheck.randn;
import static dev.patchcore.backend.cpu.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every op: forward against a float64 reference, and the fp32 analytic backward against central differences of
 * that reference under a random projection L = Σ r·out, at odd and round sizes. Scratch is NaN-poisoned so an op
 * that leaves part of its output unwritten fails.
 */
class CpuOpsGradientTest {
    private static final double FWD_TOL = 2e-6;
    private static final double GRAD_TOL = 1e-4;
    private static CpuBackend be;

    @BeforeAll
    static void open() {
        be = new CpuBackend(2);
        be.poisonScratch(true);
    }

    @AfterAll
    static void close() { be.close(); }

    @AfterEach
    void release() { be.releaseScratch(); }

    private static Tensor tensor(float[] values, int... shape) {
        Tensor t = be.allocate(DType.F32, shape);
        be.upload(t, values);
        return t;
    }

    private static Tensor ints(int[] values, int... shape) {
        Tensor t = be.allocate(DType.I32, shape);
        be.uploadInts(t, values);
        return t;
    }

    // ---------------------------------------------------------------- patch embedding

    @ParameterizedTest(name = "K={0} B={1} T={2} V={3} d={4}")
    @CsvSource({"1,2,3,5,12", "2,2,3,5,12", "3,2,3,5,12", "4,2,3,5,12", "1,2,8,16,32", "4,2,8,16,32", "3,1,7,37,13"})
    void patchEmbed(int k, int batch, int seqLen, int vocab, int d) {
        Random rnd = new Random(11 * k + d);
        float[] table = randn(rnd, vocab * d, 1);
        int[] tokens = new int[batch * seqLen * k];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(vocab);
        tokens[1 % tokens.length] = tokens[0]; // a repeat inside the first patch (K > 1) or across patches (K = 1)
        tokens[tokens.length - 1] = tokens[0];
        Tensor tab = tensor(table, vocab, d), tok = ints(tokens, batch, seqLen * k);

        Tensor out = be.patchEmbed(tab, tok, k);
        assertArrayEquals(new int[]{batch * seqLen, d}, out.shape());
        double[] ref = Reference.patchEmbed(toDouble(table), tokens, k, d);
        assertClose("patchEmbed forward", be.download(out), ref, FWD_TOL);

        float[] r = randn(rnd, ref.length, 1);
        Tensor dTable = be.allocate(DType.F32, vocab, d);
        be.patchEmbedBackward(tensor(r, batch * seqLen, d), tok, k, dTable);
        double[] expected = numeric(in -> Reference.patchEmbed(in[0], tokens, k, d), new double[][]{toDouble(table)}, 0, toDouble(r));
        assertClose("dTable", be.download(dTable), expected, GRAD_TOL);
    }

    @Test
    void patchEmbedWithKOneIsAnExactLookup() {
        Random rnd = new Random(3);
        int vocab = 9, d = 7;
        float[] table = randn(rnd, vocab * d, 3);
        table[5] = -0f; // a negative zero must survive a lookup unchanged
        int[] tokens = {0, 4, 8, 0, 2, 2};
        Tensor out = be.patchEmbed(tensor(table, vocab, d), ints(tokens, 2, 3), 1);
        float[] y = be.download(out);
        for (int r = 0; r < tokens.length; r++)
            for (int c = 0; c < d; c++)
                assertEquals(Float.floatToRawIntBits(table[tokens[r] * d + c]), Float.floatToRawIntBits(y[r * d + c]));
    }

    // ---------------------------------------------------------------- matmul

    @ParameterizedTest(name = "N={0} in={1} out={2}")
    @CsvSource({"7,12,9", "16,32,32", "5,37,40", "1,8,3", "13,33,67"})
    void matmul(int n, int in, int out) {
        Random rnd = new Random(n * 31 + in);
        float[] x = randn(rnd, n * in, 1), w = randn(rnd, out * in, 0.5);
        Tensor xt = tensor(x, n, in), wt = tensor(w, out, in);
        double[] ref = Reference.matmul(toDouble(x), toDouble(w), n, in, out);
        assertClose("matmul forward", be.download(be.matmul(xt, wt)), ref, FWD_TOL);

        float[] r = randn(rnd, n * out, 1);
        float[] dW0 = randn(rnd, out * in, 1);
        Tensor dW = tensor(dW0, out, in);
        Tensor dx = be.matmulBackward(tensor(r, n, out), xt, wt, dW, true);
        double[][] inputs = {toDouble(x), toDouble(w)};
        double[] expDx = numeric(a -> Reference.matmul(a[0], a[1], n, in, out), inputs, 0, toDouble(r));
        double[] expDw = numeric(a -> Reference.matmul(a[0], a[1], n, in, out), inputs, 1, toDouble(r));
        assertClose("dx", be.download(dx), expDx, GRAD_TOL);
        float[] got = be.download(dW);
        for (int i = 0; i < got.length; i++) got[i] -= dW0[i]; // dW accumulates onto what was there
        assertClose("dW", got, expDw, GRAD_TOL);
        assertEquals(null, be.matmulBackward(tensor(r, n, out), xt, wt, dW, false));
    }

    /** Large enough for several row/column tiles, a K split (KC = 256) and ragged edges everywhere. */
    @Test
    void matmulAcrossCacheBlocks() {
        Random rnd = new Random(5);
        int n = 70, in = 300, out = 270;
        float[] x = randn(rnd, n * in, 1), w = randn(rnd, out * in, 1), dy = randn(rnd, n * out, 1);
        Tensor xt = tensor(x, n, in), wt = tensor(w, out, in);
        assertClose("matmul forward", be.download(be.matmul(xt, wt)), Reference.matmul(toDouble(x), toDouble(w), n, in, out), FWD_TOL);
        Tensor dW = be.allocate(DType.F32, out, in);
        Tensor dx = be.matmulBackward(tensor(dy, n, out), xt, wt, dW, true);
        // dx = dy · w and dW = dyᵀ · x are themselves plain products; check them with the same reference.
        double[] wT = new double[in * out];
        for (int o = 0; o < out; o++) for (int p = 0; p < in; p++) wT[p * out + o] = w[o * in + p];
        assertClose("dx", be.download(dx), Reference.matmul(toDouble(dy), wT, n, out, in), FWD_TOL);
        double[] dyT = new double[out * n], xT = new double[in * n];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) dyT[o * n + i] = dy[i * out + o];
            for (int p = 0; p < in; p++) xT[p * n + i] = x[i * in + p];
        }
        assertClose("dW", be.download(dW), Reference.matmul(dyT, xT, out, n, in), FWD_TOL);
    }

    // ---------------------------------------------------------------- RMSNorm

    @ParameterizedTest(name = "N={0} d={1}")
    @CsvSource({"7,12", "16,32", "3,37"})
    void rmsNorm(int n, int d) {
        Random rnd = new Random(n + 100L * d);
        float eps = 1e-5f;
        float[] x = randn(rnd, n * d, 1.5), gain = randn(rnd, d, 1);
        Tensor xt = tensor(x, n, d), gt = tensor(gain, d);
        RmsNormOut o = be.rmsNorm(xt, gt, eps);
        assertClose("rmsNorm y", be.download(o.y()), Reference.rmsNorm(toDouble(x), toDouble(gain), n, d, eps), FWD_TOL);
        assertClose("rmsNorm rstd", be.download(o.rstd()), Reference.rstd(toDouble(x), n, d, eps), FWD_TOL);

        float[] r = randn(rnd, n * d, 1);
        Tensor dGain = be.allocate(DType.F32, d);
        Tensor dx = be.rmsNormBackward(tensor(r, n, d), xt, gt, o.rstd(), dGain);
        double[][] inputs = {toDouble(x), toDouble(gain)};
        assertClose("dx", be.download(dx), numeric(a -> Reference.rmsNorm(a[0], a[1], n, d, eps), inputs, 0, toDouble(r)), GRAD_TOL);
        assertClose("dGain", be.download(dGain), numeric(a -> Reference.rmsNorm(a[0], a[1], n, d, eps), inputs, 1, toDouble(r)), GRAD_TOL);
    }

    /** L = Σ r1·y + Σ r2·sum: the sum feeds the next residual, so both outputs carry gradient. */
    @ParameterizedTest(name = "N={0} d={1}")
    @CsvSource({"7,12", "16,32"})
    void addRmsNorm(int n, int d) {
        Random rnd = new Random(7L * n + d);
        float eps = 1e-5f;
        float[] res = randn(rnd, n * d, 1), br = randn(rnd, n * d, 1), gain = randn(rnd, d, 1);
        Tensor rt = tensor(res, n, d), bt = tensor(br, n, d), gt = tensor(gain, d);
        AddRmsNormOut o = be.addRmsNorm(rt, bt, gt, eps);
        double[] sum = new double[n * d];
        for (int i = 0; i < sum.length; i++) sum[i] = (double) res[i] + br[i];
        assertClose("sum", be.download(o.sum()), sum, FWD_TOL);
        assertClose("y", be.download(o.y()), Reference.rmsNorm(sum, toDouble(gain), n, d, eps), FWD_TOL);
        assertClose("rstd", be.download(o.rstd()), Reference.rstd(sum, n, d, eps), FWD_TOL);

        float[] r1 = randn(rnd, n * d, 1), r2 = randn(rnd, n * d, 1);
        Tensor dGain = be.allocate(DType.F32, d);
        Tensor dSum = be.rmsNormBackward(tensor(r1, n, d), o.sum(), gt, o.rstd(), dGain);
        be.addInPlace(dSum, tensor(r2, n, d));
        double[] r = new double[2 * n * d];
        for (int i = 0; i < n * d; i++) { r[i] = r1[i]; r[n * d + i] = r2[i]; }
        java.util.function.Function<double[][], double[]> f = a -> {
            double[] s = new double[n * d];
            for (int i = 0; i < s.length; i++) s[i] = a[0][i] + a[1][i];
            double[] y = Reference.rmsNorm(s, a[2], n, d, eps);
            double[] both = new double[2 * n * d];
            System.arraycopy(y, 0, both, 0, n * d);
            System.arraycopy(s, 0, both, n * d, n * d);
            return both;
        };
        double[][] inputs = {toDouble(res), toDouble(br), toDouble(gain)};
        float[] dS = be.download(dSum);
        assertClose("dResidual", dS, numeric(f, inputs, 0, r), GRAD_TOL);
        assertClose("dBranch", dS, numeric(f, inputs, 1, r), GRAD_TOL);
        assertClose("dGain", be.download(dGain), numeric(f, inputs, 2, r), GRAD_TOL);
    }

    // ---------------------------------------------------------------- grouped-query heads

    @ParameterizedTest(name = "rows={0} kv={1} groups={2} Dh={3}")
    @CsvSource({"5,2,2,6", "3,1,4,4", "4,3,1,2"})
    void repeatHeads(int n, int kvHeads, int groups, int headDim) {
        Random rnd = new Random(n * 31L + groups);
        int width = kvHeads * headDim;
        float[] x = randn(rnd, n * width, 1);
        double[] ref = Reference.repeatHeads(toDouble(x), n, kvHeads, groups, headDim);
        assertClose("repeatHeads forward", be.download(be.repeatHeads(tensor(x, n, width), kvHeads, groups)), ref, FWD_TOL);
        float[] r = randn(rnd, n * width * groups, 1);
        Tensor dx = be.repeatHeadsBackward(tensor(r, n, width * groups), kvHeads, groups);
        double[] expected = numeric(a -> Reference.repeatHeads(a[0], n, kvHeads, groups, headDim), new double[][]{toDouble(x)}, 0, toDouble(r));
        assertClose("repeatHeads dx", be.download(dx), expected, GRAD_TOL);
    }

    // ---------------------------------------------------------------- RoPE

    @ParameterizedTest(name = "B={0} T={1} H={2} Dh={3} theta={4}")
    @CsvSource({"2,5,2,6,10000", "2,16,2,16,10000", "1,7,3,4,10", "3,1,1,8,10000"})
    void rope(int batch, int seqLen, int heads, int headDim, float theta) {
        Random rnd = new Random(seqLen * 13L + headDim);
        int n = batch * seqLen, width = heads * headDim;
        float[] x = randn(rnd, n * width, 1);
        Tensor xt = tensor(x, n, width);
        double[] ref = Reference.rope(toDouble(x), n, seqLen, heads, headDim, theta);
        assertClose("rope forward", be.download(be.rope(xt, seqLen, heads, Rope.of(theta))), ref, FWD_TOL);
        float[] r = randn(rnd, n * width, 1);
        Tensor dx = be.ropeBackward(tensor(r, n, width), seqLen, heads, Rope.of(theta));
        double[] expected = numeric(a -> Reference.rope(a[0], n, seqLen, heads, headDim, theta), new double[][]{toDouble(x)}, 0, toDouble(r));
        assertClose("rope dx", be.download(dx), expected, GRAD_TOL);
    }

    /** LLaMA-3's scaled frequencies: the rotation and its gradient with Rope.invFreq's frequencies. */
    @Test
    void ropeWithScaledFrequencies() {
        Rope rope = new Rope(500f, new Rope.Scaling(8f, 1f, 4f, 64));
        int batch = 2, seqLen = 40, heads = 2, headDim = 16, n = batch * seqLen, width = heads * headDim;
        Random rnd = new Random(3);
        float[] x = randn(rnd, n * width, 1);
        double[] invFreq = rope.invFreq(headDim);
        double[] ref = Reference.rope(toDouble(x), n, seqLen, heads, headDim, invFreq);
        assertClose("scaled rope forward", be.download(be.rope(tensor(x, n, width), seqLen, heads, rope)), ref, FWD_TOL);
        float[] r = randn(rnd, n * width, 1);
        double[] expected = numeric(a -> Reference.rope(a[0], n, seqLen, heads, headDim, invFreq), new double[][]{toDouble(x)}, 0, toDouble(r));
        assertClose("scaled rope dx", be.download(be.ropeBackward(tensor(r, n, width), seqLen, heads, rope)), expected, GRAD_TOL);
        org.junit.jupiter.api.Assertions.assertFalse(java.util.Arrays.equals(invFreq, Rope.of(500f).invFreq(headDim)), "the scaling changes some frequencies");
    }

    // ---------------------------------------------------------------- attention

    @ParameterizedTest(name = "B={0} T={1} H={2} Dh={3}")
    @CsvSource({"2,5,2,6", "2,16,2,16", "1,3,3,5"})
    void attention(int batch, int seqLen, int heads, int headDim) {
        Random rnd = new Random(batch * 101L + seqLen * 7L + headDim);
        int n = batch * seqLen, width = heads * headDim;
        float[] q = randn(rnd, n * width, 1), k = randn(rnd, n * width, 1), v = randn(rnd, n * width, 1);
        Tensor qt = tensor(q, n, width), kt = tensor(k, n, width), vt = tensor(v, n, width);
        AttentionOut o = be.attention(qt, kt, vt, seqLen, heads);
        double[] lse = new double[batch * heads * seqLen];
        double[] ref = Reference.attention(toDouble(q), toDouble(k), toDouble(v), batch, seqLen, heads, headDim, lse);
        assertClose("attention out", be.download(o.out()), ref, FWD_TOL);
        assertClose("attention lse", be.download(o.lse()), lse, FWD_TOL);
        assertArrayEquals(new int[]{batch, heads, seqLen}, o.lse().shape());

        float[] r = randn(rnd, n * width, 1);
        AttentionGrads g = be.attentionBackward(tensor(r, n, width), qt, kt, vt, o.out(), o.lse(), seqLen, heads);
        double[][] inputs = {toDouble(q), toDouble(k), toDouble(v)};
        java.util.function.Function<double[][], double[]> f = a -> Reference.attention(a[0], a[1], a[2], batch, seqLen, heads, headDim, null);
        assertClose("dq", be.download(g.dq()), numeric(f, inputs, 0, toDouble(r)), GRAD_TOL);
        assertClose("dk", be.download(g.dk()), numeric(f, inputs, 1, toDouble(r)), GRAD_TOL);
        assertClose("dv", be.download(g.dv()), numeric(f, inputs, 2, toDouble(r)), GRAD_TOL);
    }

    // ---------------------------------------------------------------- generation's cached attention

    /**
     * New queries over a KV cache of kvHeads heads, against the float64 reference; the cache rows after the last
     * position hold values 30× larger that no query may see. A grouped-query cache gives exactly what the same call
     * gives over its heads repeated for their query heads (the same arithmetic as multi-head attention).
     */
    @ParameterizedTest(name = "capacity={0} start={1} n={2} H={3} KV={4} Dh={5}")
    @CsvSource({"10,0,4,2,2,6", "10,6,1,3,3,4", "10,6,1,6,2,4", "10,3,4,4,1,8", "12,0,12,6,3,6", "9,5,3,4,2,2"})
    void attendCached(int capacity, int start, int n, int heads, int kvHeads, int headDim) {
        Random rnd = new Random(capacity * 31L + start * 7L + heads * 3L + kvHeads);
        int width = heads * headDim, kvWidth = kvHeads * headDim, groups = heads / kvHeads, seen = start + n;
        float[] q = randn(rnd, n * width, 1), k = randn(rnd, capacity * kvWidth, 1), v = randn(rnd, capacity * kvWidth, 1);
        for (int i = seen * kvWidth; i < k.length; i++) {
            k[i] *= 30;
            v[i] *= 30;
        }
        Tensor qt = tensor(q, n, width), kt = tensor(k, capacity, kvWidth), vt = tensor(v, capacity, kvWidth);
        Tensor out = be.attendCached(qt, kt, vt, start, heads, kvHeads);
        assertArrayEquals(new int[]{n, width}, out.shape());
        double[] ref = Reference.attendCached(toDouble(q), toDouble(k), toDouble(v), n, start, heads, kvHeads, headDim);
        assertClose("attendCached", be.download(out), ref, FWD_TOL);
        if (groups > 1)
            assertArrayEquals(be.download(be.attendCached(qt, be.repeatHeads(kt, kvHeads, groups), be.repeatHeads(vt, kvHeads, groups),
                    start, heads, heads)), be.download(out), "grouped = multi-head over the repeated heads, bit for bit");
    }

    @Test
    void attendCachedRejectsMistakes() {
        Tensor q = tensor(new float[4 * 8], 1, 32), kv = tensor(new float[10 * 8], 10, 8);
        assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, kv, 0, 4, 0), "no key/value heads");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, kv, 0, 4, 3));
        assertTrue(e.getMessage().contains("3 key/value heads do not divide 4 query heads"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, kv, 0, 4, 2));
        assertTrue(e.getMessage().contains("are not 2 key/value heads of q"), e.getMessage());
        Tensor wide = tensor(new float[10 * 32], 10, 32);
        assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, wide, wide, 0, 4, 1), "every query head's keys for 1 head");
        assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, wide, 0, 4, 1), "values of 4 heads");
        assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, kv, 10, 4, 1), "past the cache");
        assertThrows(IllegalArgumentException.class, () -> be.attendCached(q, kv, kv, 0, 3, 1), "not whole heads");
    }

    // ---------------------------------------------------------------- SwiGLU, add

    @ParameterizedTest(name = "N={0} d={1}")
    @CsvSource({"7,12", "16,32"})
    void swiglu(int n, int d) {
        Random rnd = new Random(n * 3L + d);
        float[] gate = randn(rnd, n * d, 2), up = randn(rnd, n * d, 1);
        Tensor gt = tensor(gate, n, d), ut = tensor(up, n, d);
        assertClose("swiglu forward", be.download(be.swiglu(gt, ut)), Reference.swiglu(toDouble(gate), toDouble(up)), FWD_TOL);
        float[] r = randn(rnd, n * d, 1);
        SwiGluGrads g = be.swigluBackward(tensor(r, n, d), gt, ut);
        double[][] inputs = {toDouble(gate), toDouble(up)};
        assertClose("dGate", be.download(g.dGate()), numeric(a -> Reference.swiglu(a[0], a[1]), inputs, 0, toDouble(r)), GRAD_TOL);
        assertClose("dUp", be.download(g.dUp()), numeric(a -> Reference.swiglu(a[0], a[1]), inputs, 1, toDouble(r)), GRAD_TOL);
    }

    @ParameterizedTest(name = "N={0} d={1}")
    @CsvSource({"7,12", "16,32", "300,257"})
    void addAndAddInPlace(int n, int d) {
        Random rnd = new Random(n);
        float[] x = randn(rnd, n * d, 1), y = randn(rnd, n * d, 1);
        Tensor xt = tensor(x, n, d), yt = tensor(y, n, d);
        double[] sum = new double[n * d];
        for (int i = 0; i < sum.length; i++) sum[i] = (double) x[i] + y[i];
        assertClose("add", be.download(be.add(xt, yt)), sum, FWD_TOL);
        be.addInPlace(xt, yt);
        assertClose("addInPlace", be.download(xt), sum, FWD_TOL);
        // The add's backward is the identity for both inputs: d(Σ r·(x+y))/dx = r, checked numerically.
        if (n * d > 1024) return; // (quadratic cost; the large size is for the threaded forward only)
        double[] r = toDouble(randn(rnd, n * d, 1));
        double[] dx = numeric(a -> { double[] s = a[0].clone(); for (int i = 0; i < s.length; i++) s[i] += a[1][i]; return s; },
                new double[][]{toDouble(x), toDouble(y)}, 0, r);
        assertClose("add grad is identity", GradCheck.toFloat(r), dx, 1e-8);
    }

    // ---------------------------------------------------------------- loss

    @ParameterizedTest(name = "K={0} N={1} V={2}")
    @CsvSource({"1,7,37", "2,7,37", "4,7,37", "1,16,32", "2,16,32", "4,16,32"})
    void crossEntropyK(int k, int n, int vocab) {
        Random rnd = new Random(k * 1000L + n + vocab);
        float[] logits = randn(rnd, n * vocab, 3);
        int[] targets = new int[n * k];
        for (int i = 0; i < targets.length; i++) targets[i] = rnd.nextInt(vocab);
        if (k > 1) targets[1] = targets[0]; // the same token twice within one patch counts twice
        float gradScale = 0.37f;
        Tensor z = tensor(logits, n, vocab), tg = ints(targets, n, k);

        double[] ref = Reference.crossEntropyK(toDouble(logits), targets, n, vocab, k);
        Tensor noGrad = be.crossEntropyK(z, tg, vocab, 0f);
        assertArrayEquals(logits, be.download(z), "gradScale 0 must leave the logits untouched");
        assertClose("row losses", be.download(noGrad), ref, FWD_TOL);

        Tensor loss = be.crossEntropyK(z, tg, vocab, gradScale);
        assertClose("row losses", be.download(loss), ref, FWD_TOL);
        double[] scaled = new double[n];
        java.util.Arrays.fill(scaled, gradScale);
        double[] expected = numeric(a -> Reference.crossEntropyK(a[0], targets, n, vocab, k), new double[][]{toDouble(logits)}, 0, scaled);
        assertClose("dLogits (in place)", be.download(z), expected, GRAD_TOL);
    }

    @Test
    void crossEntropyWithKOneIsOrdinaryCrossEntropy() {
        Random rnd = new Random(17);
        int n = 9, vocab = 257;
        float[] logits = randn(rnd, n * vocab, 4);
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) targets[i] = rnd.nextInt(vocab);
        float[] loss = be.download(be.crossEntropyK(tensor(logits, n, vocab), ints(targets, n, 1), vocab, 0f));
        for (int r = 0; r < n; r++) {
            // −log softmax(z)[t] = log Σ exp(z) − z[t], written without any shift
            double z = 0;
            for (int c = 0; c < vocab; c++) z += Math.exp(logits[r * vocab + c]);
            double ce = Math.log(z) - logits[r * vocab + targets[r]];
            assertEquals(ce, loss[r], 1e-6 * Math.max(1, ce), "row " + r);
        }
    }

    @Test
    void crossEntropyIsStableForHugeLogits() {
        int vocab = 5;
        float[] logits = {1000f, 999f, -1000f, 0f, 998f, -3000f, -3001f, -2999f, -3000f, -3000f};
        int[] targets = {1, 2, 3, 3};
        Tensor z = tensor(logits, 2, vocab);
        float[] loss = be.download(be.crossEntropyK(z, ints(targets, 2, 2), vocab, 1f));
        double[] ref = Reference.crossEntropyK(toDouble(logits), targets, 2, vocab, 2);
        assertEquals(ref[0], loss[0], 1e-3);
        assertEquals(ref[1], loss[1], 1e-3);
        for (float g : be.download(z)) assertEquals(false, Float.isNaN(g) || Float.isInfinite(g));
    }

    // ---------------------------------------------------------------- reductions

    @Test
    void sumAndSumOfSquares() {
        Random rnd = new Random(23);
        float[] a = randn(rnd, 100_003, 1), b = randn(rnd, 37, 2);
        double sa = 0, sb = 0, sq = 0;
        for (float v : a) { sa += v; sq += (double) v * v; }
        for (float v : b) { sb += v; sq += (double) v * v; }
        Tensor ta = tensor(a, a.length), tb = tensor(b, b.length);
        assertEquals(sa, be.sum(ta), 1e-9 * a.length);
        assertEquals(sb, be.sum(tb), 1e-9);
        assertEquals(sq, be.sumOfSquares(List.of(ta, tb)), 1e-9 * sq);
    }

    @Test
    void userMistakesAreIllegalArguments() {
        Tensor tab = be.allocate(DType.F32, 4, 3);
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> be.patchEmbed(tab, ints(new int[]{0, 7}, 1, 2), 1));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> be.patchEmbed(tab, ints(new int[]{0, 1, 2}, 1, 3), 2));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> be.matmul(be.allocate(DType.F32, 2, 5), tab));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> be.allocate(DType.BF16, 2));
    }
}
