// Builds src/test/resources/hf-tokenizer/spbpe-tokenizer.json and spbpe-cases.json: a LLaMA-2-style ("SentencePiece
// BPE") tokenizer.json, converted from the SentencePiece test model src/test/resources/sentencepiece/llama_bpe.model
// (1000 pieces, BPE, byte fallback; written by tools/sentencepiece/make_fixtures.py) as transformers' LlamaConverter
// converts a tokenizer.model, and the ids and decodings Hugging Face's tokenizers (the Rust library, through its Node
// binding) gives for a set of texts under the two layouts Hugging Face writes and their variants:
//   legacy      normalizer Sequence[Prepend("▁"), Replace(" " → "▁")], no pre-tokenizer (LLaMA-2, TinyLlama,
//               Mistral-7B-v0.1 conversions), decoder Sequence[Replace("▁" → " "), ByteFallback, Fuse, Strip];
//   metaspace-* no normalizer, a Metaspace pre-tokenizer (prepend_scheme first/always/never, split false/true), the
//               same decoder or a Metaspace one.
// HuggingFaceBpeTokenizerTest checks patchcore's reader against them. The script also counts, for the legacy layout,
// the texts of expected.json on which Hugging Face's ids equal the sentencepiece library's own ids for the model.
// With --llama2 DIR it also writes LLaMA-2's whole tokenizer.json, rebuilt from the vocabulary and merges the npm
// package llama-tokenizer-js publishes, as DIR/legacy/tokenizer.json and DIR/metaspace/tokenizer.json (the newer
// layout, prepend_scheme first, split false), for EncodeTexts.java + compare.js, and counts the bundled documents on
// which Hugging Face's ids for it equal llama-tokenizer-js's own.
//
//   cd tools/reference/hf-tokenizer && npm install && node make_spbpe_fixtures.js [--llama2 DIR]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const ROOT = path.resolve(__dirname, '../../..');
const OUT = path.join(ROOT, 'src/test/resources/hf-tokenizer');
const SP = path.join(ROOT, 'src/test/resources/sentencepiece');

/** The pieces of a SentencePiece ModelProto (field 1: piece 1, score 2, type 3; type NORMAL = 1 when absent). */
function pieces(buf) {
  let pos = 0;
  const varint = () => {
    let v = 0, shift = 0, b;
    do { b = buf[pos++]; v += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return v;
  };
  const skip = (wire) => {
    if (wire === 0) varint(); else if (wire === 1) pos += 8; else if (wire === 5) pos += 4;
    else if (wire === 2) { const n = varint(); pos += n; } else throw new Error('wire type ' + wire);
  };
  const out = [];
  while (pos < buf.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key & 7;
    if (field !== 1 || wire !== 2) { skip(wire); continue; }
    const end = varint() + pos;
    const p = { piece: '', score: 0, type: 1 };
    while (pos < end) {
      const k = varint(), f = Math.floor(k / 8), w = k & 7;
      if (f === 1 && w === 2) { const n = varint(); p.piece = buf.toString('utf8', pos, pos + n); pos += n; }
      else if (f === 2 && w === 5) { p.score = buf.readFloatLE(pos); pos += 4; }
      else if (f === 3 && w === 0) p.type = varint();
      else skip(w);
    }
    out.push(p);
  }
  return out;
}

/**
 * transformers' SentencePieceExtractor.extract(vocab_scores): for every piece, each split into two pieces of the
 * vocabulary (ordered by their ids) is a merge; merges sorted by the score of the piece they form, highest first
 * (a stable sort, as Python's).
 */
function merges(vocab, scores) {
  const all = [];
  for (const [piece, score] of scores) {
    const chars = Array.from(piece), local = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join(''), r = chars.slice(i).join('');
      if (l in vocab && r in vocab) local.push([l, r, score]);
    }
    local.sort((a, b) => vocab[a[0]] - vocab[b[0]] || vocab[a[1]] - vocab[b[1]]);
    all.push(...local);
  }
  all.sort((a, b) => b[2] - a[2]);
  return all.map(([l, r]) => [l, r]);
}

function added(id, content, special = true) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special ? true : false, special };
}

const DECODER = { type: 'Sequence', decoders: [
  { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
  { type: 'Strip', content: ' ', start: 1, stop: 0 }] };

/** LLaMA-2's tokenizer.json layout (as transformers' LlamaConverter with legacy=True and LlamaTokenizerFast write it). */
function legacyTokenizer(ps) {
  // LlamaConverter.vocab: ids 0..2 are <unk>, <s>, </s> with score 0, then every piece with its score.
  const scores = ps.map((p, i) => [p.piece, i < 3 ? 0 : p.score]);
  const vocab = Object.create(null);
  scores.forEach(([piece], i) => { vocab[piece] = i; });
  const m = merges(vocab, scores);
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
             { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
    decoder: DECODER,
    // LLaMA-2's file spells merges as "left right" strings.
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: true, byte_fallback: true, vocab, merges: m.map(([l, r]) => l + ' ' + r) },
  };
}

function metaspace(scheme, split) {
  return (t) => {
    t.normalizer = null;
    t.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: scheme, split };
    t.model.ignore_merges = false;  // as newer files have it
    return t;
  };
}

/** Non-special tokens added after training (found in the text before it is normalized / pre-tokenized). */
function withAddedWords(t) {
  t.added_tokens.push({ ...added(1000, '<sep>', false), normalized: false });
  t.added_tokens.push({ ...added(1001, '[MASK]', false), normalized: false });
  return t;
}

/** The byte tokens removed: what byte fallback cannot spell becomes <unk> (fused or not). */
function withoutBytes(fuse) {
  return (t) => {
    for (const k of Object.keys(t.model.vocab)) if (/^<0x[0-9A-F]{2}>$/.test(k)) delete t.model.vocab[k];
    t.model.fuse_unk = fuse;
    return t;
  };
}

const VARIANTS = [
  ['legacy', (t) => t],
  ['metaspace-first', metaspace('first', false)],
  ['metaspace-always', metaspace('always', false)],
  ['metaspace-never', metaspace('never', false)],
  ['metaspace-first-split', metaspace('first', true)],
  ['metaspace-decoder', (t) => {
    metaspace('first', false)(t);
    t.decoder = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
    return t;
  }],
  ['legacy-added-words', withAddedWords],
  ['metaspace-added-words', (t) => withAddedWords(metaspace('first', true)(t))],
  ['legacy-unk-fused', withoutBytes(true)],
  ['metaspace-unk-unfused', (t) => withoutBytes(false)(metaspace('always', true)(t))],
];

const EXTRA_TEXTS = [
  'Hello world', 'hello', ' hello', '  hello', 'hello ', 'hello  ', 'a b  c   d    e', ' ', '  ', '\u2581', '\u2581\u2581x',
  'line one\nline two\n\n', '\ttab\tseparated\t', 'tab\t \tspace', '\r\n', 'caf\u00e9 na\u00efve r\u00e9sum\u00e9',
  'cafe\u0301', '\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5', '\u3053\u3093\u306b\u3061\u306f', '\ud55c\uad6d\uc5b4',
  'emoji \ud83d\ude00 \ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67', '\ud83e\udd99',
  'x\ud83e\udd99y', '\u00a0nbsp\u00a0', '\u3000ideographic', 'A\u2028B\u0085C', '\u0000nul', 'caps ABC xyz',
  '<s> and </s> and <unk> are ordinary text', '<sep>a<sep> b [MASK]', '[MASK] at start', 'end <sep>', '<sep>',
  'The quick brown fox jumps over the lazy dog. '.repeat(4), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'the'.repeat(30), ' '.repeat(40), '\ud83d\ude00'.repeat(12),
];

async function main() {
  const ps = pieces(fs.readFileSync(path.join(SP, 'llama_bpe.model')));
  const expected = JSON.parse(fs.readFileSync(path.join(SP, 'expected.json'), 'utf8')).models.llama_bpe;
  const base = legacyTokenizer(ps);
  const texts = [...new Set([...expected.encode.map((c) => c.text), ...EXTRA_TEXTS])];
  const decodes = expected.decode.map((d) => d.ids);
  fs.writeFileSync(path.join(OUT, 'spbpe-tokenizer.json'), JSON.stringify(base));

  const variants = [];
  for (const [name, change] of VARIANTS) {
    const t = change(JSON.parse(JSON.stringify(base)));
    const tok = Tokenizer.fromString(JSON.stringify(t));
    const prepended = (await tok.encode('', null, { addSpecialTokens: true })).getIds();
    const cases = [];
    for (const text of texts) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      cases.push({ text, ids, decoded: await tok.decode(ids, false) });
    }
    const decoded = [];
    for (const ids of decodes) decoded.push({ ids, decoded: await tok.decode(ids, false) });
    variants.push({ name, tokenizer: t === base ? null : diff(base, t), prepended, cases, decodes: decoded });
  }

  // The legacy layout is what transformers converts LLaMA-2's tokenizer.model to: how often it gives the ids the
  // sentencepiece library gives for the model itself.
  const legacy = variants[0].cases, same = expected.encode.filter((c) =>
      JSON.stringify(legacy.find((l) => l.text === c.text).ids) === JSON.stringify(c.ids));
  const specials = expected.encode.filter((c) => /<s>|<\/s>|<unk>/.test(c.text)).length;
  console.log(`legacy layout vs sentencepiece on expected.json: ${same.length} of ${expected.encode.length} texts give the same ids `
      + `(${specials} hold <s>, </s> or <unk>, which tokenizers matches as special tokens)`);
  for (const c of expected.encode) {
    const l = legacy.find((x) => x.text === c.text);
    if (JSON.stringify(l.ids) !== JSON.stringify(c.ids)) console.log(`  differs: ${JSON.stringify(c.text).slice(0, 60)}`);
  }

  const lines = variants.map((v) => `{"name": ${JSON.stringify(v.name)}, "tokenizer": ${JSON.stringify(v.tokenizer)}, `
      + `"prepended": ${JSON.stringify(v.prepended)}, "cases": [\n`
      + v.cases.map((c) => '  ' + JSON.stringify(c)).join(',\n') + '],\n "decodes": [\n'
      + v.decodes.map((c) => '  ' + JSON.stringify(c)).join(',\n') + ']}');
  fs.writeFileSync(path.join(OUT, 'spbpe-cases.json'), '[\n' + lines.join(',\n') + '\n]\n');
  console.log(`wrote ${OUT}/spbpe-tokenizer.json (${Object.keys(base.model.vocab).length} tokens, ${base.model.merges.length} merges) `
      + `and spbpe-cases.json (${VARIANTS.length} variants × ${texts.length} texts, ${decodes.length} decodes)`);

  const i = process.argv.indexOf('--llama2');
  if (i >= 0) await llama2(process.argv[i + 1]);
}

/** LLaMA-2's tokenizer.json in both layouts, from llama-tokenizer-js's vocabulary and merges (ranked by priority). */
async function llama2(dir) {
  const lt = require('llama-tokenizer-js').default || require('llama-tokenizer-js');
  const t = legacyTokenizer(lt.vocabById.map((piece) => ({ piece, score: 0 })));
  t.model.merges = [...lt.merges.entries()].sort((a, b) => a[1] - b[1]).map(([k]) => k);
  const newer = metaspace('first', false)(JSON.parse(JSON.stringify(t)));
  for (const [name, json] of [['legacy', t], ['metaspace', newer]]) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    fs.writeFileSync(path.join(dir, name, 'tokenizer.json'), JSON.stringify(json));
  }
  const docs = require('zlib').gunzipSync(fs.readFileSync(path.join(ROOT, 'src/main/resources/corpus/brown.jsonl.gz')))
      .toString('utf8').trim().split('\n').map((l) => JSON.parse(l).text);
  for (const [name, json] of [['legacy', t], ['metaspace', newer]]) {
    const tok = Tokenizer.fromString(JSON.stringify(json));
    let same = 0, tokens = 0;
    for (const d of docs) {
      const ids = (await tok.encode(d, null, { addSpecialTokens: false })).getIds();
      tokens += ids.length;
      if (JSON.stringify(ids) === JSON.stringify(lt.encode(d, false, true))) same++;
    }
    console.log(`wrote ${dir}/${name}/tokenizer.json (LLaMA-2, ${t.model.merges.length} merges): on ${same} of ${docs.length} `
        + `bundled documents (${tokens} tokens) Hugging Face's ids equal llama-tokenizer-js's`);
  }
}

/** The top-level fields of t that differ from base; model fields one by one, and "remove_vocab" for removed tokens. */
function diff(base, t) {
  const d = {};
  for (const k of new Set([...Object.keys(base), ...Object.keys(t)])) {
    if (k === 'model') {
      const m = {};
      for (const mk of Object.keys(t.model)) if (mk !== 'vocab' && mk !== 'merges' && JSON.stringify(t.model[mk]) !== JSON.stringify(base.model[mk])) m[mk] = t.model[mk];
      const removed = Object.keys(base.model.vocab).filter((v) => !(v in t.model.vocab));
      if (removed.length) m.remove_vocab = removed;
      if (Object.keys(m).length) d.model = m;
    } else if (JSON.stringify(t[k]) !== JSON.stringify(base[k])) d[k] = t[k];
  }
  return d;
}

main().catch((e) => { console.error(e); process.exit(1); });
