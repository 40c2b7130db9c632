package dev.patchcore.backend.cuda;

import dev.patchcore.backend.cpu.CpuBackend;
import dev.patchcore.selftest.CheckResult;
import dev.patchcore.selftest.ParityChecks;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The selftest's parity checks as JUnit tests: CUDA against CPU for every op. Without a usable GPU every test is
 * reported SKIPPED with the reason (never passed).
 */
class CudaParityTest {
    private static CudaBackend cuda;
    private static CpuBackend cpu;
    private static String unavailable;

    @BeforeAll
    static void open() {
        try {
            cuda = CudaBackend.open(null, true);
            cpu = new CpuBackend();
        } catch (CudaUnavailableException e) {
            unavailable = e.getMessage();
        }
    }

    @AfterAll
    static void close() {
        if (cuda != null) cuda.close();
        if (cpu != null) cpu.close();
    }

    @TestFactory
    Stream<DynamicTest> everyOpMatchesTheCpuReference() {
        if (cuda == null) {
            return Stream.of(DynamicTest.dynamicTest("CUDA parity", () -> assumeTrue(false, "CUDA unavailable: " + unavailable)));
        }
        ParityChecks checks = new ParityChecks(cuda, cpu, 42, false);
        return checks.checks().stream().map(c -> DynamicTest.dynamicTest(c.name(), () -> {
            List<CheckResult> rows = checks.run(c);
            StringBuilder failed = new StringBuilder();
            for (CheckResult r : rows) if (!r.passed()) failed.append('\n').append(r.row());
            assertEquals(0, CheckResult.failures(rows), failed.toString());
        }));
    }

    @Test
    void describeNamesTheDevice() {
        assumeTrue(cuda != null, "CUDA unavailable: " + unavailable);
        assertTrue(cuda.describe().contains("SMs"));
    }
}
