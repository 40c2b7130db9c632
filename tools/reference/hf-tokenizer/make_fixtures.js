// Builds src/test/resources/hf-tokenizer/: a small byte-level BPE tokenizer.json (LLaMA-3's first merges) and, for
// variants of its pre-tokenizer, normalizer and model options, the ids Hugging Face's tokenizers (the Rust library,
// through its Node binding) gives for a set of texts. HuggingFaceBpeTokenizerTest checks patchcore's reader against
// them. With --llama3 FILE it also writes LLaMA-3's whole tokenizer.json (from llama3-tokenizer-js's vocabulary and
// merges), and with --fuzz FILE a JSON list of 5000 seeded random texts over the characters the pre-tokenizers treat
// differently (Unicode white space, combining marks, numerals of other scripts, ...), for compare.js.
//
//   cd tools/reference/hf-tokenizer && npm install && node make_fixtures.js [--llama3 FILE] [--fuzz FILE]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');
const llama3 = require('llama3-tokenizer-js').default || require('llama3-tokenizer-js');

const OUT = path.resolve(__dirname, '../../../src/test/resources/hf-tokenizer');
const KEEP = 3000;  // vocabulary entries kept for the small fixture

const SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function mergesInOrder() {
  return [...llama3.merges.entries()].sort((a, b) => a[1] - b[1]).map(([k]) => k.split(' '));
}

function special(id, content, isSpecial = true) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !isSpecial, special: isSpecial };
}

/** LLaMA-3's tokenizer.json, as Hugging Face's conversion writes it, over the given vocabulary and merges. */
function llamaStyle(vocab, merges, bos, eos) {
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(bos, '<|begin_of_text|>'), special(eos, '<|end_of_text|>')],
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: SPLIT }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [bos], tokens: ['<|begin_of_text|>'] } } }] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges },
  };
}

function smallTokenizer() {
  const vocab = Object.create(null);
  for (let id = 0; id < KEEP; id++) vocab[llama3.vocabById[id]] = id;
  // Without its one merge, " school" (2978) is a token no merge forms: with ignore_merges a piece spelling it is
  // taken whole, without it ends as " s" + "chool".
  const merges = mergesInOrder().filter(([a, b]) => a in vocab && b in vocab && (a + b) in vocab)
      .filter(([a, b]) => !(a === '\u0120s' && b === 'chool'));
  const t = llamaStyle(vocab, merges, KEEP, KEEP + 1);
  return t;
}

/** The variants checked: a name and what changes in the small tokenizer. */
const VARIANTS = [
  ['llama3', (t) => t],
  ['llama3-merges-always', (t) => { t.model.ignore_merges = false; return t; }],
  ['gpt2', (t) => {
    t.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    t.post_processor = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };
    delete t.model.ignore_merges;
    return t;
  }],
  ['gpt2-prefix-space', (t) => {
    t.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
    t.post_processor = null;
    return t;
  }],
  ['digits', (t) => {  // SmolLM's
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] };
    t.model.ignore_merges = false;
    return t;
  }],
  ['digits-prefix-space', (t) => {  // where ByteLevel's prefix space goes when pieces are split before it
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Digits', individual_digits: false },
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: false }] };
    return t;
  }],
  ['qwen2-nfc', (t) => {
    t.normalizer = { type: 'NFC' };
    t.pre_tokenizer.pretokenizers[0].pattern.Regex = QWEN_SPLIT;
    t.model.ignore_merges = false;
    return t;
  }],
  ['lowercase-normalized-words', (t) => {  // added tokens found in the normalized text, or in the raw one
    t.normalizer = { type: 'Lowercase' };
    t.added_tokens.push(special(KEEP + 2, '<zq>', false));
    t.added_tokens.push({ ...special(KEEP + 3, '<RAW>', false), normalized: false });
    t.added_tokens.push(special(KEEP + 4, 'MiXeD', false));  // looked for as the normalizer spells it: "mixed"
    return t;
  }],
  ['added-words', (t) => {  // tokens added after training, matched in the text before it is split
    t.added_tokens.push(special(KEEP + 2, ' world!', false));
    t.added_tokens.push(special(KEEP + 3, 'ababab', false));
    return t;
  }],
];

/** `count` texts of 1 to `maxLen` pieces drawn from `alphabet` by a fixed xorshift generator. */
function randomTexts(alphabet, seed, count, maxLen) {
  let s = seed;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
  const out = [];
  for (let n = 0; n < count; n++) {
    const len = 1 + (next() % maxLen);
    let t = '';
    for (let i = 0; i < len; i++) t += alphabet[next() % alphabet.length];
    out.push(t);
  }
  return out;
}

// The characters the pre-tokenizers treat differently: the fixture's mix, and a wider one for --fuzz (more Unicode
// spaces, case folding, control characters, other scripts' numerals).
const FIXTURE_ALPHABET = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', ' ', ' ', ' ', '  ', '\n', '\r\n', '\t',
  ...".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`", "'s", "'LL", "'ve", 'é', 'e\u0301', 'ß', 'Ω', '中', '文', 'の', '한', 'ü',
  '\u00a0', '\u3000', '\u2028', '\u0085', '\u200d', '😀', '👍🏽', '𝔘', '١٢٣', '²', 'Ⅻ', '\u0301', 'ﬁ', 'İ', 'ǅ'];
const FUZZ_ALPHABET = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', ' ', ' ', ' ', '  ', '\n', '\r\n', '\t', '\r',
  '\u000b', '\f', ...".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`", "'s", "'LL", "'ve", "'D", 'é', 'e\u0301', 'ß', 'Ω', '中', '文', 'の',
  '한', 'ü', 'ſ', '\u212a', '\u00a0', '\u3000', '\u2028', '\u2029', '\u0085', '\u200d', '\u200b', '\u180e', '\u1680', '\u2007',
  '\u202f', '\u205f', '😀', '👍🏽', '𝔘', '١٢٣', '²', 'Ⅻ', '½', '\u0301', '\u0308', 'ﬁ', 'İ', 'ǅ', 'ǈ', '\u00ad', '\ufeff', '\u0000',
  '\u007f', '\u00b5', 'ǂ', 'ᾼ', '٠', '߀', '𝟘', '𐍈'];

const TEXTS = [
  '', ' ', 'a', 'Hello world', ' Hello world', 'Hello  world ', 'hello world!', 'say hello world! ababababab',
  "I'm sure they'll say it's what we've done; HE'S DONE'T", "o'clock isn't 'quoted' ''",
  '1234567890 12 3 45678 3.14159 1,000,000', 'version 2.0.1-rc3', 'x=1+2*3/4', '    indented\n\tcode();\n\n\n',
  'line one\r\nline two\r\n\r\n', 'trailing spaces   ', '   leading spaces', 'tabs\t\tand spaces \t ',
  'café résumé naïve coöperate', 'cafe\u0301 vs café', 'Straße ΑΒΓ αβγ', '中文字符测试', 'こんにちは世界', '한국어 텍스트',
  'emoji 😀👍🏽 family 👨‍👩‍👧', 'math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√', 'nbsp\u00a0here and\u3000ideographic', 'ﬁne ligature ²³ Ⅻ',
  'A\u2028B\u0085C', '<|end_of_text|> is ordinary text here', 'ĠĠ Ġt already-mapped chars',
  'The quick brown fox jumps over the lazy dog. '.repeat(3),
  ...randomTexts(FIXTURE_ALPHABET, 0x2545f491, 60, 40),
  ...randomTexts(FUZZ_ALPHABET, 0x5eed, 40, 60),
  ' school', 'old school schools', 'ΣΣ ΟΔΟΣ ΑΣ Β', '<ZQ> <zq> <RAW> <raw> <Raw>', 'MiXeD mixed MIXED', 
  // Pieces longer than 32 characters (merged through a heap rather than by rescanning).
  ' '.repeat(100), 'ab'.repeat(50), '-'.repeat(80) + 'x', 'aaaa'.repeat(20), 'hellohello'.repeat(8),
  '中文字符测试'.repeat(8), '😀👍🏽'.repeat(10), '0123456789'.repeat(4),
  ...randomTexts([...'abcdefghijklmnopqrstuvwxyz'], 0xbee, 4, 300).map((w) => ' ' + w),
  // Long words in which a pair's rank changes after its right neighbour merges (a merge heap must skip the stale entry).
  ' ksuddkcoptqtpqdwisoqppimuucsksxnsqcdcjrzcwioiogrmuqhtpbihuabexwsr',
  ' frzxiezvjhwhttqzuuynyjcqureboyorcrxkgfwttdezdolszzejdtm', 
];

async function idsOf(json, texts) {
  const tok = Tokenizer.fromString(JSON.stringify(json));
  const out = [];
  for (const text of texts) {
    const e = await tok.encode(text, null, { addSpecialTokens: false });
    out.push({ text, ids: e.getIds(), decoded: await tok.decode(e.getIds(), false) });
  }
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  fs.mkdirSync(OUT, { recursive: true });
  const base = smallTokenizer();
  fs.writeFileSync(path.join(OUT, 'tokenizer.json'), JSON.stringify(base));
  const cases = [];
  for (const [name, change] of VARIANTS) {
    const t = change(JSON.parse(JSON.stringify(base)));
    const bos = (await Tokenizer.fromString(JSON.stringify(t)).encode('', null, { addSpecialTokens: true })).getIds();
    cases.push({ name, tokenizer: t === base ? null : diff(base, t), prepended: bos, cases: await idsOf(t, TEXTS) });
  }
  // One line per text, so that a change to the fixture reads as a diff.
  const lines = cases.map((v) => `{"name": ${JSON.stringify(v.name)}, "tokenizer": ${JSON.stringify(v.tokenizer)}, `
      + `"prepended": ${JSON.stringify(v.prepended)}, "cases": [\n`
      + v.cases.map((c) => '  ' + JSON.stringify(c)).join(',\n') + ']}');
  fs.writeFileSync(path.join(OUT, 'cases.json'), '[\n' + lines.join(',\n') + '\n]\n');
  console.log(`wrote ${OUT}/tokenizer.json (${Object.keys(base.model.vocab).length} tokens, ${base.model.merges.length} merges) `
      + `and cases.json (${VARIANTS.length} variants × ${TEXTS.length} texts)`);

  const f = args.indexOf('--fuzz');
  if (f >= 0) {
    fs.writeFileSync(args[f + 1], JSON.stringify(randomTexts(FUZZ_ALPHABET, 12345, 5000, 120)));
    console.log(`wrote ${args[f + 1]} (5000 texts)`);
  }
  const i = args.indexOf('--llama3');
  if (i >= 0) {
    const vocab = Object.create(null);
    for (let id = 0; id < 128000; id++) vocab[llama3.vocabById[id]] = id;
    const full = llamaStyle(vocab, mergesInOrder(), 128000, 128001);
    for (let r = 0; r < 254; r++) full.added_tokens.push(special(128002 + r, llama3.vocabById[128002 + r]));
    full.added_tokens.sort((a, b) => a.id - b.id);
    fs.mkdirSync(path.dirname(args[i + 1]), { recursive: true });
    fs.writeFileSync(args[i + 1], JSON.stringify(full));
    console.log(`wrote ${args[i + 1]} (LLaMA-3: ${full.model.merges.length} merges)`);
  }
}

/** The top-level fields of t that differ from base (the test applies them over tokenizer.json). */
function diff(base, t) {
  const d = {};
  for (const k of Object.keys(t)) {
    if (k === 'model') {
      const m = {};
      for (const mk of Object.keys(t.model)) if (mk !== 'vocab' && mk !== 'merges' && JSON.stringify(t.model[mk]) !== JSON.stringify(base.model[mk])) m[mk] = t.model[mk];
      if (!('ignore_merges' in t.model)) m.ignore_merges = null;
      if (Object.keys(m).length) d.model = m;
    } else if (JSON.stringify(t[k]) !== JSON.stringify(base[k])) d[k] = t[k];
  }
  return d;
}

main().catch((e) => { console.error(e); process.exit(1); });
