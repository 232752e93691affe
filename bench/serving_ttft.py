#!/usr/bin/env python3
"""TTFT of the disaggregated hop: the same 1k-token prompts through `tandem up` with 1 prefill +
1 decode worker and with 1 mixed worker, one request at a time, alternating between the two
clusters (this machine is noisy: the ratio is taken within one run). Every worker gets the same
thread count, so prefill compute is the same on both paths; the difference is the hop (KV
reservation, transfer, the extra RPCs).

Usage: bench/serving_ttft.py [--tandem build/tandem] [--model PATH] [--requests 12]
       [--prompt-tokens 1000] [--threads 1] [--out FILE.json]
Needs the test venv (scripts/setup_test_venv.sh): run it with .venv-test/bin/python.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from cluster import Cluster  # noqa: E402

WORDS = ("river mountain quiet signal harbor copper lantern meadow orbit velvet canyon ember "
         "glacier thunder willow marble falcon pepper saddle crystal ").split()


def prompt_text(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words))


def ttft(cluster, text, max_tokens):
    start = time.perf_counter()
    first = None
    usage = None
    stream = cluster.client.completions.create(model=cluster.model, prompt=text, max_tokens=max_tokens,
                                               temperature=0, stream=True, stream_options={"include_usage": True},
                                               extra_body={"ignore_eos": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            usage = chunk.usage
    return first, time.perf_counter() - start, usage.prompt_tokens


def histogram_mean(metrics, name, labels='{role="prefill"}'):
    count = metrics.get(f"{name}_count{labels}", 0)
    return metrics.get(f"{name}_sum{labels}", 0) / count if count else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default="build/tandem")
    ap.add_argument("--model", default=None, help="GGUF file (default: `tandem model fetch`)")
    ap.add_argument("--requests", type=int, default=12, help="requests per cluster")
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="compute threads per worker")
    ap.add_argument("--out", default=None, help="write the raw results here (JSON)")
    args = ap.parse_args()
    model = args.model or subprocess.run([args.tandem, "model", "fetch"], capture_output=True, text=True,
                                         check=True).stdout.strip()
    logs = tempfile.mkdtemp(prefix="tandem-ttft-")
    common = ["--threads", str(args.threads)]
    print(f"starting clusters (logs in {logs})", file=sys.stderr)
    disagg = Cluster("disagg", ["--prefill", "1", "--decode", "1", "--no-controller", *common], logs, args.tandem, model)
    mixed = Cluster("mixed", ["--prefill", "0", "--decode", "0", "--mixed", "1", *common], logs, args.tandem, model)
    try:
        rng = random.Random(7)
        # ~1 token per word for these words; calibrate on one warm-up prompt per cluster.
        words = args.prompt_tokens
        _, _, n = ttft(mixed, prompt_text(rng, words), 1)
        words = max(1, round(words * args.prompt_tokens / n))
        ttft(disagg, prompt_text(rng, words), 1)
        rows = []
        for i in range(args.requests):
            # Distinct prompts (no prefix-cache hits), the same one on both paths.
            text = prompt_text(rng, words)
            order = [("disagg", disagg), ("mixed", mixed)] if i % 2 == 0 else [("mixed", mixed), ("disagg", disagg)]
            for name, c in order:
                first, total, tokens = ttft(c, text, args.max_tokens)
                rows.append({"path": name, "i": i, "ttft_s": first, "e2e_s": total, "prompt_tokens": tokens})
                print(f"{i:3d} {name:7s} prompt {tokens} tokens  TTFT {first * 1000:8.1f} ms  "
                      f"e2e {total * 1000:8.1f} ms", file=sys.stderr)
        prefill_metrics = disagg.metrics("prefill")
        result = {"requests": args.requests, "threads_per_worker": args.threads, "max_tokens": args.max_tokens}
        for name in ("disagg", "mixed"):
            t = [r["ttft_s"] for r in rows if r["path"] == name]
            result[name] = {"ttft_median_s": statistics.median(t), "ttft_mean_s": statistics.mean(t),
                            "ttft_min_s": min(t), "ttft_max_s": max(t),
                            "prompt_tokens_median": statistics.median(r["prompt_tokens"] for r in rows
                                                                       if r["path"] == name)}
        result["ttft_ratio_disagg_over_mixed"] = result["disagg"]["ttft_median_s"] / result["mixed"]["ttft_median_s"]
        result["hop_ms_median"] = 1000 * (result["disagg"]["ttft_median_s"] - result["mixed"]["ttft_median_s"])
        result["prefill_worker_mean_prefill_s"] = histogram_mean(prefill_metrics, "tandem_worker_prefill_seconds")
        result["prefill_worker_mean_transfer_s"] = histogram_mean(prefill_metrics, "tandem_worker_kv_transfer_seconds")
        result["kv_bytes_per_request"] = (prefill_metrics.get('tandem_worker_kv_transfer_bytes_total{role="prefill"}', 0) /
                                          max(1, prefill_metrics.get('tandem_worker_kv_transfers_total{role="prefill",result="ok"}', 1)))
        result["rows"] = rows
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        disagg.stop()
        mixed.stop()


if __name__ == "__main__":
    main()
