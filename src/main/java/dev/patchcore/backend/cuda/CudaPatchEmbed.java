package dev.patchcore.backend.cuda;

import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import it.unimi.dsi.fastutil.ints.IntArrays;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Patch embedding, paper Eq. 2 ({@code src/main/cuda/patch_embed.cu}). The backward sorts (token, position) keys on
 * the device and lets one block own each vocabulary row, so dTable is accumulated without float atomics and is
 * bit-identical run to run.
 */
public final class CudaPatchEmbed {
    static final int SORT_TILE = 2048; // must match SORT_TILE in patch_embed.cu
    private static final int THREADS = 128;
    /** Forward block: 8 warps, one output row per warp ({@code PE_FWD_THREADS} in patch_embed.cu). */
    static final int FWD_THREADS = 256;
    /** Radix sort: block size and keys per block ({@code PE_RX_THREADS}, {@code PE_RX_TILE}); digits of ≤ 8 bits. */
    static final int RADIX_THREADS = 256, RADIX_TILE = 2048, RADIX_BINS = 256;
    /** Run accumulation of the radix path: 8 warps, one sorted entry each ({@code PE_BWD_THREADS}). */
    static final int BWD_THREADS = 256;

    /**
     * Variant 1 (default): for token tensors uploaded from the host, the backward's sorted keys are computed on the
     * host from the uploaded ids (a radix sort of n ints, off the GPU's critical path: the host is ahead of the GPU)
     * and copied to the device in stream order at the first backward after the upload, so the backward is one kernel
     * (evaluation and generation, which have no backward, sort nothing); other token tensors take the device sort.
     */
    public static final int VARIANT_HOST_SORTED = 1;
    /** Variant 2: the keys always sorted on the device (3 launches at 8192 keys: ~15 µs of latency on an H100). */
    public static final int VARIANT_DEVICE_SORT = 2;
    /** Token tensors whose host ids are remembered at once (most recently uploaded first out). */
    static final int HOST_SORTED_TENSORS = 4;

    private final KernelContext ctx;
    private int variant = VARIANT_HOST_SORTED;
    /** Token tensor (by identity) → its last uploaded ids and their sorted keys on the device. Access order: LRU. */
    private final Map<Tensor, HostSorted> hostSorted = new LinkedHashMap<>(8, 0.75f, true);

    public CudaPatchEmbed(KernelContext ctx) { this.ctx = ctx; }

    /** Which backward runs where both apply: {@link #VARIANT_HOST_SORTED} (default) or {@link #VARIANT_DEVICE_SORT}. */
    public void setVariant(int variant) {
        if (variant != VARIANT_HOST_SORTED && variant != VARIANT_DEVICE_SORT)
            throw new IllegalArgumentException("patchEmbed variant must be 1 (keys sorted on the host) or 2 (on the device), got " + variant);
        this.variant = variant;
    }

    public int variant() { return variant; }

    /**
     * The ids of a token tensor's upload (the caller's array is copied). Keys: {@code token << posBits | position},
     * posBits = bits of n − 1, ids outside [0, 2^(32 − posBits) − 1) mapped to the all-ones token field, ascending as
     * unsigned ints — for any vocabulary up to that field's maximum this is exactly the device sort's order (valid
     * ids by token, then position; the rest after them), so the backward's result is bit-identical.
     */
    static final class HostSorted {
        final int[] ids;     // the last upload's ids (overwritten by the next upload of the tensor)
        final int[] sorted;  // host scratch for the keys, copied to the device in stream order
        final long start, bytes;
        final int posBits;
        final long sentinel;
        Tensor keys;  // persistent I32 [n] on the device
        boolean onDevice;

        HostSorted(int n, long start, long bytes) {
            this.ids = new int[n];
            this.sorted = new int[n];
            this.start = start;
            this.bytes = bytes;
            this.posBits = RadixPlan.bitsFor(n - 1L);
            this.sentinel = (1L << (32 - posBits)) - 1;
        }

        int[] sortedKeys() {
            for (int i = 0; i < ids.length; i++) {
                long tok = ids[i] >= 0 && ids[i] < sentinel ? ids[i] : sentinel;
                sorted[i] = (int) ((tok << posBits) | i) ^ Integer.MIN_VALUE;  // sign flip: signed order = unsigned order
            }
            IntArrays.radixSort(sorted);
            for (int i = 0; i < sorted.length; i++) sorted[i] ^= Integer.MIN_VALUE;
            return sorted;
        }
    }

    /** Remembers the ids just uploaded into {@code tokens} (called by the backend's uploadInts). */
    public void noteUpload(Tensor tokens, int[] ids) {
        if (ids.length == 0) return;  // (recorded whatever the variant, so that switching variants never finds stale ids)
        HostSorted old = hostSorted.remove(tokens);
        forget(tokens);  // overlapping views' entries are stale now
        HostSorted e = old;  // the same tensor again (every micro-batch of a training step): its buffers are reused
        if (e == null) e = new HostSorted(ids.length, CudaStorage.addressOf(tokens), tokens.bytes());
        System.arraycopy(ids, 0, e.ids, 0, ids.length);  // the caller may reuse its array
        e.onDevice = false;
        hostSorted.put(tokens, e);
        while (hostSorted.size() > HOST_SORTED_TENSORS) {
            var eldest = hostSorted.entrySet().iterator();
            HostSorted gone = eldest.next().getValue();
            eldest.remove();
            if (gone.keys != null) ctx.free(gone.keys);
        }
    }

    /** Drops what is remembered for every token tensor overlapping {@code written} (written some other way, or freed). */
    public void forget(Tensor written) {
        if (hostSorted.isEmpty()) return;
        long a = CudaStorage.addressOf(written), b = a + written.bytes();
        for (var it = hostSorted.values().iterator(); it.hasNext(); ) {
            HostSorted e = it.next();
            if (e.start < b && a < e.start + e.bytes) {
                it.remove();
                if (e.keys != null) ctx.free(e.keys);
            }
        }
    }

    /** The device keys for {@code tokens} if its ids are known on the host (sorted and copied on first use), else null. */
    private HostSorted hostSortedKeys(Tensor tokens) {
        HostSorted e = variant == VARIANT_HOST_SORTED ? hostSorted.get(tokens) : null;
        if (e == null) return null;
        if (!e.onDevice) {
            if (e.keys == null) e.keys = ctx.allocate(DType.I32, e.ids.length);
            ctx.copyInts(e.keys, e.sortedKeys());
            e.onDevice = true;
        }
        return e;
    }

    /** table BF16 [V, d], tokens I32 [B, T·K] → BF16 [B·T, d]. */
    public Tensor forward(Tensor table, Tensor tokens, int k) {
        int rows = checkShapes(table, tokens, k);
        int d = table.dim(1);
        Tensor out = ctx.scratch(DType.BF16, rows, d);
        if (rows == 0 || d == 0) return out;
        int blocks = gridFor((long) rows * 32, FWD_THREADS, ctx.multiprocessorCount());  // one warp per row, grid-stride
        ctx.launch("patch_embed_fwd_bf16", blocks, 1, 1, FWD_THREADS, 1, 1, 0, out, table, tokens, rows, k, d, table.dim(0));
        return out;
    }

    /** dTable F32 [V, d] += scatter of dOut BF16 [B·T, d] / K. */
    public void backward(Tensor dOut, Tensor tokens, int k, Tensor dTable) {
        int rows = checkShapes(dTable, tokens, k);
        int d = dTable.dim(1);
        if (dOut.dtype() != DType.BF16 || dOut.rank() != 2 || dOut.dim(0) != rows || dOut.dim(1) != d)
            throw new IllegalArgumentException("patchEmbedBackward: dOut " + dOut + " must be BF16 [" + rows + ", " + d + "]");
        if (dTable.dtype() != DType.F32) throw new IllegalArgumentException("patchEmbedBackward: dTable must be F32, got " + dTable.dtype());
        long n = tokens.numel();
        if (n == 0 || d == 0) return;
        int vocab = dTable.dim(0);
        HostSorted sorted = d % 8 == 0 && aligned16(dOut) && aligned16(dTable) ? hostSortedKeys(tokens) : null;
        if (sorted != null && vocab <= sorted.sentinel && sorted.ids.length == n) {
            int blocks = gridFor(n * 32, BWD_THREADS, ctx.multiprocessorCount());  // one warp per sorted entry
            ctx.launch("patch_embed_bwd_runs32", blocks, 1, 1, BWD_THREADS, 1, 1, 0, sorted.keys, (int) n, sorted.posBits, vocab,
                    dOut, dTable, k, d);
            return;
        }
        RadixPlan plan = RadixPlan.of(n, vocab);
        if (plan != null && d % 8 == 0 && aligned16(dOut) && aligned16(dTable)) radixBackward(plan, (int) n, dOut, tokens, k, dTable);
        else bitonicBackward(n, dOut, tokens, k, dTable);
    }

    /**
     * 32-bit keys {@code token << posBits | position} (the token field also holds the sentinel {@code vocab} for
     * invalid ids) sorted by a stable LSD radix over the token bits: every pass splits the token field evenly, at
     * least two passes when it has 2+ bits (so small vocabularies exercise the multi-pass code too), ≤ 8 bits each.
     */
    record RadixPlan(int posBits, int[] shifts, int[] bits) {
        static RadixPlan of(long n, int vocab) {
            int tokenBits = bitsFor(vocab), posBits = bitsFor(n - 1);
            if (n > Integer.MAX_VALUE || tokenBits + posBits > 32) return null;
            int passes = tokenBits <= 1 ? 1 : Math.max(2, (tokenBits + 7) / 8);
            int[] shifts = new int[passes], bits = new int[passes];
            int at = posBits;
            for (int p = 0; p < passes; p++) {
                bits[p] = tokenBits / passes + (p < tokenBits % passes ? 1 : 0);
                shifts[p] = at;
                at += bits[p];
            }
            return new RadixPlan(posBits, shifts, bits);
        }

        /** Bits that hold every value in [0, max]. */
        static int bitsFor(long max) { return 64 - Long.numberOfLeadingZeros(max); }
    }

    private void radixBackward(RadixPlan plan, int n, Tensor dOut, Tensor tokens, int k, Tensor dTable) {
        int d = dTable.dim(1), vocab = dTable.dim(0), passes = plan.shifts().length;
        int blocks = gridFor((long) n * 32, BWD_THREADS, ctx.multiprocessorCount());  // one warp per sorted entry
        int tiles = (n + RADIX_TILE - 1) / RADIX_TILE;
        Tensor a = ctx.scratch(DType.I32, n), b = ctx.scratch(DType.I32, n);
        Tensor hist = ctx.scratch(DType.I32, passes * RADIX_BINS, tiles);  // [pass][digit][tile]
        ctx.launch("patch_embed_keys32", tiles, 1, 1, RADIX_THREADS, 1, 1, 0,
                tokens, n, vocab, plan.posBits(), a, hist, tiles, passes * RADIX_BINS * tiles, plan.shifts()[0], plan.bits()[0]);
        for (int p = 0; p < passes; p++) {
            Tensor src = p % 2 == 0 ? a : b, dst = p % 2 == 0 ? b : a;
            boolean last = p == passes - 1;
            ctx.launch("patch_embed_radix_scatter", tiles, 1, 1, RADIX_THREADS, 1, 1, 0,
                    src, dst, n, tiles, hist.rows(p * RADIX_BINS, RADIX_BINS), plan.shifts()[p], plan.bits()[p],
                    last ? (Object) 0L : hist.rows((p + 1) * RADIX_BINS, RADIX_BINS),
                    last ? 0 : plan.shifts()[p + 1], last ? 0 : plan.bits()[p + 1]);
        }
        Tensor sorted = passes % 2 == 0 ? a : b;
        ctx.launch("patch_embed_bwd_runs32", blocks, 1, 1, BWD_THREADS, 1, 1, 0, sorted, n, plan.posBits(), vocab, dOut, dTable, k, d);
    }

    /** General path: 64-bit (token, position) keys, bitonic network padded to a power of two, one block per run. */
    private void bitonicBackward(long n, Tensor dOut, Tensor tokens, int k, Tensor dTable) {
        int d = dTable.dim(1);
        if (n >= (1L << 32)) throw new IllegalArgumentException("patchEmbedBackward: too many tokens (" + n + ")");
        long padded = paddedLength(n);
        if (padded * 2 > Integer.MAX_VALUE) throw new IllegalArgumentException("patchEmbedBackward: too many tokens (" + n + ")");
        Tensor keys = ctx.scratch(DType.I32, (int) (padded * 2)); // 64-bit keys
        int sms = ctx.multiprocessorCount();
        ctx.launch("patch_embed_keys", gridFor(padded, 256, sms), 1, 1, 256, 1, 1, 0, tokens, n, dTable.dim(0), keys, padded);
        int tiles = (int) (padded / SORT_TILE);
        ctx.launch("bitonic_sort_tiles", tiles, 1, 1, SORT_TILE / 2, 1, 1, 0, keys);
        for (long size = 2L * SORT_TILE; size <= padded; size <<= 1) {
            for (long stride = size / 2; stride >= SORT_TILE; stride >>= 1)
                ctx.launch("bitonic_global_pass", gridFor(padded / 2, 256, sms), 1, 1, 256, 1, 1, 0, keys, padded, size, stride);
            ctx.launch("bitonic_merge_tiles", tiles, 1, 1, SORT_TILE / 2, 1, 1, 0, keys, size);
        }
        ctx.launch("patch_embed_bwd_runs", (int) Math.min(n, 1L << 20), 1, 1, THREADS, 1, 1, 0, keys, n, dOut, dTable, k, d);
    }

    private static boolean aligned16(Tensor t) { return (CudaStorage.addressOf(t) & 15) == 0; }

    /** Power of two ≥ max(n, SORT_TILE): the bitonic network's length. */
    static long paddedLength(long n) {
        long p = SORT_TILE;
        while (p < n) p <<= 1;
        return p;
    }

    private static int gridFor(long work, int threads, int sms) {
        return (int) Math.max(1, Math.min((work + threads - 1) / threads, 32L * sms));
    }

    private static int checkShapes(Tensor table, Tensor tokens, int k) {
        if (k < 1) throw new IllegalArgumentException("patch size K must be >= 1, got " + k);
        if (table.rank() != 2) throw new IllegalArgumentException("embedding table must be [V, d], got " + table);
        if (tokens.dtype() != DType.I32 || tokens.rank() != 2) throw new IllegalArgumentException("tokens must be I32 [B, T·K], got " + tokens);
        if (tokens.dim(1) % k != 0) throw new IllegalArgumentException("token row length " + tokens.dim(1) + " is not a multiple of K = " + k);
        return tokens.dim(0) * (tokens.dim(1) / k);
    }
}
