"""The generation client against a real server: answers, cache, kill -9 and resume, faults and retries."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hare.synth._http import httpx
import pytest

from hare.synth.cache import RequestCache
from hare.synth.client import HttpBackend, LocalBackend, Request, generate
from tests.conftest import ROOT


def requests(model: str, n: int, tokens: int = 12) -> list[Request]:
    return [Request.chat(model, [("user", f"Write one sentence about the number {i}.")], max_tokens=tokens,
                         temperature=0.0, seed=i) for i in range(n)]


def test_http_client_generates_counts_tokens_and_rerun_sends_nothing(tiny_server, tmp_path):
    reqs = requests(tiny_server.model, 8)
    before = tiny_server.received()
    with RequestCache(tmp_path / "c.jsonl") as cache:
        res, usage = generate(reqs, HttpBackend([tiny_server.url], concurrency=4), cache)
    assert tiny_server.received() - before == 8
    assert all(r.ok and r.text and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in res)
    assert usage.sent == 8 and usage.cached == 0 and usage.completion_tokens == sum(r.completion_tokens for r in res)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        again, usage2 = generate(reqs, HttpBackend([tiny_server.url]), cache)
    assert tiny_server.received() - before == 8  # every answer from the cache
    assert [r.text for r in again] == [r.text for r in res] and usage2.cached == 8 and usage2.sent == 0
    # A changed prompt (an edited template) misses the cache only for itself.
    changed = reqs[:7] + [Request.chat(tiny_server.model, [("user", "Something else.")], max_tokens=12)]
    with RequestCache(tmp_path / "c.jsonl") as cache:
        _, usage3 = generate(changed, lambda: HttpBackend([tiny_server.url]), cache)
    assert usage3.sent == 1 and tiny_server.received() - before == 9


CHILD = """
import sys
from hare.synth.cache import RequestCache
from hare.synth.client import HttpBackend, Request, generate
url, model, path = sys.argv[1:4]
reqs = [Request.chat(model, [("user", f"Tell me about item {i}.")], max_tokens=16, temperature=0.0) for i in range(30)]
with RequestCache(path) as cache:
    generate(reqs, HttpBackend([url], concurrency=1), cache)
"""


def test_kill_9_midway_then_rerun_sends_only_the_missing_requests(tiny_server, tmp_path):
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, tiny_server.url, tiny_server.model, str(path)], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 10):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = RequestCache(path)
    done = len(kept)
    kept.close()
    assert 10 <= done < 30
    reqs = [Request.chat(tiny_server.model, [("user", f"Tell me about item {i}.")], max_tokens=16, temperature=0.0)
            for i in range(30)]
    before = tiny_server.received()
    with RequestCache(path) as cache:
        resumed, usage = generate(reqs, HttpBackend([tiny_server.url], concurrency=4), cache)
    assert tiny_server.received() - before == 30 - done == usage.sent
    with RequestCache(tmp_path / "whole.jsonl") as cache:
        whole, _ = generate(reqs, HttpBackend([tiny_server.url], concurrency=4), cache)
    assert [r.text for r in resumed] == [r.text for r in whole]


class FaultProxy(BaseHTTPRequestHandler):
    """In front of the real server: answers by the last word of the prompt (fault:429, fault:500,
    fault:slow, fault:400) on the first attempts, then passes the request through."""

    upstream = ""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        prompt = json.loads(body)["messages"][-1]["content"]
        fault = prompt.rsplit(" ", 1)[-1] if "fault:" in prompt else ""
        with self.lock:
            n = self.seen[prompt] = self.seen.get(prompt, 0) + 1
        if fault == "fault:429" and n <= 2:
            return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
        if fault == "fault:500" and n <= 1:
            return self._send(500, b'{"error": "boom"}')
        if fault == "fault:400":
            return self._send(400, b'{"error": "bad request"}')
        if fault == "fault:slow" and n <= 1:
            time.sleep(1.5)  # past the client's timeout
        r = httpx.post(self.upstream + self.path[len("/v1"):], content=body,
                       headers={"content-type": "application/json"}, timeout=60)
        self._send(r.status_code, r.content)

    def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) first


def test_faults_are_retried_or_skipped_and_counted(tiny_server, tmp_path):
    FaultProxy.upstream = tiny_server.url
    FaultProxy.seen = {}
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), FaultProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
    reqs = [Request.chat(tiny_server.model, [("user", f"Say hello fault:{f}")], max_tokens=8)
            for f in ("429", "500", "slow", "400", "none")]
    backend = HttpBackend([url], concurrency=2, timeout=0.8, max_retries=3, backoff_base=0.01)
    try:
        with RequestCache(tmp_path / "c.jsonl") as cache:
            res, usage = generate(reqs, backend, cache)
    finally:
        proxy.shutdown()
    ok = {r.text is not None and r.ok for r in res}
    assert [r.ok for r in res] == [True, True, True, False, True], ok
    assert [r.attempts for r in res] == [3, 2, 2, 1, 1]
    assert usage.retries == 4 and usage.failed == 1 and usage.errors == {"http_400": 1}
    assert res[3].error.startswith("http_400")
    assert FaultProxy.seen[reqs[3].messages[-1][1]] == 1  # a 400 is never sent twice
    with RequestCache(tmp_path / "c.jsonl") as cache:
        assert len(cache) == 4  # failed requests are not cached: a later run tries them again


def test_unreachable_endpoint_is_retried_then_recorded_as_failed(tmp_path):
    from tests.synth.conftest import free_port

    backend = HttpBackend([f"http://127.0.0.1:{free_port()}/v1"], max_retries=2, backoff_base=0.01)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        res, usage = generate(requests("m", 2), backend, cache)
    assert not any(r.ok for r in res) and usage.retries == 4 and res[0].error.startswith("gave_up_connection")


def test_usage_adds_merges_and_reads_back_what_it_wrote():
    from hare.synth.client import Result, Usage

    a, b = Usage(), Usage()
    a.add(Result("k1", ok=True, prompt_tokens=5, completion_tokens=7, attempts=3))
    a.add(Result("k2", ok=True, completion_tokens=4, cached=True))
    b.add(Result("k3", ok=False, error="http_400: bad request"))
    b.add(Result("k4", ok=False, error="gave_up_timeout: ReadTimeout", attempts=4))
    a.seconds, b.seconds = 0.004, 2.5
    a.merge(b)
    assert (a.requests, a.cached, a.sent, a.ok, a.failed, a.retries) == (4, 1, 3, 2, 2, 5)
    assert (a.prompt_tokens, a.completion_tokens, a.errors) == (5, 11, {"http_400": 1, "gave_up_timeout": 1})
    out = a.model_dump(mode="json")
    assert out["seconds"] == 2.5 and out["completion_tokens_per_s"] == 4.4
    assert Usage.model_validate(out).model_dump(mode="json") == out  # stats.json read back: the same numbers
    assert Usage().errors == {} and Usage().completion_tokens_per_s == 0.0  # no shared mutable default


def test_local_backend_answers_like_the_server_and_shares_the_cache(tiny, tiny_server, tmp_path):
    reqs = requests(str(tiny), 5)
    with RequestCache(tmp_path / "local.jsonl") as cache:
        local, usage = generate(reqs, LocalBackend(tiny, batch_size=4), cache)
    assert usage.sent == 5 and all(r.ok and r.completion_tokens > 0 for r in local)
    with RequestCache(tmp_path / "http.jsonl") as cache:
        served, _ = generate(reqs, HttpBackend([tiny_server.url]), cache)
    # Greedy decoding of the same weights and chat template: the same text, batched or served.
    assert [r.text for r in local] == [r.text for r in served]


def test_penalties_reach_the_server_and_key_the_cache(tiny_server, tmp_path):
    plain = requests(tiny_server.model, 2)
    reqs = [dataclasses.replace(r, frequency_penalty=0.5, presence_penalty=0.2) for r in plain]
    assert reqs[0].body()["frequency_penalty"] == 0.5 and reqs[0].key() != plain[0].key()
    with RequestCache(tmp_path / "http.jsonl") as cache:
        served, usage = generate(reqs, HttpBackend([tiny_server.url]), cache)
    assert usage.sent == 2 and all(r.ok and r.completion_tokens > 0 for r in served)  # accepted, answered


def test_a_sampled_answer_does_not_depend_on_its_batch(tiny, tmp_path):
    """At D2's temperature: four requests in one batch, then only the last two (what a re-run after
    kill -9 sends), then one at a time: the same texts every way (tests/synth/test_resume.py does it
    with the packaged teacher through the steps)."""
    backend = LocalBackend(tiny, batch_size=4)
    reqs = [Request.chat(str(tiny), [("user", f"Write one sentence about {w}.")], max_tokens=12,
                         temperature=0.8, top_p=0.95, seed=s)
            for s, w in enumerate(["rivers", "tea", "clocks", "maps"])]
    with RequestCache(tmp_path / "all.jsonl") as cache:
        together, _ = generate(reqs, backend, cache)
    with RequestCache(tmp_path / "rest.jsonl") as cache:
        rest, _ = generate(reqs[2:], backend, cache)
    backend.batch_size = 1
    with RequestCache(tmp_path / "one.jsonl") as cache:
        alone, _ = generate(reqs, backend, cache)
    assert [r.text for r in rest] == [r.text for r in together[2:]]
    assert [r.text for r in alone] == [r.text for r in together]
    assert len({r.text for r in together}) == 4 and all(r.completion_tokens > 3 for r in together)
    # sampled, not greedy: another seed gives another text
    other = [Request.chat(str(tiny), [("user", "Write one sentence about rivers.")], max_tokens=12,
                          temperature=0.8, top_p=0.95, seed=s) for s in range(100, 104)]
    with RequestCache(tmp_path / "other.jsonl") as cache:
        texts = {r.text for r in generate(other, backend, cache)[0]} | {together[0].text}
    assert len(texts) > 1


def test_a_torn_last_line_is_cut_off(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"key": "a", "text": "x"}) + "\n" + '{"key": "b", "te')
    cache = RequestCache(path)
    assert "a" in cache and "b" not in cache and cache.torn_lines == 1
    cache.put({"key": "c", "text": "y"})
    cache.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "c"]


@pytest.mark.slow
def test_the_packaged_smollm2_teacher_writes_prose_over_http(smollm2, tmp_path):
    """The real teacher behind a real server: a D2 prompt from the packaged templates gets English prose."""
    from hare.synth.prompts import Templates
    from tests.synth.conftest import Server

    t = Templates()
    spec = t.yaml("d2/categories.yaml")["law"]
    prompt = t.render("d2/law.textbook_unit.txt", subject=spec["subject"], note="",
                      topic="contracts, offer, acceptance", audience=t.yaml("d2/audiences.yaml")["college"],
                      seed="A contract is formed when an offer is accepted and consideration is given.")
    server = Server(smollm2, tmp_path / "server.log")
    try:
        req = Request.chat(server.model, [("user", prompt)], max_tokens=40, temperature=0.0)
        with RequestCache(tmp_path / "c.jsonl") as cache:
            (res,), usage = generate([req], HttpBackend([server.url]), cache)
        assert server.received() == 1
    finally:
        server.close()
    words = res.text.split()
    assert res.ok and usage.completion_tokens > 20 and len(words) > 15
    common = {"the", "a", "of", "to", "and", "is", "in", "that", "an", "be", "or", "by", "for"}
    assert sum(w.lower() in common for w in words) >= 3  # English prose, not token salad
