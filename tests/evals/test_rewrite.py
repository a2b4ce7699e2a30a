import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from hare.core.evalsets import Item, load_benchmark
from hare.evals.rewrite import ChatRewriter, DeterministicRewriter


def test_deterministic_rewriter_changes_surface_keeps_answer(shared_data):
    rw = DeterministicRewriter(seed=1)
    items = [it for it in load_benchmark("arc_challenge", shared_data) if it.split == "test"][:50]
    twins = [rw.rewrite(it) for it in items]
    assert twins == [rw.rewrite(it) for it in items]  # deterministic
    assert sum(t.question != it.question for t, it in zip(twins, items)) >= 35
    assert sum([c.lower() for c in t.choices] != [c.lower() for c in it.choices] for t, it in zip(twins, items)) >= 30
    # with synonyms off, options are only reordered: the right answer is still the right answer
    plain = DeterministicRewriter(seed=1, synonym_rate=0.0)
    for it in items:
        if not any(ch.isdigit() for ch in " ".join(it.choices)):
            t = plain.rewrite(it)
            assert t.answer_text == it.answer_text and sorted(t.choices) == sorted(it.choices)


def test_numbers_sentences_and_synonyms():
    rw = DeterministicRewriter(seed=0, synonym_rate=1.0)
    it = Item("gsm8k", "test", "1", "Tom has 3 big apples. He buys 12 more at the shop. How many apples does he have now?",
              [], "Tom has 15 apples.")
    t = rw.rewrite(it)
    assert "three" in t.question and "twelve" in t.question and "large" in t.question and "store" in t.question
    assert t.question.endswith("How many apples does he have now?")  # the asking sentence stays last
    assert t.question != it.question
    assert t.answer == "Tom has fifteen apples."


class _Paraphraser(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # an OpenAI-compatible /v1/chat/completions answering with a reversed word order
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["messages"][0]["role"] == "system"
        type(self).calls += 1
        text = " ".join(reversed(body["messages"][1]["content"].split()))
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Paraphraser)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_chat_rewriter_uses_the_endpoint_once_per_text(endpoint, tmp_path):
    _Paraphraser.calls = 0
    it = Item("gsm8k", "test", "1", "one two three", [], "four five")
    rw = ChatRewriter(endpoint, "paraphraser", tmp_path / "cache.jsonl")
    t = rw.rewrite(it)
    assert t.question == "three two one" and t.answer == "five four" and _Paraphraser.calls == 2
    again = ChatRewriter(endpoint, "paraphraser", tmp_path / "cache.jsonl").rewrite(it)
    assert again.question == "three two one" and _Paraphraser.calls == 2  # served from the cache file
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 2


def test_chat_rewriter_names_the_endpoint_on_failure(tmp_path):
    rw = ChatRewriter("http://127.0.0.1:9/v1", "m", tmp_path / "c.jsonl", timeout=2)
    with pytest.raises(RuntimeError, match="127.0.0.1:9/v1/chat/completions"):
        rw.text("hello")


def test_a_torn_last_line_of_the_rewrite_cache_is_cut_off(endpoint, tmp_path):
    """An audit killed while writing a paraphrase leaves half a line; the next run cuts it off, so the
    record it appends stands on its own line and is read back by the run after."""
    _Paraphraser.calls = 0
    cache = tmp_path / "cache.jsonl"
    ChatRewriter(endpoint, "paraphraser", cache).text("one two three")
    with open(cache, "a", encoding="utf-8") as f:
        f.write('{"key": "cut short by a kill", "te')
    assert ChatRewriter(endpoint, "paraphraser", cache).text("four five") == "five four"
    assert _Paraphraser.calls == 2 and all(json.loads(line) for line in cache.read_text().splitlines())
    again = ChatRewriter(endpoint, "paraphraser", cache)
    assert again.text("four five") == "five four" and again.text("one two three") == "three two one"
    assert _Paraphraser.calls == 2  # both from the cache


def test_cut_torn_tail(tmp_path):
    from hare.core.io import cut_torn_tail

    p = tmp_path / "log.jsonl"
    assert not cut_torn_tail(p)  # no file
    p.write_bytes(b"")
    assert not cut_torn_tail(p)
    p.write_bytes(b'{"a": 1}\n')
    assert not cut_torn_tail(p) and p.read_bytes() == b'{"a": 1}\n'
    p.write_bytes(b'{"a": 1}\n' + b"x" * 200_000)  # a torn line longer than one read back
    assert cut_torn_tail(p) and p.read_bytes() == b'{"a": 1}\n'
    p.write_bytes(b'{"a": ')
    assert cut_torn_tail(p) and p.read_bytes() == b""
