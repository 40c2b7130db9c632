package dev.patchcore.chat;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The differential test: real chat templates (src/test/resources/chat-templates/templates.json, each naming the model
 * it is from) rendered for a set of conversations by {@link ChatTemplate} and, in expected.json, by @huggingface/jinja
 * (tools/reference/chat-templates/render.js). Texts must match exactly; a case the reference could not render must
 * fail here too, with the template's own message when the template raised it.
 *
 * <p>transformers (Python Jinja2) is the ground truth. Where @huggingface/jinja renders a case differently from
 * Python Jinja2, {@link #PYTHON_DIFFERS} holds what Python renders and why. None of these cases needs it: the
 * differences known (ChatTemplateTest names them) are in constructs these templates do not reach.
 */
class ChatTemplateReferenceTest {
    /** "template/conversation/add_generation_prompt" → the text Python Jinja2 renders, where the reference differs. */
    private static final Map<String, String> PYTHON_DIFFERS = Map.of();

    static String resourceText(String name) {
        try (InputStream in = ChatTemplateReferenceTest.class.getResourceAsStream("/chat-templates/" + name)) {
            if (in == null) throw new IllegalStateException("test resource chat-templates/" + name + " is missing");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test void rendersRealTemplatesAsTheReferenceDoes() {
        JsonObject templatesDoc = JsonParser.parseString(resourceText("templates.json")).getAsJsonObject();
        JsonObject expected = JsonParser.parseString(resourceText("expected.json")).getAsJsonObject();
        Map<String, JsonObject> templates = new LinkedHashMap<>();
        Map<String, ChatTemplate> parsed = new HashMap<>();
        for (JsonElement t : templatesDoc.getAsJsonArray("templates")) {
            JsonObject o = t.getAsJsonObject();
            String name = o.get("name").getAsString();
            templates.put(name, o);
            parsed.put(name, ChatTemplate.parse(o.get("chat_template").getAsString()));
        }
        assertEquals(30, templates.size());
        Clock clock = Clock.fixed(Instant.parse(expected.get("now").getAsString()), ZoneOffset.UTC);
        JsonObject conversations = expected.getAsJsonObject("conversations");
        List<String> failures = new ArrayList<>();
        int texts = 0, raised = 0, overridden = 0;
        for (JsonElement e : expected.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            String name = c.get("template").getAsString();
            String conversation = c.get("conversation").getAsString();
            boolean prompt = c.get("add_generation_prompt").getAsBoolean();
            String key = name + "/" + conversation + "/" + prompt;
            JsonObject t = templates.get(name);
            Map<String, Object> context = new HashMap<>();
            context.put("messages", conversations.get(conversation));
            if (conversation.equals("tool-call")) context.put("tools", expected.get("tools"));
            context.put("add_generation_prompt", prompt);
            if (!t.get("bos_token").isJsonNull()) context.put("bos_token", t.get("bos_token").getAsString());
            if (!t.get("eos_token").isJsonNull()) context.put("eos_token", t.get("eos_token").getAsString());
            String want = c.has("text") ? c.get("text").getAsString() : null;
            if (PYTHON_DIFFERS.containsKey(key)) {
                want = PYTHON_DIFFERS.get(key);
                overridden++;
            }
            try {
                String got = parsed.get(name).render(context, clock);
                if (want == null) {
                    failures.add(key + ": rendered, but the reference failed with " + c.get("error").getAsString());
                } else if (!got.equals(want)) {
                    failures.add(key + ": expected " + new Gson().toJson(want) + "\n   but got " + new Gson().toJson(got));
                } else {
                    texts++;
                }
            } catch (ChatTemplate.RaisedException x) {
                if (want != null || !c.get("raised").getAsBoolean() || !x.getMessage().equals(c.get("error").getAsString())) {
                    failures.add(key + ": raised " + x.getMessage() + ", reference: " + c);
                } else {
                    raised++;
                }
            } catch (IllegalArgumentException x) {
                failures.add(key + ": failed with " + x.getMessage() + ", reference: " + (want == null ? c.get("error") : "rendered"));
            }
        }
        if (!failures.isEmpty()) {
            fail(failures.size() + " of " + expected.getAsJsonArray("cases").size() + " cases differ:\n"
                    + String.join("\n", failures.subList(0, Math.min(20, failures.size()))));
        }
        assertEquals(720, texts + raised);
        assertEquals(74, raised, "the cases where a template refuses a conversation with raise_exception");
        assertEquals(PYTHON_DIFFERS.size(), overridden);
        assertTrue(texts > 500);
    }
}
