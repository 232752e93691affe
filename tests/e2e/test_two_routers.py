"""Two routers in front of the same workers (`tandem up --routers 2`), as real processes, through
the official `openai` client: either router gives every answer, the same one; kill -9 of one
router while both stream fails only the streams it held (the other's all complete, unchanged);
the supervisor starts it again on its ports and every worker registers with it again."""
import concurrent.futures as cf
import os
import signal
import time

try:
    import httpx2 as httpx  # what the openai client itself uses
except ImportError:
    import httpx
import openai
import pytest

from cluster import Cluster

PROMPTS = [f"Write a long story about a {w}." for w in ("lighthouse", "violin", "glacier", "market")]
MAX_TOKENS = 160


@pytest.fixture(scope="module")
def two(log_dir):
    c = Cluster("two-routers", ["--routers", "2", "--prefill", "1", "--decode", "1", "--no-controller"], log_dir)
    yield c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"


def story(client, model, prompt):
    """A streamed greedy answer's text (any failure raises)."""
    text = ""
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                max_tokens=MAX_TOKENS, temperature=0, stream=True,
                                                extra_body={"ignore_eos": True}):
        for choice in chunk.choices:
            text += choice.delta.content or ""
    return text


def gauge(http, series):
    for line in httpx.get(f"http://{http}/metrics", timeout=10).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_a_killed_router_fails_only_its_own_streams_and_rejoins(two):
    routers = [p for p in two.processes if p[0] == "router"]
    assert len(routers) == 2, two.processes
    clients = [openai.OpenAI(base_url=f"http://{http}/v1", api_key="unused", max_retries=0, timeout=300)
               for _, _, _, http in routers]
    expected = [story(clients[0], two.model, p) for p in PROMPTS]
    assert [story(clients[1], two.model, p) for p in PROMPTS] == expected, "the routers answer differently"

    with cf.ThreadPoolExecutor(2 * len(PROMPTS)) as pool:
        kept = [pool.submit(story, clients[0], two.model, p) for p in PROMPTS]
        doomed = [pool.submit(story, clients[1], two.model, p) for p in PROMPTS]
        wait_for(lambda: gauge(routers[1][3], "tandem_router_inflight_requests") >= 2, 30,
                 "two streams in flight on the second router")
        time.sleep(0.3)  # some tokens streamed
        os.kill(routers[1][1], signal.SIGKILL)
        assert [f.result() for f in kept] == expected, "the first router's streams must all complete unchanged"
        failed = sum(f.exception() is not None for f in doomed)
    assert failed >= 1, "the kill landed after every stream of the second router had ended: nothing was tested"

    # `tandem up` starts it again on its ports; both workers register with it again.
    wait_for(lambda: httpx.get(f"http://{routers[1][3]}/readyz", timeout=2).status_code == 200, 30,
             "the second router answering /readyz again")
    wait_for(lambda: gauge(routers[1][3], 'tandem_router_workers{role="decode",state="ready"}') == 1
             and gauge(routers[1][3], 'tandem_router_workers{role="prefill",state="ready"}') == 1, 10,
             "every worker registered with the restarted router")
    assert story(clients[1], two.model, PROMPTS[0]) == expected[0]
