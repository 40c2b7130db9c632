#!/usr/bin/env python3
"""A second differential fuzz of patchcore's chat-template interpreter against Python Jinja2, aimed at what the
grammar of fuzz_jinja2.py reaches rarely: str methods with their optional arguments (split/rsplit with maxsplit,
strip with chars, startswith/endswith with tuples and bounds, replace with a count, format), slices with negative and
None steps, loop attributes in nested loops and loop.cycle, namespaces, macros with defaults, every test, the filters
with their keyword arguments, whitespace control around trim_blocks/lstrip_blocks, and errors (undefined attribute
chains, calling undefined, division by zero, wrong types).

It writes src/test/resources/chat-templates/fuzz-focus.json in fuzz.json's format; ChatTemplateFuzzTest checks both.

    python3 tools/reference/chat-templates/fuzz_focus.py [--seed N] [--count N] [--out FILE]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_jinja2 import RESOURCES  # noqa: E402
from fuzz_jinja2 import CAUGHT, Gen, generate  # noqa: E402

SEPS = ["','", "' '", "'a'", "'  '", "'\\n'", 'none', "'x,'"]
CHARS = ["' '", "'ab'", "'x'", "'\\n '", 'none', "''", "'.,'"]
SLICES = ['::-1', '::-2', ':: -1', '1::-1', ':1:-1', '-1::-1', '-2:0:-1', '5:-5:-1', '::none', 'none:none:none',
          '-100:100', '::3', '1:-1:2', ':-1', '-1:', '3:1', '-3:-1', '::-3', 'none:2', '2:none:-1']
TESTS = ['defined', 'undefined', 'none', 'string', 'mapping', 'iterable', 'sequence', 'number', 'integer', 'float',
         'boolean', 'true', 'false', 'callable', 'odd', 'even', 'divisibleby(2)', 'divisibleby 3', "in ['a', 1, none]",
         "in 'abc'", 'in d', 'eq 1', 'eq(none)', "equalto 'a'", 'ne 0', 'lt 2', 'gt -1', 'ge 0.5', 'le(true)',
         'sameas none', 'sameas false', 'lower', 'upper', 'escaped', 'filter', 'test']
ROUND = ['', '0', '1', '2', '-1', '1, "floor"', '0, "ceil"', 'method="floor"', 'precision=1, method="ceil"',
         '1, "common"', '2, "floor"']
ERRORS = ['nothing.x', 'undefined_name.x', 'undefined_name.x.y', 'd.zz.y', 'messages[9].role', 'nested.q.r',
          'undefined_name()', 'd.zz()', 'nothing()', 's()', '1 / 0', '1 // 0', '1 % 0', '1.5 // 0', '2.0 % 0',
          "'a' - 1", "[1] + 'a'", "'a' * 'b'", '{} + {}', 'n + s', 'd + 1', 'none + 1', '-s', 'ints < s',
          "'a' < 1", '[1] < [none]', 's.nope()', 'd.items()[0]', 'undefined_name | upper', 'undefined_name + 1',
          'undefined_name ~ "x"', 'undefined_name[0]', '(undefined_name | list)[0]', "range(1, 2, 0)",
          "ints | join(1)", "s | int(base=1)", "s | indent(none)", 'd | dictsort(by="nope")', 'ints | sum(start="")',
          "d | first", "'abc' | batch(0)", 'ints | map("nofilter")', 'ints | select("notatest")',
          "ints | selectattr('x', 'gt')", "n | center('x')", "s | truncate(-1)", "nothing | length",
          "undefined_name | length", "namespace(a=1).b.c", "loop.index", 'raise_exception("stop")',
          '"{0}{1}".format(1)', '"{x}".format(y=1)', "'{'.format()", "'%s %s' % (1,)", "'%d' % 'a'",
          "'%(a)s' % d", "'%z' % 1", "'abc'.index('z')", "ints.index(99)", "'x'.split('')", "d.get()",
          "(1, 2)[5]", "ints[1.5]", "s[none:'a']", "d | attr('x') | upper", "d.e.x.y.z"]
FORMATS = ["'{}|{}'", "'{0}{0}'", "'{a}-{b}'", "'{1}/{0}'", "'{{}}{}'", "'{!r}'", "'{:>6}'", "'{:.2f}'",
           "'{:05d}'", "'{:^7}'", "'{0[a]}'", "'{0.a}'", "'{:,}'", "'{:x}'", "'{!s:<4}|'", "'{:%}'", "'{:e}'",
           "'{:+}'", "'{:g}'", "'{:s}'"]
PRINTF = ["'%s'", "'%s-%s'", "'%d'", "'%5d|'", "'%-5s|'", "'%.2f'", "'%r'", "'%x'", "'%05.1f'", "'%%%s'",
          "'%i'", "'%e'", "'%g'", "'%(a)s'", "'%c'", "'%3.1s|'", "'%+d'", "'%o'", "'%X'", "'%10.4f'"]

BATCH = ['2', '3', '1', "2, '-'", '3, fill_with=0']
SLICE_ARGS = ['2', '3', '1', "2, '-'", '4, 0']
SORT_ARGS = ['', 'reverse=true', 'case_sensitive=true', 'true, true', 'attribute=0', 'attribute="0", reverse=true']
DICTSORT = ['', 'true', 'by="value"', 'reverse=true', 'false, "value", true']
METHOD_ARGS = ['8', '3', "10, '*'", '', "','", 'true']
INDENT = ['', '2', '2, true', 'first=true', 'blank=true', '2, true, true', "width='> '", '0', 'width=3, first=true, blank=true']
TRUNCATE = ['', '5', '3, true', "5, false, '..'", '4, leeway=0', "10, true, '', 0", "length=6, end='!'"]

TOJSON = ['', 'indent=2', 'sort_keys=true', 'indent=0', 'indent=1, sort_keys=true', "indent='--'"]


class Focus(Gen):
    """Gen with expression families of its own, chosen most of the time; the rest is fuzz_jinja2's grammar."""

    def compound(self, kind, depth):
        if self.chance(0.3):
            return super().compound(kind, depth)
        r = self.r
        d = depth + 1
        S = lambda: self.expr('str', d)   # noqa: E731
        L = lambda: self.expr('list', d)  # noqa: E731
        A = lambda: self.expr('any', d)   # noqa: E731
        N = lambda: self.expr(r.choice(['int', 'num']), d)  # noqa: E731
        if kind in ('int', 'num'):
            return r.choice([
                lambda: f'({S()}).{r.choice(["find", "rfind", "count", "index", "rindex"])}({self.lit("str")}{r.choice(["", ", 1", ", -3", ", 1, 4"])})',
                lambda: f'{A()} | length',
                lambda: f'{L()} | sum(start={N()})',
                lambda: f"items | sum(attribute='v')",
                lambda: f"{S()} | int({r.choice(['', '-1', 'base=2', 'base=8', '5, 16', 'default=3, base=36'])})",
                lambda: f"{S()} | float({r.choice(['', '-1', 'default=0.5'])})",
                lambda: f'{N()} | round({r.choice(ROUND)})',
                lambda: f'{L()} | {r.choice(["min", "max"])}({r.choice(["", "case_sensitive=true", "attribute=0"])})',
                lambda: f'{A()} | wordcount',
                lambda: f'{N()} {r.choice(["//", "%", "/"])} {r.choice(["3", "-3", "2.5", "-0.5", "1", "0.1", "0"])}',
                # a negative base to a fractional power is complex in Python, which is not modeled
                lambda: f'{N()} ** {r.choice(["2", "3", "-1", "0"])}',
            ])()
        if kind == 'bool':
            return r.choice([
                lambda: f'{A()} is {r.choice(TESTS)}',
                lambda: f'{A()} is not {r.choice(TESTS)}',
                lambda: f'({S()}).{r.choice(["startswith", "endswith"])}(({self.lit("str")}, {self.lit("str")}){r.choice(["", ", 1", ", 0, 2", ", -2"])})',
                lambda: f'({S()}).{r.choice(["startswith", "endswith"])}({self.lit("str")}{r.choice(["", ", 1", ", 0, 2", ", -2"])})',
                lambda: f'({S()}).{r.choice(["isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "istitle", "isdecimal"])}()',
                lambda: f'{A()} {r.choice(["==", "!="])} {A()}',
                lambda: f'{N()} is divisibleby({r.choice(["2", "3", "0", "1.5", "-2"])})',
            ])()
        if kind == 'list':
            return r.choice([
                lambda: f'({S()}).{r.choice(["split", "rsplit"])}({r.choice(SEPS)}{r.choice(["", ", 1", ", 0", ", -1", ", 2"])})',
                lambda: f'({S()}).split(maxsplit={r.choice(["1", "0", "2"])})',
                lambda: f'({r.choice([L(), S(), "(1, 2, 3, 4)", "range(7)"])})[{r.choice(SLICES)}] | list',
                lambda: f'{L()} | batch({r.choice(BATCH)}) | list',
                lambda: f'{L()} | slice({r.choice(SLICE_ARGS)}) | list',
                lambda: f"{L()} | {r.choice(['select', 'reject'])}({r.choice(['', repr('odd'), repr('string'), repr('none'), repr('number'), repr('defined'), repr('divisibleby') + ', 3', repr('in') + ', [1, 2]', repr('gt') + ', 0', repr('equalto') + ', 1', repr('true'), repr('sequence')])}) | list",
                lambda: f"items | {r.choice(['selectattr', 'rejectattr'])}({r.choice([repr('ok'), repr('v') + ', ' + repr('odd'), repr('name') + ', ' + repr('in') + ', ' + repr('xy'), repr('v') + ', ' + repr('ge') + ', 2', repr('missing'), repr('missing') + ', ' + repr('none'), repr('v') + ', ' + repr('none')])}) | list",
                lambda: f"{r.choice(['items', 'messages'])} | map(attribute={r.choice([repr('name'), repr('v'), repr('role'), repr('missing'), repr('content')])}{r.choice(['', ', default=' + repr('?')])}) | list",
                lambda: f"{L()} | map({r.choice([repr('string'), repr('int'), repr('length') if False else repr('abs'), repr('round'), repr('upper'), repr('default') + ', 0', repr('replace') + ', ' + repr('a') + ', ' + repr('b'), repr('float')])}) | list",
                lambda: f"{L()} | sort({r.choice(SORT_ARGS)})",
                lambda: f"items | sort(attribute={r.choice([repr('v'), repr('name'), repr('v,name'), repr('ok')])}{r.choice(['', ', reverse=true'])}) | map(attribute='name') | list",
                lambda: f"{L()} | unique{r.choice(['', '(case_sensitive=true)', '(attribute=0)'])} | list",
                lambda: f"items | groupby({r.choice([repr('name'), repr('v'), repr('ok'), repr('missing')])}{r.choice(['', ', default=0', ', case_sensitive=true'])}) | list",
                lambda: f"{self.expr('dict', d)} | dictsort({r.choice(DICTSORT)})",
                lambda: f'{L()} | reverse | list',
                lambda: f'{A()} | list',
                lambda: f'{L()} | {r.choice(["first", "last"])} | list' if self.chance(0.3) else f'[{L()} | first, {L()} | last]',
            ])()
        # str and any
        return r.choice([
            lambda: f'({S()}).{r.choice(["strip", "lstrip", "rstrip"])}({r.choice(CHARS)})',
            lambda: f'({S()}).replace({self.lit("str")}, {self.lit("str")}, {r.choice(["0", "1", "2", "-1"])})',
            lambda: f'{S()} | replace({self.lit("str")}, {self.lit("str")}{r.choice(["", ", 1", ", count=0", ", -1"])})',
            lambda: f'{r.choice(FORMATS)}.format({A()}, {A()}, a={A()}, b={N()})',
            lambda: f'{r.choice(PRINTF)} % {r.choice([A(), "(" + A() + ", " + A() + ")", "d", "(" + N() + ",)"])}',
            lambda: f'{r.choice(PRINTF)} | format({r.choice([A(), A() + ", " + A(), "a=" + A(), ""])})',
            lambda: f'({r.choice([S(), L()])})[{r.choice(SLICES)}]',
            lambda: f'({S()}).{r.choice(["center", "ljust", "rjust", "zfill", "partition", "rpartition", "splitlines"])}({r.choice(METHOD_ARGS)})',
            lambda: f'{L()} | join({r.choice(["", repr(", "), "attribute=" + repr("name"), repr("|") + ", attribute=0", "d=" + repr("-")])})',
            lambda: f'items | join(",", attribute={r.choice([repr("name"), repr("v"), repr("missing")])})',
            lambda: f'{A()} | {r.choice(["string", "trim", "title", "capitalize", "upper", "lower", "reverse", "first", "last", "length", "wordcount", "center", "list"])}',
            lambda: f'{S()} | trim({r.choice(CHARS)})',
            lambda: f'{S()} | indent({r.choice(INDENT)})',
            lambda: f'{S()} | center({r.choice(["", "9", "3", "20", "width=10"])})',
            lambda: f'{S()} | truncate({r.choice(TRUNCATE)})',
            lambda: f'{S()} | {r.choice(["title", "capitalize", "wordcount", "upper"])}',
            lambda: f'{A()} | tojson({r.choice(TOJSON)})',
            lambda: f'{A()} | default({self.lit("str")}{r.choice(["", ", true", ", boolean=false", ", boolean=true"])})',
            lambda: f'{A()} | {r.choice(["first", "last", "min", "max", "sum", "unique | list", "sort | list", "batch(2) | list", "slice(2) | list", "join", "dictsort", "items | list", "string | length", "abs", "round", "int", "float"])}',
            lambda: f'{r.choice(ERRORS)}',
            lambda: f'{A()} | string',
        ])()

    def for_loop(self, depth):
        r = self.r
        if depth >= 2 or self.chance(0.5):
            return super().for_loop(depth)
        # nested loops: the inner loop's loop shadows the outer's, which templates keep with set
        x, y, o = self.fresh('x'), self.fresh('y'), self.fresh('outer')
        src = r.choice(['messages', 'ints', 'strs', 'range(3)', 'd', "'ab'", 'items'])
        inner = r.choice([f'{x} | string', 'range(2)', 'ints', f'[{x}, {x}]', "'xy'", 'strs'])
        attrs = ['loop.index', 'loop.index0', 'loop.revindex', 'loop.revindex0', 'loop.first', 'loop.last',
                 'loop.length', 'loop.depth', 'loop.depth0', 'loop.previtem', 'loop.nextitem', "loop.cycle('a', 'b', 'c')",
                 f'{o}.index', f'{o}.last', f'{o}.cycle(1, 2)', f'{o}.previtem', 'loop.changed(' + y + ')']
        cond = r.choice(['', '', f' if {y} is not none', f' if loop.index > 1' if False else f' if {y}'])
        self.vars += [(x, 'any'), (y, 'any')]
        self.in_loop += 2
        body = self.stmts(depth + 2, 1) if self.chance(0.4) else ''
        self.in_loop -= 2
        self.vars = self.vars[:-2]
        return (self.block(f'for {x} in {src}') + self.ws() + self.block(f'set {o} = loop') +
                self.ws() + self.block(f'for {y} in {inner}{cond}') + body + self.ws() +
                self.out(r.choice(attrs)) + self.out(r.choice(attrs)) + self.text() + self.ws() +
                self.block('endfor') + self.ws() + self.block('endfor') + self.text())

    def macro(self, depth):
        r = self.r
        if self.chance(0.5):
            return super().macro(depth)
        name = self.fresh('mac')
        form = r.choice([
            ('a, b=a', [f'{name}(1)', f'{name}(1, 2)', f'{name}(b=3, a=4)']),
            ('a=[], b={}', [f'{name}()', f'{name}(none)', f'{name}(b=1)']),
            ('a, b=none, c="x"', [f'{name}(s)', f'{name}(s, c=n)', f'{name}(1, 2, 3)', f'{name}(1, 2, 3, 4)']),
            ('', [f'{name}()', f'{name}(1)', f'{name}(1, 2)', f'{name}(z=1)']),
            ('a', [f'{name}()', f'{name}(a=1, a2=2)', f'{name}(s)']),
        ])
        params, calls = form
        body = r.choice(['{{ a }}|{{ b }}', '{{ a is defined }}{{ b | default("D") }}', '[{{ varargs }}]',
                         '{{ kwargs }}', '{{ c }}{{ a }}', '{{ caller is defined }}', '{{ a ~ b }}', '{{ mac_name }}'])
        body = body.replace('mac_name', name)
        out = self.block(f'macro {name}({params})') + body + self.block('endmacro')
        for c in r.sample(calls, r.randint(1, len(calls))):
            out += self.ws() + self.out(c)
        return out + self.text()

    def stmt(self, depth):
        r = self.r
        if self.chance(0.08):
            # whitespace control around block tags under trim_blocks/lstrip_blocks
            ctl = lambda: r.choice(['', '-', '+'])  # noqa: E731
            return (r.choice(['', '  ', '\n', ' x ', '\n\t ']) + '{%' + ctl() + ' if b %}' + r.choice(['', '\n', '  \n', ' ']) +
                    '{{' + r.choice(['', '-']) + ' s ' + r.choice(['', '-']) + '}}' + r.choice(['', '\n', '  ']) +
                    '{%' + ctl() + ' else ' + r.choice(['', '-']) + '%}' + r.choice(['\n', ' \n', '']) + '  {#' + ctl() +
                    ' c ' + r.choice(['', '-']) + '#}' + r.choice(['\n', ' ']) + '{%' + ctl() + ' endif ' +
                    r.choice(['', '-']) + '%}' + r.choice(['', '\n', '\n\n', ' \n']))
        return super().stmt(depth)

    def namespace(self, depth):
        r = self.r
        if self.chance(0.5):
            return super().namespace(depth)
        ns = self.fresh('ns')
        init = r.choice(['', 'a=1', 'a=[], b=none', 'd', "{'a': 2}, b=3", 'a=s'])
        upd = r.choice([f'{ns}.a = {ns}.a + 1', f'{ns}.a = ({ns}.a | default(0)) ~ "x"', f'{ns}.c = loop.index',
                        f'{ns}.a = {ns}.a + [1]', f'{ns}.b = {ns}.b or 5'])
        show = r.choice([f'{ns}.a', f'{ns}.b', f'{ns}.c', f'{ns}', f'{ns}.a is defined', f'{ns}["a"]', f'{ns} | length'])
        return (self.block(f'set {ns} = namespace({init})') + self.ws() + self.block('for z in range(3)') +
                self.block(f'set {upd}') + self.block('endfor') + self.out(show) + self.text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, default=20260728)
    ap.add_argument('--count', type=int, default=1500)
    ap.add_argument('--out', default=os.path.join(RESOURCES, 'fuzz-focus.json'))
    a = ap.parse_args()
    generate(a.seed, a.count, a.out, 'tools/reference/chat-templates/fuzz_focus.py', Focus,
             lambda text: '0x' in text.lower() or '<function' in text or '<Namespace' in text or 'object at' in text.lower(),
             CAUGHT + (AssertionError,))


if __name__ == '__main__':
    main()
