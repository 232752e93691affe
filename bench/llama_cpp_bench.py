#!/usr/bin/env python3
"""llama.cpp's CPU throughput on the same workload as engine_bench (prefill tokens/s for one
512-token prompt; decode tokens/s with 1, 8 and 32 sequences decoding together, greedy), through
llama-cpp-python's low-level API. Prints one JSON object.

usage: llama_cpp_bench.py --model PATH --threads N [--prompt-tokens 512] [--decode-steps 64]
                          [--repeats 3] [--batches 1,8,32]
"""
import argparse
import ctypes
import json
import random
import statistics
import sys
import time

import llama_cpp
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--decode-steps", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    # Keep llama.cpp's own logging off stdout/stderr: only the JSON result is printed.
    quiet = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p())
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(args.model.encode(), mparams)
    if not model:
        sys.exit(f"cannot load {args.model}")
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    max_seqs = max(batches)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = max(args.prompt_tokens + 64, max_seqs * (32 + args.decode_steps + 8))
    cparams.n_batch = 512
    cparams.n_ubatch = 512
    cparams.n_seq_max = max_seqs
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cparams.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        sys.exit("cannot create a llama.cpp context")
    memory = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(512, 0, max_seqs)

    def fill(entries):
        """entries: (token, pos, seq, want_logits)"""
        batch.n_tokens = len(entries)
        for i, (tok, pos, seq, logits) in enumerate(entries):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if logits else 0

    def decode():
        if llama_cpp.llama_decode(ctx, batch) != 0:
            sys.exit("llama_decode failed")

    def argmax(i):
        ptr = llama_cpp.llama_get_logits_ith(ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    rng = random.Random(1)

    def tokens(n):
        return [100 + rng.randrange(n_vocab - 200) for _ in range(n)]

    def prefill_once():
        llama_cpp.llama_memory_clear(memory, True)
        prompt = tokens(args.prompt_tokens)
        t0 = time.perf_counter()
        for start in range(0, len(prompt), 512):
            chunk = prompt[start:start + 512]
            fill([(t, start + j, 0, start + j == len(prompt) - 1) for j, t in enumerate(chunk)])
            decode()
        argmax(batch.n_tokens - 1)
        return args.prompt_tokens / (time.perf_counter() - t0)

    def decode_once(b):
        llama_cpp.llama_memory_clear(memory, True)
        entries = []
        for s in range(b):
            entries += [(t, j, s, j == 31) for j, t in enumerate(tokens(32))]
        nxt = []
        for start in range(0, len(entries), 512):
            fill(entries[start:start + 512])
            decode()
            nxt += [argmax(i) for i in range(batch.n_tokens) if batch.logits[i]]
        pos = 32
        # One untimed step, then the timed ones.
        fill([(nxt[s], pos, s, True) for s in range(b)])
        decode()
        nxt = [argmax(s) for s in range(b)]
        pos += 1
        t0 = time.perf_counter()
        for _ in range(args.decode_steps):
            fill([(nxt[s], pos, s, True) for s in range(b)])
            decode()
            nxt = [argmax(s) for s in range(b)]
            pos += 1
        return b * args.decode_steps / (time.perf_counter() - t0)

    prefill_once()  # warm-up
    out = {
        "implementation": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        "threads": args.threads,
        "prefill_prompt_tokens": args.prompt_tokens,
        "prefill_tokens_per_s": statistics.median(prefill_once() for _ in range(args.repeats)),
        "decode_tokens_per_s": {str(b): statistics.median(decode_once(b) for _ in range(args.repeats)) for b in batches},
    }
    print(json.dumps(out, indent=2))
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
