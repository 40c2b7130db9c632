// Builds src/test/resources/chat-templates/expected.json: every template of templates.json (real chat_template strings of
// Hugging Face model folders) rendered for every conversation below, with and without add_generation_prompt, by
// @huggingface/jinja, the Jinja implementation transformers.js renders chat templates with. It mirrors transformers'
// Python environment (trim_blocks, lstrip_blocks, raise_exception, strftime_now, tojson). A case whose rendering
// fails records the error instead of a text, and whether the template raised it itself (raise_exception).
// ChatTemplateReferenceTest renders the same cases with dev.patchcore.chat.ChatTemplate and compares the texts exactly.
//
//   cd tools/reference/chat-templates && npm install && node render.js
'use strict';
process.env.TZ = 'UTC';
const fs = require('fs');
const path = require('path');
const { Template } = require('@huggingface/jinja');

const RESOURCES = path.resolve(__dirname, '../../../src/test/resources/chat-templates');

// strftime_now reads new Date(); fix the clock so the expected texts do not change from day to day. The Java test
// renders with a fixed Clock at the same instant (in UTC).
const NOW = '2026-03-05T09:07:02Z';
const RealDate = Date;
global.Date = class extends RealDate {
  constructor(...args) {
    super(...(args.length ? args : [NOW]));
  }
  static now() {
    return new RealDate(NOW).getTime();
  }
};

const m = (role, content, extra) => ({ role, content, ...(extra || {}) });
const CONVERSATIONS = {
  'user': [m('user', 'What is 2+2?')],
  'system-user': [m('system', 'You are terse.'), m('user', 'Hi')],
  'user-assistant': [m('user', 'Capital of France?'), m('assistant', 'Paris.')],
  'multi-turn': [m('system', 'Be brief.'), m('user', 'Hi'), m('assistant', 'Hello!'), m('user', '2+2?'),
    m('assistant', '4'), m('user', 'And 3+3?')],
  'whitespace': [m('system', '  Spaces around.  '), m('user', '\n\tIndented\n  lines\n\n'), m('assistant', ' ok \n'),
    m('user', 'trailing newline\n')],
  'non-ascii': [m('user', '\u00a0Caf\u00e9 \u2014 na\u00efve? \u4f60\u597d \ud83d\ude00\t'), m('assistant', ' Oui, tr\u00e8s. \u00e9\u00e8'),
    m('user', 'Und jetzt? \u00fc\u00f6\u00e4\u00df')],
  'empty-content': [m('user', ''), m('assistant', ''), m('user', 'x')],
  'two-users': [m('user', 'first'), m('user', 'second')],
  'starts-with-assistant': [m('assistant', 'I speak first.'), m('user', 'ok')],
  'thinking': [m('user', 'Think: 1+1?'), m('assistant', '<think>\nIt is two.\n</think>\n\nTwo.'), m('user', 'Sure?')],
  'named': [m('user', 'Hello there', { name: 'alice' }), m('assistant', 'Hi Alice', { name: 'bot', to: 'alice' }),
    m('user', 'bye')],
  // rendered with TOOLS in the context too
  'tool-call': [m('system', 'Use tools.'), m('user', 'Weather in Paris?'),
    m('assistant', '', { tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris', days: 2 } } }] }),
    m('tool', '{"temp_c": 21.5, "sky": "clear \u2600"}'), m('user', 'Thanks')],
};
const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather \u00e0 la carte',
  parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', default: 1 } },
    required: ['city'] } } }];

function main() {
  const doc = JSON.parse(fs.readFileSync(path.join(RESOURCES, 'templates.json'), 'utf8'));
  const cases = [];
  for (const t of doc.templates) {
    const template = new Template(t.chat_template);
    for (const [name, messages] of Object.entries(CONVERSATIONS)) {
      for (const addGenerationPrompt of [false, true]) {
        const context = {
          messages, add_generation_prompt: addGenerationPrompt,
          bos_token: t.bos_token === null ? undefined : t.bos_token,
          eos_token: t.eos_token === null ? undefined : t.eos_token,
        };
        if (name === 'tool-call') context.tools = TOOLS;
        if (context.bos_token === undefined) delete context.bos_token;
        if (context.eos_token === undefined) delete context.eos_token;
        const c = { template: t.name, conversation: name, add_generation_prompt: addGenerationPrompt };
        try {
          c.text = template.render(context);
        } catch (e) {
          c.error = String(e.message);
          // raise_exception(msg) throws Error(msg); the template holds msg as a string literal
          c.raised = e.message.length > 0 && t.chat_template.includes(e.message);
        }
        cases.push(c);
      }
    }
  }
  const out = {
    about: 'Written by tools/reference/chat-templates/render.js with @huggingface/jinja 0.5.11; do not edit.',
    now: NOW, conversations: CONVERSATIONS, tools: TOOLS, cases,
  };
  fs.writeFileSync(path.join(RESOURCES, 'expected.json'), JSON.stringify(out, null, 1) + '\n');
  const failed = cases.filter((c) => c.error !== undefined);
  console.log(`${cases.length} cases, ${failed.length} errors (${failed.filter((c) => c.raised).length} raised by the template)`);
}

main();
