package dev.patchcore.eval;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.patchcore.eval.MultipleChoice.Question;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import static dev.patchcore.eval.MultipleChoice.first;
import static dev.patchcore.eval.MultipleChoice.index;
import static dev.patchcore.eval.MultipleChoice.strings;

/**
 * The paper's six zero-shot benchmarks (§3.1: MMLU, HellaSwag, PIQA, WinoGrande, ARC-Easy, ARC-Challenge) as
 * lm-evaluation-harness poses them, read from the records of their Hugging Face datasets (one JSON object per line, as
 * {@code datasets} writes with {@code to_json}). Each is recognized by its fields:
 *
 * <ul>
 *   <li>HellaSwag ({@code activity_label, ctx_a, ctx_b, endings, label}): context = activity_label + ": " + ctx_a +
 *       " " + ctx_b capitalized, every text cleaned as the harness's {@code preprocess} does;</li>
 *   <li>PIQA ({@code goal, sol1, sol2, label}): "Question: {goal}\nAnswer:", choices sol1, sol2;</li>
 *   <li>ARC ({@code question, choices: {text, label}, answerKey}; also AllenAI's own layout with
 *       {@code question: {stem, choices: [{text, label}]}}): "Question: {question}\nAnswer:", choices the texts, the
 *       answer the position of answerKey among the labels;</li>
 *   <li>MMLU ({@code question, choices, answer}, optional {@code subject}): "The following are multiple choice questions
 *       (with answers) about {subject}.\n\n{question}\nA. …\nB. …\nC. …\nD. …\nAnswer:", choices "A", "B", "C", "D";</li>
 *   <li>WinoGrande ({@code sentence, option1, option2, answer}): two contexts, the sentence up to its "_" with each
 *       option put in, before one continuation, the rest of the sentence (the harness's partial scoring).</li>
 * </ul>
 * Choices are appended after one space (the harness's target delimiter). The harness reports acc for MMLU and
 * WinoGrande and acc_norm beside acc for the others; {@code eval --choices} prints both.
 */
final class HarnessTasks {
    private HarnessTasks() {}

    /** The question of a benchmark record, or null when the record is none of the benchmarks. */
    static Question parse(JsonObject o) {
        if (has(o, "activity_label", "ctx_a", "ctx_b", "endings")) return hellaSwag(o);
        if (has(o, "goal", "sol1", "sol2", "label")) return piqa(o);
        if (has(o, "sentence", "option1", "option2", "answer")) return winoGrande(o);
        if (has(o, "question", "answerKey")) return arc(o);
        if (has(o, "question", "choices", "answer") && o.get("choices").isJsonArray()) return mmlu(o);
        return null;
    }

    private static boolean has(JsonObject o, String... fields) {
        for (String f : fields) if (!o.has(f) || o.get(f).isJsonNull()) return false;
        return true;
    }

    /** A HellaSwag record as the harness's hellaswag task turns it into a question. */
    static Question hellaSwag(JsonObject o) {
        String ctxB = o.get("ctx_b").getAsString();
        String ctx = o.get("ctx_a").getAsString() + " "
                + (ctxB.isEmpty() ? "" : ctxB.substring(0, 1).toUpperCase(Locale.ROOT) + ctxB.substring(1).toLowerCase(Locale.ROOT));
        List<String> endings = new ArrayList<>();
        for (String e : strings(o.get("endings"), "endings")) endings.add(hellaSwagText(e));
        return new Question(hellaSwagText(o.get("activity_label").getAsString() + ": " + ctx), endings, index(o.get("label"), "label"));
    }

    /** The harness's HellaSwag text cleanup (WikiHow artifacts). */
    static String hellaSwagText(String text) {
        return text.strip().replace(" [title]", ". ").replaceAll("\\[.*?\\]", "").replace("  ", " ");
    }

    static Question piqa(JsonObject o) {
        return new Question("Question: " + o.get("goal").getAsString() + "\nAnswer:",
                List.of(o.get("sol1").getAsString(), o.get("sol2").getAsString()), index(o.get("label"), "label"));
    }

    static Question arc(JsonObject o) {
        JsonElement q = o.get("question");
        String question;
        List<String> texts = new ArrayList<>(), labels = new ArrayList<>();
        if (q.isJsonObject()) {  // AllenAI's layout: {"question": {"stem": ..., "choices": [{"text", "label"}]}}
            question = q.getAsJsonObject().get("stem").getAsString();
            for (JsonElement c : q.getAsJsonObject().getAsJsonArray("choices")) {
                texts.add(c.getAsJsonObject().get("text").getAsString());
                labels.add(c.getAsJsonObject().get("label").getAsString());
            }
        } else {                 // Hugging Face ai2_arc: {"question": ..., "choices": {"text": [...], "label": [...]}}
            question = q.getAsString();
            JsonElement choices = o.get("choices");
            if (choices == null || !choices.isJsonObject()) throw new IllegalArgumentException("ARC choices is not {text, label}");
            texts = strings(choices.getAsJsonObject().get("text"), "choices.text");
            labels = strings(choices.getAsJsonObject().get("label"), "choices.label");
        }
        String key = o.get("answerKey").getAsString();
        if (key.isBlank()) MultipleChoice.index(o.get("answerKey"), "answerKey");  // says: a test split's record, no answers
        int answer = labels.indexOf(key);
        if (answer < 0) throw new IllegalArgumentException("answerKey '" + key + "' is not one of the labels " + labels);
        return new Question("Question: " + question + "\nAnswer:", texts, answer);
    }

    static Question mmlu(JsonObject o) {
        List<String> choices = strings(o.get("choices"), "choices");
        StringBuilder ctx = new StringBuilder();
        JsonElement subject = first(o, "subject");
        if (subject != null && !subject.getAsString().isEmpty())
            ctx.append("The following are multiple choice questions (with answers) about ")
                    .append(subject.getAsString().replace('_', ' ')).append(".\n\n");
        ctx.append(o.get("question").getAsString().strip());
        List<String> letters = new ArrayList<>();
        for (int i = 0; i < choices.size(); i++) {
            String letter = String.valueOf((char) ('A' + i));
            ctx.append('\n').append(letter).append(". ").append(choices.get(i));
            letters.add(letter);
        }
        ctx.append("\nAnswer:");
        return new Question(ctx.toString(), letters, index(o.get("answer"), "answer"));
    }

    static Question winoGrande(JsonObject o) {
        String sentence = o.get("sentence").getAsString();
        int blank = sentence.indexOf('_');
        if (blank < 0) throw new IllegalArgumentException("WinoGrande sentence has no '_'");
        String target = sentence.substring(blank + 1).strip();
        List<String> contexts = List.of(sentence.substring(0, blank) + o.get("option1").getAsString(),
                sentence.substring(0, blank) + o.get("option2").getAsString());
        String answer = o.get("answer").getAsString().strip();
        if (answer.isEmpty()) MultipleChoice.index(o.get("answer"), "answer");  // says: a test split's record, no answers
        if (!answer.equals("1") && !answer.equals("2")) throw new IllegalArgumentException("WinoGrande answer '" + answer + "' is not 1 or 2");
        return new Question(contexts, List.of(target, target), Integer.parseInt(answer) - 1);
    }
}
