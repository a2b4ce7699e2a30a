"""A real OpenAI-compatible server (``transformers serve``) on 127.0.0.1 serving a real model folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from hare.synth._http import httpx
import pytest

from hare.synth.teacher import tiny_teacher

SERVE = Path(sys.executable).with_name("transformers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``transformers serve MODEL`` in a child process; its access log counts the requests it received."""

    def __init__(self, model: Path, log: Path, extra: list[str] | None = None):
        self.model = str(model)
        self.port = free_port()
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([str(SERVE), "serve", self.model, "--host", "127.0.0.1", "--port",
                                      str(self.port), "--device", "cpu", "--log-level", "info", *(extra or [])],
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.close()  # no server left behind by a test that could not use it
        raise RuntimeError(f"transformers serve did not start: {log.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def received(self) -> int:
        """Generation requests the server has answered so far (its uvicorn access log)."""
        text = self.log.read_text(errors="replace")
        return text.count("POST /v1/chat/completions HTTP/1.1\" 200") + \
            text.count("POST /v1/completions HTTP/1.1\" 200")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def tiny(smollm2, tmp_path_factory) -> Path:
    """A two-layer random-weight Llama with SmolLM2's tokenizer and chat template."""
    return tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny", tokenizer_from=smollm2)


@pytest.fixture(scope="session")
def tiny_server(tiny, tmp_path_factory):
    s = Server(tiny, tmp_path_factory.mktemp("serve") / "server.log")
    yield s
    s.close()
