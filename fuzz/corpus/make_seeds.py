#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/ (docs/reliability.md) from the repository's own files:
  config/        every configs/*.yaml and tests/fixtures/train_tiny.yaml, and one with --set lines;
  model_config/  every tests/fixtures/**/config.json;
  hf_tokenizer/  GPT-2's tokenizer.json (tests/fixtures/tokenizer/gpt2) cut to its first 320
                 tokens and the merges among them (a seed of a few KB, fast to mutate), and
                 variants with other pre-tokenizers and added tokens;
  sentencepiece/ tests/fixtures/tokenizer/spm/tokenizer.model;
  safetensors/   small files of every element type (built here, byte for byte as the format
                 says), one with metadata, an empty one, and tests/fixtures/fp4/fp4.safetensors;
  checkpoint_index/  tests/fixtures/llama_gqa_llama3's index, and one without its metadata.
The corpora of token_file/ and compressed_config/ need qtrain's own writers: the fuzz targets
write them (QTRAIN_FUZZ_WRITE_SEEDS=fuzz/corpus/<target> build-fuzz/fuzz/fuzz_<target>).
The probes of issue 24 (recursive aliases, impossible sizes, num_bits 0, duplicate keys...)
are seeds too (issue24_probes; the compressed_config ones are derived from export0.json).
Deterministic; run from the repository root:  python3 fuzz/corpus/make_seeds.py"""
import glob
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(sub, name, data):
    os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    with open(os.path.join(OUT, sub, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors_bytes(entries, metadata=None):
    """entries: [(name, dtype, shape, raw bytes)] -> the file's bytes (header padded to 8)."""
    header, data = {}, b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))) + [os.path.join(ROOT, "tests/fixtures/train_tiny.yaml")]:
        write("config", os.path.basename(path), open(path, "rb").read())
    write("config", "with_set.yaml", open(os.path.join(ROOT, "tests/fixtures/train_tiny.yaml"), "rb").read() +
          b"\0training.lr=1e-4\nquant.rules=[lm_head=none, 're:.*=w4a16-g128']\nprune.mlp_sparsity=0.5\n")
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "**", "config.json"), recursive=True)):
        write("model_config", os.path.relpath(path, os.path.join(ROOT, "tests/fixtures")).replace("/", "_"), open(path, "rb").read())
    full = json.load(open(os.path.join(ROOT, "tests/fixtures/tokenizer/gpt2/tokenizer.json")))
    vocab = {k: v for k, v in full["model"]["vocab"].items() if v < 320}
    merges = []
    for m in full["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    small = dict(full)
    small["model"] = dict(full["model"], vocab=vocab, merges=merges)
    small["added_tokens"] = [t for t in full.get("added_tokens", []) if t["id"] < 320]
    write("hf_tokenizer", "gpt2_small.json", json.dumps(small))
    added = json.loads(json.dumps(small))
    added["added_tokens"] = [{"id": 300, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True}]
    write("hf_tokenizer", "gpt2_small_added.json", json.dumps(added))
    split = json.loads(json.dumps(small))
    split["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    write("hf_tokenizer", "gpt2_small_split.json", json.dumps(split))

    write("sentencepiece", "spm.model", open(os.path.join(ROOT, "tests/fixtures/tokenizer/spm/tokenizer.model"), "rb").read())
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
    every = [(f"t.{d.lower()}", d, [2, 3], bytes(range(6 * n))) for d, n in sizes.items()]
    write("safetensors", "every_dtype.safetensors", safetensors_bytes(every))
    write("safetensors", "metadata.safetensors",
          safetensors_bytes([("w", "F32", [4], struct.pack("<4f", 1, 2, 3, 4)), ("s", "BF16", [], b"\x80\x3f")],
                            {"format": "pt", "qtrain": "seed"}))
    write("safetensors", "empty.safetensors", safetensors_bytes([]))
    write("safetensors", "zero_size.safetensors", safetensors_bytes([("z", "F32", [0, 5], b"")]))
    write("safetensors", "fp4.safetensors", open(os.path.join(ROOT, "tests/fixtures/fp4/fp4.safetensors"), "rb").read())
    index = open(os.path.join(ROOT, "tests/fixtures/llama_gqa_llama3/model.safetensors.index.json"), "rb").read()
    write("checkpoint_index", "llama_gqa_llama3.json", index)
    write("checkpoint_index", "no_metadata.json", json.dumps({"weight_map": json.loads(index)["weight_map"]}))

def issue24_probes():
    """The bad inputs of issue 24, generalised into seeds (each is refused with status 2;
    the fuzzers mutate from them into their neighbourhoods)."""
    tiny = open(os.path.join(ROOT, "tests/fixtures/train_tiny.yaml"), "rb").read()
    write("config", "probe_recursive_alias.yaml", tiny + b"\0quant.rules=&a [*a]\n")
    write("config", "probe_alias_in_file.yaml", tiny.replace(b"  name: tiny", b"  name: &n [*n]"))
    write("config", "probe_non_utf8_name.yaml", tiny.replace(b"  name: tiny", b"  name: tiny\xff\xfe"))
    write("config", "probe_empty_output_dir.yaml", tiny + b"\0run.output_dir=\n")
    base = json.load(open(os.path.join(ROOT, "tests/fixtures/llama_gqa_llama3/config.json")))
    for name, key, value in [("zero_eps", "rms_norm_eps", 0.0), ("layers_1e8", "num_hidden_layers", 1e8),
                             ("hidden_2_40", "hidden_size", 2 ** 40), ("zero_window", "sliding_window", 0),
                             ("rope_type_not_string", "rope_parameters", {"rope_type": 3, "factor": 4.0})]:
        write("model_config", "probe_" + name + ".json", json.dumps(dict(base, **{key: value})))
    write("model_config", "probe_duplicate_key.json", '{"hidden_size": 32, ' + json.dumps(base)[1:])
    # compressed_config seeds: one byte choosing the export whose tensors are read, then its config.json
    raw = open(os.path.join(OUT, "compressed_config", "export0.json"), "rb").read()
    selector, export = raw[:1], json.loads(raw[1:])
    groups = export["quantization_config"]["config_groups"]
    first = next(iter(groups.values()))
    zero_bits = json.loads(json.dumps(export))
    next(iter(zero_bits["quantization_config"]["config_groups"].values()))["weights"]["num_bits"] = 0
    write("compressed_config", "probe_num_bits_0.json", selector + json.dumps(zero_bits).encode())
    non_string = json.loads(json.dumps(export))
    next(iter(non_string["quantization_config"]["config_groups"].values()))["targets"] = [7]
    write("compressed_config", "probe_non_string_target.json", selector + json.dumps(non_string).encode())
    twice = json.loads(json.dumps(export))
    twice["quantization_config"]["config_groups"]["group_twice"] = first
    write("compressed_config", "probe_group_twice.json", selector + json.dumps(twice).encode())
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    header += b" " * (-len(header) % 8)
    write("safetensors", "probe_duplicate_name.safetensors", struct.pack("<Q", len(header)) + header + b"\0\0\x80?")


if __name__ == "__main__":
    main()
    issue24_probes()
