package dev.patchcore.chat;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Differential fuzzing against Python Jinja2: src/test/resources/chat-templates/fuzz.json holds random templates built
 * from the constructs docs/chat-templates.md lists as supported, each with a random context and what Jinja2 3.1.6
 * renders for it in transformers' environment (tools/reference/chat-templates/fuzz_jinja2.py, seeded). fuzz-focus.json
 * holds a second set aimed at str methods with their optional arguments, printf and format specs, slices, nested loops,
 * macros, tests, filters with keyword arguments, whitespace control and errors (fuzz_focus.py). Every text must match
 * exactly; where Jinja2 failed, ChatTemplate must fail too (parsing or rendering, any message).
 */
class ChatTemplateFuzzTest {
    @Test void rendersRandomTemplatesAsJinja2Does() {
        check("fuzz.json");
    }

    @Test void rendersFocusedRandomTemplatesAsJinja2Does() {
        check("fuzz-focus.json");
    }

    private static void check(String resource) {
        JsonObject doc = JsonParser.parseString(ChatTemplateReferenceTest.resourceText(resource)).getAsJsonObject();
        Clock clock = Clock.fixed(Instant.parse(doc.get("now").getAsString()), ZoneOffset.UTC);
        Gson gson = new Gson();
        List<String> failures = new ArrayList<>();
        int texts = 0, errors = 0, i = 0;
        for (JsonElement e : doc.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            int index = i++;
            String template = c.get("template").getAsString();
            Map<String, Object> context = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> v : c.getAsJsonObject("context").entrySet()) context.put(v.getKey(), v.getValue());
            String want = c.has("text") ? c.get("text").getAsString() : null;
            String got;
            try {
                got = ChatTemplate.parse(template).render(context, clock);
            } catch (IllegalArgumentException | ArithmeticException x) {
                if (want == null) {
                    errors++;
                } else {
                    failures.add("case " + index + ": failed with " + x + "\n  template " + gson.toJson(template)
                            + "\n  context " + c.get("context") + "\n  Jinja2 renders " + gson.toJson(want));
                }
                continue;
            } catch (RuntimeException x) {
                failures.add("case " + index + ": crashed with " + x + "\n  template " + gson.toJson(template)
                        + "\n  context " + c.get("context") + "\n  Jinja2: " + (want == null ? c.get("error") : gson.toJson(want)));
                continue;
            }
            if (want == null) {
                failures.add("case " + index + ": rendered " + gson.toJson(got) + ", but Jinja2 failed with " + c.get("error")
                        + "\n  template " + gson.toJson(template) + "\n  context " + c.get("context"));
            } else if (!got.equals(want)) {
                failures.add("case " + index + ": expected " + gson.toJson(want) + "\n   but got " + gson.toJson(got)
                        + "\n  template " + gson.toJson(template) + "\n  context " + c.get("context"));
            } else {
                texts++;
            }
        }
        if (!failures.isEmpty()) {
            try {  // all of them, for whoever works through them
                java.nio.file.Files.writeString(java.nio.file.Path.of("target", resource.replace(".json", "-failures.txt")), String.join("\n", failures));
            } catch (java.io.IOException | RuntimeException ignored) {
                // the report below is what matters
            }
            fail(resource + ": " + failures.size() + " of " + i + " cases differ from Jinja2:\n"
                    + String.join("\n", failures.subList(0, Math.min(15, failures.size()))));
        }
        assertTrue(texts > i / 2, texts + " texts, " + errors + " errors");
    }
}
