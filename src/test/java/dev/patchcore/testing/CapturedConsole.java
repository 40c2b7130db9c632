package dev.patchcore.testing;

import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * System.out and System.err captured around each test (UTF-8), for tests of what the commands print:
 * {@code @RegisterExtension final CapturedConsole console = new CapturedConsole();} then {@link #out} / {@link #err}.
 */
public final class CapturedConsole implements BeforeEachCallback, AfterEachCallback {
    public final ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    private PrintStream oldOut, oldErr;

    @Override public void beforeEach(ExtensionContext context) {
        oldOut = System.out;
        oldErr = System.err;
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @Override public void afterEach(ExtensionContext context) {
        System.setOut(oldOut);
        System.setErr(oldErr);
    }

    /**
     * Runs the command line {@code args} and checks that it ends as bad input must: exit code 2 and exactly one line
     * on stderr, starting "error: "; returns that line.
     */
    public String userError(String... args) {
        err.reset();
        int code = dev.patchcore.cli.Main.run(args);
        String e = err.toString(StandardCharsets.UTF_8).strip();
        assertEquals(2, code, "exit code for " + String.join(" ", args) + "; stderr: " + e);
        assertEquals(1, e.lines().count(), "exactly one error line, got: " + e);
        assertTrue(e.startsWith("error: "), e);
        return e;
    }

    /** {@link #userError}, its line mentioning {@code expectedFragment}. */
    public void assertUserError(String expectedFragment, String... args) {
        String e = userError(args);
        assertTrue(e.contains(expectedFragment), "'" + e + "' should mention '" + expectedFragment + "'");
    }
}
