package dev.patchcore.data;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import dev.patchcore.checkpoint.AtomicFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The human-readable summary of a prepared dataset ({@code dataset.json}); written last,
 * so its presence marks a finished {@code prepare}.
 */
public record DatasetInfo(String format, int version, String tokenizer, int vocabSize, int eosId,
                          double valFraction, long seed, List<String> sources,
                          long trainDocuments, long trainTokens, long valDocuments, long valTokens) {

    public static final String FILE_NAME = "dataset.json";
    public static final String FORMAT = "patchcore-dataset";
    public static final int VERSION = 1;

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    public DatasetInfo {
        sources = sources == null ? null : List.copyOf(sources);
    }

    public long documents() { return trainDocuments + valDocuments; }

    public long tokens() { return trainTokens + valTokens; }

    void write(Path dir) {
        AtomicFiles.writeString(dir.resolve(FILE_NAME), GSON.toJson(this) + "\n");
    }

    /** @throws IllegalArgumentException if {@code dir} is not a folder, or its summary is missing or not one */
    public static DatasetInfo read(Path dir) throws IOException {
        // A text or JSONL file given where a dataset goes is the commonest slip: say what to run.
        if (Files.isRegularFile(dir)) {
            throw new IllegalArgumentException(dir + " is a file, not a dataset folder; make one from it with `prepare --out DIR " + dir + "`");
        }
        if (!Files.exists(dir)) {
            throw new IllegalArgumentException("dataset folder " + dir + " does not exist; create it with `prepare --out " + dir + " FILE...`");
        }
        Path file = dir.resolve(FILE_NAME);
        if (!Files.isRegularFile(file)) {
            // prepare replaces a dataset's files one by one, its summary last: stopped in between, it leaves shards alone
            if (Files.exists(dir.resolve(DatasetPreparer.TRAIN_FILE)) || Files.exists(dir.resolve(DatasetPreparer.TRAIN_FILE + ".tmp")))
                throw new IllegalArgumentException(dir + " holds the shards of a prepare that did not finish (no " + FILE_NAME
                        + " beside them): wait for it if it is still running, else run it again");
            throw new IllegalArgumentException(dir + " is not a prepared dataset (no " + FILE_NAME + "); create one with 'patchcore prepare'");
        }
        DatasetInfo info;
        try {
            info = GSON.fromJson(Files.readString(file, StandardCharsets.UTF_8), DatasetInfo.class);
        } catch (JsonParseException e) {
            throw new IllegalArgumentException(file + " is not a valid dataset summary: " + e.getMessage(), e);
        }
        if (info == null || !FORMAT.equals(info.format) || info.tokenizer == null || info.sources == null) {
            throw new IllegalArgumentException(file + " is not a patchcore dataset summary");
        }
        if (info.version != VERSION) {
            throw new IllegalArgumentException(file + " has dataset version " + info.version + "; this build reads "
                    + VERSION + " (re-run 'prepare')");
        }
        return info;
    }
}
