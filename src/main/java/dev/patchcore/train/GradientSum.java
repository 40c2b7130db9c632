package dev.patchcore.train;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.backend.Backend;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * Gives every data-parallel replica the sum of all replicas' gradients, as a reduce-scatter then an all-gather: the
 * gradients are cut into chunks of at most {@link #chunk} floats, chunk c owned by replica c mod N. Each owner adds
 * the other replicas' copies of its chunks into its own (its own gradient first, then the others in replica order,
 * through one scratch buffer), then every replica copies each sum from its owner. Every replica's links carry about
 * 2 × (N − 1)/N of the gradients, as in a ring all-reduce, instead of one replica carrying all of it. On CUDA the copies
 * go device to device on the receiving replica's stream ({@link Backend#copyFrom}), so all owners work at once;
 * elsewhere through the host, with the same bits. Each sum is computed once, so all replicas hold the same bits.
 * Used by {@link StepRunner} (pretraining) and {@link FineTuner}.
 */
final class GradientSum {
    /** The chunk: 4M floats (16 MiB, one scratch buffer per replica), whatever the largest parameter (tests shrink it). */
    static int chunk = 1 << 22;

    /** A piece of parameter {@code param}'s gradient, floats [from, from + len), summed by replica {@code owner}. */
    private record Chunk(int param, int from, int len, int owner) {}

    private final List<Backend> backends;
    /** The chunks, the same every step (made at the first sum), and the largest chunk's floats. */
    private List<Chunk> plan;
    private int planFloats;

    /** A sum over these replicas' backends (replica r on {@code backends.get(r)}); enables peer access between them. */
    GradientSum(List<Backend> backends) {
        this.backends = List.copyOf(backends);
        for (Backend a : backends)
            for (Backend b : backends) if (a != b) a.connect(b);
    }

    /**
     * Sums the gradients of {@code params.get(r)} (replica r's parameters, the same shapes in the same order on every
     * replica) into each of them; waits for every replica's queued work first, and for the copies at the end.
     */
    void run(List<List<Parameter>> params) {
        int n = backends.size();
        if (params.size() != n) throw new IllegalArgumentException(params.size() + " parameter lists for " + n + " replicas");
        if (plan == null) plan = plan(params.getFirst(), n);
        for (Backend b : backends) b.synchronize();  // every backward pass is done
        Tensor[] buffers = new Tensor[n];
        long[] marks = new long[n];  // the buffers go back at the end, and nothing the caller holds
        for (int r = 0; r < n; r++) {
            marks[r] = backends.get(r).scratchMark();
            buffers[r] = backends.get(r).scratch(DType.F32, planFloats);
        }
        // Reduce-scatter: chunk c's owner o reads the others' copies of it; no chunk is written by more than its owner.
        for (Chunk c : plan) {
            Backend owner = backends.get(c.owner());
            Tensor sum = grad(params, c.owner(), c), slot = buffers[c.owner()].rows(0, c.len());
            for (int r = 0; r < n; r++) {
                if (r == c.owner()) continue;
                owner.copyFrom(backends.get(r), grad(params, r, c), slot);
                owner.addInPlace(sum, slot);
            }
        }
        for (Backend b : backends) b.synchronize();  // every sum is complete, and every read of a chunk by its owner done
        // All-gather: each replica copies the chunks it does not own from their owners.
        for (Chunk c : plan)
            for (int r = 0; r < n; r++)
                if (r != c.owner()) backends.get(r).copyFrom(backends.get(c.owner()), grad(params, c.owner(), c), grad(params, r, c));
        // The updates that follow zero the gradients these copies read: let every copy finish first.
        for (Backend b : backends) b.synchronize();
        for (int r = 0; r < n; r++) backends.get(r).releaseScratchTo(marks[r]);
    }

    private List<Chunk> plan(List<Parameter> params, int n) {
        List<Chunk> out = new ArrayList<>();
        for (int i = 0; i < params.size(); i++) {
            long numel = params.get(i).grad().numel();
            for (long from = 0; from < numel; from += chunk) {
                int len = (int) Math.min(chunk, numel - from);
                out.add(new Chunk(i, Math.toIntExact(from), len, out.size() % n));
                planFloats = Math.max(planFloats, len);
            }
        }
        return out;
    }

    /** Chunk {@code c} of replica r's gradient, as a flat view. */
    private static Tensor grad(List<List<Parameter>> params, int r, Chunk c) {
        Tensor g = params.get(r).get(c.param()).grad();
        return g.reshape(Math.toIntExact(g.numel())).rows(c.from(), c.len());
    }
}
