package dev.patchcore.backend.cuda;

import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.selftest.CheckResult;
import dev.patchcore.selftest.ParityChecks;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The parity harness itself, on the host: CPU against CPU passes every row; a wrong result is caught. */
class ParityHarnessTest {
    @Test
    void cpuAgainstItselfPassesEveryCheck() {
        try (CpuBackend a = new CpuBackend(2); CpuBackend b = new CpuBackend(2)) {
            List<CheckResult> rows = new ParityChecks(a, b, 9, false).runAll();
            StringBuilder failed = new StringBuilder();
            for (CheckResult r : rows) if (!r.passed()) failed.append('\n').append(r.row());
            assertEquals(0, CheckResult.failures(rows), failed.toString());
            assertTrue(rows.size() > 100, "one row per compared output: " + rows.size());
        }
    }

    @Test
    void relativeErrorFlagsNanAndMismatch() {
        assertEquals(0.0, ParityChecks.relErr(new float[] {1, 2}, new float[] {1, 2}));
        assertTrue(Double.isNaN(ParityChecks.relErr(new float[] {Float.NaN, 2}, new float[] {1, 2})));
        assertFalse(CheckResult.of("x", "-", dev.patchcore.tensor.DType.F32, Double.NaN, 1).passed());
        assertEquals(0.5, ParityChecks.relErr(new float[] {1.5f, 0}, new float[] {1, 0}), 1e-12);
        assertEquals(Double.POSITIVE_INFINITY, ParityChecks.relErr(new float[] {1}, new float[] {1, 2}));
    }
}
