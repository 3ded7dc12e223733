#!/usr/bin/env python3
"""Writes GPT-2's byte-level BPE cut to its first merges: a tokenizer.json of VOCAB ids, the
256 byte tokens, the first VOCAB - 257 merges (GPT-2 numbers each merge's token 256 + its
rank, so those are exactly ids 256 .. VOCAB - 2) and <|endoftext|> as id VOCAB - 1. It
tokenizes as GPT-2 would if training had stopped after those merges: a real BPE with a small
embedding, for small teachers whose parameters should not be mostly embedding
(configs/gpu_code_teacher.yaml). Usage:
  scripts/truncate-bpe-tokenizer.py GPT2_TOKENIZER_JSON VOCAB OUT_DIR   (writes OUT_DIR/tokenizer.json)"""
import json
import os
import sys


def main():
    source, vocab_size, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    t = json.load(open(source, encoding="utf-8"))
    model = t["model"]
    keep = vocab_size - 1
    vocab = {token: i for token, i in model["vocab"].items() if i < keep}
    merges = model["merges"][: keep - 256]
    for rank, m in enumerate(merges):  # the numbering this relies on
        a, b = m.split(" ") if isinstance(m, str) else m
        assert vocab[a + b] == 256 + rank, (m, rank)
    assert len(vocab) == keep, len(vocab)
    eos = [a for a in t["added_tokens"] if a["content"] == "<|endoftext|>"]
    assert len(eos) == 1
    vocab["<|endoftext|>"] = keep
    t["model"] = dict(model, vocab=vocab, merges=merges)
    t["added_tokens"] = [dict(eos[0], id=keep)]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
