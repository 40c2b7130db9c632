#!/usr/bin/env python3
"""Differential fuzzing of patchcore's chat-template interpreter against Python Jinja2.

Generates random templates from a grammar of the constructs docs/chat-templates.md says the interpreter supports
(text with newlines and indentation around tags, whitespace control, if/for/set/macro/filter blocks, loop controls,
expressions with Jinja2's operators, tests, filters and str/dict/list methods) over random contexts, renders each with
Jinja2 in the environment transformers' apply_chat_template uses (check_jinja2.environment), and writes
src/test/resources/chat-templates/fuzz.json: {seed, now, cases: [{template, context, text | error}]}.
ChatTemplateFuzzTest renders every case with ChatTemplate and requires the same text (or an error where Jinja2 failed).

    python3 tools/reference/chat-templates/fuzz_jinja2.py [--seed N] [--count N]

The set is reproducible: the same seed and Jinja2 version write the same file.
"""
import argparse
import datetime
import json
import os
import random
import sys

from jinja2.exceptions import TemplateError, TemplateSyntaxError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_jinja2 import RESOURCES, environment  # noqa: E402

NOW = '2024-07-23T09:05:03Z'

# ---------------------------------------------------------------- contexts

WORDS = ['hi', 'Hello', 'world', ' padded ', 'a b  c', '', ' ', '\n', 'line1\nline2', '\ttab', 'ünï', 'café',
         '日本語', '😀 emoji', '\u00a0nbsp\u00a0', 'x,y,z', 'MiXeD', 'ALL CAPS', 'it\'s', 'say "hi"', 'back\\slash',
         '<tag> & amp', '42', '-3', '3.5', ' 42 ', '0x1A', '1e3', 'inf', '4_2', '010', 'ß', 'İstanbul', 'ǅemal', 'user', 'assistant', 'system', '  \n lead', 'trail \n ', 'abc']
STRIP_ARGS = ["' '", "'ab'", "'x'", "'\\n'"]
GET_KEYS = ['"a"', '"b"', '"zz"']
ATTR_KEYS = ['"a"', '"name"', '"b"']
ROUND_ARGS = ['', '1', '0, "floor"', '1, "ceil"', '2, "common"']
DICT_ARGS = ['a=1', 'a=1, b="x"', '']
PAIRS = ['d.items()', 'd | dictsort', 'd | items', '{"p": 1, "q": 2}.items()']
UNPACK = ['(1, "two")', '[n, s]', '"xy"', 'd.c[:2]']
STRFTIME = ["'%Y-%m-%d'", "'%d %b %Y'", "'%-d %B %Y, %A'", "'%H:%M:%S %p %I %j %U %a %y %%'", "'%e|%m|%-m|%-H'"]
DICTSORT_ARGS = ['reverse=true', "by='value'", 'true', "false, 'key', true"]
NUMSTRS = ['42', ' 42 ', '-3', '3.9', '0x1A', '1e3', 'inf', 'nan', '4_2', '', 'abc', '010', '+5', '1.5e-7']
ROLES = ['system', 'user', 'assistant', 'tool']


def rand_str(r):
    return r.choice(WORDS)


def rand_scalar(r):
    k = r.randrange(8)
    if k == 0:
        return r.randint(-20, 20)
    if k == 1:
        return r.choice([0.5, -1.25, 2.0, 0.1, 3.14159, -0.0, 1e-05, 100.0, 7.5])
    if k == 2:
        return r.choice([True, False])
    if k == 3:
        return None
    return rand_str(r)


def rand_value(r, depth=0):
    k = r.randrange(10)
    if depth < 2 and k == 0:
        return [rand_value(r, depth + 1) for _ in range(r.randrange(4))]
    if depth < 2 and k == 1:
        return {r.choice(['a', 'b', 'c', 'name', 'k', 'x']): rand_value(r, depth + 1) for _ in range(r.randrange(4))}
    return rand_scalar(r)


def rand_context(r):
    msgs = []
    for _ in range(r.randrange(5)):
        m = {'role': r.choice(ROLES), 'content': rand_str(r)}
        if r.random() < 0.2:
            m['name'] = r.choice(['bob', 'alice'])
        if r.random() < 0.1:
            m['content'] = None
        msgs.append(m)
    return {
        'messages': msgs,
        'add_generation_prompt': r.choice([True, False]),
        'bos_token': '<s>',
        'eos_token': '</s>',
        'n': r.randint(-5, 12),
        'm': r.randint(1, 7),
        'f': r.choice([0.5, -2.75, 3.0, 1.1, 0.0, 12.5]),
        'neg': r.randint(-9, -1),
        'b': r.choice([True, False]),
        'nothing': None,
        's': rand_str(r),
        't': rand_str(r),
        'ints': [r.randint(-9, 9) for _ in range(r.randrange(6))],
        'strs': [rand_str(r) for _ in range(r.randrange(5))],
        'd': {'a': r.randint(0, 5), 'b': rand_str(r), 'c': [1, 2, 3], 'e': {'x': rand_scalar(r)}},
        'items': [{'name': r.choice(['x', 'y', 'z']), 'v': r.randint(0, 4), 'ok': r.choice([True, False])}
                  for _ in range(r.randrange(5))],
        'nested': rand_value(r),
    }


# ---------------------------------------------------------------- templates


class Gen:
    def __init__(self, r):
        self.r = r
        self.vars = []          # (name, kind) in scope besides the context
        self.in_loop = 0
        self.macros = []        # (name, nargs)
        self.ns = []            # namespace names
        self.counter = 0

    def fresh(self, prefix='v'):
        self.counter += 1
        return f'{prefix}{self.counter}'

    def chance(self, p):
        return self.r.random() < p

    # ---- tags and text

    def ws(self):
        return self.r.choice(['', '', '', ' ', '\n', '  ', '\n  ', '\n\n', ' \t', '\t\n', 'x', ' y ', '\nz\n   ', '\u00a0',
                              'é\n', '  \n', 'text ', '\r\n', '\r\n  ', ' \r'])

    def text(self):
        return self.r.choice(['', '', 'A', 'B\n', '\n', '  ', '\n    ', ' - ', '[', ']', 'é', '😀', '\n\n  \n', '\t', ':',
                              '{ not a tag }', 'curly } brace', '%'])

    def ctl(self, left):
        c = self.r.choice(['', '', '', '-', '-', '+']) if left else self.r.choice(['', '', '', '-'])
        return c

    def block(self, body):
        return '{%' + self.ctl(True) + ' ' + body + ' ' + self.ctl(False) + '%}'

    def out(self, expr):
        # escape and safe return Markup, which the interpreter accepts only where it is printed at once
        if self.chance(0.05):
            expr = f'({expr}) | {self.r.choice(["e", "escape", "safe"])}'
        return '{{' + self.r.choice(['', '', '-']) + ' ' + expr + ' ' + self.r.choice(['', '', '-']) + '}}'

    def comment(self):
        return '{#' + self.r.choice(['', '-']) + ' ' + self.r.choice(['note', '{{ x }}', 'multi\nline', '%}']) + ' ' \
            + self.r.choice(['', '-']) + '#}'

    def indent(self):
        return self.r.choice(['', '', '    ', '  ', '\t'])

    # ---- expressions, typed to keep most renderings meaningful

    def names(self, kind):
        ctx = {
            'str': ['s', 't', 'bos_token', 'd.b', "d['b']", 'messages[0].content' if self.chance(0.3) else 's'],
            'int': ['n', 'm', 'neg', 'd.a', "d['a']", 'ints|length', 'messages|length'],
            'num': ['f', 'n', 'neg'],
            'bool': ['b', 'add_generation_prompt'],
            'list': ['ints', 'strs', 'messages', 'd.c', 'items'],
            'dict': ['d', 'd.e'],
            'any': ['nothing', 'nested', 's', 'n', 'f', 'b', 'ints', 'd', 'messages', 'items'],
        }[kind]
        mine = [n for n, k in self.vars if k == kind or kind == 'any']
        return ctx + mine * 2

    def lit(self, kind):
        r = self.r
        if kind == 'str':
            return r.choice(["'a'", '"b"', "''", "' '", "'x y'", "'\\n'", "'tab\\there'", "'it\\'s'", '"q\\"uote"',
                             "'ünï'", "'😀'", "'\\u00e9'", "'back\\\\'", "'\\d'", "'A,B,C'", "'  pad  '", "'%'",
                             "'{}'", "'-'", "'\\x41\\101\\t'", "'caf\\u00e9'", "'\\N{BULLET}'", "'ß'", "'ǅ'", "'İ'", "'ﬁ'"])
        if kind == 'int':
            return str(r.choice([0, 1, 2, 3, -1, -2, 5, 10, 7, 100]))
        if kind == 'num':
            return r.choice(['0.5', '1.5', '-2.25', '2.0', '1e3', '0.1', '3', '-0', '1.5e-7', '123456789.125', '-0.0',
                             '0.3'])
        if kind == 'bool':
            return r.choice(['true', 'false', 'True', 'False'])
        if kind == 'list':
            n = r.randrange(4)
            ek = r.choice(['int', 'str'])
            return '[' + ', '.join(self.expr(ek, 3) for _ in range(n)) + ']'
        if kind == 'dict':
            n = r.randrange(3)
            return '{' + ', '.join(f"'{k}': {self.expr(r.choice(['int', 'str']), 3)}"
                                   for k in r.sample(['a', 'b', 'k', 'z'], n)) + '}'
        return r.choice(['none', 'None', "'s'", '1', '[1, 2]', '(1, 2)', '(1,)', '()'])

    def expr(self, kind='any', depth=0):
        r = self.r
        if depth >= 2 or self.chance(0.35):
            return r.choice(self.names(kind)) if self.chance(0.55) else self.lit(kind)
        e = self.compound(kind, depth)
        # sub-expressions are mostly parenthesized; the rest test precedence (or fail to compile and are dropped)
        return f'({e})' if depth > 0 and self.chance(0.85) else e

    def compound(self, kind, depth):
        r = self.r
        d = depth + 1
        e = lambda k=kind: self.expr(k, d)  # noqa: E731
        if kind == 'str':
            return r.choice([
                lambda: f'{e()} ~ {e()}',
                lambda: f'{e()} ~ {self.expr("any", d)}',
                lambda: f'{e()} + {e()}',
                lambda: f'({e()} | {r.choice(["upper", "lower", "capitalize", "title", "trim", "string"])})',
                lambda: f"{e()} | replace({self.lit('str')}, {self.lit('str')})",
                lambda: f"{e()} | replace({self.lit('str')}, {self.lit('str')}, {r.randint(0, 2)})",
                lambda: f'{e()} | indent({r.choice(["", "2", "first=true", "4, true", "2, blank=true", "width=1"])})',
                lambda: f"{self.expr('list', d)} | join({r.choice(['', repr(', '), repr('-')])})",
                lambda: f"({e()}).{r.choice(['strip', 'lstrip', 'rstrip', 'upper', 'lower', 'title', 'capitalize'])}()",
                lambda: f"({e()}).{r.choice(['strip', 'lstrip', 'rstrip'])}({r.choice(STRIP_ARGS)})",
                lambda: f"({e()}).replace({self.lit('str')}, {self.lit('str')})",
                lambda: f"({e()}).removeprefix({self.lit('str')})",
                lambda: f"({e()}).removesuffix({self.lit('str')})",
                lambda: f"{self.lit('str')}.join({self.expr('list', d)} | map('string'))",
                lambda: f"'{{}}-{{}}'.format({e()}, {self.expr('any', d)})",
                lambda: f"'{{0}}:{{name}}'.format({e()}, name={self.expr('int', d)})",
                lambda: f'({e()})[{r.choice(["0", "-1", "1:", ":2", "::-1", "1:-1", "::2", "-2:", "5:1", "::-2"])}]',
                lambda: f'{e()} if {self.expr("bool", d)} else {e()}',
                lambda: f'{self.expr("any", d)} | string',
                lambda: f'{self.expr("any", d)} | tojson{r.choice(["", "", "(indent=2)", "(sort_keys=true)", "(indent=1, sort_keys=True)"])}',
                lambda: f'{self.expr("dict", d)} | tojson',
                lambda: f'{self.expr("any", d)} | default({e()}{r.choice(["", ", true", ", boolean=true"])})',
                lambda: f'{e()} | first',
                lambda: f'{e()} | last',
                lambda: f'{e()} | reverse | join',
                lambda: f'{e()} | list | sort | join',
                lambda: f'{e()} | unique | list | join("|")',
                lambda: f"{self.expr('list', d)} | map(attribute='name') | join(',')",
                lambda: f"{self.expr('list', d)} | map('upper') | join(',')" if self.chance(0.5) else f"{self.expr('list', d)} | map('string') | map('upper') | join(',')",
                lambda: f"({e()}).split({r.choice(['', repr(','), repr(' '), 'none, 1', repr(',') + ', 1'])}) | join('/')",
                lambda: f"({e()}).rsplit({r.choice([repr(','), repr(' ') + ', 1'])}) | join('/')",
                lambda: f"({e()}).splitlines() | join('|')",
                lambda: f"({self.expr('dict', d)}).get({r.choice(GET_KEYS)}, {e()}) | string",
                lambda: f"{self.expr('any', d)} | attr({r.choice(ATTR_KEYS)}) | string",
                lambda: f"{self.expr('dict', d)} | dictsort | string",
                lambda: f"{self.expr('dict', d)} | items | list | string",
                lambda: f"{self.expr('list', d)} | string",
                lambda: f"{self.expr('num', d)} | round({r.choice(ROUND_ARGS)}) | string",
                lambda: f"{e()} | select('string') | join" if False else f"{self.expr('list', d)} | select('odd') | join(',')",
                lambda: f"{self.expr('list', d)} | reject('none') | list | string",
                lambda: f"{self.expr('list', d)} | selectattr('ok') | map(attribute='name') | join",
                lambda: f"{self.expr('list', d)} | rejectattr('v', 'gt', 1) | map(attribute='v') | join",
                lambda: f"{self.expr('list', d)} | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('/')",
                lambda: f"{self.expr('list', d)} | sort(reverse=true) | join(',')",
                lambda: f"{self.expr('list', d)} | sort(attribute='v') | map(attribute='name') | join",
                lambda: f"{e()} | wordcount | string",
                lambda: f"(({self.expr('any', d)}) is {self.test()}) | string",
                lambda: f"{e()} | trim({r.choice(['', repr('x'), repr(' a')])})",
                lambda: f"{self.expr('dict', d)} | dictsort({r.choice(DICTSORT_ARGS)}) | string",
                lambda: f"{self.expr('list', d)} | join(',', attribute='name')" if self.chance(0.3) else f"{self.expr('list', d)} | join(attribute=0)",
                lambda: f"strftime_now({r.choice(STRFTIME)})",
                lambda: f"({self.expr('num', d)}) | string",
                lambda: f"{self.expr('str', d)} | int({r.choice(['', '-1', 'base=16', '0, 8', 'default=7'])}) | string",
                lambda: f"{self.expr('str', d)} | float({r.choice(['', '-1.5'])}) | string",
                lambda: f"{self.lit('str')} | {r.choice(['int', 'float'])}({r.choice(['', '-1'])}) | string",
                lambda: f"{e()} if {self.expr('bool', d)}",
                lambda: f"messages[{r.choice(['0', '-1', 'loop.index0' if self.in_loop else '1'])}]['{r.choice(['role', 'content', 'name'])}']",
                lambda: f"{self.expr('list', d)} | max(attribute='v') | string" if self.chance(0.5) else f"{self.expr('list', d)} | min(case_sensitive=true) | string",
            ])()
        if kind in ('int', 'num'):
            ops = ['+', '-', '*', '//', '%'] + (['/'] if kind == 'num' else [])
            return r.choice([
                lambda: f'{e()} {r.choice(ops)} {e()}',
                # a negative base to a fractional power is complex in Python: exponents are small ints
                lambda: f'{e()} ** {r.choice(["0", "1", "2", "3", "-1", "(2)"])}',
                lambda: f'({e()} {r.choice(ops)} {e()}) {r.choice(ops)} {e()}',
                lambda: f'-{e()}',
                lambda: f'+{e()}' if self.chance(0.3) else f'-({e()})',
                lambda: f'{self.expr("list", d)} | length',
                lambda: f'{self.expr("str", d)} | length',
                lambda: f'{self.expr("dict", d)} | count',
                lambda: f'{e()} | abs',
                lambda: f'{self.expr("str", d)} | int',
                lambda: f'{self.expr("str", d)} | float',
                lambda: f'{self.expr("num", d)} | int',
                lambda: f'{self.expr("int", d)} | float',
                lambda: f'({self.expr("str", d)}).find({self.lit("str")})',
                lambda: f'({self.expr("str", d)}).rfind({self.lit("str")})',
                lambda: f'({self.expr("str", d)}).count({self.lit("str")})',
                lambda: f'({self.expr("list", d)}).count({self.expr("int", d)})',
                lambda: f'({self.expr("list", d)}).index({self.expr("int", d)})',
                lambda: f"[{e()}, {e()}, {e()}] | {r.choice(['sum', 'max', 'min', 'first', 'last'])}",
                lambda: f"{self.expr('list', d)} | sum(attribute='v')" if self.chance(0.3) else f"ints | sum(start={e()})",
                lambda: f'{e()} if {self.expr("bool", d)} else {e()}',
                lambda: f'({self.expr("list", d)})[{e()}]',
                lambda: f'{self.expr("list", d)} | {r.choice(["max", "min"])}',
                lambda: f'range({e()}) | sum' if self.chance(0.5) else f'range({e()}, {e()}, {r.choice(["1", "2", "-1", "-3"])}) | list | length',
                lambda: f'{e()} | round' if kind == 'num' else f'{e()} | round | int',
            ])()
        if kind == 'bool':
            return r.choice([
                lambda: f'{self.expr("any", d)} is {self.test()}',
                lambda: f'{self.expr("any", d)} is not {self.test()}',
                lambda: f'{r.choice(["undefined_name", "foo.bar", "messages[0].missing", "d.zz", "nested.a"])} is {r.choice(["defined", "undefined", "none", "string"])}',
                lambda: f'{e()} and {e()}',
                lambda: f'{e()} or {e()}',
                lambda: f'not {e()}',
                lambda: f'not ({e()} or {e()}) and {e()}',
                lambda: f'{self.expr("int", d)} {r.choice(["<", "<=", ">", ">=", "==", "!="])} {self.expr("num", d)}',
                lambda: f'{self.expr("int", d)} < {self.expr("int", d)} <= {self.expr("int", d)}',
                lambda: f'{self.expr("str", d)} {r.choice(["<", ">", "==", "!="])} {self.expr("str", d)}',
                lambda: f'{self.expr("any", d)} == {self.expr("any", d)}',
                lambda: f'{self.expr("str", d)} {r.choice(["in", "not in"])} {self.expr("str", d)}',
                lambda: f'{self.expr("int", d)} {r.choice(["in", "not in"])} {self.expr("list", d)}',
                lambda: f'{self.lit("str")} {r.choice(["in", "not in"])} {self.expr("dict", d)}',
                lambda: f'({self.expr("str", d)}).{r.choice(["startswith", "endswith"])}({self.lit("str")})',
                lambda: f'({self.expr("str", d)}).startswith(({self.lit("str")}, {self.lit("str")}))',
                lambda: f'({self.expr("str", d)}).{r.choice(["isdigit", "isalpha", "isspace", "islower", "isupper"])}()',
                lambda: f'{self.expr("any", d)} | {r.choice(["bool", "length"])} ' if False else f'{self.expr("list", d)} | length > 1',
                lambda: f'{e()} if {e()} else {e()}',
                lambda: f'{self.expr("any", d)}',
                lambda: f'not {self.expr("str", d)} in {self.expr("str", d)}',
                lambda: f'not {self.expr("any", d)} is {self.test()}',
                lambda: f'{e()} or {e()} and {e()}',
                # sameas is identity: of None and booleans only, as CPython's interning of strings is not modeled
                lambda: f'{self.expr("any", d)} is sameas {r.choice(["none", "true", "false"])}',
                lambda: f'(loop.index0 % 2 == 0) != ({self.expr("str", d)} == "user")' if self.in_loop else f'{e()} == {e()}',
            ])()
        if kind == 'list':
            return r.choice([
                lambda: f'{e()} + {e()}',
                lambda: f'({e()})[{r.choice(["1:", ":2", "::-1", "-2:", "1:3", "::2"])}]',
                lambda: f'{e()} | reverse | list',
                lambda: f'{e()} | sort | list' if self.chance(0.3) else f'{self.expr("str", d)} | list',
                lambda: f'range({r.randint(-1, 5)}) | list',
                lambda: f'({self.expr("dict", d)}).keys() | list',
                lambda: f'({self.expr("dict", d)}).values() | list',
                lambda: f'({self.expr("str", d)}).split()',
                lambda: f'{e()} | unique | list',
                lambda: f'{e()} | select | list',
                lambda: f'{e()} if {self.expr("bool", d)} else {e()}',
                lambda: f"{e()} | map('string') | list",
            ])()
        if kind == 'dict':
            return r.choice([
                lambda: f'dict({r.choice(DICT_ARGS)})',
                lambda: f'{e()} if {self.expr("bool", d)} else {e()}',
                lambda: f'({self.expr("list", d)})[0] if {self.expr("list", d)} else {{}}',
            ])()
        return self.compound(r.choice(['str', 'int', 'num', 'bool', 'list', 'dict']), depth)

    def test(self):
        r = self.r
        return r.choice(['defined', 'undefined', 'none', 'string', 'number', 'integer', 'float', 'boolean', 'true',
                         'false', 'mapping', 'iterable', 'sequence', 'callable', 'odd', 'even', 'divisibleby(3)',
                         'divisibleby 2', 'eq(1)', 'equalto "a"', "ne('x')", 'lt(3)', 'le 2', 'gt(0)',
                         'ge(1)', "in(['a', 1])", "in 'abc'", 'sameas(none)', 'sameas true', 'lower',
                         'upper', 'filter', 'test', 'number', 'string'])

    # ---- statements

    def stmts(self, depth, n=None):
        if n is None:
            n = self.r.randint(1, 3)
        return ''.join(self.stmt(depth) for _ in range(n))

    def stmt(self, depth):
        r = self.r
        k = r.random()
        pre = self.ws()
        if k < 0.02:
            # large floats print as 1e+16, but through | int they would be ints beyond 64 bits: printed only
            return pre + self.out(r.choice(['1e16', '1e22', '-1.5e300', '1e16 * f', '2.5e-5 + 0', '1e15 + 0.5'])) + self.text()
        if depth >= 2 or k < 0.35:
            kind = r.choice(['str', 'str', 'int', 'num', 'bool', 'list', 'dict', 'any'])
            return pre + self.out(self.expr(kind)) + self.text()
        if k < 0.40:
            return pre + self.comment() + self.text()
        if k < 0.52:
            body = pre + self.block(f'if {self.expr("bool")}') + self.stmts(depth + 1)
            for _ in range(r.randrange(3)):
                body += self.ws() + self.indent() + self.block(f'elif {self.expr("bool")}') + self.stmts(depth + 1)
            if self.chance(0.5):
                body += self.ws() + self.indent() + self.block('else') + self.stmts(depth + 1)
            return body + self.ws() + self.indent() + self.block('endif') + self.text()
        if k < 0.67:
            return pre + self.for_loop(depth)
        if k < 0.77:
            return pre + self.set_stmt(depth)
        if k < 0.83:
            return pre + self.namespace(depth)
        if k < 0.90:
            return pre + self.macro(depth)
        if k < 0.95:
            f = r.choice(['upper', 'trim', 'lower | replace("a", "@")', 'indent(2)', 'title', 'capitalize', 'e',
                          'replace("\\n", "/")'])
            loops, self.in_loop = self.in_loop, 0
            body = self.stmts(depth + 1)
            self.in_loop = loops
            return pre + self.block(f'filter {f}') + body + self.ws() + self.block('endfilter') + self.text()
        if self.in_loop:
            cond = self.expr('bool', 2)
            return pre + self.block(f'if {cond}') + self.ws() + self.block(r.choice(['break', 'continue'])) + \
                self.ws() + self.block('endif')
        return pre + self.out(self.expr('str'))

    def for_loop(self, depth):
        r = self.r
        x = self.fresh('x')
        form = r.randrange(6)
        if form == 0:
            head, vs = f'{x} in messages', [(x, 'dict')]
        elif form == 1:
            head, vs = f'{x} in ({self.expr("list", 2)})', [(x, 'any')]
        elif form == 2:
            k, v = self.fresh('k'), self.fresh('w')
            head, vs = f'{k}, {v} in {r.choice(PAIRS)}', [(k, 'str'), (v, 'any')]
        elif form == 3:
            head, vs = f'{x} in range({r.choice(["3", "n", "m", "1, 6, 2", "5, 0, -1", "neg"])})', [(x, 'int')]
        elif form == 4:
            head, vs = f'{x} in ({self.expr("str", 2)})', [(x, 'str')]
        else:
            head, vs = f'{x} in d', [(x, 'str')]
        if self.chance(0.3):
            head += f' if {self.expr("bool", 2)}' if self.chance(0.5) else f' if not loop is defined'
        saved = list(self.vars)
        self.vars += vs
        self.in_loop += 1
        body = self.stmts(depth + 1)
        if self.chance(0.6):
            body += self.ws() + self.out(r.choice(['loop.index', 'loop.index0', 'loop.revindex', 'loop.revindex0',
                                                  'loop.first', 'loop.last', 'loop.length', 'loop.depth',
                                                  'loop.depth0', 'loop.previtem', 'loop.nextitem',
                                                  "loop.cycle('odd', 'even')", "loop.cycle(1, 2, 3)",
                                                  "'' if loop.last else ', '", 'loop.previtem is defined',
                                                  'loop.nextitem is undefined']))
        self.in_loop -= 1
        self.vars = saved
        out = self.block(f'for {head}') + body
        if self.chance(0.25):
            out += self.ws() + self.indent() + self.block('else') + self.stmts(depth + 1)
        return out + self.ws() + self.indent() + self.block('endfor') + self.text()

    def set_stmt(self, depth):
        r = self.r
        v = self.fresh('s')
        kind = r.choice(['str', 'int', 'num', 'list', 'bool'])
        if self.chance(0.15):
            a, b = self.fresh('a'), self.fresh('b')
            out = self.block(f'set {a}, {b} = {r.choice(UNPACK)}')
            self.vars += [(a, 'any'), (b, 'any')]
            return out + self.text()
        if self.chance(0.2):
            flt = r.choice(['', '', ' | upper', ' | trim', ' | replace("x", "y")', ' | length'])
            loops, self.in_loop = self.in_loop, 0
            body = self.stmts(depth + 1)
            self.in_loop = loops
            out = self.block(f'set {v}{flt}') + body + self.ws() + self.block('endset')
            self.vars.append((v, 'int' if 'length' in flt else 'str'))
            return out + self.text()
        out = self.block(f'set {v} = {self.expr(kind)}')
        self.vars.append((v, kind))
        return out + self.text()

    def namespace(self, depth):
        r = self.r
        ns = self.fresh('ns')
        out = self.block(f'set {ns} = namespace(c={self.expr("int", 2)}, t={self.lit("str")}, flag=false)')
        self.ns.append(ns)
        x = self.fresh('x')
        src = r.choice(['messages', 'ints', 'strs', 'range(4)'])
        saved = list(self.vars)
        self.vars.append((x, 'any'))
        upd = r.choice([f'{ns}.c = {ns}.c + 1', f'{ns}.t = {ns}.t ~ {x} | string', f'{ns}.flag = true',
                        f'{ns}.c = {ns}.c * 2 + loop.index'])
        out += self.ws() + self.block(f'for {x} in {src}') + self.ws() + self.block(f'set {upd}') + \
            (self.stmts(depth + 2, 1) if self.chance(0.3) else '') + self.ws() + self.block('endfor')
        self.vars = saved
        self.vars += [(f'{ns}.c', 'int'), (f'{ns}.t', 'str'), (f'{ns}.flag', 'bool')]
        return out + self.text()

    def macro(self, depth):
        r = self.r
        name = self.fresh('mac')
        p1, p2 = self.fresh('p'), self.fresh('q')
        params = r.choice([[p1], [p1, f'{p2}="dflt"'], [p1, f'{p2}=2'], []])
        saved = list(self.vars)
        if params:
            self.vars.append((p1, 'any'))
        if len(params) > 1:
            self.vars.append((p2, 'str' if 'dflt' in params[1] else 'int'))
        loops, self.in_loop = self.in_loop, 0
        body = self.stmts(depth + 1)
        self.in_loop = loops
        self.vars = saved
        out = self.block(f'macro {name}({", ".join(params)})') + body + self.ws() + self.block('endmacro')
        calls = []
        for _ in range(r.randint(1, 2)):
            if not params:
                args = ''
            elif len(params) == 1:
                args = self.expr('any', 2)
            else:
                args = r.choice([self.expr('any', 2), f'{self.expr("any", 2)}, {self.expr("int", 2)}',
                                 f'{self.expr("any", 2)}, {p2}={self.lit("str")}', f'{p2}=1, {p1}={self.lit("str")}'])
            calls.append(self.ws() + self.out(f'{name}({args})' + r.choice(['', '', ' | trim', ' | upper', ' | length'])))
        return out + ''.join(calls) + self.text()

    def template(self):
        return self.stmts(0, self.r.randint(1, 4)) + self.ws()


def generate(seed, count, out, generator, make_gen, is_repr, caught):
    """Writes count cases of templates from make_gen(random) that Jinja2 compiles, with its rendering or error, to out
    (one case a line): renderings is_repr says are object reprs are dropped, the exception types in caught are errors."""
    env = environment(datetime.datetime.strptime(NOW, '%Y-%m-%dT%H:%M:%SZ'))
    r = random.Random(seed)
    cases, errors, syntax = [], 0, 0
    while len(cases) < count:
        template = make_gen(r).template()
        context = rand_context(r)
        try:
            compiled = env.from_string(template)
        except (TemplateSyntaxError, SyntaxError):
            syntax += 1  # the grammar is loose in places; only templates Jinja2 compiles are kept
            continue
        case = {'template': template, 'context': context}
        try:
            text = compiled.render(**context)
            if is_repr(text):
                continue  # object reprs: not a rendering anyone depends on
            case['text'] = text
        except caught as e:
            case['error'] = f'{type(e).__name__}: {e}'
            errors += 1
        except RecursionError:
            continue
        cases.append(case)
    doc = {'generator': generator, 'seed': seed, 'now': NOW, 'cases': cases}
    with open(out, 'w', encoding='utf-8') as f:  # one case a line
        head = json.dumps({k: v for k, v in doc.items() if k != 'cases'}, ensure_ascii=False)
        f.write(head[:-1] + ', "cases": [\n')
        f.write(',\n'.join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write('\n]}\n')
    print(f'{len(cases)} cases ({errors} errors in Jinja2; {syntax} templates that did not compile were dropped), '
          f'{os.path.getsize(out)} bytes')


CAUGHT = (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, default=20240723)
    ap.add_argument('--count', type=int, default=1350)
    ap.add_argument('--out', default=os.path.join(RESOURCES, 'fuzz.json'))
    a = ap.parse_args()
    generate(a.seed, a.count, a.out, 'tools/reference/chat-templates/fuzz_jinja2.py', Gen,
             lambda text: '0x' in text or '<function' in text or '<Namespace' in text, CAUGHT)


if __name__ == '__main__':
    main()
