package dev.patchcore.chat;

import java.util.List;

/** The parsed template: statements and expressions. {@code pos} fields are source offsets, for error messages. */
sealed interface Node {
    record Text(String text) implements Node {}

    record Output(Expr expr) implements Node {}

    record If(List<Expr> conditions, List<List<Node>> bodies, List<Node> orElse) implements Node {}

    record For(Target target, Expr iterable, Expr condition, List<Node> body, List<Node> orElse, int pos) implements Node {}

    record Set(Target target, Expr value, int pos) implements Node {}

    /** {@code {% set name %}...{% endset %}}, the body's text through the filters. */
    record SetBlock(Target target, List<Expr.Filter> filters, List<Node> body, int pos) implements Node {}

    /** {@code catchVarargs}/{@code catchKwargs}: the body reads {@code varargs}/{@code kwargs}, so extra arguments go there. */
    record Macro(String name, List<String> params, List<Expr> defaults, List<Node> body, boolean catchVarargs,
                 boolean catchKwargs) implements Node {}

    record FilterBlock(List<Expr.Filter> filters, List<Node> body) implements Node {}

    record Break(int pos) implements Node {}

    record Continue(int pos) implements Node {}

    /** An assignment target: a name, {@code ns.attr}, or names unpacking a sequence. */
    sealed interface Target {
        record Name(String name) implements Target {}

        record Attr(String object, String attr) implements Target {}

        record Unpack(List<String> names) implements Target {}
    }

    sealed interface Expr {
        record Const(Object value) implements Expr {}

        record Name(String name, int pos) implements Expr {}

        record ListLit(List<Expr> items, boolean tuple) implements Expr {}

        record DictLit(List<Expr> keys, List<Expr> values) implements Expr {}

        record GetAttr(Expr object, String name, int pos) implements Expr {}

        record GetItem(Expr object, Expr index, int pos) implements Expr {}

        record Slice(Expr start, Expr stop, Expr step) implements Expr {}

        record Call(Expr function, List<Expr> args, List<String> kwNames, List<Expr> kwValues, int pos) implements Expr {}

        /** {@code value | name(args)}; {@code value} is null in filter blocks and {@code set} blocks. */
        record Filter(Expr value, String name, List<Expr> args, List<String> kwNames, List<Expr> kwValues, int pos) implements Expr {}

        record Test(Expr value, String name, List<Expr> args, boolean negated, int pos) implements Expr {}

        record Unary(String op, Expr operand, int pos) implements Expr {}

        record Binary(String op, Expr left, Expr right, int pos) implements Expr {}

        /** A Python comparison chain: {@code a < b <= c}. */
        record Compare(Expr first, List<String> ops, List<Expr> rest, int pos) implements Expr {}

        /** {@code then if condition else orElse}; {@code orElse} null yields Undefined. */
        record Cond(Expr condition, Expr then, Expr orElse) implements Expr {}
    }
}
