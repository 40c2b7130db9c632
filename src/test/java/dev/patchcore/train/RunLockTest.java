package dev.patchcore.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class RunLockTest {
    /** One holder at a time; the message names the holder's process; closing releases it for the next. */
    @Test void aRunFolderHasOneHolder(@TempDir Path run) throws Exception {
        try (RunLock first = RunLock.acquire(run)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RunLock.acquire(run));
            assertTrue(e.getMessage().contains(run + " is in use by another patchcore process (process "
                    + ProcessHandle.current().pid() + ")"), e.getMessage());
        }
        try (RunLock again = RunLock.acquire(run)) {
            assertEquals(ProcessHandle.current().pid() + "", Files.readString(run.resolve(RunLock.FILE)).strip());
        }
    }
}
