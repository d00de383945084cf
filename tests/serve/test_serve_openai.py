"""`zoo serve` through the real `openai` client on loopback: models, completions (plain,
streamed, stop strings, n with a seed, max_tokens), chat completions, OpenAI-shaped errors, and
concurrent clients batched into shared decode steps."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

import zoo
from zoo.serve import ServerThread

NAME = "tiny-code"


@pytest.fixture(scope="module")
def model():
    return zoo.load(NAME, dtype="float32").eval()  # float32: greedy tokens exact in any batch


@pytest.fixture(scope="module")
def server(model):
    with ServerThread(model, NAME, max_batch=16) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def _reference(model, prompt: str, n: int) -> str:
    return model.generate_text(prompt, max_new_tokens=n)


def test_models(client, server):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert server.host == "127.0.0.1"


def test_completion_greedy_matches_generate_text(client, model):
    r = client.completions.create(model=NAME, prompt="def fib(n):", max_tokens=20, temperature=0)
    assert r.choices[0].text == _reference(model, "def fib(n):", 20)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens == 1 + len(model.tokenizer.encode("def fib(n):",
                                                                                                       bos=False))
    assert r.usage.total_tokens == r.usage.prompt_tokens + 20


def test_stream(client, model):
    chunks = list(client.completions.create(model=NAME, prompt="import os\n", max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == _reference(model, "import os\n", 16)
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 3  # pieces, not one blob
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 16


def test_stop_strings(client, model):
    full = _reference(model, "def fib(n):", 30)
    stop = full.strip()[4:9]  # text from inside the completion, likely spanning tokens
    r = client.completions.create(model=NAME, prompt="def fib(n):", max_tokens=30, temperature=0,
                                  stop=[stop, "never-there"])
    assert r.choices[0].text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=NAME, prompt="def fib(n):", max_tokens=30, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full[:full.index(stop)]


def test_n_with_seed(client):
    kw = dict(model=NAME, prompt="def main():", max_tokens=12, temperature=1.0, top_p=0.95, n=2, seed=5)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert sorted(c.index for c in a.choices) == [0, 1]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # a seed gives the same samples
    assert a.usage.completion_tokens == 24
    streamed = client.completions.create(**kw, stream=True)
    texts = ["", ""]
    for c in streamed:
        texts[c.choices[0].index] += c.choices[0].text
    assert texts == [c.text for c in a.choices]


def test_list_prompt_and_token_ids(client, model):
    ids = [1] + model.tokenizer.encode("x = [", bos=False)
    r = client.completions.create(model=NAME, prompt=["x = [", "return"], max_tokens=5, temperature=0)
    assert [c.text for c in r.choices] == [_reference(model, "x = [", 5), _reference(model, "return", 5)]
    r2 = client.completions.create(model=NAME, prompt=ids, max_tokens=5, temperature=0)
    assert r2.choices[0].text == r.choices[0].text


@pytest.mark.parametrize("bad, param", [
    (dict(temperature=-1), "temperature"), (dict(temperature=3), "temperature"), (dict(top_p=0), "top_p"),
    (dict(top_p=1.5), "top_p"), (dict(max_tokens=0), "max_tokens"), (dict(max_tokens=5000), "max_tokens"),
    (dict(n=0), "n"), (dict(seed="1"), "seed"), (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(extra_body={"stop": 5}), "stop"), (dict(prompt=[]), "prompt"), (dict(prompt=[1, 99999]), "prompt"),
    (dict(presence_penalty=0.5), "presence_penalty"), (dict(logprobs=2), "logprobs"),
])
def test_bad_parameters_are_400(client, bad, param):
    kw = dict(model=NAME, prompt="x", max_tokens=3)
    kw.update(bad)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(**kw)
    assert e.value.status_code == 400
    assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="x", max_tokens=3)
    assert e.value.body["code"] == "model_not_found"


def test_malformed_requests_are_never_500(server):
    url = server.base_url
    for body in ["not json", "[1, 2]", '{"prompt": "x"}', '{"model": "tiny-code"}',
                 '{"model": "tiny-code", "prompt": "x", "max_tokens": "many"}',
                 '{"model": "tiny-code", "messages": "hi"}']:
        for path in ("/completions", "/chat/completions"):
            r = httpx.post(url + path, content=body)
            assert r.status_code == 400, (path, body, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(url + "/nothing").status_code == 404


def test_chat_without_template_is_400(client):
    with pytest.raises(openai.BadRequestError, match="chat template"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])


def test_chat_with_template():
    from zoo.chat import render_chat

    m = zoo.load(NAME, ["tokenizer.chat.template=llama-2"], dtype="float32").eval()
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def fib(n):"}]
    ids = render_chat(m.tokenizer, m.spec.tokenizer, msgs)
    want = m.tokenizer.decode([t for t in m.generate([ids], max_new_tokens=12, stop_tokens=m.stop_ids())[0]
                               if t not in m.stop_ids()])
    with ServerThread(m, "chat-model") as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        r = c.chat.completions.create(model="chat-model", messages=msgs, max_tokens=12, temperature=0)
        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].message.content == want
        assert r.usage.prompt_tokens == len(ids)
        chunks = list(c.chat.completions.create(model="chat-model", messages=msgs, max_tokens=12, temperature=0,
                                                stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == want
        assert chunks[-1].choices[0].finish_reason in ("length", "stop")
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="chat-model", messages=[], max_tokens=3)


def test_concurrent_clients_are_batched(client, server, model):
    prompts = ["def fib(n):", "import os\n", "class Foo:\n    def", "for i in range(10):", "x = [",
               "def main():\n    print(", "return", "# add two numbers\ndef add(a, b):"]
    want = [_reference(model, p, 24) for p in prompts]
    before = (server.engine.stats.decode_steps, server.engine.stats.generated_tokens)
    server.engine.stats.max_batch_seen = 0
    got: list = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def one(i: int) -> None:
        barrier.wait()
        got[i] = client.completions.create(model=NAME, prompt=prompts[i], max_tokens=24, temperature=0).choices[0].text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
    steps = server.engine.stats.decode_steps - before[0]
    tokens = server.engine.stats.generated_tokens - before[1]
    assert tokens == 24 * len(prompts)
    assert server.engine.stats.max_batch_seen > 1
    assert steps < tokens - len(prompts)  # one decode step serves many requests
