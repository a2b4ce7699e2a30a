"""The persistent request cache: one JSON line per finished generation, appended as it arrives.

A request's key is the SHA-256 of everything that decides its answer: the model, the messages or
prompt, the sampling parameters and the seed (``Request.key``). Each answer is written and flushed
to the operating system the moment it comes back, so a process killed with ``kill -9`` loses
nothing it had received, and the next run sends only the requests whose keys are missing. An edited
template changes the prompts made from it, hence only their keys.

The file is append-only: a line cut short by a crash (the one being written when the process died)
is cut off when the cache is opened, so the next line starts cleanly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hare.core.io import cut_torn_tail

log = logging.getLogger("hare.synth.cache")


class RequestCache:
    """Answers by request key, read from and appended to one JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        if self.path.exists():
            self._load()
        self._f = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        if cut_torn_tail(self.path):  # the last line was being written when the process died
            self.torn_lines += 1
        raw = self.path.read_bytes()
        for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self.entries[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                self.torn_lines += 1
                log.warning("%s:%d: unreadable cache line skipped (the request will be sent again)", self.path, lineno)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, record: dict[str, Any]) -> None:
        """Append one answer (a dict with ``key``) and hand it to the OS before returning."""
        self._f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self._f.flush()
        self.entries[record["key"]] = record

    def sync(self) -> None:
        """fsync the file (at the end of a run: survives a power cut, not only a killed process)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()

    def __enter__(self) -> "RequestCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
