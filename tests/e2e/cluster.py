"""A `tandem up` process tree for tests and benchmarks: started, parsed, scraped, stopped."""
import os
import queue
import re
import signal
import subprocess
import threading
import time

import openai

try:
    import httpx2 as httpx  # what the openai client itself uses
except ImportError:
    import httpx

READY = re.compile(r"tandem is ready: (http://127\.0\.0\.1:\d+/v1)")
ROW = re.compile(r"^\s+(router|prefill|decode|mixed)\s+(\d+)\s+(\S+)\s+(\S+)\s*$")
CONTROLLER_ROW = re.compile(r"^\s+controller\s+\d+\s+-\s+(\S+)")
INTERNAL = re.compile(r"call its internal port, (\S+)$")


class Cluster:
    """One `tandem up` process tree; `processes` lists (role, pid, grpc, http) rows it printed."""

    def __init__(self, name, args, log_dir, tandem=None, model=None):
        self.name = name
        self.log_path = os.path.join(log_dir, f"tandem-up-{name}.log")
        self._log = open(self.log_path, "w")
        self.decision_log = os.path.join(log_dir, f"decisions-{name}.jsonl")
        # The internal plane's token, in a file so that a test's own `tandem controller` can join.
        self.token_file = os.path.join(log_dir, f"cluster-token-{name}")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(os.urandom(32).hex())
        cmd = [tandem or os.environ["TANDEM_BIN"], "up", "--model", model or os.environ["TANDEM_MODEL"],
               "--http-port", "0", "--grpc-port", "0", "--controller-port", "0",
               "--cluster-token-file", self.token_file, "--decision-log", self.decision_log, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)
        self.url = None
        self.processes = []
        self.controller_http = None
        self.router_internal = None  # the router's Registry/RouterAdmin address (not its Generate port)
        self._wait_ready(timeout=180)
        self.client = openai.OpenAI(base_url=self.url, api_key="unused", max_retries=0, timeout=300)
        self.model = self.client.models.list().data[0].id

    def _wait_ready(self, timeout):
        # A thread reads stdout (select() on a buffered text pipe misses lines already read in).
        lines = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if m := READY.search(line):
                self.url = m.group(1)
            elif (m := ROW.match(line)) and self.url:
                self.processes.append((m.group(1), int(m.group(2)), m.group(3), m.group(4)))
            elif (m := CONTROLLER_ROW.match(line)) and self.url:
                self.controller_http = m.group(1)
            elif (m := INTERNAL.search(line.rstrip())) and self.url:
                self.router_internal = m.group(1)
            elif self.url and line.startswith("try:"):
                return
        self.stop()
        raise RuntimeError(f"tandem up ({self.name}) did not become ready; stdout:\n{''.join(seen)}\n"
                           f"log: {open(self.log_path).read()[-4000:]}")

    @property
    def base(self):
        return self.url[: -len("/v1")]

    def metrics(self, role):
        """The /metrics page of the first process with this role, as {series: value}."""
        if role == "controller":
            return self._scrape(self.controller_http)
        return self._scrape(next(p[3] for p in self.processes if p[0] == role))

    def metrics_of_each(self, role):
        """The /metrics pages of every process with this role."""
        return [self._scrape(p[3]) for p in self.processes if p[0] == role]

    @staticmethod
    def _scrape(http):
        text = httpx.get(f"http://{http}/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                out[series] = float(value)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
