package dev.patchcore.bench;

import dev.patchcore.backend.Backend;
import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.config.ModelConfig;
import dev.patchcore.tensor.DType;
import dev.patchcore.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

class OpProfileTest {
    /** Only ops are timed, only while recording; matmuls are labelled by weight shape; the results pass through unchanged. */
    @Test
    void recordsOpsBetweenStartAndStop() {
        try (Backend cpu = new CpuBackend()) {
            OpProfile profile = OpProfile.of(cpu);
            Backend be = profile.backend();
            Tensor x = be.allocate(DType.F32, 8, 16), w = be.allocate(DType.F32, 4, 16);
            be.upload(x, new float[8 * 16]);
            be.matmul(x, w);  // not recording: not counted
            profile.start();
            Tensor y = be.matmul(x, w);
            be.matmul(x, w);
            be.add(y, y);
            be.download(y);  // a wait of the harness, not an op
            OpProfile.Report r = profile.stop();
            Map<String, OpProfile.Line> byOp = r.lines().stream().collect(Collectors.toMap(OpProfile.Line::op, Function.identity()));
            assertEquals(Map.of("matmul [4 × 16]", 2, "add", 1),
                    byOp.values().stream().collect(Collectors.toMap(OpProfile.Line::op, OpProfile.Line::calls)));
            assertArrayEquals(new int[] {8, 4}, y.shape());
            double inOps = r.lines().stream().mapToDouble(OpProfile.Line::millis).sum();
            assertEquals(r.totalMillis(), inOps + r.betweenOpsMillis(), 1e-9);
            assertTrue(r.lines().getFirst().millis() >= r.lines().getLast().millis(), "largest first");
            assertThrows(IllegalStateException.class, profile::stop);
            be.free(x);
            be.free(w);
        }
    }

    /** bench speed --breakdown: each setting gets a report of one more full step in which the step's ops all appear. */
    @Test
    void speedTableBreakdownCoversTheWholeStep() {
        ModelConfig tiny = ModelConfig.preset("tiny").withContext(16);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        try (Backend cpu = new CpuBackend()) {
            List<SpeedTable.Row> rows = new SpeedTable(cpu, tiny, 2, 4, 4, 0, 1).withBreakdown(true).run(new PrintStream(log, true));
            assertEquals(3, rows.size());
            for (SpeedTable.Row row : rows) {
                OpProfile.Report r = row.breakdown();
                assertNotNull(r, row.setting());
                List<String> ops = r.lines().stream().map(OpProfile.Line::op).toList();
                for (String op : List.of("patchEmbed", "attention", "attentionBackward", "crossEntropyK", "adamW", "sumOfSquares", "rmsNormBackward"))
                    assertTrue(ops.contains(op), row.setting() + " lacks " + op + ": " + ops);
                int adamCalls = r.lines().stream().filter(l -> l.op().equals("adamW")).findFirst().orElseThrow().calls();
                assertEquals(tiny.layers() * 9 + 3, adamCalls, "one AdamW call per parameter tensor");
                assertTrue(r.totalMillis() > 0 && r.betweenOpsMillis() >= 0);
            }
        }
        assertTrue(log.toString().contains("between ops"), log.toString());
        try (Backend cpu = new CpuBackend()) {
            assertNull(new SpeedTable(cpu, tiny, 2, 4, 4, 0, 1).run(new PrintStream(new ByteArrayOutputStream())).getFirst().breakdown());
        }
    }
}
