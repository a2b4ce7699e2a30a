"""File helpers shared by every step: compressed text, atomic writes, JSON lines, fingerprints."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


def _compression(path: str | Path) -> str | None:
    name = str(path)
    for ext in (".gz", ".zst", ".bz2"):
        if name.endswith(ext):
            return ext
    return None


def open_binary_read(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing .gz, .zst and .bz2 on the fly."""
    comp = _compression(path)
    if comp == ".gz":
        return gzip.open(path, "rb")
    if comp == ".bz2":
        return bz2.open(path, "rb")
    if comp == ".zst":
        import zstandard

        raw = open(path, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")


def open_text_read(path: str | Path) -> IO[str]:
    """Open a (possibly compressed) UTF-8 text file; undecodable bytes raise, callers quarantine them."""
    return io.TextIOWrapper(open_binary_read(path), encoding="utf-8", newline="")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing through a temp file renamed into place on success.

    Compression follows the extension (.gz, .zst, .bz2). Text modes use UTF-8.
    """
    text = "b" not in mode
    with atomic_path(path) as tmp:
        comp = _compression(path)
        if comp == ".gz":
            raw: IO[bytes] = gzip.open(tmp, "wb", compresslevel=6)
        elif comp == ".bz2":
            raw = bz2.open(tmp, "wb")
        elif comp == ".zst":
            import zstandard

            raw = zstandard.ZstdCompressor(level=3).stream_writer(open(tmp, "wb"), closefd=True)
        else:
            raw = open(tmp, "wb")
        f: IO = io.TextIOWrapper(raw, encoding="utf-8", newline="\n") if text else raw
        try:
            yield f
        finally:
            f.close()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write records atomically as JSON lines; returns how many were written."""
    n = 0
    with atomic_open(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Read JSON lines written by hare (trusted input: errors propagate)."""
    with open_text_read(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_obj(obj: Any) -> str:
    """Stable short hash of a JSON-ready object."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint_path(path: str | Path, full_hash_limit: int = 64 << 20) -> dict:
    """Fingerprint of an input file or folder: content hash for small files, size + mtime for large.

    Large raw inputs are not re-read on every run; a changed size or modification time still
    invalidates the steps that read them.
    """
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    entries = []
    for q in files:
        st = q.stat()
        if st.st_size <= full_hash_limit:
            entries.append([str(q), st.st_size, sha256_file(q)])
        else:
            entries.append([str(q), st.st_size, int(st.st_mtime)])
    return {"path": str(p), "files": len(files), "hash": fingerprint_obj(entries)}
