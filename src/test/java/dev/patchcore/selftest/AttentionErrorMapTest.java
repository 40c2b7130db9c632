package dev.patchcore.selftest;

import dev.patchcore.backend.cpu.CpuBackend;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The block map the selftest prints for a new attention forward, with two agreeing backends: every block '.'. */
class AttentionErrorMapTest {
    @Test
    void agreeingBackendsGiveAnAllDotMapOfTheRightShape() {
        try (CpuBackend a = new CpuBackend(2); CpuBackend b = new CpuBackend(2)) {
            for (int dh : new int[] {64, 128}) {
                List<CheckResult> rows = new ArrayList<>();
                new ParityChecks(a, b, 3, false).attentionErrorMap(rows, dh);
                assertEquals(1, rows.size());
                CheckResult r = rows.getFirst();
                assertTrue(r.passed(), r.row());
                String[] parts = r.note().split(" {2}lse ");
                String[] blockRows = parts[0].split("\\|");
                assertEquals(16, blockRows.length, "128 rows in blocks of 8");
                for (String br : blockRows) assertEquals(".".repeat(dh / 8), br);
                assertEquals(".".repeat(16), parts[1]);
                rows.clear();
                new ParityChecks(a, b, 4, false).attentionBackwardErrorMap(rows, dh);
                assertTrue(rows.getFirst().passed(), rows.getFirst().row());
                assertTrue(rows.getFirst().note().startsWith("dq " + ".".repeat(dh / 8) + "|"), rows.getFirst().note());
            }
        }
    }

    @Test
    void aWrongBlockShowsWhereItIs() {
        float[] want = new float[16 * 16], got = new float[16 * 16];
        for (int i = 0; i < want.length; i++) want[i] = got[i] = 1f;
        got[9 * 16 + 3] = 2f;  // row 9 (second block row), column 3 (first block column)
        ParityChecks.BlockMap m = ParityChecks.BlockMap.of(got, want, 16, 16, 0.02);
        assertEquals("..|#.", m.map());
        assertTrue(!m.ok());
    }
}
