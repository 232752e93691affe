"""The ratio controller in a closed loop on `tandem up` (local actuator, the bundled model).

Phase 1 is prompt-heavy (long prompts, two output tokens), phase 2 generation-heavy (short
prompts, long outputs). The controller must move the prefill:decode ratio the right way within a
bounded time, change the counts only a few times per phase, and no request may fail while
workers start, drain and stop. The decision log tells which signals drove each change.
"""
import json
import re
import os
import random
import subprocess
import threading
import time

import pytest

from cluster import Cluster

# Budget 3 workers: 1P1D at start, 2P1D for prompt-heavy, 1P2D for generation-heavy.
CONTROLLER_FLAGS = [
    "--prefill", "1", "--decode", "1", "--threads", "1", "--max-instances", "3",
    "--interval-s", "1", "--half-life-s", "4", "--up-cooldown-s", "5", "--down-cooldown-s", "12",
    "--class-dwell-s", "8",
]
PHASE_LIMIT_S = 120        # the ratio must have moved within this long of a phase's start
MAX_CHANGES_PER_PHASE = 3  # applied decisions (no flapping)


class Load:
    """Closed-loop clients (each sends its next request when the previous one ends)."""

    def __init__(self, cluster, clients, prompt_words, max_tokens, seed, same_prompt=False):
        self.cluster = cluster
        self.same_prompt = same_prompt
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(prompt_words, max_tokens, seed + i), daemon=True)
                        for i in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, prompt_words, max_tokens, seed):
        rng = random.Random(seed)
        words = ["alpha", "river", "stone", "maple", "orbit", "cable", "lunar", "pixel", "amber", "quartz",
                 "delta", "ember", "fjord", "grove", "harbor", "ivory"]
        while not self.stop.is_set():
            # A unique start: no prefix-cache hit makes prefill cheaper than it is (unless the
            # test wants exactly that: every client sends the one prompt of seed 0).
            if self.same_prompt:
                rng = random.Random(0)
            prompt = f"{rng.random()} " + " ".join(rng.choice(words) for _ in range(prompt_words))
            try:
                r = self.cluster.client.completions.create(model=self.cluster.model, prompt=prompt,
                                                           max_tokens=max_tokens, temperature=0,
                                                           extra_body={"ignore_eos": True})
                assert r.usage.completion_tokens == max_tokens, r.usage
                with self.lock:
                    self.ok += 1
            except Exception as e:  # every failure is a test failure
                with self.lock:
                    self.failures.append(repr(e))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)
        return self.ok, self.failures


def counts(cluster):
    m = cluster.metrics("controller")
    return (int(m['tandem_controller_actual_instances{role="prefill"}']),
            int(m['tandem_controller_actual_instances{role="decode"}']))


def wait_for(cluster, want, limit_s):
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if counts(cluster) == want:
            return time.monotonic() - start
        time.sleep(1)
    return None


def decisions(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def applied(records, t0, t1):
    return [r for r in records if t0 <= r["unix_s"] < t1 and r["action"] != "hold" and r["result"] == "ok"]


def describe(r):
    d, s = r["demand"], r["inputs"]["smoothed"]

    def f(x):
        return "-" if x is None else f"{x:.3g}"
    return (f'{r["time"]} {r["action"]} {r["current"]}->{r["desired"]} reason={r["reason"]} class={r["class"]} '
            f'prompt_tok/s={f(s["prompt_token_rate"])} prefill_cap={f(d["prefill_capacity"])} '
            f'prefill_demand={f(d["prefill_demand"])} decode_load={f(d["decode_load"])} '
            f'decode_cap={f(d["decode_capacity"])} decode_demand={f(d["decode_demand"])} '
            f'ttft_p99={f(s["ttft_p99"])} itl_p99={f(s["itl_p99"])} kv={f(s["kv_utilization"])}')


@pytest.fixture(scope="module", params=["restart", "cost"])
def loop_cluster(request, log_dir):
    """restart: a rebalance drains and stops a worker and starts another; cost (the default):
    each move flips a drained worker's role in place (no process started or stopped, no model
    reload) or restarts, whichever the start-up and drain times measured so far predict is
    serving first."""
    extra = ["--rebalance-by", "restart"] if request.param == "restart" else []
    c = Cluster(f"loop-{request.param}", CONTROLLER_FLAGS + extra, log_dir)
    yield c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"


def test_ratio_follows_prompt_then_generation_heavy_traffic(loop_cluster, capsys):
    c = loop_cluster
    assert counts(c) == (1, 1)

    t0 = time.time()
    load = Load(c, clients=4, prompt_words=450, max_tokens=2, seed=1)
    took1 = wait_for(c, (2, 1), PHASE_LIMIT_S)
    time.sleep(10)  # stays there while the traffic stays
    held1 = counts(c)
    ok1, failed1 = load.finish()
    t1 = time.time()

    load = Load(c, clients=6, prompt_words=12, max_tokens=96, seed=100)
    took2 = wait_for(c, (1, 2), PHASE_LIMIT_S)
    time.sleep(10)
    held2 = counts(c)
    ok2, failed2 = load.finish()
    t2 = time.time()

    records = decisions(c.decision_log)
    phase1, phase2 = applied(records, t0, t1), applied(records, t1, t2)
    with capsys.disabled():
        print(f"\n{c.name}\nphase 1 (prompt-heavy): {ok1} requests ok, {len(failed1)} failed; 2P1D after "
              f"{took1 if took1 is None else round(took1, 1)} s; held {held1}")
        for r in phase1:
            print("  " + describe(r))
        print(f"phase 2 (generation-heavy): {ok2} requests ok, {len(failed2)} failed; 1P2D after "
              f"{took2 if took2 is None else round(took2, 1)} s; held {held2}")
        for r in phase2:
            print("  " + describe(r))

    assert not failed1 and not failed2, (failed1 + failed2)[:5]
    assert took1 is not None, f"prefill did not scale up within {PHASE_LIMIT_S} s: {[describe(r) for r in phase1]}"
    assert held1 == (2, 1)
    assert took2 is not None, f"decode did not take over within {PHASE_LIMIT_S} s: {[describe(r) for r in phase2]}"
    assert held2 == (1, 2)
    assert 1 <= len(phase1) <= MAX_CHANGES_PER_PHASE, [describe(r) for r in phase1]
    assert 1 <= len(phase2) <= MAX_CHANGES_PER_PHASE, [describe(r) for r in phase2]
    # The decision log says how the rebalance moved a worker, and why, with measured figures.
    actuation = " ".join(r.get("actuation", "") for r in phase2)
    with capsys.disabled():
        print(f"actuation: {actuation}")
    if c.name.endswith("restart"):
        assert "by restart (--rebalance-by restart)" in actuation, actuation
    else:
        assert re.search(r"by (flip|restart), ready sooner: drain [0-9.]+ s, start-up [0-9.]+ s", actuation), actuation
        if "by flip" in actuation:  # a flipped worker is not replaced
            assert "is now a decode worker" in open(c.log_path).read()
    # The changes were driven by the right role's signals.
    assert any(r["reason"] in ("prefill_load", "ttft_slo") and r["desired"]["prefill"] == 2 for r in phase1)
    assert any(r["reason"] in ("decode_load", "itl_slo", "kv_pressure", "prefill_load", "budget")
               and r["desired"]["decode"] == 2 for r in phase2)


def test_prompts_served_from_the_prefix_cache_are_not_prefill_load(log_dir, capsys):
    """The same long prompt over and over: every prompt token but the last few comes from the
    prefix cache. The controller's prefill demand (instances needed at 100% busy) must match how
    busy the prefill workers really are. Counting cached tokens as work made it ~30x too high
    (the issue: 4,663 prompt tokens/s against a capacity of 217 computed tokens per busy second)."""
    c = Cluster("prefix-cache", CONTROLLER_FLAGS, log_dir)
    try:
        load = Load(c, clients=4, prompt_words=450, max_tokens=2, seed=1, same_prompt=True)
        time.sleep(25)  # the cache is warm and the averages have settled
        samples = []
        for _ in range(15):
            m = c.metrics("controller")
            sig = lambda name: m.get(f'tandem_controller_signal{{signal="{name}"}}')  # noqa: E731
            demand = m.get('tandem_controller_demand_instances{role="prefill"}')
            busy = sig("prefill_busy_fraction")
            if None not in (demand, busy, sig("prompt_cached_fraction")) and busy > 0:
                samples.append((demand, busy * counts(c)[0], sig("prompt_cached_fraction"),
                                sig("prompt_token_rate"), sig("prefill_tokens_per_busy_second")))
            time.sleep(1)
        ok, failed = load.finish()
    finally:
        assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"
    ratios = sorted(d / b for d, b, *_ in samples)
    with capsys.disabled():
        print(f"\nprefix-cache: {ok} requests ok, {len(failed)} failed; {len(samples)} samples")
        for d, b, cf, rate, cap in samples[::3]:
            print(f"  prefill demand {d:.2f} instances, busy {b:.2f} instances, cached {cf:.3f}, "
                  f"prompt {rate:.0f} tok/s, capacity {cap:.0f} computed tok per busy s")
    assert not failed, failed[:5]
    assert len(samples) >= 10, samples
    assert min(s[2] for s in samples) >= 0.8, "the workers' prefix-cache hits did not reach the controller"
    median = ratios[len(ratios) // 2]
    assert 0.4 <= median <= 3, f"prefill demand / busy instances = {median:.2f} (samples {samples})"


def test_a_controller_given_the_generate_port_says_which_port_to_use(disagg):
    """The router's Generate port serves no RouterAdmin: the controller must say so at once, not
    run on with empty worker signals."""
    router = next(p for p in disagg.processes if p[0] == "router")
    env = {**os.environ, "TANDEM_CLUSTER_TOKEN_FILE": disagg.token_file}
    wrong = subprocess.run([os.environ["TANDEM_BIN"], "controller", "--router", router[2], "--router-http", router[3],
                            "--actuator", "none", "--print-signals", "1"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert wrong.returncode == 2, (wrong.returncode, wrong.stderr[-2000:])
    assert f"no RouterAdmin API at {router[2]}" in wrong.stderr and "--internal-port" in wrong.stderr, wrong.stderr
    right = subprocess.run([os.environ["TANDEM_BIN"], "controller", "--router", disagg.router_internal,
                            "--router-http", router[3], "--actuator", "none", "--print-signals", "1"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert right.returncode == 0, right.stderr[-2000:]
    assert json.loads(right.stdout)["ready"] == {"prefill": 1, "decode": 1}


def test_planning_by_simulation_serves_light_traffic_colocated(log_dir, capsys):
    """--plan-by simulation with --min-prefill 0: for light chat traffic the simulation (the
    profile of this kind of VM) predicts that one worker computing its own prompts meets the
    SLOs, which is cheaper than 1P1D, so the prefill worker drains away and the decode worker
    prefills locally. No request fails on the way, and the cluster stays colocated while the
    traffic stays light."""
    profile = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "profiles", "cpu-vm-2026-12-05-smollm2.json")
    c = Cluster("plan-by-simulation", CONTROLLER_FLAGS + ["--plan-by", "simulation", "--profile", profile,
                                                          "--min-prefill", "0"], log_dir)
    try:
        before = c.metrics("router").get('tandem_router_prefills_total{mode="local"}', 0)
        t0 = time.time()
        load = Load(c, clients=1, prompt_words=12, max_tokens=16, seed=7)
        took = wait_for(c, (0, 1), 90)
        time.sleep(10)
        held = counts(c)
        ok, failed = load.finish()
        t1 = time.time()
        local = c.metrics("router").get('tandem_router_prefills_total{mode="local"}', 0) - before
        attainment = c.metrics("controller").get("tandem_controller_predicted_attainment")
    finally:
        assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"
    changes = applied(decisions(c.decision_log), t0, t1)
    with capsys.disabled():
        print(f"\nplan-by-simulation: {ok} requests ok, {len(failed)} failed; 0P1D after "
              f"{took if took is None else round(took, 1)} s; held {held}; {local:.0f} prompts computed locally; "
              f"predicted attainment {attainment}")
        for r in changes:
            print(f'  {r["time"]} {r["action"]} {r["current"]}->{r["desired"]} {r["reason"]}: '
                  f'{r["detail"][r["detail"].find("simulated"):]}')
    assert not failed, failed[:5]
    assert took is not None, [r["detail"] for r in changes]
    assert held == (0, 1)
    assert local > 0, "no prompt was computed on the decode worker"
    assert len(changes) <= 2, [r["detail"] for r in changes]
    assert any("simulated" in r["detail"] and r["desired"]["prefill"] == 0 for r in changes)
    assert attainment is not None and attainment >= 0.9
