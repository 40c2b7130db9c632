package dev.patchcore.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class RunLockTest {
    /** One holder at a time; the file names the holder's process; closing releases it for the next. */
    @Test void aRunFolderHasOneHolder(@TempDir Path run) throws Exception {
        try (RunLock first = RunLock.acquire(run)) {
            assertTrue(first.held());
            // Refused without opening the file (closing a descriptor of it would drop this process's lock).
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RunLock.acquire(run.resolve(".")));
            assertEquals(run.resolve(".") + " is in use by this process already", e.getMessage());
        }
        // The file names the holder, for another process's message (read after the close: reading it while holding
        // the lock would drop it).
        assertEquals(ProcessHandle.current().pid() + "", Files.readString(run.resolve(RunLock.FILE)).strip());
        try (RunLock again = RunLock.acquire(run)) {
            assertTrue(again.held(), "released by the close");
        }
    }
}
