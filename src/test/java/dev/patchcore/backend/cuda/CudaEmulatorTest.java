package dev.patchcore.backend.cuda;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

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
 * The CUDA kernels on a machine without a GPU: the standalone kernel test programs of {@code src/test/cuda}, built with
 * g++ against the CPU emulator of {@code src/test/cuda/emu} (every block's threads as fibers that switch at barriers and
 * warp-synchronous instructions, ldmatrix and mma.sync included) and run, each kernel against its host reference. The
 * same programs check them on a GPU (gpu-check.sh, pack.sh). {@code kernels_test.cu}: the memory-bound kernels;
 * {@code flash_attention_test.cu}: every mma.sync flash-attention kernel; {@code flash_wgmma_test.cu}: the Hopper ones
 * (every wgmma forward, TMA included, and the wgmma backwards, launched as CudaFlashAttention does, on an emulated
 * device of compute capability 9.0). Each twice: the
 * threads of a block resumed first to last with cp.async copies landing at once, and last to first with copies landing
 * at their wait, so that a missing barrier or wait shows in one order or the other. Skipped, with the reason, where
 * there is no g++.
 */
class CudaEmulatorTest {
    @ParameterizedTest(name = "{0}, EMU_ORDER={1}")
    @CsvSource({"kernels_test, forward", "kernels_test, reverse", "flash_attention_test, forward", "flash_attention_test, reverse",
            "flash_wgmma_test, forward", "flash_wgmma_test, reverse"})
    void kernelsMatchTheirHostReferencesOnTheEmulator(String program, String order) throws IOException, InterruptedException {
        assumeTrue(EmulatedKernelContext.onPath("g++"), "no g++ on PATH: the CUDA kernels' emulated check needs a C++ compiler");
        Path root = Path.of("").toAbsolutePath(), build = EmulatedKernelContext.buildDirectory(root);
        Path log = build.resolve(program + "-" + order + ".log");
        Files.createDirectories(log.getParent());
        ProcessBuilder pb = new ProcessBuilder("bash", "src/test/cuda/emu/run.sh", build.toString(), program)
                .directory(root.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("EMU_ORDER", order);
        Process p = pb.start();
        boolean finished = p.waitFor(10, TimeUnit.MINUTES);
        if (!finished) p.destroyForcibly();
        String out = Files.readString(log, StandardCharsets.UTF_8);
        String failures = out.lines().filter(l -> l.startsWith("  FAIL") || l.endsWith("FAIL") || l.startsWith("emu:") || l.contains("error"))
                .limit(40).collect(Collectors.joining("\n"));
        assertTrue(finished, program + " on the emulator did not finish in 10 minutes; log: " + log);
        assertEquals(0, p.exitValue(), program + " on the emulator failed (log: " + log + "):\n" + failures);
        if (program.equals("kernels_test")) {
            assertTrue(out.contains("ALL PASSED: 0 failure(s)"), "no pass line in " + log);
            assertTrue(out.lines().filter(l -> l.startsWith("  ok")).count() >= 400, "fewer checks than expected ran: " + log);
        } else if (program.equals("flash_attention_test")) {
            assertTrue(out.contains("check: ALL OK"), "no pass line in " + log);
            // 8 problems: 3 to 7 forward and backward kernels each (every generation, every variant of its head dim)
            assertTrue(out.lines().filter(l -> l.endsWith("  ok")).count() >= 50, "fewer checks than expected ran: " + log);
        } else {
            assertTrue(out.contains("check: ALL OK"), "no pass line in " + log);
            // 14 problems: 9 at D = 64 (6 forwards and the backward each), 5 at D = 128 (4 forwards and the backward)
            assertEquals(88, out.lines().filter(l -> l.endsWith("  ok")).count(), "not every check ran: " + log);
        }
    }

    /**
     * The emulator's bounds check of static shared memory (STATIC_SHARED's guard bytes, emu.h): kernels_test's
     * {@code --emu-overrun} and {@code --emu-underrun} launch a kernel whose first or last thread writes one element
     * outside a 64-float array, after an in-bounds launch of it that must pass; the run must stop with the emulator's
     * error naming the array.
     */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"--emu-overrun, overrun: 4 guard byte(s) past its end written", "--emu-underrun, underrun: 4 guard byte(s) before its start written"})
    void aWriteOutsideAStaticSharedArrayStopsTheEmulator(String mode, String expected) throws IOException, InterruptedException {
        assumeTrue(EmulatedKernelContext.onPath("g++"), "no g++ on PATH: the emulator's check needs a C++ compiler");
        Path root = Path.of("").toAbsolutePath(), build = EmulatedKernelContext.buildDirectory(root);
        Path log = build.resolve("kernels_test" + mode + ".log");
        Files.createDirectories(log.getParent());
        Process p = new ProcessBuilder("bash", "src/test/cuda/emu/run.sh", build.toString(), "kernels_test", mode)
                .directory(root.toFile()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        boolean finished = p.waitFor(10, TimeUnit.MINUTES);
        if (!finished) p.destroyForcibly();
        String out = Files.readString(log, StandardCharsets.UTF_8);
        assertTrue(finished, "kernels_test " + mode + " on the emulator did not finish in 10 minutes; log: " + log);
        assertTrue(out.contains("the in-bounds launch passed"), "the in-bounds launch did not pass; log " + log + ":\n" + out);
        assertTrue(out.contains("emu: static shared memory `guarded` " + expected),
                "no error naming `guarded` for the " + mode.substring(6) + "; log " + log + ":\n" + out);
        assertTrue(p.exitValue() != 0, "kernels_test " + mode + " exited 0; log: " + log);
    }
}
