#!/usr/bin/env python3
"""A HellaSwag-shaped sentence-completion set from the validation split of a byte-tokenized patchcore dataset,
for `eval --choices` when no benchmark file is at hand (benchmarks/quality.sh uses it on the bundled corpus).

Each question: the first ~60 % of the words of a held-out sentence as context, and four choices, one its true
ending. Two tasks:
  ending  the other three are the endings of other held-out sentences with the same number of words (so acc_norm
          cannot win on length alone): does the model use the context? (hard for a model that reads 64 bytes)
  order   the other three are the true ending's words shuffled (same characters): does the model know word order?
Chance is 25 % for both. Deterministic for a given seed.

    python3 benchmarks/cloze.py ~/.cache/patchcore/brown-byte /tmp/ending.jsonl [N=1000] [SEED=1] [ending|order]
"""
import json
import random
import re
import struct
import sys
from collections import defaultdict


def read_docs(dataset):
    with open(f"{dataset}/val.bin", "rb") as f:
        head = f.read(128)
        if head[:8] != b"PCTOKENS":
            sys.exit(f"{dataset}/val.bin is not a patchcore token shard")
        width, vocab, eos, count = struct.unpack_from("<IIIQ", head, 12)
        if vocab != 257 or width != 2:
            sys.exit(f"{dataset} is not byte-tokenized (vocabulary {vocab}); this builder reads the byte tokenizer only")
        tokens = struct.unpack(f"<{count}H", f.read(2 * count))
    doc = bytearray()
    for t in tokens:
        if t == eos:
            yield doc.decode("utf-8", "replace")
            doc = bytearray()
        else:
            doc.append(t)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dataset, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    task = sys.argv[5] if len(sys.argv) > 5 else "ending"
    if task not in ("ending", "order"):
        sys.exit(f"unknown task {task}: ending or order")
    sentences = []
    for doc in read_docs(dataset):
        for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
            words = s.split()
            if 8 <= len(words) <= 40:
                sentences.append(words)
    by_len = defaultdict(list)  # endings by word count
    split = [(w, max(2, round(len(w) * 0.6))) for w in sentences]
    for w, c in split:
        by_len[len(w) - c].append(" ".join(w[c:]))
    rng.shuffle(split)
    written = 0
    with open(out, "w") as f:
        for w, c in split:
            if written == n:
                break
            ending = " ".join(w[c:])
            if task == "ending":
                pool = [e for e in by_len[len(w) - c] if e != ending]
            else:
                pool = set()
                for _ in range(20):
                    s = w[c:]
                    rng.shuffle(s)
                    if " ".join(s) != ending:
                        pool.add(" ".join(s))
                pool = sorted(pool)
            if len(pool) < 3:
                continue
            choices = rng.sample(pool, 3) + [ending]
            rng.shuffle(choices)
            f.write(json.dumps({"context": " ".join(w[:c]), "choices": choices, "label": choices.index(ending)}) + "\n")
            written += 1
    print(f"{task}: {written} questions from {len(sentences)} held-out sentences -> {out}")


if __name__ == "__main__":
    main()
