"""Logit modifiers, prefix-cache usage and /tokenize through the official `openai` client, each
checked on values: on the disaggregated cluster (prefill on one worker, decode on another, the
sampler's state handed over) and on a mixed worker (everything in one engine) alike."""
import json
import uuid

try:
    import httpx2 as httpx  # what the openai client itself uses
except ImportError:
    import httpx
import openai
import pytest

QUESTION = [{"role": "user", "content": "Name three colors of the rainbow."}]
PROMPT = "The capital of France is"


def post(cluster, path, body):
    r = httpx.post(cluster.base + path, json=body, timeout=60)
    return r.status_code, r.json()


def token_ids(cluster, text):
    """The ids of `text` alone, as the server tokenizes a completion's prompt (BOS dropped)."""
    status, body = post(cluster, "/tokenize", {"prompt": text})
    assert status == 200, body
    ids = body["tokens"]
    status, bos = post(cluster, "/tokenize", {"prompt": "a"})
    if len(bos["tokens"]) > 1:  # the tokenizer adds a BOS token
        ids = ids[1:]
    return ids


def complete(cluster, stream=False, **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    r = cluster.client.completions.create(model=cluster.model, prompt=kw.pop("prompt", PROMPT), stream=stream, **kw)
    if not stream:
        return r.choices[0].text
    return "".join(c.choices[0].text for c in r if c.choices)


def chat_finish(cluster, stream=False, **kw):
    """A chat answer's text and finish reason, streamed or not."""
    kw.setdefault("max_tokens", 48)
    r = cluster.client.chat.completions.create(model=cluster.model, messages=kw.pop("messages", QUESTION),
                                               stream=stream, **kw)
    if not stream:
        return r.choices[0].message.content, r.choices[0].finish_reason
    text, finish = "", None
    for c in r:
        if c.choices:
            text += c.choices[0].delta.content or ""
            finish = c.choices[0].finish_reason or finish
    return text, finish


def chat_text(cluster, stream=False, **kw):
    return chat_finish(cluster, stream=stream, **kw)[0]


def test_tokenize_and_detokenize(disagg):
    status, body = post(disagg, "/tokenize", {"prompt": PROMPT})
    assert status == 200, body
    assert body["count"] == len(body["tokens"]) > 3
    assert body["max_model_len"] > 1000
    status, back = post(disagg, "/detokenize", {"tokens": body["tokens"]})
    assert status == 200 and back == {"prompt": PROMPT}
    # Chat: the template's rendering, exactly what a chat completion is charged for.
    status, rendered = post(disagg, "/tokenize", {"messages": QUESTION})
    r = disagg.client.chat.completions.create(model=disagg.model, messages=QUESTION, max_tokens=1)
    assert rendered["count"] == r.usage.prompt_tokens
    status, err = post(disagg, "/detokenize", {"tokens": [1, 10**7]})
    assert status == 400 and err["error"]["param"] == "tokens", err
    status, err = post(disagg, "/tokenize", {"prompt": ""})
    assert status == 400 and err["error"]["param"] == "prompt", err


@pytest.mark.parametrize("stream", [False, True])
def test_logit_bias_bans_and_forces_tokens(disagg, mixed, stream):
    for cluster in (disagg, mixed):
        first = complete(cluster, max_tokens=1)
        banned = token_ids(cluster, first)
        assert banned, first
        other = complete(cluster, stream=stream, max_tokens=1, logit_bias={str(t): -100 for t in banned})
        assert other and other != first, (first, other)
        (blue,) = token_ids(cluster, " blue")
        forced = complete(cluster, stream=stream, max_tokens=4, logit_bias={str(blue): 100},
                          extra_body={"ignore_eos": True})
        assert forced == " blue" * 4


def repeats(cluster, text):
    ids = token_ids(cluster, text)
    return len(ids) - len(set(ids))


def test_penalties_change_the_answer_the_same_way_on_every_path(disagg, mixed):
    plain = chat_text(disagg, temperature=0, extra_body={"ignore_eos": True})
    kw = dict(temperature=0, frequency_penalty=1.5, presence_penalty=0.5,
              extra_body={"ignore_eos": True, "repetition_penalty": 1.2})
    penalized = chat_text(disagg, **kw)
    # The decode worker continues with the prefill worker's first token counted: the same tokens
    # as one engine doing both, streamed or not.
    assert penalized == chat_text(mixed, **kw) == chat_text(disagg, stream=True, **kw)
    assert penalized != plain
    assert repeats(disagg, penalized) < repeats(disagg, plain), (plain, penalized)


def test_min_p_one_keeps_only_the_most_likely_token(disagg, mixed):
    greedy = chat_text(disagg, temperature=0, max_tokens=24)
    hot = dict(temperature=1.5, seed=7, max_tokens=24)
    assert chat_text(disagg, extra_body={"min_p": 1.0}, **hot) == greedy
    assert chat_text(mixed, extra_body={"min_p": 1.0}, **hot) == greedy
    loose = chat_text(disagg, extra_body={"min_p": 0.05}, **hot)
    assert loose == chat_text(mixed, extra_body={"min_p": 0.05}, **hot), "seeded: the same on both paths"


@pytest.mark.parametrize("stream", [False, True])
def test_cached_prompt_tokens_are_reported(disagg, mixed, stream):
    for cluster in (disagg, mixed):
        # A prompt no earlier request shared, long enough for several 16-token blocks.
        text = f"{uuid.uuid4()} " + "Tell me about the history of the river and its towns. " * 20
        messages = [{"role": "user", "content": text}]
        usages = []
        for _ in range(2):
            kw = dict(model=cluster.model, messages=messages, max_tokens=2, temperature=0)
            if stream:
                chunks = list(cluster.client.chat.completions.create(
                    stream=True, stream_options={"include_usage": True}, **kw))
                usages.append(chunks[-1].usage)
            else:
                usages.append(cluster.client.chat.completions.create(**kw).usage)
        first, second = usages
        assert first.prompt_tokens == second.prompt_tokens > 160
        # The first time only the chat template's system preamble can be cached (shared with every
        # earlier chat); the second time every full 16-token block of the prompt is.
        before, after = first.prompt_tokens_details.cached_tokens, second.prompt_tokens_details.cached_tokens
        assert before % 16 == 0 and before < 64, before
        assert after % 16 == 0 and second.prompt_tokens - 32 <= after < second.prompt_tokens, after


def test_priority_is_accepted_and_bad_values_name_the_field(disagg):
    assert chat_text(disagg, temperature=0, max_tokens=4, extra_body={"priority": -5})
    for kw, field in ((dict(presence_penalty=3), "presence_penalty"),
                      (dict(frequency_penalty=-2.5), "frequency_penalty"),
                      (dict(logit_bias={"999999999": 1}), "logit_bias"),
                      (dict(logit_bias={"5": 150}), "logit_bias"),
                      (dict(extra_body={"min_p": 2}), "min_p"),
                      (dict(extra_body={"repetition_penalty": 0}), "repetition_penalty"),
                      (dict(extra_body={"priority": "high"}), "priority")):
        with pytest.raises(openai.BadRequestError) as e:
            chat_text(disagg, max_tokens=4, **kw)
        assert e.value.body["param"] == field, e.value.body


@pytest.mark.parametrize("stream", [False, True])
def test_min_tokens_holds_back_the_end_and_stop_strings(disagg, mixed, stream):
    def run(cluster, **kw):
        return chat_finish(cluster, stream=stream, max_tokens=64, temperature=0, **kw)

    plain, finish = run(disagg)
    assert finish == "stop", (plain, finish)  # the answer ends on its own, before max_tokens
    n = len(token_ids(disagg, plain))
    longer, finish = run(disagg, extra_body={"min_tokens": n + 8})
    # Greedy: the same tokens up to where the end came, then past it (the prefill worker samples
    # the first token, the decode worker the rest: both hold the end back).
    assert longer.startswith(plain) and len(token_ids(disagg, longer)) >= n + 8, (plain, longer)
    assert run(mixed, extra_body={"min_tokens": n + 8}) == (longer, finish)
    # A stop string in the first min_tokens tokens is shown; without min_tokens it ends the answer.
    word = plain.split()[1]
    cut, _ = run(disagg, stop=[word])
    assert word not in cut
    kept, _ = run(disagg, stop=[word], extra_body={"min_tokens": n})
    assert kept.startswith(plain[:plain.index(word) + len(word)]), (plain, kept)
    with pytest.raises(openai.BadRequestError) as e:
        run(disagg, extra_body={"min_tokens": 65})
    assert e.value.body["param"] == "min_tokens", e.value.body


def chat_logprobs(cluster, stream, **kw):
    kw = dict(dict(model=cluster.model, messages=QUESTION, max_tokens=12, temperature=0, logprobs=True,
                   top_logprobs=3), **kw)
    if not stream:
        r = cluster.client.chat.completions.create(**kw)
        return r.choices[0].message.content, r.choices[0].logprobs.content
    text, entries = "", []
    for chunk in cluster.client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None:
                entries += choice.logprobs.content or []
    return text, entries


def test_chat_logprobs_are_the_models_distribution(disagg, mixed):
    text, entries = chat_logprobs(disagg, stream=False)
    assert 0 < len(entries) <= 12
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token
        # Greedy: the chosen token is the most likely one, and the top list is sorted.
        assert e.top_logprobs[0].token == e.token and e.top_logprobs[0].logprob == pytest.approx(e.logprob)
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert sum(2.718281828 ** lp for lp in lps) <= 1.0001
    shown = "".join(e.token for e in entries)
    assert shown.replace("<|im_end|>", "") == text, (text, shown)  # the hidden end token has one too
    # The same values streamed, and on a mixed worker (first token from the prefill worker there).
    for cluster, stream in ((disagg, True), (mixed, False)):
        other_text, other = chat_logprobs(cluster, stream=stream)
        assert other_text == text
        assert [e.token for e in other] == [e.token for e in entries]
        assert [e.logprob for e in other] == pytest.approx([e.logprob for e in entries], abs=2e-3)
    # Measured before the modifiers: a bias that forces another token leaves its logprob as the model's.
    (blue,) = token_ids(disagg, " blue")
    _, forced = chat_logprobs(disagg, stream=False, logit_bias={str(blue): 100}, max_tokens=1)
    assert forced[0].token == " blue" and forced[0].logprob < entries[0].logprob


def test_completion_logprobs_shape(disagg):
    r = disagg.client.completions.create(model=disagg.model, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2,
                                         extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0].encode())
    for tok, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 2 and top[tok] == pytest.approx(chosen)
    plain = disagg.client.completions.create(model=disagg.model, prompt=PROMPT, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError) as e:
        disagg.client.chat.completions.create(model=disagg.model, messages=QUESTION, max_tokens=2, top_logprobs=2)
    assert e.value.body["param"] == "top_logprobs"


def test_completion_echo_shows_the_prompt_first(disagg):
    plain = complete(disagg, max_tokens=6)
    assert complete(disagg, max_tokens=6, echo=True) == PROMPT + plain
    assert complete(disagg, stream=True, max_tokens=6, echo=True) == PROMPT + plain
    ids = token_ids(disagg, PROMPT)
    assert complete(disagg, prompt=ids, max_tokens=6, echo=True) == PROMPT + complete(disagg, prompt=ids, max_tokens=6)


def echo_logprobs(cluster, prompt, stream=False, **kw):
    """Completions' echo with logprobs (lm-evaluation-harness's loglikelihood request): the text and
    the logprobs object's four lists, gathered over the chunks when streamed."""
    kw = dict(dict(model=cluster.model, prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1), **kw)
    if not stream:
        r = cluster.client.completions.create(**kw)
        lp = r.choices[0].logprobs
        return r.choices[0].text, lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset
    text, lists = "", ([], [], [], [])
    for chunk in cluster.client.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            text += choice.text
            if choice.logprobs is not None:
                for into, part in zip(lists, (choice.logprobs.tokens, choice.logprobs.token_logprobs,
                                              choice.logprobs.top_logprobs, choice.logprobs.text_offset)):
                    into += part or []
    return (text, *lists)


ECHO_PROMPT = "The quick brown fox jumps over the lazy dog. The capital of France is Paris, and"


def test_completion_echo_with_logprobs_scores_every_prompt_token(disagg, mixed):
    ids = token_ids(disagg, ECHO_PROMPT)
    text, tokens, chosen, tops, offsets = echo_logprobs(disagg, ECHO_PROMPT)
    # The prompt's tokens, then the generated one; the first prompt token has nothing to be scored on.
    assert len(tokens) == len(chosen) == len(tops) == len(offsets) == len(ids) + 1
    assert "".join(tokens) == text and text.startswith(ECHO_PROMPT)
    assert chosen[0] is None and tops[0] is None and offsets[0] == 0
    assert all(lp is not None and lp <= 0 for lp in chosen[1:])
    assert offsets == [sum(len(t.encode()) for t in tokens[:i]) for i in range(len(tokens))]
    # Prompt token k's entry is the distribution after tokens 0..k-1: its most likely token is what
    # greedy decoding of that prefix gives, with the same log-probability (computed here inside a
    # prefill chunk, there as the prefix's last row).
    for k in (1, len(ids) // 2, len(ids) - 1):
        r = disagg.client.completions.create(model=disagg.model, prompt=ids[:k], max_tokens=1, temperature=0,
                                             logprobs=1)
        gen = r.choices[0].logprobs
        assert tops[k] == {gen.tokens[0]: pytest.approx(gen.token_logprobs[0], abs=5e-3)}, k
        if gen.tokens[0] == tokens[k]:
            assert chosen[k] == pytest.approx(gen.token_logprobs[0], abs=5e-3)
    # The same values streamed (in the first chunk), on a mixed worker, and for each of n choices.
    for cluster, stream in ((disagg, True), (mixed, False), (mixed, True)):
        other = echo_logprobs(cluster, ECHO_PROMPT, stream=stream)
        assert other[0] == text and other[1] == tokens and other[3][0] is None
        assert other[2][1:] == pytest.approx(chosen[1:], abs=2e-3)
    r = disagg.client.completions.create(model=disagg.model, prompt=ECHO_PROMPT, max_tokens=2, temperature=1.0,
                                         seed=5, echo=True, logprobs=0, n=2)
    for choice in r.choices:
        assert choice.logprobs.tokens[:len(ids)] == tokens[:len(ids)]
        assert choice.logprobs.token_logprobs[1:len(ids)] == pytest.approx(chosen[1:len(ids)], abs=2e-3)


def test_prompt_logprobs_match_echo_with_logprobs(disagg, mixed):
    """vLLM's prompt_logprobs (sent through extra_body): one entry per prompt token, the first None,
    entry i keyed by token id holding prompt token i with the log-probability and text completions'
    echo with logprobs gives it, and the k best ranked 1..k. Completions put it on each choice, chat
    at the top level; it is not streamed."""
    status, body = post(disagg, "/tokenize", {"prompt": ECHO_PROMPT})
    assert status == 200, body
    ids = body["tokens"]  # as the completion's prompt: with the BOS token where the tokenizer adds one
    _, tokens, chosen, _, _ = echo_logprobs(disagg, ECHO_PROMPT)
    for cluster in (disagg, mixed):
        r = cluster.client.completions.create(model=cluster.model, prompt=ECHO_PROMPT, max_tokens=1, temperature=0,
                                              extra_body={"prompt_logprobs": 2})
        entries = r.choices[0].prompt_logprobs
        assert r.usage.prompt_tokens == len(ids) == len(entries)
        assert entries[0] is None
        for i in range(1, len(ids)):
            own = entries[i][str(ids[i])]
            assert own["logprob"] == pytest.approx(chosen[i], abs=2e-3), i
            assert own["decoded_token"] == tokens[i], i
            ranked = {c["rank"]: c["logprob"] for c in entries[i].values()}
            assert {1, 2} <= set(ranked) and ranked[1] >= ranked[2], (i, entries[i])
            assert isinstance(own["rank"], int) and own["rank"] >= 1, (i, entries[i])  # its place in the vocabulary
            if own["rank"] > 2:  # not among the k shown: below them
                assert own["logprob"] <= ranked[2] and len(entries[i]) == 3, (i, entries[i])
            else:
                assert ranked[own["rank"]] == own["logprob"] and len(entries[i]) == 2, (i, entries[i])
        assert r.choices[0].logprobs is None  # the generated tokens' are a separate ask
    chat = disagg.client.chat.completions.create(model=disagg.model, messages=QUESTION, max_tokens=2,
                                                 extra_body={"prompt_logprobs": 1})
    assert len(chat.prompt_logprobs) == chat.usage.prompt_tokens and chat.prompt_logprobs[0] is None
    assert all(1 <= len(e) <= 2 for e in chat.prompt_logprobs[1:])
    for extra, stream in (({"prompt_logprobs": 1}, True), ({"prompt_logprobs": -1}, False)):
        with pytest.raises(openai.BadRequestError) as e:
            disagg.client.completions.create(model=disagg.model, prompt=PROMPT, max_tokens=1, stream=stream,
                                             extra_body=extra)
        assert e.value.body["param"] == "prompt_logprobs", e.value.body


JSON_QUESTIONS = ["List three fruits as JSON.", "What is the capital of France? Answer in JSON.",
                  "Describe a cat with a JSON object."]


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_mode_answers_with_one_object(disagg, mixed, stream):
    json_mode = {"type": "json_object"}
    closed = 0
    for question in JSON_QUESTIONS:
        messages = [{"role": "user", "content": question}]
        for temperature, seed in ((0, None), (1.0, 3)):
            kw = dict(messages=messages, max_tokens=200, temperature=temperature, seed=seed)
            text, finish = chat_finish(disagg, stream=stream, response_format=json_mode, **kw)
            # The prefill worker samples the first token, the decode worker the rest, both masked:
            # the same answer as one engine doing both.
            assert (text, finish) == chat_finish(mixed, response_format=json_mode, **kw), question
            if finish == "length":  # only max_tokens may cut an object short: then it is the start of one
                assert text.lstrip().startswith("{"), text
                continue
            value = json.loads(text)
            assert isinstance(value, dict), text
            closed += 1
    assert closed >= 2, closed  # the rest ran into max_tokens (a 135M model keeps adding keys)
    # Without it the model answers in prose (what JSON mode changed).
    plain = chat_text(disagg, messages=[{"role": "user", "content": JSON_QUESTIONS[1]}], max_tokens=60, temperature=0)
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain)


CITY_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "country", "population"],
               "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                              "population": {"type": "integer"}, "capital": {"type": "boolean"},
                              "continent": {"enum": ["Europe", "Asia", "Africa", "America", "Oceania"]}}}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_mode_follows_the_schema(disagg, mixed, stream):
    json_schema = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": CITY_SCHEMA}}
    closed = 0
    for question in ("Tell me about Paris.", "Describe the biggest city in Japan.", "What is Lagos like?"):
        for temperature, seed in ((0, None), (1.0, 5)):
            kw = dict(messages=[{"role": "user", "content": question}], max_tokens=120, temperature=temperature,
                      seed=seed)
            text, finish = chat_finish(disagg, stream=stream, response_format=json_schema, **kw)
            assert (text, finish) == chat_finish(mixed, response_format=json_schema, **kw), question
            if finish == "length":  # only max_tokens cuts it short
                continue
            value = json.loads(text)
            closed += 1
            assert set(value) <= set(CITY_SCHEMA["properties"]) and {"city", "country", "population"} <= set(value)
            assert isinstance(value["city"], str) and isinstance(value["population"], int), value
            assert value.get("continent", "Europe") in CITY_SCHEMA["properties"]["continent"]["enum"], value
            assert isinstance(value.get("capital", True), bool), value
    assert closed >= 3, closed


def parsed_answers(disagg, model_cls, questions, max_tokens):
    """chat.completions.parse for each (question, seed) (seed None: greedy, else temperature 1):
    the (parsed model, raw content) of every answer that closed before max_tokens."""
    out = []
    for question, seed in questions:
        try:
            r = disagg.client.chat.completions.parse(
                model=disagg.model, messages=[{"role": "user", "content": question}], response_format=model_cls,
                max_tokens=max_tokens, temperature=0 if seed is None else 1.0, seed=seed)
        except openai.LengthFinishReasonError:
            continue  # max_tokens came first: the one way to get no object
        out.append((r.choices[0].message.parsed, r.choices[0].message.content))
    return out


def test_the_openai_clients_pydantic_parse_gets_its_model(disagg):
    """client.chat.completions.parse(response_format=<pydantic model>) sends a strict schema with
    $defs, $ref, an enum and an Optional field (anyOf with null), and reads the answer into the model."""
    from typing import Literal, Optional

    import pydantic

    class Pet(pydantic.BaseModel):
        kind: Literal["cat", "dog"]
        name: str

    class Owner(pydantic.BaseModel):
        name: str
        age: int
        pet: Pet
        nickname: Optional[str]

    answers = parsed_answers(disagg, Owner, (("Describe a person who owns a pet.", None), ("Who owns a dog?", 1),
                                             ("Tell me about Ann.", 2)), max_tokens=150)
    for owner, content in answers:
        assert isinstance(owner, Owner) and owner.pet.kind in ("cat", "dog"), content
    assert answers


def test_size_bounds_of_a_pydantic_model_hold_in_every_answer(disagg):
    """Field(min_length=, max_length=) on a str and a list becomes minLength/maxLength and
    minItems/maxItems in the schema the client sends; every answer that closes parses back into
    the model, whose validation checks the bounds again."""
    from typing import Annotated

    import pydantic

    class Trip(pydantic.BaseModel):
        city: str = pydantic.Field(min_length=2, max_length=12)
        sights: list[Annotated[str, pydantic.Field(max_length=16)]] = pydantic.Field(min_length=1, max_length=2)

    answers = parsed_answers(disagg, Trip, (("Plan a day in Rome.", None), ("Where should I travel?", 3),
                                            ("List what to see in a city.", 4)), max_tokens=80)
    for trip, content in answers:
        assert isinstance(trip, Trip), content
        assert 2 <= len(trip.city) <= 12 and 1 <= len(trip.sights) <= 2, trip
    assert answers


def test_a_pydantic_dict_field_gets_values_of_its_type(disagg):
    """dict[str, int] becomes additionalProperties: {"type": "integer"}: any key, integer values."""
    import pydantic

    class Stock(pydantic.BaseModel):
        shop: str
        counts: dict[str, int]

    answers = parsed_answers(disagg, Stock, (("How many apples and pears are in the shop?", None),
                                             ("Count the fruit.", 5), ("Inventory?", 6)), max_tokens=80)
    for stock, content in answers:
        assert isinstance(stock, Stock), content
        raw = json.loads(content)["counts"]  # as sent, before pydantic's coercion
        assert all(type(v) is int for v in raw.values()), raw
    assert answers


def test_integer_bounds_of_a_pydantic_model_hold_in_every_answer(disagg):
    """Field(ge=, le=, gt=) on ints becomes minimum/maximum/exclusiveMinimum: every closed answer's
    integers are in range as sent (pydantic's validation of .parsed checks them again)."""
    import pydantic

    class Guest(pydantic.BaseModel):
        age: int = pydantic.Field(ge=18, le=120)
        nights: int = pydantic.Field(gt=0, le=30)

    answers = parsed_answers(disagg, Guest, (("Describe a hotel guest.", None), ("Who checked in?", 7),
                                             ("A guest's booking?", 8)), max_tokens=60)
    for guest, content in answers:
        raw = json.loads(content)
        assert 18 <= raw["age"] <= 120 and 1 <= raw["nights"] <= 30, raw
        assert isinstance(guest, Guest)
    assert answers


def test_response_formats_tandem_does_not_implement_name_the_field(disagg):
    schema = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
        "type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}}}
    for response_format, param in ((schema, "response_format.json_schema.schema"),
                                   ({"type": "yaml"}, "response_format.type")):
        with pytest.raises(openai.BadRequestError) as e:
            chat_text(disagg, max_tokens=4, response_format=response_format)
        assert e.value.body["param"] == param, e.value.body
    # Completions take it too.
    r = disagg.client.completions.create(model=disagg.model, prompt='{"city": "Paris", "country":', max_tokens=40,
                                         temperature=0, extra_body={"response_format": {"type": "json_object"}})
    assert r.choices[0].text.lstrip().startswith("{"), r.choices[0].text
