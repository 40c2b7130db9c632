package dev.patchcore.bench;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The bench tables' formatting (the measuring itself needs a backend and is exercised by the CLI test). */
class KernelBenchTest {
    private static KernelBench.Row row(String op, String shape, double ms, double kernelMs) {
        return new KernelBench.Row(op, shape, ms, kernelMs, 1e6, 0, 1e6 / (ms / 1e3) / 1e9, Double.NaN, 0.5, 0.5 * ms / kernelMs, 10);
    }

    @Test
    void variantRowsArePairedWithTheirDefaultByOpAndShape() {
        List<KernelBench.Row> rows = List.of(
                row("rmsNorm backward", "8192x1024", 0.0367, 0.0300),
                row("rope", "8192x1024", 0.0200, 0.0150),
                row("rmsNorm backward [rmsnorm v2]", "8192x1024", 0.0250, 0.0200),
                row("patchEmbed backward K=1 [patchembed v2]", "B4", 0.04, Double.NaN),  // no default row: skipped
                row("launch overhead (add of 8) [launch v2]", "[8]", 0.004, 0.002));
        String table = KernelBench.variantsMarkdown(rows);
        List<String> lines = table.lines().toList();
        assertEquals(3, lines.size(), table);
        assertEquals("| rmsNorm backward | 8192x1024 | rmsnorm v2 | 0.0300 | 0.0200 | 1.50 | 0.0367 | 0.0250 | 1.47 |", lines.get(2));
        assertTrue(KernelBench.variantsMarkdown(rows.subList(0, 2)).isEmpty(), "no variants measured: no table");
    }

    @Test
    void mainTableLeavesUnmeasuredColumnsEmpty() {
        String table = KernelBench.markdown(List.of(row("add", "8x8", 0.02, Double.NaN)));
        assertTrue(table.lines().toList().get(2).startsWith("| add | 8x8 | 0.0200 | 50.0 |  | 50.0 |  |  | 10 |"), table);
    }
}
