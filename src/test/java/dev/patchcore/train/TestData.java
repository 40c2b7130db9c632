package dev.patchcore.train;

import dev.patchcore.data.DatasetPreparer;
import dev.patchcore.data.Tokenizers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** A small, learnable corpus prepared with the byte tokenizer. */
final class TestData {
    private TestData() {}

    static Path prepare(Path dir) throws IOException {
        SplittableRandom r = new SplittableRandom(42);
        String[] words = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "ball", "big", "house"};
        List<Path> files = new ArrayList<>();
        for (int f = 0; f < 6; f++) {
            StringBuilder sb = new StringBuilder();
            for (int s = 0; s < 400; s++) {
                int n = 4 + r.nextInt(6);
                for (int w = 0; w < n; w++) sb.append(w == 0 ? "" : " ").append(words[r.nextInt(words.length)]);
                sb.append(". ");
            }
            Path p = dir.resolve("doc" + f + ".txt");
            Files.writeString(p, sb.toString());
            files.add(p);
        }
        Path out = dir.resolve("dataset");
        new DatasetPreparer(Tokenizers.byName("byte"), 0.2, 7).prepareFiles(files, out, DatasetPreparer.Progress.NONE);
        return out;
    }
}
