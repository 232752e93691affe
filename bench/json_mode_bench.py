#!/usr/bin/env python3
"""JSON mode (response_format json_object and json_schema) against free text: what it costs per token
and what it buys.

Starts `tandem up --prefill 1 --decode 1 --no-controller` with the bundled model and asks each of
--questions chat questions that want a JSON answer, streamed, greedy and seeded (temperature 1),
in three modes: free text, `response_format: {"type": "json_object"}` and json_schema with
ANSWER_SCHEMA ({"answer": string, "confidence": number}, both required, nothing else), rotating
which goes first, for --trials rounds. Reports for each mode:
  * the answers that are one JSON object (json.loads gives a dict), those that also follow
    ANSWER_SCHEMA, and those cut by max_tokens;
  * the median inter-token latency (gaps between streamed content chunks, per answer, then the
    median over answers) and its ratio to free text's: the mask's cost on the decode worker.

  .venv-test/bin/python bench/json_mode_bench.py --trials 3 \\
      --out bench/results/cpu-vm-2026-12-04-json-mode/json_mode.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import Cluster  # noqa: E402

QUESTIONS = [
    "Give me a JSON object with the name and age of a person.",
    "List three fruits as JSON.",
    "What is the capital of France? Answer in JSON.",
    "Describe a cat with a JSON object.",
    "Return the colors of the rainbow as JSON.",
    "Write a JSON object describing a book: title, author, year.",
]


ANSWER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["answer", "confidence"],
                 "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}}}
MODES = ("text", "json_object", "json_schema")


def follows_answer_schema(value):
    return (isinstance(value, dict) and set(value) == {"answer", "confidence"} and isinstance(value["answer"], str)
            and isinstance(value["confidence"], (int, float)) and not isinstance(value["confidence"], bool))


def ask(cluster, question, mode, temperature, seed, max_tokens):
    kw = dict(model=cluster.model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
              temperature=temperature, seed=seed, stream=True)
    if mode == "json_object":
        kw["response_format"] = {"type": "json_object"}
    if mode == "json_schema":
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    text, stamps, finish = "", [], None
    for chunk in cluster.client.chat.completions.create(**kw):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta.content or ""
        if delta:
            stamps.append(time.perf_counter())
            text += delta
        finish = chunk.choices[0].finish_reason or finish
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    return {"question": question, "mode": mode, "temperature": temperature, "seed": seed,
            "finish": finish, "text": text, "is_object": isinstance(value, dict),
            "follows_schema": follows_answer_schema(value),
            "itl_ms_median": 1000 * statistics.median(gaps) if gaps else None}


def summarize(runs):
    out = {}
    for mode in MODES:
        rs = [r for r in runs if r["mode"] == mode]
        itls = [r["itl_ms_median"] for r in rs if r["itl_ms_median"] is not None]
        out[mode] = {"answers": len(rs),
                     "objects": sum(r["is_object"] for r in rs),
                     "follow_answer_schema": sum(r["follows_schema"] for r in rs),
                     "cut_by_max_tokens": sum(r["finish"] == "length" for r in rs),
                     "itl_ms_median": statistics.median(itls)}
        out[mode]["itl_ratio_to_text"] = out[mode]["itl_ms_median"] / out["text"]["itl_ms_median"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3, help="rounds over the questions (default 3)")
    ap.add_argument("--questions", type=int, default=len(QUESTIONS), help=f"questions used, 1..{len(QUESTIONS)}")
    ap.add_argument("--max-tokens", type=int, default=200, help="tokens per answer at most (default 200)")
    ap.add_argument("--out", required=True, help="JSON results (a Markdown summary is written beside it)")
    args = ap.parse_args()
    os.environ.setdefault("TANDEM_BIN", str(ROOT / "build" / "tandem"))
    if not os.environ.get("TANDEM_MODEL"):  # the bundled model, fetched if missing
        fetched = subprocess.run([os.environ["TANDEM_BIN"], "model", "fetch"], check=True, capture_output=True, text=True)
        os.environ["TANDEM_MODEL"] = fetched.stdout.strip().splitlines()[-1]
    runs = []
    with tempfile.TemporaryDirectory() as logs:
        cluster = Cluster("json-mode", ["--prefill", "1", "--decode", "1", "--no-controller"], logs)
        try:
            ask(cluster, QUESTIONS[0], "json_schema", 0, None, 8)  # warm-up
            for t in range(args.trials):
                for i, q in enumerate(QUESTIONS[:args.questions]):
                    for temperature, seed in ((0, None), (1.0, 100 * t + i)):
                        shift = (t + i) % len(MODES)
                        for mode in MODES[shift:] + MODES[:shift]:
                            r = ask(cluster, q, mode, temperature, seed, args.max_tokens)
                            runs.append(r)
                            print(f"trial {t + 1}/{args.trials} {mode} T={temperature}: "
                                  f"object={r['is_object']} finish={r['finish']} itl={r['itl_ms_median']:.2f} ms",
                                  flush=True)
        finally:
            cluster.stop()
    summary = summarize(runs)
    out = {"layout": "1P1D", "max_tokens": args.max_tokens, "summary": summary, "runs": runs,
           "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    md = [f"# JSON modes vs free text (1P1D, SmolLM2-135M Q4_1, {len(runs)} streamed chat answers, "
          f"max_tokens {args.max_tokens}, greedy and temperature 1)", "",
          "| | answers | one JSON object | follows ANSWER_SCHEMA | cut by max_tokens | ITL median ms | ITL / text |",
          "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        m = summary[mode]
        md.append(f"| {mode} | {m['answers']} | {m['objects']} | {m['follow_answer_schema']} | {m['cut_by_max_tokens']} "
                  f"| {m['itl_ms_median']:.2f} | {m['itl_ratio_to_text']:.3f} |")
    md += ["", f"`{out['command']}`"]
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
