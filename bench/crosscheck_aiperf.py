#!/usr/bin/env python3
"""Cross-check `tandem bench serve` against an independent tool, NVIDIA's `aiperf`.

Both measure the same cluster (`tandem up --prefill 1 --decode 1 --no-controller`, the bundled
model) with the same open-loop workload, replayed from one trace file so that both send at the
same instants: per round, --requests Poisson arrivals at --rate requests/s (seeded by the
round), each --input-len prompt tokens and --output-len generated tokens (ignore_eos),
streamed completions; the trace is Mooncake's JSON lines ({"timestamp": ms, "input_length",
"output_length"}), which `tandem bench serve --trace` and aiperf's `mooncake_trace` with
`--fixed-schedule` both read. (With each tool drawing its own Poisson arrivals instead, the
TTFT medians of runs of the same tool differed by up to 37% here: near saturation TTFT is
mostly queueing, and queueing follows the draw.) The tools run one after the other, alternating
which goes first, --rounds times each; the report compares their medians over all rounds:
  * TTFT: both tools' time to the first streamed token;
  * TPOT: `tandem bench serve`'s (E2EL - TTFT) / (output tokens - 1), which is what aiperf calls
    "inter token latency" (aiperf's per-request ITL is that same ratio; tandem's ITL is every
    gap between chunks, a different statistic, reported beside it).
The issue's bar: medians within 15%.

aiperf needs a Hugging Face tokenizer; one is built from the GGUF's own vocabulary and merges
(`tokenizers`' byte-level BPE, digits split one by one as SmolLM2's pre-tokenizer does) and
checked against `tandem model tokenize` on a sample before the runs.

  .venv-test/bin/python bench/crosscheck_aiperf.py --out bench/results/cpu-vm-2026-12-04-aiperf/crosscheck.json

Creates .venv-aiperf (aiperf, gguf; pinned) on first use. Needs TANDEM_BIN (default
build/tandem) and TANDEM_MODEL (default: the bundled model, `tandem model fetch`).
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-aiperf"
PINS = ["aiperf==0.13.0", "gguf==0.19.0"]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import Cluster  # noqa: E402

TOKENIZER_SCRIPT = r'''
import json, sys
import gguf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
model, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(model)
def strings(name):
    f = r.fields[name]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges])
tok = Tokenizer(bpe)
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                             pre_tokenizers.ByteLevel(add_prefix_space=False)])
tok.decoder = decoders.ByteLevel()
tok.save(f"{out}/tokenizer.json")
ids = lambda key: int(r.fields[key].parts[-1][0])
config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokens[ids("tokenizer.ggml.bos_token_id")],
          "eos_token": tokens[ids("tokenizer.ggml.eos_token_id")], "model_max_length": 8192}
json.dump(config, open(f"{out}/tokenizer_config.json", "w"))
print(json.dumps(tok.encode(sys.argv[3]).ids))
'''
SAMPLE = "The capital of France is Paris; 12345 people, and a river."


def run(cmd, log, timeout):
    """Runs a load generator; returns the CPU seconds it and its children used (on the same
    cores as the cluster: a heavy client slows the server it measures)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def build_tokenizer(model, out):
    ours = json.loads(subprocess.run([os.environ["TANDEM_BIN"], "model", "tokenize", "--model", model, "--text",
                                      SAMPLE], capture_output=True, text=True, check=True).stdout)
    theirs = json.loads(subprocess.run([str(VENV / "bin" / "python"), "-c", TOKENIZER_SCRIPT, model, str(out), SAMPLE],
                                       capture_output=True, text=True, check=True).stdout)
    if theirs != ours:
        sys.exit(f"the Hugging Face tokenizer built from the GGUF differs from tandem's: {theirs} vs {ours}")


def write_trace(args, path, seed):
    """Poisson arrivals at args.rate, Mooncake's trace columns."""
    rng, t = random.Random(seed), 0.0
    with open(path, "w") as f:
        for _ in range(args.requests):
            t += rng.expovariate(args.rate)
            f.write(json.dumps({"timestamp": round(t * 1000), "input_length": args.input_len,
                                "output_length": args.output_len}) + "\n")


def tandem_run(args, url, out_dir, i):
    result = out_dir / f"tandem-{i}.json"
    cpu = run([os.environ["TANDEM_BIN"], "bench", "serve", "--base-url", url, "--endpoint", "/v1/completions",
         "--trace", str(out_dir / f"trace-{i}.jsonl"), "--seed", str(100 + i), "--result-file", str(result)],
        out_dir / f"tandem-{i}.log", timeout=args.requests / args.rate * 4 + 120)
    r = json.loads(result.read_text())["summary"]
    return {"ttft_ms": r["ttft"]["median_ms"], "tpot_ms": r["tpot"]["median_ms"], "itl_ms": r["itl"]["median_ms"],
            "ttft_mean_ms": r["ttft"]["mean_ms"], "completed": r["completed"], "client_cpu_s": cpu}


def aiperf_run(args, url, model_name, tokenizer, out_dir, i):
    art = out_dir / f"aiperf-{i}"
    cpu = run([str(VENV / "bin" / "aiperf"), "profile", "--model", model_name, "--url", url, "--endpoint-type",
         "completions", "--streaming", "--tokenizer", str(tokenizer),
         "--input-file", str(out_dir / f"trace-{i}.jsonl"), "--custom-dataset-type", "mooncake_trace",
         "--fixed-schedule", "--extra-inputs", "ignore_eos:true", "--use-legacy-max-tokens",
         "--use-server-token-count", "--random-seed", str(100 + i), "--output-artifact-dir", str(art), "--no-server-metrics",
         "--no-gpu-telemetry", "--no-auto-plot"],
        out_dir / f"aiperf-{i}.log", timeout=args.requests / args.rate * 4 + 300)
    r = json.loads((art / "profile_export_aiperf.json").read_text())
    return {"ttft_ms": r["time_to_first_token"]["p50"], "tpot_ms": r["inter_token_latency"]["p50"],
            "ttft_mean_ms": r["time_to_first_token"]["avg"], "completed": r["request_count"]["avg"], "client_cpu_s": cpu}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1.0, help="requests/s, Poisson (default 1)")
    ap.add_argument("--requests", type=int, default=80, help="requests per run (default 80)")
    ap.add_argument("--input-len", type=int, default=256, help="prompt tokens (default 256)")
    ap.add_argument("--output-len", type=int, default=64, help="generated tokens (default 64)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tool, alternating (default 3)")
    ap.add_argument("--out", required=True, help="JSON results; a Markdown summary and the raw runs go beside it")
    args = ap.parse_args()
    os.environ.setdefault("TANDEM_BIN", str(ROOT / "build" / "tandem"))
    if "TANDEM_MODEL" not in os.environ:
        os.environ["TANDEM_MODEL"] = subprocess.run([os.environ["TANDEM_BIN"], "model", "fetch"], capture_output=True,
                                                    text=True, check=True).stdout.strip().splitlines()[-1]
    subprocess.run([str(ROOT / "scripts" / "setup_venv.sh"), str(VENV), *PINS], check=True)
    out = Path(args.out)
    raw = out.parent / "runs"
    raw.mkdir(parents=True, exist_ok=True)
    runs = {"tandem": [], "aiperf": []}
    with tempfile.TemporaryDirectory() as logs:
        tokenizer = Path(logs) / "tokenizer"
        tokenizer.mkdir()
        build_tokenizer(os.environ["TANDEM_MODEL"], tokenizer)
        cluster = Cluster("crosscheck", ["--prefill", "1", "--decode", "1", "--no-controller"], logs)
        try:
            url = cluster.base
            for i in range(args.rounds):
                write_trace(args, raw / f"trace-{i}.jsonl", seed=100 + i)
                for tool in (("tandem", "aiperf") if i % 2 == 0 else ("aiperf", "tandem")):
                    t0 = time.time()
                    r = tandem_run(args, url, raw, i) if tool == "tandem" else \
                        aiperf_run(args, url, cluster.model, tokenizer, raw, i)
                    runs[tool].append(r)
                    print(f"round {i + 1}/{args.rounds} {tool:6s}: TTFT p50 {r['ttft_ms']:.0f} ms, TPOT p50 "
                          f"{r['tpot_ms']:.1f} ms ({time.time() - t0:.0f} s, client CPU {r['client_cpu_s']:.0f} s)",
                          flush=True)
        finally:
            cluster.stop()
    summary = {}
    for metric in ("ttft_ms", "tpot_ms"):
        a = statistics.median(r[metric] for r in runs["tandem"])
        b = statistics.median(r[metric] for r in runs["aiperf"])
        summary[metric] = {"tandem_bench": a, "aiperf": b, "difference": abs(a - b) / b, "within_15pct": abs(a - b) <= 0.15 * b}
    result = {"workload": vars(args) | {"out": None}, "summary": summary, "runs": runs, "command": " ".join(sys.argv),
              "note": "medians of the per-run medians; aiperf's 'inter token latency' is TPOT"}
    out.write_text(json.dumps(result, indent=2))
    md = [f"# tandem bench serve vs aiperf 0.13.0 (1P1D, the same trace: Poisson {args.rate} req/s, {args.requests} requests, "
          f"{args.input_len} in / {args.output_len} out, {args.rounds} runs each, alternating)", "",
          "| median of run medians | tandem bench serve | aiperf | difference | within 15% |", "|---|---|---|---|---|"]
    for metric, name in (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms (aiperf: inter token latency)")):
        s = summary[metric]
        md.append(f"| {name} | {s['tandem_bench']:.1f} | {s['aiperf']:.1f} | {100 * s['difference']:.1f}% | "
                  f"{'yes' if s['within_15pct'] else 'no'} |")
    md += ["", "Per round, the same trace for both (TTFT p50 ms / TPOT p50 ms / the load generator's own CPU "
           "seconds, on the cluster's cores):", ""]
    for tool in ("tandem", "aiperf"):
        md.append(f"- {tool}: " + ", ".join(f"{r['ttft_ms']:.0f} / {r['tpot_ms']:.1f} / {r['client_cpu_s']:.0f}"
                                            for r in runs[tool]))
    pairs = [f"{t['ttft_ms'] / a['ttft_ms']:.2f}" for t, a in zip(runs["tandem"], runs["aiperf"])]
    md += ["", f"TTFT p50 ratio tandem/aiperf per round: {', '.join(pairs)}", "", f"`{result['command']}`"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
