package dev.patchcore.chat;

import dev.patchcore.chat.Lexer.Token;
import dev.patchcore.chat.Lexer.Type;
import dev.patchcore.chat.Node.Expr;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Jinja2's grammar, the part chat templates use, with Jinja2's operator precedence: conditional expression, or, and,
 * not, comparisons (with in / not in), + -, ~, * / // %, **, unary - +, then primary with postfix access, calls,
 * filters and tests (which bind tighter than every binary operator).
 */
final class Parser {
    private static final Set<String> COMPARE = Set.of("==", "!=", "<", "<=", ">", ">=");

    private final String source;
    private final List<Token> tokens;
    private int i;

    private Parser(String source, List<Token> tokens) {
        this.source = source;
        this.tokens = tokens;
    }

    static List<Node> parse(String normalizedSource) {
        Parser p = new Parser(normalizedSource, Lexer.tokenize(normalizedSource));
        List<Node> body = p.body(Set.of());
        if (p.peek().type() != Type.EOF) {
            throw p.error(p.peek(), "unexpected '" + p.peek().value() + "'");
        }
        p.checkMarkup(body);
        return body;
    }

    private static final java.util.Set<String> MARKUP_FILTERS = java.util.Set.of("e", "escape", "safe");

    /**
     * Jinja2's escape and safe filters return Markup, which escapes what it is joined with ({@code (x|e) + '<'},
     * {@code map('e') | join('<')}), is not escaped twice, and prints its repr as {@code Markup('...')}. The package
     * has no Markup, so these filters are accepted only where the value is printed at once: as the last filter of a
     * {@code {{ }}} or of a {@code {% filter %}} block. Anywhere else they are refused.
     */
    private void checkMarkup(List<Node> nodes) {
        for (Node n : nodes) {
            switch (n) {
                case Node.Output o -> checkMarkup(o.expr(), true);
                case Node.If f -> {
                    for (Expr c : f.conditions()) checkMarkup(c, false);
                    for (List<Node> b : f.bodies()) checkMarkup(b);
                    checkMarkup(f.orElse());
                }
                case Node.For f -> {
                    checkMarkup(f.iterable(), false);
                    if (f.condition() != null) checkMarkup(f.condition(), false);
                    checkMarkup(f.body());
                    checkMarkup(f.orElse());
                }
                case Node.Set st -> checkMarkup(st.value(), false);
                case Node.SetBlock sb -> {
                    for (Expr.Filter f : sb.filters()) checkMarkup(f, false);
                    checkMarkup(sb.body());
                }
                case Node.Macro m -> {
                    for (Expr d : m.defaults()) checkMarkup(d, false);
                    checkMarkup(m.body());
                }
                case Node.FilterBlock fb -> {
                    for (int k = 0; k < fb.filters().size(); k++) checkMarkup(fb.filters().get(k), k == fb.filters().size() - 1);
                    checkMarkup(fb.body());
                }
                case Node.Text t -> { }
                case Node.Break b -> { }
                case Node.Continue c -> { }
            }
        }
    }

    private void checkMarkup(Expr e, boolean printed) {
        switch (e) {
            case null -> { }
            case Expr.Filter f -> {
                if (MARKUP_FILTERS.contains(f.name()) && !printed) {
                    throw markupError(f.pos(), "filter '" + f.name() + "'");
                }
                if (f.name().equals("map") && !f.args().isEmpty() && f.args().getFirst() instanceof Expr.Const c
                        && c.value() instanceof String name && MARKUP_FILTERS.contains(name)) {
                    throw markupError(f.pos(), "map('" + name + "')");
                }
                checkMarkup(f.value(), false);
                for (Expr a : f.args()) checkMarkup(a, false);
                for (Expr a : f.kwValues()) checkMarkup(a, false);
            }
            case Expr.Const c -> { }
            case Expr.Name n -> { }
            case Expr.ListLit l -> l.items().forEach(x -> checkMarkup(x, false));
            case Expr.DictLit d -> {
                d.keys().forEach(x -> checkMarkup(x, false));
                d.values().forEach(x -> checkMarkup(x, false));
            }
            case Expr.GetAttr g -> checkMarkup(g.object(), false);
            case Expr.GetItem g -> {
                checkMarkup(g.object(), false);
                checkMarkup(g.index(), false);
            }
            case Expr.Slice sl -> {
                checkMarkup(sl.start(), false);
                checkMarkup(sl.stop(), false);
                checkMarkup(sl.step(), false);
            }
            case Expr.Call c -> {
                checkMarkup(c.function(), false);
                c.args().forEach(x -> checkMarkup(x, false));
                c.kwValues().forEach(x -> checkMarkup(x, false));
            }
            case Expr.Test t -> {
                checkMarkup(t.value(), false);
                t.args().forEach(x -> checkMarkup(x, false));
            }
            case Expr.Unary u -> checkMarkup(u.operand(), false);
            case Expr.Binary b -> {
                checkMarkup(b.left(), false);
                checkMarkup(b.right(), false);
            }
            case Expr.Compare c -> {
                checkMarkup(c.first(), false);
                c.rest().forEach(x -> checkMarkup(x, false));
            }
            case Expr.Cond c -> {
                checkMarkup(c.condition(), false);
                checkMarkup(c.then(), false);
                checkMarkup(c.orElse(), false);
            }
        }
    }

    private IllegalArgumentException markupError(int pos, String what) {
        return new IllegalArgumentException("chat template " + Lexer.where(source, pos) + ": " + what
                + " is supported only as the last filter of {{ }} or of a filter block (Jinja2's Markup is not modeled)");
    }

    private IllegalArgumentException error(Token at, String message) {
        return new IllegalArgumentException("chat template " + Lexer.where(source, at.pos()) + ": " + message);
    }

    private Token peek() {
        return tokens.get(i);
    }

    private Token peek(int ahead) {
        return tokens.get(Math.min(i + ahead, tokens.size() - 1));
    }

    private Token next() {
        return tokens.get(i++);
    }

    private Token expect(Type type, String value, String what) {
        Token t = peek();
        if (t.type() != type || (value != null && !t.value().equals(value))) {
            throw error(t, "expected " + what + ", found " + describe(t));
        }
        return next();
    }

    private static String describe(Token t) {
        return switch (t.type()) {
            case EOF -> "the end of the template";
            case BLOCK_END -> "'%}'";
            case VAR_END -> "'}}'";
            case TEXT -> "text";
            case STRING -> "a string";
            default -> "'" + t.value() + "'";
        };
    }

    private boolean skipOp(String op) {
        if (peek().isOp(op)) {
            i++;
            return true;
        }
        return false;
    }

    private boolean skipName(String name) {
        if (peek().isName(name)) {
            i++;
            return true;
        }
        return false;
    }

    /** Statements up to a block tag whose keyword is in {@code enders} (left unconsumed, after its {@code {%}). */
    private List<Node> body(Set<String> enders) {
        List<Node> nodes = new ArrayList<>();
        while (true) {
            Token t = peek();
            switch (t.type()) {
                case EOF -> {
                    if (!enders.isEmpty()) throw error(t, "missing {% " + String.join(" or ", enders.stream().sorted().toList()) + " %}");
                    return nodes;
                }
                case TEXT -> nodes.add(new Node.Text(next().value()));
                case VAR_BEGIN -> {
                    next();
                    nodes.add(new Node.Output(tuple(true)));
                    expect(Type.VAR_END, null, "'}}'");
                }
                case BLOCK_BEGIN -> {
                    Token keyword = peek(1);
                    if (keyword.type() == Type.NAME && enders.contains(keyword.value())) {
                        next();
                        return nodes;
                    }
                    next();
                    Node n = statement();
                    if (n != null) nodes.add(n);
                }
                default -> throw error(t, "unexpected " + describe(t));
            }
        }
    }

    private void endTag() {
        expect(Type.BLOCK_END, null, "'%}'");
    }

    private Node statement() {
        Token kw = expect(Type.NAME, null, "a statement keyword");
        switch (kw.value()) {
            case "if" -> {
                List<Expr> conds = new ArrayList<>();
                List<List<Node>> bodies = new ArrayList<>();
                conds.add(tuple(true));
                endTag();
                while (true) {
                    bodies.add(body(Set.of("elif", "else", "endif")));
                    String which = next().value();
                    if (which.equals("elif")) {
                        conds.add(tuple(true));
                        endTag();
                    } else if (which.equals("else")) {
                        endTag();
                        List<Node> orElse = body(Set.of("endif"));
                        next();
                        endTag();
                        return new Node.If(conds, bodies, orElse);
                    } else {
                        endTag();
                        return new Node.If(conds, bodies, List.of());
                    }
                }
            }
            case "for" -> {
                Node.Target target = target(false);
                expect(Type.NAME, "in", "'in'");
                Expr iterable = tuple(false);
                Expr condition = null;
                if (skipName("if")) condition = expression(true);
                if (peek().isName("recursive")) throw error(peek(), "recursive for loops are not supported");
                endTag();
                List<Node> body = body(Set.of("else", "endfor"));
                List<Node> orElse = List.of();
                if (next().value().equals("else")) {
                    endTag();
                    orElse = body(Set.of("endfor"));
                    next();
                }
                endTag();
                return new Node.For(target, iterable, condition, body, orElse, kw.pos());
            }
            case "set" -> {
                Node.Target target = target(true);
                if (skipOp("=")) {
                    Expr value = tuple(true);
                    endTag();
                    return new Node.Set(target, value, kw.pos());
                }
                if (!(target instanceof Node.Target.Name)) throw error(peek(), "a {% set %} block assigns one name");
                List<Expr.Filter> filters = new ArrayList<>();
                while (skipOp("|")) filters.add(filter(null));
                endTag();
                List<Node> body = body(Set.of("endset"));
                next();
                endTag();
                return new Node.SetBlock(target, filters, body, kw.pos());
            }
            case "macro" -> {
                String name = expect(Type.NAME, null, "a macro name").value();
                expect(Type.OP, "(", "'('");
                List<String> params = new ArrayList<>();
                List<Expr> defaults = new ArrayList<>();
                while (!skipOp(")")) {
                    if (!params.isEmpty()) expect(Type.OP, ",", "',' or ')'");
                    if (skipOp(")")) break;
                    params.add(expect(Type.NAME, null, "a parameter name").value());
                    if (skipOp("=")) {
                        defaults.add(expression(true));
                    } else if (!defaults.isEmpty()) {
                        throw error(peek(), "a parameter without a default follows one with a default");
                    }
                }
                endTag();
                List<Node> body = body(Set.of("endmacro"));
                next();
                if (peek().type() == Type.NAME) next();
                endTag();
                // Jinja2 lets a macro take extra arguments when its body reads varargs or kwargs
                return new Node.Macro(name, params, defaults, body, reads(body, "varargs"), reads(body, "kwargs"));
            }
            case "filter" -> {
                List<Expr.Filter> filters = new ArrayList<>();
                filters.add(filter(null));
                while (skipOp("|")) filters.add(filter(null));
                endTag();
                List<Node> body = body(Set.of("endfilter"));
                next();
                endTag();
                return new Node.FilterBlock(filters, body);
            }
            case "break", "continue" -> {
                endTag();
                return kw.value().equals("break") ? new Node.Break(kw.pos()) : new Node.Continue(kw.pos());
            }
            case "generation" -> {
                // transformers' AssistantTracker extension: the body renders as it is
                endTag();
                List<Node> body = body(Set.of("endgeneration"));
                next();
                endTag();
                return new Node.FilterBlock(List.of(), body);
            }
            default -> throw error(kw, kw.value().startsWith("end") || kw.value().equals("else") || kw.value().equals("elif")
                    ? "unexpected {% " + kw.value() + " %}" : "unsupported statement {% " + kw.value() + " %}");
        }
    }

    private Node.Target target(boolean allowAttr) {
        Token first = expect(Type.NAME, null, "a variable name");
        if (allowAttr && skipOp(".")) {
            return new Node.Target.Attr(first.value(), expect(Type.NAME, null, "an attribute name").value());
        }
        if (!peek().isOp(",")) return new Node.Target.Name(first.value());
        List<String> names = new ArrayList<>(List.of(first.value()));
        while (skipOp(",")) {
            if (peek().type() != Type.NAME || peek().isName("in")) break;
            names.add(next().value());
        }
        return new Node.Target.Unpack(names);
    }

    /** An expression, or several separated by commas: a tuple. */
    private Expr tuple(boolean withCondition) {
        Expr first = expression(withCondition);
        if (!peek().isOp(",")) return first;
        List<Expr> items = new ArrayList<>(List.of(first));
        while (skipOp(",")) {
            Type t = peek().type();
            if (t == Type.BLOCK_END || t == Type.VAR_END || peek().isOp(")")) break;
            items.add(expression(withCondition));
        }
        return new Expr.ListLit(items, true);
    }

    private Expr expression(boolean withCondition) {
        Expr e = or();
        if (!withCondition) return e;
        while (skipName("if")) {
            Expr cond = or();
            Expr orElse = skipName("else") ? expression(true) : null;
            e = new Expr.Cond(cond, e, orElse);
        }
        return e;
    }

    private Expr or() {
        return leftAssociative(this::and, "or");
    }

    private Expr and() {
        return leftAssociative(this::not, "and");
    }

    private Expr not() {
        if (peek().isName("not")) {
            Token op = next();
            return new Expr.Unary("not", not(), op.pos());
        }
        return compare();
    }

    private Expr compare() {
        Token start = peek();
        Expr first = math1();
        List<String> ops = new ArrayList<>();
        List<Expr> rest = new ArrayList<>();
        while (true) {
            Token t = peek();
            if (t.type() == Type.OP && COMPARE.contains(t.value())) {
                next();
                ops.add(t.value());
            } else if (t.isName("in")) {
                next();
                ops.add("in");
            } else if (t.isName("not") && peek(1).isName("in")) {
                i += 2;
                ops.add("not in");
            } else {
                break;
            }
            rest.add(math1());
        }
        return ops.isEmpty() ? first : new Expr.Compare(first, ops, rest, start.pos());
    }

    private Expr math1() {
        return leftAssociative(this::concat, "+", "-");
    }

    private Expr concat() {
        return leftAssociative(this::math2, "~");
    }

    private Expr math2() {
        return leftAssociative(this::pow, "*", "/", "//", "%");
    }

    private Expr pow() {
        return leftAssociative(() -> unary(true), "**");
    }

    /** One precedence level of left-associative binary operators (operator tokens, or the names and / or). */
    private Expr leftAssociative(Supplier<Expr> operand, String... operators) {
        Expr e = operand.get();
        while (true) {
            Token t = peek();
            if ((t.type() != Type.OP && t.type() != Type.NAME) || !List.of(operators).contains(t.value())) return e;
            next();
            e = new Expr.Binary(t.value(), e, operand.get(), t.pos());
        }
    }

    private Expr unary(boolean withFilter) {
        Token t = peek();
        Expr e;
        if (t.isOp("-") || t.isOp("+")) {
            next();
            e = new Expr.Unary(t.value(), unary(false), t.pos());
        } else {
            e = primary();
        }
        e = postfix(e);
        return withFilter ? filterExpr(e) : e;
    }

    private Expr primary() {
        Token t = next();
        switch (t.type()) {
            case NAME -> {
                return switch (t.value()) {
                    case "true", "True" -> new Expr.Const(Boolean.TRUE);
                    case "false", "False" -> new Expr.Const(Boolean.FALSE);
                    case "none", "None" -> new Expr.Const(null);
                    default -> new Expr.Name(t.value(), t.pos());
                };
            }
            case STRING -> {
                StringBuilder sb = new StringBuilder(t.value());
                while (peek().type() == Type.STRING) sb.append(next().value());
                return new Expr.Const(sb.toString());
            }
            case INT -> {
                return new Expr.Const(Py.integer(new java.math.BigInteger(t.value())));  // Python's ints are unbounded
            }
            case FLOAT -> {
                return new Expr.Const(Double.parseDouble(t.value()));
            }
            case OP -> {
                switch (t.value()) {
                    case "(" -> {
                        if (skipOp(")")) return new Expr.ListLit(List.of(), true);
                        Expr e = expression(true);
                        if (peek().isOp(",")) {
                            List<Expr> items = new ArrayList<>(List.of(e));
                            while (skipOp(",")) {
                                if (peek().isOp(")")) break;
                                items.add(expression(true));
                            }
                            e = new Expr.ListLit(items, true);
                        }
                        expect(Type.OP, ")", "')'");
                        return e;
                    }
                    case "[" -> {
                        List<Expr> items = new ArrayList<>();
                        while (!skipOp("]")) {
                            if (!items.isEmpty()) expect(Type.OP, ",", "',' or ']'");
                            if (skipOp("]")) break;
                            items.add(expression(true));
                        }
                        return new Expr.ListLit(items, false);
                    }
                    case "{" -> {
                        List<Expr> keys = new ArrayList<>();
                        List<Expr> values = new ArrayList<>();
                        while (!skipOp("}")) {
                            if (!keys.isEmpty()) expect(Type.OP, ",", "',' or '}'");
                            if (skipOp("}")) break;
                            keys.add(expression(true));
                            expect(Type.OP, ":", "':'");
                            values.add(expression(true));
                        }
                        return new Expr.DictLit(keys, values);
                    }
                    default -> { }
                }
            }
            default -> { }
        }
        throw error(t, "unexpected " + describe(t) + " in an expression");
    }

    private Expr postfix(Expr e) {
        while (true) {
            Token t = peek();
            if (t.isOp(".")) {
                next();
                Token name = next();
                if (name.type() == Type.NAME) {
                    e = new Expr.GetAttr(e, name.value(), name.pos());
                } else if (name.type() == Type.INT) {
                    e = new Expr.GetItem(e, new Expr.Const(Long.parseLong(name.value())), name.pos());
                } else {
                    throw error(name, "expected an attribute name after '.', found " + describe(name));
                }
            } else if (t.isOp("[")) {
                next();
                e = new Expr.GetItem(e, subscript(), t.pos());
                expect(Type.OP, "]", "']'");
            } else if (t.isOp("(")) {
                e = call(e);
            } else {
                return e;
            }
        }
    }

    private Expr subscript() {
        Expr start = null, stop = null, step = null;
        if (!peek().isOp(":")) {
            start = expression(true);
            if (!peek().isOp(":")) return start;
        }
        next();
        if (!peek().isOp("]") && !peek().isOp(":")) stop = expression(true);
        if (skipOp(":") && !peek().isOp("]")) step = expression(true);
        return new Expr.Slice(start, stop, step);
    }

    private Expr.Call call(Expr function) {
        Token open = expect(Type.OP, "(", "'('");
        List<Expr> args = new ArrayList<>();
        List<String> kwNames = new ArrayList<>();
        List<Expr> kwValues = new ArrayList<>();
        callArgs(args, kwNames, kwValues);
        return new Expr.Call(function, args, kwNames, kwValues, open.pos());
    }

    /** Arguments after '(' up to and including ')'. */
    private void callArgs(List<Expr> args, List<String> kwNames, List<Expr> kwValues) {
        boolean first = true;
        while (!skipOp(")")) {
            if (!first) {
                expect(Type.OP, ",", "',' or ')'");
                if (skipOp(")")) break;
            }
            first = false;
            if (peek().isOp("*") || peek().isOp("**")) throw error(peek(), "*args and **kwargs in calls are not supported");
            if (peek().type() == Type.NAME && peek(1).isOp("=")) {
                kwNames.add(next().value());
                next();
                kwValues.add(expression(true));
            } else {
                if (!kwNames.isEmpty()) throw error(peek(), "a positional argument follows a keyword argument");
                args.add(expression(true));
            }
        }
    }

    private Expr filterExpr(Expr e) {
        while (true) {
            if (skipOp("|")) {
                e = filter(e);
            } else if (peek().isName("is")) {
                e = test(e);
            } else if (peek().isOp("(")) {
                e = call(e);
            } else {
                return e;
            }
        }
    }

    private Expr.Filter filter(Expr value) {
        Token name = expect(Type.NAME, null, "a filter name");
        StringBuilder full = new StringBuilder(name.value());
        while (peek().isOp(".")) {
            next();
            full.append('.').append(expect(Type.NAME, null, "a filter name").value());
        }
        if (!Builtins.FILTERS.contains(full.toString())) {
            throw error(name, "unknown filter '" + full + "'");
        }
        List<Expr> args = new ArrayList<>();
        List<String> kwNames = new ArrayList<>();
        List<Expr> kwValues = new ArrayList<>();
        if (skipOp("(")) callArgs(args, kwNames, kwValues);
        return new Expr.Filter(value, full.toString(), args, kwNames, kwValues, name.pos());
    }

    private Expr test(Expr value) {
        next(); // is
        boolean negated = skipName("not");
        Token name = expect(Type.NAME, null, "a test name");
        String testName = name.value();
        if (!Builtins.TESTS.contains(testName)) throw error(name, "unknown test '" + testName + "'");
        List<Expr> args = new ArrayList<>();
        Token t = peek();
        if (t.isOp("(")) {
            next();
            List<String> kwNames = new ArrayList<>();
            callArgs(args, kwNames, new ArrayList<>());
            if (!kwNames.isEmpty()) throw error(t, "keyword arguments to tests are not supported");
        } else if ((t.type() == Type.NAME || t.type() == Type.STRING || t.type() == Type.INT || t.type() == Type.FLOAT
                || t.isOp("[") || t.isOp("{")) && !t.isName("else") && !t.isName("or") && !t.isName("and")) {
            if (t.isName("is")) throw error(t, "tests cannot be chained with 'is'");
            args.add(postfix(primary()));
        }
        return new Expr.Test(value, testName, args, negated, name.pos());
    }

    /** Whether a name is read anywhere in the nodes (nested macros included, as Jinja2's find_undeclared looks). */
    private static boolean reads(Object tree, String name) {
        return switch (tree) {
            case Expr.Name n -> n.name().equals(name);
            case List<?> l -> l.stream().anyMatch(x -> reads(x, name));
            case Record r -> {
                for (java.lang.reflect.RecordComponent c : r.getClass().getRecordComponents()) {
                    try {
                        if (reads(c.getAccessor().invoke(r), name)) yield true;
                    } catch (ReflectiveOperationException e) {
                        throw new IllegalStateException(e);
                    }
                }
                yield false;
            }
            case null, default -> false;
        };
    }
}
