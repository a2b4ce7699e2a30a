"""``hare serve`` through the official openai client, against a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx2
import openai
import pytest

from hare.chat.serve import Guard, Server


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=120)


def model_of(served) -> str:
    return served.app.model


def test_models_completions_chat_and_streaming(served, client):
    name = model_of(served)
    assert [m.id for m in client.models.list().data] == [name]
    r = client.completions.create(model=name, prompt="The capital of France is", max_tokens=4)
    assert r.object == "text_completion" and r.usage.completion_tokens >= 1 and r.usage.prompt_tokens >= 1
    r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert r.choices[0].message.role == "assistant" and r.usage.total_tokens == \
        r.usage.prompt_tokens + r.usage.completion_tokens
    # the prompt is the HARE template, default system prompt included
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    want = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                   return_dict=True)["input_ids"]
    assert r.usage.prompt_tokens == len(want)
    chunks = list(client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=4, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    last = [c for c in chunks if c.choices][-1]  # transformers 5.25 on sends the usage in a chunk of its own
    assert last.choices[0].finish_reason in ("length", "stop") and isinstance(text, str)


def raw(served, body: bytes | str, path: str = "/chat/completions", headers: dict | None = None):
    return httpx2.post(served.url + path, content=body, timeout=60,
                       headers={"content-type": "application/json", **(headers or {})})


def test_malformed_requests_get_a_4xx_json_error_and_the_server_goes_on(served, client):
    name = model_of(served)
    ok = {"role": "user", "content": "x"}
    cases = [
        (b'{"model": "x", "messages": [', 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ('{"messages": "hello"}', 400, "'messages' must be a non-empty list"),
        ('{"messages": [{"role": "user", "content": 5}]}', 400, "content must be a string"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', 400, "role must be one of"),
        ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}', 400, "must be an integer"),
        ('{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "must be a number"),
        ('{"messages": [{"role": "user", "content": "x"}], "generation_config": "{}"}', 400, "unsupported fields"),
        ('{"messages": [' + ", ".join(['{"role": "user", "content": "x"}'] * 9) + "]}", 400, "at most 8"),
        (b'{"messages": [{"role": "user", "content": "' + b"a" * (70 << 10) + b'"}]}', 413, "bytes"),
        ('{"prompt": 3}', 400, "'prompt' must be a string"),
    ]
    for body, status, message in cases:
        path = "/completions" if "prompt" in str(body) else "/chat/completions"
        r = raw(served, body, path)
        assert r.status_code == status, (body[:80], r.text)
        assert message in r.json()["error"]["message"], r.text
    with pytest.raises(openai.BadRequestError, match="cap"):
        client.chat.completions.create(model=name, messages=[ok], max_tokens=17)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[ok], max_tokens=2)
    assert raw(served, b"{}", "/../load_model").status_code == 404
    assert httpx2.post(served.url.removesuffix("/v1") + "/load_model", json={"model": "gpt2"}).status_code == 404
    assert httpx2.get(served.url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    r = client.chat.completions.create(model=name, messages=[ok], max_tokens=2)  # still serving
    assert r.usage.completion_tokens >= 1


def test_api_key(served):
    guard = Guard(served.app.app, served.app.model, served.app.limits, api_key="s3cret")
    server = Server(guard).start()
    try:
        body = {"model": served.app.model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).chat.completions.create(**body)
        r = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0).chat.completions.create(**body)
        assert r.usage.completion_tokens == 1
    finally:
        server.server.should_exit = True
        server.thread.join(timeout=10)


def test_64_concurrent_requests_all_complete(served, capsys):
    name = model_of(served)

    async def run():
        c = openai.AsyncOpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=300)

        async def one(i):
            t = time.perf_counter()
            r = await c.chat.completions.create(model=name, max_tokens=2,
                                                messages=[{"role": "user", "content": f"Question number {i}?"}])
            return time.perf_counter() - t, r

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(64)))
        return time.perf_counter() - t0, out

    wall, out = asyncio.run(run())
    assert len(out) == 64 and all(r.usage.completion_tokens >= 1 for _, r in out)
    lat = sorted(t for t, _ in out)
    p50, p95 = statistics.median(lat), lat[int(0.95 * len(lat)) - 1]
    with capsys.disabled():
        print(f"\n64 concurrent chat requests (2 tokens each): wall {wall:.2f}s, p50 {p50:.2f}s, p95 {p95:.2f}s")


@pytest.mark.slow
def test_a_real_chat_model_answers_and_stops_at_its_end_of_turn(smollm2):
    """SmolLM2-135M-Instruct with its own (ChatML) template: the answer is right and ends on <|im_end|>."""
    import torch

    from hare.chat.serve import build_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    server = Server(build_app(smollm2, device="cpu")).start()
    try:
        c = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)
        r = c.chat.completions.create(model=str(smollm2), max_tokens=24, temperature=0,
                                      messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 24
        assert "<|im_end|>" not in r.choices[0].message.content
    finally:
        server.stop()
        torch.set_num_threads(threads)
