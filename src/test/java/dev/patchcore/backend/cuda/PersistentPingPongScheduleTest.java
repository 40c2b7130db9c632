package dev.patchcore.backend.cuda;

import org.junit.jupiter.api.Test;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The schedule of the persistent ping-pong forward ({@code forward_wgmma_pingpong_persistent} in flash_wgmma.cu)
 * replayed on the host, one CTA at a time: its two warpgroups are coroutines that follow the kernel's control flow,
 * with mbarriers (arrival counts and phases), the two named barriers of the turns (256-arrival generations), and
 * cp.async loads that land whenever the random scheduler picks (in issue order per warpgroup, since an arrive-on
 * fires only after the same thread's earlier copies: {@code cp.async.mbarrier.arrive.noinc}). Whole warpgroups act at
 * once (warp skew and wgmma completion are not modelled; a per-warp simulation done during review covered those).
 * Checked: no deadlock; every wait finds
 * the tile it expects in its stage or buffer; no load is issued into a stage a warpgroup is still reading; every
 * tile of every item is computed once by each warpgroup; the named barriers end with no half-complete generation.
 */
class PersistentPingPongScheduleTest {
    static final int KS = 3, VS = 2, BR = 128, BC = 128;

    /** mbarrier: arrivals counted to {@code expected}, then the phase completes. */
    static final class MBar {
        final int expected;
        int count, phase;

        MBar(int expected) { this.expected = expected; }

        void arrive(int n) {
            count += n;
            assertTrue(count <= expected, "more arrivals than the barrier expects");
            if (count == expected) {
                count = 0;
                phase++;
            }
        }

        /** try_wait.parity: the phase of this parity has completed. */
        boolean done(int parity) { return (phase & 1) != parity; }
    }

    /** bar.sync / bar.arrive with 256 threads: two warpgroup arrivals complete a generation. */
    static final class Named {
        int count, generation;

        int arrive() {
            int g = generation;
            count += 128;
            if (count == 256) {
                count = 0;
                generation++;
            }
            return g;
        }
    }

    /** Coroutines on threads: exactly one runs at a time, switching only at {@link #pause}. */
    static final class Scheduler {
        final Random random;
        final Semaphore back = new Semaphore(0);
        final List<Actor> actors = new ArrayList<>();
        final Map<Integer, ArrayDeque<Runnable>> landings = new HashMap<>();
        Throwable failure;

        Scheduler(long seed) { random = new Random(seed); }

        final class Actor {
            final Semaphore go = new Semaphore(0);
            final int id;
            BooleanSupplier until = () -> true;
            boolean finished;

            Actor(int id) { this.id = id; }

            /** Gives control back until {@code condition} holds and the scheduler picks this actor again. */
            void pause(BooleanSupplier condition) {
                until = condition;
                back.release();
                go.acquireUninterruptibly();
            }
        }

        Actor spawn(int id, java.util.function.Consumer<Actor> body) {
            Actor a = new Actor(id);
            actors.add(a);
            landings.put(id, new ArrayDeque<>());
            Thread.ofVirtual().start(() -> {
                a.go.acquireUninterruptibly();
                try {
                    body.accept(a);
                } catch (Throwable t) {
                    failure = t;
                }
                a.finished = true;
                back.release();
            });
            return a;
        }

        void run() {
            for (long steps = 0; ; steps++) {
                assertTrue(steps < 2_000_000, "no progress");
                if (failure != null) throw new AssertionError(failure);
                List<Runnable> choices = new ArrayList<>();
                for (Actor a : actors) {
                    if (!a.finished && a.until.getAsBoolean()) choices.add(() -> {
                        a.go.release();
                        back.acquireUninterruptibly();
                    });
                    ArrayDeque<Runnable> q = landings.get(a.id);
                    if (!q.isEmpty()) choices.add(() -> q.poll().run());
                }
                if (choices.isEmpty()) {
                    if (actors.stream().allMatch(a -> a.finished)) break;
                    throw new AssertionError("deadlock");
                }
                choices.get(random.nextInt(choices.size())).run();
            }
            if (failure != null) throw new AssertionError(failure);
        }
    }

    record Item(int id, int q0, int nTiles) {}

    @Test
    void everyTileOnceFromTheRightStagesWithoutDeadlock() {
        // {B·H, T, SMs}: the bench shape (512 items on 132 SMs), one item per CTA, and small grids with many items each.
        int[][] cases = {{32, 2048, 132}, {3, 300, 132}, {1, 1, 1}, {1, 300, 1}, {5, 1000, 7}, {2, 129, 3}, {64, 300, 5}};
        for (int[] cs : cases)
            for (long seed = 0; seed < 2; seed++) replay(cs[0], cs[1], cs[2], seed);
    }

    private static void replay(int bh, int t, int sms, long seed) {
        int qTiles = (t + BR - 1) / BR, items = bh * qTiles, grid = Math.min(sms, items);
        Map<String, Integer> computed = new HashMap<>();
        for (int cta = 0; cta < grid; cta++) {
            final int c = cta;
            Scheduler s = new Scheduler(seed * 1000 + cta);
            MBar[] fullK = new MBar[KS], emptyK = new MBar[KS], fullV = new MBar[VS], emptyV = new MBar[VS];
            MBar[][] fullQ = new MBar[2][2];
            for (int i = 0; i < KS; i++) { fullK[i] = new MBar(128); emptyK[i] = new MBar(256); }
            for (int i = 0; i < VS; i++) { fullV[i] = new MBar(128); emptyV[i] = new MBar(256); }
            for (MBar[] row : fullQ) for (int w = 0; w < 2; w++) row[w] = new MBar(128);
            Named[] named = {null, new Named(), new Named()};
            String[] kStage = new String[KS], vStage = new String[VS];
            int[][] qBuffer = {{-1, -1}, {-1, -1}};
            List<Set<Integer>> readingK = new ArrayList<>(), readingV = new ArrayList<>();
            for (int i = 0; i < KS; i++) readingK.add(new HashSet<>());
            for (int i = 0; i < VS; i++) readingV.add(new HashSet<>());
            boolean[][] readingQ = new boolean[2][2];

            java.util.function.IntUnaryOperator itemAt = n -> SmallHostLogicTest.snakeItem(n, grid, c);
            java.util.function.IntFunction<Item> decode = it -> {
                int q0 = (qTiles - 1 - it / bh) * BR;
                return new Item(it, q0, (Math.min(q0 + BR, t) + BC - 1) / BC);
            };
            for (int wgIndex = 0; wgIndex < 2; wgIndex++) {
                final int wg = wgIndex;
                s.spawn(wg, a -> {
                    ArrayDeque<Runnable> myLandings = s.landings.get(wg);
                    // A load: written into its stage when it lands; its arrive-on fires then too (FIFO per warpgroup).
                    java.util.function.BiConsumer<Runnable, MBar> issue = (write, bar) -> myLandings.add(() -> {
                        write.run();
                        bar.arrive(128);
                    });
                    java.util.function.BiConsumer<Item, int[]> loadK = (x, ts) -> {  // ts = {tile, seq}
                        int st = ts[1] % KS, seq = ts[1];
                        if (seq >= KS) a.pause(() -> emptyK[st].done((seq / KS - 1) & 1));
                        assertTrue(readingK.get(st).isEmpty(), "K stage " + st + " overwritten while read");
                        String tile = x.id() + ":" + ts[0];
                        issue.accept(() -> kStage[st] = tile, fullK[st]);
                    };
                    java.util.function.BiConsumer<Item, int[]> loadV = (x, ts) -> {
                        int st = ts[1] % VS, seq = ts[1];
                        if (seq >= VS) a.pause(() -> emptyV[st].done((seq / VS - 1) & 1));
                        assertTrue(readingV.get(st).isEmpty(), "V stage " + st + " overwritten while read");
                        String tile = x.id() + ":" + ts[0];
                        issue.accept(() -> vStage[st] = tile, fullV[st]);
                    };
                    java.util.function.BiConsumer<Item, Integer> loadQ = (x, buf) -> {
                        assertTrue(!readingQ[buf][wg], "Q overwritten while read");
                        issue.accept(() -> qBuffer[buf][wg] = x.id(), fullQ[buf][wg]);
                    };
                    Runnable[] sync = {null, () -> barSync(a, named[1]), () -> barSync(a, named[2])};
                    int myTurn = 1 + wg, otherTurn = 2 - wg;

                    Item cur = decode.apply(itemAt.applyAsInt(0));
                    loadQ.accept(cur, 0);
                    if (wg == 0) loadK.accept(cur, new int[] {cur.nTiles() - 1, 0});
                    if (wg == 1) named[1].arrive();
                    int seq0 = 0;
                    for (int n = 0; ; n++) {
                        int nextIt = itemAt.applyAsInt(n + 1);
                        boolean more = nextIt < items;
                        Item next = decode.apply(more ? nextIt : 0);
                        if (more) loadQ.accept(next, (n + 1) & 1);
                        final int qb = n & 1, qParity = (n >> 1) & 1;
                        a.pause(() -> fullQ[qb][wg].done(qParity));
                        assertEquals(cur.id(), qBuffer[qb][wg], "Q buffer contents");
                        for (int j = cur.nTiles() - 1; j >= 0; j--) {
                            int i = cur.nTiles() - 1 - j, seq = seq0 + i, ks = seq % KS, vs = (seq + 1) & 1;
                            if (wg == 0) {
                                if (j > 0) loadK.accept(cur, new int[] {j - 1, seq + 1});
                                else if (more) loadK.accept(next, new int[] {next.nTiles() - 1, seq + 1});
                            } else {
                                loadV.accept(cur, new int[] {j, seq});
                            }
                            a.pause(() -> fullK[ks].done((seq / KS) & 1));
                            if (i > 0) a.pause(() -> fullV[vs].done(((seq - 1) / VS) & 1));
                            assertEquals(cur.id() + ":" + j, kStage[ks], "K stage contents");
                            if (i > 0) assertEquals(cur.id() + ":" + (j + 1), vStage[vs], "V stage contents");
                            // pingpong_step: the turn, S (and the pending P V) issued, the turn handed over.
                            sync[myTurn].run();
                            readingK.get(ks).add(wg);
                            readingQ[qb][wg] = true;
                            if (i > 0) readingV.get(vs).add(wg);
                            named[otherTurn].arrive();
                            a.pause(() -> true);  // the wgmmas run
                            readingK.get(ks).remove(wg);
                            readingQ[qb][wg] = false;
                            emptyK[ks].arrive(128);
                            computed.merge(wg + "/" + cur.id() + ":" + j, 1, Integer::sum);
                            if (i > 0) {
                                a.pause(() -> true);
                                readingV.get(vs).remove(wg);
                                emptyV[vs].arrive(128);
                            }
                        }
                        int seq = seq0 + cur.nTiles() - 1, vs = seq & 1;
                        a.pause(() -> fullV[vs].done((seq / VS) & 1));
                        assertEquals(cur.id() + ":0", vStage[vs], "V stage contents (P_0 V_0)");
                        readingV.get(vs).add(wg);
                        a.pause(() -> true);
                        readingV.get(vs).remove(wg);
                        emptyV[vs].arrive(128);
                        if (!more) break;
                        seq0 += cur.nTiles();
                        cur = next;
                    }
                    if (wg == 0) sync[1].run();
                });
            }
            s.run();
            assertEquals(0, named[1].count, "barrier 1 left half complete");
            assertEquals(0, named[2].count, "barrier 2 left half complete");
            assertTrue(s.landings.values().stream().allMatch(ArrayDeque::isEmpty));
        }
        int expected = 0;
        for (int it = 0; it < items; it++) {
            int q0 = (qTiles - 1 - it / bh) * BR, nTiles = (Math.min(q0 + BR, t) + BC - 1) / BC;
            for (int j = 0; j < nTiles; j++)
                for (int wg = 0; wg < 2; wg++) {
                    assertEquals(1, computed.get(wg + "/" + it + ":" + j), "item " + it + " tile " + j + " warpgroup " + wg + " of " + Arrays.toString(new int[] {bh, t, sms}));
                    expected++;
                }
        }
        assertEquals(expected, computed.size());
    }

    /** bar.sync: this warpgroup's 128 arrivals, then wait for the generation to complete. */
    private static void barSync(Scheduler.Actor a, Named b) {
        int g = b.arrive();
        a.pause(() -> b.generation != g);
    }
}
