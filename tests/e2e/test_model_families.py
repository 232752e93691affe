"""Every model family through a whole disaggregated cluster, as a client sees it.

`tandem model synth --arch NAME` writes a random-weight model of each family (llama3: llama-bpe,
BOS and the header/eot template; llama-spm: SentencePiece and Llama 2's [INST] template; qwen2:
biases, NEOX RoPE, ChatML with a default system prompt; deepseek-r1-qwen: DeepSeek-R1's template
and BOS; synth_fidelity_test holds each to llama.cpp). Here each one is served by `tandem up` (prefill here, decode there) and asked through
the official client: the greedy answer equals `tandem generate`'s in one process, streamed or
not, and the prompt is counted as the model's own tokenizer counts it.
"""
import json
import os
import subprocess

import pytest

from cluster import Cluster

FAMILIES = ["llama3", "llama-spm", "qwen2", "deepseek-r1-qwen"]
QUESTION = "Name 3 colours, please."


def tandem(*args):
    out = subprocess.run([os.environ["TANDEM_BIN"], *args], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory, log_dir):
    model = str(tmp_path_factory.mktemp("models") / f"{request.param}.gguf")
    tandem("model", "synth", "--arch", request.param, "--shape", "small", "--weight-type", "f32",
           "--embedding-type", "f32", "--out", model)
    c = Cluster(f"family-{request.param}", ["--prefill", "1", "--decode", "1", "--no-controller"], log_dir,
                model=model)
    yield request.param, model, c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"


def test_greedy_chat_through_the_cluster_equals_the_engine_in_one_process(family):
    name, model, c = family
    want = tandem("generate", "--model", model, "--chat", "--prompt", QUESTION, "--max-tokens", "16",
                  "--ignore-eos", "--quiet").decode("utf-8", errors="replace")
    messages = [{"role": "user", "content": QUESTION}]
    extra = {"ignore_eos": True}
    r = c.client.chat.completions.create(model=c.model, messages=messages, max_tokens=16, temperature=0,
                                         extra_body=extra)
    assert r.choices[0].message.content == want, name
    assert r.usage.completion_tokens == 16
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.client.chat.completions.create(
        model=c.model, messages=messages, max_tokens=16, temperature=0, stream=True, extra_body=extra)
        if ch.choices)
    assert streamed == want, name


def test_prompt_tokens_are_the_models_own_count(family):
    name, model, c = family
    text = "In 2024, 1234567 people didn't say 'hello'."
    ids = json.loads(tandem("model", "tokenize", "--model", model, "--text", text))
    r = c.client.completions.create(model=c.model, prompt=text, max_tokens=1, temperature=0)
    assert r.usage.prompt_tokens == len(ids), (name, ids)
    # BOS where the family adds one (llama3, SentencePiece, deepseek-r1-qwen), none for qwen2.
    bare = json.loads(tandem("model", "tokenize", "--model", model, "--no-bos", "--text", text))
    assert len(ids) - len(bare) == (0 if name == "qwen2" else 1), (name, ids, bare)
