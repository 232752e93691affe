#!/usr/bin/env python3
"""Fidelity goldens for the synthetic architectures, from llama.cpp (through llama-cpp-python).

`tandem model synth --arch NAME` writes a random-weight GGUF per model family (llama: SmolLM2's
conventions; llama3: the llama-bpe pre-tokenizer, BOS and the header/eot chat template;
llama-spm: a SentencePiece vocabulary and Llama 2's [INST] template; qwen2:
Q/K/V and output biases, NEOX RoPE, the qwen2 pre-tokenizer, ChatML with a default system
prompt; deepseek-r1-qwen: qwen2 weights, BOS and DeepSeek-R1's template). The file is deterministic, so CI regenerates it with tandem and compares against what
llama.cpp computed on the same bytes, without downloading any model. Weights are F32 so that
neither implementation quantizes activations and the two compute the same function closely.

For every prompt it records llama.cpp's prompt tokens (text prompts tokenized with the model's
own BOS rule, chat prompts rendered by the GGUF's Jinja template with `bos_token`), GEN_TOKENS
greedy tokens generated one at a time with the top-2 logits at each step, and teacher-forced
top-5 logits at every position of prompt + generated (one batched evaluation).

Usage: tools/goldens/setup_llama_cpp.sh &&
       .venv-goldens/bin/python tools/goldens/synth_goldens.py --tandem build/tandem [--arch all]
Writes tests/data/goldens/synth_<arch>_generation.json.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import jinja2
import llama_cpp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from model_goldens import top_k  # noqa: E402
ARCHS = ["llama", "llama3", "llama-spm", "qwen2", "deepseek-r1-qwen"]
# The model the test builds too (tests/unit/engine/synth_fidelity_test.cc): keep them in step.
SYNTH_FLAGS = ["--shape", "small", "--weight-type", "f32", "--embedding-type", "f32", "--seed", "7"]
GEN_TOKENS = 32
TOPK = 5

PROMPTS = [
    ("capital", "text", "The capital of France is"),
    # Digit runs: llama-bpe groups up to three digits, qwen2 splits every digit.
    ("numbers", "text", "In 2024 there were 1234567 visitors, up 89.5% from 31337 in 1999."),
    ("contractions", "text", "I'm sure they'll say it's fine, but we'd REALLY rather they'VE asked."),
    ("code", "text", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
    ("whitespace", "text", "line one\n\n\n   indented\ttab\r\nwindows  two  spaces   "),
    ("german", "text", "Der schnelle braune Fuchs springt über den faulen Hund"),
    ("chinese", "text", "人工智能是计算机科学的一个分支，"),
    ("emoji", "text", "I love 🍕 and 🎉 because"),
    ("chat_water", "chat", [{"role": "user", "content": "What is the boiling point of water?"}]),
    ("chat_system", "chat", [{"role": "system", "content": "You are a pirate."},
                             {"role": "user", "content": "  Tell me about the sea.  "}]),
    ("chat_multiturn", "chat", [{"role": "user", "content": "Hi! What's your name?"},
                                {"role": "assistant", "content": "I'm a model."},
                                {"role": "user", "content": "List 3 fruits."}]),
]


def render_chat(template, messages, bos_token, eos_token):
    env = jinja2.Environment()
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_token, eos_token=eos_token)


def synthesize(tandem, arch, path):
    subprocess.run([tandem, "model", "synth", "--arch", arch, "--out", path] + SYNTH_FLAGS,
                   check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(arch, model, sha, args):
    llm = llama_cpp.Llama(model_path=model, n_ctx=1024, n_batch=512, n_ubatch=512,
                          n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                          flash_attn=False, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    bos_text = llm.detokenize([llm.token_bos()], special=True).decode("utf-8")
    eos_text = llm.detokenize([llm.token_eos()], special=True).decode("utf-8")
    results = []
    for name, kind, payload in PROMPTS:
        if kind == "chat":
            text = render_chat(template, payload, bos_text, eos_text)
            prompt = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        else:
            text = payload
            prompt = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(prompt)
        logits = np.array(llm.scores[len(prompt) - 1], dtype=np.float32)
        generated, steps = [], []
        for _ in range(GEN_TOKENS):
            order = np.argsort(-logits, kind="stable")[:2]
            steps.append([int(order[0]), round(float(logits[order[0]]), 4),
                          int(order[1]), round(float(logits[order[1]]), 4)])
            generated.append(int(order[0]))
            llm.eval([int(order[0])])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        seq = prompt + generated
        llm.reset()
        llm.eval(seq)
        scores = np.array(llm.scores[: len(seq)], dtype=np.float32)
        results.append({
            "name": name, "kind": kind, "text": text if kind == "text" else None,
            "messages": payload if kind == "chat" else None,
            "prompt_tokens": prompt, "generated": generated, "steps": steps,
            "forced_topk": [top_k(scores[i], TOPK) for i in range(len(seq))],
        })
        print(f"{arch} {name}: {len(prompt)} prompt tokens", file=sys.stderr)
    meta = {
        "generator": f"llama-cpp-python {llama_cpp.__version__}",
        "synth": ["tandem", "model", "synth", "--arch", arch] + SYNTH_FLAGS,
        "model_sha256": sha, "n_vocab": llm.n_vocab(), "gen_tokens": GEN_TOKENS, "topk": TOPK,
        "notes": "flash_attn off, f16 KV cache, n_batch 512; logits rounded to 4 decimals",
    }
    out = os.path.join(args.out, f"synth_{arch}_generation.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "prompts": results}, f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default=os.path.join(ROOT, "build/tandem"))
    ap.add_argument("--arch", default="all", choices=ARCHS + ["all"])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/goldens"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS if args.arch == "all" else [args.arch]:
            path = os.path.join(tmp, f"synth-{arch}.gguf")
            run(arch, path, synthesize(args.tandem, arch, path), args)


if __name__ == "__main__":
    main()
