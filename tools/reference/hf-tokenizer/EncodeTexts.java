import dev.patchcore.data.Tokenizer;
import dev.patchcore.data.Tokenizers;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Encodes each text of a JSON list of strings with a patchcore tokenizer and writes one id list per line, for
 * compare.js. Run from the repository root after {@code mvn -q -DskipTests package}:
 * {@code java -cp target/patchcore.jar tools/reference/hf-tokenizer/EncodeTexts.java TOKENIZER TEXTS.json OUT.txt}.
 */
public class EncodeTexts {
    public static void main(String[] args) throws Exception {
        Tokenizer tok = Tokenizers.byName(args[0]);
        String[] texts = new com.google.gson.Gson().fromJson(Files.readString(Path.of(args[1])), String[].class);
        StringBuilder out = new StringBuilder();
        for (String t : texts) out.append(Arrays.toString(tok.encode(t))).append('\n');
        Files.writeString(Path.of(args[2]), out);
    }
}
