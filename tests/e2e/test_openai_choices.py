"""Several choices per request (`n`, and `best_of` for completions) through the official `openai`
client, checked on values: each choice is the answer a single request with the seed + its index
would give (vLLM's seeding), on the disaggregated cluster and on a mixed worker alike; the later
choices reuse the prompt the first one computed (prefix-cache hits on the worker that prefilled
it) instead of computing it again; best_of returns the choice with the highest mean
log-probability per token."""
import uuid

import openai
import pytest

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]
HOT = dict(temperature=1.0, top_p=0.95, seed=1234)


def chat(cluster, **kw):
    kw = dict(dict(model=cluster.model, messages=QUESTION, max_tokens=12), **kw)
    return cluster.client.chat.completions.create(**kw)


def streamed_choices(cluster, **kw):
    """{index: text}, {index: finish_reason} and the usage of a streamed chat completion."""
    texts, finish, usage = {}, {}, None
    for chunk in chat(cluster, stream=True, stream_options={"include_usage": True}, **kw):
        usage = chunk.usage or usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                assert c.index not in finish, "one finish per choice"
                finish[c.index] = c.finish_reason
    return texts, finish, usage


def prefix_hits(cluster, role):
    return sum(v for k, v in cluster.metrics(role).items() if k.startswith("tandem_worker_prefix_cache_hit_tokens_total"))


def test_each_choice_is_the_seeded_single_answer(disagg, mixed):
    for cluster in (disagg, mixed):
        singles = []
        for i in range(3):
            r = chat(cluster, **dict(HOT, seed=HOT["seed"] + i))
            singles.append((r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens))
        assert len({s[0] for s in singles}) > 1, "sampled choices should differ: %r" % singles
        r = chat(cluster, n=3, **HOT)
        assert [c.index for c in r.choices] == [0, 1, 2]
        assert [(c.message.content, c.finish_reason) for c in r.choices] == [s[:2] for s in singles]
        assert r.usage.completion_tokens == sum(s[2] for s in singles)
        assert r.usage.prompt_tokens == chat(cluster, max_tokens=1).usage.prompt_tokens  # counted once
        texts, finish, usage = streamed_choices(cluster, n=3, **HOT)
        assert texts == {i: s[0] for i, s in enumerate(singles)}
        assert finish == {i: s[1] for i, s in enumerate(singles)}
        assert usage.completion_tokens == r.usage.completion_tokens


def test_later_choices_reuse_the_first_choices_prompt(disagg, mixed):
    for cluster, role in ((disagg, "prefill"), (mixed, "mixed")):
        # A prompt no earlier request shared: 10+ blocks of 16 tokens.
        text = f"{uuid.uuid4()} " + "Tell me about the history of the river and its towns. " * 20
        before = prefix_hits(cluster, role)
        r = chat(cluster, messages=[{"role": "user", "content": text}], n=4, max_tokens=2, temperature=0)
        after = prefix_hits(cluster, role)
        prompt = r.usage.prompt_tokens
        assert prompt > 160
        # Choices 1..3 each found every full block of the prompt cached (the last, partial one is
        # computed again); choice 0 at most the template's preamble.
        full = prompt // 16 * 16
        assert 3 * (full - 16) <= after - before <= 3 * full + 64, (before, after, prompt)
        assert r.usage.prompt_tokens_details.cached_tokens < 64  # what choice 0 found: charged once
        assert len({c.message.content for c in r.choices}) == 1  # greedy: the same answer four times


def test_best_of_returns_the_most_likely_choice(disagg):
    prompt, kw = "Once upon a time", dict(max_tokens=6, temperature=1.0, extra_body={"ignore_eos": True})
    runs = []
    for i in range(3):
        r = disagg.client.completions.create(model=disagg.model, prompt=prompt, seed=77 + i, logprobs=0, **kw)
        lps = r.choices[0].logprobs.token_logprobs
        runs.append((sum(lps) / len(lps), r.choices[0].text, lps))
    best = max(runs)
    r = disagg.client.completions.create(model=disagg.model, prompt=prompt, seed=77, best_of=3, **kw)
    assert [c.text for c in r.choices] == [best[1]]
    assert r.choices[0].logprobs is None  # not asked for
    assert r.usage.completion_tokens == 18  # all three were generated
    r = disagg.client.completions.create(model=disagg.model, prompt=prompt, seed=77, best_of=3, n=2, logprobs=0, **kw)
    ranked = sorted(runs, reverse=True)[:2]
    assert [c.text for c in r.choices] == [x[1] for x in ranked]
    assert r.choices[0].logprobs.token_logprobs == pytest.approx(ranked[0][2], abs=1e-4)


def test_bad_choice_counts_are_refused_by_name(disagg):
    for bad in (0, 17):
        with pytest.raises(openai.BadRequestError) as e:
            chat(disagg, n=bad)
        assert e.value.body["param"] == "n", e.value.body
    with pytest.raises(openai.BadRequestError) as e:
        disagg.client.completions.create(model=disagg.model, prompt="a", best_of=2, stream=True)
    assert e.value.body["param"] == "best_of", e.value.body
    with pytest.raises(openai.BadRequestError) as e:
        disagg.client.completions.create(model=disagg.model, prompt="a", n=3, best_of=2)
    assert e.value.body["param"] == "best_of", e.value.body
    assert chat(disagg, max_tokens=2).choices[0].finish_reason  # still serving


def test_each_choice_carries_its_own_logprobs(disagg):
    kw = dict(n=2, logprobs=True, top_logprobs=2, max_tokens=8, **HOT)
    r = chat(disagg, **kw)
    for c in r.choices:
        tokens = [e.token for e in c.logprobs.content]
        assert len(tokens) >= 1 and all(len(e.top_logprobs) == 2 for e in c.logprobs.content)
        assert "".join(tokens).replace("<|im_end|>", "") == c.message.content
    # Streamed, the entries reach the choice they belong to.
    texts, entries = {}, {}
    for chunk in chat(disagg, stream=True, **kw):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.logprobs is not None:
                entries.setdefault(c.index, []).extend(e.token for e in c.logprobs.content or [])
    assert texts == {c.index: c.message.content for c in r.choices}
    assert entries == {c.index: [e.token for e in c.logprobs.content] for c in r.choices}
