package dev.patchcore.chat;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.util.AbstractList;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Python's value semantics as Jinja2 templates see them: truth, {@code str()}, {@code repr()}, equality, ordering,
 * {@code json.dumps(ensure_ascii=False)} and the string whitespace of {@code str.strip()}. Runtime values are
 * {@code null} (None), {@link Undefined}, {@link Boolean}, {@link Long}, {@link BigInteger} (only for an int outside
 * long's range, as Python's ints are unbounded; see {@link #integer}), {@link Double}, {@link String}, {@link List}
 * (a {@link Tuple} for tuples), {@link Map} with string keys, {@link DictView}, {@link Namespace} and callables.
 */
final class Py {
    private Py() {}

    /** Jinja2's default {@code Undefined}: empty when printed, false, iterates as nothing; most else raises. */
    record Undefined(String hint) {
        static final Undefined NONE = new Undefined(null);

        String message() {
            return hint == null ? "a value is undefined" : hint;
        }
    }

    /** A Python tuple: prints with parentheses, otherwise a read-only list. */
    static class Tuple extends AbstractList<Object> {
        private final Object[] items;

        Tuple(Object... items) {
            this.items = items;
        }

        @Override public Object get(int index) {
            return items[index];
        }

        @Override public int size() {
            return items.length;
        }
    }

    /** What Jinja2's groupby yields: a namedtuple (grouper, list), which prints as a tuple does. */
    static final class GroupTuple extends Tuple {
        GroupTuple(Object grouper, List<Object> list) {
            super(grouper, list);
        }
    }

    /**
     * What Jinja2's map, select, reject, selectattr, rejectattr and unique return: a Python generator. It is true
     * even when it yields nothing, has no length, cannot be indexed or added to a list, and iterates once.
     */
    static final class Generator {
        private List<Object> items;
        private java.util.function.Supplier<List<Object>> pending;  // runs at the first iteration, as Python's body does

        Generator(List<Object> items) {
            this.items = items;
        }

        Generator(java.util.function.Supplier<List<Object>> pending) {
            this.pending = pending;
        }

        /** The items not yet consumed; a second iteration finds none. */
        List<Object> consume() {
            if (pending != null) {
                java.util.function.Supplier<List<Object>> p = pending;
                pending = null;
                items = p.get();
            }
            List<Object> out = items;
            items = new ArrayList<>();
            return out;
        }
    }

    /**
     * What {@code dict.keys()}, {@code .values()} and {@code .items()} return: a view that iterates like a list but
     * prints as {@code dict_keys(['a'])}, has no indexing or slicing, is no Jinja2 sequence, is not JSON, and compares
     * as Python's views do (keys and items as sets, values by identity).
     */
    record DictView(String kind, Map<?, ?> map) {
        List<Object> items() {
            List<Object> out = new ArrayList<>();
            for (Map.Entry<?, ?> e : map.entrySet()) {
                out.add(switch (kind) {
                    case "keys" -> e.getKey();
                    case "values" -> e.getValue();
                    default -> new Tuple(e.getKey(), e.getValue());
                });
            }
            return out;
        }

        boolean contains(Object x) {
            return switch (kind) {
                case "keys" -> {
                    requireHashable(x);
                    yield x instanceof String && map.containsKey(x);
                }
                case "values" -> map.values().stream().anyMatch(v -> eq(v, x));
                default -> x instanceof Tuple t && t.size() == 2 && t.get(0) instanceof String k && map.containsKey(k)
                        && eq(map.get(k), t.get(1));
            };
        }

        @Override public boolean equals(Object o) {
            return this == o;  // Python's == is eq() below; Java's stays identity, as for values views
        }

        @Override public int hashCode() {
            return System.identityHashCode(this);
        }
    }

    /** {@code namespace(...)}: the one object whose attributes {@code {% set ns.a = ... %}} may assign. */
    static final class Namespace {
        final Map<String, Object> attrs = new LinkedHashMap<>();
    }

    /** A global function or a bound method: positional and keyword arguments. */
    interface Callable {
        Object call(List<Object> args, Map<String, Object> kwargs);
    }

    /** Turns a caller's context value (Integer, Float, arrays, any Map or List) into a runtime value, deeply. */
    static Object fromJava(Object v) {
        if (v == null || v instanceof String || v instanceof Boolean || v instanceof Long || v instanceof Double) return v;
        if (v instanceof Integer || v instanceof Short || v instanceof Byte) return ((Number) v).longValue();
        if (v instanceof Float f) return Double.parseDouble(Float.toString(f));
        if (v instanceof BigInteger b) return integer(b);
        if (v instanceof BigDecimal b) return b.stripTrailingZeros().scale() <= 0 ? integer(b.toBigIntegerExact()) : (Object) b.doubleValue();
        if (v instanceof Number n) {
            // e.g. gson's LazilyParsedNumber: an integer literal stays an int of any size, as Python's json.loads keeps it
            String text = n.toString();
            if (text.matches("-?\\d+")) return integer(new BigInteger(text));
            return n.doubleValue();
        }
        if (v instanceof JsonElement j) return fromJson(j);
        if (v instanceof Character c) return c.toString();
        if (v instanceof CharSequence s) return s.toString();
        if (v instanceof Map<?, ?> m) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) out.put(String.valueOf(e.getKey()), fromJava(e.getValue()));
            return out;
        }
        if (v instanceof Iterable<?> it) {
            List<Object> out = new ArrayList<>();
            for (Object o : it) out.add(fromJava(o));
            return out;
        }
        if (v instanceof Object[] a) return fromJava(List.of(a));
        if (v instanceof Undefined || v instanceof Namespace || v instanceof Callable || v instanceof DictView) return v;
        throw new IllegalArgumentException("a chat template cannot use a value of type " + v.getClass().getName());
    }

    private static Object fromJson(JsonElement j) {
        if (j.isJsonNull()) return null;
        if (j instanceof JsonObject o) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> e : o.entrySet()) out.put(e.getKey(), fromJson(e.getValue()));
            return out;
        }
        if (j instanceof JsonArray a) {
            List<Object> out = new ArrayList<>();
            for (JsonElement e : a) out.add(fromJson(e));
            return out;
        }
        JsonPrimitive p = j.getAsJsonPrimitive();
        if (p.isBoolean()) return p.getAsBoolean();
        if (p.isString()) return p.getAsString();
        return fromJava(p.getAsNumber());
    }

    static boolean truthy(Object v) {
        return switch (v) {
            case null -> false;
            case Undefined u -> false;
            case Boolean b -> b;
            case Long l -> l != 0;
            case Double d -> d != 0.0;
            case String s -> !s.isEmpty();
            case List<?> l -> !l.isEmpty();
            case Map<?, ?> m -> !m.isEmpty();
            case DictView d -> !d.map().isEmpty();
            default -> true;  // a BigInteger is never zero
        };
    }

    static String typeName(Object v) {
        return switch (v) {
            case null -> "NoneType";
            case Undefined u -> "Undefined";
            case Boolean b -> "bool";
            case Long l -> "int";
            case BigInteger b -> "int";
            case Double d -> "float";
            case String s -> "str";
            case Tuple t -> "tuple";
            case List<?> l -> "list";
            case Map<?, ?> m -> "dict";
            case Namespace n -> "Namespace";
            case Generator g -> "generator";
            case DictView d -> "dict_" + d.kind();
            default -> "function";
        };
    }

    /** Python's {@code str(v)}, with Jinja2's Undefined printing as nothing. */
    static String str(Object v) {
        return switch (v) {
            case null -> "None";
            case String s -> s;
            case Undefined u -> "";
            default -> repr(v);
        };
    }

    static String repr(Object v) {
        return switch (v) {
            case null -> "None";
            case Undefined u -> "Undefined";  // repr(Undefined), as a list or dict prints it
            case Boolean b -> b ? "True" : "False";
            case Long l -> l.toString();
            case BigInteger b -> bigRepr(b);
            case Double d -> floatRepr(d);
            case String s -> stringRepr(s);
            case Tuple t -> {
                StringBuilder sb = new StringBuilder("(");
                for (int i = 0; i < t.size(); i++) sb.append(i > 0 ? ", " : "").append(repr(t.get(i)));
                yield sb.append(t.size() == 1 ? ",)" : ")").toString();
            }
            case List<?> l -> {
                StringBuilder sb = new StringBuilder("[");
                for (int i = 0; i < l.size(); i++) sb.append(i > 0 ? ", " : "").append(repr(l.get(i)));
                yield sb.append(']').toString();
            }
            case Map<?, ?> m -> {
                StringBuilder sb = new StringBuilder("{");
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    sb.append(first ? "" : ", ").append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
                    first = false;
                }
                yield sb.append('}').toString();
            }
            case Namespace n -> "<Namespace " + repr(n.attrs) + ">";
            case Generator g -> "<generator object>";
            case DictView d -> "dict_" + d.kind() + "(" + repr(d.items()) + ")";
            case Renderer.MacroValue m -> "<Macro '" + m.macro().name() + "'>";
            default -> "<function>";
        };
    }

    /** Python's {@code str(int)}, which since 3.11 refuses more than 4300 digits (sys.get_int_max_str_digits()). */
    static String bigRepr(BigInteger b) {
        String s = b.toString();
        if (s.length() - (b.signum() < 0 ? 1 : 0) > 4300) {
            throw new IllegalArgumentException("Exceeds the limit (4300 digits) for integer string conversion");
        }
        return s;
    }

    /** Python's {@code repr(float)}: the shortest round-tripping digits, fixed between 1e-4 and 1e16. */
    static String floatRepr(double d) {
        if (Double.isNaN(d)) return "nan";
        if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        BigDecimal b = new BigDecimal(Double.toString(d)).stripTrailingZeros();
        String digits = b.unscaledValue().abs().toString();
        int exp = digits.length() - 1 - b.scale(); // decimal exponent of the first digit
        String sign = d < 0 ? "-" : "";
        if (exp >= -4 && exp < 16) {
            String plain = b.abs().toPlainString();
            return sign + (plain.contains(".") ? plain : plain + ".0");
        }
        String mant = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        return sign + mant + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
    }

    static String stringRepr(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder sb = new StringBuilder().append(quote);
        s.codePoints().forEach(c -> {
            if (c == quote || c == '\\') sb.append('\\').appendCodePoint(c);
            else if (c == '\n') sb.append("\\n");
            else if (c == '\r') sb.append("\\r");
            else if (c == '\t') sb.append("\\t");
            else if (c == ' ' || isPrintable(c)) sb.appendCodePoint(c);
            else if (c <= 0xff) sb.append(String.format("\\x%02x", c));
            else if (c <= 0xffff) sb.append(String.format("\\u%04x", c));
            else sb.append(String.format("\\U%08x", c));
        });
        return sb.append(quote).toString();
    }

    /** Python's {@code str.isprintable} for one code point: what {@code repr} writes as it is rather than escaped. */
    static boolean isPrintable(int c) {
        return switch (Character.getType(c)) {
            case Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE, Character.UNASSIGNED,
                 Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR, Character.SPACE_SEPARATOR -> false;
            default -> true;
        };
    }

    /** Whether Python can hash the value (a set member, a dict key): not lists or dicts, nor tuples holding them. */
    static void requireHashable(Object v) {
        if (v instanceof Tuple t) {
            for (Object x : t) requireHashable(x);
        } else if (v instanceof List<?> || v instanceof Map<?, ?>) {
            throw new IllegalArgumentException("unhashable type: '" + typeName(v) + "'");
        }
    }

    /** Python's {@code ==}. */
    static boolean eq(Object a, Object b) {
        if (a == b) return true;
        if (a == null || b == null) return false;
        if (a instanceof Undefined || b instanceof Undefined) return a instanceof Undefined && b instanceof Undefined;
        if (isNumber(a) && isNumber(b)) return compareNumbers(a, b) == 0;
        if (a instanceof String || b instanceof String) return a.equals(b);
        if (a instanceof List<?> x && b instanceof List<?> y) {
            if ((a instanceof Tuple) != (b instanceof Tuple) || x.size() != y.size()) return false;
            for (int i = 0; i < x.size(); i++) if (!eq(x.get(i), y.get(i))) return false;
            return true;
        }
        if (a instanceof DictView x && b instanceof DictView y) {
            // keys and items views are sets; a values view equals only itself
            if (!x.kind().equals(y.kind()) || x.kind().equals("values") || x.map().size() != y.map().size()) return false;
            return x.items().stream().allMatch(y::contains);
        }
        if (a instanceof Map<?, ?> x && b instanceof Map<?, ?> y) {
            if (x.size() != y.size()) return false;
            for (Map.Entry<?, ?> e : x.entrySet()) {
                if (!y.containsKey(e.getKey()) || !eq(e.getValue(), y.get(e.getKey()))) return false;
            }
            return true;
        }
        return a.equals(b);
    }

    /** Python's ordering ({@code <} and friends) of numbers, strings and sequences; others raise. */
    static int compare(Object a, Object b) {
        if (isNumber(a) && isNumber(b)) {
            int c = compareNumbers(a, b);
            return c == UNORDERED ? 0 : c;
        }
        if (a instanceof String x && b instanceof String y) return compareCodePoints(x, y);
        if (a instanceof List<?> x && b instanceof List<?> y) {
            for (int i = 0; i < Math.min(x.size(), y.size()); i++) {
                if (!eq(x.get(i), y.get(i))) return compare(x.get(i), y.get(i));
            }
            return Integer.compare(x.size(), y.size());
        }
        throw new IllegalArgumentException("'<' not supported between instances of '" + typeName(a) + "' and '"
                + typeName(b) + "'");
    }

    private static final int UNORDERED = 2;

    /**
     * Python's exact comparison of numbers: an int and a float compare by value, not by the int rounded to a float
     * ({@code 2**53 + 1 == 2.0**53} is false). -0.0 equals 0.0; NaN is {@link #UNORDERED} with everything.
     */
    private static int compareNumbers(Object a, Object b) {
        if (!(a instanceof Double) && !(b instanceof Double)) {
            if (a instanceof BigInteger || b instanceof BigInteger) return big(a).compareTo(big(b));
            return Long.compare(toLong(a), toLong(b));
        }
        if (a instanceof Double dx && b instanceof Double dy) {
            double x = dx, y = dy;  // primitives: == of two Doubles would compare the boxes
            return x < y ? -1 : x > y ? 1 : x == y ? 0 : UNORDERED;
        }
        double d = a instanceof Double x ? x : (Double) b;
        if (Double.isNaN(d)) return UNORDERED;
        int c = Double.isInfinite(d) ? (d > 0 ? 1 : -1) : new BigDecimal(d).compareTo(new BigDecimal(big(a instanceof Double ? b : a)));
        return a instanceof Double ? c : -c;
    }

    static int compareCodePoints(String x, String y) {
        int i = 0, j = 0;
        while (i < x.length() && j < y.length()) {
            int a = x.codePointAt(i), b = y.codePointAt(j);
            if (a != b) return Integer.compare(a, b);
            i += Character.charCount(a);
            j += Character.charCount(b);
        }
        return Integer.compare(x.length() - i, y.length() - j);
    }

    static boolean isNumber(Object v) {
        return v instanceof Long || v instanceof Double || v instanceof Boolean || v instanceof BigInteger;
    }

    /** An int (bool included, as it is one in Python), of any size. */
    static boolean isInt(Object v) {
        return v instanceof Long || v instanceof Boolean || v instanceof BigInteger;
    }

    /** The runtime value of a Python int: a Long where it fits, else the BigInteger. */
    static Object integer(BigInteger b) {
        return b.bitLength() < 64 ? (Object) b.longValue() : b;
    }

    static BigInteger big(Object v) {
        return v instanceof BigInteger b ? b : BigInteger.valueOf(toLong(v));
    }

    /** An int as an index or count; one beyond 64 bits is Python's OverflowError. */
    static long toLong(Object v) {
        if (v instanceof Boolean b) return b ? 1 : 0;
        if (v instanceof BigInteger) throw new IllegalArgumentException("cannot fit 'int' into an index-sized integer");
        return ((Number) v).longValue();
    }

    static double toDouble(Object v) {
        if (v instanceof Boolean b) return b ? 1 : 0;
        if (v instanceof BigInteger b) {
            double d = b.doubleValue();  // correctly rounded, as Python's float(int)
            if (Double.isInfinite(d)) throw new IllegalArgumentException("int too large to convert to float");
            return d;
        }
        return ((Number) v).doubleValue();
    }

    /** Python's {@code -x} of an int: {@code -(-2**63)} is 2**63. */
    static Object negate(Object v) {
        if (v instanceof BigInteger || toLong(v) == Long.MIN_VALUE) return integer(big(v).negate());
        return -toLong(v);
    }

    /**
     * Python's {@code + - * // % **} of two ints: exact, in a Long while the result fits, else a BigInteger. A power
     * over a million bits is refused (Python computes it, but cannot print it: str() stops at 4300 digits).
     */
    static Object intArithmetic(String op, Object x, Object y) {
        if (!(x instanceof BigInteger) && !(y instanceof BigInteger)) {
            long a = toLong(x), b = toLong(y);
            try {
                switch (op) {
                    case "+" -> { return Math.addExact(a, b); }
                    case "-" -> { return Math.subtractExact(a, b); }
                    case "*" -> { return Math.multiplyExact(a, b); }
                    case "//" -> { if (a != Long.MIN_VALUE || b != -1) return floorDiv(a, b); }
                    case "%" -> { return floorMod(a, b); }
                    default -> { }
                }
            } catch (ArithmeticException overflow) {
                // on in BigInteger
            }
        }
        BigInteger a = big(x), b = big(y);
        return integer(switch (op) {
            case "+" -> a.add(b);
            case "-" -> a.subtract(b);
            case "*" -> a.multiply(b);
            case "//", "%" -> {
                if (b.signum() == 0) throw new IllegalArgumentException("integer division or modulo by zero");
                BigInteger[] qr = a.divideAndRemainder(b);
                if (qr[1].signum() != 0 && qr[1].signum() != b.signum()) {  // round toward negative infinity
                    qr[0] = qr[0].subtract(BigInteger.ONE);
                    qr[1] = qr[1].add(b);
                }
                yield op.equals("//") ? qr[0] : qr[1];
            }
            case "**" -> {
                // 0, 1 and -1 to any (non-negative) power: no need to look at its size
                if (a.abs().compareTo(BigInteger.ONE) <= 0) yield b.signum() == 0 || (a.signum() < 0 && !b.testBit(0)) ? BigInteger.ONE : a;
                if (b.bitLength() > 31 || (long) a.bitLength() * b.longValue() > 1_000_000) {
                    throw new IllegalArgumentException("an int of over a million bits is not supported");
                }
                yield a.pow(b.intValue());
            }
            default -> throw new IllegalStateException(op);
        });
    }

    /** Python's {@code int / int}: the correctly rounded quotient, also of ints beyond 2**53. */
    static double trueDivide(Object x, Object y) {
        BigInteger a = big(x), b = big(y);
        if (b.signum() == 0) throw new IllegalArgumentException("division by zero");
        if (a.bitLength() <= 53 && b.bitLength() <= 53) return a.doubleValue() / b.doubleValue();
        double d = new BigDecimal(a).divide(new BigDecimal(b), MathContext.DECIMAL128).doubleValue();
        if (Double.isInfinite(d)) throw new IllegalArgumentException("integer division result too large for a float");
        return d;
    }

    /** Python's {@code str.isspace()} for one character: Java's whitespace plus the no-break spaces and NEL. */
    static boolean isSpace(int c) {
        return Character.isWhitespace(c) || c == 0x85 || c == 0xa0 || c == 0x2007 || c == 0x202f;
    }

    /** Python's {@code str.strip(chars)}: {@code chars} null strips whitespace. */
    static String strip(String s, String chars, boolean left, boolean right) {
        int start = 0, end = s.length();
        while (left && start < end && stripped(s.codePointAt(start), chars)) start += Character.charCount(s.codePointAt(start));
        while (right && end > start && stripped(s.codePointBefore(end), chars)) end -= Character.charCount(s.codePointBefore(end));
        return s.substring(start, end);
    }

    private static boolean stripped(int c, String chars) {
        return chars == null ? isSpace(c) : chars.codePoints().anyMatch(x -> x == c);
    }

    /** The elements a Python {@code for} loop visits: a list's items, a dict's keys, a string's characters. */
    static List<Object> iterate(Object v) {
        return switch (v) {
            case Undefined u -> new ArrayList<>();
            case Generator g -> g.consume();
            case DictView d -> d.items();
            case List<?> l -> new ArrayList<>(l);
            case Map<?, ?> m -> new ArrayList<>(m.keySet());
            case String s -> {
                List<Object> out = new ArrayList<>();
                s.codePoints().forEach(c -> out.add(Character.toString(c)));
                yield out;
            }
            case null, default -> throw new IllegalArgumentException("'" + typeName(v) + "' object is not iterable");
        };
    }

    static int length(Object v) {
        return switch (v) {
            case String s -> s.codePointCount(0, s.length());
            case List<?> l -> l.size();
            case Map<?, ?> m -> m.size();
            case Undefined u -> 0;
            case DictView d -> d.map().size();
            case null, default -> throw new IllegalArgumentException("object of type '" + typeName(v) + "' has no len()");
        };
    }

    /**
     * Python's {@code json.dumps(v, ensure_ascii=False, indent=indent, separators=None, sort_keys=sortKeys)}, the
     * {@code tojson} filter transformers installs.
     */
    static String json(Object v, String indent, boolean sortKeys) {
        StringBuilder sb = new StringBuilder();
        json(sb, v, indent, sortKeys, 0);
        return sb.toString();
    }

    private static void json(StringBuilder sb, Object v, String indent, boolean sortKeys, int depth) {
        String itemSep = indent == null ? ", " : ",";
        switch (v) {
            case null -> sb.append("null");
            case Boolean b -> sb.append(b ? "true" : "false");
            case Long l -> sb.append(l);
            case BigInteger b -> sb.append(bigRepr(b));
            case Double d -> sb.append(Double.isNaN(d) ? "NaN" : Double.isInfinite(d) ? (d > 0 ? "Infinity" : "-Infinity") : floatRepr(d));
            case String s -> jsonString(sb, s);
            case List<?> l -> {
                if (l.isEmpty()) {
                    sb.append("[]");
                    return;
                }
                sb.append('[');
                for (int i = 0; i < l.size(); i++) {
                    if (i > 0) sb.append(itemSep);
                    newline(sb, indent, depth + 1);
                    json(sb, l.get(i), indent, sortKeys, depth + 1);
                }
                newline(sb, indent, depth);
                sb.append(']');
            }
            case Map<?, ?> m -> {
                if (m.isEmpty()) {
                    sb.append("{}");
                    return;
                }
                List<Object> keys = new ArrayList<>(m.keySet());
                if (sortKeys) keys.sort(Py::compare);
                sb.append('{');
                for (int i = 0; i < keys.size(); i++) {
                    if (i > 0) sb.append(itemSep);
                    newline(sb, indent, depth + 1);
                    jsonString(sb, String.valueOf(keys.get(i)));
                    sb.append(": ");
                    json(sb, m.get(keys.get(i)), indent, sortKeys, depth + 1);
                }
                newline(sb, indent, depth);
                sb.append('}');
            }
            default -> throw new IllegalArgumentException("Object of type " + typeName(v) + " is not JSON serializable");
        }
    }

    private static void newline(StringBuilder sb, String indent, int depth) {
        if (indent != null) sb.append('\n').append(indent.repeat(depth));
    }

    private static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        sb.append('"');
    }

    /** Python's {@code int.__floordiv__} and {@code __mod__}: rounding toward negative infinity. */
    static long floorDiv(long a, long b) {
        if (b == 0) throw new IllegalArgumentException("integer division or modulo by zero");
        return Math.floorDiv(a, b);
    }

    static long floorMod(long a, long b) {
        if (b == 0) throw new IllegalArgumentException("integer division or modulo by zero");
        return Math.floorMod(a, b);
    }

    /** Python's float {@code %} (CPython's float_rem): the sign of the divisor, and a zero result signed as it. */
    static double floatMod(double a, double b) {
        if (b == 0) throw new IllegalArgumentException("float modulo");
        double m = a % b;
        if (m != 0) return (b < 0) != (m < 0) ? m + b : m;
        return Math.copySign(0.0, b);
    }

    /** Python's float {@code //} (CPython's float_floor_div, from fmod): {@code 2.0 // 0.1} is 19.0, not 20.0. */
    static double floatFloorDiv(double a, double b) {
        if (b == 0) throw new IllegalArgumentException("float floor division by zero");
        double mod = a % b;
        double div = (a - mod) / b;
        if (mod != 0 && (b < 0) != (mod < 0)) div -= 1.0;
        if (div == 0) return Math.copySign(0.0, a / b);
        double floor = Math.floor(div);
        return div - floor > 0.5 ? floor + 1.0 : floor;
    }

    /** The code points of a string, for Python's indexing and slicing by character. */
    static int[] codePoints(String s) {
        return s.codePoints().toArray();
    }
}
