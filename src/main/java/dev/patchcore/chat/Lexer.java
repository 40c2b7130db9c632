package dev.patchcore.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits a template into text and tag tokens as Jinja2's lexer does with {@code trim_blocks=True} and
 * {@code lstrip_blocks=True} (transformers' environment): newlines normalized to {@code \n}, one trailing newline of
 * the source dropped, {@code -} stripping all whitespace on its side of a tag, {@code +} keeping it, the first newline
 * after a block or comment tag removed, and the whitespace before a block or comment tag that starts its line removed. Comments produce no tokens.
 */
final class Lexer {
    enum Type { TEXT, VAR_BEGIN, VAR_END, BLOCK_BEGIN, BLOCK_END, NAME, STRING, INT, FLOAT, OP, EOF }

    /** A token; {@code pos} is its offset in {@link #source}, for messages. */
    record Token(Type type, String value, int pos) {
        boolean is(Type t, String v) {
            return type == t && value.equals(v);
        }

        boolean isName(String v) {
            return is(Type.NAME, v);
        }

        boolean isOp(String v) {
            return is(Type.OP, v);
        }
    }

    private static final String[] OPERATORS = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
        "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};

    final String source;
    private final List<Token> tokens = new ArrayList<>();
    private int pos;

    private Lexer(String source) {
        this.source = source;
    }

    /** The source as Jinja2 sees it: newlines normalized, one trailing newline dropped ({@code keep_trailing_newline=False}). */
    static String normalize(String source) {
        String s = source.replace("\r\n", "\n").replace('\r', '\n');
        return s.endsWith("\n") ? s.substring(0, s.length() - 1) : s;
    }

    static List<Token> tokenize(String normalizedSource) {
        Lexer lexer = new Lexer(normalizedSource);
        lexer.run();
        return lexer.tokens;
    }

    /** "line L, column C" of an offset. */
    static String where(String source, int offset) {
        int line = 1, lineStart = 0;
        for (int i = 0; i < Math.min(offset, source.length()); i++) {
            if (source.charAt(i) == '\n') {
                line++;
                lineStart = i + 1;
            }
        }
        return "line " + line + ", column " + (offset - lineStart + 1);
    }

    private IllegalArgumentException error(int at, String message) {
        return new IllegalArgumentException("chat template " + where(source, at) + ": " + message);
    }

    private void run() {
        boolean lineStarting = true;
        int n = source.length();
        while (pos < n) {
            int tag = nextTag(pos);
            String text = source.substring(pos, tag < 0 ? n : tag);
            if (tag < 0) {
                emitText(text, pos);
                break;
            }
            char kind = source.charAt(tag + 1);
            char sign = tag + 2 < n ? source.charAt(tag + 2) : 0;
            if (sign == '-') {
                text = Py.strip(text, null, false, true);
            } else if (sign != '+' && kind != '{') {
                int lineStart = text.lastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && lineStart < text.length() && onlyBlanks(text, lineStart)) {
                    text = text.substring(0, lineStart);
                }
            }
            emitText(text, pos);
            pos = tag + 2 + (sign == '-' || sign == '+' ? 1 : 0);
            int end = switch (kind) {
                case '#' -> comment(tag);
                case '%' -> tagBody(tag, Type.BLOCK_BEGIN, Type.BLOCK_END, '%');
                default -> tagBody(tag, Type.VAR_BEGIN, Type.VAR_END, '}');
            };
            lineStarting = end > 0 && source.charAt(end - 1) == '\n';
        }
        tokens.add(new Token(Type.EOF, "", n));
    }

    private static boolean onlyBlanks(String s, int from) {
        // Jinja2 tests the rest of the line with Python's \s+, which takes any Unicode whitespace
        for (int i = from; i < s.length(); i++) if (!Py.isSpace(s.charAt(i))) return false;
        return true;
    }

    private int nextTag(int from) {
        int i = source.indexOf('{', from);
        while (i >= 0 && i + 1 < source.length()) {
            char c = source.charAt(i + 1);
            if (c == '{' || c == '%' || c == '#') return i;
            i = source.indexOf('{', i + 1);
        }
        return -1;
    }

    private void emitText(String text, int at) {
        if (!text.isEmpty()) tokens.add(new Token(Type.TEXT, text, at));
    }

    /** Skips a comment; returns the offset after it (and after the whitespace its end strips). */
    private int comment(int start) {
        int bodyStart = pos;
        int end = source.indexOf("#}", pos);
        if (end < 0) throw error(start, "unclosed comment {# ... #}");
        char before = end > bodyStart ? source.charAt(end - 1) : 0;
        pos = end + 2;
        afterEnd(before == '-', before == '+', true);
        return pos;
    }

    /** Whitespace control after a closing tag: {@code -} eats all whitespace, else trim_blocks eats one newline. */
    private void afterEnd(boolean minus, boolean plus, boolean trimNewline) {
        if (minus) {
            while (pos < source.length() && Py.isSpace(source.charAt(pos))) pos++;
        } else if (!plus && trimNewline && pos < source.length() && source.charAt(pos) == '\n') {
            pos++;
        }
    }

    private int tagBody(int start, Type begin, Type endType, char closer) {
        tokens.add(new Token(begin, "", start));
        int depth = 0;
        int n = source.length();
        while (true) {
            if (pos >= n) throw error(start, "unclosed " + (begin == Type.VAR_BEGIN ? "{{ ... }}" : "{% ... %}"));
            char c = source.charAt(pos);
            if (depth == 0) {
                // the closing tag, possibly with - or + before it (Jinja2 tries the end rule first)
                if ((c == '-' || c == '+') && source.startsWith(closer + "}", pos + 1) && !(c == '+' && closer == '}')) {
                    pos += 3;
                    tokens.add(new Token(endType, "", pos - 3));
                    afterEnd(c == '-', c == '+', closer == '%');
                    return pos;
                }
                if (c == closer && pos + 1 < n && source.charAt(pos + 1) == '}') {
                    pos += 2;
                    tokens.add(new Token(endType, "", pos - 2));
                    afterEnd(false, false, closer == '%');
                    return pos;
                }
            }
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                pos++;
            } else if (c == '\'' || c == '"') {
                string(c);
            } else if (Character.isDigit(c)) {
                number();
            } else if (Character.isLetter(c) || c == '_') {
                int s = pos;
                while (pos < n && (Character.isLetterOrDigit(source.charAt(pos)) || source.charAt(pos) == '_')) pos++;
                tokens.add(new Token(Type.NAME, source.substring(s, pos), s));
            } else {
                String op = null;
                for (String o : OPERATORS) {
                    if (source.startsWith(o, pos)) {
                        op = o;
                        break;
                    }
                }
                if (op == null) throw error(pos, "unexpected character '" + c + "'");
                if (op.equals("(") || op.equals("[") || op.equals("{")) depth++;
                if (op.equals(")") || op.equals("]") || op.equals("}")) {
                    if (depth == 0) throw error(pos, "unexpected '" + op + "'");
                    depth--;
                }
                tokens.add(new Token(Type.OP, op, pos));
                pos += op.length();
            }
        }
    }

    /** A string literal with Python's escapes (Jinja2 decodes them with unicode-escape). */
    private void string(char quote) {
        int start = pos++;
        StringBuilder sb = new StringBuilder();
        int n = source.length();
        while (true) {
            if (pos >= n) throw error(start, "unclosed string literal");
            char c = source.charAt(pos++);
            if (c == quote) break;
            if (c != '\\') {
                sb.append(c);
                continue;
            }
            if (pos >= n) throw error(start, "unclosed string literal");
            char e = source.charAt(pos++);
            switch (e) {
                case '\n' -> { }
                case '\\', '\'', '"' -> sb.append(e);
                case 'n' -> sb.append('\n');
                case 't' -> sb.append('\t');
                case 'r' -> sb.append('\r');
                case 'a' -> sb.append('\u0007');
                case 'b' -> sb.append('\b');
                case 'f' -> sb.append('\f');
                case 'v' -> sb.append('\u000b');
                case 'x' -> sb.appendCodePoint(hex(start, 2));
                case 'u' -> sb.appendCodePoint(hex(start, 4));
                case 'U' -> sb.appendCodePoint(hex(start, 8));
                case 'N' -> {  // \N{BULLET}: a character by its Unicode name
                    int close = source.indexOf('}', pos);
                    if (pos >= n || source.charAt(pos) != '{' || close < 0) throw error(start, "malformed \\N character escape");
                    String name = source.substring(pos + 1, close);
                    try {
                        sb.appendCodePoint(Character.codePointOf(name));
                    } catch (IllegalArgumentException x) {
                        throw error(start, "unknown Unicode character name '" + name + "'");
                    }
                    pos = close + 1;
                }
                case '0', '1', '2', '3', '4', '5', '6', '7' -> {
                    int v = e - '0';
                    for (int k = 0; k < 2 && pos < n && source.charAt(pos) >= '0' && source.charAt(pos) <= '7'; k++) {
                        v = v * 8 + source.charAt(pos++) - '0';
                    }
                    sb.appendCodePoint(v);
                }
                default -> sb.append('\\').append(e);
            }
        }
        tokens.add(new Token(Type.STRING, sb.toString(), start));
    }

    private int hex(int start, int digits) {
        if (pos + digits > source.length()) throw error(start, "truncated \\x, \\u or \\U escape");
        try {
            int v = Integer.parseInt(source.substring(pos, pos + digits), 16);
            pos += digits;
            return v;
        } catch (NumberFormatException e) {
            throw error(start, "malformed \\x, \\u or \\U escape");
        }
    }

    private void number() {
        int start = pos;
        int n = source.length();
        digits();
        boolean isFloat = false;
        if (pos + 1 < n && source.charAt(pos) == '.' && Character.isDigit(source.charAt(pos + 1))
                && !(start > 0 && source.charAt(start - 1) == '.')) {
            pos++;
            digits();
            isFloat = true;
        }
        if (pos < n && (source.charAt(pos) == 'e' || source.charAt(pos) == 'E')) {
            int save = pos++;
            if (pos < n && (source.charAt(pos) == '+' || source.charAt(pos) == '-')) pos++;
            if (pos < n && Character.isDigit(source.charAt(pos))) {
                digits();
                isFloat = true;
            } else {
                pos = save;
            }
        }
        String text = source.substring(start, pos).replace("_", "");
        tokens.add(new Token(isFloat ? Type.FLOAT : Type.INT, text, start));
    }

    private void digits() {
        while (pos < source.length() && (Character.isDigit(source.charAt(pos))
                || (source.charAt(pos) == '_' && pos + 1 < source.length() && Character.isDigit(source.charAt(pos + 1))))) {
            pos++;
        }
    }
}
