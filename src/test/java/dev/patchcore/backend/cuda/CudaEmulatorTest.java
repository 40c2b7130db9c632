package dev.patchcore.backend.cuda;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The memory-bound CUDA kernels on a machine without a GPU: {@code src/test/cuda/kernels_test.cu} built with g++ against
 * the CPU emulator of {@code src/test/cuda/emu} (every block's threads as fibers that switch at barriers and warp
 * shuffles) and run, each kernel against its host reference. The same program checks them on a GPU (gpu-check.sh).
 * Twice: the threads of a block resumed first to last and last to first between barriers, so that a barrier a kernel
 * lacks shows in one order or the other. Skipped, with the reason, where there is no g++; the tensor-core attention
 * kernels are not part of it.
 */
class CudaEmulatorTest {
    @ParameterizedTest(name = "EMU_ORDER={0}")
    @ValueSource(strings = {"forward", "reverse"})
    void kernelsMatchTheirHostReferencesOnTheEmulator(String order) throws IOException, InterruptedException {
        assumeTrue(EmulatedKernelContext.onPath("g++"), "no g++ on PATH: the CUDA kernels' emulated check needs a C++ compiler");
        Path root = Path.of("").toAbsolutePath(), build = EmulatedKernelContext.buildDirectory(root);
        Path log = build.resolve("kernels_test-" + order + ".log");
        Files.createDirectories(log.getParent());
        ProcessBuilder pb = new ProcessBuilder("bash", "src/test/cuda/emu/run.sh", build.toString()).directory(root.toFile())
                .redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("EMU_ORDER", order);
        Process p = pb.start();
        boolean finished = p.waitFor(10, TimeUnit.MINUTES);
        if (!finished) p.destroyForcibly();
        String out = Files.readString(log, StandardCharsets.UTF_8);
        String failures = out.lines().filter(l -> l.startsWith("  FAIL") || l.startsWith("emu:") || l.contains("error"))
                .limit(40).collect(Collectors.joining("\n"));
        assertTrue(finished, "kernels_test on the emulator did not finish in 10 minutes; log: " + log);
        assertEquals(0, p.exitValue(), "kernels_test on the emulator failed (log: " + log + "):\n" + failures);
        assertTrue(out.contains("ALL PASSED: 0 failure(s)"), "no pass line in " + log);
        assertTrue(out.lines().filter(l -> l.startsWith("  ok")).count() >= 400, "fewer checks than expected ran: " + log);
    }
}
