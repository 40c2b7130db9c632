package dev.patchcore.bench;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.TypeAdapter;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonWriter;

import java.io.IOException;

/**
 * The Gson that writes benchmark results: indented, '=' and '<' as they are (not HTML-escaped), and a number that is
 * not finite (a kernel that was not timed: NaN) as null, so every JSON parser reads the file; null fields are kept.
 */
public final class BenchJson {
    private BenchJson() {}

    private static final TypeAdapter<Double> FINITE_OR_NULL = new TypeAdapter<>() {
        @Override public void write(JsonWriter out, Double v) throws IOException {
            if (v == null || !Double.isFinite(v)) out.nullValue();
            else out.value(v);
        }

        @Override public Double read(JsonReader in) throws IOException {
            return in.nextDouble();
        }
    };

    public static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().serializeNulls()
            .registerTypeAdapter(double.class, FINITE_OR_NULL).registerTypeAdapter(Double.class, FINITE_OR_NULL).create();
}
