#!/usr/bin/env python3
"""llama.cpp's CPU baseline through its own tools, as llama.cpp's users run them, and the report
of bench/run_cpu_bench.sh.

  run     runs `llama-bench` (pp512 and tg64, flash attention auto; the median of its samples)
          and `llama-batched-bench` (decode with B = 1, 8, 32 sequences of 32-token prompts and
          64 generated tokens, run --repeats times, the median; then B = 1 from a
          --long-context-token prompt, 0 to skip) and prints one JSON object.
  report  joins engine_bench's JSON, run's JSON and membw's JSON into the result file: the
          figures, the ratios tandem / llama.cpp and the roofline (tokens/s at 100% of the
          measured DRAM read bandwidth for the weight bytes a decode step reads), and prints a
          markdown table. --tandem-long: engine_bench's JSON at batch 1 from the long context
          (--decode-context), compared with run's long-context row.

usage: llama_native_bench.py run --bin-dir DIR --model PATH --threads N [--repeats 3]
                                 [--prompt-tokens 512] [--decode-steps 64] [--batches 1,8,32]
                                 [--long-context 2048]
       llama_native_bench.py report --tandem F --native F --membw F --out F [--extra F]
                                    [--tandem-long F]
                                    [--model PATH] [--command STR]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

BATCHED_PROMPT_TOKENS = 32  # engine_bench's decode prompts are 32 tokens long


def run_tool(argv):
    """Runs one of llama.cpp's tools; returns stdout + stderr (they log to both)."""
    print("  $ " + " ".join(argv), file=sys.stderr)
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{argv[0]} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p.stdout, p.stderr


def llama_bench(args):
    """pp<prompt> and tg<decode> from `llama-bench -o json`."""
    out, _ = run_tool([os.path.join(args.bin_dir, "llama-bench"), "-m", args.model,
                       "-p", str(args.prompt_tokens), "-n", str(args.decode_steps),
                       "-t", str(args.threads), "-fa", "auto", "-r", str(args.repeats),
                       "-o", "json"])
    tests = json.loads(out)
    result = {"command": "llama-bench", "tests": {}}
    for t in tests:
        name = f"pp{t['n_prompt']}" if t["n_prompt"] else f"tg{t['n_gen']}"
        result["tests"][name] = {
            "tokens_per_s": statistics.median(t["samples_ts"]),
            "avg_ts": t["avg_ts"], "stddev_ts": t["stddev_ts"], "samples_ts": t["samples_ts"],
            "n_threads": t["n_threads"], "flash_attn": t["flash_attn"],
            "n_batch": t["n_batch"], "n_ubatch": t["n_ubatch"]}
        for k in ("build_commit", "build_number", "cpu_info", "backends", "model_type",
                  "model_size", "model_n_params"):
            result[k] = t.get(k)
    return result


def parse_batched_bench(text):
    """Rows of llama-batched-bench's JSONL output (--output-format jsonl)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            rows.append(json.loads(line))
    return rows


def batched_bench(args, batches, prompt_tokens=BATCHED_PROMPT_TOKENS):
    """Decode tokens/s with B sequences: the median over --repeats runs of llama-batched-bench."""
    n_ctx = max(batches) * (prompt_tokens + args.decode_steps) + 256
    argv = [os.path.join(args.bin_dir, "llama-batched-bench"), "-m", args.model,
            "-c", str(n_ctx), "-b", "2048", "-ub", "512", "-npp", str(prompt_tokens),
            "-ntg", str(args.decode_steps), "-npl", ",".join(map(str, batches)),
            "-t", str(args.threads), "-tb", str(args.threads), "-fa", "auto",
            "--output-format", "jsonl"]
    samples = {str(b): [] for b in batches}
    rows = []
    for _ in range(args.repeats):
        out, err = run_tool(argv)
        rows = parse_batched_bench(out + "\n" + err)
        for r in rows:
            samples[str(r["pl"])].append(r["speed_tg"])
    missing = [b for b, v in samples.items() if not v]
    if missing:
        sys.exit(f"llama-batched-bench printed no result for B = {', '.join(missing)}")
    return {"command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv)),
            "prompt_tokens": prompt_tokens, "generated_tokens": args.decode_steps,
            "flash_attn": rows[0]["flash_attn"], "n_threads": rows[0]["n_threads"],
            "decode_tokens_per_s": {b: statistics.median(v) for b, v in samples.items()},
            "decode_samples": samples}


def cmd_run(args):
    batches = [int(b) for b in args.batches.split(",")]
    print("llama-bench...", file=sys.stderr)
    bench = llama_bench(args)
    print("llama-batched-bench...", file=sys.stderr)
    batched = batched_bench(args, batches)
    result = {"implementation": "llama.cpp (native tools)", "build": args.label, "threads": args.threads,
              "repeats": args.repeats, "statistic": "median",
              "llama_bench": bench, "llama_batched_bench": batched}
    if args.long_context > 0:
        print(f"llama-batched-bench from a {args.long_context}-token context...", file=sys.stderr)
        result["long_context"] = batched_bench(args, [1], args.long_context)
    print(json.dumps(result, indent=2))


def best_of(natives):
    """One native result whose every figure is the fastest of the builds run (each llama-bench test
    and each batch size on its own), naming the build each came from; the builds themselves under
    "builds"."""
    if len(natives) == 1:
        return natives[0]
    best = json.loads(json.dumps(natives[0]))
    for n in natives[1:]:
        for name, test in n["llama_bench"]["tests"].items():
            if test["tokens_per_s"] > best["llama_bench"]["tests"][name]["tokens_per_s"]:
                best["llama_bench"]["tests"][name] = test
        for b, v in n["llama_batched_bench"]["decode_tokens_per_s"].items():
            if v > best["llama_batched_bench"]["decode_tokens_per_s"][b]:
                best["llama_batched_bench"]["decode_tokens_per_s"][b] = v
                best["llama_batched_bench"].setdefault("from_build", {})[b] = n["build"]
        if "long_context" in n and (
                "long_context" not in best or n["long_context"]["decode_tokens_per_s"]["1"]
                > best["long_context"]["decode_tokens_per_s"]["1"]):
            best["long_context"] = dict(n["long_context"], build=n["build"])
    for name, test in best["llama_bench"]["tests"].items():
        test.setdefault("build", natives[0]["build"])
    if "long_context" in best:
        best["long_context"].setdefault("build", natives[0]["build"])
    best["llama_batched_bench"]["from_build"] = {
        b: best["llama_batched_bench"].get("from_build", {}).get(b, natives[0]["build"])
        for b in best["llama_batched_bench"]["decode_tokens_per_s"]}
    best["build"] = "fastest of " + ", ".join(n["build"] for n in natives)
    best["builds"] = natives
    return best


def ratios(tandem, native, long=None):
    pp = native["llama_bench"]["tests"]
    tg = next(v for k, v in pp.items() if k.startswith("tg"))
    prefill = next(v for k, v in pp.items() if k.startswith("pp"))
    decode = tandem["decode_tokens_per_s"]
    batched = native["llama_batched_bench"]["decode_tokens_per_s"]
    r = {"prefill_vs_llama_bench_pp": tandem["prefill_tokens_per_s"] / prefill["tokens_per_s"]}
    if "1" in decode:
        r["decode_b1_vs_llama_bench_tg"] = decode["1"] / tg["tokens_per_s"]
    for b, v in sorted(decode.items(), key=lambda kv: int(kv[0])):
        if b in batched:
            r[f"decode_b{b}_vs_batched_bench"] = v / batched[b]
    if long and "long_context" in native:
        r["decode_b1_long_context_vs_batched_bench"] = (
            long["decode_tokens_per_s"]["1"] / native["long_context"]["decode_tokens_per_s"]["1"])
    return r


def roofline(tandem, native, membw):
    bw = membw["read_gb_per_s"]
    threads = str(tandem["threads"])
    gbps = bw.get(threads, max(bw.values()))
    bytes_per_token = tandem["gguf_bytes_per_decode_step"]
    tok_s = gbps * 1e9 / bytes_per_token
    tg = next(v for k, v in native["llama_bench"]["tests"].items() if k.startswith("tg"))
    return {"read_gb_per_s": gbps, "read_gb_per_s_by_threads": bw, "threads": int(threads),
            "bytes_per_token": bytes_per_token,
            "bytes_per_token_note": "GGUF weight bytes one decode step reads (KV cache excluded)",
            "roofline_tokens_per_s": tok_s,
            "tandem_b1_fraction": tandem["decode_tokens_per_s"].get("1", 0) / tok_s,
            "llama_bench_tg_fraction": tg["tokens_per_s"] / tok_s}


def table(result):
    """The markdown table printed at the end of bench/run_cpu_bench.sh."""
    t, n, r, roof = result["tandem"], result["llama_cpp"], result["ratio_tandem_over_llama_cpp"], result["roofline"]
    tests = n["llama_bench"]["tests"]
    pp_name = next(k for k in tests if k.startswith("pp"))
    tg_name = next(k for k in tests if k.startswith("tg"))
    batched = n["llama_batched_bench"]["decode_tokens_per_s"]
    several = "builds" in n  # name the build each figure came from
    build = lambda name: f" ({tests[name]['build']})" if several else ""
    from_build = lambda b: f" ({n['llama_batched_bench']['from_build'][b]})" if several else ""
    rows = [(f"prefill tok/s ({t['prefill_prompt_tokens']}-token prompt)", t["prefill_tokens_per_s"],
             f"llama-bench {pp_name}{build(pp_name)}", tests[pp_name]["tokens_per_s"], r["prefill_vs_llama_bench_pp"])]
    if "1" in t["decode_tokens_per_s"]:
        rows.append(("decode tok/s B=1", t["decode_tokens_per_s"]["1"], f"llama-bench {tg_name}{build(tg_name)}",
                     tests[tg_name]["tokens_per_s"], r["decode_b1_vs_llama_bench_tg"]))
    for b, v in sorted(t["decode_tokens_per_s"].items(), key=lambda kv: int(kv[0])):
        if b in batched:
            rows.append((f"decode tok/s B={b}", v, f"llama-batched-bench B={b}{from_build(b)}", batched[b],
                         r[f"decode_b{b}_vs_batched_bench"]))
    long = result.get("tandem_long_context")
    if long and "decode_b1_long_context_vs_batched_bench" in r:
        ctx, lc = long["decode_context"], n["long_context"]
        lc_build = f" ({lc['build']})" if several else ""
        rows.append((f"decode tok/s B=1 from a {ctx}-token context", long["decode_tokens_per_s"]["1"],
                     f"llama-batched-bench npp{lc['prompt_tokens']}{lc_build}", lc["decode_tokens_per_s"]["1"],
                     r["decode_b1_long_context_vs_batched_bench"]))
    lines = ["| | tandem | llama.cpp tool | llama.cpp | tandem / llama.cpp |",
             "|---|---:|---|---:|---:|"]
    lines += [f"| {a} | {b:.1f} | {c} | {d:.1f} | {e:.2f} |" for a, b, c, d, e in rows]
    bw = ", ".join(f"{k} thr {v:.1f}" for k, v in roof["read_gb_per_s_by_threads"].items())
    lines += ["", "| roofline | |", "|---|---:|",
              f"| DRAM read GB/s (best pass; {bw}) | {roof['read_gb_per_s']:.1f} |",
              f"| weight bytes per decode step | {roof['bytes_per_token'] / 1e6:.1f} MB |",
              f"| roofline tok/s at 100% bandwidth | {roof['roofline_tokens_per_s']:.1f} |",
              f"| tandem B=1 / roofline | {roof['tandem_b1_fraction']:.2f} |",
              f"| llama-bench {tg_name} / roofline | {roof['llama_bench_tg_fraction']:.2f} |"]
    return "\n".join(lines)


def cmd_report(args):
    load = lambda path: json.load(open(path))
    tandem, membw = load(args.tandem), load(args.membw)
    long = load(args.tandem_long) if args.tandem_long else None
    native = best_of([load(path) for path in args.native])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor() or "unknown")
    result = {"cpu": cpu, "cores": os.cpu_count(), "host": platform.node(), "model": args.model,
              "command": args.command, "tandem": tandem, "llama_cpp": native, "membw": membw,
              "ratio_tandem_over_llama_cpp": ratios(tandem, native, long),
              "roofline": roofline(tandem, native, membw)}
    if long:
        result["tandem_long_context"] = long
    if args.extra:
        result["llama_cpp_python"] = load(args.extra)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}\n")
    print(table(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run llama-bench and llama-batched-bench")
    run.add_argument("--bin-dir", required=True, help="tools/goldens/build_llama_tools.sh prints it")
    run.add_argument("--model", required=True)
    run.add_argument("--threads", type=int, required=True)
    run.add_argument("--repeats", type=int, default=3)
    run.add_argument("--prompt-tokens", type=int, default=512)
    run.add_argument("--decode-steps", type=int, default=64)
    run.add_argument("--batches", default="1,8,32")
    run.add_argument("--label", default="default", help="the build's name in the result (e.g. its ISA)")
    run.add_argument("--long-context", type=int, default=2048,
                     help="also decode at B = 1 from a prompt this long (0: skip)")
    rep = sub.add_parser("report", help="join the JSON results, write the file, print the table")
    rep.add_argument("--tandem", required=True, help="engine_bench's JSON")
    rep.add_argument("--native", required=True, action="append",
                     help="`run`'s JSON; repeat it for several builds (each figure is the fastest build's)")
    rep.add_argument("--membw", required=True, help="membw's JSON")
    rep.add_argument("--out", required=True)
    rep.add_argument("--extra", help="llama_cpp_bench.py's JSON (llama-cpp-python), optional")
    rep.add_argument("--tandem-long", help="engine_bench's JSON at B = 1 from the long context, optional")
    rep.add_argument("--model", default="")
    rep.add_argument("--command", default="bench/run_cpu_bench.sh")
    args = ap.parse_args()
    cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    main()
