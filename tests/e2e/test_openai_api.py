"""The OpenAI-compatible API of a `tandem up` cluster, through the official `openai` client."""
import os
import subprocess
import threading
import time

try:
    import httpx2 as httpx  # what the openai client itself uses
except ImportError:
    import httpx
import openai
import pytest

QUESTION = [{"role": "user", "content": "Name three colors of the rainbow."}]

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a hash table is in one sentence.",
    "List three prime numbers.",
    "What does HTTP stand for?",
    "Give me a short tip for writing clean code.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Describe a cat in five words.",
    "Why is the sky blue? Answer briefly.",
    "Say hello in three languages.",
]


def chat(cluster, messages=QUESTION, **kw):
    kw.setdefault("max_tokens", 24)
    return cluster.client.chat.completions.create(model=cluster.model, messages=messages, **kw)


def stream_text(stream):
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = getattr(choice, "delta", None)
            text += (delta.content or "") if delta is not None else (choice.text or "")
            finish = choice.finish_reason or finish
    return text, finish, usage


def test_models_lists_the_served_model(disagg):
    models = disagg.client.models.list().data
    assert [m.id for m in models] == [disagg.model]
    assert disagg.model.startswith("SmolLM2-135M-Instruct")


def test_chat_completion_with_usage(disagg):
    r = chat(disagg, temperature=0)
    assert r.model == disagg.model
    assert r.id and r.object == "chat.completion"
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10  # the chat template wraps the question
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream_and_reports_usage(disagg):
    whole = chat(disagg, temperature=0, max_tokens=32)
    text, finish, usage = stream_text(
        chat(disagg, temperature=0, max_tokens=32, stream=True, stream_options={"include_usage": True}))
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_completions_stream_and_not(disagg):
    kw = dict(model=disagg.model, prompt="The three primary colors are", max_tokens=16, temperature=0)
    r = disagg.client.completions.create(**kw)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.usage.completion_tokens <= 16
    text, finish, _ = stream_text(disagg.client.completions.create(**kw, stream=True))
    assert text == r.choices[0].text
    assert finish == r.choices[0].finish_reason


def test_max_completion_tokens_and_ignore_eos(disagg):
    r = chat(disagg, max_tokens=None, max_completion_tokens=40, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 40
    assert r.choices[0].finish_reason == "length"


def test_top_k_top_p_and_temperature_are_accepted(disagg):
    r = chat(disagg, temperature=0.7, top_p=0.9, seed=3, extra_body={"top_k": 20})
    assert r.choices[0].message.content


def test_stop_strings_end_the_answer_and_are_not_shown(disagg):
    full = chat(disagg, temperature=0, max_tokens=40, extra_body={"ignore_eos": True}).choices[0].message.content
    words = full.split()
    assert len(words) >= 4, full
    stop = words[3]
    cut = full.index(stop)
    r = chat(disagg, temperature=0, max_tokens=40, stop=["@@never@@", stop], extra_body={"ignore_eos": True})
    assert r.choices[0].message.content == full[:cut]
    assert r.choices[0].finish_reason == "stop"
    text, finish, _ = stream_text(chat(disagg, temperature=0, max_tokens=40, stop=[stop], stream=True,
                                       extra_body={"ignore_eos": True}))
    assert text == full[:cut]
    assert stop not in text
    assert finish == "stop"


def test_same_seed_same_answer(disagg):
    kw = dict(temperature=1.0, top_p=0.95, max_tokens=32, extra_body={"ignore_eos": True})
    a = chat(disagg, seed=1234, **kw).choices[0].message.content
    b = chat(disagg, seed=1234, **kw).choices[0].message.content
    streamed, _, _ = stream_text(chat(disagg, seed=1234, stream=True, **kw))
    assert a == b == streamed
    others = {chat(disagg, seed=s, **kw).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "different seeds should sample differently"


def error_of(response):
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert "type" in err
    return err


def test_errors_are_openai_shaped_and_the_server_keeps_serving(disagg):
    url = disagg.url
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{url}/chat/completions", content=b'{"model": "x", "messages": [', 
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        error_of(r)
        r = http.get(f"{url}/no/such/route")
        assert r.status_code == 404
        error_of(r)

    with pytest.raises(openai.NotFoundError) as e:
        disagg.client.chat.completions.create(model="gpt-nonexistent", messages=QUESTION, max_tokens=4)
    assert "gpt-nonexistent" in str(e.value)

    long_prompt = [{"role": "user", "content": "word " * 10000}]
    with pytest.raises(openai.BadRequestError) as e:
        chat(disagg, messages=long_prompt, max_tokens=4)
    assert "context" in str(e.value)

    for bad in (0, -1):
        with pytest.raises(openai.BadRequestError) as e:
            chat(disagg, max_tokens=bad)
        assert "max_tokens" in str(e.value)

    with pytest.raises(openai.BadRequestError) as e:
        chat(disagg, n=99)
    assert "'n' must be between 1 and 16" in str(e.value)

    with pytest.raises(openai.BadRequestError):
        chat(disagg, stop=["a", "b", "c", "d", "e"])

    with pytest.raises(openai.BadRequestError):
        chat(disagg, temperature=-1)

    # Still serving.
    r = chat(disagg, temperature=0)
    assert r.choices[0].message.content


def test_client_disconnect_frees_the_workers_kv(disagg):
    free_key = 'tandem_worker_kv_blocks{role="decode",state="free"}'
    running_key = 'tandem_worker_sequences{role="decode",state="running"}'
    before = disagg.metrics("decode")[free_key]
    stream = chat(disagg, temperature=0, max_tokens=2000, stream=True, extra_body={"ignore_eos": True})
    chunks = 0
    for _ in stream:
        chunks += 1
        if chunks == 5:
            break
    stream.close()  # the client goes away mid-answer
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = disagg.metrics("decode")
        if m[running_key] == 0 and m[free_key] == before:
            break
        time.sleep(0.2)
    m = disagg.metrics("decode")
    assert m[running_key] == 0, "the decode worker is still generating for a client that left"
    assert m[free_key] == before
    router = disagg.metrics("router")
    assert router.get('tandem_router_cancelled_total', 0) >= 1


def test_concurrent_streams_all_complete(disagg):
    results = [None] * 12

    def run(i):
        text, finish, usage = stream_text(chat(disagg, messages=[{"role": "user", "content": PROMPTS[i % 10]}],
                                               temperature=0, max_tokens=16, stream=True,
                                               stream_options={"include_usage": True}))
        results[i] = (text, finish, usage.completion_tokens)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        assert r is not None and r[0] and r[1] in ("stop", "length"), (i, r)
    # Same prompt, greedy: same answer whatever else was running.
    assert results[0][0] == results[10][0]
    assert results[1][0] == results[11][0]


def test_greedy_answers_match_tandem_generate_and_a_mixed_worker(disagg, mixed):
    assert len(PROMPTS) >= 10
    for prompt in PROMPTS:
        cli = subprocess.run([os.environ["TANDEM_BIN"], "generate", "--model", os.environ["TANDEM_MODEL"], "--chat",
                              "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--quiet"],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        messages = [{"role": "user", "content": prompt}]
        via_disagg = chat(disagg, messages=messages, temperature=0, max_tokens=32).choices[0].message.content
        via_mixed = chat(mixed, messages=messages, temperature=0, max_tokens=32).choices[0].message.content
        assert via_disagg == cli, prompt
        assert via_mixed == cli, prompt
