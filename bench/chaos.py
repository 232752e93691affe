#!/usr/bin/env python3
"""Chaos run: open-loop load on `tandem up` while workers are killed and stopped.

Starts `tandem up --prefill 2 --decode 2 --no-controller` with the bundled model, builds N greedy
streaming chat requests with Poisson arrival times, and sends them twice on the same schedule:
once with no faults (the reference), once while faults land at random times — kill -9 of a
decode worker, kill -9 of a prefill worker, SIGSTOP of a worker for 5 s (then SIGCONT), in turn.
Every request must complete, and its text must equal the fault-free run's (greedy decoding is
deterministic, so a migrated request that lost, repeated or changed a token would show).

Reports requests completed / failed, outputs equal / different, e2e latency p50/p99 of both runs,
the router's migrations by cause and its migration-delay histogram (tandem_router_migration_*),
and writes everything to --out (JSON) plus a one-page summary (Markdown) beside it.

  .venv-test/bin/python bench/chaos.py --requests 500 --rate 2 --faults 6 \
      --out bench/results/cpu-vm-2026-12-03-chaos/chaos.json

Needs TANDEM_BIN (default build/tandem) and TANDEM_MODEL (default `tandem model fetch`).
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import Cluster  # noqa: E402

TOPICS = ["a dragon", "a robot", "a cat", "a ship", "a tree", "a river", "a city", "a clock", "a violin",
          "a lighthouse", "a desert", "a comet", "a library", "a garden", "a train", "a mountain"]
ASKS = ["Write a short story about {}.", "Describe {} in detail.", "Give three facts about {}.",
        "Write a poem about {}.", "Explain why {} matters to people."]
FAULTS = ["kill decode", "kill prefill", "stop decode", "stop prefill"]


def prompts(n):
    out = [a.format(t) for a in ASKS for t in TOPICS]
    return [out[i % len(out)] + ("" if i < len(out) else f" (variant {i // len(out)})") for i in range(n)]


def arrivals(n, rate, seed):
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def one_request(cluster, prompt, max_tokens):
    start = time.monotonic()
    text, finish, tokens = "", None, 0
    try:
        stream = cluster.client.chat.completions.create(
            model=cluster.model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
            temperature=0, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return {"ok": True, "text": text, "finish": finish, "tokens": tokens, "e2e_s": time.monotonic() - start}
    except Exception as e:  # every failure kind is a finding: record it
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "text": text, "e2e_s": time.monotonic() - start}


def run_schedule(cluster, texts, times, max_tokens, on_start=None):
    """Sends request i at times[i] seconds after the start (open loop); returns the results."""
    results = [None] * len(texts)
    with cf.ThreadPoolExecutor(max_workers=min(256, len(texts))) as pool:
        t0 = time.monotonic()
        if on_start:
            on_start(t0)
        futures = {}
        for i, (text, at) in enumerate(zip(texts, times)):
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures[pool.submit(one_request, cluster, text, max_tokens)] = i
        for f in cf.as_completed(futures):
            results[futures[f]] = f.result()
    return results


def children(parent_pid):
    """[(pid, argv)] of the live (not zombie) children of `parent_pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent_pid or fields[0] in ("Z", "X"):
                continue
            with open(f"/proc/{entry}/cmdline") as f:
                out.append((int(entry), f.read().split("\0")))
        except (OSError, IndexError, ValueError):
            continue
    return out


def children_by_role(up_pid):
    """{role: [pid]} of the `tandem worker` children of tandem up."""
    out = {"prefill": [], "decode": []}
    for pid, argv in children(up_pid):
        if "worker" in argv and "--role" in argv and argv[argv.index("--role") + 1] in out:
            out[argv[argv.index("--role") + 1]].append(pid)
    return out


def inject(cluster, faults, window_s, seed, log):
    """Lands `faults` faults at random times within [0.1, 0.9] of the window, in turn by kind."""
    rng = random.Random(seed)
    times = sorted(rng.uniform(0.1 * window_s, 0.9 * window_s) for _ in range(faults))

    def run(t0):
        for k, at in enumerate(times):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            kind = FAULTS[k % len(FAULTS)]
            action, role = kind.split()
            pids = children_by_role(cluster.proc.pid)[role]
            if not pids:
                log.append({"t_s": round(time.monotonic() - t0, 2), "fault": kind, "pid": None})
                continue
            pid = rng.choice(pids)
            log.append({"t_s": round(time.monotonic() - t0, 2), "fault": kind, "pid": pid})
            if action == "kill":
                os.kill(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(5)
                os.kill(pid, signal.SIGCONT)

    return lambda t0: threading.Thread(target=run, args=(t0,), daemon=True).start()


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def histogram_quantile(metrics, name, q):
    """A quantile from a Prometheus histogram's cumulative buckets (upper bound of the bucket)."""
    buckets = sorted((float(k.split('le="')[1].rstrip('"}').replace("+Inf", "inf")), v)
                     for k, v in metrics.items() if k.startswith(name + "_bucket"))
    total = metrics.get(name + "_count", 0)
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return None


def summarize(ref, chaos, fault_log, metrics, args, elapsed):
    ok = [r for r in chaos if r["ok"]]
    equal = sum(1 for a, b in zip(ref, chaos) if a["ok"] and b["ok"] and a["text"] == b["text"])
    migrations = {k.split('"')[1]: v for k, v in metrics.items() if k.startswith("tandem_router_migrations_total")}
    return {
        "requests": len(chaos), "rate_per_s": args.rate, "max_tokens": args.max_tokens, "faults": fault_log,
        "reference_failed": sum(1 for r in ref if not r["ok"]),
        "completed": len(ok), "failed": len(chaos) - len(ok),
        "errors": sorted({r["error"] for r in chaos if not r["ok"]}),
        "outputs_equal_to_fault_free": equal,
        "e2e_s": {"reference_p50": percentile([r["e2e_s"] for r in ref], 0.5),
                  "reference_p99": percentile([r["e2e_s"] for r in ref], 0.99),
                  "chaos_p50": percentile([r["e2e_s"] for r in chaos], 0.5),
                  "chaos_p99": percentile([r["e2e_s"] for r in chaos], 0.99)},
        "migrations": migrations,
        "migration_delay_s": {"count": metrics.get("tandem_router_migration_seconds_count", 0),
                              "mean": (metrics.get("tandem_router_migration_seconds_sum", 0) /
                                       max(1, metrics.get("tandem_router_migration_seconds_count", 0))),
                              "p99_bucket_upper_bound": histogram_quantile(metrics, "tandem_router_migration_seconds",
                                                                           0.99)},
        "wall_s": round(elapsed, 1),
    }


def markdown(s):
    e = s["e2e_s"]
    lines = [f"# Chaos run: {s['requests']} requests at {s['rate_per_s']} req/s, {len(s['faults'])} faults", "",
             f"- completed {s['completed']}, failed {s['failed']} (fault-free reference: "
             f"{s['reference_failed']} failed)",
             f"- outputs equal to the fault-free run: {s['outputs_equal_to_fault_free']} of {s['requests']}",
             f"- e2e p50 / p99: {e['reference_p50']:.2f} / {e['reference_p99']:.2f} s fault-free, "
             f"{e['chaos_p50']:.2f} / {e['chaos_p99']:.2f} s with faults",
             f"- migrations by cause: {s['migrations']}; delay per migration: mean "
             f"{s['migration_delay_s']['mean']:.2f} s, p99 ≤ {s['migration_delay_s']['p99_bucket_upper_bound']} s "
             f"({int(s['migration_delay_s']['count'])} observed)", "", "| t (s) | fault | pid |", "|---|---|---|"]
    lines += [f"| {f['t_s']} | {f['fault']} | {f['pid']} |" for f in s["faults"]]
    if s["errors"]:
        lines += ["", "Errors:"] + [f"- {e}" for e in s["errors"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=500, help="requests per run (default 500)")
    p.add_argument("--rate", type=float, default=2.0, help="Poisson arrival rate, requests/s (default 2)")
    p.add_argument("--faults", type=int, default=6, help="faults during the chaos run, kinds in turn (default 6)")
    p.add_argument("--max-tokens", type=int, default=48, help="tokens per answer (default 48)")
    p.add_argument("--seed", type=int, default=1, help="arrival and fault schedule seed")
    p.add_argument("--up-arg", action="append", default=[], help="extra `tandem up` flag (repeatable)")
    p.add_argument("--out", required=True, help="result JSON (a .md summary is written beside it)")
    args = p.parse_args(argv)
    os.environ.setdefault("TANDEM_BIN", str(ROOT / "build" / "tandem"))
    if "TANDEM_MODEL" not in os.environ:
        os.environ["TANDEM_MODEL"] = subprocess.check_output([os.environ["TANDEM_BIN"], "model", "fetch"],
                                                             text=True).strip()
    texts, times = prompts(args.requests), arrivals(args.requests, args.rate, args.seed)
    log_dir = tempfile.mkdtemp(prefix="tandem-chaos-")
    cluster = Cluster("chaos", ["--prefill", "2", "--decode", "2", "--no-controller", *args.up_arg], log_dir)
    try:
        started = time.monotonic()
        print(f"[chaos] fault-free run: {args.requests} requests at {args.rate}/s", file=sys.stderr)
        ref = run_schedule(cluster, texts, times, args.max_tokens)
        fault_log = []
        print(f"[chaos] run with {args.faults} faults", file=sys.stderr)
        chaos = run_schedule(cluster, texts, times, args.max_tokens,
                             on_start=inject(cluster, args.faults, times[-1], args.seed, fault_log))
        summary = summarize(ref, chaos, fault_log, cluster.metrics("router"), args, time.monotonic() - started)
    finally:
        cluster.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "reference": ref, "chaos": chaos}, indent=1))
    out.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"[chaos] tandem up log: {cluster.log_path}", file=sys.stderr)
    return 0 if summary["failed"] == 0 and summary["outputs_equal_to_fault_free"] == summary["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
