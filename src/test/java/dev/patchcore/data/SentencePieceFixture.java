package dev.patchcore.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/** Test files for SentencePiece data: the LLaMA-style test model (vocabulary 1000) and a text it tokenizes. */
public final class SentencePieceFixture {
    private SentencePieceFixture() {}

    /** Writes the LLaMA-style BPE test model to {@code dir/tok.model}. */
    public static Path model(Path dir) throws IOException {
        Path model = dir.resolve("tok.model");
        try (InputStream in = SentencePieceFixture.class.getResourceAsStream("/sentencepiece/llama_bpe.model")) {
            Files.write(model, in.readAllBytes());
        }
        return model;
    }

    /** Writes 400 sentences in documents of five (blank lines between) to {@code dir/t.txt}. */
    public static Path text(Path dir) throws IOException {
        Path text = dir.resolve("t.txt");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 400; i++) sb.append("The jury said the election was conducted well. ").append(i % 5 == 0 ? "\n\n" : "");
        Files.writeString(text, sb.toString());
        return text;
    }
}
