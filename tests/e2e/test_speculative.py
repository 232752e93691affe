"""Speculative decoding through the server (`tandem up --speculative-ngram 4`, 1 prefill + 1 decode
worker), with the official `openai` client: every answer (greedy or seeded, streamed or not, with
log-probabilities, a stop string and JSON mode) equals the same request's on the cluster without it; the
decode worker reports drafts it kept; a request sent with "speculative": false drafts nothing. And
`tandem generate`, alone and with --parallel copies: the same text with drafts as without."""
import os
import re
import subprocess

import pytest

from cluster import Cluster

EDIT = ("Fix the spelling mistakes in the following text and repeat it in full.\n\nText: The quick brown fox "
        "jumpd over the lazy dog. The dog was not amused, and it barkd loudly at the fox, who ran away into the "
        "forrest. Later that day, the fox came back with a freind.")
CODE = ("Rename the variable `x` to `total` and show the whole function.\n\n```python\ndef add(items):\n    x = 0\n"
        "    for item in items:\n        x = x + item.price\n    return x\n```")


@pytest.fixture(scope="module")
def spec(log_dir):
    c = Cluster("speculative", ["--prefill", "1", "--decode", "1", "--no-controller", "--speculative-ngram", "4"],
                log_dir)
    yield c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"


def answer(cluster, prompt, stream, **kw):
    """The text, finish reason and log-probabilities of one chat answer."""
    r = cluster.client.chat.completions.create(model=cluster.model, messages=[{"role": "user", "content": prompt}],
                                               stream=stream, **kw)
    if not stream:
        c = r.choices[0]
        lps = [(t.token, round(t.logprob, 4)) for t in c.logprobs.content] if c.logprobs else None
        return c.message.content, c.finish_reason, lps
    text, finish, lps = "", None, []
    for chunk in r:
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
            if c.logprobs and c.logprobs.content:
                lps += [(t.token, round(t.logprob, 4)) for t in c.logprobs.content]
    return text, finish, lps or None


def spec_tokens(cluster, result):
    return sum(v for k, v in cluster.metrics("decode").items()
               if k.startswith("tandem_worker_speculative_tokens_total") and f'result="{result}"' in k)


CASES = [
    ("greedy edit", EDIT, dict(max_tokens=96, temperature=0)),
    ("greedy code with logprobs", CODE, dict(max_tokens=80, temperature=0, logprobs=True, top_logprobs=2)),
    ("seeded edit", EDIT, dict(max_tokens=96, temperature=0.8, seed=7)),
    ("stop string", EDIT, dict(max_tokens=96, temperature=0, stop=["lazy"])),
    ("json mode", EDIT + "\nAnswer with a JSON object with the key \"text\".",
     dict(max_tokens=96, temperature=0, response_format={"type": "json_object"})),
]


@pytest.mark.parametrize("stream", [False, True])
def test_answers_equal_the_cluster_without_speculation(disagg, spec, stream):
    accepted_before = spec_tokens(spec, "accepted")
    for name, prompt, kw in CASES:
        want = answer(disagg, prompt, stream, **kw)
        got = answer(spec, prompt, stream, **kw)
        assert got == want, name
        if name == "stop string":
            assert got[1] == "stop" and "lazy" not in got[0], got
    assert spec_tokens(spec, "accepted") > accepted_before  # drafts were kept, not only proposed


def test_a_request_can_opt_out(spec):
    drafted = spec_tokens(spec, "drafted")
    text, _, _ = answer(spec, EDIT, False, max_tokens=64, temperature=0, extra_body={"speculative": False})
    assert text and spec_tokens(spec, "drafted") == drafted
    answer(spec, EDIT, False, max_tokens=64, temperature=0)
    assert spec_tokens(spec, "drafted") > drafted


def generate(*args):
    out = subprocess.run([os.environ["TANDEM_BIN"], "generate", "--chat", "--prompt", EDIT, "--max-tokens", "48",
                          *args], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode(), out.stderr.decode()


def test_generate_with_drafts_and_copies_prints_the_same_text():
    plain, _ = generate()
    text, stats = generate("--speculative-ngram", "3")
    assert text == plain
    kept, drafted = map(int, re.search(r"speculative decoding: (\d+) of (\d+) draft tokens", stats).groups())
    assert 0 < kept <= drafted
    text, stats = generate("--speculative-ngram", "3", "--parallel", "3", "--speculative-max-batch", "3")
    assert text == plain  # the first copy's answer; the copies decode as a batch of 3
    one = int(re.search(r"generated (\d+) tokens", stats).group(1))
    assert re.search(rf"3 copies: {3 * one} tokens generated", stats), stats
