"""A real ``hare serve`` keeps its promises: every malformed request gets a 4xx in OpenAI's error shape
(never a 500, never a way around a bound), the API key is checked as a key, a model without a chat
template says so, and the server goes on answering."""

from __future__ import annotations

import httpx2
import pytest

from hare.chat.serve import SseEditor, template_variables
from tests.chat.conftest import ServeProcess

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def chat_server(tiny_chat):
    server = ServeProcess(tiny_chat, "--max-tokens", "8", "--max-prompt-tokens", "60",
                          env={"HARE_API_KEY": KEY})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base_server(tiny_base):
    server = ServeProcess(tiny_base, "--max-tokens", "4")
    yield server
    server.stop()


def post(server, path: str, body, key: str | None = KEY, scheme: str = "Bearer"):
    headers = {"authorization": f"{scheme} {key}"} if key else {}
    return httpx2.post(server.url + path, json=body, headers=headers, timeout=60)


def hi(**extra) -> dict:
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}


def assert_error(r, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"} and message in err["message"], err


def test_malformed_requests_to_a_real_hare_serve(chat_server):
    cases = [
        # a client's own template would lift the prompt bound (and could block the event loop)
        (hi(chat_template_kwargs={"chat_template": "{{ 'the ' * 500 }}"}), 400,
         "'chat_template' is not a variable of this model's chat template"),
        # an argument the engine passes itself (a TypeError inside it: a 500 before)
        (hi(chat_template_kwargs={"tokenize": False}), 400, "'tokenize' is not a variable"),
        (hi(chat_template_kwargs=["x"]), 400, "'chat_template_kwargs' must be an object"),
        (hi(seed="abc"), 400, "'seed' must be an integer"),
        (hi(seed=1.5), 400, "'seed' must be an integer"),
        (hi(seed=1 << 70), 400, "'seed' must be an integer"),
        # under the character bound, over the token bound once the template is rendered
        ({"messages": [{"role": "user", "content": "Tokens, tokens: " + "x y z " * 30}], "max_tokens": 2}, 413,
         "tokens; this server takes at most 60"),
    ]
    for body, status, message in cases:
        assert_error(post(chat_server, "/chat/completions", body), status, message)
        ok = post(chat_server, "/chat/completions", hi())  # still serving
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1, ok.text
    assert_error(post(chat_server, "/completions", {"prompt": "x y z " * 40, "max_tokens": 2}), 413,
                 "tokens; this server takes at most 60")
    assert post(chat_server, "/chat/completions", hi(seed=7)).status_code == 200
    assert "Traceback" not in chat_server.output() and "Internal Server Error" not in chat_server.output()


def test_the_api_key_is_a_bearer_token_in_any_case(chat_server):
    assert post(chat_server, "/chat/completions", hi(), scheme="bearer").status_code == 200
    assert post(chat_server, "/chat/completions", hi(), scheme="BEARER").status_code == 200
    for key, scheme in ((KEY + "x", "Bearer"), (KEY[:-1], "Bearer"), (None, "Bearer"), (KEY, "Basic")):
        assert_error(post(chat_server, "/chat/completions", hi(), key=key, scheme=scheme), 401, "a valid API key")
    assert httpx2.get(chat_server.url.removesuffix("/v1") + "/health").status_code == 200


def test_a_model_without_a_chat_template_says_which_route_serves_it(base_server):
    assert "has no chat template" in base_server.output()  # at start-up
    r = post(base_server, "/chat/completions", hi(), key=None)
    assert_error(r, 400, "has no chat template")
    assert "/v1/completions serves it" in r.json()["error"]["message"] and "--chat-template" in r.json()["error"]["message"]
    r = post(base_server, "/completions", {"prompt": "The river", "max_tokens": 2}, key=None)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    assert "Traceback" not in base_server.output()


def test_chat_template_gives_a_base_model_one(tiny_base):
    server = ServeProcess(tiny_base, "--max-tokens", "2", "--chat-template", "chatml")
    try:
        assert "has no chat template" not in server.output()
        r = post(server, "/chat/completions", hi(), key=None)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        server.stop()


def test_template_variables_a_request_may_set():
    template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}{% if enable_thinking %}<think>{% endif %}"
                "{{ bos_token }}{% if add_generation_prompt %}A:{% endif %}{% generation %}{% endgeneration %}")
    assert template_variables(template) == {"enable_thinking"}
    assert template_variables(None) == frozenset()


def test_sse_editor_holds_events_split_across_messages():
    seen = []

    def edit(chunk):
        seen.append(chunk["choices"][0]["delta"].get("content"))
        return [chunk, chunk]

    ed = SseEditor([edit])
    first = ed.feed(b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {"choi', final=False)
    assert first.count(b"data: ") == 2 and seen == ["a"]
    rest = ed.feed(b'ces": [{"delta": {"content": "b"}}]}\n\ndata: {"error": "x"}\n\n', final=True)
    assert seen == ["a", "b"] and rest.count(b'"b"') == 2 and rest.endswith(b'data: {"error": "x"}\n\n')


def _children(pid: int) -> set[int]:
    import os

    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat", encoding="ascii").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(p))
    return out


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_hare_serve_leaves_no_process_behind(tiny_base):
    """transformers 5.25 on runs the model in a process of its own: a ``kill -9`` of the server takes it too."""
    import signal
    import time

    server = ServeProcess(tiny_base, "--max-tokens", "2")
    try:
        assert httpx2.post(server.url + "/completions", json={"prompt": "hi", "max_tokens": 1}, timeout=60).is_success
        children = _children(server.proc.pid)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=20)
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], server.output()
    finally:
        server.stop()
