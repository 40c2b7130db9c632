package dev.patchcore.chat;

import dev.patchcore.chat.Py.Callable;
import dev.patchcore.chat.Py.Namespace;
import dev.patchcore.chat.Py.Tuple;
import dev.patchcore.chat.Py.Undefined;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;
import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The filters, tests, global functions and str/dict/list methods chat templates call, each as Jinja2 (3.1) and
 * Python define it, with transformers' additions: {@code raise_exception}, {@code strftime_now} and a {@code tojson}
 * that is {@code json.dumps(ensure_ascii=False)}.
 */
final class Builtins {
    private Builtins() {}

    static final Set<String> FILTERS = Set.of("abs", "attr", "batch", "capitalize", "center", "count", "d", "default",
            "dictsort", "e", "escape", "first", "float", "format", "groupby", "indent", "int", "items", "join", "last", "length", "list",
            "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
            "selectattr", "slice", "sort", "string", "sum", "title", "tojson", "trim", "truncate", "unique", "upper",
            "wordcount");

    static final Set<String> TESTS = Set.of("defined", "undefined", "none", "string", "number", "integer", "float",
            "boolean", "true", "false", "mapping", "iterable", "sequence", "callable", "odd", "even", "divisibleby",
            "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=",
            "in", "sameas", "lower", "upper", "filter", "test", "escaped");

    /** The global functions: {@code range}, {@code namespace}, {@code dict}, {@code raise_exception}, {@code strftime_now}. */
    static Map<String, Object> globals(ZonedDateTime now) {
        Map<String, Object> g = new LinkedHashMap<>();
        g.put("range", (Callable) (args, kwargs) -> {
            noKwargs("range", kwargs);
            long start = 0, stop, step = 1;
            if (args.isEmpty() || args.size() > 3) throw new IllegalArgumentException("range expected 1 to 3 arguments, got " + args.size());
            if (args.size() == 1) {
                stop = integer(args.get(0), "range");
            } else {
                start = integer(args.get(0), "range");
                stop = integer(args.get(1), "range");
                if (args.size() == 3) step = integer(args.get(2), "range");
            }
            if (step == 0) throw new IllegalArgumentException("range() arg 3 must not be zero");
            List<Object> out = new ArrayList<>();
            for (long k = start; step > 0 ? k < stop : k > stop; k += step) {
                out.add(k);
                if (out.size() > 10_000_000) throw new IllegalArgumentException("range too big");
            }
            return out;
        });
        g.put("namespace", (Callable) (args, kwargs) -> {
            Namespace ns = new Namespace();
            for (Object a : args) {
                if (!(a instanceof Map<?, ?> m)) throw new IllegalArgumentException("namespace() takes keyword arguments or a dict");
                for (Map.Entry<?, ?> e : m.entrySet()) ns.attrs.put((String) e.getKey(), e.getValue());
            }
            ns.attrs.putAll(kwargs);
            return ns;
        });
        g.put("dict", (Callable) (args, kwargs) -> {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Object a : args) {
                if (!(a instanceof Map<?, ?> src)) throw new IllegalArgumentException("dict() takes keyword arguments or a dict");
                for (Map.Entry<?, ?> e : src.entrySet()) m.put((String) e.getKey(), e.getValue());
            }
            m.putAll(kwargs);
            return m;
        });
        g.put("raise_exception", (Callable) (args, kwargs) -> {
            throw new ChatTemplate.RaisedException(args.isEmpty() ? "" : Py.str(args.get(0)));
        });
        g.put("strftime_now", (Callable) (args, kwargs) -> {
            if (args.size() != 1 || !(args.get(0) instanceof String fmt)) throw new IllegalArgumentException("strftime_now takes one format string");
            return strftime(now, fmt);
        });
        return g;
    }

    private static void noKwargs(String name, Map<String, Object> kwargs) {
        if (!kwargs.isEmpty()) throw new IllegalArgumentException(name + "() takes no keyword arguments");
    }

    private static Object number(Object v, String what) {
        if (Py.isNumber(v)) return v;
        throw new IllegalArgumentException(what + ": unsupported operand type(s) for %: '" + Py.typeName(v) + "' and 'int'");
    }

    private static long integer(Object v, String what) {
        if (Py.isNumber(v) && !(v instanceof Double)) return Py.toLong(v);
        throw new IllegalArgumentException(what + ": '" + Py.typeName(v) + "' object cannot be interpreted as an integer");
    }

    /** Python's {@code datetime.strftime} (glibc's, so {@code %-d} drops the padding), English names. */
    static String strftime(ZonedDateTime t, String fmt) {
        StringBuilder sb = new StringBuilder();
        for (int k = 0; k < fmt.length(); k++) {
            char c = fmt.charAt(k);
            if (c != '%' || k + 1 >= fmt.length()) {
                sb.append(c);
                continue;
            }
            char d = fmt.charAt(++k);
            boolean pad = true;
            if (d == '-' && k + 1 < fmt.length()) {
                pad = false;
                d = fmt.charAt(++k);
            }
            String two = pad ? "%02d" : "%d";
            switch (d) {
                case 'a' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.US));
                case 'A' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.US));
                case 'b', 'h' -> sb.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.US));
                case 'B' -> sb.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.US));
                case 'd' -> sb.append(String.format(two, t.getDayOfMonth()));
                case 'e' -> sb.append(String.format("%2d", t.getDayOfMonth()));
                case 'm' -> sb.append(String.format(two, t.getMonthValue()));
                case 'y' -> sb.append(String.format(two, t.getYear() % 100));
                case 'Y' -> sb.append(t.getYear());
                case 'H' -> sb.append(String.format(two, t.getHour()));
                case 'I' -> sb.append(String.format(two, (t.getHour() + 11) % 12 + 1));
                case 'M' -> sb.append(String.format(two, t.getMinute()));
                case 'S' -> sb.append(String.format(two, t.getSecond()));
                case 'p' -> sb.append(t.getHour() < 12 ? "AM" : "PM");
                case 'j' -> sb.append(String.format(pad ? "%03d" : "%d", t.getDayOfYear()));
                case 'f' -> sb.append(String.format("%06d", t.getNano() / 1000));
                case 'Z' -> sb.append(t.getZone().getDisplayName(TextStyle.SHORT, Locale.US));
                case 'z' -> sb.append(t.getOffset().getId().equals("Z") ? "+0000" : t.getOffset().getId().replace(":", ""));
                case 'u' -> sb.append(t.getDayOfWeek().getValue());
                case 'w' -> sb.append(t.getDayOfWeek().getValue() % 7);
                case 'D' -> sb.append(strftime(t, "%m/%d/%y"));
                case 'F' -> sb.append(strftime(t, "%Y-%m-%d"));
                case 'T', 'X' -> sb.append(strftime(t, "%H:%M:%S"));
                case 'x' -> sb.append(strftime(t, "%m/%d/%y"));
                case 'c' -> sb.append(strftime(t, "%a %b %e %H:%M:%S %Y"));
                case 'R' -> sb.append(strftime(t, "%H:%M"));
                case 'r' -> sb.append(strftime(t, "%I:%M:%S %p"));
                case 'C' -> sb.append(String.format(two, t.getYear() / 100));
                case 'k' -> sb.append(String.format(pad ? "%2d" : "%d", t.getHour()));
                case 'l' -> sb.append(String.format(pad ? "%2d" : "%d", (t.getHour() + 11) % 12 + 1));
                case 'n' -> sb.append('\n');
                case 't' -> sb.append('\t');
                // week of the year, Sunday (U) or Monday (W) first; ISO 8601 week and its year (V, G, g)
                case 'U' -> sb.append(String.format(two, (t.getDayOfYear() - 1 + 7 - t.getDayOfWeek().getValue() % 7) / 7));
                case 'W' -> sb.append(String.format(two, (t.getDayOfYear() - 1 + 7 - (t.getDayOfWeek().getValue() + 6) % 7) / 7));
                case 'V' -> sb.append(String.format(two, t.get(java.time.temporal.IsoFields.WEEK_OF_WEEK_BASED_YEAR)));
                case 'G' -> sb.append(t.get(java.time.temporal.IsoFields.WEEK_BASED_YEAR));
                case 'g' -> sb.append(String.format(two, t.get(java.time.temporal.IsoFields.WEEK_BASED_YEAR) % 100));
                case '%' -> sb.append('%');
                default -> throw new IllegalArgumentException("strftime directive %" + d + " is not supported");
            }
        }
        return sb.toString();
    }

    /** Python's {@code needle in haystack}. */
    static boolean contains(Object haystack, Object needle) {
        return switch (haystack) {
            case String s -> {
                if (!(needle instanceof String n)) throw new IllegalArgumentException("'in <string>' requires string as left operand, not " + Py.typeName(needle));
                yield s.contains(n);
            }
            case List<?> l -> l.stream().anyMatch(x -> Py.eq(x, needle));
            case Py.Generator g -> Py.iterate(g).stream().anyMatch(x -> Py.eq(x, needle));
            case Py.DictView d -> d.contains(needle);
            case Map<?, ?> m -> {
                Py.requireHashable(needle);
                yield needle instanceof String && m.containsKey(needle);
            }
            case Undefined u -> false;
            case null, default -> throw new IllegalArgumentException("argument of type '" + Py.typeName(haystack) + "' is not iterable");
        };
    }

    private static final Set<String> ONE_ARGUMENT_TESTS = Set.of("divisibleby", "eq", "equalto", "==", "ne", "!=", "lt",
            "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas");

    static boolean test(String name, Object v, List<Object> args) {
        int arity = ONE_ARGUMENT_TESTS.contains(name) ? 1 : 0;
        if (args.size() > arity) {
            throw new IllegalArgumentException("test_" + name + "() takes " + (arity + 1) + " positional argument"
                    + (arity == 0 ? "" : "s") + " but " + (args.size() + 1) + " were given");
        }
        return switch (name) {
            case "defined" -> !(v instanceof Undefined);
            case "undefined" -> v instanceof Undefined;
            case "none" -> v == null;
            case "string" -> v instanceof String;
            case "number" -> Py.isNumber(v);
            case "integer" -> v instanceof Long || v instanceof BigInteger;
            case "float" -> v instanceof Double;
            case "boolean" -> v instanceof Boolean;
            case "true" -> Boolean.TRUE.equals(v);
            case "false" -> Boolean.FALSE.equals(v);
            case "mapping" -> v instanceof Map;
            case "iterable" -> v instanceof String || v instanceof List || v instanceof Map || v instanceof Undefined
                    || v instanceof Py.Generator || v instanceof Py.DictView;
            case "sequence" -> v instanceof String || v instanceof List || v instanceof Map || v instanceof Undefined;
            case "callable" -> v instanceof Callable || v instanceof Undefined;  // Undefined has a __call__ (that raises)
            // Jinja2's value % 2 == 1, value % 2 == 0, value % num == 0: floats too
            case "odd" -> Py.eq(Renderer.arithmetic("%", number(v, name), 2L), 1L);
            case "even" -> Py.eq(Renderer.arithmetic("%", number(v, name), 2L), 0L);
            case "divisibleby" -> Py.eq(Renderer.arithmetic("%", number(v, name), number(arg(args, 0, name), name)), 0L);
            case "eq", "equalto", "==" -> Py.eq(v, arg(args, 0, name));
            case "ne", "!=" -> !Py.eq(v, arg(args, 0, name));
            case "lt", "lessthan", "<" -> Py.compare(v, arg(args, 0, name)) < 0;
            case "le", "<=" -> Py.compare(v, arg(args, 0, name)) <= 0;
            case "gt", "greaterthan", ">" -> Py.compare(v, arg(args, 0, name)) > 0;
            case "ge", ">=" -> Py.compare(v, arg(args, 0, name)) >= 0;
            case "in" -> contains(arg(args, 0, name), v);
            case "sameas" -> {
                Object o = arg(args, 0, name);
                yield v == o || (v instanceof Boolean && v.equals(o));
            }
            // Jinja2's str(value).islower() / .isupper()
            case "escaped" -> false;  // hasattr(value, '__html__'): only Markup has it, and no value here is Markup
            case "lower" -> isLower(Py.str(v));
            case "upper" -> isUpper(Py.str(v));
            case "filter", "test" -> {  // Jinja2 looks the value up in a dict
                Py.requireHashable(v);
                yield v instanceof String s && (name.equals("filter") ? FILTERS : TESTS).contains(s);
            }
            default -> throw new IllegalArgumentException("unknown test '" + name + "'");
        };
    }

    private static Object arg(List<Object> args, int k, String what) {
        if (k >= args.size()) throw new IllegalArgumentException(what + " is missing an argument");
        return args.get(k);
    }

    private static Object kw(List<Object> args, Map<String, Object> kwargs, int k, String name, Object dflt) {
        if (kwargs.containsKey(name)) return kwargs.get(name);
        return k < args.size() ? args.get(k) : dflt;
    }

    static Object filter(String name, Object v, List<Object> args, Map<String, Object> kwargs, Renderer r, int pos) {
        switch (name) {
            case "default", "d" -> {
                Object dflt = kw(args, kwargs, 0, "default_value", "");
                boolean bool = Py.truthy(kw(args, kwargs, 1, "boolean", false));
                return v instanceof Undefined || (bool && !Py.truthy(v)) ? dflt : v;
            }
            case "safe" -> {
                return v;
            }
            case "e", "escape" -> {
                return Py.str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                        .replace("\"", "&#34;").replace("'", "&#39;");
            }
            case "string" -> {
                return Py.str(v);
            }
            case "attr" -> {
                Object a = arg(args, 0, "attr");
                if (v instanceof Undefined u) throw new IllegalArgumentException(u.message());  // Undefined's getattr raises
                if (v instanceof Map<?, ?> || v instanceof Undefined) {
                    Callable m = method(v, Py.str(a));
                    return m != null ? m : new Undefined("no attribute " + Py.repr(a));
                }
                return r.getattr(v, Py.str(a), pos);
            }
            default -> { }
        }
        if (v instanceof Undefined u && !Set.of("length", "count", "list", "join", "center", "truncate", "batch", "slice", "groupby", "format", "items", "map", "select", "reject",
                "selectattr", "rejectattr", "first", "last", "reverse", "sort", "unique", "trim", "upper", "lower",
                "title", "capitalize", "wordcount", "dictsort", "min", "max", "sum", "replace").contains(name)) {
            throw new IllegalArgumentException(u.message());
        }
        switch (name) {
            case "trim" -> {
                Object chars = kw(args, kwargs, 0, "chars", null);
                return Py.strip(Py.str(v), chars == null ? null : Py.str(chars), true, true);
            }
            case "length", "count" -> {
                return (long) Py.length(v);
            }
            case "upper" -> {
                return Py.str(v).toUpperCase(Locale.ROOT);
            }
            case "lower" -> {
                return Py.str(v).toLowerCase(Locale.ROOT);
            }
            case "capitalize" -> {
                return capitalize(Py.str(v));
            }
            case "title" -> {
                // Jinja2's title: words begin after runs of '-', whitespace and opening brackets
                StringBuilder sb = new StringBuilder();
                for (String part : splitKeeping(Py.str(v), TITLE_SPLIT)) {
                    // Jinja2: item[0].upper() + item[1:].lower()
                    if (!part.isEmpty()) {
                        int c0 = part.codePointAt(0);
                        sb.append(Character.toString(c0).toUpperCase(Locale.ROOT)).append(part.substring(Character.charCount(c0)).toLowerCase(Locale.ROOT));
                    }
                }
                return sb.toString();
            }
            case "format" -> {  // Jinja2: str(value) % (kwargs or args)
                if (!args.isEmpty() && !kwargs.isEmpty()) {
                    throw new IllegalArgumentException("can't handle positional and keyword arguments at the same time");
                }
                return Printf.format(Py.str(v), kwargs.isEmpty() ? new Tuple(args.toArray()) : new LinkedHashMap<>(kwargs));
            }
            case "center" -> {  // str(value).center(width)
                return pad(Py.str(v), integer(kw(args, kwargs, 0, "width", 80L), "center"), " ", "center");
            }
            case "truncate" -> {
                long length = integer(kw(args, kwargs, 0, "length", 255L), "truncate");
                boolean killwords = Py.truthy(kw(args, kwargs, 1, "killwords", false));
                String end = Py.str(kw(args, kwargs, 2, "end", "..."));
                Object leewayArg = kw(args, kwargs, 3, "leeway", null);
                long leeway = leewayArg == null ? 5 : integer(leewayArg, "truncate");  // the policy truncate.leeway
                int endLength = Py.length(end);
                if (length < endLength) throw new IllegalArgumentException("expected length >= " + endLength + ", got " + length);
                if (leeway < 0) throw new IllegalArgumentException("expected leeway >= 0, got " + leeway);
                if (Py.length(v) <= length + leeway) return v;
                if (!(v instanceof String s)) throw new IllegalArgumentException("truncate needs a string");
                int[] cps = Py.codePoints(s);
                String head = new String(cps, 0, (int) (length - endLength));
                if (killwords) return head + end;
                int space = head.lastIndexOf(' ');  // s[:length - len(end)].rsplit(" ", 1)[0]
                return (space < 0 ? head : head.substring(0, space)) + end;
            }
            case "batch" -> {
                Object lines = arg(args, 0, "batch");
                Object fill = kw(args, kwargs, 1, "fill_with", null);
                List<Object> out = new ArrayList<>();
                List<Object> tmp = new ArrayList<>();
                for (Object item : Py.iterate(v)) {
                    if (Py.eq((long) tmp.size(), lines)) {
                        out.add(tmp);
                        tmp = new ArrayList<>();
                    }
                    tmp.add(item);
                }
                if (!tmp.isEmpty()) {
                    if (fill != null && Py.compare((long) tmp.size(), lines) < 0) {
                        while (Py.compare((long) tmp.size(), lines) < 0) tmp.add(fill);
                    }
                    out.add(tmp);
                }
                return new Py.Generator(out);
            }
            case "slice" -> {
                List<Object> seq = Py.iterate(v);
                long slices = integer(arg(args, 0, "slice"), "slice");
                Object fill = kw(args, kwargs, 1, "fill_with", null);
                if (slices == 0) throw new IllegalArgumentException("integer division or modulo by zero");
                long per = Math.floorDiv(seq.size(), slices), extra = Math.floorMod(seq.size(), slices), offset = 0;
                List<Object> out = new ArrayList<>();
                for (long k = 0; k < slices; k++) {
                    long start = offset + k * per;
                    if (k < extra) offset++;
                    long stop = offset + (k + 1) * per;
                    List<Object> tmp = new ArrayList<>();
                    for (long j = Math.max(0, start); j < Math.min(seq.size(), stop); j++) tmp.add(seq.get((int) j));
                    if (fill != null && k >= extra) tmp.add(fill);
                    out.add(tmp);
                }
                return new Py.Generator(out);
            }
            case "groupby" -> {
                // Jinja2: sorted by the attribute (lower case unless case_sensitive), grouped where it is equal; the
                // grouper is the first item's own value
                String attribute = Py.str(arg(args, 0, "groupby"));
                Object dflt = kw(args, kwargs, 1, "default", null);
                boolean caseSensitive = Py.truthy(kw(args, kwargs, 2, "case_sensitive", false));
                java.util.function.Function<Object, Object> value = item -> {
                    Object x = attribute(r, item, attribute, pos);
                    return x instanceof Undefined && dflt != null ? dflt : x;
                };
                List<Object> items = Py.iterate(v);
                items.sort((a, b) -> Py.compare(sortKey(value.apply(a), caseSensitive), sortKey(value.apply(b), caseSensitive)));
                List<Object> out = new ArrayList<>();
                List<Object> group = null;
                Object key = null;
                for (Object item : items) {
                    Object k = sortKey(value.apply(item), caseSensitive);
                    if (group == null || !Py.eq(k, key)) {
                        group = new ArrayList<>();
                        out.add(new Py.GroupTuple(caseSensitive ? k : value.apply(item), group));
                        key = k;
                    }
                    group.add(item);
                }
                return out;
            }
            case "wordcount" -> {
                Matcher m = Pattern.compile("\\w+", Pattern.UNICODE_CHARACTER_CLASS).matcher(Py.str(v));
                long n = 0;
                while (m.find()) n++;
                return n;
            }
            case "replace" -> {
                Object count = kw(args, kwargs, 2, "count", null);
                return replace(Py.str(v), Py.str(arg(args, 0, "replace")), Py.str(arg(args, 1, "replace")),
                        count == null ? -1 : integer(count, "replace"));
            }
            case "indent" -> {
                // Jinja2's indent does s += newline: a str only
                if (!(v instanceof String)) throw new IllegalArgumentException("unsupported operand type(s) for +=: '" + Py.typeName(v) + "' and 'str'");
                return indent(Py.str(v), kw(args, kwargs, 0, "width", 4L), Py.truthy(kw(args, kwargs, 1, "first", false)),
                        Py.truthy(kw(args, kwargs, 2, "blank", false)));
            }
            case "join" -> {
                String sep = Py.str(kw(args, kwargs, 0, "d", ""));
                Object attribute = kw(args, kwargs, 1, "attribute", null);
                StringBuilder sb = new StringBuilder();
                boolean first = true;
                for (Object item : Py.iterate(v)) {
                    sb.append(first ? "" : sep).append(Py.str(attribute == null ? item : attribute(r, item, Py.str(attribute), pos)));
                    first = false;
                }
                return sb.toString();
            }
            case "first", "last" -> {
                if (name.equals("last") && v instanceof Py.Generator) throw new IllegalArgumentException("'generator' object is not reversible");
                List<Object> items = Py.iterate(v);
                if (items.isEmpty()) return new Undefined("No " + name + " item, sequence was empty.");
                return items.get(name.equals("first") ? 0 : items.size() - 1);
            }
            case "list" -> {
                return Py.iterate(v);
            }
            case "reverse" -> {
                // Jinja2: a reversed string; reversed(value), an iterator, for what Python can reverse; else a list
                if (v instanceof String s) return new StringBuilder(s).reverse().toString();
                boolean reversible = !(v instanceof Py.Generator);
                List<Object> items = Py.iterate(v);
                Collections.reverse(items);
                return reversible ? new Py.Generator(items) : items;
            }
            case "items" -> {  // a generator in Jinja2
                if (v instanceof Undefined) return new Py.Generator(new ArrayList<>());
                if (!(v instanceof Map<?, ?> m)) throw new IllegalArgumentException("can only get item pairs from a mapping");
                List<Object> out = new ArrayList<>();
                for (Map.Entry<?, ?> e : m.entrySet()) out.add(new Tuple(e.getKey(), e.getValue()));
                return new Py.Generator(out);
            }
            case "dictsort" -> {
                if (!(v instanceof Map<?, ?> m)) throw new IllegalArgumentException("dictsort: a mapping is needed");
                Object by = kw(args, kwargs, 1, "by", "key");
                if (!"key".equals(by) && !"value".equals(by)) throw new IllegalArgumentException("You can only sort by either \"key\" or \"value\"");
                boolean byValue = "value".equals(by);
                boolean caseSensitive = Py.truthy(kw(args, kwargs, 0, "case_sensitive", false));
                List<Object> out = new ArrayList<>();
                for (Map.Entry<?, ?> e : m.entrySet()) out.add(new Tuple(e.getKey(), e.getValue()));
                out.sort((a, b) -> Py.compare(sortKey(((Tuple) a).get(byValue ? 1 : 0), caseSensitive),
                        sortKey(((Tuple) b).get(byValue ? 1 : 0), caseSensitive)));
                if (Py.truthy(kw(args, kwargs, 2, "reverse", false))) Collections.reverse(out);
                return out;
            }
            case "int" -> {
                return toInt(v, kw(args, kwargs, 0, "default", 0L), kw(args, kwargs, 1, "base", 10L));
            }
            case "float" -> {
                return toFloat(v, kw(args, kwargs, 0, "default", 0.0));
            }
            case "abs" -> {
                if (v instanceof Double d) return Math.abs(d);
                if (!Py.isInt(v)) throw new IllegalArgumentException("bad operand type for abs(): '" + Py.typeName(v) + "'");
                return Py.big(v).signum() < 0 ? Py.negate(v) : v instanceof Boolean ? (Object) Py.toLong(v) : v;
            }
            case "round" -> {
                long precision = integer(kw(args, kwargs, 0, "precision", 0L), "round");
                String method = Py.str(kw(args, kwargs, 1, "method", "common"));
                if (!Py.isNumber(v)) throw new IllegalArgumentException("round needs a number");
                RoundingMode mode = switch (method) {
                    case "common" -> RoundingMode.HALF_EVEN;
                    case "ceil" -> RoundingMode.CEILING;
                    case "floor" -> RoundingMode.FLOOR;
                    default -> throw new IllegalArgumentException("method must be common, ceil or floor");
                };
                if (method.equals("common") && Py.isInt(v)) {
                    // Python's round(int, ndigits) is an int, rounded half to even at a negative ndigits
                    if (precision >= 0) return Py.integer(Py.big(v));
                    return Py.integer(new BigDecimal(Py.big(v)).setScale((int) Math.max(precision, -10_000), RoundingMode.HALF_EVEN).toBigInteger());
                }
                double d = Py.toDouble(v);
                if (Double.isNaN(d) || Double.isInfinite(d)) return d;
                if (!method.equals("common")) {
                    // Jinja2: math.ceil / math.floor (ints, so no -0.0) of value * 10**precision, over 10**precision
                    double scale = Math.pow(10, precision);
                    return (method.equals("ceil") ? Math.ceil(d * scale) : Math.floor(d * scale)) / scale + 0.0;
                }
                double rounded = new BigDecimal(d).setScale((int) precision, mode).doubleValue();
                return rounded == 0 ? Math.copySign(0.0, d) : rounded;  // Python's round(-0.4) is -0.0
            }
            case "tojson" -> {
                Object indent = kw(args, kwargs, 0, "indent", null);
                if (kwargs.containsKey("separators") && kwargs.get("separators") != null) {
                    throw new IllegalArgumentException("tojson(separators=...) is not supported");
                }
                if (kwargs.containsKey("ensure_ascii") && Py.truthy(kwargs.get("ensure_ascii"))) {
                    throw new IllegalArgumentException("tojson(ensure_ascii=True) is not supported");
                }
                // json.dumps: an int indent is that many spaces, a string is the indent itself
                return Py.json(v, indent == null ? null : indent instanceof String i ? i : " ".repeat((int) Math.max(0, integer(indent, "tojson indent"))),
                        Py.truthy(kwargs.getOrDefault("sort_keys", false)));
            }
            case "map", "select", "reject", "selectattr", "rejectattr", "unique" -> {
                // generator functions in Jinja2: nothing runs, not even the checks of the arguments, until they are iterated
                return new Py.Generator(() -> generate(name, v, args, kwargs, r, pos));
            }
            case "sort" -> {
                boolean reverse = Py.truthy(kw(args, kwargs, 0, "reverse", false));
                boolean caseSensitive = Py.truthy(kw(args, kwargs, 1, "case_sensitive", false));
                Object attribute = kw(args, kwargs, 2, "attribute", null);
                List<Object> items = Py.iterate(v);
                // Jinja2's keys are one-item lists, and Python compares lists item by item with == first: equal items
                // (two Undefineds, two equal dicts) are no error
                Comparator<Object> cmp = Comparator.comparing(
                        x -> sortKey(attribute == null ? x : multiAttribute(r, x, attribute, caseSensitive, pos), caseSensitive),
                        (a, b) -> Py.eq(a, b) ? 0 : Py.compare(a, b));
                items.sort(reverse ? cmp.reversed() : cmp);
                return items;
            }
            case "sum" -> {
                Object attribute = kw(args, kwargs, 0, "attribute", null);
                Object total = kw(args, kwargs, 1, "start", 0L);
                if (total instanceof String) throw new IllegalArgumentException("sum() can't sum strings [use ''.join(seq) instead]");
                for (Object item : Py.iterate(v)) {
                    Object x = attribute == null ? item : attribute(r, item, Py.str(attribute), pos);
                    if (x instanceof Undefined u) throw new IllegalArgumentException(u.message());
                    total = Renderer.arithmetic("+", total, x);
                }
                return total;
            }
            case "min", "max" -> {
                List<Object> items = Py.iterate(v);
                if (items.isEmpty()) return new Undefined("No aggregated item, sequence was empty.");
                boolean caseSensitive = Py.truthy(kw(args, kwargs, 0, "case_sensitive", false));
                Object attribute = kw(args, kwargs, 1, "attribute", null);
                Comparator<Object> cmp = Comparator.comparing(
                        x -> sortKey(attribute == null ? x : attribute(r, x, Py.str(attribute), pos), caseSensitive), Py::compare);
                return name.equals("min") ? Collections.min(items, cmp) : Collections.max(items, cmp);
            }
            default -> throw new IllegalArgumentException("unknown filter '" + name + "'");
        }
    }

    /** The items of map, select, reject, selectattr, rejectattr and unique, computed when their generator is iterated. */
    private static List<Object> generate(String name, Object v, List<Object> args, Map<String, Object> kwargs, Renderer r, int pos) {
        switch (name) {
            case "map" -> {
                List<Object> out = new ArrayList<>();
                if (!Py.truthy(v)) return out;  // Jinja2's "if value:" before iterating
                if (kwargs.containsKey("attribute")) {
                    String attribute = Py.str(kwargs.get("attribute"));
                    Object dflt = kwargs.get("default");
                    for (Object item : Py.iterate(v)) {
                        Object x = attribute(r, item, attribute, pos);
                        out.add(x instanceof Undefined && kwargs.containsKey("default") ? dflt : x);
                    }
                    return out;
                }
                String filter = Py.str(arg(args, 0, "map"));
                if (!FILTERS.contains(filter)) throw new IllegalArgumentException("unknown filter '" + filter + "'");
                for (Object item : Py.iterate(v)) out.add(filter(filter, item, args.subList(1, args.size()), kwargs, r, pos));
                return out;
            }
            case "select", "reject", "selectattr", "rejectattr" -> {
                if (!Py.truthy(v)) return new ArrayList<>();  // Jinja2's "if value:" before iterating
                boolean attr = name.endsWith("attr");
                boolean keep = name.startsWith("select");
                String attribute = attr ? Py.str(arg(args, 0, name)) : null;
                int t = attr ? 1 : 0;
                String testName = args.size() > t ? Py.str(args.get(t)) : null;
                if (testName != null && !TESTS.contains(testName)) throw new IllegalArgumentException("unknown test '" + testName + "'");
                List<Object> testArgs = args.size() > t + 1 ? args.subList(t + 1, args.size()) : List.of();
                List<Object> out = new ArrayList<>();
                for (Object item : Py.iterate(v)) {
                    Object x = attr ? attribute(r, item, attribute, pos) : item;
                    boolean ok = testName == null ? Py.truthy(x) : test(testName, x, testArgs);
                    if (ok == keep) out.add(item);
                }
                return out;
            }
            case "unique" -> {
                boolean caseSensitive = Py.truthy(kw(args, kwargs, 0, "case_sensitive", false));
                Object attribute = kw(args, kwargs, 1, "attribute", null);
                List<Object> out = new ArrayList<>();
                List<Object> seen = new ArrayList<>();
                for (Object item : Py.iterate(v)) {
                    Object key = sortKey(attribute == null ? item : attribute(r, item, Py.str(attribute), pos), caseSensitive);
                    Py.requireHashable(key);  // Jinja2 keeps the keys in a set
                    if (seen.stream().noneMatch(s -> Py.eq(s, key))) {
                        seen.add(key);
                        out.add(item);
                    }
                }
                return out;
            }
            default -> throw new IllegalStateException(name);
        }
    }

    /** Jinja2's attribute lookup for filters: dotted paths, integer parts as indexes. */
    private static Object attribute(Renderer r, Object item, String path, int pos) {
        Object x = item;
        for (String part : path.split("\\.")) {
            // Jinja2's environment.getitem on an Undefined raises (an undefined item, or a missing step of the path)
            if (x instanceof Undefined u) throw new IllegalArgumentException(u.message());
            x = part.matches("\\d+") ? r.getitem(x, Long.parseLong(part), pos) : r.getitem(x, part, pos);
        }
        return x;
    }

    /** Jinja2's make_multi_attrgetter: {@code attribute='v,name'} sorts by several attributes, a list of them. */
    private static Object multiAttribute(Renderer r, Object item, Object attribute, boolean caseSensitive, int pos) {
        if (!(attribute instanceof String s) || !s.contains(",")) return attribute(r, item, Py.str(attribute), pos);
        List<Object> key = new ArrayList<>();
        for (String part : s.split(",", -1)) key.add(sortKey(attribute(r, item, part, pos), caseSensitive));
        return key;
    }

    private static Object sortKey(Object v, boolean caseSensitive) {
        return !caseSensitive && v instanceof String s ? s.toLowerCase(Locale.ROOT) : v;
    }

    private static Object toInt(Object v, Object dflt, Object base) {
        if (v instanceof Boolean b) return b ? 1L : 0L;
        if (v instanceof Long || v instanceof BigInteger) return v;
        if (v instanceof Double d) return floatToInt(d, dflt);
        if (v instanceof String s) {
            int b = (int) integer(base, "int");
            String t = Py.strip(s, null, true, true);
            String digits = t.replaceFirst("^([+-]?)0[xX]_?", b == 16 ? "$1" : "$0").replaceFirst("^([+-]?)0[oO]_?", b == 8 ? "$1" : "$0")
                    .replaceFirst("^([+-]?)0[bB]_?", b == 2 ? "$1" : "$0");
            try {
                // Python's int(): one underscore at a time, between digits (or right after a base prefix)
                if (!digits.matches("[+-]?[0-9A-Za-z]+(_[0-9A-Za-z]+)*")) throw new NumberFormatException();
                digits = digits.replace("_", "");
                if (digits.replaceFirst("^[+-]", "").length() > 4300 && b == 10) throw new NumberFormatException();  // Python's limit
                return Py.integer(new BigInteger(digits.startsWith("+") ? digits.substring(1) : digits, b));
            } catch (NumberFormatException e) {
                // Jinja2 then tries int(float(value)), so "42.23" | int is 42
                Object f = toFloat(s, null);
                return f instanceof Double d && !Double.isInfinite(d) ? floatToInt(d, dflt) : dflt;  // OverflowError: the default
            }
        }
        return dflt;
    }

    /** Python's int(float): NaN is a ValueError (the default), infinity an OverflowError; 1e22 is exact. */
    private static Object floatToInt(double d, Object dflt) {
        if (Double.isNaN(d)) return dflt;
        if (Double.isInfinite(d)) throw new IllegalArgumentException("cannot convert float infinity to integer");
        return Py.integer(new BigDecimal(d).toBigInteger());
    }

    private static Object toFloat(Object v, Object dflt) {
        if (Py.isNumber(v)) return Py.toDouble(v);
        if (v instanceof String s) {
            try {
                String t = Py.strip(s, null, true, true);
                // Python's float(): underscores one at a time between digits
                if (t.matches("[+-]?(\\d+(_\\d+)*(\\.(\\d+(_\\d+)*)?)?|\\.\\d+(_\\d+)*)([eE][+-]?\\d+(_\\d+)*)?")) return Double.parseDouble(t.replace("_", ""));
                if (t.matches("(?i)[+-]?(inf|infinity|nan)")) return Double.parseDouble(t.replaceAll("(?i)inf(inity)?", "Infinity").replaceAll("(?i)nan", "NaN"));
            } catch (NumberFormatException e) {
                return dflt;
            }
        }
        return dflt;
    }

    private static String indent(String s, Object width, boolean first, boolean blank) {
        String pad = width instanceof String w ? w : " ".repeat((int) integer(width, "indent"));
        s = s + "\n";
        List<String> lines = splitlines(s, false);
        StringBuilder rv = new StringBuilder();
        if (blank) {
            rv.append(String.join("\n" + pad, lines));
        } else {
            rv.append(lines.getFirst());
            for (int k = 1; k < lines.size(); k++) rv.append('\n').append(lines.get(k).isEmpty() ? "" : pad + lines.get(k));
        }
        return first ? pad + rv : rv.toString();
    }

    private static List<String> splitKeeping(String s, Pattern sep) {
        List<String> out = new ArrayList<>();
        Matcher m = sep.matcher(s);
        int last = 0;
        while (m.find()) {
            out.add(s.substring(last, m.start()));
            out.add(m.group());
            last = m.end();
        }
        out.add(s.substring(last));
        return out;
    }

    static String capitalize(String s) {
        if (s.isEmpty()) return s;
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        return titleCase(first) + s.substring(n).toLowerCase(Locale.ROOT);
    }

    /**
     * Python's full title case of one character: the simple mapping (ǆ → ǅ), or, where upper case is several
     * characters (ß → SS, ﬁ → FI), the first of them upper and the rest lower (Ss, Fi), as SpecialCasing.txt has it.
     */
    static String titleCase(int c) {
        String upper = Character.toString(c).toUpperCase(Locale.ROOT);
        if (upper.codePointCount(0, upper.length()) > 1 && Character.toTitleCase(c) == c) {
            int head = upper.codePointAt(0);
            return Character.toString(head) + upper.substring(Character.charCount(head)).toLowerCase(Locale.ROOT);
        }
        return Character.toString(Character.toTitleCase(c));
    }

    /** Jinja2's {@code [-\s({\[<]+}, where Python's {@code \s} is every str.isspace() character (U+00A0 too). */
    private static final Pattern TITLE_SPLIT;

    static {
        StringBuilder spaces = new StringBuilder();
        for (int c = 0; c < 0x3100; c++) if (Py.isSpace(c)) spaces.append(String.format("\\x{%x}", c));
        TITLE_SPLIT = Pattern.compile("[-(\\{\\[<" + spaces + "]+");
    }

    static boolean isLower(String s) {
        return s.codePoints().anyMatch(Character::isLowerCase) && s.equals(s.toLowerCase(Locale.ROOT));
    }

    static boolean isUpper(String s) {
        return s.codePoints().anyMatch(Character::isUpperCase) && s.equals(s.toUpperCase(Locale.ROOT));
    }

    /** Python's {@code str.title()}: a cased letter after an uncased character starts a word. */
    static String pyTitle(String s) {
        StringBuilder sb = new StringBuilder();
        boolean prevCased = false;
        for (int k = 0; k < s.length(); ) {
            int c = s.codePointAt(k);
            k += Character.charCount(c);
            boolean cased = Character.isUpperCase(c) || Character.isLowerCase(c) || Character.isTitleCase(c);
            if (cased) sb.append(prevCased ? Character.toString(c).toLowerCase(Locale.ROOT) : titleCase(c));
            else sb.appendCodePoint(c);
            prevCased = cased;
        }
        return sb.toString();
    }

    static String replace(String s, String old, String replacement, long count) {
        if (old.isEmpty()) {
            // Python inserts the replacement at each of the len + 1 positions, the first count of them
            int[] cps = Py.codePoints(s);
            long limit = count < 0 ? cps.length + 1L : count;
            StringBuilder sb = new StringBuilder();
            for (int k = 0; k <= cps.length; k++) {
                if (k < limit) sb.append(replacement);
                if (k < cps.length) sb.appendCodePoint(cps[k]);
            }
            return sb.toString();
        }
        if (count < 0) return s.replace(old, replacement);
        StringBuilder sb = new StringBuilder();
        int from = 0;
        for (long k = 0; k < count; k++) {
            int at = s.indexOf(old, from);
            if (at < 0 || old.isEmpty()) break;
            sb.append(s, from, at).append(replacement);
            from = at + old.length();
        }
        return sb.append(s.substring(from)).toString();
    }

    /** Python's {@code str.splitlines(keepends)}. */
    static List<String> splitlines(String s, boolean keepEnds) {
        List<String> out = new ArrayList<>();
        int start = 0, k = 0;
        while (k < s.length()) {
            char c = s.charAt(k);
            int eol = -1;
            if (c == '\r' && k + 1 < s.length() && s.charAt(k + 1) == '\n') eol = 2;
            else if ("\n\r\u000b\u000c\u001c\u001d\u001e\u0085\u2028\u2029".indexOf(c) >= 0) eol = 1;
            if (eol > 0) {
                out.add(s.substring(start, keepEnds ? k + eol : k));
                k += eol;
                start = k;
            } else {
                k++;
            }
        }
        if (start < s.length()) out.add(s.substring(start));
        return out;
    }

    /** Python's {@code str.split(sep, maxsplit)}: {@code sep} null splits on runs of whitespace. */
    static List<Object> split(String s, String sep, long maxsplit) {
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            int k = 0, n = s.length();
            while (true) {
                while (k < n && Py.isSpace(s.charAt(k))) k++;
                if (k >= n) break;
                if (maxsplit >= 0 && out.size() == maxsplit) {
                    out.add(s.substring(k));  // the rest as it is, trailing whitespace too
                    break;
                }
                int start = k;
                while (k < n && !Py.isSpace(s.charAt(k))) k++;
                out.add(s.substring(start, k));
            }
            return out;
        }
        if (sep.isEmpty()) throw new IllegalArgumentException("empty separator");
        int from = 0;
        while (maxsplit < 0 || out.size() < maxsplit) {
            int at = s.indexOf(sep, from);
            if (at < 0) break;
            out.add(s.substring(from, at));
            from = at + sep.length();
        }
        out.add(s.substring(from));
        return out;
    }

    /** Python's {@code str.rsplit(sep, maxsplit)}: from the right, which differs from split where separators overlap. */
    private static List<Object> rsplit(String s, String sep, long maxsplit) {
        List<Object> out = new ArrayList<>();
        int end = s.length();
        if (sep == null) {
            while (true) {
                while (end > 0 && Py.isSpace(s.charAt(end - 1))) end--;
                if (end == 0) break;
                if (maxsplit >= 0 && out.size() == maxsplit) {
                    out.addFirst(s.substring(0, end));  // the rest as it is, leading whitespace too
                    break;
                }
                int start = end;
                while (start > 0 && !Py.isSpace(s.charAt(start - 1))) start--;
                out.addFirst(s.substring(start, end));
                end = start;
            }
            return out;
        }
        if (sep.isEmpty()) throw new IllegalArgumentException("empty separator");
        while (maxsplit < 0 || out.size() < maxsplit) {
            int at = s.lastIndexOf(sep, end - sep.length());
            if (at < 0) break;
            out.addFirst(s.substring(at + sep.length(), end));
            end = at;
        }
        out.addFirst(s.substring(0, end));
        return out;
    }

    /** A method bound to its object ({@code s.strip}, {@code d.items}), or null when the object has none by that name. */
    static Callable method(Object obj, String name) {
        if (obj instanceof String s) return stringMethod(s, name);
        if (obj instanceof Map<?, ?> m) {
            return switch (name) {
                case "items", "keys", "values" -> (args, kwargs) -> new Py.DictView(name, m);
                case "get" -> (args, kwargs) -> {
                    Object key = arg(args, 0, "get");
                    return m.containsKey(key) ? m.get(key) : args.size() > 1 ? args.get(1) : null;
                };
                default -> null;
            };
        }
        if (obj instanceof List<?> l) {
            return switch (name) {
                case "count" -> (args, kwargs) -> {
                    if (args.size() != 1 || !kwargs.isEmpty()) throw new IllegalArgumentException(Py.typeName(l) + ".count() takes exactly one argument (" + args.size() + " given)");
                    return l.stream().filter(x -> Py.eq(x, args.getFirst())).count();
                };
                case "index" -> (args, kwargs) -> {
                    if (args.isEmpty() || args.size() > 3 || !kwargs.isEmpty()) {
                        throw new IllegalArgumentException(Py.typeName(l) + ".index() takes 1 to 3 positional arguments (" + args.size() + " given)");
                    }
                    long from = args.size() > 1 ? clampIndex(integer(args.get(1), "index"), l.size()) : 0;
                    long to = args.size() > 2 ? clampIndex(integer(args.get(2), "index"), l.size()) : l.size();
                    for (long k = from; k < to; k++) if (Py.eq(l.get((int) k), args.getFirst())) return k;
                    throw new IllegalArgumentException(Py.repr(args.get(0)) + " is not in list");
                };
                default -> null;
            };
        }
        return null;
    }

    private static String strArg(List<Object> args, int k, String what) {
        Object v = arg(args, k, what);
        if (!(v instanceof String s)) throw new IllegalArgumentException(what + " expects a string, not '" + Py.typeName(v) + "'");
        return s;
    }

    private static String optChars(List<Object> args) {
        if (args.isEmpty() || args.getFirst() == null) return null;
        return strArg(args, 0, "strip");
    }

    private static boolean affix(String s, Object affixes, boolean prefix) {
        if (affixes instanceof Tuple l) return l.stream().anyMatch(a -> affix(s, a, prefix));
        if (!(affixes instanceof String a)) throw new IllegalArgumentException("startswith/endswith expect a string or a tuple");
        return prefix ? s.startsWith(a) : s.endsWith(a);
    }

    private static Callable stringMethod(String s, String name) {
        return switch (name) {
            case "strip" -> (args, kwargs) -> Py.strip(s, optChars(args), true, true);
            case "lstrip" -> (args, kwargs) -> Py.strip(s, optChars(args), true, false);
            case "rstrip" -> (args, kwargs) -> Py.strip(s, optChars(args), false, true);
            case "upper" -> (args, kwargs) -> s.toUpperCase(Locale.ROOT);
            case "lower" -> (args, kwargs) -> s.toLowerCase(Locale.ROOT);
            case "title" -> (args, kwargs) -> pyTitle(s);
            case "capitalize" -> (args, kwargs) -> capitalize(s);
            case "startswith", "endswith" -> (args, kwargs) -> {
                if (args.size() > 3) throw new IllegalArgumentException(name + " takes at most 3 arguments (" + args.size() + " given)");
                // Python's s.startswith(x, start, end) is s[start:end].startswith(x), but false where start is past the end
                int[] cps = Py.codePoints(s);
                long start = args.size() > 1 && args.get(1) != null ? clampIndex(integer(args.get(1), name), cps.length) : 0;
                long end = args.size() > 2 && args.get(2) != null ? clampIndex(integer(args.get(2), name), cps.length) : cps.length;
                if (args.size() > 1 && args.get(1) != null && integer(args.get(1), name) > cps.length) return false;
                String sub = start >= end ? "" : new String(cps, (int) start, (int) (end - start));
                return affix(sub, arg(args, 0, name), name.equals("startswith"));
            };
            case "split", "rsplit" -> (args, kwargs) -> {
                Object sep = kw(args, kwargs, 0, "sep", null);
                long max = integer(kw(args, kwargs, 1, "maxsplit", -1L), name);
                String sepStr = sep == null ? null : Py.str(sep);
                return name.equals("split") ? split(s, sepStr, max) : rsplit(s, sepStr, max);
            };
            case "splitlines" -> (args, kwargs) -> {
                if (args.size() > 1) throw new IllegalArgumentException("splitlines() takes at most 1 argument (" + args.size() + " given)");
                Object keep = kw(args, kwargs, 0, "keepends", false);
                if (!Py.isInt(keep)) throw new IllegalArgumentException("'" + Py.typeName(keep) + "' object cannot be interpreted as an integer");
                return new ArrayList<Object>(splitlines(s, Py.truthy(keep)));
            };
            case "replace" -> (args, kwargs) -> replace(s, strArg(args, 0, "replace"), strArg(args, 1, "replace"),
                    args.size() > 2 ? integer(args.get(2), "replace") : -1);
            case "find", "rfind", "index", "rindex" -> (args, kwargs) -> {
                // s.find(sub, start, end) looks in s[start:end] and counts from the start of s; start past the end finds nothing
                String sub = strArg(args, 0, name);
                int[] cps = Py.codePoints(s);
                long[] w = window(args, cps.length, name);
                long at = -1;
                if (w != null) {
                    String in = new String(cps, (int) w[0], (int) Math.max(0, w[1] - w[0]));
                    int k = name.startsWith("r") ? in.lastIndexOf(sub) : in.indexOf(sub);
                    if (k >= 0 && w[1] >= w[0]) at = w[0] + codePointIndex(in, k);
                }
                if (at < 0 && name.endsWith("index")) throw new IllegalArgumentException("substring not found");
                return at;
            };
            case "count" -> (args, kwargs) -> {
                String sub = strArg(args, 0, "count");
                int[] cps = Py.codePoints(s);
                long[] w = window(args, cps.length, name);
                if (w == null || w[1] < w[0]) return 0L;
                String in = new String(cps, (int) w[0], (int) (w[1] - w[0]));
                if (sub.isEmpty()) return (long) Py.length(in) + 1;
                long n = 0;
                for (int at = in.indexOf(sub); at >= 0; at = in.indexOf(sub, at + sub.length())) n++;
                return n;
            };
            case "join" -> (args, kwargs) -> {
                StringBuilder sb = new StringBuilder();
                boolean first = true;
                for (Object item : Py.iterate(arg(args, 0, "join"))) {
                    if (!(item instanceof String str)) throw new IllegalArgumentException("sequence item: expected str instance, " + Py.typeName(item) + " found");
                    sb.append(first ? "" : s).append(str);
                    first = false;
                }
                return sb.toString();
            };
            case "removeprefix" -> (args, kwargs) -> {
                String p = strArg(args, 0, name);
                return s.startsWith(p) ? s.substring(p.length()) : s;
            };
            case "removesuffix" -> (args, kwargs) -> {
                String p = strArg(args, 0, name);
                return !p.isEmpty() && s.endsWith(p) ? s.substring(0, s.length() - p.length()) : s;
            };
            case "isdigit" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isspace" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Py::isSpace);
            case "islower" -> (args, kwargs) -> isLower(s);
            case "isupper" -> (args, kwargs) -> isUpper(s);
            case "isdecimal" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);  // Nd, as Java's
            case "isalnum" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(c -> Character.isLetter(c)
                    || Character.getType(c) == Character.DECIMAL_DIGIT_NUMBER || Character.getType(c) == Character.LETTER_NUMBER
                    || Character.getType(c) == Character.OTHER_NUMBER);
            case "istitle" -> (args, kwargs) -> isTitle(s);
            case "center", "ljust", "rjust" -> (args, kwargs) -> {
                arity(name, args, kwargs, 1, 2);
                String fill = args.size() > 1 ? strArg(args, 1, name) : " ";
                if (Py.length(fill) != 1) throw new IllegalArgumentException("The fill character must be exactly one character long");
                return pad(s, integer(arg(args, 0, name), name), fill, name);
            };
            case "zfill" -> (args, kwargs) -> {
                arity(name, args, kwargs, 1, 1);
                long width = integer(arg(args, 0, name), name);
                int n = Py.length(s);
                if (width <= n) return s;
                String zeros = "0".repeat((int) (width - n));
                return !s.isEmpty() && (s.charAt(0) == '+' || s.charAt(0) == '-') ? s.charAt(0) + zeros + s.substring(1) : zeros + s;
            };
            case "partition", "rpartition" -> (args, kwargs) -> {
                arity(name, args, kwargs, 1, 1);
                String sep = strArg(args, 0, name);
                if (sep.isEmpty()) throw new IllegalArgumentException("empty separator");
                int at = name.equals("partition") ? s.indexOf(sep) : s.lastIndexOf(sep);
                if (at < 0) return name.equals("partition") ? new Tuple(s, "", "") : new Tuple("", "", s);
                return new Tuple(s.substring(0, at), sep, s.substring(at + sep.length()));
            };
            case "format" -> (args, kwargs) -> format(s, args, kwargs);
            default -> null;
        };
    }

    /** A str method's count of positional arguments, which take no keywords. */
    private static void arity(String name, List<Object> args, Map<String, Object> kwargs, int min, int max) {
        noKwargs("str." + name, kwargs);
        if (args.size() < min || args.size() > max) {
            throw new IllegalArgumentException("str." + name + "() takes " + (min == max ? "exactly " + min : min + " to " + max)
                    + " argument(s) (" + args.size() + " given)");
        }
    }

    /** Python's str.center, ljust and rjust; center puts the odd space where CPython does. */
    private static String pad(String s, long width, String fill, String how) {
        int n = Py.length(s);
        if (width <= n) return s;
        long margin = width - n;
        long left = switch (how) {
            case "ljust" -> 0;
            case "rjust" -> margin;
            default -> margin / 2 + (margin & width & 1);
        };
        return fill.repeat((int) left) + s + fill.repeat((int) (margin - left));
    }

    /** Python's str.istitle(): cased characters, upper or title case only after uncased ones. */
    static boolean isTitle(String s) {
        boolean cased = false, prevCased = false;
        for (int k = 0; k < s.length(); ) {
            int c = s.codePointAt(k);
            k += Character.charCount(c);
            if (Character.isUpperCase(c) || Character.isTitleCase(c)) {
                if (prevCased) return false;
                prevCased = cased = true;
            } else if (Character.isLowerCase(c)) {
                if (!prevCased) return false;
                prevCased = cased = true;
            } else {
                prevCased = false;
            }
        }
        return cased;
    }

    /**
     * The [start, end) of s.find(sub, start, end) and the like, clamped as slices are; null where start is past the end
     * of the string (Python finds nothing there, not even the empty string).
     */
    private static long[] window(List<Object> args, int len, String name) {
        if (args.size() > 3) throw new IllegalArgumentException(name + " takes at most 3 arguments (" + args.size() + " given)");
        Object start = args.size() > 1 ? args.get(1) : null, end = args.size() > 2 ? args.get(2) : null;
        if (start != null && integer(start, name) > len) return null;
        return new long[] {start == null ? 0 : clampIndex(integer(start, name), len), end == null ? len : clampIndex(integer(end, name), len)};
    }

    /** A slice bound as Python clamps it: negative from the end, then into [0, len]. */
    private static long clampIndex(long k, int len) {
        if (k < 0) k += len;
        return Math.max(0, Math.min(len, k));
    }

    private static int codePointIndex(String s, int charIndex) {
        return charIndex < 0 ? -1 : s.codePointCount(0, charIndex);
    }

    /**
     * Python's {@code str.format} as Jinja2's sandbox runs it: fields {@code {}}, {@code {0}}, {@code {name}}, followed by
     * {@code .attr} and {@code [key]} (looked up as the template would, so a missing one is Undefined), a conversion
     * {@code !r}/{@code !s}/{@code !a} and a format spec. Nested fields inside a spec are refused.
     */
    private static String format(String s, List<Object> args, Map<String, Object> kwargs) {
        StringBuilder sb = new StringBuilder();
        int auto = 0;
        boolean manual = false;
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (c == '{' && k + 1 < s.length() && s.charAt(k + 1) == '{') {
                sb.append('{');
                k++;
            } else if (c == '}') {
                if (k + 1 >= s.length() || s.charAt(k + 1) != '}') throw new IllegalArgumentException("Single '}' encountered in format string");
                sb.append('}');
                k++;
            } else if (c == '{') {
                int end = s.indexOf('}', k);
                if (end < 0) throw new IllegalArgumentException("Single '{' encountered in format string");
                String field = s.substring(k + 1, end);
                if (field.indexOf('{') >= 0) throw new IllegalArgumentException("nested fields in a format spec are not supported");
                String spec = "";
                char conversion = 0;
                int colon = field.indexOf(':');
                if (colon >= 0) {
                    spec = field.substring(colon + 1);
                    field = field.substring(0, colon);
                }
                int bang = field.indexOf('!');
                if (bang >= 0) {
                    if (bang + 2 != field.length() || "rsa".indexOf(field.charAt(bang + 1)) < 0) {
                        throw new IllegalArgumentException(bang + 1 == field.length() ? "end of string while looking for conversion specifier"
                                : "Unknown conversion specifier " + field.substring(bang + 1));
                    }
                    conversion = field.charAt(bang + 1);
                    field = field.substring(0, bang);
                }
                Matcher m = Pattern.compile("^([^.\\[]*)((?:\\.[^.\\[]+|\\[[^\\]]+\\])*)$").matcher(field);
                if (!m.matches()) throw new IllegalArgumentException("invalid format field " + Py.repr(field));
                String first = m.group(1);
                Object v;
                if (first.isEmpty()) {
                    if (manual) throw new IllegalArgumentException("cannot switch from manual field specification to automatic field numbering");
                    if (auto >= args.size()) throw new IllegalArgumentException("Replacement index " + auto + " out of range for positional args tuple");
                    v = args.get(auto++);
                } else if (first.matches("\\d+")) {
                    if (auto > 0) throw new IllegalArgumentException("cannot switch from automatic field numbering to manual field specification");
                    manual = true;
                    int index = Integer.parseInt(first);
                    if (index >= args.size()) throw new IllegalArgumentException("Replacement index " + index + " out of range for positional args tuple");
                    v = args.get(index);
                } else if (kwargs.containsKey(first)) {
                    v = kwargs.get(first);
                } else {
                    throw new IllegalArgumentException("KeyError: " + Py.repr(first));
                }
                Matcher part = Pattern.compile("\\.([^.\\[]+)|\\[([^\\]]+)\\]").matcher(m.group(2));
                while (part.find()) {
                    // the sandbox's formatter looks up with environment.getattr / getitem; an Undefined raises on the next step
                    if (v instanceof Undefined u) throw new IllegalArgumentException(u.message());
                    if (part.group(1) != null) v = LOOKUP.getattr(v, part.group(1), 0);
                    else v = LOOKUP.getitem(v, part.group(2).matches("\\d+") ? (Object) Long.parseLong(part.group(2)) : part.group(2), 0);
                }
                if (conversion == 'r') v = Py.repr(v);
                else if (conversion == 's') v = Py.str(v);
                else if (conversion == 'a') v = Printf.format("%a", new Tuple(v));
                sb.append(Printf.formatSpec(v, spec));
                k = end;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    /** For format fields' lookups, which have no position of their own (an Undefined is refused before it is used). */
    private static final Renderer LOOKUP = new Renderer("");
}
