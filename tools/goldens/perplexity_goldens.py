#!/usr/bin/env python3
"""Regenerates tests/data/goldens/smollm2_perplexity.json: llama.cpp's own `llama-perplexity`
over tests/data/goldens/long_essay.txt (written for this project), for two files:
  * q4_1: the bundled Q4_1 model as it is;
  * f32:  an F32 copy of it made by llama.cpp's `llama-quantize --allow-requantize ... F32`
          (independently of tandem's converter, which the test uses for its own copy).
at each context in CONTEXTS, 2 threads. It records the running perplexity after every chunk
("[1]42.6967,[2]...") and the final estimate with its error, as llama-perplexity prints them.

Both tools are built from the llama.cpp source vendored in the llama-cpp-python sdist, the
version the other goldens use (bench/setup_llama_server.sh --target ...).

Usage: tools/goldens/perplexity_goldens.py --model PATH [--out tests/data/goldens/smollm2_perplexity.json]
"""
import argparse
import json
import os
import re
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = "tests/data/goldens/long_essay.txt"
CONTEXTS = [128, 256]


def tool(name):
    out = subprocess.run(["bash", os.path.join(ROOT, "bench/setup_llama_server.sh"), "--target", name],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def perplexity(binary, model, ctx):
    out = subprocess.run([binary, "-m", model, "-f", os.path.join(ROOT, TEXT), "-c", str(ctx), "-t", "2"],
                         check=True, capture_output=True, text=True)
    log = out.stdout + out.stderr
    running = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", log)]
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
    if not final or not running:
        raise SystemExit(f"llama-perplexity printed no estimate:\n{log[-2000:]}")
    return {"ctx": ctx, "running": running, "ppl": float(final.group(1)), "error": float(final.group(2))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the bundled SmolLM2-135M-Instruct Q4_1 GGUF file")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/goldens/smollm2_perplexity.json"))
    args = ap.parse_args()
    ppl, quantize = tool("llama-perplexity"), tool("llama-quantize")
    result = {"text": TEXT, "threads": 2, "tool": "llama-perplexity (llama-cpp-python 0.3.36's llama.cpp)",
              "tiers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "smollm2-f32.gguf")
        subprocess.run([quantize, "--allow-requantize", args.model, f32, "F32"], check=True, capture_output=True)
        for tier, model in (("q4_1", args.model), ("f32", f32)):
            result["tiers"][tier] = [perplexity(ppl, model, c) for c in CONTEXTS]
            for r in result["tiers"][tier]:
                print(f"{tier} ctx {r['ctx']}: PPL {r['ppl']} +/- {r['error']} over {len(r['running'])} chunks")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
