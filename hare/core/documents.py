"""The one document type every step reads and writes, and its shard files (JSON Lines, zstd)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from hare.core.io import read_jsonl, write_jsonl

SHARD_EXT = ".jsonl.zst"


@dataclass(slots=True)
class Document:
    """A text with a stable id, the name of the source it came from, and free-form metadata."""

    text: str
    id: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id, "source": self.source, "text": self.text}
        if self.metadata:
            rec["metadata"] = self.metadata
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Document":
        return cls(rec["text"], rec["id"], rec.get("source", ""), rec.get("metadata") or {})


def shard_name(index: int, prefix: str = "shard") -> str:
    return f"{prefix}-{index:05d}{SHARD_EXT}"


class ShardWriter:
    """Writes documents into numbered shards of at most ``shard_docs`` each, every shard atomically."""

    def __init__(self, folder: str | Path, shard_docs: int = 2000, prefix: str = "shard"):
        self.folder = Path(folder)
        self.shard_docs = shard_docs
        self.prefix = prefix
        self.paths: list[Path] = []
        self._buf: list[dict] = []
        self.docs = 0
        self.chars = 0

    def write(self, doc: Document | dict) -> None:
        rec = doc.to_record() if isinstance(doc, Document) else doc
        self._buf.append(rec)
        self.docs += 1
        self.chars += len(rec.get("text", ""))
        if len(self._buf) >= self.shard_docs:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        path = self.folder / shard_name(len(self.paths), self.prefix)
        write_jsonl(path, self._buf)
        self.paths.append(path)
        self._buf = []

    def close(self) -> list[Path]:
        self._flush()
        return self.paths

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()


def write_shards(docs: Iterable[Document], folder: str | Path, shard_docs: int = 2000,
                 prefix: str = "shard") -> list[Path]:
    with ShardWriter(folder, shard_docs, prefix) as w:
        for d in docs:
            w.write(d)
    return w.paths


def shard_paths(folder: str | Path, prefix: str = "shard") -> list[Path]:
    """Shards in ``folder`` and its subfolders (one per data part), in path order."""
    return sorted(Path(folder).rglob(f"{prefix}-*{SHARD_EXT}"))


def read_shards(folder: str | Path, prefix: str = "shard") -> Iterator[Document]:
    """Documents of every shard in ``folder``, in shard order."""
    for p in shard_paths(folder, prefix):
        for rec in read_jsonl(p):
            yield Document.from_record(rec)
