"""A tiny hare base model (a BPE trained on real Dolly records, the tiny preset shrunk) and the Dolly
records themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import shared_or_skip


def dolly_path() -> Path:
    return shared_or_skip("dolly", "dolly-15k-head.jsonl")


@pytest.fixture(scope="session")
def dolly() -> Path:
    """840 human-written Dolly instruction/response records (CC BY-SA 3.0)."""
    return dolly_path()


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, dolly) -> Path:
    """A freshly initialised two-layer Mistral with a 512-token BPE, saved as a Hugging Face folder."""
    from hare.model.model import build_model, mistral_config
    from hare.train.pack import train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-base")
    recs = [json.loads(line) for line in dolly.read_text(encoding="utf-8").splitlines()]
    tok = train_tokenizer([f"{r['instruction']} {r['context']} {r['response']}" for r in recs], 512, folder)
    config = mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 512}, vocab_size=len(tok))
    build_model(config, seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory, tiny_base) -> Path:
    """The tiny base with the HARE template prepared (untrained: for protocol tests, not answers)."""
    import torch

    from hare.chat.sft import load_base
    from hare.chat.template import prepare

    folder = tmp_path_factory.mktemp("tiny-chat")
    model, tok = load_base(tiny_base)
    torch.manual_seed(0)
    prepare(tok, model, "hare")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(tiny_chat):
    """``hare serve``'s app for the tiny chat model on 127.0.0.1 (one per test session), with a hook
    recording every request body it passes to the engine."""
    import torch

    from hare.chat.serve import Limits, Server, build_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model decodes faster on one thread than on contended ones
    app = build_app(tiny_chat, Limits(max_tokens=16, max_body_bytes=64 << 10, max_messages=8), device="cpu")
    app.seen = []
    app.request_hooks.append(lambda path, body: app.seen.append((path, json_copy(body))))
    server = Server(app).start()
    yield server
    server.stop()
    torch.set_num_threads(threads)


def json_copy(obj):
    return json.loads(json.dumps(obj))


class ServeProcess:
    """A real ``hare serve`` command on 127.0.0.1 (any free port), its output collected."""

    def __init__(self, model: Path, *args: str, env: dict | None = None):
        import os
        import subprocess
        import sys

        from tests.conftest import ROOT

        self.log = Path(tempfile_dir()) / f"serve-{os.getpid()}-{id(self)}.log"
        self.out = open(self.log, "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hare", "serve", str(model), "--port", "0", "--device", "cpu", *args],
            cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT, text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                 **(env or {})})
        self.url = self._wait_for_url()

    def _wait_for_url(self, bound: float = 180) -> str:
        import re
        import time

        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            m = re.search(r" at (http://127\.0\.0\.1:\d+/v1) ", self.output())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"hare serve exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"hare serve did not start within {bound} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()
