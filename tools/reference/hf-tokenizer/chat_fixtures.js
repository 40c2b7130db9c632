// Builds src/test/resources/hf-tokenizer/chat_templates.json: conversations rendered by the chat templates themselves
// (Meta-Llama-3-8B-Instruct's `chat_template` and Hugging Face's generic ChatML one, run by @huggingface/jinja, the
// Jinja implementation transformers.js renders chat templates with) and tokenized by Hugging Face's tokenizers (the
// Rust library, through its Node binding) with the test tokenizer.json plus the formats' special tokens at the ids
// ChatFormatTest.fixtureWith gives them. That is what transformers' apply_chat_template(..., tokenize=True) does: render,
// then encode the text without adding special tokens, the template's own being matched in the text.
// ChatFormatTest.matchesTheTemplatesRenderedAndTokenizedByHuggingFace checks patchcore's ChatFormat against them.
//
//   cd tools/reference/hf-tokenizer && npm install && npm install @huggingface/jinja@0.5.11 && node chat_fixtures.js
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');
const { Template } = require('@huggingface/jinja');

const RESOURCES = path.resolve(__dirname, '../../../src/test/resources/hf-tokenizer');

// Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template, and the ChatML template Hugging Face's docs give.
const LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
  + "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
  + "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
  + "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
  + "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// ChatFormatTest.LLAMA3_SPECIALS after <|begin_of_text|> and <|end_of_text|> (3000, 3001), and the ChatML pair.
const LLAMA3_SPECIALS = ['<|reserved_special_token_0|>', '<|reserved_special_token_1|>', '<|finetune_right_pad_id|>',
  '<|reserved_special_token_2|>', '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>'];
const CHATML_SPECIALS = ['<|im_start|>', '<|im_end|>'];

/** The test tokenizer.json with specials added after its added tokens, as ChatFormatTest.fixtureWith adds them. */
function tokenizerWith(specials) {
  const json = JSON.parse(fs.readFileSync(path.join(RESOURCES, 'tokenizer.json'), 'utf8'));
  const added = json.added_tokens;
  for (const s of specials) added.push({ ...added[0], id: 3000 + added.length, content: s });
  return Tokenizer.fromString(JSON.stringify(json));
}

/**
 * The SentencePiece-style fixture (spbpe-tokenizer.json, 1000 pieces) in the newer layout — no normalizer, a Metaspace
 * pre-tokenizer with prepend_scheme "first", as make_spbpe_fixtures.js's metaspace-first — with specials at 1000, 1001 …
 * (ChatFormatTest.metaspaceFirstWith builds the same): "first" puts ▁ before the input's first text only, so text after
 * a special token a template writes gets none.
 */
function metaspaceFirstWith(specials) {
  const json = JSON.parse(fs.readFileSync(path.join(RESOURCES, 'spbpe-tokenizer.json'), 'utf8'));
  json.normalizer = null;
  json.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  json.model.ignore_merges = false;
  specials.forEach((s, i) => json.added_tokens.push({ ...json.added_tokens[0], id: 1000 + i, content: s }));
  return Tokenizer.fromString(JSON.stringify(json));
}

const m = (role, content) => ({ role, content });
// Conversations that end with a user turn are rendered with the generation prompt (generate's prompt); those that end
// with an answer without it (finetune's example).
const CONVERSATIONS = [
  [m('user', 'What is 2+2?')],
  [m('system', 'You are terse.'), m('user', 'Hi')],
  [m('user', 'Capital of France?'), m('assistant', 'Paris.')],
  [m('system', ' Be brief. '), m('user', 'Hi'), m('assistant', 'Hello!'), m('user', '2+2?'), m('assistant', '4\n')],
  [m('system', 'S'), m('user', 'one'), m('assistant', 'two'), m('user', '  three\n\n')],
  [m('user', '\u00a0Caf\u00e9 \u2014 na\u00efve?\t'), m('assistant', ' Oui, tr\u00e8s. '), m('user', 'Und jetzt?')],
  [m('user', 'Line one\nLine two\n'), m('assistant', '```\ncode\n```'), m('user', 'ok'), m('assistant', 'Done')],
];

async function main() {
  const out = [];
  for (const [format, source, tok, bos] of [['llama3', LLAMA3, tokenizerWith(LLAMA3_SPECIALS), '<|begin_of_text|>'],
    ['chatml', CHATML, tokenizerWith(CHATML_SPECIALS), ''], ['chatml-metaspace-first', CHATML, metaspaceFirstWith(CHATML_SPECIALS), '']]) {
    const template = new Template(source);
    for (const messages of CONVERSATIONS) {
      const generationPrompt = messages[messages.length - 1].role !== 'assistant';
      const text = template.render({ messages, bos_token: bos, add_generation_prompt: generationPrompt });
      const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
      out.push({ format, messages, generation_prompt: generationPrompt, text, ids });
    }
  }
  const file = path.join(RESOURCES, 'chat_templates.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  console.log(`wrote ${out.length} rendered conversations to ${file}`);
}

main().catch(e => { console.error(e); process.exit(1); });
