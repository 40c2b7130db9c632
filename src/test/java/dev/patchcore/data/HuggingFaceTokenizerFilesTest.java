package dev.patchcore.data;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The Hugging Face tokenizer files of a checkpoint. GPT-2's vocab.json / merges.txt are derived from the tiktoken
 * ranks; the HF `tokenizers` library (ByteLevelBPETokenizer over these two files) reproduced JTokkit's ids on the whole
 * bundled corpus (1.29M tokens, 0 differences; docs/data-format.md). Here: their shape and landmarks of GPT-2's files.
 */
class HuggingFaceTokenizerFilesTest {

    @Test void gpt2VocabAndMergesAreGpt2s() {
        Map<String, byte[]> f = HuggingFaceTokenizerFiles.of(Tokenizers.byName("gpt2"), 1024);
        assertEquals(List.of("vocab.json", "merges.txt", "tokenizer_config.json"), List.copyOf(f.keySet()));
        JsonObject vocab = JsonParser.parseString(new String(f.get("vocab.json"), StandardCharsets.UTF_8)).getAsJsonObject();
        assertEquals(50257, vocab.size());
        assertEquals(50256, vocab.get("<|endoftext|>").getAsInt());
        assertEquals(262, vocab.get("\u0120the").getAsInt(), "Ġthe");
        assertEquals(0, vocab.get("!").getAsInt());
        List<String> merges = new String(f.get("merges.txt"), StandardCharsets.UTF_8).lines().toList();
        assertEquals("#version: 0.2", merges.getFirst());
        assertEquals(50001, merges.size(), "one merge per token past the 256 bytes, ordered by rank");
        assertEquals(List.of("\u0120 t", "\u0120 a", "h e", "i n"), merges.subList(1, 5));
        assertEquals(456_318, f.get("merges.txt").length, "the size of GPT-2's published merges.txt");
        JsonObject config = JsonParser.parseString(new String(f.get("tokenizer_config.json"), StandardCharsets.UTF_8)).getAsJsonObject();
        assertEquals("GPT2Tokenizer", config.get("tokenizer_class").getAsString());
        assertEquals(1024, config.get("model_max_length").getAsInt());
    }

    @Test void sentencePieceCheckpointsCarryTheModelAndALlamaTokenizerConfig() throws IOException {
        SentencePieceTokenizer sp = SentencePieceTokenizer.fromBytes(SentencePieceTokenizerTest.resource("llama_bpe.model"));
        Map<String, byte[]> f = HuggingFaceTokenizerFiles.of(sp, 2048);
        assertArrayEquals(sp.file(), f.get("tokenizer.model"));
        JsonObject config = JsonParser.parseString(new String(f.get("tokenizer_config.json"), StandardCharsets.UTF_8)).getAsJsonObject();
        assertEquals("LlamaTokenizer", config.get("tokenizer_class").getAsString());
        assertFalse(config.get("add_bos_token").getAsBoolean(), "patchcore trains without BOS");
        assertEquals("</s>", config.get("eos_token").getAsString());
        assertEquals("</s>", config.get("bos_token").getAsString(), "EOS separates documents; no BOS was ever trained");
        SentencePieceTokenizer unigram = SentencePieceTokenizer.fromBytes(SentencePieceTokenizerTest.resource("unigram_nfkc.model"));
        assertEquals(Set.of("tokenizer.model"), HuggingFaceTokenizerFiles.of(unigram, 64).keySet(),
                "HF's LLaMA conversion would encode a unigram / NFKC model differently: no config claims it");
        assertEquals(sp.eosId(), HuggingFaceTokenizerFiles.checkpoint(sp, 64).eosId());
        assertTrue(HuggingFaceTokenizerFiles.of(Tokenizers.byName("byte"), 64).isEmpty());
    }

    /**
     * cl100k_base / o200k_base as a tokenizer.json (HF `tokenizers` reproduced JTokkit's ids on the bundled corpus:
     * 1.27M and 1.26M tokens, 0 differences; docs/data-format.md): its shape here.
     */
    @Test void tiktokenEncodingsGetATokenizerJson() {
        for (String name : List.of("cl100k_base", "o200k_base")) {
            Tokenizer tok = Tokenizers.byName(name);
            Map<String, byte[]> f = HuggingFaceTokenizerFiles.of(tok, 128);
            assertEquals(List.of("tokenizer.json", "tokenizer_config.json"), List.copyOf(f.keySet()), name);
            JsonObject root = JsonParser.parseString(new String(f.get("tokenizer.json"), StandardCharsets.UTF_8)).getAsJsonObject();
            JsonObject model = root.getAsJsonObject("model");
            int ranks = name.equals("cl100k_base") ? 100_256 : 199_998;
            assertEquals(ranks, model.getAsJsonObject("vocab").size(), name);
            assertEquals(ranks - 256, model.getAsJsonArray("merges").size(), name + ": one merge per multi-byte token");
            assertTrue(model.get("ignore_merges").getAsBoolean(), "tiktoken takes a piece that is a token whole");
            JsonObject eos = root.getAsJsonArray("added_tokens").get(0).getAsJsonObject();
            assertEquals(tok.eosId(), eos.get("id").getAsInt());
            assertEquals("<|endoftext|>", eos.get("content").getAsString());
        }
    }

    /**
     * A Hugging Face tokenizer's checkpoint files are its tokenizer.json and its config; read without a config, a
     * PreTrainedTokenizerFast one naming the end of text it was read with, so that the files name the same tokenizer.
     */
    @Test void huggingFaceTokenizersKeepTheirFiles() {
        byte[] json = HuggingFaceBpeTokenizerTest.resource("tokenizer.json");
        byte[] config = "{\"eos_token\": \"<|begin_of_text|>\"}".getBytes(StandardCharsets.UTF_8);
        HuggingFaceBpeTokenizer withConfig = HuggingFaceBpeTokenizer.fromBytes(json, config, "a");
        Map<String, byte[]> f = HuggingFaceTokenizerFiles.of(withConfig, 64);
        assertEquals(List.of("tokenizer.json", "tokenizer_config.json"), List.copyOf(f.keySet()));
        assertArrayEquals(json, f.get("tokenizer.json"));
        JsonObject kept = JsonParser.parseString(new String(f.get("tokenizer_config.json"), StandardCharsets.UTF_8)).getAsJsonObject();
        assertEquals("<|begin_of_text|>", kept.get("eos_token").getAsString(), "its own config");
        assertFalse(kept.get("add_bos_token").getAsBoolean(), "the post-processor's BOS was never trained on");
        assertEquals(withConfig.name(), HuggingFaceBpeTokenizer.fromBytes(f.get("tokenizer.json"), f.get("tokenizer_config.json"), "d").name());

        HuggingFaceBpeTokenizer plain = HuggingFaceBpeTokenizer.fromBytes(json, null, "b");
        f = HuggingFaceTokenizerFiles.of(plain, 64);
        JsonObject made = JsonParser.parseString(new String(f.get("tokenizer_config.json"), StandardCharsets.UTF_8)).getAsJsonObject();
        assertEquals("PreTrainedTokenizerFast", made.get("tokenizer_class").getAsString());
        assertEquals("<|end_of_text|>", made.get("eos_token").getAsString());
        assertFalse(made.get("add_bos_token").getAsBoolean());
        assertEquals(plain.name(), HuggingFaceBpeTokenizer.fromBytes(f.get("tokenizer.json"), f.get("tokenizer_config.json"), "c").name());
    }
}
