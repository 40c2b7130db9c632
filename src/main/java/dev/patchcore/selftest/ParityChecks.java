package dev.patchcore.selftest;

import dev.patchcore.config.Rope;
import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.backend.Backend;
import dev.patchcore.backend.DecodingBackend;
import dev.patchcore.backend.cuda.Bf16;
import dev.patchcore.backend.cuda.CudaBackend;
import dev.patchcore.backend.cuda.CudaFlashAttention;
import dev.patchcore.backend.cuda.CudaRmsNorm;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.KvCache;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Every {@link Backend} op of a backend under test compared with a reference backend (the CPU one) on fresh random
 * non-zero inputs: relative error ‖out − ref‖ / ‖ref‖ against 1e-5 for F32 outputs and 1e-2 for BF16 ones. Both sides
 * get identical inputs: values bound for a BF16 tensor are rounded to bf16 on the host first. Accumulated outputs
 * (dW, dGain, dTable) start from the same random values, so the accumulation itself is checked. The test backend
 * should poison its scratch with NaN ({@link CudaBackend#setPoisonScratch}) so unwritten outputs fail.
 *
 * <p>Used by the {@code selftest} command and by the JUnit parity test.
 */
public final class ParityChecks {
    public static final double F32_THRESHOLD = 1e-5;
    public static final double BF16_THRESHOLD = 1e-2;

    /** One named check producing one or more result rows. */
    public record Check(String name, Consumer<List<CheckResult>> body) {}

    private final Backend test, ref;
    private final SplittableRandom random;
    private final boolean large;

    /** {@code large}: include the big shapes (4096×1024×1024 GEMM, attention at T = 1000) — fine on a GPU machine. */
    public ParityChecks(Backend test, Backend ref, long seed, boolean large) {
        this.test = test;
        this.ref = ref;
        this.random = new SplittableRandom(seed);
        this.large = large;
    }

    /** Runs one check; an exception becomes a FAIL row naming it. Scratch of both backends is released afterwards. */
    public List<CheckResult> run(Check c) {
        List<CheckResult> rows = new ArrayList<>();
        try {
            c.body().accept(rows);
            if (rows.isEmpty()) rows.add(CheckResult.failed(c.name(), "-", "-", "check produced no comparison"));
        } catch (RuntimeException | AssertionError e) {
            rows.add(CheckResult.failed(c.name(), "-", "-", e.getClass().getSimpleName() + ": " + e.getMessage()));
        } finally {
            try {
                test.synchronize();
            } catch (RuntimeException e) {
                rows.add(CheckResult.failed(c.name(), "-", "-", "device error after the check: " + e.getMessage()));
            }
            test.releaseScratch();
            ref.releaseScratch();
        }
        return rows;
    }

    public List<CheckResult> runAll() {
        List<CheckResult> all = new ArrayList<>();
        for (Check c : checks()) all.addAll(run(c));
        return all;
    }

    public List<Check> checks() {
        List<Check> out = new ArrayList<>();
        out.add(new Check("transfer", this::transfer));
        out.add(new Check("elementwise", this::elementwise));
        int[][] gemms = large
                ? new int[][] {{1, 1, 1}, {17, 33, 65}, {64, 256, 128}, {257, 1024, 2752}, {4096, 1024, 1024}}
                : new int[][] {{1, 1, 1}, {17, 33, 65}, {64, 256, 128}};
        for (int[] g : gemms) out.add(new Check("matmul " + g[0] + "x" + g[1] + "x" + g[2], rows -> matmul(rows, g[0], g[1], g[2])));
        out.add(new Check("matmul twice 256x512x512", rows -> matmulTwice(rows, 256, 512, 512)));
        for (int k : new int[] {1, 2, 4, 8}) {
            out.add(new Check("patchEmbed K=" + k, rows -> patchEmbed(rows, k, 3, 13, 70, 97)));
            out.add(new Check("patchEmbed K=" + k + " large", rows -> patchEmbed(rows, k, 4, 2048 / k * (large ? 2 : 1), 128, 50)));
            // A real vocabulary: token ids need 15 bits, so the packed-key radix sort runs two 8/7-bit passes.
            out.add(new Check("patchEmbed K=" + k + " V=32000", rows -> patchEmbed(rows, k, 2, 1024 / k, 64, 32000)));
        }
        for (int[] s : new int[][] {{37, 96}, {large ? 4096 : 256, 1024}}) out.add(new Check("rmsNorm " + s[0] + "x" + s[1], rows -> rmsNorm(rows, s[0], s[1])));
        out.add(new Check("rmsNorm backward repeated 300x1000", rows -> rmsNormBackwardRepeated(rows, 300, 1000, false)));
        // Fused with the residual stream's gradient add (Tape.addRmsNorm): odd width (the backward and an add) and 1024.
        for (int[] s : new int[][] {{300, 1000}, {256, 1024}})
            out.add(new Check("rmsNorm backward + residual grad " + s[0] + "x" + s[1], rows -> rmsNormBackwardRepeated(rows, s[0], s[1], true)));
        for (int dh : new int[] {64, 128}) out.add(new Check("rope Dh=" + dh, rows -> rope(rows, 2, 17, 3, dh, Rope.of(10000f))));
        for (int dh : new int[] {20, 64})  // LLaMA-3.2's scaled frequencies (a device table on CUDA): scalar and vector paths
            out.add(new Check("rope llama3 Dh=" + dh, rows -> rope(rows, 2, 300, 2, dh, LLAMA32_ROPE)));
        int[] ts = large ? new int[] {1, 17, 128, 1000, 2048} : new int[] {1, 17, 128};
        for (int dh : new int[] {64, 80, 96, 128}) {
            for (int t : ts) {
                out.add(new Check("attention T=" + t + " Dh=" + dh, rows -> attention(rows, t, dh, false)));
                if (t > 1) out.add(new Check("attention causal T=" + t + " Dh=" + dh, rows -> causality(rows, t, dh)));
                if (test instanceof CudaBackend) out.add(new Check("attention(simple) T=" + t + " Dh=" + dh, rows -> attention(rows, t, dh, true)));
            }
        }
        // More (query tile, head) items than SMs, so the default persistent forward on Hopper runs several per CTA;
        // T = 300 gives items of 3, 2 and 1 key tiles (of 3 and 2 with the 192-row items at D = 64).
        if (test instanceof CudaBackend)
            for (int dh : new int[] {64, 128})
                for (int[] bht : large ? new int[][] {{2, 64, 300}, {2, 64, 1000}} : new int[][] {{2, 64, 300}})
                    out.add(new Check("attention B" + bht[0] + " H" + bht[1] + " T=" + bht[2] + " Dh=" + dh,
                            rows -> attention(rows, bht[2], dh, false, bht[0], bht[1])));
        out.add(new Check("swiglu", rows -> swiglu(rows, 37, 688)));
        for (int k : new int[] {1, 2, 4, 8}) {
            out.add(new Check("crossEntropyK K=" + k, rows -> crossEntropy(rows, 13, 1000, 1000, k)));
            out.add(new Check("crossEntropyK K=" + k + " V=50257", rows -> crossEntropy(rows, 5, 50257, 50257, k)));
            out.add(new Check("crossEntropyK K=" + k + " V=50257 padded to 50304", rows -> crossEntropy(rows, 5, 50257, 50304, k)));
        }
        out.add(new Check("sumOfSquares", this::sumOfSquares));
        out.add(new Check("countAbsAbove", this::countAbsAbove));
        out.add(new Check("adamW", this::adamW));
        if (test instanceof CudaBackend) out.add(new Check("allocator reuse", this::allocatorReuse));
        List<Check> last = new ArrayList<>();  // the decode variants' rows, after the decoding checks below
        if (test instanceof CudaBackend cuda) out.addAll(variantChecks(cuda, last));
        // Last: the newest kernels (grouped-query heads, generation's; written without a GPU): one that faults ends the context.
        for (int[] kg : new int[][] {{1, 2}, {2, 4}, {4, 8}})
            out.add(new Check("repeatHeads kv=" + kg[0] + " groups=" + kg[1], rows -> repeatHeads(rows, 37, kg[0], kg[1], 64)));
        if (test instanceof DecodingBackend td && ref instanceof DecodingBackend rd) out.addAll(decodingChecks(td, rd));
        out.addAll(last);
        return out;
    }

    /**
     * Generation's KV-cache ops: RoPE from a position past 0, and attention of new queries over a cache whose rows
     * after the last position hold large values no query may see. The cases cross the decode kernel's 128-key
     * chunks (128, 129 and 300 keys; 17 and 60 queries whose first rows see no key of the last chunk) and include a
     * window read from position 0 (on CUDA, the training kernels'); head dimensions of every preset, 20 (no 16-byte
     * loads), 160 and 256 (the most the decode kernel takes); and one with peaked scores (queries 8× larger). Those have
     * 3 heads of their own; grouped-query caches (6 query heads over 2 key/value heads, 4 over 1) hold fewer heads than
     * the queries, from position 0 (repeated for the training kernels on CUDA) and after it. Then a whole model: the
     * cached decode's logits against the same backend's training forward.
     */
    private List<Check> decodingChecks(DecodingBackend td, DecodingBackend rd) {
        List<Check> out = new ArrayList<>();
        for (int start : new int[] {0, 7, 1000, 4093})
            out.add(new Check("ropeAt start=" + start, rows -> ropeAt(rows, td, rd, start, Rope.of(10000f))));
        out.add(new Check("ropeAt llama3 start=5000", rows -> ropeAt(rows, td, rd, 5000, LLAMA32_ROPE)));
        List<int[]> cases = new ArrayList<>(List.of(new int[] {300, 0, 17}, new int[] {300, 0, 1}, new int[] {300, 127, 1},
                new int[] {300, 128, 1}, new int[] {300, 299, 1}, new int[] {300, 200, 7}, new int[] {300, 120, 17},
                new int[] {300, 100, 60}));
        if (large) cases.addAll(List.of(new int[] {2048, 2047, 1}, new int[] {2048, 1000, 3}));
        for (int dh : new int[] {20, 32, 64, 80, 96, 128, 160, 256})
            for (int[] c : cases)
                out.add(new Check("attendCached cap=" + c[0] + " start=" + c[1] + " n=" + c[2] + " Dh=" + dh,
                        rows -> attendCached(rows, td, rd, c[0], c[1], c[2], 3, 3, dh, 1f)));
        for (int dh : new int[] {64, 128})
            out.add(new Check("attendCached peaked cap=300 start=250 n=3 Dh=" + dh, rows -> attendCached(rows, td, rd, 300, 250, 3, 3, 3, dh, 8f)));
        for (int[] hk : new int[][] {{6, 2}, {4, 1}})
            for (int dh : new int[] {20, 64, 128})
                for (int[] c : new int[][] {{300, 0, 17}, {300, 0, 1}, {300, 128, 1}, {300, 299, 1}, {300, 120, 17}})
                    out.add(new Check("attendCached H=" + hk[0] + " kv=" + hk[1] + " cap=" + c[0] + " start=" + c[1] + " n=" + c[2]
                            + " Dh=" + dh, rows -> attendCached(rows, td, rd, c[0], c[1], c[2], hk[0], hk[1], dh, 1f)));
        out.add(new Check("generation: cached decode = forward", rows -> decodeMatchesForward(rows, td, 2)));
        out.add(new Check("generation: cached decode = forward, grouped-query", rows -> decodeMatchesForward(rows, td, 1)));
        return out;
    }

    private void ropeAt(List<CheckResult> rows, DecodingBackend td, DecodingBackend rd, int start, Rope rope) {
        int n = 5, heads = 3, dh = 64;
        Twin x = input(test.activationType(), n, heads * dh);
        compare(rows, rope.scaled() ? "ropeAt llama3" : "ropeAt", "n" + n + " H" + heads + " Dh" + dh + " from " + start,
                td.ropeAt(x.t, start, heads, rope), rd.ropeAt(x.r, start, heads, rope));
    }

    private void attendCached(List<CheckResult> rows, DecodingBackend td, DecodingBackend rd, int capacity, int start, int n,
                              int heads, int kvHeads, int dh, float queryScale) {
        Twin[] qkv = cacheInputs(capacity, start, n, heads, kvHeads, dh, queryScale);
        Twin q = qkv[0], keys = qkv[1], values = qkv[2];
        compare(rows, "attendCached", cacheShape(capacity, start, n, heads, kvHeads, dh) + (queryScale != 1f ? " q×" + (int) queryScale : ""),
                td.attendCached(q.t, keys.t, values.t, start, heads, kvHeads),
                rd.attendCached(q.r, keys.r, values.r, start, heads, kvHeads));
    }

    /**
     * Queries [n, H·Dh] and a cache of keys and values [capacity, KH·Dh] whose rows from position start + n on hold
     * values 30× larger (they would dominate any softmax they entered).
     */
    private Twin[] cacheInputs(int capacity, int start, int n, int heads, int kvHeads, int dh, float queryScale) {
        int width = heads * dh, kvWidth = kvHeads * dh, seen = start + n;
        float[] k = new float[capacity * kvWidth], v = new float[capacity * kvWidth];
        for (int i = 0; i < k.length; i++) {
            float scale = i < seen * kvWidth ? 1f : 30f;  // rows no query sees: would dominate any softmax they entered
            k[i] = (float) ((random.nextBoolean() ? 1 : -1) * (0.05 + 0.95 * random.nextDouble()) * scale);
            v[i] = (float) ((random.nextBoolean() ? 1 : -1) * (0.05 + 0.95 * random.nextDouble()) * scale);
        }
        return new Twin[] {input(test.activationType(), queryScale, n, width), twin(test.activationType(), k, capacity, kvWidth),
                twin(test.activationType(), v, capacity, kvWidth)};
    }

    private static String cacheShape(int capacity, int start, int n, int heads, int kvHeads, int dh) {
        return "cache " + capacity + " from " + start + " n" + n + " H" + heads + (kvHeads != heads ? " KV" + kvHeads : "") + " Dh" + dh;
    }

    /**
     * Generation's cached attention through two decode variants on the same grouped-query inputs: bitwise equal (every
     * G does each head's arithmetic in the same order). Groups of 3, 4 and 8 (a block per key/value head in variant 2)
     * and 12 (blocks of 6); one chunk (the block writes the output), two (17 queries, the first of which see no key of
     * the second) and three (partials and the merge); Dh 20 (element loads), 64 and 128.
     */
    private void attendCachedIdentity(List<CheckResult> rows, CudaBackend cuda, int a, int b) {
        for (int[] hk : new int[][] {{6, 2}, {4, 1}, {8, 1}, {12, 1}})
            for (int dh : new int[] {20, 64, 128})
                for (int[] c : new int[][] {{300, 127, 1}, {300, 120, 17}, {300, 299, 1}}) {
                    int capacity = c[0], start = c[1], n = c[2], heads = hk[0], kvHeads = hk[1];
                    Twin[] qkv = cacheInputs(capacity, start, n, heads, kvHeads, dh, 1f);
                    List<Tensor> outs = new ArrayList<>();
                    for (int v : new int[] {a, b}) {
                        cuda.setKernelVariant("decode", v);
                        outs.add(cuda.attendCached(qkv[0].t, qkv[1].t, qkv[2].t, start, heads, kvHeads));
                    }
                    bitwise(rows, "attendCached", cacheShape(capacity, start, n, heads, kvHeads, dh), outs.get(0), outs.get(1));
                }
    }

    /**
     * A two-layer model (Dh 64, context 200, random weights with peaked attention) on the test backend: the logits of a 100-token prompt's
     * last position and then of 50 tokens decoded one at a time (crossing 128 cached keys) against the rows of one
     * training forward over all 150 tokens. Both sides run on the test backend, so on the GPU they differ only where
     * the kernels do (the decode kernels and one-row GEMMs against the flash kernels and full GEMMs), each rounding to
     * bf16: allowed twice the bf16 threshold, as errors pass through two layers.
     */
    private void decodeMatchesForward(List<CheckResult> rows, DecodingBackend be, int kvHeads) {
        ModelConfig config = new ModelConfig("parity", 97, 128, 176, 2, 2, 200, 10000f, 1e-5f, kvHeads);
        int total = 150, prompt = 100;
        int[] ids = random.ints(total, 0, config.vocabSize()).toArray();
        LlamaModel model = LlamaModel.forInference(be, config);
        try (KvCache cache = new KvCache(be, config)) {
            for (Parameter p : model.parameters()) {  // weights large enough for peaked attention (init's 0.02 gives uniform)
                float scale = p.name().endsWith("q_proj.weight") || p.name().endsWith("k_proj.weight") ? 0.3f : 0.1f;
                float[] w = new float[Math.toIntExact(p.numel())];
                for (int i = 0; i < w.length; i++) w[i] = p.shape().length == 2 ? (float) random.nextGaussian() * scale : 1f;
                p.load(be, w);
            }
            Tensor tokens = be.scratch(DType.I32, 1, total);
            be.uploadInts(tokens, ids);
            Tape tape = new Tape(be);
            float[] all = be.download(model.forward(tape, tokens, 1, 1).value());
            tape.clear();
            int stride = config.paddedVocab(), decoded = total - prompt + 1;
            float[] want = Arrays.copyOfRange(all, (prompt - 1) * stride, total * stride);
            float[] got = new float[decoded * stride];
            for (int r = 0, read = 0; r < decoded; r++) {
                int len = r == 0 ? prompt : 1;
                Tensor piece = be.scratch(DType.I32, 1, len);
                be.uploadInts(piece, Arrays.copyOfRange(ids, read, read + len));
                read += len;
                System.arraycopy(be.download(model.decode(be, cache, piece)), 0, got, r * stride, stride);
            }
            double threshold = be.activationType() == DType.BF16 ? 2 * BF16_THRESHOLD : 10 * F32_THRESHOLD;
            rows.add(CheckResult.of("generation: cached decode logits vs forward", "2 layers, " + kvHeads + " kv heads, prompt " + prompt
                            + " + " + (decoded - 1),
                    be.activationType(), relErr(got, want), threshold));
        } finally {
            for (Parameter p : model.parameters()) p.free(be);
        }
    }

    /**
     * Kernel variants under evaluation ({@link CudaBackend#KERNEL_VARIANTS}): each non-default variant against the CPU
     * reference at the default's shapes plus shapes where every warp streams several rows, and bit-identity with the
     * default variant (the variants promise the same arithmetic). Checks of kernels written without a GPU that must run
     * at the very end (a fault ends the CUDA context) go to {@code last}.
     */
    private List<Check> variantChecks(CudaBackend cuda, List<Check> last) {
        List<Check> out = new ArrayList<>();
        for (var e : CudaBackend.KERNEL_VARIANTS.entrySet()) {
            String family = e.getKey();
            int base = e.getValue().getFirst();
            for (int v : e.getValue().subList(1, e.getValue().size())) {
                if (CudaBackend.variantSkipped(family, v)) continue;
                switch (family) {
                    case "flashbwd" -> {
                        // The default forward, then the backward through the variant (variant 2: the mma.sync bwd3
                        // kernels, where the default runs the wgmma kernels on Hopper).
                        for (int dh : new int[] {64, 128}) {
                            for (int t : large ? new int[] {1, 17, 64, 129, 1000, 2048} : new int[] {1, 17, 64, 129})
                                out.add(variant(cuda, family, v, "attention T=" + t + " Dh=" + dh, rows -> attention(rows, t, dh, false)));
                            out.add(variant(cuda, family, v, "attention backward error map Dh=" + dh, rows -> attentionBackwardErrorMap(rows, dh)));
                        }
                        // More (key block, head) CTAs than SMs; T = 300 gives key blocks of 5, 3 and 1 query tiles.
                        for (int[] bht : large ? new int[][] {{2, 64, 300}, {2, 64, 1000}} : new int[][] {{2, 64, 300}})
                            out.add(variant(cuda, family, v, "attention B" + bht[0] + " H" + bht[1] + " T=" + bht[2] + " Dh=64",
                                    rows -> attention(rows, bht[2], 64, false, bht[0], bht[1])));
                    }
                    case "flashfwd" -> {
                        // Forward through the variant, backward (the default kernels) from its out and lse.
                        for (int dh : new int[] {64, 128}) {
                            for (int t : large ? new int[] {1, 17, 64, 129, 1000, 2048} : new int[] {1, 17, 64, 129})
                                out.add(variant(cuda, family, v, "attention T=" + t + " Dh=" + dh, rows -> attention(rows, t, dh, false)));
                            out.add(variant(cuda, family, v, "attention causal T=300 Dh=" + dh, rows -> causality(rows, 300, dh)));
                            out.add(variant(cuda, family, v, "attention error map Dh=" + dh, rows -> attentionErrorMap(rows, dh)));
                        }
                        // More (query tile, head) items than SMs, so a persistent kernel (variants 1, 5, 6, 7) runs
                        // several per CTA; T = 300 gives items of 3, 2 and 1 key tiles.
                        for (int dh : new int[] {64, 128})
                            for (int[] bht : large ? new int[][] {{2, 64, 300}, {2, 64, 1000}} : new int[][] {{2, 64, 300}})
                                out.add(variant(cuda, family, v, "attention B" + bht[0] + " H" + bht[1] + " T=" + bht[2] + " Dh=" + dh,
                                        rows -> attention(rows, bht[2], dh, false, bht[0], bht[1])));
                    }
                    case "upload" -> {
                        out.add(variant(cuda, family, v, "transfer", this::transfer));
                        out.add(variant(cuda, family, v, "patchEmbed K=4", rows -> patchEmbed(rows, 4, 3, 13, 70, 97)));
                        out.add(variant(cuda, family, v, "crossEntropyK K=2", rows -> crossEntropy(rows, 13, 1000, 1000, 2)));
                        out.add(variant(cuda, family, v, "upload ordering", this::uploadOrdering));
                    }
                    case "launch" -> {
                        // Every launcher family through the other argument marshalling (flash attention has the most arguments).
                        out.add(variant(cuda, family, v, "elementwise", this::elementwise));
                        out.add(variant(cuda, family, v, "patchEmbed K=4", rows -> patchEmbed(rows, 4, 3, 13, 70, 97)));
                        out.add(variant(cuda, family, v, "patchEmbed K=1 V=32000", rows -> patchEmbed(rows, 1, 2, 1024, 64, 32000)));
                        out.add(variant(cuda, family, v, "rmsNorm 256x1024", rows -> rmsNorm(rows, 256, 1024)));
                        out.add(variant(cuda, family, v, "rope Dh=64", rows -> rope(rows, 2, 17, 3, 64, Rope.of(10000f))));
                        out.add(variant(cuda, family, v, "swiglu", rows -> swiglu(rows, 37, 688)));
                        out.add(variant(cuda, family, v, "crossEntropyK K=4", rows -> crossEntropy(rows, 13, 1000, 1000, 4)));
                        for (int dh : new int[] {64, 128}) {
                            out.add(variant(cuda, family, v, "attention T=128 Dh=" + dh, rows -> attention(rows, 128, dh, false)));
                            out.add(variant(cuda, family, v, "attention(simple) T=17 Dh=" + dh, rows -> attention(rows, 17, dh, true)));
                        }
                        out.add(variant(cuda, family, v, "sumOfSquares", this::sumOfSquares));
                        out.add(variant(cuda, family, v, "adamW", this::adamW));
                    }
                    case "decode" -> {
                        // Generation's cached attention (written without a GPU: in `last`, after the decoding checks),
                        // variant 2 serving the query heads of one key/value head in one block (the default, variant 1,
                        // gives every query head its own block): attendCached's shapes read after position 0 (a window
                        // from 0 goes to the training kernels whatever the variant), grouped-query (6 over 2 key/value
                        // heads, 4 over 1; multi-head runs the same kernel in both variants, checked with the decoding
                        // checks); then bitwise the default's outputs where variant 2 groups 3, 4, 8 and 6 (of 12)
                        // query heads a block.
                        if (!(ref instanceof DecodingBackend rd)) break;
                        List<int[]> cases = new ArrayList<>(List.of(new int[] {300, 127, 1}, new int[] {300, 128, 1},
                                new int[] {300, 299, 1}, new int[] {300, 120, 17}));
                        if (large) cases.addAll(List.of(new int[] {2048, 2047, 1}, new int[] {2048, 1000, 3}));
                        for (int[] hk : new int[][] {{6, 2}, {4, 1}})
                            for (int dh : new int[] {20, 64, 128})
                                for (int[] c : cases)
                                    last.add(variant(cuda, family, v, "attendCached H=" + hk[0] + " kv=" + hk[1] + " cap=" + c[0] + " start="
                                            + c[1] + " n=" + c[2] + " Dh=" + dh, rows -> attendCached(rows, cuda, rd, c[0], c[1], c[2], hk[0], hk[1], dh, 1f)));
                        last.add(variant(cuda, family, v, "attendCached = v" + base, rows -> attendCachedIdentity(rows, cuda, base, v)));
                    }
                    case "crossentropy" -> {
                        for (int k : new int[] {1, 2, 4, 8}) {
                            out.add(variant(cuda, family, v, "crossEntropyK K=" + k, rows -> crossEntropy(rows, 13, 1000, 1000, k)));
                            out.add(variant(cuda, family, v, "crossEntropyK K=" + k + " V=50257", rows -> crossEntropy(rows, 5, 50257, 50257, k)));
                            out.add(variant(cuda, family, v, "crossEntropyK K=" + k + " V=50257/50304", rows -> crossEntropy(rows, 5, 50257, 50304, k)));
                        }
                        // Many rows per SM at once, and the widest row variant 2 keeps on chip.
                        if (large) out.add(variant(cuda, family, v, "crossEntropyK 370M V=32000", rows -> crossEntropy(rows, 1024, 32000, 32000, 1)));
                        out.add(variant(cuda, family, v, "crossEntropyK V=80000", rows -> crossEntropy(rows, 7, 80000, 80000, 2)));
                        out.add(variant(cuda, family, v, "crossEntropyK = v" + base, rows -> crossEntropyIdentity(rows, cuda, base, v)));
                    }
                    case "patchembed" -> {
                        for (int k : new int[] {1, 2, 4, 8}) {
                            out.add(variant(cuda, family, v, "patchEmbed K=" + k, rows -> patchEmbed(rows, k, 3, 13, 70, 97)));
                            out.add(variant(cuda, family, v, "patchEmbed K=" + k + " V=32000", rows -> patchEmbed(rows, k, 2, 1024 / k, 64, 32000)));
                            // vocabulary 50: long runs of one token
                            out.add(variant(cuda, family, v, "patchEmbed K=" + k + " V=50", rows -> patchEmbed(rows, k, 6, 2048 / k, 64, 50)));
                        }
                        if (large) out.add(variant(cuda, family, v, "patchEmbed 370M K=1", rows -> patchEmbed(rows, 1, 4, 2048, 1024, 32000)));
                        out.add(variant(cuda, family, v, "patchEmbed = v" + base, rows -> patchEmbedIdentity(rows, cuda, base, v)));
                    }
                    case "rmsnorm" -> {
                        for (int[] s : new int[][] {{37, 96}, {300, 1000}, {6400, 1024}, {3000, 2048}})
                            out.add(variant(cuda, family, v, "rmsNorm " + s[0] + "x" + s[1], rows -> rmsNorm(rows, s[0], s[1])));
                        out.add(variant(cuda, family, v, "rmsNorm = v" + base, rows -> rmsNormIdentity(rows, cuda, base, v)));
                    }
                    case "rmsnormbwd" -> {
                        // One block (one reducer), a few blocks, odd widths, both kernel widths, and the 370M shape.
                        // Team kernels (variants 3-8): teams of 3, 5 and 7 warps with tails of 3 and 1 rows (1003x768,
                        // 41x1280, 29x1792). 32768 rows: ~15 batches per team, so variant 5's 3-stage ring wraps several times.
                        for (int[] s : large ? new int[][] {{1, 8}, {37, 96}, {300, 1000}, {1003, 768}, {41, 1280}, {29, 1792}, {6400, 1024},
                                        {3000, 2048}, {8192, 1024}, {32768, 1024}}
                                : new int[][] {{1, 8}, {37, 96}, {300, 1000}, {1003, 768}, {41, 1280}, {29, 1792}, {6400, 1024}, {3000, 2048}})
                        {
                            out.add(variant(cuda, family, v, "rmsNorm backward " + s[0] + "x" + s[1], rows -> rmsNormBackwardRepeated(rows, s[0], s[1], false)));
                            // rmsNormBackwardAccumulate: the variant's accumulating kernel (v5 and odd or wide rows: backward + add)
                            out.add(variant(cuda, family, v, "rmsNorm backward + residual grad " + s[0] + "x" + s[1],
                                    rows -> rmsNormBackwardRepeated(rows, s[0], s[1], true)));
                        }
                        // Variant 2 moves only the gain-gradient reduce into the same kernel: its dx is bitwise the default's.
                        // Its gain gradient is not (H100 run 16): the last blocks add the partial rows in interleaved groups
                        // and a tree, the default's reduce kernel in 32 groups summed in order; both are fixed orders, so it
                        // is checked against the CPU and run to run above. (The team kernels, 3 and 4, sum the dot products
                        // in another order: CPU parity and run-to-run identity only.)
                        if (v == CudaRmsNorm.BACKWARD_FUSED_REDUCE)
                            out.add(variant(cuda, family, v, "rmsNorm backward dx = v" + base, rows -> rmsNormBackwardIdentity(rows, cuda, base, v, false)));
                        // Variant 5 is variant 3's arithmetic fed by bulk copies: its dx is bitwise variant 3's (its gain gradient is
                        // not: the grids differ), so a copy or ring fault shows apart from an arithmetic one.
                        if (v == CudaRmsNorm.BACKWARD_BULK && cuda.computeCapabilityMajor() >= 9
                                && !CudaBackend.variantSkipped(family, CudaRmsNorm.BACKWARD_TEAMS_R2))
                            out.add(variant(cuda, family, v, "rmsNorm backward dx = v" + CudaRmsNorm.BACKWARD_TEAMS_R2,
                                    rows -> rmsNormBackwardIdentity(rows, cuda, CudaRmsNorm.BACKWARD_TEAMS_R2, v, false)));
                        // Variants 6 (variant 3 + the reduce in its last blocks), 7 (variant 3 loading each team's next
                        // batch early) and 8 (7 + 6's reduce) keep variant 3's arithmetic per row: dx bitwise. Their gain
                        // gradients are summed in other fixed orders (6, 8: the last blocks' tree; 7, 8: other blocks'
                        // partial rows), so CPU parity only.
                        if ((v == CudaRmsNorm.BACKWARD_TEAMS_FUSED || v == CudaRmsNorm.BACKWARD_TEAMS_PREFETCH
                                || v == CudaRmsNorm.BACKWARD_TEAMS_PREFETCH_FUSED)
                                && !CudaBackend.variantSkipped(family, CudaRmsNorm.BACKWARD_TEAMS_R2))
                            out.add(variant(cuda, family, v, "rmsNorm backward dx = v" + CudaRmsNorm.BACKWARD_TEAMS_R2,
                                    rows -> rmsNormBackwardIdentity(rows, cuda, CudaRmsNorm.BACKWARD_TEAMS_R2, v, false)));
                    }
                    default -> throw new IllegalStateException("no selftest for kernel family " + family);
                }
            }
        }
        return out;
    }

    /** Runs {@code body} with {@code family} set to {@code variant} (restored afterwards); its rows' ops get a " vN" suffix. */
    private static Check variant(CudaBackend cuda, String family, int variant, String name, Consumer<List<CheckResult>> body) {
        return new Check(name + " [" + family + " v" + variant + "]", rows -> {
            int from = rows.size();
            try {
                cuda.withKernelVariant(family, variant, () -> body.accept(rows));
            } finally {
                for (int i = from; i < rows.size(); i++) {
                    CheckResult r = rows.get(i);
                    rows.set(i, new CheckResult(r.op() + " v" + variant, r.shape(), r.dtype(), r.relErr(), r.threshold(), r.passed(), r.note()));
                }
            }
        });
    }

    /**
     * Five uploads into the same token tensor, each followed at once by a kernel that reads it, with no wait in
     * between (what a training step does per micro-batch): every result must match the CPU on its own ids, so no
     * upload overtook the kernel queued before it and no staging buffer was refilled while its copy was pending.
     */
    private void uploadOrdering(List<CheckResult> rows) {
        int batch = 2, t = 300, d = 64, vocab = 500;
        Twin table = input(test.activationType(), vocab, d);
        Tensor tokens = test.scratch(DType.I32, batch, t), tokensRef = ref.scratch(DType.I32, batch, t);
        List<Tensor> outs = new ArrayList<>(), refs = new ArrayList<>();
        for (int round = 0; round < 5; round++) {
            int[] ids = new int[batch * t];
            for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
            test.uploadInts(tokens, ids);
            outs.add(test.patchEmbed(table.t, tokens, 1));
            ref.uploadInts(tokensRef, ids);
            refs.add(ref.patchEmbed(table.r, tokensRef, 1));
        }
        for (int round = 0; round < 5; round++)
            compare(rows, "upload then read, round " + round, new int[] {batch * t, d}, outs.get(round), refs.get(round));
    }

    /** RMSNorm forward, fused add and backward (dx and the accumulated dGain) of two variants on the same inputs: bitwise equal. */
    private void rmsNormIdentity(List<CheckResult> rows, CudaBackend cuda, int a, int b) {
        DType act = test.activationType();
        // 6400 rows: ≥ 3 rows per warp of the pipelined kernels' persistent grid at d ≤ 1024 (2 blocks × 132 SMs × 8 warps).
        for (int[] s : new int[][] {{6400, 1024}, {3000, 2048}}) {
            int n = s[0], d = s[1];
            Twin x = input(act, n, d), branch = input(act, n, d), dy = input(act, n, d), gain = input(act, d), dGain0 = input(DType.F32, d);
            List<List<Tensor>> outs = new ArrayList<>();
            for (int v : new int[] {a, b}) {
                cuda.setKernelVariant("rmsnorm", v);
                Tensor dGain = test.scratch(DType.F32, d);
                test.copy(dGain0.t, dGain);
                Backend.RmsNormOut f = test.rmsNorm(x.t, gain.t, 1e-5f);
                Backend.AddRmsNormOut g = test.addRmsNorm(x.t, branch.t, gain.t, 1e-5f);
                Tensor dx = test.rmsNormBackward(dy.t, x.t, gain.t, f.rstd(), dGain);
                outs.add(List.of(f.y(), f.rstd(), g.sum(), g.y(), g.rstd(), dx, dGain));
            }
            List<String> names = List.of("y", "rstd", "add sum", "add y", "add rstd", "dx", "dGain+=");
            for (int k = 0; k < names.size(); k++) bitwise(rows, "rmsNorm " + names.get(k), n + "x" + d, outs.get(0).get(k), outs.get(1).get(k));
        }
    }

    /** The RMSNorm backward of two backward variants on the same inputs: dx (and, with gainToo, the accumulated gain gradient) bitwise equal. */
    private void rmsNormBackwardIdentity(List<CheckResult> rows, CudaBackend cuda, int a, int b, boolean gainToo) {
        DType act = test.activationType();
        for (int[] s : new int[][] {{8192, 1024}, {3000, 2048}, {37, 96}}) {
            int n = s[0], d = s[1];
            Twin x = input(act, n, d), dy = input(act, n, d), gain = input(act, d), dGain0 = input(DType.F32, d);
            Tensor rstd = test.rmsNorm(x.t, gain.t, 1e-5f).rstd();
            List<List<Tensor>> outs = new ArrayList<>();
            for (int v : new int[] {a, b}) {
                cuda.setKernelVariant("rmsnormbwd", v);
                Tensor dGain = test.scratch(DType.F32, d);
                test.copy(dGain0.t, dGain);
                outs.add(List.of(test.rmsNormBackward(dy.t, x.t, gain.t, rstd, dGain), dGain));
            }
            bitwise(rows, "rmsNorm backward dx", n + "x" + d, outs.get(0).get(0), outs.get(1).get(0));
            if (gainToo) bitwise(rows, "rmsNorm backward dGain+=", n + "x" + d, outs.get(0).get(1), outs.get(1).get(1));
        }
    }

    /**
     * The patch-embedding backward (accumulated dTable) of two variants on the same inputs, K = 1 and 4, with some
     * out-of-range ids: bitwise equal. Then the same token tensor re-uploaded and overwritten by a device copy: the
     * backward must follow the tensor's current contents (no stale host-sorted keys).
     */
    private void patchEmbedIdentity(List<CheckResult> rows, CudaBackend cuda, int a, int b) {
        for (int k : new int[] {1, 4}) {
            int batch = 4, t = 2048 / k, d = 256, vocab = 32000;
            int[] ids = new int[batch * t * k];
            for (int i = 0; i < ids.length; i++) ids[i] = i % 97 == 5 ? -3 : i % 89 == 7 ? vocab + 11 : random.nextInt(vocab);
            Twin tokens = ints(ids, batch, t * k), dOut = input(test.activationType(), batch * t, d), dTable0 = input(DType.F32, vocab, d);
            List<Tensor> tables = new ArrayList<>();
            for (int v : new int[] {a, b}) {
                cuda.setKernelVariant("patchembed", v);
                Tensor dTable = test.scratch(DType.F32, vocab, d);
                test.copy(dTable0.t, dTable);
                test.patchEmbedBackward(dOut.t, tokens.t, k, dTable);
                tables.add(dTable);
            }
            bitwise(rows, "patchEmbed dTable+=", "B" + batch + " T" + t + " K" + k + " d" + d + " V" + vocab, tables.get(0), tables.get(1));
        }
        // Upload, use, re-upload other ids, use, then overwrite on the device and use: each against the CPU, with the
        // default (host-sorted keys where the ids came from the host).
        cuda.setKernelVariant("patchembed", a);
        int batch = 2, t = 300, d = 64, vocab = 500;
        Tensor tokens = test.scratch(DType.I32, batch, t), other = test.scratch(DType.I32, batch, t);
        Tensor tokensRef = ref.scratch(DType.I32, batch, t);
        Twin dOut = input(test.activationType(), batch * t, d);
        for (int round = 0; round < 3; round++) {
            int[] ids = new int[batch * t];
            for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
            if (round < 2) test.uploadInts(tokens, ids);
            else {
                test.uploadInts(other, ids);
                test.copy(other, tokens);
            }
            ref.uploadInts(tokensRef, ids);
            Twin dTable0 = input(DType.F32, vocab, d);
            Tensor dTable = test.scratch(DType.F32, vocab, d), dTableRef = ref.scratch(DType.F32, vocab, d);
            test.copy(dTable0.t, dTable);
            ref.copy(dTable0.r, dTableRef);
            test.patchEmbedBackward(dOut.t, tokens, 1, dTable);
            ref.patchEmbedBackward(dOut.r, tokensRef, 1, dTableRef);
            compare(rows, "patchEmbed dTable+= after " + (round < 2 ? "upload " + round : "device copy"), new int[] {vocab, d}, dTable, dTableRef);
        }
    }

    /** A row that passes when two device tensors hold the same bits (downloaded one pair at a time). */
    private void bitwise(List<CheckResult> rows, String op, String shape, Tensor x, Tensor y) {
        boolean same = Arrays.equals(test.download(x), test.download(y));
        rows.add(CheckResult.of(op + " bitwise", shape, x.dtype(), same ? 0 : 1, 0));
    }

    /** Losses and in-place gradients of two cross-entropy variants on the same logits (V = 50257 padded, K = 4): bitwise equal. */
    private void crossEntropyIdentity(List<CheckResult> rows, CudaBackend cuda, int a, int b) {
        int n = 300, vocab = 50257, stride = 50304, k = 4;
        Twin logits = input(test.activationType(), 4f, n, stride);
        int[] ids = new int[n * k];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
        Twin targets = ints(ids, n, k);
        List<Tensor> losses = new ArrayList<>(), grads = new ArrayList<>();
        for (int v : new int[] {a, b}) {
            cuda.setKernelVariant("crossentropy", v);
            Tensor work = test.scratch(test.activationType(), n, stride);
            test.copy(logits.t, work);
            losses.add(test.crossEntropyK(work, targets.t, vocab, 1f / (n * k)));
            grads.add(work);
        }
        String shape = "N" + n + " V" + vocab + "/" + stride + " K" + k;
        bitwise(rows, "crossEntropyK loss", shape, losses.get(0), losses.get(1));
        bitwise(rows, "crossEntropyK dlogits", shape, grads.get(0), grads.get(1));
    }

    // ---------------------------------------------------------------- checks

    private void transfer(List<CheckResult> rows) {
        for (DType t : java.util.EnumSet.of(DType.F32, test.activationType())) {
            float[] host = values(t, 1001);
            Tensor x = test.scratch(t, 1001);
            test.upload(x, host);
            rows.add(CheckResult.of("upload/download", "[1001]", t, relErr(test.download(x), host), threshold(t)));
        }
        int[] ids = new int[333];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(-5, 1 << 30);
        Tensor ti = test.scratch(DType.I32, ids.length);
        test.uploadInts(ti, ids);
        rows.add(CheckResult.of("uploadInts/downloadInts", "[333]", DType.I32, Arrays.equals(test.downloadInts(ti), ids) ? 0 : 1, 0));
    }

    private void elementwise(List<CheckResult> rows) {
        DType act = test.activationType();
        int[] shape = {37, 129};
        Twin x = input(act, shape), y = input(act, shape);
        compare(rows, "add", shape, test.add(x.t, y.t), ref.add(x.r, y.r));
        for (DType acc : new DType[] {act, DType.F32}) {
            Twin a = input(acc, shape), b = input(act, shape);
            test.addInPlace(a.t, b.t);
            ref.addInPlace(a.r, b.r);
            compare(rows, "addInPlace " + acc + "+=" + act, shape, a.t, a.r);
        }
        for (DType[] pair : new DType[][] {{DType.F32, act}, {act, DType.F32}, {DType.F32, DType.F32}, {act, act}}) {
            Twin src = input(pair[0], 1003);
            Tensor dt = test.scratch(pair[1], 1003), dr = ref.scratch(DType.F32, 1003);
            test.copy(src.t, dt);
            ref.copy(src.r, dr);
            compare(rows, "copy " + pair[0] + "->" + pair[1], new int[] {1003}, dt, dr);
        }
        Twin z = input(DType.F32, 515);
        test.zero(z.t);
        float[] got = test.download(z.t);
        double maxAbs = 0;
        for (float f : got) maxAbs = Math.max(maxAbs, Math.abs(f));
        rows.add(CheckResult.of("zero", "[515]", DType.F32, maxAbs, 0));
        Twin s = input(DType.F32, 1_000_003);
        rows.add(CheckResult.of("sum", "[1000003]", DType.F32, scalarErr(test.sum(s.t), ref.sum(s.r)), F32_THRESHOLD));
    }

    /** dW += dyᵀ·x twice (two backward calls, the second with other inputs), then dW and both dx against the CPU. */
    private void matmulTwice(List<CheckResult> rows, int n, int in, int out) {
        DType act = test.activationType();
        Twin x = input(act, n, in), w = input(act, out, in), dy = input(act, n, out), dy2 = input(act, n, out), dW = input(DType.F32, out, in);
        int[] shape = {n, in, out};
        Tensor dx1 = test.matmulBackward(dy.t, x.t, w.t, dW.t, true), dx2 = test.matmulBackward(dy2.t, x.t, w.t, dW.t, true);
        Tensor r1 = ref.matmulBackward(dy.r, x.r, w.r, dW.r, true), r2 = ref.matmulBackward(dy2.r, x.r, w.r, dW.r, true);
        compare(rows, "matmul dx (1st)", shape, dx1, r1);
        compare(rows, "matmul dx (2nd)", shape, dx2, r2);
        compare(rows, "matmul dW+= twice", shape, dW.t, dW.r);
    }

    private void matmul(List<CheckResult> rows, int n, int in, int out) {
        DType act = test.activationType();
        String shape = n + "x" + in + "x" + out;
        Twin x = input(act, n, in), w = input(act, out, in);
        compare(rows, "matmul y", shape, test.matmul(x.t, w.t), ref.matmul(x.r, w.r));
        Twin dy = input(act, n, out), dW = input(DType.F32, out, in);
        Tensor dxT = test.matmulBackward(dy.t, x.t, w.t, dW.t, true);
        Tensor dxR = ref.matmulBackward(dy.r, x.r, w.r, dW.r, true);
        compare(rows, "matmul dx", shape, dxT, dxR);
        compare(rows, "matmul dW+=", shape, dW.t, dW.r);
        Twin dW2 = input(DType.F32, out, in);
        Tensor none = test.matmulBackward(dy.t, x.t, w.t, dW2.t, false);
        ref.matmulBackward(dy.r, x.r, w.r, dW2.r, false);
        if (none != null) rows.add(CheckResult.failed("matmul needDx=false", shape, "-", "returned a dx"));
        else compare(rows, "matmul dW+= (no dx)", shape, dW2.t, dW2.r);
    }

    private void patchEmbed(List<CheckResult> rows, int k, int batch, int t, int d, int vocab) {
        String shape = "B" + batch + " T" + t + " K" + k + " d" + d + " V" + vocab;
        Twin table = input(test.activationType(), vocab, d);
        int[] ids = new int[batch * t * k];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
        Twin tokens = ints(ids, batch, t * k);
        compare(rows, "patchEmbed", shape, test.patchEmbed(table.t, tokens.t, k), ref.patchEmbed(table.r, tokens.r, k));
        Twin dOut = input(test.activationType(), batch * t, d), dTable = input(DType.F32, vocab, d);
        test.patchEmbedBackward(dOut.t, tokens.t, k, dTable.t);
        ref.patchEmbedBackward(dOut.r, tokens.r, k, dTable.r);
        compare(rows, "patchEmbed dTable+=", shape, dTable.t, dTable.r);
    }

    private void rmsNorm(List<CheckResult> rows, int n, int d) {
        DType act = test.activationType();
        String shape = n + "x" + d;
        float eps = 1e-5f;
        Twin x = input(act, n, d), gain = input(act, d);
        Backend.RmsNormOut a = test.rmsNorm(x.t, gain.t, eps), b = ref.rmsNorm(x.r, gain.r, eps);
        compare(rows, "rmsNorm y", shape, a.y(), b.y());
        compare(rows, "rmsNorm rstd", shape, a.rstd(), b.rstd());
        Twin branch = input(act, n, d);
        Backend.AddRmsNormOut c = test.addRmsNorm(x.t, branch.t, gain.t, eps), e = ref.addRmsNorm(x.r, branch.r, gain.r, eps);
        compare(rows, "addRmsNorm sum", shape, c.sum(), e.sum());
        compare(rows, "addRmsNorm y", shape, c.y(), e.y());
        // The CUDA kernel normalizes the bf16-rounded sum it stores (so the backward differentiates exactly what the
        // forward normalized); the reference normalizes the fp32 sum. rstd is F32 but inherits bf16 rounding.
        compare(rows, "addRmsNorm rstd", shape, c.rstd(), e.rstd(), BF16_THRESHOLD);
        Twin dy = input(act, n, d), dGain = input(DType.F32, d);
        compare(rows, "rmsNorm dx", shape, test.rmsNormBackward(dy.t, x.t, gain.t, a.rstd(), dGain.t),
                ref.rmsNormBackward(dy.r, x.r, gain.r, b.rstd(), dGain.r));
        compare(rows, "rmsNorm dGain+=", shape, dGain.t, dGain.r);
    }

    /**
     * The RMSNorm backward three times in a row on the same inputs, each accumulating into a fresh copy of the same
     * non-zero dGain: every call against the reference, and calls 2 and 3 bitwise equal to call 1 (a kernel that keeps
     * state between launches, like the fused backward's arrival counter, must leave it as it found it). With
     * {@code accumulate}, rmsNormBackwardAccumulate into a fresh copy of the same non-zero dxAcc each call.
     */
    private void rmsNormBackwardRepeated(List<CheckResult> rows, int n, int d, boolean accumulate) {
        DType act = test.activationType();
        String shape = n + "x" + d, what = accumulate ? "rmsNorm dxAcc+=" : "rmsNorm dx";
        Twin x = input(act, n, d), gain = input(act, d), dy = input(act, n, d), dGain0 = input(DType.F32, d);
        Twin acc0 = accumulate ? input(act, n, d) : null;
        Tensor rstd = test.rmsNorm(x.t, gain.t, 1e-5f).rstd(), rstdRef = ref.rmsNorm(x.r, gain.r, 1e-5f).rstd();
        Tensor dGainRef = ref.scratch(DType.F32, d);
        ref.copy(dGain0.r, dGainRef);
        Tensor dxRef = accumulate ? ref.rmsNormBackwardAccumulate(dy.r, x.r, gain.r, rstdRef, dGainRef, copy(ref, acc0.r))
                : ref.rmsNormBackward(dy.r, x.r, gain.r, rstdRef, dGainRef);
        Tensor firstDx = null, firstDGain = null;
        for (int call = 1; call <= 3; call++) {
            Tensor dGain = copy(test, dGain0.t);
            Tensor dx = accumulate ? test.rmsNormBackwardAccumulate(dy.t, x.t, gain.t, rstd, dGain, copy(test, acc0.t))
                    : test.rmsNormBackward(dy.t, x.t, gain.t, rstd, dGain);
            compare(rows, what + ", call " + call, shape, dx, dxRef);
            compare(rows, "rmsNorm dGain+=, call " + call, shape, dGain, dGainRef);
            if (call == 1) {
                firstDx = dx;
                firstDGain = dGain;
            } else {
                bitwise(rows, what + ", call " + call + " = call 1", shape, dx, firstDx);
                bitwise(rows, "rmsNorm dGain+=, call " + call + " = call 1", shape, dGain, firstDGain);
            }
        }
    }

    /** A scratch copy of t on be. */
    private static Tensor copy(Backend be, Tensor t) {
        Tensor c = be.scratch(t.dtype(), t.shape());
        be.copy(t, c);
        return c;
    }

    private void repeatHeads(List<CheckResult> rows, int n, int kvHeads, int groups, int dh) {
        DType act = test.activationType();
        String shape = "n" + n + " kv" + kvHeads + " groups" + groups + " Dh" + dh;
        Twin x = input(act, n, kvHeads * dh), dy = input(act, n, kvHeads * groups * dh);
        compare(rows, "repeatHeads", shape, test.repeatHeads(x.t, kvHeads, groups), ref.repeatHeads(x.r, kvHeads, groups));
        compare(rows, "repeatHeads backward", shape, test.repeatHeadsBackward(dy.t, kvHeads, groups), ref.repeatHeadsBackward(dy.r, kvHeads, groups));
    }

    /** LLaMA-3.2's RoPE (theta 500000, "llama3" scaling by 32 of an original context of 8192). */
    private static final Rope LLAMA32_ROPE = new Rope(500000f, new Rope.Scaling(32f, 1f, 4f, 8192));

    private void rope(List<CheckResult> rows, int batch, int t, int heads, int dh, Rope rope) {
        DType act = test.activationType();
        String shape = "B" + batch + " T" + t + " H" + heads + " Dh" + dh;
        Twin x = input(act, batch * t, heads * dh);
        String name = rope.scaled() ? "rope llama3" : "rope";
        compare(rows, name, shape, test.rope(x.t, t, heads, rope), ref.rope(x.r, t, heads, rope));
        compare(rows, name + " backward", shape, test.ropeBackward(x.t, t, heads, rope), ref.ropeBackward(x.r, t, heads, rope));
    }

    private void attention(List<CheckResult> rows, int t, int dh, boolean simple) {
        attention(rows, t, dh, simple, t >= 1000 ? 1 : 2, 2);
    }

    private void attention(List<CheckResult> rows, int t, int dh, boolean simple, int batch, int heads) {
        DType act = test.activationType();
        String path = simple ? "attention(simple)" : test instanceof CudaBackend && CudaFlashAttention.supportsHeadDim(dh) ? "attention(flash)" : "attention";
        String shape = "B" + batch + " T" + t + " H" + heads + " Dh" + dh;
        Twin q = input(act, batch * t, heads * dh), k = input(act, batch * t, heads * dh), v = input(act, batch * t, heads * dh);
        Backend.AttentionOut a = simple ? ((CudaBackend) test).simpleAttention().forward(q.t, k.t, v.t, t, heads) : test.attention(q.t, k.t, v.t, t, heads);
        Backend.AttentionOut b = ref.attention(q.r, k.r, v.r, t, heads);
        compare(rows, path + " out", shape, a.out(), b.out());
        compare(rows, path + " lse", shape, a.lse(), b.lse());
        Twin dOut = input(act, batch * t, heads * dh);
        // Both backwards read the reference forward's output (rounded like the test's) so only the backward is compared.
        Backend.AttentionGrads g = simple
                ? ((CudaBackend) test).simpleAttention().backward(dOut.t, q.t, k.t, v.t, a.out(), a.lse(), t, heads)
                : test.attentionBackward(dOut.t, q.t, k.t, v.t, a.out(), a.lse(), t, heads);
        Tensor outR = ref.scratch(DType.F32, batch * t, heads * dh);
        ref.upload(outR, test.download(a.out()));
        Backend.AttentionGrads h = ref.attentionBackward(dOut.r, q.r, k.r, v.r, outR, b.lse(), t, heads);
        compare(rows, path + " dq", shape, g.dq(), h.dq());
        compare(rows, path + " dk", shape, g.dk(), h.dk());
        compare(rows, path + " dv", shape, g.dv(), h.dv());
    }

    /**
     * Where a forward goes wrong, for a first run of a new kernel: one head, T = 128 (two 64-key tiles, both halves of
     * a 128-row CTA), the output split into 8 × 8 blocks, one character per block: '.' when its largest error is
     * within 2 % of the output's largest value, '#' otherwise; rows of blocks separated by '|', then one character
     * per 8 rows for lse (within 1e-3). A wrong swizzle or fragment layout shows up as a pattern (every other column
     * block, one warp's rows, the second tile...), which the pass/fail rows cannot show.
     */
    void attentionErrorMap(List<CheckResult> rows, int dh) {
        int t = 128;
        DType act = test.activationType();
        Twin q = input(act, t, dh), k = input(act, t, dh), v = input(act, t, dh);
        Backend.AttentionOut have = test.attention(q.t, k.t, v.t, t, 1), want = ref.attention(q.r, k.r, v.r, t, 1);
        BlockMap out = BlockMap.of(test.download(have.out()), ref.download(want.out()), t, dh, 0.02);
        BlockMap lse = BlockMap.of(test.download(have.lse()), ref.download(want.lse()), t, 1, 1e-3);
        boolean ok = out.ok() && lse.ok();
        rows.add(new CheckResult("attention out/lse error map", "T" + t + " Dh" + dh, act.name(), ok ? 0 : 1, 0, ok,
                out.map() + "  lse " + lse.map().replace("|", "")));
    }

    /** The same for the backward: dq, dk, dv maps (8 × 8 blocks, 2 % of each gradient's largest value). */
    void attentionBackwardErrorMap(List<CheckResult> rows, int dh) {
        int t = 128;
        DType act = test.activationType();
        Twin q = input(act, t, dh), k = input(act, t, dh), v = input(act, t, dh), dOut = input(act, t, dh);
        Backend.AttentionOut a = test.attention(q.t, k.t, v.t, t, 1), b = ref.attention(q.r, k.r, v.r, t, 1);
        Backend.AttentionGrads g = test.attentionBackward(dOut.t, q.t, k.t, v.t, a.out(), a.lse(), t, 1);
        Tensor outR = ref.scratch(DType.F32, t, dh);
        ref.upload(outR, test.download(a.out()));
        Backend.AttentionGrads h = ref.attentionBackward(dOut.r, q.r, k.r, v.r, outR, b.lse(), t, 1);
        BlockMap dq = BlockMap.of(test.download(g.dq()), ref.download(h.dq()), t, dh, 0.02);
        BlockMap dk = BlockMap.of(test.download(g.dk()), ref.download(h.dk()), t, dh, 0.02);
        BlockMap dv = BlockMap.of(test.download(g.dv()), ref.download(h.dv()), t, dh, 0.02);
        boolean ok = dq.ok() && dk.ok() && dv.ok();
        rows.add(new CheckResult("attention dq/dk/dv error map", "T" + t + " Dh" + dh, act.name(), ok ? 0 : 1, 0, ok,
                "dq " + dq.map() + "  dk " + dk.map() + "  dv " + dv.map()));
    }

    /**
     * 8 × 8 blocks of a [rows, cols] result ('.' within tolerance·max|want|, '#' not), block rows joined by '|'; a
     * single column (cols = 1, e.g. lse) is checked in blocks of 8 rows against the tolerance as an absolute bound.
     */
    record BlockMap(String map, boolean ok) {
        static BlockMap of(float[] got, float[] want, int rows, int cols, double tolerance) {
            double scale = 0;
            for (float f : want) scale = Math.max(scale, Math.abs(f));
            double limit = cols == 1 ? tolerance : tolerance * scale;
            int bw = Math.min(8, cols);
            StringBuilder sb = new StringBuilder();
            boolean ok = true;
            for (int rb = 0; rb < rows / 8; rb++) {
                if (rb > 0) sb.append('|');
                for (int cb = 0; cb < cols / bw; cb++) {
                    double err = 0;
                    for (int r = rb * 8; r < rb * 8 + 8; r++)
                        for (int c = cb * bw; c < cb * bw + bw; c++) err = Math.max(err, Math.abs(got[r * cols + c] - want[r * cols + c]));
                    boolean bad = !(err <= limit);
                    ok &= !bad;
                    sb.append(bad ? '#' : '.');
                }
            }
            return new BlockMap(sb.toString(), ok);
        }
    }

    /**
     * Causal masking: change every key and value after position c and run the test backend again; outputs and lse at
     * positions ≤ c must not change at all (masked scores contribute exact zeros), and some later output must.
     */
    private void causality(List<CheckResult> rows, int t, int dh) {
        DType act = test.activationType();
        int batch = 2, heads = 2, width = heads * dh, c = t / 2;
        String shape = "B" + batch + " T" + t + " H" + heads + " Dh" + dh + " cut " + c;
        Twin q = input(act, batch * t, width), k = input(act, batch * t, width), v = input(act, batch * t, width);
        float[] before = test.download(test.attention(q.t, k.t, v.t, t, heads).out());
        float[] kh = test.download(k.t), vh = test.download(v.t);
        for (int b = 0; b < batch; b++)
            for (int i = c + 1; i < t; i++)
                for (int j = 0; j < width; j++) {
                    int at = (b * t + i) * width + j;
                    kh[at] = -kh[at];
                    vh[at] = 2 * vh[at];
                }
        test.upload(k.t, kh);
        test.upload(v.t, vh);
        float[] after = test.download(test.attention(q.t, k.t, v.t, t, heads).out());
        double changedPast = 0, changedFuture = 0;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < t; i++)
                for (int j = 0; j < width; j++) {
                    int at = (b * t + i) * width + j;
                    double d = Math.abs((double) after[at] - before[at]);
                    if (i <= c) changedPast = Math.max(changedPast, d);
                    else changedFuture = Math.max(changedFuture, d);
                }
        rows.add(changedFuture > 0
                ? CheckResult.of("attention causal: max |Δout| at t ≤ cut", shape, act, changedPast, 0)
                : CheckResult.failed("attention causal", shape, act.name(), "perturbing later keys changed nothing at all"));
    }

    private void swiglu(List<CheckResult> rows, int n, int f) {
        DType act = test.activationType();
        String shape = n + "x" + f;
        Twin gate = input(act, n, f), up = input(act, n, f);
        compare(rows, "swiglu", shape, test.swiglu(gate.t, up.t), ref.swiglu(gate.r, up.r));
        Twin dy = input(act, n, f);
        Backend.SwiGluGrads a = test.swigluBackward(dy.t, gate.t, up.t), b = ref.swigluBackward(dy.r, gate.r, up.r);
        compare(rows, "swiglu dGate", shape, a.dGate(), b.dGate());
        compare(rows, "swiglu dUp", shape, a.dUp(), b.dUp());
    }

    private void crossEntropy(List<CheckResult> rows, int n, int vocab, int stride, int k) {
        String shape = "N" + n + " V" + vocab + (stride != vocab ? "/" + stride : "") + " K" + k;
        Twin logits = input(test.activationType(), 4f, n, stride);
        int[] ids = new int[n * k];
        for (int i = 0; i < ids.length; i++) ids[i] = random.nextInt(vocab);
        Twin targets = ints(ids, n, k);
        float scale = 1f / (n * k);
        compare(rows, "crossEntropyK loss", shape, test.crossEntropyK(logits.t, targets.t, vocab, scale), ref.crossEntropyK(logits.r, targets.r, vocab, scale));
        compare(rows, "crossEntropyK dlogits", shape, logits.t, logits.r);
    }

    private void sumOfSquares(List<CheckResult> rows) {
        Twin a = input(DType.F32, 1000), b = input(DType.F32, 37, 129), c = input(DType.F32, 1 << 20);
        double got = test.sumOfSquares(List.of(a.t, b.t, c.t)), want = ref.sumOfSquares(List.of(a.r, b.r, c.r));
        rows.add(CheckResult.of("sumOfSquares", "[1000]+[37,129]+[1048576]", DType.F32, scalarErr(got, want), F32_THRESHOLD));
    }

    /**
     * Counts of |x| > t, exact on both backends: random values in ±2 plus zeros of both signs, NaN, infinities, a
     * subnormal and values equal to the threshold, at several thresholds (negative: every non-NaN value).
     */
    private void countAbsAbove(List<CheckResult> rows) {
        float[] special = {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 1e-39f, -1e-39f, 0.5f, -0.5f};
        for (DType dt : new DType[] {test.activationType(), DType.F32}) {
            int n = 100_003;
            for (float t : new float[] {0.5f, 0f, -0f, -1f, 1e-39f, Float.POSITIVE_INFINITY, Float.NaN}) {
                float[] host = new float[n];
                for (int i = 0; i < n; i++) host[i] = (float) (4 * random.nextDouble() - 2);
                for (int i = 0; i < special.length; i++) host[i * 977] = special[i];
                Twin x = twin(dt, host, n);
                long got = test.countAbsAbove(x.t, t), want = ref.countAbsAbove(x.r, t);
                rows.add(CheckResult.of("countAbsAbove > " + t, "[" + n + "]", dt, Math.abs(got - want), 0));
            }
        }
    }

    private void adamW(List<CheckResult> rows) {
        int[] shape = {129, 77};
        String s = "129x77";
        Twin master = input(DType.F32, shape), grad = input(DType.F32, shape), m = input(DType.F32, 0.1f, shape);
        Twin v = positive(shape);
        Tensor computeT = test.scratch(test.activationType(), shape), computeR = ref.scratch(ref.activationType(), shape);
        Backend.AdamWStep step = new Backend.AdamWStep(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.7f);
        test.adamW(master.t, grad.t, m.t, v.t, computeT, step);
        ref.adamW(master.r, grad.r, m.r, v.r, computeR, step);
        compare(rows, "adamW master", s, master.t, master.r);
        compare(rows, "adamW m", s, m.t, m.r);
        compare(rows, "adamW v", s, v.t, v.r);
        compare(rows, "adamW compute", s, computeT, computeR);
    }

    /** Two identical "steps" of scratch use: the second must not allocate device memory. */
    private void allocatorReuse(List<CheckResult> rows) {
        CudaBackend cuda = (CudaBackend) test;
        long[] allocs = new long[3];
        for (int step = 0; step < 3; step++) {
            for (int[] s : new int[][] {{4096, 1024}, {37, 129}, {1}, {4096, 2752}}) test.scratch(DType.BF16, s);
            test.scratch(DType.F32, 4096);
            test.releaseScratch();
            allocs[step] = cuda.memoryStats().scratchDeviceAllocations();
        }
        rows.add(CheckResult.of("allocator: no new device allocation after step 1", "3 steps", DType.I32, allocs[2] - allocs[0], 0));
    }

    // ---------------------------------------------------------------- helpers

    /** The same values in a test tensor and a reference tensor. */
    private record Twin(Tensor t, Tensor r) {}

    private Twin input(DType testType, int... shape) { return input(testType, 1f, shape); }

    /** Random values in ±[0.05, 1]·scale (never zero), bf16-rounded when the test tensor is BF16. */
    private Twin input(DType testType, float scale, int... shape) {
        int n = Math.toIntExact(count(shape));
        float[] host = new float[n];
        for (int i = 0; i < n; i++) {
            float mag = (float) (0.05 + 0.95 * random.nextDouble()) * scale;
            host[i] = random.nextBoolean() ? mag : -mag;
        }
        return twin(testType, host, shape);
    }

    private Twin positive(int... shape) {
        int n = Math.toIntExact(count(shape));
        float[] host = new float[n];
        for (int i = 0; i < n; i++) host[i] = (float) (0.01 + random.nextDouble() * 0.1);
        return twin(DType.F32, host, shape);
    }

    private Twin twin(DType testType, float[] host, int... shape) {
        if (testType == DType.BF16) for (int i = 0; i < host.length; i++) host[i] = Bf16.round(host[i]);
        Tensor t = test.scratch(testType, shape), r = ref.scratch(testType == DType.I32 ? DType.I32 : refType(testType), shape);
        test.upload(t, host);
        ref.upload(r, host);
        return new Twin(t, r);
    }

    /** The reference computes in F32 where it has no BF16 (the CPU backend). */
    private DType refType(DType testType) { return testType == DType.BF16 ? ref.activationType() : testType; }

    private Twin ints(int[] values, int... shape) {
        Tensor t = test.scratch(DType.I32, shape), r = ref.scratch(DType.I32, shape);
        test.uploadInts(t, values);
        ref.uploadInts(r, values);
        return new Twin(t, r);
    }

    private float[] values(DType t, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = t == DType.BF16 ? Bf16.round((float) random.nextGaussian()) : (float) random.nextGaussian();
        return v;
    }

    private void compare(List<CheckResult> rows, String op, int[] shape, Tensor got, Tensor want) {
        compare(rows, op, Arrays.toString(shape), got, want);
    }

    private void compare(List<CheckResult> rows, String op, String shape, Tensor got, Tensor want) {
        compare(rows, op, shape, got, want, threshold(got.dtype()));
    }

    private void compare(List<CheckResult> rows, String op, String shape, Tensor got, Tensor want, double threshold) {
        float[] g = test.download(got), w = ref.download(want);
        rows.add(CheckResult.of(op, shape, got.dtype(), relErr(g, w), threshold));
    }

    static double threshold(DType t) { return t == DType.BF16 ? BF16_THRESHOLD : F32_THRESHOLD; }

    /**
     * ‖got − want‖ / ‖want‖ in double; NaN anywhere in {@code got} gives NaN (a failure); lengths must match. Where the
     * reference is exactly zero (e.g. dq and dk at T = 1: a softmax over one key has no gradient) a relative error is
     * undefined, so the RMS of {@code got} is returned instead: rounding noise passes, a real value does not.
     */
    public static double relErr(float[] got, float[] want) {
        if (got.length != want.length) return Double.POSITIVE_INFINITY;
        double num = 0, den = 0;
        for (int i = 0; i < got.length; i++) {
            double d = (double) got[i] - want[i];
            num += d * d;
            den += (double) want[i] * want[i];
        }
        if (Double.isNaN(num)) return Double.NaN;
        if (den == 0) return got.length == 0 ? 0 : Math.sqrt(num / got.length);
        return Math.sqrt(num / den);
    }

    static double scalarErr(double got, double want) {
        if (Double.isNaN(got)) return Double.NaN;
        return want == 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want);
    }

    private static long count(int... shape) {
        long n = 1;
        for (int s : shape) n *= s;
        return n;
    }
}
