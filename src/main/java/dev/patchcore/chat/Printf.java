package dev.patchcore.chat;

import dev.patchcore.chat.Py.Tuple;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.List;
import java.util.Map;

/**
 * Python's printf-style {@code str % args}: the conversions s r a d i u o x X e E f F g G c and %, with a mapping key
 * {@code %(name)s}, the flags {@code # 0 - + space}, a width and a precision (either may be {@code *}). Floats are
 * rounded from their exact binary value, half to even, as C's printf does.
 */
final class Printf {
    private Printf() {}

    static String format(String fmt, Object args) {
        // Python takes a tuple as the arguments; anything it can subscript that is not a tuple or a str, as a mapping
        List<?> positional = args instanceof Tuple t ? t : List.of(args == null ? NONE : args);
        Map<?, ?> mapping = args instanceof Map<?, ?> m ? m : null;
        boolean mappingLike = mapping != null || (args instanceof List<?> && !(args instanceof Tuple));
        int next = 0;
        StringBuilder sb = new StringBuilder();
        int k = 0, n = fmt.length();
        while (k < n) {
            char c = fmt.charAt(k++);
            if (c != '%') {
                sb.append(c);
                continue;
            }
            if (k >= n) throw new IllegalArgumentException("incomplete format");
            Object value = null;
            boolean haveValue = false;
            if (fmt.charAt(k) == '(') {
                if (mapping == null) throw new IllegalArgumentException("format requires a mapping");
                int depth = 1, start = ++k;
                while (k < n && depth > 0) {
                    if (fmt.charAt(k) == '(') depth++;
                    else if (fmt.charAt(k) == ')') depth--;
                    k++;
                }
                if (depth > 0) throw new IllegalArgumentException("incomplete format key");
                String key = fmt.substring(start, k - 1);
                if (!mapping.containsKey(key)) throw new IllegalArgumentException("KeyError: " + Py.repr(key));
                value = mapping.get(key);
                haveValue = true;
            }
            boolean left = false, zero = false, plus = false, space = false, alt = false;
            for (; k < n && "-0+ #".indexOf(fmt.charAt(k)) >= 0; k++) {
                switch (fmt.charAt(k)) {
                    case '-' -> left = true;
                    case '0' -> zero = true;
                    case '+' -> plus = true;
                    case ' ' -> space = true;
                    default -> alt = true;
                }
            }
            int width = -1, precision = -1;
            if (k < n && fmt.charAt(k) == '*') {
                k++;
                if (next >= positional.size() || haveValue) throw new IllegalArgumentException("not enough arguments for format string");
                long w = star(positional.get(next++));
                if (w < 0) {
                    left = true;
                    w = -w;
                }
                width = (int) w;
            } else {
                int start = k;
                while (k < n && Character.isDigit(fmt.charAt(k))) k++;
                if (k > start) width = Integer.parseInt(fmt.substring(start, k));
            }
            if (k < n && fmt.charAt(k) == '.') {
                k++;
                if (k < n && fmt.charAt(k) == '*') {
                    k++;
                    if (next >= positional.size() || haveValue) throw new IllegalArgumentException("not enough arguments for format string");
                    precision = (int) Math.max(0, star(positional.get(next++)));
                } else {
                    int start = k;
                    while (k < n && Character.isDigit(fmt.charAt(k))) k++;
                    precision = k > start ? Integer.parseInt(fmt.substring(start, k)) : 0;
                }
            }
            while (k < n && "hlL".indexOf(fmt.charAt(k)) >= 0) k++;
            if (k >= n) throw new IllegalArgumentException("incomplete format");
            char type = fmt.charAt(k++);
            if (type == '%') {
                sb.append('%');
                continue;
            }
            if (!haveValue) {
                if (next >= positional.size()) throw new IllegalArgumentException("not enough arguments for format string");
                value = positional.get(next++);
            }
            if (value == NONE) value = null;
            String body;
            String sign = "";
            boolean numeric = true;
            switch (type) {
                case 's' -> {
                    body = Py.str(value);
                    numeric = false;
                }
                case 'r', 'a' -> {
                    body = type == 'r' ? Py.repr(value) : ascii(Py.repr(value));
                    numeric = false;
                }
                case 'd', 'i', 'u' -> {
                    BigInteger i = toInteger(value, type, true);
                    sign = i.signum() < 0 ? "-" : plus ? "+" : space ? " " : "";
                    body = i.abs().toString();
                }
                case 'o', 'x', 'X' -> {
                    BigInteger i = toInteger(value, type, false);
                    sign = i.signum() < 0 ? "-" : plus ? "+" : space ? " " : "";
                    body = i.abs().toString(type == 'o' ? 8 : 16);
                    if (type == 'X') body = body.toUpperCase();
                    if (alt) sign += type == 'o' ? "0o" : type == 'x' ? "0x" : "0X";
                }
                case 'e', 'E', 'f', 'F', 'g', 'G' -> {
                    double d = toFloat(value, type);
                    sign = (d < 0 || (d == 0 && 1 / d < 0)) ? "-" : plus ? "+" : space ? " " : "";
                    body = formatFloat(Math.abs(d), type, precision < 0 ? 6 : precision, alt);
                }
                case 'c' -> {
                    if (value instanceof String s && s.codePointCount(0, s.length()) == 1) body = s;
                    else if (Py.isInt(value)) {
                        BigInteger i = Py.big(value);
                        if (i.signum() < 0 || i.compareTo(BigInteger.valueOf(0x10FFFF)) > 0) {
                            throw new IllegalArgumentException("%c arg not in range(0x110000)");
                        }
                        body = Character.toString(i.intValue());
                    } else {
                        throw new IllegalArgumentException("%c requires an int or a unicode character, not " + Py.typeName(value));
                    }
                    numeric = false;
                }
                default -> throw new IllegalArgumentException("unsupported format character '" + type + "' (0x"
                        + Integer.toHexString(type) + ") at index " + (k - 1));
            }
            if (!numeric && precision >= 0 && type != 'c') {
                int[] cps = Py.codePoints(body);
                if (precision < cps.length) body = new String(cps, 0, precision);
            }
            if (numeric && precision >= 0 && "diuoxX".indexOf(type) >= 0 && body.length() < precision) {
                body = "0".repeat(precision - body.length()) + body;
            }
            int len = Py.length(sign) + Py.length(body);
            if (width > len) {
                if (left) body = body + " ".repeat(width - len);
                else if (zero && numeric) body = "0".repeat(width - len) + body;
                else sign = " ".repeat(width - len) + sign;
            }
            sb.append(sign).append(body);
        }
        if (next < positional.size() && !mappingLike) throw new IllegalArgumentException("not all arguments converted during string formatting");
        return sb.toString();
    }

    /** Python's {@code ascii()}: the repr with what is not ASCII escaped. */
    private static String ascii(String repr) {
        StringBuilder sb = new StringBuilder();
        repr.codePoints().forEach(c -> {
            if (c < 0x80) sb.appendCodePoint(c);
            else if (c <= 0xff) sb.append(String.format("\\x%02x", c));
            else if (c <= 0xffff) sb.append(String.format("\\u%04x", c));
            else sb.append(String.format("\\U%08x", c));
        });
        return sb.toString();
    }

    /** Stands for None in {@code List.of}, which takes no nulls. */
    private static final Object NONE = new Object();

    private static long star(Object v) {
        if (!Py.isInt(v)) throw new IllegalArgumentException("* wants int");
        return Py.toLong(v);
    }

    private static BigInteger toInteger(Object v, char type, boolean floats) {
        if (Py.isInt(v)) return Py.big(v);
        if (floats && v instanceof Double d) {
            if (Double.isNaN(d)) throw new IllegalArgumentException("cannot convert float NaN to integer");
            if (Double.isInfinite(d)) throw new IllegalArgumentException("cannot convert float infinity to integer");
            return new BigDecimal(d).toBigInteger();
        }
        throw new IllegalArgumentException("%" + type + " format: " + (floats ? "a real number" : "an integer")
                + " is required, not " + Py.typeName(v));
    }

    private static double toFloat(Object v, char type) {
        if (Py.isNumber(v)) return Py.toDouble(v);
        throw new IllegalArgumentException("must be real number, not " + Py.typeName(v));
    }

    /** C's %e, %f and %g of a non-negative double. */
    static String formatFloat(double d, char type, int precision, boolean alt) {
        boolean upper = Character.isUpperCase(type);
        if (Double.isNaN(d)) return upper ? "NAN" : "nan";
        if (Double.isInfinite(d)) return upper ? "INF" : "inf";
        BigDecimal x = new BigDecimal(d);
        String out;
        switch (Character.toLowerCase(type)) {
            case 'f' -> {
                out = x.setScale(precision, RoundingMode.HALF_EVEN).toPlainString();
                if (alt && precision == 0) out += ".";
            }
            case 'e' -> out = exponent(x, precision, alt);
            default -> {  // g: %e or %f by the exponent after rounding to precision significant digits
                int p = precision == 0 ? 1 : precision;
                int exp = d == 0 ? 0 : x.round(new MathContext(p, RoundingMode.HALF_EVEN)).precision()
                        - x.round(new MathContext(p, RoundingMode.HALF_EVEN)).scale() - 1;
                if (exp >= -4 && exp < p) {
                    out = x.setScale(p - 1 - exp, RoundingMode.HALF_EVEN).toPlainString();
                    if (!alt) out = stripZeros(out);
                    else if (!out.contains(".")) out += ".";
                } else {
                    out = exponent(x, p - 1, alt);
                    if (!alt) {
                        int e = out.indexOf('e');
                        out = stripZeros(out.substring(0, e)) + out.substring(e);
                    }
                }
            }
        }
        return upper ? out.toUpperCase() : out;
    }

    private static String exponent(BigDecimal x, int precision, boolean alt) {
        if (x.signum() == 0) return "0" + (precision > 0 ? "." + "0".repeat(precision) : alt ? "." : "") + "e+00";
        BigDecimal r = x.round(new MathContext(precision + 1, RoundingMode.HALF_EVEN));
        int exp = r.precision() - r.scale() - 1;
        String digits = r.unscaledValue().toString();
        digits = digits + "0".repeat(Math.max(0, precision + 1 - digits.length()));
        String mant = digits.charAt(0) + (precision > 0 ? "." + digits.substring(1, precision + 1) : alt ? "." : "");
        return mant + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
    }

    private static String stripZeros(String s) {
        if (!s.contains(".")) return s;
        s = s.replaceAll("0+$", "");
        return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
    }

    /**
     * Python's {@code format(value, spec)}, as {@code str.format} applies it: {@code [[fill]align][sign][#][0][width]
     * [,|_][.precision][type]} for str, int and float; other values take only an empty spec.
     */
    static String formatSpec(Object value, String spec) {
        if (spec.isEmpty()) return Py.str(value);
        int k = 0, n = spec.length();
        char fill = ' ', align = 0;
        if (n >= 2 && "<>=^".indexOf(spec.charAt(1)) >= 0) {
            fill = spec.charAt(0);
            align = spec.charAt(1);
            k = 2;
        } else if ("<>=^".indexOf(spec.charAt(0)) >= 0) {
            align = spec.charAt(0);
            k = 1;
        }
        char sign = 0;
        if (k < n && "+- ".indexOf(spec.charAt(k)) >= 0) sign = spec.charAt(k++);
        boolean alt = false, zero = false;
        if (k < n && spec.charAt(k) == '#') {
            alt = true;
            k++;
        }
        if (k < n && spec.charAt(k) == '0') {
            zero = true;
            k++;
        }
        int width = 0, start = k;
        while (k < n && Character.isDigit(spec.charAt(k))) k++;
        if (k > start) width = Integer.parseInt(spec.substring(start, k));
        char grouping = 0;
        if (k < n && (spec.charAt(k) == ',' || spec.charAt(k) == '_')) grouping = spec.charAt(k++);
        int precision = -1;
        if (k < n && spec.charAt(k) == '.') {
            start = ++k;
            while (k < n && Character.isDigit(spec.charAt(k))) k++;
            if (k == start) throw new IllegalArgumentException("Format specifier missing precision");
            precision = Integer.parseInt(spec.substring(start, k));
        }
        char type = 0;
        if (k < n) type = spec.charAt(k++);
        if (k < n) throw new IllegalArgumentException("Invalid format specifier '" + spec + "' for object of type '" + Py.typeName(value) + "'");
        if (zero && align == 0) {
            fill = '0';
            align = value instanceof String ? '<' : '=';
        }
        String prefix = "", body;
        if (value instanceof String str) {
            if (type != 0 && type != 's') throw new IllegalArgumentException("Unknown format code '" + type + "' for object of type 'str'");
            if (sign != 0) throw new IllegalArgumentException("Sign not allowed in string format specifier");
            if (alt) throw new IllegalArgumentException("Alternate form (#) not allowed in string format specifier");
            if (align == '=') throw new IllegalArgumentException("'=' alignment not allowed in string format specifier");
            if (grouping != 0) throw new IllegalArgumentException("Cannot specify '" + grouping + "' with 's'.");
            int[] cps = Py.codePoints(str);
            body = precision >= 0 && precision < cps.length ? new String(cps, 0, precision) : str;
            if (align == 0) align = '<';
        } else if (Py.isInt(value) && (type == 0 || "dnbcoxX".indexOf(type) >= 0)) {
            if (precision >= 0) throw new IllegalArgumentException("Precision not allowed in integer format specifier");
            BigInteger i = Py.big(value);
            if (type == 'c') {
                if (sign != 0) throw new IllegalArgumentException("Sign not allowed with integer format specifier 'c'");
                body = Character.toString(i.intValueExact());
            } else {
                int radix = switch (type) {
                    case 'b' -> 2;
                    case 'o' -> 8;
                    case 'x', 'X' -> 16;
                    default -> 10;
                };
                body = group(i.abs().toString(radix), grouping, radix == 10 ? 3 : 4);
                if (type == 'X') body = body.toUpperCase();
                if (alt && radix != 10) prefix = "0" + (type == 'X' ? "X" : String.valueOf(type));
                prefix = signOf(i.signum() < 0, sign) + prefix;
            }
        } else if (Py.isNumber(value) && (type == 0 || "eEfFgGn%".indexOf(type) >= 0)) {
            double d = Py.toDouble(value);
            boolean negative = d < 0 || (d == 0 && 1 / d < 0);
            double a = Math.abs(d);
            if (type == '%') {
                body = Double.isFinite(a) ? formatFloat(a * 100, 'f', precision < 0 ? 6 : precision, alt) + "%" : formatFloat(a, 'f', 0, false) + "%";
            } else if (type == 0 || type == 'n') {
                if (precision < 0 && type == 0) {
                    body = value instanceof Double ? Py.floatRepr(a) : Py.big(value).abs().toString();
                } else {
                    // like g, but fixed notation keeps a digit after the point and switches to e from exp >= p - 1
                    int p = precision < 0 ? 6 : Math.max(precision, 1);
                    body = formatFloat(a, 'g', p, alt);
                    if (type == 0 && Double.isFinite(a) && !body.contains("e") && !body.contains(".")) {
                        body = a == 0 ? body + ".0" : exponentOrPoint(a, p, body);
                    }
                }
            } else {
                body = formatFloat(a, type, precision < 0 ? 6 : precision, alt);
            }
            int point = body.indexOf('.');
            int digitsEnd = point >= 0 ? point : body.indexOf('e') >= 0 ? body.indexOf('e') : body.endsWith("%") ? body.length() - 1 : body.length();
            if (grouping != 0 && Double.isFinite(a)) body = group(body.substring(0, digitsEnd), grouping, 3) + body.substring(digitsEnd);
            prefix = signOf(negative, sign);
        } else {
            if (Py.isNumber(value) || value instanceof String) {
                throw new IllegalArgumentException("Unknown format code '" + type + "' for object of type '" + Py.typeName(value) + "'");
            }
            throw new IllegalArgumentException("unsupported format string passed to " + Py.typeName(value) + ".__format__");
        }
        if (align == 0) align = '>';
        int len = Py.length(prefix) + Py.length(body);
        if (width <= len) return prefix + body;
        if (grouping != 0 && fill == '0' && align == '=') throw new IllegalArgumentException("zero padding with a thousands separator is not supported");
        String f = String.valueOf(fill);
        int pad = width - len;
        return switch (align) {
            case '<' -> prefix + body + f.repeat(pad);
            case '^' -> f.repeat(pad / 2) + prefix + body + f.repeat(pad - pad / 2);
            case '=' -> prefix + f.repeat(pad) + body;
            default -> f.repeat(pad) + prefix + body;
        };
    }

    /** The float presentation without a type at a precision: g's fixed form, switched to e where the exponent is p - 1. */
    private static String exponentOrPoint(double a, int p, String g) {
        BigDecimal r = new BigDecimal(a).round(new MathContext(p, RoundingMode.HALF_EVEN));
        int exp = r.precision() - r.scale() - 1;
        if (exp >= p - 1) {
            String e = exponent(new BigDecimal(a), p - 1, false);
            int at = e.indexOf('e');
            return stripZeros(e.substring(0, at)) + e.substring(at);
        }
        return g + ".0";
    }

    private static String signOf(boolean negative, char sign) {
        return negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    }

    private static String group(String digits, char sep, int every) {
        if (sep == 0 || digits.length() <= every) return digits;
        StringBuilder sb = new StringBuilder();
        int first = digits.length() % every == 0 ? every : digits.length() % every;
        sb.append(digits, 0, first);
        for (int k = first; k < digits.length(); k += every) sb.append(sep).append(digits, k, k + every);
        return sb.toString();
    }
}
