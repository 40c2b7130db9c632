package dev.patchcore.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.patchcore.data.HuggingFaceBpeTokenizer.array;
import static dev.patchcore.data.HuggingFaceBpeTokenizer.bad;
import static dev.patchcore.data.HuggingFaceBpeTokenizer.string;

/**
 * The decoder of a SentencePiece-style {@code tokenizer.json} (LLaMA-2's, Mistral's): the tokens, as the file spells
 * them, go through the steps of its {@code decoder} as Hugging Face's {@code tokenizers} runs them ({@code decode_chain}
 * of each, then the pieces joined), with:
 * <ul>
 *   <li>{@code Replace}: a string (or a regular expression) replaced in every token (LLaMA's "▁" → " ");</li>
 *   <li>{@code ByteFallback}: runs of {@code <0xAB>} tokens become the text of their bytes. Where a run is not valid
 *       UTF-8 (a character cut short, as while generating), each malformed byte is one U+FFFD and the characters around
 *       it stay, as SentencePiece decodes; tokenizers makes every byte of such a run U+FFFD, which would take a
 *       character already printed back ({@code generate} prints the text as its tokens arrive);</li>
 *   <li>{@code Fuse}: all tokens joined into one;</li>
 *   <li>{@code Strip}: up to {@code start} leading and {@code stop} trailing {@code content} characters cut from
 *       each token (after {@code Fuse}, LLaMA's one leading space of the text);</li>
 *   <li>{@code Metaspace}: "▁" → " " in every token, except in the first one (where the pre-tokenizer put it) unless
 *       {@code prepend_scheme} is {@code never};</li>
 *   <li>{@code Sequence} of them. No decoder: the tokens joined with spaces, as tokenizers does.</li>
 * </ul>
 */
final class HuggingFaceDecoder {
    private interface Step {
        List<String> apply(List<String> tokens);
    }

    private final List<Step> steps;
    private final boolean none;

    private HuggingFaceDecoder(List<Step> steps, boolean none) {
        this.steps = steps;
        this.none = none;
    }

    /** The decoder the file's {@code decoder} field describes; refuses (one line, naming {@code where}) other kinds. */
    static HuggingFaceDecoder of(JsonElement el, String where) {
        List<Step> steps = new ArrayList<>();
        boolean none = el == null || el.isJsonNull();
        if (!none) parse(el, where, steps);
        return new HuggingFaceDecoder(List.copyOf(steps), none);
    }

    String decode(List<String> tokens) {
        if (none) return String.join(" ", tokens);
        for (Step s : steps) tokens = s.apply(tokens);
        return String.join("", tokens);
    }

    private static void parse(JsonElement el, String where, List<Step> out) {
        if (!el.isJsonObject()) throw bad(where, "has a decoder that is not an object");
        JsonObject o = el.getAsJsonObject();
        String type = string(o, "type", where);
        switch (type == null ? "" : type) {
            case "Sequence" -> {
                JsonArray list = array(o, "decoders", where);
                if (list != null) for (JsonElement d : list) parse(d, where, out);
            }
            case "Replace" -> {
                Pattern p = HuggingFaceBpeTokenizer.pattern(o, "Replace decoder", where);
                String content = string(o, "content", where);
                String with = Matcher.quoteReplacement(content == null ? "" : content);
                out.add(tokens -> tokens.stream().map(t -> p.matcher(t).replaceAll(with)).toList());
            }
            case "ByteFallback" -> out.add(HuggingFaceDecoder::byteFallback);
            case "Fuse" -> out.add(tokens -> List.of(String.join("", tokens)));
            case "Strip" -> {
                String content = string(o, "content", where);
                if (content == null || content.codePointCount(0, content.length()) != 1)
                    throw bad(where, "has a Strip decoder whose content is not one character");
                int c = content.codePointAt(0), start = count(o, "start", where), stop = count(o, "stop", where);
                out.add(tokens -> tokens.stream().map(t -> strip(t, c, start, stop)).toList());
            }
            case "Metaspace" -> {
                String replacement = HuggingFaceBpeTokenizer.replacement(o, where);
                boolean first = HuggingFaceBpeTokenizer.prependScheme(o, where) != HuggingFaceBpeTokenizer.Prepend.NEVER;
                out.add(tokens -> {
                    List<String> r = new ArrayList<>(tokens.size());
                    for (int i = 0; i < tokens.size(); i++)
                        r.add(tokens.get(i).replace(replacement, i == 0 && first ? "" : " "));
                    return r;
                });
            }
            default -> throw bad(where, "has a " + (type == null ? "typeless" : type) + " decoder, which is not supported with a "
                    + "SentencePiece-style BPE (Replace, ByteFallback, Fuse, Strip, Metaspace and Sequence are)");
        }
    }

    private static int count(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return 0;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber() || e.getAsDouble() < 0 || e.getAsDouble() != Math.rint(e.getAsDouble()))
            throw bad(where, "has a Strip decoder whose " + key + " is not a whole number");
        return (int) Math.min(e.getAsDouble(), Integer.MAX_VALUE);
    }

    private static String strip(String t, int c, int start, int stop) {
        int from = 0, to = t.length();
        for (int i = 0; i < start && from < to && t.codePointAt(from) == c; i++) from += Character.charCount(c);
        for (int i = 0; i < stop && to > from && t.codePointBefore(to) == c; i++) to -= Character.charCount(c);
        return t.substring(from, to);
    }

    /** Each run of {@code <0xAB>} tokens as the text of its bytes (malformed bytes one U+FFFD each). */
    private static List<String> byteFallback(List<String> tokens) {
        List<String> out = new ArrayList<>(tokens.size());
        ByteArrayOutputStream run = new ByteArrayOutputStream();
        StringBuilder text = new StringBuilder();
        for (String t : tokens) {
            int b = byteOf(t);
            if (b >= 0) {
                run.write(b);
                continue;
            }
            flush(run, text, out);
            out.add(t);
        }
        flush(run, text, out);
        return out;
    }

    private static void flush(ByteArrayOutputStream run, StringBuilder text, List<String> out) {
        if (run.size() == 0) return;
        SentencePieceTokenizer.appendBytes(run, text);
        out.add(text.toString());
        text.setLength(0);
    }

    /** The byte a token {@code <0xAB>} stands for (two hex digits, as tokenizers reads them), or −1. */
    static int byteOf(String t) {
        if (t.length() != 6 || !t.startsWith("<0x") || t.charAt(5) != '>') return -1;
        int hi = hex(t.charAt(3)), lo = hex(t.charAt(4));
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    private static int hex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    }
}
