#!/usr/bin/env python3
"""Compares tandem's tokenizer with llama.cpp's on any GGUF file's vocabulary.

Only the file's header is needed: the script writes a vocabulary-only copy (the metadata, no
tensors), so the first part of a multi-part or partly downloaded file is enough. Both sides
tokenize the strings of tools/goldens/tokenizer_goldens.py (prose, numbers, code, Unicode,
special-token texts, long and random strings; the well-formed UTF-8 ones), with the
vocabulary's own BOS rule, once without and once with special-token parsing:
llama.cpp through llama-cpp-python (vocab_only) and tandem through `tandem model tokenize`.

Usage: tools/goldens/setup_llama_cpp.sh &&
       .venv-goldens/bin/python tools/goldens/compare_tokenizer.py --model FILE [--tandem build/tandem]
Prints the number of strings compared and every mismatch; exits 1 if there was one.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tokenizer_goldens  # noqa: E402  (the strings)

# GGUF value types and the byte sizes of the fixed-size ones.
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9


def skip_value(f, vtype):
    if vtype in FIXED:
        f.seek(FIXED[vtype], 1)
    elif vtype == STRING:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, 1)
    elif vtype == ARRAY:
        etype, count = struct.unpack("<IQ", f.read(12))
        if etype in FIXED:
            f.seek(FIXED[etype] * count, 1)
        else:
            for _ in range(count):
                skip_value(f, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def vocab_only_copy(src, dst):
    """The header and metadata of `src` with no tensors: a valid GGUF with the same vocabulary."""
    with open(src, "rb") as f:
        magic, version, _, n_kv = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            sys.exit(f"{src} is not a GGUF file")
        for _ in range(n_kv):
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(n, 1)
            (vtype,) = struct.unpack("<I", f.read(4))
            skip_value(f, vtype)
        end = f.tell()
        f.seek(24)
        kv = f.read(end - 24)
    with open(dst, "wb") as out:
        out.write(struct.pack("<4sIQQ", b"GGUF", version, 0, n_kv))
        out.write(kv)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tandem", default=os.path.join(HERE, "..", "..", "build", "tandem"))
    args = ap.parse_args()
    strings = []
    for b in tokenizer_goldens.all_strings():
        try:
            strings.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # ill-formed UTF-8: tandem keeps the bytes where llama.cpp writes U+FFFD
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.gguf")
        vocab_only_copy(args.model, vocab)
        llm = llama_cpp.Llama(model_path=vocab, vocab_only=True, verbose=False)
        lines = os.path.join(tmp, "lines.jsonl")
        with open(lines, "w", encoding="utf-8") as f:
            for s in strings:
                f.write(json.dumps(s) + "\n")
        mismatches = 0
        for special in (False, True):
            cmd = [args.tandem, "model", "tokenize", "--model", vocab, "--lines", lines]
            if special:
                cmd.append("--special")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
            for s, line in zip(strings, out):
                mine = json.loads(line)
                theirs = llm.tokenize(s.encode("utf-8"), add_bos=True, special=special)
                if mine != theirs:
                    mismatches += 1
                    print(f"MISMATCH special={special} {s[:60]!r}\n  tandem    {mine[:20]}\n  llama.cpp {theirs[:20]}")
        print(f"{args.model}: {len(strings)} strings x 2 modes, {mismatches} mismatches "
              f"(vocabulary {llm.n_vocab()} tokens, tokenizer.ggml.pre "
              f"{llm.metadata.get('tokenizer.ggml.pre', '-')})")
        sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
