"""A real Prometheus (Debian's package) scraping a `tandem up` cluster on loopback.

Checks that the controller's PromQL source yields the same signals as its direct scrape, and
that every query of the Grafana dashboard (deploy/k8s/grafana) returns a non-empty result.
"""
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from cluster import Cluster, httpx

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
WINDOW_S = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def observed(log_dir):
    """A cluster with the controller in dry-run (it decides and exports, changes nothing), under
    steady load, and a Prometheus scraping the router, the workers and the controller every second."""
    if shutil.which("prometheus") is None:
        if os.environ.get("TANDEM_REQUIRE_E2E") == "1":
            pytest.fail("prometheus is not installed (scripts/setup.sh installs it)")
        pytest.skip("prometheus is not installed")
    c = Cluster("prom", ["--prefill", "1", "--decode", "1", "--dry-run", "--interval-s", "1"], log_dir)
    workers = [p[3] for p in c.processes if p[0] in ("prefill", "decode")]
    router = next(p[3] for p in c.processes if p[0] == "router")
    port = free_port()
    data = os.path.join(log_dir, "prometheus-data")
    config = os.path.join(log_dir, "prometheus.yml")
    jobs = {"router": [router], "worker": workers, "controller": [c.controller_http]}
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n")
        for job, targets in jobs.items():
            f.write(f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(targets)}\n")
    log = open(os.path.join(log_dir, "prometheus.log"), "w")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    failures = []

    def client(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                c.client.completions.create(model=c.model, prompt=f"{rng.random()} tell me about rivers " * 8,
                                            max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
            except Exception as e:
                failures.append(repr(e))
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, f"prometheus did not start: {open(log.name).read()[-2000:]}"
            time.sleep(0.5)
        for t in threads:
            t.start()
        time.sleep(WINDOW_S + 10)  # a full window of steady traffic in Prometheus
        yield c, url, failures
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        assert c.stop() == 0


def signals(cluster, source_args):
    router = next(p for p in cluster.processes if p[0] == "router")
    assert cluster.router_internal, "tandem up did not say where the router's internal port is"
    out = subprocess.run([os.environ["TANDEM_BIN"], "controller", "--router", cluster.router_internal,
                          "--router-http", router[3],
                          "--print-signals", str(WINDOW_S), *source_args],
                         capture_output=True, text=True, timeout=WINDOW_S + 60,
                         env={**os.environ, "TANDEM_CLUSTER_TOKEN_FILE": cluster.token_file})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_promql_source_matches_direct_scrape(observed):
    c, url, failures = observed
    results = {}

    def run(name, args):
        results[name] = signals(c, args)
    threads = [threading.Thread(target=run, args=("scrape", ["--source", "scrape"])),
               threading.Thread(target=run, args=("promql", ["--source", "prometheus", "--prometheus-url", url,
                                                            "--window", f"{WINDOW_S}s"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scrape, promql = results["scrape"], results["promql"]
    print(json.dumps({"scrape": scrape, "promql": promql}, indent=1))
    assert not failures, failures[:3]
    # Instance counts: exactly equal.
    assert scrape["ready"] == promql["ready"] == {"prefill": 1, "decode": 1}
    # Both sources see traffic in every signal the steady load produces.
    for field in ("arrival_rate", "prompt_tokens_mean", "output_tokens_mean", "prompt_token_rate", "ttft_p50",
                  "ttft_p99", "itl_p50", "itl_p99", "prefill_tokens_per_busy_second",
                  "decode_tokens_per_busy_second", "prefill_busy_fraction", "decode_busy_fraction",
                  "decode_iteration_mean_s", "kv_utilization", "prompt_tokens_p50", "prompt_tokens_p99",
                  "output_tokens_p50", "output_tokens_p90"):
        assert scrape[field] is not None and promql[field] is not None, field
    # Every answer is 16 tokens: in the (8, 16] bucket, so both place the median inside it.
    for source in (scrape, promql):
        assert 8 < source["output_tokens_p50"] <= 16
    # Per-request shapes are the same in any window: equal up to the odd request at the edges.
    assert promql["output_tokens_mean"] == pytest.approx(16, rel=0.01)
    assert scrape["output_tokens_mean"] == pytest.approx(16, rel=0.01)
    assert promql["prompt_tokens_mean"] == pytest.approx(scrape["prompt_tokens_mean"], rel=0.1)
    # Rates and capacities over (nearly) the same 20 s: within 35% (the windows' edges differ by
    # a scrape interval and requests are a few seconds long).
    for field in ("arrival_rate", "prompt_token_rate", "prefill_tokens_per_busy_second",
                  "decode_tokens_per_busy_second", "prefill_busy_fraction", "decode_busy_fraction"):
        a, b = scrape[field], promql[field]
        assert b == pytest.approx(a, rel=0.35), f"{field}: scrape {a}, promql {b}"
    # Latency quantiles come from the same buckets: same bucket, so within a factor of 2.
    for field in ("ttft_p50", "itl_p50"):
        a, b = scrape[field], promql[field]
        assert 0.5 <= b / a <= 2, f"{field}: scrape {a}, promql {b}"


def test_every_dashboard_query_returns_data(observed):
    c, url, failures = observed
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "dashboard_queries.py"), "--window",
                          f"{WINDOW_S}s"], capture_output=True, text=True, check=True)
    queries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(queries) >= 10
    empty = []
    for q in queries:
        r = httpx.get(f"{url}/api/v1/query", params={"query": q["expr"]}, timeout=10).json()
        assert r["status"] == "success", (q, r)
        result = r["data"]["result"]
        values = [float(s["value"][1]) for s in result] if r["data"]["resultType"] == "vector" else []
        if not result or (values and all(math.isnan(v) for v in values)):
            empty.append(f'{q["panel"]}: {q["expr"]}')
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_every_process_page_passes_promtool(observed):
    c, url, failures = observed
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    pages = {p[0] + "-" + str(p[1]): p[3] for p in c.processes}
    pages["controller"] = c.controller_http
    for name, http in pages.items():
        text = httpx.get(f"http://{http}/metrics", timeout=10).text
        assert "tandem_" in text, name
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert out.returncode == 0, f"{name}: {out.stdout}{out.stderr}"
