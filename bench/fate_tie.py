#!/usr/bin/env python3
"""Fate-tied legs with real processes: how long a worker's death takes to reach the other leg.

Starts `tandem up --prefill 1 --decode 1 --no-controller` (1 thread per worker; tandem up
replaces a crashed worker), sends one long greedy prompt at a time (a prefill of about 2 s) and,
in the middle of its prefill, kill -9's a worker:
  decode  — the worker holding the request's KV lease. Measured: kill → the router drops it
            (its log line), kill → the prefill worker's prefill into that lease ends, cancelled
            (its log line);
  prefill — the worker computing the prompt. Measured: kill → the router drops it.
Every request must still complete with the text the same prompt gets without a fault (sent
after it; it migrates or is retried), and no decode worker may keep reserved KV blocks at the end.

  .venv-test/bin/python bench/fate_tie.py --trials 5 --out bench/results/<host>-<date>-fate-tie.json

Needs TANDEM_BIN (default build/tandem) and TANDEM_MODEL (default `tandem model fetch`).
"""
import argparse
import datetime
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from chaos import children_by_role  # noqa: E402
from cluster import Cluster  # noqa: E402

SERVING = re.compile(r"\[worker\] worker (\S+) \((prefill|decode)\) serving gRPC on \S+, HTTP on ([0-9.:]+),")
DROPPED = re.compile(r"^(\S+) W \[router\] worker=(\S+) dropped: (.*)$")
WORDS = ["river", "stone", "light", "garden", "paper", "window", "music", "cloud", "engine", "forest",
         "market", "silver", "bridge", "winter", "candle", "harbor", "letter", "orange", "planet", "shadow"]


def prompt(i, words):
    rng = random.Random(1000 + i)
    return f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(words))


def complete(cluster, text, out):
    start = time.monotonic()
    r = cluster.client.completions.create(model=cluster.model, prompt=text, max_tokens=8, temperature=0)
    out.update(text=r.choices[0].text, seconds=time.monotonic() - start)


PREFILL_CANCELLED = re.compile(r"^(\S+) I \[worker\] request=\S+ prefill ended after .*CANCELLED")


def log_times(log_path, pattern, t0):
    """Unix times of the log lines matching `pattern` (group 1: the timestamp) logged after t0."""
    out = []
    for line in open(log_path, errors="replace"):
        if m := pattern.match(line.strip()):
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= t0:
                out.append(t)
    return out


def drops_since(log_path, t0):
    """{worker id: (unix seconds, why)} of the router's 'dropped' lines logged after t0."""
    out = {}
    for line in open(log_path, errors="replace"):
        m = DROPPED.match(line.strip())
        if not m:
            continue
        t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
        if t >= t0:
            out.setdefault(m.group(2), (t, m.group(3)))
    return out


def current_http(cluster, role):
    """The HTTP address of the newest worker of `role` (tandem up replaces killed ones)."""
    found = None
    for line in open(cluster.log_path, errors="replace"):
        if (m := SERVING.search(line)) and m.group(2) == role:
            found = m.group(3)
    return found


def queued(cluster_http):
    page = Cluster._scrape(cluster_http)
    return sum(v for k, v in page.items() if k.startswith("tandem_worker_queued_prefill_tokens"))


def trial(cluster, up_pid, i, kind, words):
    text = prompt(i, words)
    result = {}
    t = threading.Thread(target=complete, args=(cluster, text, result))
    prefill_http = current_http(cluster, "prefill")
    t.start()
    deadline = time.time() + 30
    while queued(prefill_http) == 0:  # the prompt is being computed
        if time.time() > deadline:
            raise SystemExit(f"trial {i}: the prefill worker never queued the prompt")
        time.sleep(0.005)
    time.sleep(0.3)
    victim = children_by_role(up_pid)[kind][0]
    t_kill = time.time()
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=300)
    time.sleep(0.2)  # the router's log line is flushed
    drops = drops_since(cluster.log_path, t_kill - 0.01)
    victim_drop = [(w, (ts - t_kill) * 1000, why) for w, (ts, why) in drops.items() if w.startswith(kind)]
    other_leg_ms = None
    if kind == "decode":  # the prefill worker's log: its prefill into the dead worker's lease ended
        ends = log_times(cluster.log_path, PREFILL_CANCELLED, t_kill - 0.01)
        other_leg_ms = (ends[0] - t_kill) * 1000 if ends else None
    return {
        "trial": i, "killed": kind, "pid": victim,
        "dropped_ms": round(victim_drop[0][1], 1) if victim_drop else None,
        "dropped_why": victim_drop[0][2] if victim_drop else None,
        "other_leg_stopped_ms": None if other_leg_ms is None else round(other_leg_ms, 1),
        "completed": "text" in result, "text": result.get("text"),
        "seconds": round(result.get("seconds", float("nan")), 2),
    }


def wait_replaced(up_pid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        roles = children_by_role(up_pid)
        if roles["prefill"] and roles["decode"]:
            return
        time.sleep(0.1)
    raise SystemExit("tandem up did not replace the killed worker")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=5, help="kills of each kind (default 5)")
    p.add_argument("--prompt-words", type=int, default=900, help="prompt length in words (default 900)")
    p.add_argument("--out", help="JSON result file")
    a = p.parse_args(argv)
    os.environ.setdefault("TANDEM_BIN", str(ROOT / "build" / "tandem"))
    if "TANDEM_MODEL" not in os.environ:
        os.environ["TANDEM_MODEL"] = subprocess.check_output([os.environ["TANDEM_BIN"], "model", "fetch"], text=True).strip()
    log_dir = tempfile.mkdtemp(prefix="fate-tie-")
    cluster = Cluster("fate-tie", ["--prefill", "1", "--decode", "1", "--no-controller", "--threads", "1"], log_dir)
    rows = []
    try:
        up_pid = cluster.proc.pid
        for i, kind in enumerate(["decode"] * a.trials + ["prefill"] * a.trials):
            wait_replaced(up_pid)
            row = trial(cluster, up_pid, i, kind, a.prompt_words)
            wait_replaced(up_pid)
            time.sleep(1.5)  # the replacement has registered
            ref = {}
            complete(cluster, prompt(i, a.prompt_words), ref)  # the same prompt without a fault
            row["equal"] = row.get("text") == ref["text"]
            row.pop("text", None)
            row["reference_seconds"] = round(ref["seconds"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        reserved = sum(v for k, v in Cluster._scrape(current_http(cluster, "decode")).items()
                       if k.startswith('tandem_worker_kv_blocks{state="reserved"'))
    finally:
        cluster.stop()
    summary = {"trials": rows, "decode_reserved_blocks_at_end": reserved, "log_dir": log_dir}
    for kind in ("decode", "prefill"):
        ms = [r["dropped_ms"] for r in rows if r["killed"] == kind and r["dropped_ms"] is not None]
        summary[f"{kind}_dropped_ms_median"] = statistics.median(ms) if ms else None
    other = [r["other_leg_stopped_ms"] for r in rows if r["other_leg_stopped_ms"] is not None]
    summary["prefill_stopped_after_decode_kill_ms_median"] = statistics.median(other) if other else None
    summary["all_completed_and_equal"] = all(r["completed"] and r["equal"] for r in rows)
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["all_completed_and_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
