"""tandem's response bodies as the official `openai` Python client parses them.

The bodies come from api_openai_shapes_dump (path in $TANDEM_API_SHAPES); an in-memory
transport serves them to a real `openai.OpenAI` client with strict response validation, so a
missing or mistyped field fails here the way it would fail for a user. Run by
run_openai_shapes_test.sh (ctest: api_openai_shapes).
"""

import json
import os

import openai
import pytest

try:  # openai >= 3 ships its own httpx fork
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older clients
    import httpx

with open(os.environ["TANDEM_API_SHAPES"], encoding="utf-8") as f:
    SHAPES = json.load(f)


def make_client(strict=True):
    """A client served from SHAPES. strict: validate every response against the SDK's models."""

    def handler(request):
        case = request.headers.get("x-case")
        if request.url.path.endswith("/models"):
            case = case or "models"
        elif case is None:
            body = json.loads(request.content or b"{}")
            chat = request.url.path.endswith("/chat/completions")
            case = "chat_completion" if chat else "completion"
            if body.get("stream"):
                usage = (body.get("stream_options") or {}).get("include_usage")
                case = "chat_stream" if chat else "completion_stream"
                case += "_usage" if usage else ""
        shape = SHAPES[case]
        if isinstance(shape, dict):  # an error case
            headers = {"content-type": "application/json"}
            if shape["retry_after"] > 0:
                headers["retry-after"] = str(shape["retry_after"])
            return httpx.Response(shape["status"], headers=headers, content=shape["body"])
        if "_stream" in case:
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=shape.encode()
            )
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=shape.encode()
        )

    return openai.OpenAI(
        api_key="test",
        base_url="http://tandem.test/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        _strict_response_validation=strict,
    )


MESSAGES = [{"role": "user", "content": "hi"}]


def test_chat_completion():
    r = make_client().chat.completions.create(model="smollm2", messages=MESSAGES)
    assert r.id == "chatcmpl-abc123"
    assert r.object == "chat.completion"
    assert r.created == 1700000000
    assert r.model == "smollm2"
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello \N{GRINNING FACE}!\n"
    assert choice.finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (20, 6, 26)


def test_chat_logprobs_and_cached_tokens():
    client = make_client()
    r = client.chat.completions.create(model="smollm2", messages=MESSAGES, logprobs=True, top_logprobs=2,
                                       extra_headers={"x-case": "chat_completion_logprobs"})
    content = r.choices[0].logprobs.content
    assert [c.token for c in content] == ["Hel", "\ufffd"]
    assert content[0].logprob == -0.25 and content[0].bytes == list(b"Hel")
    assert content[1].logprob == -9999.0 and content[1].bytes == [0xF0, 0x9F]
    assert [t.token for t in content[0].top_logprobs] == ["Hel", "Hi"]
    assert r.usage.prompt_tokens_details.cached_tokens == 16
    stream = client.chat.completions.create(model="smollm2", messages=MESSAGES, logprobs=True, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_headers={"x-case": "chat_stream_logprobs"})
    tokens = [c.token for chunk in stream for choice in chunk.choices if choice.logprobs
              for c in choice.logprobs.content]
    assert tokens == ["Hel", "\ufffd"]


def test_completion_logprobs():
    r = make_client().completions.create(model="smollm2", prompt="Once", logprobs=2,
                                         extra_headers={"x-case": "completion_logprobs"})
    lp = r.choices[0].logprobs
    assert lp.tokens == ["Hel", "\ufffd"] and lp.token_logprobs == [-0.25, -9999.0]
    assert lp.top_logprobs[0] == {"Hel": -0.25, "Hi": -1.5}
    assert lp.text_offset == [0, 3]


def test_completion():
    r = make_client().completions.create(model="smollm2", prompt="Once")
    assert r.id == "cmpl-abc124"
    assert r.object == "text_completion"
    assert r.choices[0].text == " upon a time"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == 20


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        make_client().chat.completions.create(
            model="smollm2", messages=MESSAGES, stream=True, **kwargs
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-abc123" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == "Hello \N{GRINNING FACE}"
    assert [c.choices[0].finish_reason for c in with_choices] == [None, None, None, "stop"]
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage.total_tokens == 24
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("include_usage", [False, True])
def test_completion_stream(include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    # Not strict: the SDK types legacy completion chunks with the whole-response model, whose
    # finish_reason is not nullable, yet OpenAI and vLLM send null until the last chunk (as
    # tandem does). The default (non-strict) client, which every user gets, reads them fine.
    chunks = list(
        make_client(strict=False).completions.create(
            model="smollm2", prompt="Once", stream=True, **kwargs
        )
    )
    assert all(c.object == "text_completion" and c.id == "cmpl-abc124" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in with_choices) == " upon a time"
    assert [c.choices[0].finish_reason for c in with_choices] == [None, None, "length"]
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == 3


def test_several_choices():
    client = make_client()
    r = client.chat.completions.create(model="smollm2", messages=MESSAGES, n=2,
                                       extra_headers={"x-case": "chat_completion_n2"})
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.message.content for c in r.choices] == ["Hi", "Hello there"]
    assert [c.finish_reason for c in r.choices] == ["stop", "length"]
    r = client.completions.create(model="smollm2", prompt="Once", n=2,
                                  extra_headers={"x-case": "completion_n2"})
    assert [(c.index, c.text) for c in r.choices] == [(0, "Hi"), (1, "Hello there")]
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=MESSAGES, n=2, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-case": "chat_stream_n2"}))
    texts, finish = {0: "", 1: ""}, {}
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert texts == {0: "Hi", 1: "Hello there"}
    assert finish == {0: "stop", 1: "length"}
    assert chunks[-1].usage.completion_tokens == 5


def test_error_after_stream_started():
    stream = make_client().chat.completions.create(
        model="smollm2", messages=MESSAGES, stream=True,
        extra_headers={"x-case": "chat_stream_error"},
    )
    seen = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            seen.append(chunk)
    assert len(seen) == 2  # the role chunk and "Hel" arrived before the failure
    assert "abc123" in e.value.message
    assert e.value.type == "server_error"


def test_models():
    models = make_client().models.list()
    assert [m.id for m in models.data] == ["smollm2"]
    assert models.data[0].object == "model"
    assert models.data[0].owned_by == "tandem"
    assert models.data[0].created == 1700000000


@pytest.mark.parametrize(
    "case,exc,param,code",
    [
        ("error_400", openai.BadRequestError, "max_tokens", "invalid_type"),
        ("error_400_context", openai.BadRequestError, "messages", "context_length_exceeded"),
        ("error_401", openai.AuthenticationError, None, "invalid_api_key"),
        ("error_404_model", openai.NotFoundError, "model", "model_not_found"),
        ("error_429", openai.RateLimitError, None, "server_overloaded"),
        ("error_503", openai.InternalServerError, None, "service_unavailable"),
        ("error_500", openai.InternalServerError, None, "internal_error"),
    ],
)
def test_errors(case, exc, param, code):
    with pytest.raises(exc) as e:
        make_client().chat.completions.create(
            model="smollm2", messages=MESSAGES, extra_headers={"x-case": case}
        )
    assert e.value.status_code == SHAPES[case]["status"]
    assert e.value.param == param
    assert e.value.code == code
    assert e.value.message
    if case in ("error_429", "error_503"):
        assert e.value.response.headers["retry-after"] == "2"
    if case == "error_400":
        assert "'max_tokens'" in e.value.message
