"""``allow_hub: true`` really lifts the offline guard for its source, and only for it: shown against a
hub endpoint served on 127.0.0.1 that records the requests it gets (no network needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import ROOT

SCRIPT = """
import sys
from hare.core.hub import hub_offline
from hare.corpus.read import Quarantine, read_source
from hare.corpus.config import SourceConfig

print("OFFLINE-BEFORE", hub_offline())
for name, allow in (("org/read-offline", False), ("org/read-online", True)):
    try:
        list(read_source(SourceConfig(name="h", kind="hf", path=name, allow_hub=allow), Quarantine()))
    except ValueError as e:
        print("ERROR", " ".join(str(e).split())[:300])
    print("OFFLINE-AFTER", hub_offline())
"""


class _Recorder(BaseHTTPRequestHandler):
    paths: list[str] = []

    def _reply(self) -> None:
        _Recorder.paths.append(self.path)
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _reply

    def log_message(self, *args) -> None:
        pass


def _run(tmp_path, port: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"), NO_PROXY="127.0.0.1",
               no_proxy="127.0.0.1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_allow_hub_reaches_the_hub_and_the_guard_comes_back(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        _Recorder.paths.clear()
        out = _run(tmp_path, port).splitlines()
        assert out[0] == "OFFLINE-BEFORE True"
        # without allow_hub: not a single request, and the error says how to allow the hub
        assert not any("read-offline" in p for p in _Recorder.paths), _Recorder.paths
        assert "set allow_hub: true to download" in out[1] and out[2] == "OFFLINE-AFTER True"
        # with it: the hub is asked for the dataset, and the guard is back once the source is read
        assert any("org/read-online" in p for p in _Recorder.paths), _Recorder.paths
        assert out[3].startswith("ERROR source h: cannot load dataset 'org/read-online':") and "offline" not in out[3]
        assert out[4] == "OFFLINE-AFTER True"
    finally:
        server.shutdown()
        server.server_close()
