#!/usr/bin/env python3
"""Renders every case of src/test/resources/chat-templates/expected.json (written by render.js with @huggingface/jinja)
with Python's Jinja2 in the environment transformers' apply_chat_template uses (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now, tojson without ASCII escapes) and reports
where the two differ. ChatTemplateReferenceTest compares patchcore's renderer with expected.json; this checks that
fixture against Jinja2 itself.

    python3 tools/reference/chat-templates/check_jinja2.py      # needs jinja2 (pip or Debian python3-jinja2)
"""
import datetime
import json
import os
import sys

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
RESOURCES = os.path.join(HERE, '..', '..', '..', 'src', 'test', 'resources', 'chat-templates')


def environment(now):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


def main():
    with open(os.path.join(RESOURCES, 'expected.json'), encoding='utf-8') as f:
        expected = json.load(f)
    with open(os.path.join(RESOURCES, 'templates.json'), encoding='utf-8') as f:
        templates = {t['name']: t for t in json.load(f)['templates']}
    now = datetime.datetime.strptime(expected['now'], '%Y-%m-%dT%H:%M:%SZ')
    env = environment(now)
    same = differ = 0
    for c in expected['cases']:
        t = templates[c['template']]
        context = {'messages': expected['conversations'][c['conversation']], 'add_generation_prompt': c['add_generation_prompt']}
        for token in ('bos_token', 'eos_token'):
            if t.get(token) is not None:
                context[token] = t[token]
        if c['conversation'] == 'tool-call':
            context['tools'] = expected['tools']
        try:
            got = {'text': env.from_string(t['chat_template']).render(**context)}
        except TemplateError as e:
            got = {'error': str(e)}
        want = {'text': c['text']} if 'text' in c else {'error': c['error']}
        if got == want or ('error' in got and 'error' in want and not c.get('raised')):
            same += 1
        else:
            differ += 1
            print(f"DIFFERS {c['template']} / {c['conversation']} / add_generation_prompt={c['add_generation_prompt']}:\n"
                  f"  jinja2:             {json.dumps(got, ensure_ascii=False)[:400]}\n"
                  f"  @huggingface/jinja: {json.dumps(want, ensure_ascii=False)[:400]}")
    print(f'{same} of {same + differ} cases render the same in Jinja2 as in expected.json')
    sys.exit(1 if differ else 0)


if __name__ == '__main__':
    main()
