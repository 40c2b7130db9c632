// Compares patchcore's ids (EncodeTexts.java's output) with Hugging Face tokenizers' for the same texts.
//   node compare.js TOKENIZER.json TEXTS.json PATCHCORE_IDS.txt
// Exits 1 when any text's ids differ (the first three are printed).
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

(async () => {
  const [file, textsFile, idsFile] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(file);
  const texts = JSON.parse(fs.readFileSync(textsFile, 'utf8'));
  const ours = fs.readFileSync(idsFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  if (ours.length !== texts.length) throw new Error(`${idsFile} has ${ours.length} lines for ${texts.length} texts`);
  let tokens = 0, differ = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = (await tok.encode(texts[i], null, { addSpecialTokens: false })).getIds();
    tokens += ids.length;
    if (JSON.stringify(ids) !== JSON.stringify(ours[i]) && differ++ < 3)
      console.log(`text ${i} ${JSON.stringify(texts[i]).slice(0, 80)}: HF ${JSON.stringify(ids).slice(0, 120)} patchcore ${JSON.stringify(ours[i]).slice(0, 120)}`);
  }
  console.log(`${texts.length} texts, ${tokens} tokens: ${differ} differ`);
  process.exit(differ ? 1 : 0);
})();
