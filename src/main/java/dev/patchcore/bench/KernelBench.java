package dev.patchcore.bench;

import dev.patchcore.config.Rope;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.backend.cuda.CudaFlashAttention;
import dev.patchcore.backend.cuda.CudaRmsNorm;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Per-op microbenchmarks: median time over many runs after warm-up (CUDA events on the GPU, wall clock on the CPU),
 * bytes moved or FLOPs, and the fraction of the ceilings measured in the same run (a large device copy for bandwidth,
 * a large bf16 GEMM for compute). Inputs are persistent tensors filled with random values; scratch is released
 * between runs so memory stays flat.
 */
public final class KernelBench {
    /** Model and batch shape of one benchmark run. */
    public record Shapes(String name, int batch, int seqLen, int dim, int ffn, int heads, int[] vocabs, long ceilingGemm, long copyBytes,
                         long optimizerParams) {
        /**
         * A paper preset's shapes (§3.1): its width, FFN and heads at its context (T = 2048), micro-batch 4, V = 32000
         * and 50257. The 780M, 1.3B and 2.7B ones time the ops at widths 1536, 2048 and 2560 (the RMSNorm backward's
         * variants, for one, were first timed at 1024 only).
         */
        public static Shapes paper(ModelConfig preset) {
            return new Shapes(preset.name(), 4, preset.contextLength(), preset.dim(), preset.ffnDim(), preset.heads(),
                    new int[] {32000, 50257}, 8192, 1L << 30, 64L << 20);
        }

        /** The 370M paper shapes: T = 2048, micro-batch 4, d = 1024, ffn 2752, 16 heads, V = 32000 and 50257. */
        public static Shapes paper370m() { return paper(ModelConfig.preset("370m")); }

        /** A small shape for the CPU backend. */
        public static Shapes small() {
            return new Shapes("small", 1, 256, 256, 688, 4, new int[] {4096}, 512, 64L << 20, 1L << 20);
        }

        int rows() { return batch * seqLen; }
    }

    /**
     * One table row. {@code medianMs}: per-call time of back-to-back calls on the stream, as a training step sees it
     * (it includes any host launch overhead the GPU waits for). {@code kernelMs} (CUDA only, else NaN): the same calls
     * queued behind a spin kernel so they run with no host gaps, i.e. the kernels' own time. {@code gbPerS},
     * {@code tflopPerS} and {@code ceilingFraction} (of the copy bandwidth for memory-bound ops, of the GEMM peak for
     * compute) are from {@code medianMs}; {@code kernelFraction} is the same fraction from {@code kernelMs}.
     */
    public record Row(String op, String shape, double medianMs, double kernelMs, double bytes, double flops, double gbPerS,
                      double tflopPerS, double ceilingFraction, double kernelFraction, int runs) {}

    private final Backend be;
    private final Shapes s;
    private PrintStream progress;
    private final int minRuns;
    private final SplittableRandom random = new SplittableRandom(5);
    private final List<Tensor> owned = new ArrayList<>();
    private double copyGbPerS = Double.NaN, gemmTflopPerS = Double.NaN;
    private List<MemoryRow> memory = List.of();
    /** Rows whose op matches this ({@link #withOnly}); null: every row. The ceilings are always measured. */
    private java.util.regex.Pattern only;

    /** Attention memory at T = 2048 and 8192, filled by {@link #run()} on CUDA. */
    public List<MemoryRow> memory() { return memory; }

    public static String memoryMarkdown(List<MemoryRow> rows) {
        StringBuilder sb = new StringBuilder("| attention memory | fwd+bwd scratch MiB | q,k,v,dO MiB | T×T fp32 scores would be MiB |\n|---|---:|---:|---:|\n");
        for (MemoryRow r : rows)
            sb.append(String.format("| B%d H%d T%d Dh%d | %.1f | %.1f | %.1f |%n", r.batch(), r.heads(), r.seqLen(), r.headDim(),
                    r.attentionScratchBytes() / 1048576.0, r.inputBytes() / 1048576.0, r.scoresBytesIfMaterialized() / 1048576.0));
        return sb.toString();
    }

    public KernelBench(Backend backend, Shapes shapes, int minRuns) {
        this.be = backend;
        this.s = shapes;
        this.minRuns = Math.max(3, minRuns);
    }

    /** Prints a line per row to {@code progress} as it is measured (the tables come at the end: a run cut short keeps these). */
    public KernelBench withProgress(PrintStream progress) {
        this.progress = progress;
        return this;
    }

    /**
     * Measures only the ops whose name (with its variant tag, e.g. "rmsNorm backward [rmsnormbwd v3]") contains a match
     * of {@code pattern} ({@link #onlyPattern}), besides the two ceilings.
     */
    public KernelBench withOnly(java.util.regex.Pattern pattern) {
        this.only = pattern;
        return this;
    }

    /**
     * {@code bench kernels --only}'s pattern: {@code regex}, case-insensitive.
     *
     * @throws IllegalArgumentException for a pattern that is not a regular expression
     */
    public static java.util.regex.Pattern onlyPattern(String regex) {
        try {
            return java.util.regex.Pattern.compile(regex, java.util.regex.Pattern.CASE_INSENSITIVE | java.util.regex.Pattern.UNICODE_CASE);
        } catch (java.util.regex.PatternSyntaxException e) {
            throw new IllegalArgumentException("--only '" + regex + "' is not a regular expression: " + e.getDescription());
        }
    }

    public double copyCeilingGbPerS() { return copyGbPerS; }

    public double gemmCeilingTflopPerS() { return gemmTflopPerS; }

    public List<Row> run() {
        List<Row> rows = new ArrayList<>();
        DType act = be.activationType();
        int n = s.rows(), d = s.dim(), f = s.ffn();

        // Ceilings first: every later row is reported as a fraction of these.
        long copyElems = s.copyBytes() / 4;
        Tensor cs = zeros(DType.F32, (int) copyElems), cd = zeros(DType.F32, (int) copyElems);
        Row copy = measure("ceiling: device copy", "[" + copyElems + "] f32", 2.0 * s.copyBytes(), 0, () -> be.copy(cs, cd));
        copyGbPerS = copy.gbPerS();
        rows.add(copy);
        freeAll();
        int g = (int) s.ceilingGemm();
        Tensor ga = persistent(act, g, g), gb = persistent(act, g, g);
        Row gemm = measure("ceiling: gemm", g + "^3 " + act, 0, 2.0 * g * g * g, () -> be.matmul(ga, gb));
        gemmTflopPerS = gemm.tflopPerS();
        rows.add(gemm);
        freeAll();

        // Host cost of one launch: an add of 8 elements takes the GPU ~2 µs, so back-to-back calls are paced by the
        // host (the op's checks, scratch, argument marshalling, cuLaunchKernel). Kernel time: the same queued ahead.
        Tensor tx = persistent(act, 8), ty = persistent(act, 8);
        rows.add(measure("launch overhead (add of 8)", "[8]", 0, 0, () -> be.add(tx, ty)));
        for (int v : otherVariants("launch")) withVariant("launch", v, tag ->
                rows.add(measure("launch overhead (add of 8)" + tag, "[8]", 0, 0, () -> be.add(tx, ty))));
        freeAll();

        // Linear layers: forward, and backward (dx + dW).
        int[][] linears = {{d, 3 * d}, {d, d}, {d, f}, {f, d}};
        String[] names = {"qkv", "out", "ffn up", "ffn down"};
        for (int i = 0; i < linears.length; i++) linear(rows, names[i], n, linears[i][0], linears[i][1]);
        for (int v : s.vocabs()) {
            // The model pads its vocabulary to a multiple of 64 (ModelConfig.paddedVocab) so GEMM rows stay aligned;
            // the raw odd width is measured too, to show why.
            int padded = (v + 63) / 64 * 64;
            linear(rows, "lm head V=" + v + (padded != v ? " padded " + padded : ""), n, d, padded);
            if (padded != v) linear(rows, "lm head V=" + v + " unpadded", n, d, v);
        }

        int a = act.bytes();
        Tensor x = persistent(act, n, d), y = persistent(act, n, d), gain = persistent(act, d), dGain = persistent(DType.F32, d);
        String nd = n + "x" + d;
        rows.add(measure("add", nd, 3.0 * n * d * a, 0, () -> be.add(x, y)));
        if (act != DType.F32) {
            Tensor wide = persistent(DType.F32, n, d);
            rows.add(measure("cast F32→" + act, nd, (4.0 + a) * n * d, 0, () -> be.copy(wide, x)));
            rows.add(measure("cast " + act + "→F32", nd, (4.0 + a) * n * d, 0, () -> be.copy(x, wide)));
        }
        rows.add(measure("rmsNorm", nd, 2.0 * n * d * a + 4.0 * n, 0, () -> be.rmsNorm(x, gain, 1e-5f)));
        rows.add(measure("addRmsNorm", nd, 4.0 * n * d * a + 4.0 * n, 0, () -> be.addRmsNorm(x, y, gain, 1e-5f)));
        Tensor rstd = be.rmsNorm(x, gain, 1e-5f).rstd();
        Tensor rstdKeep = persistent(DType.F32, n);
        be.copy(rstd, rstdKeep);
        rows.add(measure("rmsNorm backward", nd, 3.0 * n * d * a + 4.0 * n, 0, () -> be.rmsNormBackward(y, x, gain, rstdKeep, dGain)));
        // Fused with the residual stream's gradient add (Tape.addRmsNorm): reads dy, x and dxAcc, writes dxAcc.
        Tensor dxAcc = persistent(act, n, d);
        rows.add(measure("rmsNorm backward + residual grad", nd, 4.0 * n * d * a + 4.0 * n, 0,
                () -> be.rmsNormBackwardAccumulate(y, x, gain, rstdKeep, dGain, dxAcc)));
        // Grouped-query attention's key/value heads repeated for 4 query heads each (a quarter of the heads read).
        if (s.heads() % 4 == 0) {
            int kv = s.heads() / 4;
            Tensor kvIn = x.reshape(n * d).rows(0, n * d / 4).reshape(n, d / 4);
            rows.add(measure("repeatHeads (4 query heads per key/value head)", n + "x" + kv + "→" + s.heads() + " heads",
                    1.25 * n * d * a, 0, () -> be.repeatHeads(kvIn, kv, 4)));
            rows.add(measure("repeatHeads backward", n + "x" + s.heads() + "→" + kv + " heads", 1.25 * n * d * a, 0,
                    () -> be.repeatHeadsBackward(y, kv, 4)));
        }
        rows.add(measure("rope", nd, 2.0 * n * d * a, 0, () -> be.rope(x, s.seqLen(), s.heads(), Rope.of(10000f))));
        rows.add(measure("rope backward", nd, 2.0 * n * d * a, 0, () -> be.ropeBackward(x, s.seqLen(), s.heads(), Rope.of(10000f))));
        if (be instanceof CudaBackend cuda) {
            // Diagnostic: one row per resident warp of the backward (2112 of the 8192 rows on an H100) — with the full
            // row above, the per-call cost that does not scale with the rows (gain-gradient partials and their reduce).
            int resident = Math.min(n, CudaRmsNorm.backwardResidentRows(d, cuda.multiprocessorCount()));
            Tensor yr = y.rows(0, resident), xr = x.rows(0, resident), rr = rstdKeep.rows(0, resident);
            rows.add(measure("rmsNorm backward (rows = resident warps)", resident + "x" + d, 3.0 * resident * d * a + 4.0 * resident, 0,
                    () -> be.rmsNormBackward(yr, xr, gain, rr, dGain)));
            // Four times the rows (32768 × 1024 at 370M: 200 MB moved, four times an H100's 50 MB L2): with the two rows
            // above, it separates the streaming rate from the fixed cost and from what L2 holds between calls.
            int big = 4 * n;
            String bigShape = big + "x" + d;
            Tensor yBig = persistent(act, big, d), xBig = persistent(act, big, d), rstdBig = persistent(DType.F32, big);
            be.copy(be.rmsNorm(xBig, gain, 1e-5f).rstd(), rstdBig);
            be.releaseScratch();
            rows.add(measure("rmsNorm backward", bigShape, 3.0 * big * d * a + 4.0 * big, 0, () -> be.rmsNormBackward(yBig, xBig, gain, rstdBig, dGain)));
            for (int v : otherVariants("rmsnormbwd")) withVariant("rmsnormbwd", v, tag -> {
                rows.add(measure("rmsNorm backward" + tag, nd, 3.0 * n * d * a + 4.0 * n, 0, () -> be.rmsNormBackward(y, x, gain, rstdKeep, dGain)));
                rows.add(measure("rmsNorm backward + residual grad" + tag, nd, 4.0 * n * d * a + 4.0 * n, 0,
                        () -> be.rmsNormBackwardAccumulate(y, x, gain, rstdKeep, dGain, dxAcc)));
                // The same rows for every variant (the default's resident warps: one pass of variants 3 and 5 as well, not of 4)
                rows.add(measure("rmsNorm backward (rows = v1's resident warps)" + tag, resident + "x" + d, 3.0 * resident * d * a + 4.0 * resident, 0,
                        () -> be.rmsNormBackward(yr, xr, gain, rr, dGain)));
                rows.add(measure("rmsNorm backward" + tag, bigShape, 3.0 * big * d * a + 4.0 * big, 0,
                        () -> be.rmsNormBackward(yBig, xBig, gain, rstdBig, dGain)));
            });
        }
        // Kernel variants under evaluation, side by side with the defaults above.
        for (int v : otherVariants("rmsnorm")) withVariant("rmsnorm", v, tag -> {
            rows.add(measure("rmsNorm" + tag, nd, 2.0 * n * d * a + 4.0 * n, 0, () -> be.rmsNorm(x, gain, 1e-5f)));
            rows.add(measure("addRmsNorm" + tag, nd, 4.0 * n * d * a + 4.0 * n, 0, () -> be.addRmsNorm(x, y, gain, 1e-5f)));
        });
        freeAll();

        Tensor gate = persistent(act, n, f), up = persistent(act, n, f), dy = persistent(act, n, f);
        String nf = n + "x" + f;
        rows.add(measure("swiglu", nf, 3.0 * n * f * a, 0, () -> be.swiglu(gate, up)));
        rows.add(measure("swiglu backward", nf, 5.0 * n * f * a, 0, () -> be.swigluBackward(dy, gate, up)));
        freeAll();

        for (int k : new int[] {1, 4}) patchEmbed(rows, k, s.vocabs()[0]);
        for (int v : s.vocabs()) for (int k : new int[] {1, 4}) crossEntropy(rows, v, (v + 63) / 64 * 64, k);
        for (int v : s.vocabs()) if (v % 64 != 0) crossEntropy(rows, v, v, 1);
        for (int dh : new int[] {64, 128}) attention(rows, dh);
        optimizer(rows);
        memory = attentionMemory(rows);
        if (be instanceof DecodingBackend dec) for (int dh : new int[] {64, 128}) decode(rows, dec, dh);  // newest kernels last
        rows.removeIf(java.util.Objects::isNull);  // the rows --only left out
        return rows;
    }

    /**
     * Generation: the newest of T positions over the KV cache of one sequence (its keys and values read once), and the
     * same with a grouped-query cache of a quarter of the heads (4 query heads per key/value head; bytes counted once,
     * the cache's size), at T and at a short context of {@link #SHORT_DECODE} keys, each through the default
     * {@code decode} variant (a block per query head) and the other (a block per key/value head, each cached row read
     * once for its 4 query heads: a quarter of the blocks, slower at one sequence in H100 run 16).
     */
    private void decode(List<Row> rows, DecodingBackend dec, int dh) {
        DType act = be.activationType();
        int heads = s.dim() / dh, t = s.seqLen();
        Tensor q = persistent(act, 1, heads * dh), keys = persistent(act, t, heads * dh), values = persistent(act, t, heads * dh);
        rows.add(measure("attention decode (1 query, KV cache of T)", "B1 H" + heads + " T" + t + " Dh" + dh,
                2.0 * (t + 1) * heads * dh * act.bytes(), 0, () -> dec.attendCached(q, keys, values, t - 1, heads, heads)));
        if (heads % 4 == 0) {
            int kv = heads / 4;
            Tensor kvKeys = persistent(act, t, kv * dh), kvValues = persistent(act, t, kv * dh);
            for (int c : t > SHORT_DECODE ? new int[] {SHORT_DECODE, t} : new int[] {t}) {
                String name = "attention decode (4 query heads per key/value head)", shape = "B1 H" + heads + " KV" + kv + " T" + c + " Dh" + dh;
                double bytes = (2.0 * c * kv + 2.0 * heads) * dh * act.bytes();
                rows.add(measure(name, shape, bytes, 0, () -> dec.attendCached(q, kvKeys, kvValues, c - 1, heads, kv)));
                for (int v : otherVariants("decode")) withVariant("decode", v, tag ->
                        rows.add(measure(name + tag, shape, bytes, 0, () -> dec.attendCached(q, kvKeys, kvValues, c - 1, heads, kv))));
            }
        }
        freeAll();
    }

    /** The short context of the grouped decode rows: two chunks of 128 keys. */
    static final int SHORT_DECODE = 256;

    private void linear(List<Row> rows, String name, int n, int in, int out) {
        DType act = be.activationType();
        Tensor x = persistent(act, n, in), w = persistent(act, out, in), dy = persistent(act, n, out), dW = persistent(DType.F32, out, in);
        String shape = n + "x" + in + "x" + out;
        double flops = 2.0 * n * in * out;
        rows.add(measure("matmul " + name, shape, 0, flops, () -> be.matmul(x, w)));
        rows.add(measure("matmul backward " + name, shape, 0, 2 * flops, () -> be.matmulBackward(dy, x, w, dW, true)));
        freeAll();
    }

    private void patchEmbed(List<Row> rows, int k, int vocab) {
        DType act = be.activationType();
        int n = s.rows(), d = s.dim();
        Tensor table = persistent(act, vocab, d), dTable = persistent(DType.F32, vocab, d), dOut = persistent(act, n, d);
        Tensor tokens = be.allocate(DType.I32, s.batch(), s.seqLen() * k);
        owned.add(tokens);
        int[] ids = new int[s.batch() * s.seqLen() * k];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
        be.uploadInts(tokens, ids);
        String shape = "B" + s.batch() + " T" + s.seqLen() + " K" + k + " d" + d;
        int a = act.bytes();
        rows.add(measure("patchEmbed K=" + k, shape, (double) n * k * d * a + (double) n * d * a + 4.0 * ids.length, 0,
                () -> be.patchEmbed(table, tokens, k)));
        // dOut read once per token position; each distinct token's dTable row read and written once (F32).
        long distinct = Arrays.stream(ids).distinct().count();
        double bwdBytes = (double) n * k * d * a + 8.0 * distinct * d + 4.0 * ids.length;
        rows.add(measure("patchEmbed backward K=" + k, shape, bwdBytes, 0, () -> be.patchEmbedBackward(dOut, tokens, k, dTable)));
        for (int v : otherVariants("patchembed")) withVariant("patchembed", v, tag ->
                rows.add(measure("patchEmbed backward K=" + k + tag, shape, bwdBytes, 0, () -> be.patchEmbedBackward(dOut, tokens, k, dTable))));
        freeAll();
    }

    private void crossEntropy(List<Row> rows, int vocab, int stride, int k) {
        int n = s.rows();
        Tensor logits = persistent(be.activationType(), n, stride);
        Tensor targets = be.allocate(DType.I32, n, k);
        owned.add(targets);
        int[] ids = new int[n * k];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
        be.uploadInts(targets, ids);
        double bytes = 2.0 * n * stride * be.activationType().bytes() + 4.0 * n * (k + 1);
        String label = "crossEntropyK V=" + vocab + (stride != vocab ? " padded " + stride : vocab % 64 != 0 ? " unpadded" : "") + " K=" + k;
        rows.add(measure(label, n + "x" + stride, bytes, 0, () -> be.crossEntropyK(logits, targets, vocab, 1f / n)));
        for (int v : otherVariants("crossentropy")) withVariant("crossentropy", v, tag ->
                rows.add(measure(label + tag, n + "x" + stride, bytes, 0, () -> be.crossEntropyK(logits, targets, vocab, 1f / n))));
        freeAll();
    }

    private void attention(List<Row> rows, int dh) {
        DType act = be.activationType();
        int heads = s.dim() / dh, n = s.rows(), t = s.seqLen();
        Tensor q = persistent(act, n, heads * dh), k = persistent(act, n, heads * dh), v = persistent(act, n, heads * dh);
        Tensor dOut = persistent(act, n, heads * dh);
        double fwd = 0.5 * 4.0 * s.batch() * heads * (double) t * t * dh; // causal, as FlashAttention counts
        String shape = "B" + s.batch() + " H" + heads + " T" + t + " Dh" + dh;
        if (be instanceof CudaBackend cuda) {
            var simple = cuda.simpleAttention();
            Backend.AttentionOut o = simple.forward(q, k, v, t, heads);
            Tensor out = keep(o.out()), lse = keep(o.lse());
            rows.add(measure("attention naive", shape, 0, fwd, () -> simple.forward(q, k, v, t, heads)));
            rows.add(measure("attention naive backward", shape, 0, 2.5 * fwd, () -> simple.backward(dOut, q, k, v, out, lse, t, heads)));
            if (CudaFlashAttention.supportsHeadDim(dh)) {
                CudaFlashAttention flash = cuda.flashAttention();
                rows.add(measure("attention flash", shape, 0, fwd, () -> flash.forward(q, k, v, t, heads)));
                rows.add(measure("attention flash backward", shape, 0, 2.5 * fwd, () -> flash.backward(dOut, q, k, v, out, lse, t, heads)));
                // The metric: forward then backward from its own out and lse, FLOPs 3.5 × the forward's.
                rows.add(measure("attention flash fwd+bwd", shape, 0, 3.5 * fwd, () -> {
                    Backend.AttentionOut fo = flash.forward(q, k, v, t, heads);
                    flash.backward(dOut, q, k, v, fo.out(), fo.lse(), t, heads);
                }));
                for (int variant : otherVariants("flashfwd")) withVariant("flashfwd", variant, tag -> {
                    rows.add(measure("attention flash" + tag, shape, 0, fwd, () -> flash.forward(q, k, v, t, heads)));
                    rows.add(measure("attention flash fwd+bwd" + tag, shape, 0, 3.5 * fwd, () -> {
                        Backend.AttentionOut fo = flash.forward(q, k, v, t, heads);
                        flash.backward(dOut, q, k, v, fo.out(), fo.lse(), t, heads);
                    }));
                });
                for (int variant : otherVariants("flashbwd")) withVariant("flashbwd", variant, tag ->
                        rows.add(measure("attention flash backward" + tag, shape, 0, 2.5 * fwd,
                                () -> flash.backward(dOut, q, k, v, out, lse, t, heads))));
            }
        } else {
            Backend.AttentionOut o = be.attention(q, k, v, t, heads);
            Tensor out = keep(o.out()), lse = keep(o.lse());
            rows.add(measure("attention", shape, 0, fwd, () -> be.attention(q, k, v, t, heads)));
            rows.add(measure("attention backward", shape, 0, 2.5 * fwd, () -> be.attentionBackward(dOut, q, k, v, out, lse, t, heads)));
        }
        freeAll();
    }

    /** Device memory one attention forward + backward takes, beyond its inputs: linear in T (no T×T buffer). */
    public record MemoryRow(int seqLen, int batch, int heads, int headDim, long attentionScratchBytes, long inputBytes, long scoresBytesIfMaterialized) {}

    /**
     * Flash attention at T = 2048 and 8192 (B = 4, H = 16, Dh = 64): the scratch bytes it allocates (outputs, lse,
     * the backward's temporaries; allocator size classes included) and its speed at the longer context. CUDA only.
     */
    public List<MemoryRow> attentionMemory(List<Row> rows) {
        List<MemoryRow> out = new ArrayList<>();
        if (!(be instanceof CudaBackend cuda) || (only != null && !only.matcher("attention flash").find())) return out;
        int b = 4, h = 16, dh = 64;
        for (int t : new int[] {2048, 8192}) {
            int n = b * t;
            Tensor q = persistent(be.activationType(), n, h * dh), k = persistent(be.activationType(), n, h * dh),
                    v = persistent(be.activationType(), n, h * dh), dOut = persistent(be.activationType(), n, h * dh);
            be.releaseScratch();
            long before = cuda.memoryStats().scratchInUseBytes();
            Backend.AttentionOut o = be.attention(q, k, v, t, h);
            be.attentionBackward(dOut, q, k, v, o.out(), o.lse(), t, h);
            be.synchronize();
            long used = cuda.memoryStats().scratchInUseBytes() - before;
            out.add(new MemoryRow(t, b, h, dh, used, 4L * n * h * dh * be.activationType().bytes(), 4L * b * h * t * t));
            if (t > s.seqLen()) {
                Tensor outKeep = keep(o.out()), lseKeep = keep(o.lse());
                double fwd = 0.5 * 4.0 * b * h * (double) t * t * dh;
                String shape = "B" + b + " H" + h + " T" + t + " Dh" + dh;
                rows.add(measure("attention flash", shape, 0, fwd, () -> be.attention(q, k, v, t, h)));
                rows.add(measure("attention flash backward", shape, 0, 2.5 * fwd, () -> be.attentionBackward(dOut, q, k, v, outKeep, lseKeep, t, h)));
            }
            freeAll();
        }
        return out;
    }

    private void optimizer(List<Row> rows) {
        int p = (int) s.optimizerParams();
        Tensor master = persistent(DType.F32, p), grad = persistent(DType.F32, p), m = persistent(DType.F32, p);
        Tensor v = be.allocate(DType.F32, p); // zero second moment: the update stays finite
        owned.add(v);
        Tensor compute = persistent(be.activationType(), p);
        Backend.AdamWStep step = new Backend.AdamWStep(1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1f);
        double bytes = 4.0 * p * 7 + (double) be.activationType().bytes() * p; // master, m, v read+write; grad read; compute write
        rows.add(measure("adamW", "[" + p + "]", bytes, 0, () -> be.adamW(master, grad, m, v, compute, step)));
        if (be instanceof CudaBackend cuda) {
            // The kernels alone (the result stays on the device), then the op as training calls it (one download).
            rows.add(measure("sumOfSquares", "[" + p + "]", 4.0 * p, 0, () -> cuda.sumOfSquaresOnDevice(List.of(grad))));
            rows.add(measure("sumOfSquares + download", "[" + p + "]", 4.0 * p, 0, () -> be.sumOfSquares(List.of(grad))));
        } else {
            rows.add(measure("sumOfSquares", "[" + p + "]", 4.0 * p, 0, () -> be.sumOfSquares(List.of(grad))));
        }
        freeAll();
    }

    /** The non-default variants of a kernel family on CUDA ({@link CudaBackend#KERNEL_VARIANTS}); none on the CPU. */
    private List<Integer> otherVariants(String family) {
        if (!(be instanceof CudaBackend cuda)) return List.of();
        int current = cuda.kernelVariant(family);
        return CudaBackend.KERNEL_VARIANTS.get(family).stream().filter(v -> v != current && !CudaBackend.variantSkipped(family, v)).toList();
    }

    /** Runs {@code body} with {@code family} at {@code variant} (restored afterwards); body gets the row-name tag. */
    private void withVariant(String family, int variant, java.util.function.Consumer<String> body) {
        ((CudaBackend) be).withKernelVariant(family, variant, () -> body.accept(" [" + family + " v" + variant + "]"));
    }

    // ---------------------------------------------------------------- measurement

    /** Work per timed sample of back-to-back calls (milliseconds), at most 50 calls. */
    static final double SAMPLE_MS = 2.0;

    /** Median per-call time over samples of back-to-back calls, after 3 warm-up calls; at least {@code minRuns} samples, more while under ~0.5 s. */
    /** The row of one op, timed; null if {@link #withOnly} leaves it out (the caller's list drops it at the end). */
    private Row measure(String op, String shape, double bytes, double flops, Runnable work) {
        if (only != null && !op.startsWith("ceiling: ") && !only.matcher(op).find()) return null;
        for (int i = 0; i < 3; i++) {
            work.run();
            be.releaseScratch();
        }
        be.synchronize();
        // One call between two events would also time the host's launch overhead while the GPU idles; a training
        // step keeps the stream full, so time enough back-to-back calls to fill ~2 ms and divide. (Until run 15 it was
        // ~0.5 ms: a sample's first launch, made while the GPU waits, then weighed up to 1/5 in an attention row.)
        int reps = (int) Math.max(1, Math.min(50, Math.ceil(SAMPLE_MS / Math.max(1e-3, timeOnce(work, 1)))));
        List<Double> times = new ArrayList<>();
        double total = 0;
        while (times.size() < minRuns || (total < 500 && times.size() < 200)) {
            double ms = timeOnce(work, reps);
            times.add(ms);
            total += ms * reps;
            if (times.size() >= minRuns && total > 5000) break;
        }
        double median = median(times);
        double kernel = Double.NaN;
        if (be instanceof CudaBackend cuda) {
            try {
                kernel = kernelMillis(cuda, op, work, reps);
            } catch (RuntimeException e) { // a diagnostic column: never lose the row for it
                System.err.println("bench: kernel-only time of " + op + " failed: " + e.getMessage());
            }
        }
        double gbs = bytes > 0 ? bytes / (median / 1e3) / 1e9 : Double.NaN;
        double tfs = flops > 0 ? flops / (median / 1e3) / 1e12 : Double.NaN;
        double frac = bytes > 0 ? gbs / copyGbPerS : tfs / gemmTflopPerS;
        if (progress != null)
            progress.printf(Locale.ROOT, "bench: %s %s: %.4f ms%s%n", op, shape, median,
                    Double.isFinite(frac) ? String.format(Locale.ROOT, ", %.0f %% of the ceiling", 100 * frac) : "");
        return new Row(op, shape, median, kernel, bytes, flops, gbs, tfs, frac, frac * median / kernel, times.size());
    }

    /**
     * The kernels' own per-call time: {@code reps} calls queued behind {@code timing_spin_ns}, which holds the stream
     * until the host has launched them all, then timed between an event right after the spin and one after the last
     * call. Median of a few samples; NaN when the host could not queue even one call ahead of the spin (the launch
     * queue full), which a warning line reports.
     */
    private double kernelMillis(CudaBackend cuda, String op, Runnable work, int reps) {
        long hold = 2_000_000; // ns; grown (and the calls per sample cut) when the host could not queue them in time
        int failures = 0;
        List<Double> times = new ArrayList<>();
        while (times.size() < Math.max(5, minRuns / 4)) {
            int n = reps;
            CudaBackend.QueuedTime q = cuda.timeQueued(() -> {
                for (int r = 0; r < n; r++) {
                    work.run();
                    be.releaseScratch();
                }
            }, hold);
            if (q.queuedAhead()) {
                times.add((double) q.millis() / n);
                continue;
            }
            // An op that synchronizes with the host (a download) can never be queued ahead: give up after a few tries.
            if (++failures >= 4) {
                System.err.println("bench: " + op + ": the calls could not be queued ahead of the GPU (an op that"
                        + " waits for the GPU?); kernel time left empty");
                return Double.NaN;
            }
            hold = Math.min(hold * 4, 50_000_000L);
            reps = Math.max(1, reps / 2);
        }
        return median(times);
    }

    private static double median(List<Double> values) {
        double[] sorted = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return sorted.length % 2 == 1 ? sorted[sorted.length / 2] : 0.5 * (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]);
    }

    /** Milliseconds per call of {@code reps} back-to-back calls (scratch is recycled between calls, on one stream). */
    private double timeOnce(Runnable work, int reps) {
        Runnable batch = () -> {
            for (int r = 0; r < reps; r++) {
                work.run();
                be.releaseScratch();
            }
        };
        if (be instanceof CudaBackend cuda) return cuda.time(batch) / reps;
        long t0 = System.nanoTime();
        batch.run();
        be.synchronize();
        return (System.nanoTime() - t0) / 1e6 / reps;
    }

    private Tensor persistent(DType dtype, int... shape) {
        Tensor t = be.allocate(dtype, shape);
        owned.add(t);
        // Upload at most 4M random values and replicate them on the device: huge tensors need no huge host arrays.
        Tensor flat = t.reshape(Math.toIntExact(t.numel()));
        int n = flat.dim(0), chunk = Math.min(n, 1 << 22);
        if (chunk == 0) return t;
        float[] pattern = new float[chunk];
        for (int i = 0; i < chunk; i++) pattern[i] = (float) (random.nextGaussian() * 0.5);
        be.upload(flat.rows(0, chunk), pattern);
        for (int i = chunk; i < n; i += chunk) {
            int len = Math.min(chunk, n - i);
            be.copy(flat.rows(0, len), flat.rows(i, len));
        }
        return t;
    }

    /** A zero-filled persistent tensor (for the copy ceiling, where values do not matter). */
    private Tensor zeros(DType dtype, int... shape) {
        Tensor t = be.allocate(dtype, shape);
        owned.add(t);
        return t;
    }

    private Tensor keep(Tensor scratch) {
        Tensor t = be.allocate(scratch.dtype(), scratch.shape());
        owned.add(t);
        be.copy(scratch, t);
        return t;
    }

    private void freeAll() {
        be.releaseScratch();
        for (Tensor t : owned) be.free(t);
        owned.clear();
    }

    /** Markdown table of the rows. */
    public static String markdown(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| op | shape | median ms | GB/s | TFLOP/s | % of ceiling | kernel ms | % of ceiling (kernel) | runs |\n"
                + "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Row r : rows) {
            sb.append(String.format("| %s | %s | %.4f | %s | %s | %s | %s | %s | %d |%n", r.op(), r.shape(), r.medianMs(), fmt(r.gbPerS(), "%.1f"),
                    fmt(r.tflopPerS(), "%.2f"), fmt(100 * r.ceilingFraction(), "%.1f"), fmt(r.kernelMs(), "%.4f"),
                    fmt(100 * r.kernelFraction(), "%.1f"), r.runs()));
        }
        return sb.toString();
    }

    /**
     * Each kernel-variant row (op name ending in " [family vN]") beside the row of the same op without the tag: both
     * kernel times and stream times and the speed-up (default ÷ variant, above 1 = the variant is faster). Empty
     * when no variant was measured.
     */
    public static String variantsMarkdown(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        for (Row v : rows) {
            int tag = v.op().lastIndexOf(" [");
            if (tag < 0 || !v.op().endsWith("]")) continue;
            String baseOp = v.op().substring(0, tag);
            Row base = rows.stream().filter(r -> r.op().equals(baseOp) && r.shape().equals(v.shape())).findFirst().orElse(null);
            if (base == null) continue;
            if (sb.isEmpty())
                sb.append("| op | shape | variant | default kernel ms | variant kernel ms | kernel speed-up | default stream ms | variant stream ms | stream speed-up |\n"
                        + "|---|---|---|---:|---:|---:|---:|---:|---:|\n");
            sb.append(String.format("| %s | %s | %s | %s | %s | %s | %.4f | %.4f | %.2f |%n", baseOp, v.shape(), v.op().substring(tag + 2, v.op().length() - 1),
                    fmt(base.kernelMs(), "%.4f"), fmt(v.kernelMs(), "%.4f"), fmt(base.kernelMs() / v.kernelMs(), "%.2f"),
                    base.medianMs(), v.medianMs(), base.medianMs() / v.medianMs()));
        }
        return sb.toString();
    }

    private static String fmt(double v, String f) { return Double.isNaN(v) || Double.isInfinite(v) ? "" : String.format(f, v); }
}
