#!/usr/bin/env python3
"""Regenerates the model-fidelity goldens from llama.cpp (through llama-cpp-python).

Two tiers, each written as <tag>_generation.json and <tag>_full_logits.bin:
  * smollm2_q4_1: the bundled Q4_1 file itself.
  * smollm2_f32: a copy of it with every tensor dequantized to F32 (made here with the `gguf`
    package, independently of tandem's converter). Without 8-bit activation quantization the
    arithmetic is smooth, so this tier shows how closely the two implementations compute the
    same function; on the Q4_1 file both implementations quantize activations and amplify
    last-bit differences (llama.cpp's own batched and one-token paths disagree there too).

For every prompt in PROMPTS it records, from llama.cpp:
  * the prompt's token ids (chat prompts rendered with the GGUF's own Jinja template);
  * 64 greedy tokens generated one at a time (end-of-generation tokens not honoured), with the
    top-2 logits at every step (to judge near-ties when tandem diverges);
  * teacher-forced top-5 (id, logit) at every position of prompt + generated tokens, from one
    batched evaluation;
  * the full-vocabulary logits at the last prompt position of a few prompts (binary file).

Usage: tools/goldens/setup_llama_cpp.sh && .venv-goldens/bin/python tools/goldens/model_goldens.py
       --model PATH [--tier q4_1|f32|all] [--out tests/data/goldens]
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import jinja2
import llama_cpp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GEN_TOKENS = 64
TOPK = 5

ESSAY = open(os.path.join(ROOT, "tests/data/goldens/long_essay.txt"), encoding="utf-8").read()
OWN_CODE = open(os.path.join(ROOT, "src/gguf/gguf_file.cc"), encoding="utf-8").read()

PROMPTS = [
    ("capital", "text", "The capital of France is"),
    ("story", "text", "Once upon a time, in a small village by the sea,"),
    ("fibonacci", "text", "def fibonacci(n):\n"),
    ("arithmetic", "text", "1 + 1 = 2. 2 + 2 = 4. 3 + 3 ="),
    ("spanish", "text", "La inteligencia artificial es una tecnología que"),
    ("german", "text", "Der schnelle braune Fuchs springt über den faulen Hund, und dann"),
    ("chinese", "text", "人工智能是计算机科学的一个分支，"),
    ("japanese", "text", "東京は日本の首都で、"),
    ("russian", "text", "Привет! Как дела? Сегодня я хочу рассказать"),
    ("c_code", "text", "#include <stdio.h>\n\nint main(void) {\n"),
    ("json", "text", '{"name": "Alice", "age": 30, "languages": ['),
    ("sql", "text", "-- count users per country\nSELECT country, COUNT(*)"),
    ("emoji", "text", "I love 🍕 and 🎉 because"),
    ("long_essay", "text", ESSAY),
    ("long_code", "text", OWN_CODE[:6000]),
    ("chat_water", "chat", [{"role": "user", "content": "What is the boiling point of water?"}]),
    ("chat_haiku", "chat", [{"role": "user", "content": "Write a haiku about autumn."}]),
    ("chat_translate", "chat", [{"role": "user", "content": "Translate 'good morning' into Spanish and French."}]),
    ("chat_system", "chat", [{"role": "system", "content": "You are a pirate. Answer like one."},
                             {"role": "user", "content": "Tell me about the sea."}]),
    ("chat_multiturn", "chat", [{"role": "user", "content": "Hi! What's your name?"},
                                {"role": "assistant", "content": "I'm SmolLM, an AI assistant."},
                                {"role": "user", "content": "Can you list three fruits?"}]),
    ("chat_long_summary", "chat", [{"role": "user", "content": "Summarize this text in two sentences:\n\n" + ESSAY}]),
    ("math_word", "text", "Question: A train travels 60 km in 1.5 hours. What is its average speed?\nAnswer:"),
]
FULL_LOGIT_PROMPTS = ["capital", "chat_water", "long_essay", "chinese"]


def render_chat(template, messages):
    env = jinja2.Environment()
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def top_k(row, k):
    idx = np.argpartition(-row, k)[:k]
    idx = idx[np.argsort(-row[idx], kind="stable")]
    return [[int(i), round(float(row[i]), 4)] for i in idx]


def dequantized_copy(src, dst):
    """Writes `src` with every tensor dequantized to F32, metadata unchanged."""
    from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType, GGUFValueType
    from gguf.quants import dequantize
    r = GGUFReader(src)
    w = GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("general.architecture", "general.file_type"):
            continue
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), f.types[0], sub_type=f.types[1])
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    w.add_key_value("general.file_type", 0, GGUFValueType.UINT32)
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]), raw_dtype=GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("TANDEM_MODEL"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/goldens"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated prompt names (default: all)")
    ap.add_argument("--tier", default="all", choices=["q4_1", "f32", "all"])
    args = ap.parse_args()
    if not args.model:
        sys.exit("--model (or TANDEM_MODEL) is required")
    if args.tier in ("q4_1", "all"):
        run(args.model, "smollm2_q4_1", args)
    if args.tier in ("f32", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            f32 = os.path.join(tmp, "smollm2-f32.gguf")
            dequantized_copy(args.model, f32)
            run(f32, "smollm2_f32", args)


def run(model, tag, args):
    llm = llama_cpp.Llama(model_path=model, n_ctx=4096, n_batch=512, n_ubatch=512,
                          n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                          flash_attn=False, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    n_vocab = llm.n_vocab()
    results = []
    full_logits = []
    only = set(filter(None, args.only.split(",")))
    for name, kind, payload in PROMPTS:
        if only and name not in only:
            continue
        if kind == "chat":
            text = render_chat(template, payload)
            prompt = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        else:
            text = payload
            prompt = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        # Free-running greedy generation, one token per evaluation.
        llm.reset()
        llm.eval(prompt)
        logits = np.array(llm.scores[len(prompt) - 1], dtype=np.float32)
        if name in FULL_LOGIT_PROMPTS:
            full_logits.append((name, logits.copy()))
        generated, steps = [], []
        for _ in range(GEN_TOKENS):
            order = np.argsort(-logits, kind="stable")[:2]
            steps.append([int(order[0]), float(logits[order[0]]), int(order[1]), float(logits[order[1]])])
            tok = int(order[0])
            generated.append(tok)
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        # Teacher-forced: one batched evaluation of prompt + generated.
        seq = prompt + generated
        llm.reset()
        llm.eval(seq)
        scores = np.array(llm.scores[: len(seq)], dtype=np.float32)
        forced = [top_k(scores[i], TOPK) for i in range(len(seq))]
        results.append({
            "name": name, "kind": kind, "text": text, "messages": payload if kind == "chat" else None,
            "prompt_tokens": prompt, "generated": generated,
            "steps": [[s[0], round(s[1], 4), s[2], round(s[3], 4)] for s in steps],
            "forced_topk": forced,
        })
        print(f"{tag} {name}: {len(prompt)} prompt tokens; text: {llm.detokenize(generated)[:60]!r}", file=sys.stderr)

    meta = {
        "generator": f"llama-cpp-python {llama_cpp.__version__}",
        "model_sha256_prefix": None,
        "n_vocab": n_vocab, "gen_tokens": GEN_TOKENS, "topk": TOPK,
        "notes": "flash_attn off, f16 KV cache, n_batch 512; logits rounded to 4 decimals",
    }
    with open(os.path.join(args.out, f"{tag}_generation.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "prompts": results}, f, ensure_ascii=False, separators=(",", ":"))
    # Full logits: a little binary file: count, then per entry name(32 bytes) + n_vocab floats.
    with open(os.path.join(args.out, f"{tag}_full_logits.bin"), "wb") as f:
        f.write(struct.pack("<II", len(full_logits), n_vocab))
        for name, row in full_logits:
            f.write(name.encode().ljust(32, b"\0"))
            f.write(row.astype("<f4").tobytes())


if __name__ == "__main__":
    main()
