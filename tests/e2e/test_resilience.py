"""No request lost: `tandem up` under process failures (kill -9), through the official `openai` client.

One cluster (1 prefill + 2 decode workers, no controller) for the whole module; the tests run in
file order and the last one kills `tandem up` itself.
"""
import concurrent.futures as cf
import os
import signal
import sys
import time
from pathlib import Path

try:
    import httpx2 as httpx  # what the openai client itself uses
except ImportError:
    import httpx
import pytest

from cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import chaos  # noqa: E402  (bench/chaos.py: one streaming request, timed)

STORIES = [f"Write a long story about a {w}." for w in ("dragon", "robot", "cat", "ship", "tree", "river")]


@pytest.fixture(scope="module")
def cluster(log_dir):
    c = Cluster("resilience", ["--prefill", "1", "--decode", "2", "--no-controller"], log_dir)
    yield c
    c.stop()  # the last test killed it; whatever is left is stopped


def log_of(c):
    with open(c.log_path) as f:
        return f.read()


def router_metrics(c):
    return c.metrics("router")  # a restarted router keeps its ports


def story(c, prompt, max_tokens=300):
    """Streams a greedy answer; (text, finish_reason, completion_tokens)."""
    r = chaos.one_request(c, prompt, max_tokens)
    if not r["ok"]:
        raise AssertionError(r["error"])
    return r["text"], r["finish"], r["tokens"]


def running(http):
    """Sequences running on the worker whose HTTP address is `http` (from its /metrics)."""
    for line in httpx.get(f"http://{http}/metrics", timeout=10).text.splitlines():
        if line.startswith("tandem_worker_sequences{") and 'state="running"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def all_stories(c, kill=False):
    """Every story at once; with `kill`, the busiest decode worker is killed mid-stream."""
    with cf.ThreadPoolExecutor(len(STORIES)) as pool:
        futures = [pool.submit(story, c, p) for p in STORIES]
        if kill:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                decode = [(running(http), pid) for role, pid, _, http in c.processes if role == "decode"]
                if sum(n for n, _ in decode) >= len(STORIES) - 1:  # (nearly) every story is decoding
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # some tokens streamed
            os.kill(max(decode)[1], signal.SIGKILL)
        return [f.result() for f in futures]  # any failure raises here


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_killing_a_decode_worker_mid_stream_loses_no_request_and_changes_no_token(cluster):
    expected = all_stories(cluster)
    assert all(finish == "length" and tokens == 300 for _, finish, tokens in expected)
    got = all_stories(cluster, kill=True)
    assert got == expected, "a migrated request must stream exactly the uninterrupted tokens"
    migrated = router_metrics(cluster).get('tandem_router_migrations_total{cause="stream_failed"}', 0) + \
        router_metrics(cluster).get('tandem_router_migrations_total{cause="worker_lost"}', 0)
    assert migrated >= 1, "the kill landed after every stream had ended: nothing was tested"
    # The supervisor starts the worker again and it registers.
    wait_for(lambda: "exited; it is being started again" in log_of(cluster), 10, "the supervisor noticed the crash")
    wait_for(lambda: router_metrics(cluster).get('tandem_router_workers{role="decode",state="ready"}') == 2, 60,
             "the restarted decode worker registered")


def test_a_killed_router_is_restarted_on_its_ports_and_rejoined(cluster):
    router_pid = next(pid for role, pid, _, _ in cluster.processes if role == "router")
    os.kill(router_pid, signal.SIGKILL)
    killed = time.monotonic()

    def ready():
        try:
            return httpx.get(f"{cluster.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    up = wait_for(ready, 30, "the router answering /readyz again")
    every = wait_for(lambda: router_metrics(cluster).get('tandem_router_workers{role="decode",state="ready"}') == 2
                     and router_metrics(cluster).get('tandem_router_workers{role="prefill",state="ready"}') == 1,
                     10, "every worker registered with the restarted router")
    print(f"router back after {up - killed:.2f} s; every worker rejoined {every - up:.2f} s later")
    assert every - up <= 2.5, "workers rejoin a restarted router within about 2 s"
    text, finish, _ = story(cluster, STORIES[0], max_tokens=8)
    assert text and finish == "length"


def test_kill_9_of_tandem_up_leaves_no_process_behind(cluster):
    # The restarted router and worker have new pids: every child of tandem up, from /proc.
    children = [pid for pid, _ in chaos.children(cluster.proc.pid)]
    cluster.proc.kill()
    cluster.proc.wait()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    wait_for(lambda: not any(alive(p) for p in set(children)), 15, "every child of tandem up exited")
