package dev.patchcore.chat;

import dev.patchcore.chat.Node.Expr;
import dev.patchcore.chat.Py.Callable;
import dev.patchcore.chat.Py.Namespace;
import dev.patchcore.chat.Py.Tuple;
import dev.patchcore.chat.Py.Undefined;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs a parsed template. Scopes follow Jinja2: each {@code for} iteration and each macro call gets a scope of its own
 * (what it sets is gone after it, which is why templates use {@code namespace}); {@code if} does not.
 */
final class Renderer {
    private final String source;

    Renderer(String source) {
        this.source = source;
    }

    /** A variable scope; lookups fall through to the parent. */
    static final class Scope {
        final Scope parent;
        final Map<String, Object> vars = new HashMap<>();

        Scope(Scope parent) {
            this.parent = parent;
        }

        Object lookup(String name) {
            for (Scope s = this; s != null; s = s.parent) {
                Object v = s.vars.get(name);
                if (v != null || s.vars.containsKey(name)) return v;
            }
            return new Undefined("'" + name + "' is undefined");
        }
    }

    /** The {@code loop} variable of a for loop. */
    static final class Loop {
        final List<Object> items;
        int index0;
        Object lastChanged = MISSING;  // the arguments of the last loop.changed(...)

        private static final Object MISSING = new Object();

        Loop(List<Object> items) {
            this.items = items;
        }
    }

    private static final class BreakSignal extends RuntimeException {
        BreakSignal() {
            super(null, null, false, false);
        }
    }

    private static final class ContinueSignal extends RuntimeException {
        ContinueSignal() {
            super(null, null, false, false);
        }
    }

    private static final BreakSignal BREAK = new BreakSignal();
    private static final ContinueSignal CONTINUE = new ContinueSignal();

    /** A macro bound to the scope it was defined in. It prints as Jinja2's {@code <Macro 'name'>}. */
    record MacroValue(Node.Macro macro, Scope defined, Renderer renderer) implements Callable {
        @Override public Object call(List<Object> args, Map<String, Object> kwargs) {
            List<String> params = macro.params();
            if (args.size() > params.size() && !macro.catchVarargs()) {
                throw new IllegalArgumentException("macro '" + macro.name() + "' takes not more than " + params.size()
                        + " argument(s)");
            }
            for (int k = 0; k < Math.min(args.size(), params.size()); k++) {
                if (kwargs.containsKey(params.get(k))) {
                    throw new IllegalArgumentException("macro '" + macro.name() + "' got multiple values for argument '" + params.get(k) + "'");
                }
            }
            Scope scope = new Scope(defined);
            int firstDefault = params.size() - macro.defaults().size();
            for (int k = 0; k < params.size(); k++) {
                String p = params.get(k);
                Object v;
                if (k < args.size()) v = args.get(k);
                else if (kwargs.containsKey(p)) v = kwargs.get(p);
                else if (k >= firstDefault) v = renderer.eval(macro.defaults().get(k - firstDefault), scope);
                else v = new Undefined("parameter '" + p + "' was not provided");
                scope.vars.put(p, v);
            }
            Map<String, Object> extra = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : kwargs.entrySet()) {
                if (params.contains(e.getKey())) continue;
                if (!macro.catchKwargs()) throw new IllegalArgumentException("macro '" + macro.name() + "' takes no keyword argument '" + e.getKey() + "'");
                extra.put(e.getKey(), e.getValue());
            }
            if (macro.catchVarargs()) {
                scope.vars.put("varargs", new Tuple(args.size() > params.size() ? args.subList(params.size(), args.size()).toArray() : new Object[0]));
            }
            if (macro.catchKwargs()) scope.vars.put("kwargs", extra);
            StringBuilder out = new StringBuilder();
            renderer.render(macro.body(), scope, out);
            return out.toString();
        }
    }

    IllegalArgumentException error(int pos, String message) {
        return new IllegalArgumentException("chat template " + Lexer.where(source, pos) + ": " + message);
    }

    void render(List<Node> nodes, Scope scope, StringBuilder out) {
        for (Node n : nodes) render(n, scope, out);
    }

    private void render(Node node, Scope scope, StringBuilder out) {
        switch (node) {
            case Node.Text t -> out.append(t.text());
            case Node.Output o -> out.append(Py.str(eval(o.expr(), scope)));
            case Node.If f -> {
                for (int k = 0; k < f.conditions().size(); k++) {
                    if (Py.truthy(eval(f.conditions().get(k), scope))) {
                        render(f.bodies().get(k), scope, out);
                        return;
                    }
                }
                render(f.orElse(), scope, out);
            }
            case Node.For f -> renderFor(f, scope, out);
            case Node.Set s -> assign(s.target(), eval(s.value(), scope), scope, s.pos());
            case Node.SetBlock s -> {  // the body has a scope of its own, as in Jinja2
                StringBuilder body = new StringBuilder();
                render(s.body(), new Scope(scope), body);
                assign(s.target(), applyFilters(s.filters(), body.toString(), scope), scope, s.pos());
            }
            case Node.Macro m -> scope.vars.put(m.name(), new MacroValue(m, scope, this));
            case Node.FilterBlock f -> {  // the body has a scope of its own, as in Jinja2
                StringBuilder body = new StringBuilder();
                render(f.body(), new Scope(scope), body);
                out.append(Py.str(applyFilters(f.filters(), body.toString(), scope)));
            }
            case Node.Break b -> throw BREAK;
            case Node.Continue c -> throw CONTINUE;
        }
    }

    private Object applyFilters(List<Expr.Filter> filters, Object value, Scope scope) {
        for (Expr.Filter f : filters) value = filter(f, value, scope);
        return value;
    }

    private void renderFor(Node.For f, Scope scope, StringBuilder out) {
        Object iterable = eval(f.iterable(), scope);
        List<Object> items;
        try {
            items = Py.iterate(iterable);
        } catch (IllegalArgumentException e) {
            throw error(f.pos(), e.getMessage());
        }
        if (f.condition() != null) {
            List<Object> kept = new ArrayList<>();
            for (Object item : items) {
                Scope s = new Scope(scope);
                assign(f.target(), item, s, f.pos());
                if (Py.truthy(eval(f.condition(), s))) kept.add(item);
            }
            items = kept;
        }
        if (items.isEmpty()) {
            render(f.orElse(), new Scope(scope), out);
            return;
        }
        Loop loop = new Loop(items);
        // Jinja2 marks the loop as iterated at the end of the body, so when every iteration ends in break or
        // continue, the else block still renders
        boolean completed = false;
        for (int k = 0; k < items.size(); k++) {
            loop.index0 = k;
            Scope s = new Scope(scope);
            s.vars.put("loop", loop);
            assign(f.target(), items.get(k), s, f.pos());
            try {
                render(f.body(), s, out);
                completed = true;
            } catch (BreakSignal b) {
                break;
            } catch (ContinueSignal c) {
                // next item
            }
        }
        if (!completed) render(f.orElse(), new Scope(scope), out);  // the else block has a scope of its own, as in Jinja2
    }

    private void assign(Node.Target target, Object value, Scope scope, int pos) {
        switch (target) {
            case Node.Target.Name n -> scope.vars.put(n.name(), value);
            case Node.Target.Attr a -> {
                Object ns = scope.lookup(a.object());
                if (!(ns instanceof Namespace namespace)) {
                    throw error(pos, "cannot assign attribute on non-namespace object '" + a.object() + "'");
                }
                namespace.attrs.put(a.attr(), value);
            }
            case Node.Target.Unpack u -> {
                List<Object> values;
                try {
                    values = Py.iterate(value);
                } catch (IllegalArgumentException e) {
                    throw error(pos, "cannot unpack: " + e.getMessage());
                }
                if (values.size() != u.names().size()) {
                    throw error(pos, "expected " + u.names().size() + " values to unpack, got " + values.size());
                }
                for (int k = 0; k < values.size(); k++) scope.vars.put(u.names().get(k), values.get(k));
            }
        }
    }

    Object eval(Expr e, Scope scope) {
        return switch (e) {
            case Expr.Const c -> c.value();
            case Expr.Name n -> scope.lookup(n.name());
            case Expr.ListLit l -> {
                List<Object> items = new ArrayList<>();
                for (Expr x : l.items()) items.add(eval(x, scope));
                yield l.tuple() ? new Tuple(items.toArray()) : items;
            }
            case Expr.DictLit d -> {
                Map<String, Object> m = new LinkedHashMap<>();
                for (int k = 0; k < d.keys().size(); k++) {
                    Object key = eval(d.keys().get(k), scope);
                    if (!(key instanceof String s)) throw error(0, "dict keys other than strings are not supported");
                    m.put(s, eval(d.values().get(k), scope));
                }
                yield m;
            }
            case Expr.GetAttr g -> getattr(eval(g.object(), scope), g.name(), g.pos());
            case Expr.GetItem g -> {
                Object obj = eval(g.object(), scope);
                if (g.index() instanceof Expr.Slice s) {
                    // Jinja2 folds a constant to its value through environment.getitem, which makes the TypeError of
                    // slicing what cannot be sliced an Undefined; at run time a slice is Python's obj[a:b] and raises
                    if (isConstant(g) && !(obj instanceof String) && !(obj instanceof List)) yield new Undefined("not subscriptable");
                    yield slice(obj, evalOrNull(s.start(), scope), evalOrNull(s.stop(), scope), evalOrNull(s.step(), scope), g.pos());
                }
                yield getitem(obj, eval(g.index(), scope), g.pos());
            }
            case Expr.Slice s -> throw error(0, "a slice outside []");
            case Expr.Call c -> call(c, scope);
            case Expr.Filter f -> filter(f, eval(f.value(), scope), scope);
            case Expr.Test t -> {
                Object value = eval(t.value(), scope);
                List<Object> args = new ArrayList<>();
                for (Expr a : t.args()) args.add(eval(a, scope));
                try {
                    yield Builtins.test(t.name(), value, args) != t.negated();
                } catch (IllegalArgumentException x) {
                    throw error(t.pos(), x.getMessage());
                }
            }
            case Expr.Unary u -> unary(u, scope);
            case Expr.Binary b -> binary(b, scope);
            case Expr.Compare c -> {
                Object left = eval(c.first(), scope);
                for (int k = 0; k < c.ops().size(); k++) {
                    Object right = eval(c.rest().get(k), scope);
                    boolean ok;
                    try {
                        ok = compare(c.ops().get(k), left, right);
                    } catch (IllegalArgumentException x) {
                        throw error(c.pos(), x.getMessage());
                    }
                    if (!ok) yield false;
                    left = right;
                }
                yield true;
            }
            case Expr.Cond c -> Py.truthy(eval(c.condition(), scope)) ? eval(c.then(), scope)
                    : c.orElse() == null ? new Undefined("the conditional expression had no else") : eval(c.orElse(), scope);
        };
    }

    private Object evalOrNull(Expr e, Scope scope) {
        return e == null ? null : eval(e, scope);
    }

    private static boolean compare(String op, Object a, Object b) {
        return switch (op) {
            case "==" -> Py.eq(a, b);
            case "!=" -> !Py.eq(a, b);
            case "<" -> Py.compare(a, b) < 0;
            case "<=" -> Py.compare(a, b) <= 0;
            case ">" -> Py.compare(a, b) > 0;
            case ">=" -> Py.compare(a, b) >= 0;
            case "in" -> Builtins.contains(b, a);
            case "not in" -> !Builtins.contains(b, a);
            default -> throw new IllegalStateException(op);
        };
    }

    private Object unary(Expr.Unary u, Scope scope) {
        Object v = eval(u.operand(), scope);
        switch (u.op()) {
            case "not" -> {
                return !Py.truthy(v);
            }
            case "-", "+" -> {
                if (v instanceof Double d) return u.op().equals("-") ? -d : d;
                if (Py.isNumber(v)) return u.op().equals("-") ? Py.negate(v) : v instanceof Boolean ? (Object) Py.toLong(v) : v;
                throw error(u.pos(), "bad operand type for unary " + u.op() + ": '" + Py.typeName(v) + "'"
                        + undefinedHint(v));
            }
            default -> throw new IllegalStateException(u.op());
        }
    }

    /** Whether Jinja2's optimizer folds the expression to a constant: no names, no calls. */
    private static boolean isConstant(Expr e) {
        return switch (e) {
            case null -> true;
            case Expr.Const c -> true;
            case Expr.Name n -> false;
            case Expr.Call c -> false;
            case Expr.ListLit l -> l.items().stream().allMatch(Renderer::isConstant);
            case Expr.DictLit d -> d.keys().stream().allMatch(Renderer::isConstant) && d.values().stream().allMatch(Renderer::isConstant);
            case Expr.GetAttr g -> isConstant(g.object());
            case Expr.GetItem g -> isConstant(g.object()) && isConstant(g.index());
            case Expr.Slice s -> isConstant(s.start()) && isConstant(s.stop()) && isConstant(s.step());
            case Expr.Filter f -> f.value() != null && isConstant(f.value()) && f.args().stream().allMatch(Renderer::isConstant)
                    && f.kwValues().stream().allMatch(Renderer::isConstant);
            case Expr.Test t -> isConstant(t.value()) && t.args().stream().allMatch(Renderer::isConstant);
            case Expr.Unary u -> isConstant(u.operand());
            case Expr.Binary b -> isConstant(b.left()) && isConstant(b.right());
            case Expr.Compare c -> isConstant(c.first()) && c.rest().stream().allMatch(Renderer::isConstant);
            case Expr.Cond c -> isConstant(c.condition()) && isConstant(c.then()) && isConstant(c.orElse());
        };
    }

    private static String undefinedHint(Object v) {
        return v instanceof Undefined u ? " (" + u.message() + ")" : "";
    }

    private Object binary(Expr.Binary b, Scope scope) {
        if (b.op().equals("and")) {
            Object left = eval(b.left(), scope);
            return Py.truthy(left) ? eval(b.right(), scope) : left;
        }
        if (b.op().equals("or")) {
            Object left = eval(b.left(), scope);
            return Py.truthy(left) ? left : eval(b.right(), scope);
        }
        Object x = eval(b.left(), scope);
        Object y = eval(b.right(), scope);
        if (b.op().equals("~")) return Py.str(x) + Py.str(y);
        if (x instanceof Undefined u) throw error(b.pos(), u.message());
        // str % Undefined is str.__mod__, which prints it as '': Undefined's __rmod__ is never asked
        if (y instanceof Undefined u && !(b.op().equals("%") && x instanceof String)) throw error(b.pos(), u.message());
        try {
            if (b.op().equals("**") && isConstant(b.left()) && !isConstant(b.right()) && Py.isNumber(x)
                    && !(x instanceof Boolean) && Math.copySign(1.0, Py.toDouble(x)) < 0) {
                // Jinja2 folds a constant base to a literal and writes -2 ** y into Python, which reads -(2 ** y)
                Object magnitude = x instanceof Double d ? (Object) (-d) : Py.negate(x);
                Object p = arithmetic("**", magnitude, y);
                return p instanceof Double d ? (Object) (-d) : Py.negate(p);
            }
            return arithmetic(b.op(), x, y);
        } catch (IllegalArgumentException | ArithmeticException ex) {
            throw error(b.pos(), ex.getMessage());
        }
    }

    static Object arithmetic(String op, Object x, Object y) {
        boolean nums = Py.isNumber(x) && Py.isNumber(y);
        boolean floats = nums && (x instanceof Double || y instanceof Double);
        switch (op) {
            case "+" -> {
                if (x instanceof String s && y instanceof String t) return s + t;
                if (x instanceof List<?> l && y instanceof List<?> m && (x instanceof Tuple) == (y instanceof Tuple)) {
                    List<Object> out = new ArrayList<>(l);
                    out.addAll(m);
                    return x instanceof Tuple ? new Tuple(out.toArray()) : out;
                }
                if (floats) return Py.toDouble(x) + Py.toDouble(y);
                if (nums) return Py.intArithmetic(op, x, y);
            }
            case "-" -> {
                if (floats) return Py.toDouble(x) - Py.toDouble(y);
                if (nums) return Py.intArithmetic(op, x, y);
            }
            case "*" -> {
                if (floats) return Py.toDouble(x) * Py.toDouble(y);
                if (nums) return Py.intArithmetic(op, x, y);
                // a str, list or tuple repeated, the count on either side (a bool is an int: 'a' * false is '')
                Object seq = x instanceof String || x instanceof List ? x : y instanceof String || y instanceof List ? y : null;
                Object count = seq == x ? y : x;
                if (seq != null && Py.isInt(count)) {
                    long n = Math.max(0, Py.toLong(count));
                    int size = seq instanceof String str ? str.length() : ((List<?>) seq).size();
                    if (n * size > 100_000_000L) throw new IllegalArgumentException("a repetition of over 100 million items is not supported");
                    if (seq instanceof String str) return str.repeat((int) n);
                    List<Object> out = new ArrayList<>();
                    for (long k = 0; k < n; k++) out.addAll((List<?>) seq);
                    return seq instanceof Tuple ? new Tuple(out.toArray()) : out;
                }
            }
            case "/" -> {
                if (nums && !floats) return Py.trueDivide(x, y);
                if (nums) {
                    if (Py.toDouble(y) == 0) throw new IllegalArgumentException("division by zero");
                    return Py.toDouble(x) / Py.toDouble(y);
                }
            }
            case "//" -> {
                if (floats) return Py.floatFloorDiv(Py.toDouble(x), Py.toDouble(y));
                if (nums) return Py.intArithmetic(op, x, y);
            }
            case "%" -> {
                if (floats) return Py.floatMod(Py.toDouble(x), Py.toDouble(y));
                if (nums) return Py.intArithmetic(op, x, y);
                if (x instanceof String s) return Printf.format(s, y);
            }
            case "**" -> {
                if (nums && !floats && Py.big(y).signum() >= 0) return Py.intArithmetic(op, x, y);
                if (nums) {
                    double a = Py.toDouble(x), p = Py.toDouble(y);
                    if (a == 0 && p < 0) throw new IllegalArgumentException("0.0 cannot be raised to a negative power");
                    if (a < 0 && p != Math.rint(p)) {
                        throw new IllegalArgumentException("a negative number raised to a fractional power is complex");
                    }
                    double r = Math.pow(a, p);
                    if (Double.isInfinite(r) && Double.isFinite(a) && Double.isFinite(p)) {
                        throw new IllegalArgumentException("(34, 'Numerical result out of range')");
                    }
                    return r;
                }
            }
            default -> throw new IllegalStateException(op);
        }
        throw new IllegalArgumentException("unsupported operand type(s) for " + op + ": '" + Py.typeName(x) + "' and '"
                + Py.typeName(y) + "'");
    }

    /** {@code obj.name}: Jinja2 tries the attribute (a method, a namespace's or loop's field), then the item. */
    Object getattr(Object obj, String name, int pos) {
        if (obj == null) return missing(obj, name);
        switch (obj) {
            case Undefined u -> throw error(pos, u.message());
            case Namespace n -> {
                return n.attrs.containsKey(name) ? n.attrs.get(name) : missing(obj, name);
            }
            case Loop l -> {
                return loopAttr(l, name, pos);
            }
            default -> { }
        }
        if (obj instanceof Py.GroupTuple t && (name.equals("grouper") || name.equals("list"))) return t.get(name.equals("grouper") ? 0 : 1);
        Callable method = Builtins.method(obj, name);
        if (method != null) return method;
        if (obj instanceof Map<?, ?> m && m.containsKey(name)) return m.get(name);
        return missing(obj, name);
    }

    private static Undefined missing(Object obj, String name) {
        return new Undefined("'" + (obj instanceof Map ? "dict" : Py.typeName(obj)) + " object' has no attribute '" + name + "'");
    }

    private Object loopAttr(Loop l, String name, int pos) {
        int n = l.items.size();
        int k = l.index0;
        return switch (name) {
            case "index" -> (long) k + 1;
            case "index0" -> (long) k;
            case "revindex" -> (long) (n - k);
            case "revindex0" -> (long) (n - k - 1);
            case "first" -> k == 0;
            case "last" -> k == n - 1;
            case "length" -> (long) n;
            case "depth" -> 1L;
            case "depth0" -> 0L;
            case "previtem" -> k > 0 ? l.items.get(k - 1) : new Undefined("there is no previous item");
            case "nextitem" -> k < n - 1 ? l.items.get(k + 1) : new Undefined("there is no next item");
            case "cycle" -> (Callable) (args, kwargs) -> {
                if (args.isEmpty()) throw new IllegalArgumentException("no items for cycling given");
                return args.get(k % args.size());
            };
            case "changed" -> (Callable) (args, kwargs) -> {  // whether the arguments differ from the last call's
                Tuple value = new Tuple(args.toArray());
                if (l.lastChanged != Loop.MISSING && Py.eq(l.lastChanged, value)) return false;
                l.lastChanged = value;
                return true;
            };
            default -> new Undefined("'LoopContext object' has no attribute '" + name + "'");
        };
    }

    /** {@code obj[key]}: Jinja2 tries the item, then (for a string key) the attribute. */
    Object getitem(Object obj, Object key, int pos) {
        if (obj == null) return new Undefined("'None' has no item " + Py.repr(key));
        switch (obj) {
            case Undefined u -> throw error(pos, u.message());
            case Map<?, ?> m -> {
                if (key instanceof String s && m.containsKey(s)) return m.get(s);
            }
            case List<?> l -> {
                if (l instanceof Py.GroupTuple && key instanceof String s && (s.equals("grouper") || s.equals("list"))) return getattr(l, s, pos);
                if (key instanceof java.math.BigInteger) return new Undefined("cannot fit 'int' into an index-sized integer");
                if (Py.isNumber(key) && !(key instanceof Double)) {
                    long k = Py.toLong(key);
                    if (k < 0) k += l.size();
                    return k >= 0 && k < l.size() ? l.get((int) k) : new Undefined("list index out of range");
                }
            }
            case String s -> {
                if (key instanceof java.math.BigInteger) return new Undefined("cannot fit 'int' into an index-sized integer");
                if (Py.isNumber(key) && !(key instanceof Double)) {
                    int[] cps = Py.codePoints(s);
                    long k = Py.toLong(key);
                    if (k < 0) k += cps.length;
                    return k >= 0 && k < cps.length ? Character.toString(cps[(int) k]) : new Undefined("string index out of range");
                }
            }
            case Loop l -> {
                if (key instanceof String s) return loopAttr(l, s, pos);
            }
            case Namespace n -> {
                if (key instanceof String s) return getattr(n, s, pos);
            }
            default -> { }
        }
        if (key instanceof String s) {
            Callable method = Builtins.method(obj, s);
            if (method != null) return method;
        }
        return new Undefined("'" + Py.typeName(obj) + " object' has no item " + Py.repr(key));
    }

    private Object slice(Object obj, Object start, Object stop, Object step, int pos) {
        if (obj instanceof Undefined u) throw error(pos, u.message());
        int len;
        int[] cps = null;
        if (obj instanceof String s) {
            cps = Py.codePoints(s);
            len = cps.length;
        } else if (obj instanceof List<?> l) {
            len = l.size();
        } else {
            throw error(pos, "'" + Py.typeName(obj) + "' object is not subscriptable");
        }
        long st = step == null ? 1 : sliceIndex(step, pos);
        if (st == 0) throw error(pos, "slice step cannot be zero");
        long lo, hi;
        if (st > 0) {
            lo = start == null ? 0 : clamp(sliceIndex(start, pos), len, 0, len);
            hi = stop == null ? len : clamp(sliceIndex(stop, pos), len, 0, len);
        } else {
            lo = start == null ? len - 1 : clamp(sliceIndex(start, pos), len, -1, len - 1);
            hi = stop == null ? -1 : clamp(sliceIndex(stop, pos), len, -1, len - 1);
        }
        List<Integer> picks = new ArrayList<>();
        for (long k = lo; st > 0 ? k < hi : k > hi; k += st) picks.add((int) k);
        if (cps != null) {
            StringBuilder sb = new StringBuilder();
            for (int k : picks) sb.appendCodePoint(cps[k]);
            return sb.toString();
        }
        List<?> l = (List<?>) obj;
        List<Object> out = new ArrayList<>();
        for (int k : picks) out.add(l.get(k));
        return obj instanceof Tuple ? new Tuple(out.toArray()) : out;
    }

    private long sliceIndex(Object v, int pos) {
        if (v == null) throw new IllegalStateException();
        // Python clamps a slice index beyond 64 bits like any other past the end
        if (v instanceof java.math.BigInteger b) return b.signum() > 0 ? Long.MAX_VALUE / 2 : Long.MIN_VALUE / 2;
        if (Py.isNumber(v) && !(v instanceof Double)) return Py.toLong(v);
        throw error(pos, "slice indices must be integers or None");
    }

    private static long clamp(long k, int len, long min, long max) {
        if (k < 0) k += len;
        return Math.max(min, Math.min(max, k));
    }

    private Object call(Expr.Call c, Scope scope) {
        Object fn = eval(c.function(), scope);
        List<Object> args = new ArrayList<>();
        for (Expr a : c.args()) args.add(eval(a, scope));
        Map<String, Object> kwargs = new LinkedHashMap<>();
        for (int k = 0; k < c.kwNames().size(); k++) kwargs.put(c.kwNames().get(k), eval(c.kwValues().get(k), scope));
        if (fn instanceof Undefined u) throw error(c.pos(), u.message());
        if (!(fn instanceof Callable callable)) throw error(c.pos(), "'" + Py.typeName(fn) + "' object is not callable");
        try {
            return callable.call(args, kwargs);
        } catch (ChatTemplate.RaisedException raised) {
            throw raised;
        } catch (IllegalArgumentException | ArithmeticException | IndexOutOfBoundsException x) {
            if (x.getMessage() != null && x.getMessage().startsWith("chat template line")) throw x;
            throw error(c.pos(), x.getMessage());
        }
    }

    private Object filter(Expr.Filter f, Object value, Scope scope) {
        List<Object> args = new ArrayList<>();
        for (Expr a : f.args()) args.add(eval(a, scope));
        Map<String, Object> kwargs = new LinkedHashMap<>();
        for (int k = 0; k < f.kwNames().size(); k++) kwargs.put(f.kwNames().get(k), eval(f.kwValues().get(k), scope));
        try {
            return Builtins.filter(f.name(), value, args, kwargs, this, f.pos());
        } catch (ChatTemplate.RaisedException raised) {
            throw raised;
        } catch (IllegalArgumentException | ArithmeticException x) {
            if (x.getMessage() != null && x.getMessage().startsWith("chat template line")) throw x;
            throw error(f.pos(), "filter '" + f.name() + "': " + x.getMessage());
        }
    }
}
