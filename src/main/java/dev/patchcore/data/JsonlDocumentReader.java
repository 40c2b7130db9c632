package dev.patchcore.data;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.Strictness;
import com.google.gson.TypeAdapter;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.StringReader;

/**
 * JSON Lines: each non-blank line is an object whose string field {@code "text"} is one
 * document (other fields, like the Pile's {@code "meta"}, are ignored). Lines are parsed
 * strictly; any other shape is an error naming the file and line. Malformed UTF-8 becomes U+FFFD, and so does a lone
 * surrogate that a {@code \\uD800}-style escape spells (no UTF-8 encodes one; a tokenizer would write it as '?').
 */
final class JsonlDocumentReader implements DocumentReader {

    private static final TypeAdapter<JsonElement> JSON = new Gson().getAdapter(JsonElement.class);

    private final String name;
    private final Utf8Reader utf8;
    private final BufferedReader in;
    private long lineNumber;
    private long loneSurrogates;

    JsonlDocumentReader(CorpusSource source) throws IOException {
        this.name = source.name();
        this.utf8 = new Utf8Reader(source.opener().open());
        this.in = new BufferedReader(utf8, 1 << 16);
    }

    @Override
    public String next() throws IOException {
        String line;
        while ((line = in.readLine()) != null) {
            lineNumber++;
            if (line.isBlank()) continue;
            String text = textOf(line);
            if (!text.isEmpty()) return text;
        }
        return null;
    }

    private String textOf(String line) {
        JsonElement element;
        try {
            JsonReader reader = new JsonReader(new StringReader(line));
            reader.setStrictness(Strictness.STRICT);
            element = JSON.read(reader);
            if (reader.peek() != JsonToken.END_DOCUMENT) throw new IOException("unexpected data after the JSON value");
        } catch (IOException | RuntimeException e) {
            // Gson's messages end with advice to its programmer ("Use JsonReader.setStrictness(...) to accept ..."): keep the place
            String why = firstLine(e.getMessage()).replaceFirst("^Use JsonReader\\.setStrictness\\(Strictness\\.LENIENT\\) to accept malformed JSON ", "")
                    .replaceFirst("at line 1 column ", "at column ");  // the parser read this one line: its line 1 is the file's line N
            throw error("malformed JSON (" + why + ")");
        }
        if (!(element instanceof JsonObject object)) throw error("expected a JSON object, found " + kind(element));
        JsonElement text = object.get("text");
        if (text == null) throw error("the object has no \"text\" field");
        if (!text.isJsonPrimitive() || !text.getAsJsonPrimitive().isString()) {
            throw error("the \"text\" field must be a string, found " + kind(text));
        }
        return withoutLoneSurrogates(text.getAsString());
    }

    /** {@code s} with each surrogate that is not half of a pair replaced by U+FFFD (counted with the invalid UTF-8). */
    private String withoutLoneSurrogates(String s) {
        StringBuilder b = null;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (!Character.isSurrogate(c)) continue;
            boolean paired = Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1));
            if (paired) {
                i++;
                continue;
            }
            if (b == null) b = new StringBuilder(s);
            b.setCharAt(i, '\uFFFD');
            loneSurrogates++;
        }
        return b == null ? s : b.toString();
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException(name + ":" + lineNumber + ": " + what);
    }

    private static String kind(JsonElement e) {
        if (e.isJsonNull()) return "null";
        if (e.isJsonArray()) return "an array";
        if (e.isJsonObject()) return "an object";
        return e.getAsJsonPrimitive().isString() ? "a string" : e.getAsJsonPrimitive().isNumber() ? "a number" : "a boolean";
    }

    private static String firstLine(String message) {
        if (message == null) return "unreadable";
        int nl = message.indexOf('\n');
        String first = nl < 0 ? message : message.substring(0, nl);
        int see = first.indexOf(" See https://"); // drop Gson's troubleshooting link
        return see < 0 ? first : first.substring(0, see);
    }

    @Override
    public long invalidUtf8() {
        return utf8.replaced() + loneSurrogates;
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
