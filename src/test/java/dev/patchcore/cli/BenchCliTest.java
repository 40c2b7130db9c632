package dev.patchcore.cli;

import dev.patchcore.testing.CapturedConsole;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bench and selftest as a user without a GPU meets them: bad input ends in one error line and exit code 2. */
class BenchCliTest {
    @RegisterExtension final CapturedConsole console = new CapturedConsole();
    private final ByteArrayOutputStream err = console.err, out = console.out;

    private static boolean gpuPresent() {
        try (var cuda = dev.patchcore.backend.cuda.CudaBackend.open(null, true)) {
            return true;
        } catch (dev.patchcore.backend.cuda.CudaUnavailableException e) {
            return false;
        }
    }

    private void assertOneErrorLine(String expectedFragment, String... args) {
        console.assertUserError(expectedFragment, args);
    }

    /** A regular expression that names no op is a mistake (a typo), not an empty table with exit code 0. */
    @Test void kernelsOnlyMatchingNoOpIsAnError(@TempDir Path dir) {
        err.reset();
        Path json = dir.resolve("k.json");
        int code = Main.run("bench", "kernels", "--backend", "cpu", "--runs", "1", "--only", "no-such-op", "--json", json.toString());
        List<String> errors = err.toString().lines().filter(l -> l.startsWith("error: ")).toList();
        assertEquals(2, code, err.toString());
        assertEquals(1, errors.size(), err.toString());
        assertTrue(errors.getFirst().contains("--only 'no-such-op' matches no op"), errors.getFirst());
        assertTrue(err.toString().strip().endsWith(errors.getFirst()), "the error is the last line: " + err);
        assertFalse(Files.exists(json), "no JSON of an empty table");
    }

    /** --only naming a ceiling prints the ceilings; the summary line says them as the table does. */
    @Test void kernelsOnlyACeiling() {
        err.reset();
        out.reset();
        assertEquals(0, Main.run("bench", "kernels", "--backend", "cpu", "--runs", "1", "--only", "ceiling: gemm"), err.toString());
        // (a CPU's 0.12 TFLOP/s was "0.1" in the summary line)
        String table = out.toString();
        String gemmRow = table.lines().filter(l -> l.startsWith("| ceiling: gemm |")).findFirst().orElseThrow();
        String tflops = gemmRow.split("\\|")[5].strip();
        assertTrue(table.contains("ceilings: copy ") && table.contains(", gemm " + tflops + " TFLOP/s"), table);
    }

    /** --warmup 0's note belongs to a run that starts: a backend that cannot open is one error line alone. */
    @Test void speedWarmupNoteDoesNotPrecedeABackendError() {
        org.junit.jupiter.api.Assumptions.assumeFalse(gpuPresent(), "a GPU is present: --backend cuda would run");
        assertOneErrorLine("--backend cuda", "bench", "speed", "--backend", "cuda", "--warmup", "0", "--steps", "1");
    }

    /** An unknown --shape is refused before the backend opens (on CUDA: seconds) and before anything is printed. */
    @Test void kernelsUnknownShapeIsRefusedBeforeTheBackendOpens() {
        out.reset();
        assertOneErrorLine("unknown --shape 'huge'", "bench", "kernels", "--shape", "huge");
        assertEquals("", out.toString(), "nothing printed before the refusal");
    }

    /**
     * selftest --only with no matching check: refused before the table starts, as one "error: ..." line (exit code 2)
     * instead of a "selftest: 0 checks" summary and a line without the prefix. Its choice of checks runs without a GPU.
     */
    @Test void selftestOnlyMatchingNoCheckIsAnError() {
        try (var cpu = new dev.patchcore.backend.cpu.CpuBackend(1)) {
            var all = new dev.patchcore.selftest.ParityChecks(cpu, cpu, 1, false).checks();
            assertEquals(all, SelftestCommand.selected(all, null));
            assertEquals(List.of("rope Dh=64", "rope Dh=128"), SelftestCommand.selected(all, "rope Dh").stream().map(c -> c.name()).toList());
            var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> SelftestCommand.selected(all, "no such check"));
            assertTrue(e.getMessage().startsWith("--only 'no such check' matches no check"), e.getMessage());
        }
    }

    /**
     * --json replaces its file whole (a temporary file renamed over it), never rewriting it in place: a write cut short
     * (a full disk) would leave half a table. Seen here through a hard link, which an in-place write changes too.
     */
    @Test void jsonReplacesItsFileWhole(@TempDir Path dir) throws java.io.IOException {
        Path other = dir.resolve("other.json"), json = dir.resolve("speed.json");
        Files.writeString(other, "previous");
        Files.createLink(json, other);
        BenchCommand.writeJson(json, "{\"rows\": []}");
        assertEquals("{\"rows\": []}", Files.readString(json));
        assertEquals("previous", Files.readString(other), "the file was rewritten in place");
        try (var files = Files.list(dir)) {
            assertEquals(List.of("other.json", "speed.json"), files.map(f -> f.getFileName().toString()).sorted().toList());
        }
        // A symbolic link stays one: the file it names gets the table, as a plain write gave it
        Path link = dir.resolve("link.json");
        Files.createSymbolicLink(link, other);
        BenchCommand.writeJson(link, "{}");
        assertTrue(Files.isSymbolicLink(link), "the link was replaced by a file");
        assertEquals("{}", Files.readString(other));
    }

    /** A --json path under a file: the file is named as what it is, not as a folder that does not exist. */
    @Test void jsonUnderAFileSaysItIsAFile(@TempDir Path dir) throws java.io.IOException {
        Path file = Files.writeString(dir.resolve("notes.txt"), "x");
        assertOneErrorLine("--json " + file.resolve("k.json") + ": " + file + " is a file, not a folder",
                "bench", "kernels", "--backend", "cpu", "--json", file.resolve("k.json").toString());
    }
}
