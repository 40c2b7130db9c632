package dev.patchcore.bench;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** bench speed's model TFLOP/s and MFU per row. */
class SpeedTableFlopsTest {
    /**
     * The tiny model at T = 16 does 6N + 12·L·d·S = 5 014 272 + 98 304 = 5 112 576 FLOPs per position (N = 835 712). Every
     * row runs micro-batch × accumulation sequences of 16 positions (16 tokens, or 16 patches of 4), so the baseline and
     * the same-accumulation patch row do the same FLOPs per step on 4 times the tokens, and the third a quarter of them.
     */
    @Test void rowsReportModelFlopsAndMfu() {
        ModelConfig tiny = ModelConfig.preset("tiny").withContext(16);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        try (Backend cpu = new CpuBackend()) {
            List<SpeedTable.Row> rows = new SpeedTable(cpu, tiny, 2, 4, 4, 0, 1).withPeakTflops(0.5).run(new PrintStream(log, true));
            double[] positionsPerStep = {2 * 4 * 16, 2 * 4 * 16, 2 * 1 * 16};
            for (int i = 0; i < 3; i++) {
                SpeedTable.Row r = rows.get(i);
                double tflops = positionsPerStep[i] * 5_112_576.0 / r.medianStepSeconds() / 1e12;
                assertEquals(tflops, r.modelTflops(), tflops * 1e-12, r.setting());
                assertEquals(tflops / 0.5, r.mfu(), 1e-12, r.setting());
            }
            assertTrue(log.toString().contains("against a peak of 0.5 TFLOP/s (--peak-tflops)"), log.toString());
            String table = SpeedTable.markdown(rows);
            assertTrue(table.startsWith("| Settings | Tokens / sec | Speed-up | Model TFLOP/s | MFU |\n|---|---:|---:|---:|---:|\n"), table);
            assertTrue(log.toString().lines().filter(l -> l.contains("median step")).allMatch(l -> l.matches(".*tokens/s, [0-9.]+ GFLOP/s \\([0-9.]+% MFU\\)")),
                    log.toString());
            // Without a peak (the CPU has none) no MFU: NaN in the rows (null in --json), no column.
            ByteArrayOutputStream noPeakLog = new ByteArrayOutputStream();
            List<SpeedTable.Row> noPeak = new SpeedTable(cpu, tiny, 2, 4, 4, 0, 1).run(new PrintStream(noPeakLog, true));
            assertFalse(noPeakLog.toString().contains("MFU"), noPeakLog.toString());
            assertTrue(noPeak.stream().allMatch(r -> Double.isNaN(r.mfu()) && r.modelTflops() > 0));
            assertTrue(SpeedTable.markdown(noPeak).startsWith("| Settings | Tokens / sec | Speed-up | Model TFLOP/s |\n|---|---:|---:|---:|\n"));
            assertTrue(SpeedTable.json(noPeak, "cpu", tiny, 1).contains("\"mfu\": null"));
        }
    }
}
