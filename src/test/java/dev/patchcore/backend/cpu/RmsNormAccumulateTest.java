package dev.patchcore.backend.cpu;

import dev.patchcore.autograd.Parameter;
import dev.patchcore.autograd.Tape;
import dev.patchcore.autograd.Var;
import dev.patchcore.backend.Backend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.model.LlamaModel;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Backend#rmsNormBackwardAccumulate} on the CPU backend: against a float64 reference of dxAcc + dx and the gain
 * gradient, bit for bit against rmsNormBackward followed by addInPlace, its argument checks, and the tape's use of it in
 * {@link Tape#addRmsNorm} (the gradients of a model are those of the unfused backward and add).
 */
class RmsNormAccumulateTest {
    @ParameterizedTest(name = "N={0} d={1}")
    @CsvSource({"3,24", "5,1000", "7,1032", "64,1024", "5,13", "1,1"})
    void addsTheInputGradientToDxAccInPlace(int n, int d) {
        try (CpuBackend be = new CpuBackend(2)) {
            be.poisonScratch(true);
            Random rnd = new Random(31L * n + d);
            float[] x = nonZero(rnd, n * d, 2), dy = nonZero(rnd, n * d, 1), gain = nonZero(rnd, d, 1.5f);
            float[] acc0 = nonZero(rnd, n * d, 1), dGain0 = nonZero(rnd, d, 1);
            Tensor xt = upload(be, x, n, d), dyt = upload(be, dy, n, d), gt = upload(be, gain, d);
            Tensor rstd = be.rmsNorm(xt, gt, 1e-5f).rstd();
            float[] rs = be.download(rstd);

            Tensor acc = upload(be, acc0, n, d), dGain = upload(be, dGain0, d);
            assertSame(acc, be.rmsNormBackwardAccumulate(dyt, xt, gt, rstd, dGain, acc), "returns dxAcc");

            // float64 reference: dxAcc0 + r·(g∘dy) − x·r³/d·Σ(dy∘g∘x); dGain0 + Σ_rows dy·x·r.
            double[] wantDx = new double[n * d], wantDg = new double[d];
            for (int c = 0; c < d; c++) wantDg[c] = dGain0[c];
            for (int r = 0; r < n; r++) {
                double dot = 0, rr = rs[r];
                for (int c = 0; c < d; c++) dot += (double) dy[r * d + c] * gain[c] * x[r * d + c];
                for (int c = 0; c < d; c++) {
                    int i = r * d + c;
                    wantDx[i] = acc0[i] + rr * gain[c] * dy[i] - x[i] * rr * rr * rr / d * dot;
                    wantDg[c] += (double) dy[i] * x[i] * rr;
                }
            }
            assertClose("dxAcc", be.download(acc), wantDx);
            assertClose("dGain", be.download(dGain), wantDg);

            // The unfused pair computes the same float operations: bit for bit.
            Tensor accB = upload(be, acc0, n, d), dGainB = upload(be, dGain0, d);
            be.addInPlace(accB, be.rmsNormBackward(dyt, xt, gt, rstd, dGainB));
            assertArrayEquals(be.download(accB), be.download(acc), "dxAcc = rmsNormBackward + addInPlace");
            assertArrayEquals(be.download(dGainB), be.download(dGain), "dGain = rmsNormBackward's");
        }
    }

    @Test
    void rejectsMismatchedOrAliasedAccumulators() {
        try (CpuBackend be = new CpuBackend(1)) {
            int n = 4, d = 16;
            Tensor x = be.allocate(DType.F32, n, d), dy = be.allocate(DType.F32, n, d), g = be.allocate(DType.F32, d);
            Tensor rstd = be.allocate(DType.F32, n), dGain = be.allocate(DType.F32, d);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> be.rmsNormBackwardAccumulate(dy, x, g, rstd, dGain, be.allocate(DType.F32, n, d + 1)));
            assertTrue(e.getMessage().contains("dxAcc"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> be.rmsNormBackwardAccumulate(dy, x, g, rstd, dGain, be.allocate(DType.F32, n + 1, d)));
            assertThrows(IllegalArgumentException.class, () -> be.rmsNormBackwardAccumulate(dy, x, g, rstd, dGain, dy));
            assertThrows(IllegalArgumentException.class, () -> be.rmsNormBackwardAccumulate(dy, x, g, rstd, dGain, x.reshape(n * d)));
            assertThrows(IllegalArgumentException.class, () -> be.rmsNormBackwardAccumulate(dy, x, g, rstd, be.allocate(DType.F32, d + 1),
                    be.allocate(DType.F32, n, d)));
        }
    }

    private static final ModelConfig CONFIG = new ModelConfig("t", 97, 64, 96, 3, 4, 16, 10000f, 1e-5f);

    /**
     * A model's micro-batch through the tape with the backend's fused call, and with that call replaced by the unfused
     * backward and add: the fused one is used (twice per layer but the last norm's), and every parameter gradient is the
     * same bit for bit.
     */
    @Test
    void theTapeFusesTheResidualGradientAddAndGetsTheSameGradients() {
        AtomicInteger fusedCalls = new AtomicInteger(), unfusedCalls = new AtomicInteger();
        List<float[]> fused = gradients(false, fusedCalls), unfused = gradients(true, unfusedCalls);
        assertEquals(2 * CONFIG.layers() - 1, fusedCalls.get(), "fused calls: every addRmsNorm whose sum has a gradient");
        assertEquals(fusedCalls.get(), unfusedCalls.get());
        assertEquals(fused.size(), unfused.size());
        for (int i = 0; i < fused.size(); i++) assertArrayEquals(unfused.get(i), fused.get(i), "gradient of parameter " + i);
    }

    /** Parameter gradients of one micro-batch; {@code unfuse}: rmsNormBackwardAccumulate runs as backward + addInPlace. */
    private static List<float[]> gradients(boolean unfuse, AtomicInteger accumulateCalls) {
        try (CpuBackend cpu = new CpuBackend(2)) {
            cpu.poisonScratch(true);
            Backend be = (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class}, (p, m, a) -> {
                if (m.getName().equals("rmsNormBackwardAccumulate")) {
                    accumulateCalls.incrementAndGet();
                    if (unfuse) {
                        Tensor acc = (Tensor) a[5];
                        cpu.addInPlace(acc, cpu.rmsNormBackward((Tensor) a[0], (Tensor) a[1], (Tensor) a[2], (Tensor) a[3], (Tensor) a[4]));
                        return acc;
                    }
                }
                try {
                    return m.invoke(cpu, a);
                } catch (InvocationTargetException e) {
                    throw e.getCause();
                }
            });
            LlamaModel model = new LlamaModel(be, CONFIG);
            model.initialize(be, 5);
            int batch = 2, patches = CONFIG.contextLength() / 2;
            Random rng = new Random(11);
            int[] ids = new int[batch * patches], targets = new int[batch * patches];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = rng.nextInt(CONFIG.vocabSize());
                targets[i] = rng.nextInt(CONFIG.vocabSize());
            }
            Tensor tokens = be.allocate(DType.I32, batch, patches), tg = be.allocate(DType.I32, batch * patches, 1);
            be.uploadInts(tokens, ids);
            be.uploadInts(tg, targets);
            Tape tape = new Tape(be);
            Var logits = model.forward(tape, tokens, batch, 1);
            tape.crossEntropyK(logits, tg, CONFIG.vocabSize(), 1f / (batch * patches));
            tape.backward();
            List<float[]> grads = new ArrayList<>();
            for (Parameter p : model.parameters()) grads.add(be.download(p.grad()));
            return grads;
        }
    }

    private static float[] nonZero(Random rnd, int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            float m = scale * (0.1f + 0.9f * rnd.nextFloat());
            v[i] = rnd.nextBoolean() ? m : -m;
        }
        return v;
    }

    private static Tensor upload(CpuBackend be, float[] v, int... shape) {
        Tensor t = be.allocate(DType.F32, shape);
        be.upload(t, v);
        return t;
    }

    private static void assertClose(String what, float[] got, double[] want) {
        double err = 0, norm = 0;
        for (int i = 0; i < got.length; i++) {
            err += (got[i] - want[i]) * (got[i] - want[i]);
            norm += want[i] * want[i];
        }
        double rel = Math.sqrt(err / Math.max(norm, 1e-30));
        assertTrue(rel < 1e-5, what + ": relative error " + rel);
    }
}
