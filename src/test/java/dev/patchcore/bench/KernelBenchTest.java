package dev.patchcore.bench;

import dev.patchcore.config.ModelConfig;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
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
    void paperPresetShapesComeFromThePresets() {
        KernelBench.Shapes s370 = KernelBench.Shapes.paper370m(), s13 = KernelBench.Shapes.paper(ModelConfig.preset("1.3b"));
        assertEquals(List.of("370m", 4, 2048, 1024, 2752, 16), List.of(s370.name(), s370.batch(), s370.seqLen(), s370.dim(), s370.ffn(), s370.heads()));
        assertEquals(8192, s370.rows());
        assertEquals(List.of("1.3b", 4, 2048, 2048, 5504, 16), List.of(s13.name(), s13.batch(), s13.seqLen(), s13.dim(), s13.ffn(), s13.heads()));
        assertEquals(2560, KernelBench.Shapes.paper(ModelConfig.preset("2.7b")).dim());
    }

    @Test
    void mainTableLeavesUnmeasuredColumnsEmpty() {
        String table = KernelBench.markdown(List.of(row("add", "8x8", 0.02, Double.NaN)));
        assertTrue(table.lines().toList().get(2).startsWith("| add | 8x8 | 0.0200 | 50.0 |  | 50.0 |  |  | 10 |"), table);
    }

    /** --only: the ceilings and the matching ops alone, matched case-insensitively; a bad pattern is one clear error. */
    @Test
    void onlyMeasuresTheMatchingOps() {
        try (dev.patchcore.backend.Backend be = new dev.patchcore.backend.cpu.CpuBackend(1)) {
            List<KernelBench.Row> rows = new KernelBench(be, KernelBench.Shapes.small(), 3).withOnly(KernelBench.onlyPattern("^ROPE")).run();
            assertEquals(List.of("ceiling: device copy", "ceiling: gemm", "rope", "rope backward"), rows.stream().map(KernelBench.Row::op).toList());
        }
        var e = assertThrows(IllegalArgumentException.class, () -> KernelBench.onlyPattern("rms["));
        assertTrue(e.getMessage().startsWith("--only 'rms[' is not a regular expression: "), e.getMessage());
    }
}
