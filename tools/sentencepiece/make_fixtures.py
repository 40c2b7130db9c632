#!/usr/bin/env python3
"""Writes the SentencePiece test fixtures: small models trained on the bundled corpus with the reference
library (pip package `sentencepiece`), and what that library encodes and decodes for a set of texts.
SentencePieceTokenizerTest checks patchcore's own reader against them, so the tests need no Python.

    python3 -m venv /tmp/spv && /tmp/spv/bin/pip install sentencepiece protobuf
    /tmp/spv/bin/python tools/sentencepiece/make_fixtures.py

Output: src/test/resources/sentencepiece/{NAME.model, expected.json}. The run is deterministic for a given
sentencepiece version (recorded in expected.json).
"""
import gzip
import io
import json
import os
import random
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "src", "test", "resources", "sentencepiece")
CORPUS = os.path.join(ROOT, "src", "main", "resources", "corpus", "brown.jsonl.gz")


def documents():
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def train(lines, name, **options):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, minloglevel=2,
                                   num_threads=1, seed_sentencepiece_size=20000, **options)
    return model.getvalue()


# A few rules in the precompiled map (as --normalization_rule_tsv writes them): source code points, target code points.
RULES = "\n".join([
    "FF21\t41",          # fullwidth A -> A
    "FF41\t61",          # fullwidth a -> a
    "FB01\t66 69",       # ligature fi -> f i
    "9\t20",             # tab -> space
    "2026\t2E 2E 2E",    # ellipsis -> ...
    "41 42 43\t78 79",   # ABC -> xy (a multi-character source: longest match wins over A)
]) + "\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    docs = documents()
    rng = random.Random(1234)
    lines = [l for d in docs[:400] for l in d.split("\n") if l.strip()]
    held_out = [l for d in docs[400:] for l in d.split("\n") if l.strip()]

    rules_path = os.path.join(OUT, "rules.tsv.tmp")
    with open(rules_path, "w", encoding="utf-8") as f:
        f.write(RULES)
    models = {
        # LLaMA's settings (its tokenizer.model): BPE, identity normalization, byte fallback, digits split.
        "llama_bpe": train(lines, "llama_bpe", model_type="bpe", vocab_size=1000, byte_fallback=True,
                           normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
                           split_digits=True, allow_whitespace_only_pieces=True, character_coverage=0.9995),
        # spm_train's defaults: unigram, NFKC map, extra whitespace removed; user-defined and control symbols.
        "unigram_nfkc": train(lines, "unigram_nfkc", model_type="unigram", vocab_size=1000,
                              user_defined_symbols=["<sep>", "@@"], control_symbols=["<ctl>"]),
        # BPE, small custom map, whitespace as suffix, no byte fallback (unknown id), a user-defined symbol.
        "bpe_rules": train(lines, "bpe_rules", model_type="bpe", vocab_size=800, normalization_rule_tsv=rules_path,
                           treat_whitespace_as_suffix=True, user_defined_symbols=["[MASK]"], character_coverage=0.999),
        # Unigram with byte fallback and no dummy prefix.
        "unigram_bytes": train(lines, "unigram_bytes", model_type="unigram", vocab_size=700, byte_fallback=True,
                               add_dummy_prefix=False, normalization_rule_name="identity"),
        # Unigram with user-defined symbols that compete with normal pieces, and a one-character control piece.
        "unigram_user": train(lines, "unigram_user", model_type="unigram", vocab_size=800,
                              user_defined_symbols=["ing", "the", "xyz", "\u2581and"], control_symbols=["\u220e"],
                              normalization_rule_name="identity"),
    }
    os.remove(rules_path)
    # BPE with some merged pieces marked UNUSED: the encoder must split them back (bpe_model.cc resegment).
    proto = model_pb2.ModelProto()
    proto.ParseFromString(models["llama_bpe"])
    unused = 0
    for p in proto.pieces:
        if p.type == model_pb2.ModelProto.SentencePiece.NORMAL and len(p.piece) >= 3 and unused < 40 and rng.random() < 0.15:
            p.type = model_pb2.ModelProto.SentencePiece.UNUSED
            unused += 1
    models["bpe_unused"] = proto.SerializeToString()
    # Unigram with byte fallback and UNUSED pieces, one-character ones included: the lattice skips them.
    proto = model_pb2.ModelProto()
    proto.ParseFromString(models["unigram_bytes"])
    for p in proto.pieces:
        if p.type == model_pb2.ModelProto.SentencePiece.NORMAL and (p.piece in ("x", "q", "k") or (len(p.piece) >= 3 and rng.random() < 0.1)):
            p.type = model_pb2.ModelProto.SentencePiece.UNUSED
    models["unigram_unused"] = proto.SerializeToString()

    edge = [
        "", " ", "   ", "Hello world", " Hello  world ", "Hello\tworld\n\nnew line", "a  b   c    d",
        "The year 1961, 42 cats and 3.14159 pies.", "naïve café résumé", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ａｂｃ",
        "ﬁnal ﬁle … ABCABC", "emoji 🦙 llama 🤖🚀", "日本語のテキスト", "Ελληνικά και русский", "[MASK] is <sep> here @@",
        "tabs\tand\u3000ideographic space", "\u0301combining first", "x" * 40, "don't won't can't", "<s></s><unk>",
        "e\u0301 vs \u00e9", "ＡＢＣ", "\u2581already escaped\u2581", "mixed 🦙\n🦙 end ",
        "a\u220eb \u220e", "thinking the things and xyzzy xyz", "and the anding", "quixotic xylophone kick",
        "the theme of the thing is nothing", "\u2581and and", "sing ing ring",
    ]
    texts = edge + rng.sample([l[:300] for l in held_out], 80)
    out = {"sentencepiece": spm.__version__, "models": {}}
    for name, blob in models.items():
        with open(os.path.join(OUT, name + ".model"), "wb") as f:
            f.write(blob)
        sp = spm.SentencePieceProcessor(model_proto=blob)
        n = sp.get_piece_size()
        cases = [{"text": t, "ids": sp.encode(t), "decoded": sp.decode(sp.encode(t))} for t in texts]
        # Decoding arbitrary ids (control, unknown and byte pieces in odd places), EOS excepted: patchcore shows it.
        decode_cases = []
        for _ in range(60):
            ids = [rng.randrange(n) for _ in range(rng.randrange(1, 12))]
            ids = [i for i in ids if i != sp.eos_id()]
            decode_cases.append({"ids": ids, "text": sp.decode(ids)})
        out["models"][name] = {"vocab": n, "eos": sp.eos_id(), "unk": sp.unk_id(), "encode": cases, "decode": decode_cases}
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    for name in models:
        print(name, os.path.getsize(os.path.join(OUT, name + ".model")), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
