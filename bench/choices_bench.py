#!/usr/bin/env python3
"""n choices in one request against the same n requests sent at once.

Starts `tandem up --prefill P --decode 1 --no-controller` (or `--mixed 1` with --mixed) with the
bundled model and, for each trial, a prompt no earlier trial shared (~--prompt-words words) and
sampled generation (temperature 1, seeds s .. s+n-1):
  * "n":        one chat completion with n=N and seed s;
  * "separate": N chat completions with n=1 and seeds s+i, sent concurrently (what a client does
                without `n`).
Both give the same texts (choice i is seeded s+i); the script checks that, and reports for each
the prompt tokens the workers computed (tandem_worker_tokens_total{phase="prefill"}), the
prefix-cache hits (tandem_worker_prefix_cache_hit_tokens_total) and the wall time until every
choice is done; the two run alternately, in the same cluster, --trials times each.

  .venv-test/bin/python bench/choices_bench.py --n 4 --trials 5 \
      --out bench/results/cpu-vm-2026-12-04-choices/choices.json
"""
import argparse
import concurrent.futures as cf
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import Cluster  # noqa: E402


def worker_totals(cluster, role):
    """Prompt tokens computed and prefix-cache hits, summed over every worker of `role`."""
    computed = hits = 0.0
    for page in cluster.metrics_of_each(role):
        computed += sum(v for k, v in page.items()
                        if k.startswith("tandem_worker_tokens_total") and 'phase="prefill"' in k)
        hits += sum(v for k, v in page.items() if k.startswith("tandem_worker_prefix_cache_hit_tokens_total"))
    return computed, hits


def ask(cluster, messages, n, seed, max_tokens):
    r = cluster.client.chat.completions.create(model=cluster.model, messages=messages, n=n, seed=seed,
                                               temperature=1.0, max_tokens=max_tokens)
    return [c.message.content for c in r.choices], r.usage.prompt_tokens


def trial(cluster, role, mode, n, words, max_tokens, pool):
    text = f"{uuid.uuid4()} " + " ".join(["Tell me about the history of the river and its towns."] * (words // 10))
    messages = [{"role": "user", "content": text}]
    seed = int.from_bytes(os.urandom(4), "little")
    before = worker_totals(cluster, role)
    start = time.perf_counter()
    if mode == "n":
        texts, prompt = ask(cluster, messages, n, seed, max_tokens)
    else:
        futures = [pool.submit(ask, cluster, messages, 1, seed + i, max_tokens) for i in range(n)]
        results = [f.result() for f in futures]
        texts, prompt = [t[0][0] for t in results], results[0][1]
    wall = time.perf_counter() - start
    after = worker_totals(cluster, role)
    return {"mode": mode, "seed": seed, "prompt_tokens": prompt, "wall_s": wall,
            "computed_prompt_tokens": after[0] - before[0], "prefix_hit_tokens": after[1] - before[1],
            "texts": texts}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4, help="choices per request (default 4)")
    ap.add_argument("--trials", type=int, default=5, help="trials of each mode (default 5)")
    ap.add_argument("--prompt-words", type=int, default=400, help="prompt length in words (default 400)")
    ap.add_argument("--max-tokens", type=int, default=16, help="tokens per choice (default 16)")
    ap.add_argument("--prefill", type=int, default=1, help="prefill workers (default 1), beside 1 decode worker")
    ap.add_argument("--mixed", action="store_true", help="one mixed worker instead of prefill and decode workers")
    ap.add_argument("--out", required=True, help="JSON results (a Markdown summary is written beside it)")
    args = ap.parse_args()
    os.environ.setdefault("TANDEM_BIN", str(ROOT / "build" / "tandem"))
    layout = ["--prefill", "0", "--decode", "0", "--mixed", "1"] if args.mixed else \
        ["--prefill", str(args.prefill), "--decode", "1", "--no-controller"]
    role = "mixed" if args.mixed else "prefill"
    runs = []
    with tempfile.TemporaryDirectory() as logs, cf.ThreadPoolExecutor(args.n) as pool:
        cluster = Cluster("choices", layout, logs)
        try:
            trial(cluster, role, "n", args.n, args.prompt_words, args.max_tokens, pool)  # warm-up
            for t in range(args.trials):
                for mode in (("n", "separate") if t % 2 == 0 else ("separate", "n")):
                    r = trial(cluster, role, mode, args.n, args.prompt_words, args.max_tokens, pool)
                    runs.append(r)
                    print(f"trial {t + 1}/{args.trials} {mode:8s}: prompt {r['prompt_tokens']} tokens, computed "
                          f"{r['computed_prompt_tokens']:.0f}, cache hits {r['prefix_hit_tokens']:.0f}, "
                          f"{r['wall_s']:.2f} s", flush=True)
            # Same seeds, same texts: one n=N request answers what N requests would.
            seed_texts = [ask(cluster, [{"role": "user", "content": "Say hi."}], 1, 99 + i, 8)[0][0] for i in range(args.n)]
            same = ask(cluster, [{"role": "user", "content": "Say hi."}], args.n, 99, 8)[0] == seed_texts
        finally:
            cluster.stop()
    summary = {}
    for mode in ("n", "separate"):
        rs = [r for r in runs if r["mode"] == mode]
        summary[mode] = {"computed_prompt_tokens_median": statistics.median(r["computed_prompt_tokens"] for r in rs),
                         "prefix_hit_tokens_median": statistics.median(r["prefix_hit_tokens"] for r in rs),
                         "wall_s_median": statistics.median(r["wall_s"] for r in rs)}
    out = {"n": args.n, "layout": "mixed" if args.mixed else f"{args.prefill}P1D", "prompt_tokens": runs[0]["prompt_tokens"],
           "max_tokens": args.max_tokens, "same_texts_as_separate_seeded_requests": same,
           "summary": summary, "runs": runs,
           "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    s, p = summary, out["prompt_tokens"]
    md = [f"# n={args.n} in one request vs {args.n} requests at once ({out['layout']}, prompt {p} tokens, "
          f"{args.max_tokens} tokens per choice, {args.trials} trials each, medians)", "",
          "| | prompt tokens computed | prefix-cache hits | wall s |", "|---|---|---|---|"]
    for mode, name in (("n", f"n={args.n}"), ("separate", f"{args.n} x n=1")):
        m = s[mode]
        md.append(f"| {name} | {m['computed_prompt_tokens_median']:.0f} | {m['prefix_hit_tokens_median']:.0f} | "
                  f"{m['wall_s_median']:.2f} |")
    md += ["", f"choice i of n={args.n} equals the n=1 answer seeded s+i: {same}", "", f"`{out['command']}`"]
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
