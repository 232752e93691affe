#!/usr/bin/env python3
"""What scoring a prompt costs, and lm-evaluation-harness's loglikelihood request end to end.

Starts `tandem up --prefill 1 --decode 1 --no-controller` with the bundled model. Then:

  * cost: completions with echo and max_tokens 1 on prompts no earlier request shared (a fresh
    id leads each, so neither mode gets prefix-cache hits), ~--prompt-words words each, in two
    modes sent alternately, --trials times each:
      "scored": with logprobs 1 (every prompt token's log-probability and its best alternative:
                one row of logits per prompt token, log-softmax and top-1 over the vocabulary);
      "plain":  without (one row of logits: the last token's).
    Reported: the latency of each (mean, median) and scored/plain.
  * loglikelihood: the request lm-evaluation-harness's `local-completions` model sends for a
    multiple-choice item (`echo: true, logprobs: 1, max_tokens: 1, temperature: 0`, the context
    and one continuation as the prompt), summed over the continuation's tokens as it does
    (token_logprobs[ctxlen:-1]), for a few items with one right answer each; reports the
    model's pick per item and whether the continuation is its greedy choice.

  .venv-test/bin/python bench/prompt_logprobs_bench.py --trials 8 \
      --out bench/results/cpu-vm-2026-12-05-prompt-logprobs/prompt_logprobs.json
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import Cluster  # noqa: E402

# (context, continuations, index of the right one): items a 135M model may know.
ITEMS = [
    ("The capital of France is", [" Paris", " London", " Berlin", " Madrid"], 0),
    ("Water freezes at zero degrees", [" Celsius", " Kelvin", " miles", " pounds"], 0),
    ("The sun rises in the", [" east", " west", " north", " south"], 0),
    ("A week has seven", [" days", " hours", " years", " apples"], 0),
    ("Cats and dogs are popular", [" pets", " rocks", " planets", " numbers"], 0),
    ("The opposite of hot is", [" cold", " loud", " green", " tall"], 0),
]


def score(cluster, prompt, logprobs):
    kw = dict(model=cluster.model, prompt=prompt, max_tokens=1, temperature=0, echo=True)
    if logprobs is not None:
        kw["logprobs"] = logprobs
    start = time.perf_counter()
    r = cluster.client.completions.create(**kw)
    return time.perf_counter() - start, r


def cost(cluster, trials, words):
    filler = " ".join(["The river runs past the old mill and the town square toward the sea."] * (words // 14))
    seconds = {"scored": [], "plain": []}
    prompt_tokens = []
    for t in range(trials):
        for mode in (("scored", "plain") if t % 2 == 0 else ("plain", "scored")):
            s, r = score(cluster, f"{uuid.uuid4()} {filler}", 1 if mode == "scored" else None)
            seconds[mode].append(s)
            prompt_tokens.append(r.usage.prompt_tokens)
            if mode == "scored":
                assert len(r.choices[0].logprobs.token_logprobs) == r.usage.prompt_tokens + 1
        print(f"trial {t + 1}/{trials}: scored {seconds['scored'][-1]:.3f} s, plain {seconds['plain'][-1]:.3f} s",
              flush=True)
    out = {m: {"mean_s": statistics.mean(v), "median_s": statistics.median(v), "runs_s": v}
           for m, v in seconds.items()}
    out["prompt_tokens_mean"] = statistics.mean(prompt_tokens)
    out["scored_over_plain_mean"] = out["scored"]["mean_s"] / out["plain"]["mean_s"]
    out["scored_over_plain_median"] = out["scored"]["median_s"] / out["plain"]["median_s"]
    return out


def ctx_len(cluster, context):
    _, r = score(cluster, context, 1)
    return len(r.choices[0].logprobs.tokens) - 1  # minus the generated token


def loglikelihood(cluster):
    results = []
    for context, continuations, right in ITEMS:
        ctxlen = ctx_len(cluster, context)
        scores = []
        for cont in continuations:
            _, r = score(cluster, context + cont, 1)
            lp = r.choices[0].logprobs
            # As lm-evaluation-harness reads it: the continuation's tokens, not the generated one.
            token_lps = lp.token_logprobs[ctxlen:-1]
            greedy = all(max(top, key=top.get) == tok
                         for tok, top in zip(lp.tokens[ctxlen:-1], lp.top_logprobs[ctxlen:-1]))
            scores.append({"continuation": cont, "logprob": sum(token_lps), "tokens": len(token_lps),
                           "greedy": greedy})
        pick = max(range(len(scores)), key=lambda i: scores[i]["logprob"])
        results.append({"context": context, "right": continuations[right], "pick": continuations[pick],
                        "correct": pick == right, "scores": scores})
        print(f"{context!r}: picks {continuations[pick]!r} ({'right' if pick == right else 'wrong'})", flush=True)
    return {"items": results, "accuracy": sum(r["correct"] for r in results) / len(results)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tandem", default=str(ROOT / "build" / "tandem"), help="the tandem binary")
    ap.add_argument("--model", default=None, help="GGUF file (default: $TANDEM_MODEL)")
    ap.add_argument("--trials", type=int, default=8, help="requests per mode")
    ap.add_argument("--prompt-words", type=int, default=380, help="words per prompt (about 1.3 tokens each)")
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        cluster = Cluster("prompt-logprobs", ["--prefill", "1", "--decode", "1", "--no-controller"], logs,
                          tandem=args.tandem, model=args.model)
        try:
            result = {"command": " ".join(sys.argv), "cluster": "tandem up --prefill 1 --decode 1 --no-controller",
                      "cost": cost(cluster, args.trials, args.prompt_words), "loglikelihood": loglikelihood(cluster)}
        finally:
            cluster.stop()
    c = result["cost"]
    print(f"prompt ~{c['prompt_tokens_mean']:.0f} tokens: scored {c['scored']['mean_s']:.3f} s, plain "
          f"{c['plain']['mean_s']:.3f} s (mean); scored/plain {c['scored_over_plain_mean']:.2f}x mean, "
          f"{c['scored_over_plain_median']:.2f}x median")
    print(f"loglikelihood accuracy: {result['loglikelihood']['accuracy']:.2f} on {len(ITEMS)} items")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
