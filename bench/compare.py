#!/usr/bin/env python3
"""Side-by-side serving experiments: colocated vs static prefill/decode splits vs the adaptive
controller (and optionally llama.cpp's llama-server), all driven by tandem's own load generator
(`tandem bench serve`, docs/bench.md) against local clusters started with `tandem up`.

Every config gets the same CPU budget (--cpus compute threads, default: nproc):
  colocated   one mixed worker with all --cpus threads (`tandem up --mixed 1`)
  NpMd        N prefill + M decode workers, no controller, --cpus/(N+M) threads each (e.g. 1p1d)
  adaptive    the ratio controller's local actuator, starting at 1p1d, resizing within a budget
              of --workers workers, --cpus/--workers threads each: at its full budget it uses the
              same threads as the static splits; with fewer workers it leaves threads idle
  llama-server  llama.cpp's server with -t/-tb --cpus (needs --llama-server PATH)
Threads per worker are at least 1 (so on tiny machines the split may oversubscribe).

Subcommands (stdlib only except `plot`, which needs matplotlib: bench/setup_bench_venv.sh):

  # goodput (DistServe: the highest rate meeting the SLOs for --attainment of requests), by search
  bench/compare.py goodput --workloads chat,summarize --goodput "ttft:3000 tpot:150"
  # ... or a fixed-rate sweep, so every config has the same x points
  bench/compare.py goodput --configs colocated,1p1d,adaptive --rates 0.25,0.5,1,2 --num-prompts 100
  # a prompt-heavy -> generation-heavy -> prompt-heavy schedule (~6 min per config); reports per
  # config the worker-seconds used (ready or draining workers, sampled every second), good
  # requests per worker-second, and the controller's applied changes, in all and per phase
  bench/compare.py shifting --workers 3
  # two controllers side by side: the default one and one with its look-ahead and guard off
  bench/compare.py shifting --configs adaptive,adaptive/reactive \
      --config-arg adaptive/reactive=--forecast=false --config-arg adaptive/reactive=--anomaly-guard=false
  # PNGs and summary.md from either result directory
  .venv-bench/bin/python bench/compare.py plot bench/results/<host>-<date>-goodput

Outputs under --out: raw/ (every `bench serve` result file, worker-count samples), logs/ (cluster,
bench and controller decision logs), goodput.json or shifting.json (the summary, with the exact
commands and the machine), and from `plot`: PNGs and summary.md.
"""
import argparse, datetime, json, os, re, shlex, signal, socket, subprocess, sys, textwrap, threading, time
import urllib.error, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPROC = len(os.sched_getaffinity(0))
START = time.monotonic()
COMMANDS = []  # every command run, for the summary


def log(msg):
    e = int(time.monotonic() - START)
    print(f"[compare +{e // 60}m{e % 60:02d}s] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception:
        return 0, ""


def tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def machine_info():
    cpu = "unknown"
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), cpu)
    except OSError:
        pass
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {"hostname": socket.gethostname(), "nproc": NPROC, "cpu_count": os.cpu_count(), "cpu_model": cpu,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "kernel": os.uname().release, "tandem_git": git.stdout.strip() or None}


def slo_ms(goodput, key):
    m = re.search(rf"{key}:([0-9.]+)", goodput)
    return m.group(1) if m else None


# ---------------------------------------------------------------- configs and clusters

def plan_config(name, a):
    """A config name -> how to start it: {name, kind, args, threads, workers, controller}."""
    base, _, variant = name.partition("/")
    cfg = plan_base_config(base, a)
    cfg["name"] = name
    extra = [arg for spec in a.config_arg for target, _, arg in [spec.partition("=")] if target == name]
    if variant and not extra:
        raise SystemExit(f"config '{name}' names a variant but no --config-arg {name}=FLAG gives it flags")
    if extra and cfg["kind"] != "tandem":
        raise SystemExit(f"--config-arg applies to tandem configs only, not '{name}'")
    cfg["args"] = cfg["args"] + extra
    cfg["extra_args"] = extra
    return cfg


def plan_base_config(name, a):
    cpus, slo = a.cpus, a.goodput
    if name == "colocated":
        return dict(name=name, kind="tandem", threads=cpus, workers=1, controller=False,
                    args=["--mixed", "1", "--prefill", "0", "--decode", "0", "--no-controller", "--threads", str(cpus)])
    if m := re.fullmatch(r"(\d+)p(\d+)d", name):
        p, d = int(m[1]), int(m[2])
        t = max(1, cpus // (p + d))
        return dict(name=name, kind="tandem", threads=t, workers=p + d, controller=False,
                    args=["--prefill", str(p), "--decode", str(d), "--no-controller", "--threads", str(t)])
    if name == "adaptive":
        t = max(1, cpus // a.workers)
        args = ["--prefill", "1", "--decode", "1", "--max-instances", str(a.workers), "--threads", str(t)]
        for key, flag in (("ttft", "--ttft-slo-ms"), ("tpot", "--itl-slo-ms")):
            if slo_ms(slo, key):
                args += [flag, slo_ms(slo, key)]
        return dict(name=name, kind="tandem", threads=t, workers=a.workers, controller=True, args=args)
    if name == "llama-server":
        if not getattr(a, "llama_server", None):
            raise SystemExit("config llama-server needs --llama-server PATH (bench/setup_llama_server.sh prints it)")
        return dict(name=name, kind="llama-server", threads=cpus, workers=1, controller=False, args=[])
    raise SystemExit(f"unknown config '{name}' (colocated, NpMd such as 1p2d, adaptive, llama-server)")


class Cluster:
    """One server under test, started in its own session; always stopped (see stop)."""

    def __init__(self, cfg, a, log_path, decision_log=None):
        self.cfg, self.a, self.log_path = cfg, a, Path(log_path)
        self.http = free_port()
        if cfg["kind"] == "llama-server":
            n = a.llama_parallel
            self.cmd = [a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(self.http),
                        "-t", str(a.cpus), "-tb", str(a.cpus), "-np", str(n), "-c", str(n * 4096), "-cb"]
        else:
            self.cmd = [a.tandem, "up", "--model", a.model, "--http-port", str(self.http),
                        "--grpc-port", "0", "--controller-port", "0"] + cfg["args"]
            if cfg["controller"] and decision_log:
                self.cmd += ["--decision-log", str(decision_log)]
            self.cmd += a.up_arg
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http}"

    def start(self):
        COMMANDS.append(shlex.join(self.cmd))
        log(f"starting {self.cfg['name']}: {shlex.join(self.cmd)}")
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.log_path.parent)
        deadline = time.monotonic() + self.a.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited with status {self.proc.returncode} before it was ready")
            printed = self.cfg["kind"] != "tandem" or "tandem is ready" in self.log_path.read_text(errors="replace")
            if printed and http_get(self.url + "/v1/models")[0] == 200:
                log(f"{self.cfg['name']} is ready at {self.url}")
                return
            time.sleep(0.5)
        raise RuntimeError(f"not ready after {self.a.ready_timeout:.0f} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGINT (tandem up drains its workers, then stops the router), then SIGKILL to whatever is
        left of the process group, even when interrupted again while waiting."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    log(f"{self.cfg['name']} did not stop in 60 s; killing its process group")
        finally:
            if self.proc is not None:
                kill_group(self.proc)
                self.proc = None
            if getattr(self, "log_file", None):
                self.log_file.close()


def serving(cfg, a, out, tag, entry, body):
    """Starts the config's server, runs body(cluster) and always stops the server. A failure is
    recorded in `entry` (status "error", the message and the server log's tail) so that the next
    config still runs; Ctrl-C marks the entry "interrupted" and propagates."""
    for old in ("cluster.log", "bench.log", "decisions.jsonl"):  # from an earlier run into the same --out
        (out / "logs" / f"{tag}-{old}").unlink(missing_ok=True)
    cluster = Cluster(cfg, a, out / "logs" / f"{tag}-cluster.log", out / "logs" / f"{tag}-decisions.jsonl")
    entry.update(status="running", cluster_log=f"logs/{tag}-cluster.log", up_command=shlex.join(cluster.cmd))
    if cfg["controller"]:
        entry["decision_log"] = f"logs/{tag}-decisions.jsonl"
    try:
        cluster.start()
        body(cluster)
        if not cluster.alive():  # the results above were measured against a dying cluster
            raise RuntimeError(f"the server exited during the run (status {cluster.proc.returncode})")
    except Exception as e:
        entry.update(status="error", error=str(e), log_tail=tail(cluster.log_path))
        log(f"{tag}: FAILED: {e}")
    except KeyboardInterrupt:
        entry["status"] = "interrupted"
        raise
    finally:
        cluster.stop()


def run_jobs(summary, path, jobs):
    """Runs (label, entry, fn) jobs in order, rewriting the summary after each and on the way out."""
    try:
        for label, entry, fn in jobs:
            t0 = time.monotonic()
            log(f"=== {label}")
            fn(entry)
            log(f"=== {label}: {entry['status']} ({time.monotonic() - t0:.0f} s)")
            write_json(path, summary)
    finally:
        write_json(path, summary)
    log(f"wrote {path}")


def new_summary(kind, a, configs, keys):
    return {"kind": kind, "schema_version": 1, "machine": machine_info(),
            "settings": {k: getattr(a, k) for k in ("goodput", "attainment", "cpus", "workers", "seed", "model",
                                                    "up_arg", "bench_arg", "request_timeout") + keys},
            "configs": {c["name"]: {k: c[k] for k in ("kind", "threads", "workers", "controller", "extra_args")}
                        for c in configs},
            "results": {}, "commands": COMMANDS}


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_bench(a, base_url, args, result_file, log_path, label):
    """One `tandem bench serve`; returns (exit code, parsed result or None, monotonic time its load
    started, estimated from its first progress line, or None)."""
    cmd = [a.tandem, "bench", "serve", "--base-url", base_url, "--tokenizer", a.model, "--goodput", a.goodput,
           "--request-timeout", str(a.request_timeout), "--result-file", str(result_file)] + args + a.bench_arg
    COMMANDS.append(shlex.join(cmd))
    log(f"{label}: {shlex.join(cmd)}")
    Path(result_file).unlink(missing_ok=True)  # never read a stale one
    echo = re.compile(r"^(probe|  rate|phase|sent|Goodput|No rate|--rate-max|tandem bench serve: [a-z])")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True, errors="replace")
    load_start = None
    try:
        with open(log_path, "a") as f:
            for line in proc.stdout:
                f.write(line)
                if load_start is None and (m := re.search(r"elapsed ([0-9.]+) s", line)):
                    load_start = time.monotonic() - float(m[1])
                if echo.match(line):
                    log(f"  {label}: {line.strip()}")
        proc.wait()
    finally:
        try:
            if proc.poll() is None:  # interrupted: let it finish what is in flight and write its file
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_group(proc)
    result = json.loads(Path(result_file).read_text()) if Path(result_file).exists() else None
    return proc.returncode, result, load_start


# ---------------------------------------------------------------- goodput

def pcts(summaries, metric):
    """Mean over repeats of each percentile of one metric."""
    keys = (("p50", "median_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"))
    vals = [s[metric] for s in summaries if s.get(metric, {}).get("count")]
    return {k: round(sum(v[f] for v in vals) / len(vals), 3) if vals else None for k, f in keys}


def point(rate, summaries, target, raw):
    fails = {}
    for s in summaries:
        for k, n in s.get("failures", {}).items():
            fails[k] = fails.get(k, 0) + n
    att = [s.get("goodput", {}).get("attainment", 0.0) for s in summaries]
    mean = sum(att) / len(att)
    return {"rate": rate, "attainment": round(mean, 4), "passed": mean >= target, "repeats": len(summaries),
            "sent": sum(s["sent"] for s in summaries), "completed": sum(s["completed"] for s in summaries),
            "failed": sum(s["failed"] for s in summaries), "failures": fails,
            "request_goodput": round(sum(s.get("goodput", {}).get("request_goodput", 0) for s in summaries)
                                     / len(summaries), 4),
            "ttft_ms": pcts(summaries, "ttft"), "tpot_ms": pcts(summaries, "tpot"), "itl_ms": pcts(summaries, "itl"),
            "e2el_ms": pcts(summaries, "e2el"), "raw": raw}


def goodput_one(a, tag, wl, out, entry, cluster):
    """The sweep (--rates) and/or the search for one config x workload, on a running cluster."""
    common = ["--workload", wl, "--num-prompts", str(a.num_prompts)]
    bench_log = out / "logs" / f"{tag}-bench.log"
    for i, rate in enumerate(a.rates):
        # Fresh prompts at every rate (the same ones for every config): with one seed, a later rate
        # on the same cluster would be answered from the prefix cache the earlier one filled.
        seed = ["--seed", str(a.seed + 1000 * i)]
        if not cluster.alive():
            raise RuntimeError("the cluster exited during the sweep")
        raw = f"raw/{tag}-rate{rate:g}.json"
        rc, res, _ = run_bench(a, cluster.url, common + seed + ["--request-rate", f"{rate:g}"], out / raw, bench_log,
                               f"{tag} @ {rate:g} req/s")
        if res is None:
            entry.setdefault("errors", []).append(f"rate {rate:g}: bench exited {rc}, no result file")
            continue
        entry["points"].append(point(rate, [res["summary"]], a.attainment, raw) | {"source": "sweep"})
        log(f"{tag} @ {rate:g} req/s: attainment {entry['points'][-1]['attainment']:.1%}")
    if a.search:
        raw = f"raw/{tag}-search.json"
        args = common + ["--seed", str(a.seed), "--find-max-rate", "--attainment", str(a.attainment), "--rate-min", str(a.rate_min),
                         "--rate-max", str(a.rate_max), "--search-iters", str(a.search_iters),
                         "--repeats", str(a.repeats)]
        rc, res, _ = run_bench(a, cluster.url, args, out / raw, bench_log, f"{tag} search")
        if res is None or "search" not in res or "error" in res["search"]:
            raise RuntimeError(f"the goodput search exited {rc} without a result "
                               f"({(res or {}).get('search', {}).get('error', 'no result file')})")
        s = res["search"]
        for p in s["probes"]:  # each probe's runs (one per repeat) -> one point
            runs = [r["summary"] for r in s.get("runs", []) if r["rate"] == p["rate"]]
            if runs:
                entry["points"].append(point(p["rate"], runs, a.attainment, raw) | {"source": "search"})
        entry.update(max_rate=s["max_rate"], hit_rate_max=s["hit_rate_max"], max_rate_source="search",
                     resolution=s["resolution"])
    else:
        passing = [p["rate"] for p in entry["points"] if p["passed"]]
        entry.update(max_rate=max(passing) if passing else None, max_rate_source="sweep",
                     hit_rate_max=bool(passing) and max(passing) == max(a.rates))
    entry["points"].sort(key=lambda p: (p["rate"], p["source"]))
    entry["status"] = "ok" if entry["points"] else "error"
    log(f"{tag}: max rate {entry['max_rate']} req/s ({entry['max_rate_source']})")


def cmd_goodput(a):
    a.search = a.search if a.search is not None else not a.rates
    a.rate_max = a.rate_max or 2.0 * a.cpus
    out = prepare_out(a, "goodput")
    configs = [plan_config(c, a) for c in a.configs]
    summary = new_summary("goodput", a, configs, ("workloads", "num_prompts", "rates", "search", "rate_min",
                                                  "rate_max", "search_iters", "repeats"))
    jobs = []
    for cfg in configs:
        for wl in a.workloads:
            entry = summary["results"].setdefault(cfg["name"], {})[wl] = {"status": "pending", "points": []}
            tag = slug(f"{cfg['name']}-{wl}")
            jobs.append((f"config {cfg['name']}, workload {wl}", entry, lambda e, cfg=cfg, wl=wl, tag=tag: serving(
                cfg, a, out, tag, e, lambda cluster: goodput_one(a, tag, wl, out, e, cluster))))
    run_jobs(summary, out / "goodput.json", jobs)


# ---------------------------------------------------------------- shifting

def default_schedule(cpus):
    p, g = round(0.12 * cpus, 2), round(0.15 * cpus, 2)
    return (f"# prompt-heavy -> generation-heavy -> prompt-heavy; rates scale with --cpus ({cpus})\n"
            f"120s@{p:g}:summarize\n120s@{g:g}:chat:out_median=400\n120s@{p:g}:summarize\n")


def parse_schedule(text):
    phases, t = [], 0.0
    # Comments run to the end of their line (they may hold ';'); phases split on lines and ';'.
    parts = [part.strip() for raw in text.splitlines() for part in raw.split("#", 1)[0].split(";")]
    for line in parts:
        if not line:
            continue
        m = re.fullmatch(r"([0-9.]+)s@([0-9.]+)(?::(.*))?", line)
        if not m:
            raise SystemExit(f"bad schedule phase '{line}' (want <seconds>s@<rate>[:<workload>])")
        d = float(m[1])
        phases.append({"phase": len(phases), "start_s": t, "end_s": t + d, "duration_s": d, "rate": float(m[2]),
                       "workload": m[3] or None})
        t += d
    return phases


class WorkerSampler(threading.Thread):
    """Every second, the router's tandem_router_workers gauges -> one JSON line."""

    def __init__(self, url, path, t0):
        super().__init__(daemon=True)
        self.url, self.path, self.t0, self.stop_event = url + "/metrics", path, t0, threading.Event()

    def run(self):
        pat = re.compile(r'^tandem_router_workers\{([^}]*)\}\s+([0-9.eE+-]+)')
        with open(self.path, "w") as f:
            while True:
                status, body = http_get(self.url, timeout=0.9)
                row = {"t": round(time.monotonic() - self.t0, 2), "ok": status == 200}
                for line in body.splitlines():
                    if m := pat.match(line):
                        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
                        key = labels.get("role", "?") + ("" if labels.get("state") == "ready" else "_draining")
                        row[key] = int(float(m[2]))
                f.write(json.dumps(row) + "\n")
                f.flush()
                if self.stop_event.wait(1.0 - (time.monotonic() - self.t0) % 1.0):
                    return


def worker_seconds(path, end_s):
    """Workers up (ready or draining, any role) integrated over the run's [0, end_s], from the
    1 s samples. A worker still starting has not registered yet and is not counted."""
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()] if Path(path).exists() else []
    rows = [r for r in rows if r.get("ok") and 0 <= r["t"] <= end_s]
    total = 0.0
    for r, nxt in zip(rows, rows[1:] + [None]):
        dt = (nxt["t"] if nxt else end_s) - r["t"]
        total += dt * sum(v for k, v in r.items() if k not in ("t", "ok"))
    return round(total, 1)


def controller_changes(path, wall_at_t0, phases):
    """The controller's applied changes (action != hold, result ok) as schedule times t."""
    if not path or not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        r = json.loads(line) if line.strip() else None
        if r and r.get("action") != "hold" and r.get("result") == "ok":
            t = r["unix_s"] - wall_at_t0
            if 0 <= t <= phases[-1]["end_s"]:
                out.append({"t": round(t, 1), "action": r["action"], "reason": r["reason"],
                            "desired": r["desired"], "anomalies": r.get("anomalies", [])})
    return out


def phase_stats(summary):
    """The headline of one bench serve Summary (the whole run's, or one phase's)."""
    g = summary.get("goodput", {})
    pct = lambda m: {"p50": summary[m]["median_ms"], "p99": summary[m]["p99_ms"]} if m in summary else None
    return {"sent": summary["sent"], "completed": summary["completed"], "failed": summary["failed"],
            "good": g.get("good"), "attainment": g.get("attainment"), "request_goodput": g.get("request_goodput"),
            "ttft_ms": pct("ttft"), "tpot_ms": pct("tpot")}


def shifting_one(a, cfg, out, schedule_file, phases, entry, cluster):
    """One scheduled run on a running cluster, sampling its worker counts every second."""
    name = slug(cfg["name"])
    t0, sampler = time.monotonic(), None
    try:
        if cfg["kind"] == "tandem":
            entry["workers_file"] = f"raw/{name}-workers.jsonl"
            sampler = WorkerSampler(cluster.url, out / entry["workers_file"], t0)
            sampler.start()
        raw = f"raw/{name}-shifting.json"
        rc, res, load_start = run_bench(a, cluster.url, ["--schedule", str(schedule_file), "--seed", str(a.seed)],
                                        out / raw, out / "logs" / f"{name}-bench.log", f"{name} schedule")
    finally:
        if sampler:
            sampler.stop_event.set()
            sampler.join()
    if res is None:
        raise RuntimeError(f"bench serve exited {rc} without a result file")
    entry.update(raw=raw, bench_exit=rc, interrupted=res.get("interrupted"),
                 load_start_s=round(load_start - t0, 2) if load_start else None)
    if sampler and load_start:  # make the samples' times relative to the bench's t = 0
        f = out / entry["workers_file"]
        rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        f.write_text("".join(json.dumps(r | {"t": round(r["t"] - entry["load_start_s"], 2)}) + "\n"
                             for r in rows))
    # bench serve summarizes the run and each phase of the schedule itself (docs/bench.md).
    entry["overall"] = phase_stats(res["summary"])
    entry["phases"] = [p | phase_stats(b) for p, b in zip(phases, res.get("phases", []))]
    if sampler and load_start:
        end_s = phases[-1]["end_s"]
        entry["worker_seconds"] = worker_seconds(out / entry["workers_file"], end_s)
        good = entry["overall"].get("good") or 0
        entry["good_per_worker_second"] = round(good / entry["worker_seconds"], 5) if entry["worker_seconds"] else None
        if cfg["controller"]:
            wall_at_t0 = time.time() - (time.monotonic() - load_start)
            entry["changes"] = controller_changes(out / entry.get("decision_log", "-"), wall_at_t0, phases)
            for p in entry["phases"]:
                p["changes"] = sum(1 for c in entry["changes"] if p["start_s"] <= c["t"] < p["end_s"])
    entry["status"] = "ok"
    log(f"{name}: attainment {entry['overall']['attainment']}, goodput {entry['overall']['request_goodput']} "
        f"req/s; per phase " + ", ".join(str(p["attainment"]) for p in entry["phases"]))


def cmd_shifting(a):
    out = prepare_out(a, "shifting")
    if a.schedule is None:
        text = default_schedule(a.cpus)
    elif Path(a.schedule).is_file():
        text = Path(a.schedule).read_text()
    else:
        text = "\n".join(p.strip() for p in a.schedule.split(";")) + "\n"
    schedule_file = out / "schedule.txt"
    schedule_file.write_text(text)
    phases = parse_schedule(text)
    if a.configs is None:
        a.configs = ["adaptive"] + [f"{p}p{a.workers - p}d" for p in range(1, a.workers)] + ["colocated"]
    configs = [plan_config(c, a) for c in a.configs]
    summary = new_summary("shifting", a, configs, ())
    summary["schedule"] = {"text": text, "file": "schedule.txt", "phases": phases}
    jobs = []
    for cfg in configs:
        entry = summary["results"][cfg["name"]] = {"status": "pending"}
        jobs.append((f"config {cfg['name']}, schedule of {phases[-1]['end_s']:g} s", entry,
                     lambda e, cfg=cfg: serving(cfg, a, out, slug(cfg["name"]), e, lambda cluster: shifting_one(
                         a, cfg, out, schedule_file, phases, e, cluster))))
    run_jobs(summary, out / "shifting.json", jobs)


# ---------------------------------------------------------------- plot

def save(fig, path, plt):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load(d, name):
    p = Path(d) / name
    return json.loads(p.read_text()) if p.exists() else None


def common_rate(entries):
    """The largest rate every config ran, preferring one all of them sustain."""
    sets = [{p["rate"] for p in e["points"]} for e in entries]
    common = sorted(set.intersection(*sets)) if sets else []
    if not common:
        return None
    limit = min((e.get("max_rate") or 0) for e in entries)
    ok = [r for r in common if r <= limit]
    return ok[-1] if ok else common[0]


def plot_goodput(g, d, plt, md):
    target = g["settings"]["attainment"]
    ok = g["results"]
    for wl in g["settings"]["workloads"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c, w in ok.items():
            e = w.get(wl, {})
            pts = sorted(e.get("points", []), key=lambda p: p["rate"])
            if pts:
                ax.plot([p["rate"] for p in pts], [100 * p["attainment"] for p in pts], "o-", label=c)
        ax.axhline(100 * target, ls="--", color="gray", label=f"target {100 * target:.0f}%")
        ax.set(xlabel="request rate (req/s)", ylabel="SLO attainment (%)", ylim=(-2, 102),
               title=f"{wl}: SLO attainment vs rate ({g['settings']['goodput']})")
        ax.legend()
        save(fig, d / f"attainment_vs_rate_{slug(wl)}.png", plt)
        entries = [(c, w[wl]) for c, w in ok.items() if w.get(wl, {}).get("points")]
        rate = common_rate([e for _, e in entries])
        if rate is None:
            print(f"plot: no rate common to every config for {wl}; skipping latency_{slug(wl)}.png", file=sys.stderr)
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric in zip(axes, ("ttft_ms", "tpot_ms")):
            for k, (c, e) in enumerate(entries):
                p = next(p for p in e["points"] if p["rate"] == rate)
                for j, q in enumerate(("p50", "p99")):
                    ax.bar(k + (j - 0.5) * 0.38, p[metric][q] or 0, 0.38, color=f"C{j}", label=q if k == 0 else None)
            ax.set_xticks(range(len(entries)), [c for c, _ in entries])
            ax.set(ylabel=metric[:4].upper() + " (ms)", title=f"{metric[:4].upper()} at {rate:g} req/s")
            ax.legend()
        fig.suptitle(f"{wl}: latency at a common rate")
        save(fig, d / f"latency_{slug(wl)}.png", plt)
    wls = g["settings"]["workloads"]
    md += [f"## Goodput (req/s at >= {100 * target:.0f}% SLO attainment, SLOs `{g['settings']['goodput']}`)", "",
           "| config | " + " | ".join(wls) + " |", "|---" * (len(wls) + 1) + "|"]
    base = ok.get("colocated", {})
    for c, w in ok.items():
        cells = []
        for wl in wls:
            e = w.get(wl, {})
            mr, b = e.get("max_rate"), base.get(wl, {}).get("max_rate")
            cell = ("failed" if e.get("status") == "error" else f"not run ({e['status']})" if e.get("status") != "ok"
                    else "none" if mr is None else f"{mr:.3g}")
            if mr is not None and e.get("hit_rate_max"):
                cell = ">=" + cell
            if mr is not None and b and c != "colocated":
                cell += f" ({mr / b:.2f}x colocated)"
            cells.append(cell)
        md.append(f"| {c} | " + " | ".join(cells) + " |")
    md.append("")


def plot_shifting(s, d, plt, md):
    phases, target = s["schedule"]["phases"], s["settings"]["attainment"]
    res = {c: e for c, e in s["results"].items() if e.get("status") == "ok"}
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), gridspec_kw={"height_ratios": [1, 1.3, 1.2]})
    ax = axes[0]
    xs = [p["start_s"] for p in phases] + [phases[-1]["end_s"]]
    ax.step(xs, [p["rate"] for p in phases] + [phases[-1]["rate"]], where="post", color="k", label="scheduled")
    for p in phases:
        ax.text((p["start_s"] + p["end_s"]) / 2, p["rate"], p["workload"] or "", ha="center", va="bottom", fontsize=8)
    raw = next((d / e["raw"] for e in res.values() if e.get("raw")), None)
    if raw and raw.exists():
        arr, b = [r["scheduled_s"] for r in json.loads(raw.read_text()).get("requests", [])], max(1, xs[-1] // 24)
        edges = [i * b for i in range(int(-(-xs[-1] // b)))] + [xs[-1]]
        rates = [sum(1 for t in arr if lo <= t < hi) / (hi - lo) for lo, hi in zip(edges, edges[1:])]
        ax.step(edges, rates + rates[-1:], where="post", alpha=0.5, label=f"arrivals ({b:g} s bins)")
    ax.set(ylabel="request rate (req/s)", title="load", ylim=(0, None))
    ax.legend(fontsize=8)
    ax, top = axes[1], 1
    for k, (c, e) in enumerate(res.items()):
        f = d / e.get("workers_file", "-")
        if not s["configs"].get(c, {}).get("controller") or not f.exists():
            continue
        rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        ts = [r["t"] for r in rows]
        ax.step(ts, [r.get("prefill", 0) for r in rows], where="post", color=f"C{k}", label=f"{c} prefill")
        ax.step(ts, [r.get("decode", 0) - 0.05 for r in rows], where="post", color=f"C{k}", ls="--",
                label=f"{c} decode (drawn 0.05 lower)")
        top = max([top] + [max(r.get("prefill", 0), r.get("decode", 0)) for r in rows])
    for p in phases[1:]:
        for a in axes[:2]:
            a.axvline(p["start_s"], color="gray", lw=0.5)
    axes[0].set_xlim(0, xs[-1])
    ax.set_xlim(0, xs[-1])
    ax.set_ylim(0, top + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="seconds since the bench started", ylabel="ready workers", title="worker counts (controller)")
    ax.legend(fontsize=8)
    ax = axes[2]
    width = 0.8 / max(1, len(res))
    for k, (c, e) in enumerate(res.items()):
        ax.bar([i + (k - (len(res) - 1) / 2) * width for i in range(len(phases))],
               [100 * (p["attainment"] or 0) for p in e["phases"]], width, label=c)
    ax.axhline(100 * target, ls="--", color="gray")
    # The workload's parameters wrapped under each phase: on one line they overlap their neighbours.
    ax.set_xticks(range(len(phases)), ["\n".join([f"phase {p['phase']}: {p['rate']:g}/s"] +
                                                 textwrap.wrap((p["workload"] or "").replace(",", ", "), 30))
                                       for p in phases], fontsize=8)
    ax.set(ylabel="SLO attainment (%)", ylim=(0, 105), title=f"attainment per phase ({s['settings']['goodput']})")
    ax.legend(fontsize=8)
    save(fig, d / "shifting.png", plt)
    md += [f"## Shifting workload (SLOs `{s['settings']['goodput']}`, {phases[-1]['end_s']:g} s schedule)", "",
           "| config | attainment | goodput (req/s) | worker-s | good per worker-s | changes | " +
           " | ".join(f"phase {p['phase']}" for p in phases) + " |",
           "|---" * (len(phases) + 6) + "|"]
    for c, e in s["results"].items():
        if e.get("status") != "ok":
            label = "failed" if e.get("status") == "error" else f"not run ({e.get('status', 'pending')})"
            md.append(f"| {c} | {label} | - | - | - | - | " + " | ".join("-" for _ in phases) + " |")
            continue
        o = e["overall"]
        changes = len(e["changes"]) if "changes" in e else "-"
        phase_changes = lambda p: (f" ({p['changes']} change{'' if p['changes'] == 1 else 's'})"  # noqa: E731
                                   if "changes" in p else "")
        md.append(f"| {c} | {100 * o['attainment']:.1f}% | {o['request_goodput']:.3f} | {e.get('worker_seconds', '-')} | "
                  f"{e.get('good_per_worker_second', '-')} | {changes} | " +
                  " | ".join(f"{100 * (p['attainment'] or 0):.1f}%{phase_changes(p)}" for p in e["phases"]) + " |")
    static = {c: e for c, e in res.items() if not s["configs"].get(c, {}).get("controller")}
    if "adaptive" in res and static:
        best = max(static, key=lambda c: static[c]["overall"]["request_goodput"])
        bg, ag = static[best]["overall"]["request_goodput"], res["adaptive"]["overall"]["request_goodput"]
        md += ["", f"adaptive vs the best static config ({best}): goodput {ag / bg:.2f}x" if bg else
               f"adaptive vs the best static config ({best}): the static goodput is 0"]
    ctrl = {c: e for c, e in res.items() if s["configs"].get(c, {}).get("controller") and "changes" in e}
    for other in [c for c in ctrl if c != "adaptive" and "adaptive" in ctrl]:
        a_, o_ = ctrl["adaptive"], ctrl[other]
        ratio = (f"{a_['good_per_worker_second'] / o_['good_per_worker_second']:.2f}x"
                 if a_.get("good_per_worker_second") and o_.get("good_per_worker_second") else "n/a")
        md += ["", f"adaptive vs {other}: good requests per worker-second {ratio}; changes "
                   f"{len(a_['changes'])} vs {len(o_['changes'])}"]
    md.append("")


def cmd_plot(a):
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plot needs matplotlib: bench/setup_bench_venv.sh, then .venv-bench/bin/python "
                         "bench/compare.py plot DIR")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = Path(a.dir)
    g, s = load(d, "goodput.json"), load(d, "shifting.json")
    if not g and not s:
        raise SystemExit(f"{d}: neither goodput.json nor shifting.json")
    m = (g or s)["machine"]
    md = [f"# tandem serving comparison", "",
          f"{m['cpu_model']}, {m['nproc']} CPUs, {m['date']}, tandem {m.get('tandem_git')}; "
          f"{(g or s)['settings']['cpus']} compute threads per config.", ""]
    if g:
        plot_goodput(g, d, plt, md)
    if s:
        plot_shifting(s, d, plt, md)
    (d / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    log(f"wrote PNGs and {d / 'summary.md'}")


# ---------------------------------------------------------------- main

def sweep_goodput(points, target):
    """The goodput a sweep shows: the highest swept rate whose attainment meets the target, below the
    first rate that misses it (None if the lowest misses)."""
    best = None
    for pt in sorted(points, key=lambda p: p["rate"]):
        if pt["attainment"] < target:
            break
        best = pt["rate"]
    return best


def rel_err(pred, meas):
    if pred is None or meas is None or not meas:
        return None
    return round((pred - meas) / meas, 4)


# `tandem up` flags a config variant may carry that `tandem plan` simulates too (the router's
# placement rules); a variant with any other flag is not simulated.
PLAN_FLAGS = ("--local-prefill-ttft-slo", "--local-prefill-threshold")


def plan_args(extra):
    """The variant's flags for `tandem plan`, or None when one of them is not simulated."""
    out = []
    for arg in extra or []:
        if arg.split("=", 1)[0] not in PLAN_FLAGS:
            return None
        out.append(arg)
    return out


def plan_replay(a, raw, base, cpus, slo, target, scale, tmp, extra=()):
    """`tandem plan --requests-from raw` for one config: (predicted summary, measured summary)."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [a.tandem, "plan", "--profile", a.profile, "--requests-from", str(raw), "--configs", base,
           "--cpus", str(cpus), "--goodput", slo, "--attainment", str(target), "--cost-scale", f"{scale:.4f}",
           "--no-progress", "--result-file", str(tmp), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    res = json.loads(tmp.read_text())
    return res["rows"][0]["summary"], res.get("measured_summary", {})


def static_points(d, g, log_skips=True):
    """(config, base shape, workload, point, plan flags) for every sweep point of a static tandem
    config (default flags, or only flags `tandem plan` simulates)."""
    st = g["settings"]
    for cfg, per_wl in g["results"].items():
        kind = g["configs"].get(cfg, {})
        extra = plan_args(kind.get("extra_args"))
        if kind.get("kind") != "tandem" or kind.get("controller") or extra is None or st.get("up_arg"):
            if log_skips:
                log(f"{d.name} {cfg}: not a static tandem config with flags `tandem plan` simulates, not simulated")
            continue
        for wl, entry in per_wl.items():
            for pt in entry.get("points", []):
                if pt.get("source") == "sweep":
                    yield cfg, cfg.split("/")[0], wl, pt, extra


def calibration(a):
    """Per config: measured / predicted TPOT p50 of the lowest-rate run in --calibrate-from."""
    scales = {}
    if not a.calibrate_from:
        return scales
    d = Path(a.calibrate_from)
    g = load(d, "goodput.json")
    st = g["settings"]
    lowest = {}
    for cfg, base, wl, pt, extra in static_points(d, g, log_skips=False):
        if extra:
            continue  # calibrated on the plain config of the same shape
        if base not in lowest or pt["rate"] < lowest[base][1]["rate"]:
            lowest[base] = (wl, pt)
    for base, (wl, pt) in lowest.items():
        pred, meas = plan_replay(a, d / pt["raw"], base, a.cpus or st.get("cpus", NPROC), a.goodput or st["goodput"],
                                 st.get("attainment", 0.9), 1.0, Path(a.work) / f"calibrate-{base}.json")
        scales[base] = {"scale": round(meas["tpot"]["median_ms"] / pred["tpot"]["median_ms"], 4),
                        "from": f"{d.name}/{pt['raw']}", "workload": wl, "rate": pt["rate"]}
        log(f"calibration {base}: measured TPOT p50 {meas['tpot']['median_ms']:.1f} ms / predicted "
            f"{pred['tpot']['median_ms']:.1f} ms at {pt['rate']:g} req/s -> iteration times x {scales[base]['scale']}")
    return scales


def cmd_validate(a):
    """Replays every measured run of static configs through `tandem plan --requests-from` and compares."""
    scales = calibration(a)
    rows, curves = [], []
    for d in map(Path, a.dirs):
        g = load(d, "goodput.json")
        if g is None:
            log(f"{d}: no goodput.json, skipped")
            continue
        st = g["settings"]
        slo = a.goodput or st["goodput"]
        target = st.get("attainment", 0.9)
        cpus = a.cpus or st.get("cpus", NPROC)
        sweeps = {}
        for cfg, base, wl, pt, extra in static_points(d, g):
            scale = scales.get(base, {}).get("scale", 1.0)
            tmp = Path(a.work) / f"{d.name}-{slug(cfg)}-{slug(wl)}-{pt['rate']:g}.json"
            ps, ms = plan_replay(a, d / pt["raw"], base, cpus, slo, target, scale, tmp, extra)
            pa = ps.get("goodput", {}).get("attainment")
            ma = ms.get("goodput", {}).get("attainment")
            row = {"dir": d.name, "config": cfg, "workload": wl, "rate": pt["rate"], "cost_scale": scale,
                   "calibration_run": scales.get(base, {}).get("from") == f"{d.name}/{pt['raw']}",
                   "attainment": {"measured": ma, "predicted": pa}}
            for metric in ("ttft", "tpot"):
                for q, f in (("p50", "median_ms"), ("p99", "p99_ms")):
                    mv, pv = ms.get(metric, {}).get(f), ps.get(metric, {}).get(f)
                    row[f"{metric}_{q}_ms"] = {"measured": mv, "predicted": round(pv, 2) if pv is not None else None,
                                                "rel_error": rel_err(pv, mv)}
            rows.append(row)
            sweeps.setdefault((cfg, wl), []).append((pt["rate"], ma or 0, pa or 0))
            log(f"{d.name} {cfg} {wl} @ {pt['rate']:g}: attainment measured {ma:.0%} predicted {pa:.0%}; "
                f"TTFT p50 {row['ttft_p50_ms']['measured']} vs {row['ttft_p50_ms']['predicted']} ms; "
                f"TPOT p50 {row['tpot_p50_ms']['measured']} vs {row['tpot_p50_ms']['predicted']} ms")
        for (cfg, wl), pts in sweeps.items():
            mg = sweep_goodput([{"rate": r, "attainment": m} for r, m, _ in pts], target)
            pg = sweep_goodput([{"rate": r, "attainment": p} for r, _, p in pts], target)
            curves.append({"dir": d.name, "config": cfg, "workload": wl, "slo": slo, "target": target,
                           "rates": [r for r, _, _ in pts], "goodput_measured": mg, "goodput_predicted": pg,
                           "rel_error": rel_err(pg, mg)})
    held_out = [r for r in rows if not r["calibration_run"]]
    def mean_abs(key):
        v = [abs(r[key]["rel_error"]) for r in held_out if r[key]["rel_error"] is not None]
        return round(sum(v) / len(v), 4) if v else None
    att = [abs(r["attainment"]["predicted"] - r["attainment"]["measured"]) for r in held_out
           if r["attainment"]["predicted"] is not None and r["attainment"]["measured"] is not None]
    summary = {"kind": "validation", "profile": a.profile, "machine": machine_info(), "calibration": scales,
               "points": rows, "goodput": curves,
               "mean_abs_rel_error": {k: mean_abs(k) for k in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms")},
               "mean_abs_attainment_error": round(sum(att) / len(att), 4) if att else None,
               "note": "errors are over the runs not used for calibration"}
    out = Path(a.out)
    write_json(out, summary)
    md = []
    if scales:
        md += ["Calibration (iteration times x measured / predicted TPOT p50 of one low-rate run per config): "
               + ", ".join(f"{b} x{v['scale']} ({v['from']})" for b, v in scales.items()), ""]
    md += ["| config | workload | rate | attainment meas / pred | TTFT p50 meas / pred ms | TTFT p99 meas / pred ms "
           "| TPOT p50 meas / pred ms | TPOT p99 meas / pred ms |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    for r in rows:
        mark = " (calibration)" if r["calibration_run"] else ""
        md.append(f"| {r['config']} | {r['workload']} | {r['rate']:g}{mark} | {r['attainment']['measured']:.0%} / "
                  f"{r['attainment']['predicted']:.0%} | " + " | ".join(
                      f"{fmt(r[k]['measured'])} / {fmt(r[k]['predicted'])}"
                      for k in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms")) + " |")
    md += ["", "| config | workload | rates swept | goodput measured | goodput predicted | error |", "|---|---|---|---|---|---|"]
    for c in curves:
        e = "-" if c["rel_error"] is None else f"{c['rel_error']:+.0%}"
        md.append(f"| {c['config']} | {c['workload']} | {', '.join(f'{x:g}' for x in c['rates'])} | "
                  f"{c['goodput_measured']} | {c['goodput_predicted']} | {e} |")
    err = summary["mean_abs_rel_error"]
    md += ["", "Mean |relative error| over the runs not used for calibration: "
           + ", ".join(f"{k.replace('_ms', '')} {v:.0%}" for k, v in err.items() if v is not None)
           + (f"; mean |attainment error| {summary['mean_abs_attainment_error']:.1%} points"
              if summary["mean_abs_attainment_error"] is not None else "")]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    log(f"wrote {out} and {out.with_suffix('.md')}")
    plot_validation(summary, out.with_suffix(".png"))


def plot_validation(summary, path):
    """Predicted vs measured (log-log) for TTFT and TPOT p50/p99, and attainment; skipped without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        log("no matplotlib: validation plot skipped (bench/setup_bench_venv.sh, then .venv-bench/bin/python)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    pts = [r for r in summary["points"] if not r["calibration_run"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = {}
    for ax, (title, keys) in zip(axes[:2], (("TTFT (ms)", ("ttft_p50_ms", "ttft_p99_ms")),
                                            ("TPOT (ms)", ("tpot_p50_ms", "tpot_p99_ms")))):
        lo, hi = float("inf"), 0
        for r in pts:
            c = colors.setdefault(f"{r['config']} {r['workload']}", f"C{len(colors)}")
            for k, marker in zip(keys, ("o", "^")):
                m, p = r[k]["measured"], r[k]["predicted"]
                if m and p:
                    ax.scatter(m, p, color=c, marker=marker, s=28)
                    lo, hi = min(lo, m, p), max(hi, m, p)
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8)
            ax.plot([lo, hi], [lo * 1.15, hi * 1.15], color="gray", lw=0.5, ls=":")
            ax.plot([lo, hi], [lo / 1.15, hi / 1.15], color="gray", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"measured {title}")
        ax.set_ylabel(f"predicted {title}")
        ax.set_title(f"{title}: p50 (o), p99 (^); dotted: +-15%")
    ax = axes[2]
    for r in pts:
        c = colors[f"{r['config']} {r['workload']}"]
        ax.scatter(100 * r["attainment"]["measured"], 100 * r["attainment"]["predicted"], color=c, s=28)
    ax.plot([0, 100], [0, 100], color="gray", lw=0.8)
    ax.set_xlabel("measured SLO attainment (%)")
    ax.set_ylabel("predicted SLO attainment (%)")
    ax.set_title("attainment")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=n) for n, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8)
    fig.subplots_adjust(bottom=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"wrote {path}")


def write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def prepare_out(a, kind):
    if not Path(a.tandem).is_file():
        raise SystemExit(f"{a.tandem} not found: build tandem first (or pass --tandem)")
    if not a.model:
        cmd = [a.tandem, "model", "fetch"]
        COMMANDS.append(shlex.join(cmd))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.strip():
            raise SystemExit(f"`{shlex.join(cmd)}` failed ({r.stderr.strip()[-500:]}); pass --model FILE.gguf")
        a.model = r.stdout.strip().splitlines()[-1]
    a.model = str(Path(a.model).resolve())
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().split(".")[0].lower())
    out = Path(a.out or ROOT / "bench" / "results" / f"{host}-{datetime.date.today()}-{kind}").resolve()
    for sub in ("raw", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    log(f"writing to {out}")
    return out


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x.strip()]


def workload_list(s):
    """'chat:in=64,out=16,summarize' -> ['chat:in=64,out=16', 'summarize'] (keys stay with their preset)."""
    out = []
    for x in filter(None, (x.strip() for x in s.split(","))):
        if out and "=" in x and ":" not in x:
            out[-1] += "," + x
        else:
            out.append(x)
    return out


def slug(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--goodput", default="ttft:3000 tpot:150",
                        help="SLOs in ms for `bench serve --goodput` (default %(default)r); ttft and tpot also "
                             "become the adaptive controller's --ttft-slo-ms and --itl-slo-ms")
    common.add_argument("--attainment", type=float, default=0.9, help="share of requests that must meet the SLOs")
    common.add_argument("--cpus", type=int, default=NPROC,
                        help="compute threads each config gets in all (default: nproc = %(default)s), split so "
                             "that no config uses more: colocated = 1 mixed worker x cpus threads; NpMd = "
                             "cpus/(N+M) per worker; adaptive = cpus/--workers per worker, at most --workers "
                             "workers (fewer leave threads idle); llama-server = -t/-tb cpus. At least 1 each")
    common.add_argument("--workers", type=int, default=3, help="the adaptive controller's worker budget "
                        "(--max-instances; threads per worker = cpus/workers); for shifting also the size of the "
                        "default static splits (default %(default)s)")
    common.add_argument("--config-arg", action="append", default=[], metavar="CONFIG=FLAG",
                        help="an extra `tandem up` flag for one config only (repeatable), e.g. "
                             "--config-arg colocated/b32=--token-budget=32 with colocated/b32 in --configs: a "
                             "name CONFIG/LABEL is the config CONFIG with the flags given for it")
    common.add_argument("--model", help="GGUF model (default: what `tandem model fetch` prints)")
    common.add_argument("--tandem", default=str(ROOT / "build" / "tandem"), help="the tandem binary")
    common.add_argument("--llama-server", help="llama.cpp's llama-server binary, for the llama-server config")
    common.add_argument("--llama-parallel", type=int, default=8, help="llama-server slots (-np; -c is 4096 per slot)")
    common.add_argument("--up-arg", action="append", default=[], help="extra flag for every `tandem up`, "
                        "repeatable; write --up-arg=--kv-cache-mb=512")
    common.add_argument("--bench-arg", action="append", default=[], help="extra flag for every `bench serve`, "
                        "repeatable; e.g. --bench-arg=--endpoint=/v1/chat/completions")
    common.add_argument("--request-timeout", type=float, default=300, help="bench serve --request-timeout, s")
    common.add_argument("--ready-timeout", type=float, default=300, help="seconds a cluster may take to be ready")
    common.add_argument("--seed", type=int, default=0, help="bench serve --seed: the same traffic for every config; a sweep's i-th rate uses seed + 1000 i")
    common.add_argument("--out", help="output directory (default bench/results/<host>-<date>-<subcommand>)")

    g = sub.add_parser("goodput", parents=[common], help="max rate meeting the SLOs, per config and workload",
                       description="Per config x workload: a fresh cluster, then `bench serve --find-max-rate` "
                                   "and/or a fixed-rate sweep (--rates).")
    g.add_argument("--configs", type=csv(str), default="colocated,1p1d,adaptive",
                   help="comma list: colocated, NpMd (e.g. 1p2d), adaptive, llama-server (default %(default)s)")
    g.add_argument("--workloads", type=workload_list, default="chat,summarize",
                   help="bench --workload specs, comma list (keys stay with their preset: 'chat:out=16,summarize')")
    g.add_argument("--num-prompts", type=int, default=60, help="requests per probe or per swept rate")
    g.add_argument("--rates", type=csv(float), default=[], help="fixed-rate sweep R1,R2,...: one bench run per rate")
    g.add_argument("--search", action=argparse.BooleanOptionalAction, default=None,
                   help="run the --find-max-rate search (default: only when --rates is not given)")
    g.add_argument("--rate-min", type=float, default=0.25, help="search: lowest rate, req/s")
    g.add_argument("--rate-max", type=float, help="search: highest rate, req/s (default 2 x --cpus)")
    g.add_argument("--search-iters", type=int, default=5, help="search: bisection steps")
    g.add_argument("--repeats", type=int, default=1, help="search: runs per probed rate (attainment averaged)")
    g.set_defaults(func=cmd_goodput)

    s = sub.add_parser("shifting", parents=[common], help="one phased schedule per config, worker counts sampled",
                       description="Per config: a fresh cluster, one `bench serve --schedule`, the router's "
                                   "worker gauges sampled every second, attainment and goodput per phase.")
    s.add_argument("--configs", type=csv(str), default=None,
                   help="comma list (default: adaptive, every NpMd split of --workers, colocated)")
    s.add_argument("--schedule", help="bench --schedule, inline ('60s@1:summarize;60s@1:chat') or a file; default: "
                   "120 s summarize at 0.12 x cpus req/s, 120 s chat:out_median=400 at 0.15 x cpus, 120 s summarize")
    s.set_defaults(func=cmd_shifting)

    p = sub.add_parser("plot", help="PNGs and summary.md from a result directory (needs matplotlib)",
                       description="Reads DIR/goodput.json and/or DIR/shifting.json; writes attainment_vs_rate_<wl>"
                                   ".png, latency_<wl>.png (p50/p99 TTFT and TPOT at a rate every config ran), "
                                   "shifting.png and summary.md (README-ready tables) into DIR. Needs matplotlib: "
                                   "bench/setup_bench_venv.sh, then run with .venv-bench/bin/python.")
    p.add_argument("dir", help="a directory written by goodput or shifting")
    p.set_defaults(func=cmd_plot)

    v = sub.add_parser("validate", help="the simulator (`tandem plan`) against measured goodput runs",
                       description="Replays the requests of every fixed-rate run of a static tandem config "
                                   "(colocated, NpMd) in the goodput directories through `tandem plan "
                                   "--requests-from` with the same CPU split and SLOs, and writes predicted vs "
                                   "measured attainment, TTFT and TPOT percentiles and sweep goodput, with "
                                   "relative errors, to --out (.json and .md).")
    v.add_argument("dirs", nargs="+", help="directories written by `goodput --rates ...`")
    v.add_argument("--profile", required=True, help="the profile `tandem profile` wrote on this machine")
    v.add_argument("--tandem", default=str(ROOT / "build" / "tandem"), help="the tandem binary")
    v.add_argument("--cpus", type=int, default=0, help="CPU budget (default: the one each directory ran with)")
    v.add_argument("--goodput", help="SLOs (default: the ones each directory ran with)")
    v.add_argument("--out", required=True, help="output JSON (a .md table is written beside it)")
    v.add_argument("--work", default="/tmp/tandem-validate", help="scratch directory for plan results")
    v.add_argument("--calibrate-from", help="a goodput directory whose lowest-rate run per config sets that config's "
                   "--cost-scale (measured / predicted TPOT p50); errors are then reported over the other runs")
    v.set_defaults(func=cmd_validate)

    a = ap.parse_args(argv)
    if isinstance(getattr(a, "configs", None), str):
        a.configs = csv(str)(a.configs)
    if getattr(a, "llama_server", None) and a.cmd == "goodput" and "llama-server" not in a.configs:
        a.configs.append("llama-server")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    try:
        a.func(a)
    except KeyboardInterrupt:
        log("interrupted: every cluster and bench process started has been stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
