#!/usr/bin/env python3
"""Speculative decoding (prompt lookup) at batch 1 (or --parallel N): decode tokens/s and acceptance, with and
without drafts, on copy-heavy prompts (edit a text, rename or annotate code, quote a note) and on
open chat (bench/prompts/speculative.json).

Each prompt runs through `tandem generate --chat` (greedy, one process per run, C++ timing) with
--speculative-ngram 0 (the baseline) and each K of --drafts, in alternating order, --repeats times;
the median of each is reported. Outputs are compared with the baseline's byte for byte: they must
be the same. Writes <out>/speculative-cost<C>.json and prints a table (markdown).

usage: bench/speculative_bench.py [--tandem build/tandem] [--drafts 3,4,8] [--draft-cost 0.25]
                                  [--repeats 3] [--max-tokens 160] [--parallel N] [--threads N]
                                  [--out DIR]
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATS = re.compile(r"generated (\d+) tokens .*decode ([0-9.]+) tokens/s")
ALL = re.compile(r"(\d+) copies: (\d+) tokens generated, decode ([0-9.]+) tokens/s in all")
SPEC = re.compile(r"speculative decoding: (\d+) of (\d+) draft tokens accepted .*, (\d+) iterations")


def run(args, prompt, k):
    cmd = [args.tandem, "generate", "--chat", "--prompt", prompt, "--max-tokens", str(args.max_tokens),
           "--temperature", "0", "--speculative-ngram", str(k), "--speculative-draft-cost", str(args.draft_cost)]
    if args.parallel > 1:
        cmd += ["--parallel", str(args.parallel), "--speculative-max-batch", str(args.parallel)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = STATS.search(p.stderr)
    if not m:
        sys.exit(f"no statistics in the output of {' '.join(cmd)}:\n{p.stderr}")
    r = {"generated": int(m.group(1)), "decode_tps": float(m.group(2)),
         "output_md5": hashlib.md5(p.stdout.encode()).hexdigest()}
    if args.parallel > 1:  # the batch's decode rate, all copies together
        r["decode_tps"] = float(ALL.search(p.stderr).group(3))
    s = SPEC.search(p.stderr)
    if s:
        r.update(accepted=int(s.group(1)), drafted=int(s.group(2)), iterations=int(s.group(3)))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default=os.path.join(ROOT, "build", "tandem"))
    ap.add_argument("--model", default="", help="GGUF file (default: the bundled model)")
    ap.add_argument("--prompts", default=os.path.join(ROOT, "bench", "prompts", "speculative.json"))
    ap.add_argument("--drafts", default="3,4,8", help="draft lengths K to compare with 0")
    ap.add_argument("--draft-cost", type=float, default=0.25,
                    help="--speculative-draft-cost (0: every draft K tokens long, no adaptation)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=1,
                    help="copies of each prompt decoding together (a batch; drafts allowed up to this many): "
                         "tokens/s counts them all")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    drafts = [int(k) for k in args.drafts.split(",")]
    prompts = json.load(open(args.prompts))
    out_dir = args.out or os.path.join(
        ROOT, "bench", "results", f"cpu-{socket.gethostname()}-{datetime.date.today()}-speculative")
    suffix = f"-batch{args.parallel}" if args.parallel > 1 else ""
    os.makedirs(out_dir, exist_ok=True)

    rows = []
    for i, p in enumerate(prompts):
        runs = {k: [] for k in [0] + drafts}
        for rep in range(args.repeats):
            order = [0] + drafts if rep % 2 == 0 else drafts[::-1] + [0]
            for k in order:
                runs[k].append(run(args, p["prompt"], k))
        base = runs[0][0]
        row = {"name": p["name"], "kind": p["kind"], "generated": base["generated"],
               "baseline_tps": statistics.median(r["decode_tps"] for r in runs[0]), "drafts": {}}
        for k in drafts:
            same = all(r["output_md5"] == base["output_md5"] for r in runs[k])
            tps = statistics.median(r["decode_tps"] for r in runs[k])
            last = runs[k][-1]
            row["drafts"][k] = {"decode_tps": tps, "speedup": tps / row["baseline_tps"], "same_output": same,
                                "accepted": last.get("accepted", 0), "drafted": last.get("drafted", 0),
                                "acceptance": last.get("accepted", 0) / max(last.get("drafted", 0), 1),
                                "iterations": last.get("iterations", 0)}
        rows.append(row)
        cells = "  ".join(f"K={k}: {row['drafts'][k]['speedup']:.2f}x ({100 * row['drafts'][k]['acceptance']:.0f}%)"
                          for k in drafts)
        print(f"[{i + 1}/{len(prompts)}] {p['name']:<14} {row['baseline_tps']:6.1f} tok/s  {cells}", file=sys.stderr)

    summary = {}
    for kind in sorted({r["kind"] for r in rows}):
        sel = [r for r in rows if r["kind"] == kind]
        summary[kind] = {k: {"speedup_geomean": statistics.geometric_mean(r["drafts"][k]["speedup"] for r in sel),
                             "acceptance": sum(r["drafts"][k]["accepted"] for r in sel) /
                             max(sum(r["drafts"][k]["drafted"] for r in sel), 1)} for k in drafts}
    result = {"date": str(datetime.date.today()), "host": socket.gethostname(), "max_tokens": args.max_tokens,
              "draft_cost": args.draft_cost, "parallel": args.parallel,
              "repeats": args.repeats, "threads": args.threads or os.cpu_count(), "prompts": rows, "summary": summary,
              "all_outputs_same": all(d["same_output"] for r in rows for d in r["drafts"].values())}
    with open(os.path.join(out_dir, f"speculative-cost{args.draft_cost:g}{suffix}.json"), "w") as f:
        json.dump(result, f, indent=1)

    print(f"\nbatch {args.parallel}, greedy, {args.max_tokens} tokens max, median of {args.repeats}, --speculative-draft-cost "
          f"{args.draft_cost:g}; speed-up over --speculative-ngram 0 (acceptance)")
    print("| prompt | kind | tokens | baseline tok/s | " + " | ".join(f"K={k}" for k in drafts) + " |")
    print("|---|---|---|---|" + "---|" * len(drafts))
    for r in rows:
        print(f"| {r['name']} | {r['kind']} | {r['generated']} | {r['baseline_tps']:.1f} | " +
              " | ".join(f"{r['drafts'][k]['speedup']:.2f}x ({100 * r['drafts'][k]['acceptance']:.0f}%)"
                         for k in drafts) + " |")
    for kind, per_k in summary.items():
        print(f"| **{kind}, geometric mean** | | | | " +
              " | ".join(f"{v['speedup_geomean']:.2f}x ({100 * v['acceptance']:.0f}%)" for v in per_k.values()) + " |")
    print(f"\noutputs identical to the baseline: {result['all_outputs_same']}; written to {out_dir}")
    return 0 if result["all_outputs_same"] else 1


if __name__ == "__main__":
    sys.exit(main())
