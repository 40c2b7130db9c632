package dev.patchcore.train;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.patchcore.checkpoint.AtomicFiles;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/** Appends one JSON object per line: every step's metrics and every validation result. */
public final class Metrics implements AutoCloseable {
    private final BufferedWriter out;

    public Metrics(Path file) {
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            out = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open metrics file " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Before a run resumes from the checkpoint at {@code globalStep}: drops the records of later steps (logged before
     * a hard stop that left no checkpoint of them; the resumed run takes those steps again, and would log them twice)
     * and a torn last line. Rewritten atomically; returns the number of lines dropped (0: the file is left alone).
     */
    public static int dropAfter(Path file, long globalStep) {
        if (!Files.isRegularFile(file)) return 0;
        try {
            List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8), kept = new ArrayList<>();
            for (String line : lines) {
                try {
                    JsonObject o = JsonParser.parseString(line).getAsJsonObject();
                    if (!o.has("global_step") || o.get("global_step").getAsLong() <= globalStep) kept.add(line);
                } catch (RuntimeException torn) {
                    // not a whole JSON object: the end of a line cut by the stop
                }
            }
            int dropped = lines.size() - kept.size();
            if (dropped > 0) AtomicFiles.writeString(file, kept.isEmpty() ? "" : String.join("\n", kept) + "\n");
            return dropped;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read metrics file " + file + ": " + e.getMessage(), e);
        }
    }

    /** Writes one record; a number that is not finite (a diverged gradient norm) as null, which JSON can hold. */
    public void write(JsonObject record) {
        for (var e : record.entrySet())
            if (e.getValue().isJsonPrimitive() && e.getValue().getAsJsonPrimitive().isNumber()
                    && !Double.isFinite(e.getValue().getAsDouble())) e.setValue(JsonNull.INSTANCE);
        try {
            out.write(record.toString());
            out.newLine();
            out.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override public void close() {
        try { out.close(); } catch (IOException ignored) { /* flushed after every line */ }
    }
}
