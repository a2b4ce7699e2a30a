"""Files: compressed text, the one table of record formats, JSON Lines and row readers, atomic
writes, fingerprints.

Every reader of records goes through ``jsonl_lines`` (JSON Lines; ``jsonl_records`` and
``read_jsonl`` are views of it) or ``read_rows`` (any record format); a malformed record raises
``RecordError``, whose message names the file and the line or row, or is handed to the caller's
``on_error`` (the corpus step quarantines it and goes on).
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)

COMPRESSIONS = (".gz", ".zst", ".bz2")
# Record file formats by suffix. Every format but Parquet (compressed inside) may also carry a
# compression suffix: .jsonl.zst, .txt.gz, .csv.bz2. ``.json`` files are JSON Lines to the corpus
# readers; ``read_rows`` also takes a JSON document holding a list of rows.
FORMATS: dict[str, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".json"),
    "parquet": (".parquet",),
    "csv": (".csv",),
    "text": (".txt",),
}


def compression(path: str | Path) -> str | None:
    name = str(path)
    for ext in COMPRESSIONS:
        if name.endswith(ext):
            return ext
    return None


def _uncompressed_name(path: str | Path) -> tuple[str, str | None]:
    """A file's name without its compression suffix, and that suffix."""
    name = Path(path).name
    comp = compression(name)
    return (name[: -len(comp)] if comp else name), comp


def file_format(path: str | Path) -> str | None:
    """The record format of a file from its name (``FORMATS``), or None for any other file."""
    name, comp = _uncompressed_name(path)
    for kind, suffixes in FORMATS.items():
        if name.endswith(suffixes) and not (comp and kind == "parquet"):
            return kind
    return None


def expand_paths(pattern: str | Path, formats: Iterable[str] = ()) -> list[Path]:
    """A file, the files of a folder (recursively, hidden ones skipped) in the given ``formats``
    (all files when none are given), or the files matching a glob pattern; sorted."""
    p = Path(pattern).expanduser()
    kinds = set(formats)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = [q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")]
        if kinds:
            files = [q for q in files if file_format(q) in kinds]
        return sorted(files)
    return sorted(Path(q) for q in glob.glob(str(p), recursive=True) if Path(q).is_file())


class _ZstdReader(io.RawIOBase):
    """A zstd stream decompressed on the fly that notices when it is cut short.

    ``zstandard``'s stream reader ends silently at the end of a truncated file; this one raises
    ``EOFError`` when the input ends inside a frame, as ``gzip`` and ``bz2`` do. Concatenated frames
    are read one after the other. Input is fed in small blocks so that memory stays bounded."""

    def __init__(self, path: str | Path, block: int = 1 << 14):
        import zstandard

        self._zstd = zstandard
        self._raw = open(path, "rb")
        self._block = block
        self._dec = zstandard.ZstdDecompressor().decompressobj()
        self._started = False  # the current frame has received input
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._out:
            data = self._dec.unused_data if self._dec.eof else b""
            if self._dec.eof:
                self._dec = self._zstd.ZstdDecompressor().decompressobj()
                self._started = False
            data = data or self._raw.read(self._block)
            if not data:
                if self._started and not self._dec.eof:
                    raise EOFError("zstd stream ended before the end of its frame (the file is truncated)")
                return 0
            self._started = True
            self._out = self._dec.decompress(data)
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_binary_read(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing .gz, .zst and .bz2 on the fly. A damaged or
    truncated compressed file raises one of ``DAMAGE_ERRORS`` when the damage is reached."""
    comp = compression(path)
    if comp == ".gz":
        return gzip.open(path, "rb")
    if comp == ".bz2":
        return bz2.open(path, "rb")
    if comp == ".zst":
        return io.BufferedReader(_ZstdReader(path), buffer_size=1 << 16)
    return open(path, "rb")


def _damage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, OSError, zlib.error]  # gzip.BadGzipFile is an OSError
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


# What reading a damaged or truncated (compressed) file raises.
DAMAGE_ERRORS = _damage_errors()


def damage_reason(err: BaseException, offset: int) -> str:
    """The quarantine reason of a file whose reading failed after ``offset`` good bytes."""
    return f"file damaged or truncated after byte {offset} of its content ({type(err).__name__}: {err})"


def open_text_read(path: str | Path) -> IO[str]:
    """Open a (possibly compressed) UTF-8 text file; undecodable bytes raise, callers quarantine them.
    A byte-order mark at the start is skipped (``utf-8-sig``)."""
    return io.TextIOWrapper(open_binary_read(path), encoding="utf-8-sig", newline="")


class DataError(ValueError):
    """Input that a command cannot use as a whole (a source with no documents, a file without the
    field it must have): the message names the file or source and what is wrong. The command line
    prints it as one line and exits with status 1."""


class RecordError(ValueError):
    """A malformed record: the message names the file, the line (or row) and what is wrong."""

    def __init__(self, path: str | Path, line: int | None, reason: str, raw: str | bytes = "",
                 message: str | None = None):
        self.path, self.line, self.reason, self.raw = str(path), line, reason, raw
        self.message = message
        super().__init__(message or (f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}"))

    def __reduce__(self):  # raised in worker processes: must survive pickling to the main process
        return RecordError, (self.path, self.line, self.reason, self.raw, self.message)


BOM = b"\xef\xbb\xbf"


def jsonl_lines(path: str | Path, max_line_bytes: int | None = None,
                on_error: Callable[[RecordError], None] | None = None) -> Iterator[tuple[int, str, dict]]:
    """(line number, line, record) of every non-blank line of a JSON Lines file, plain or compressed.

    A line that is too long, not UTF-8, not JSON or not a JSON object raises ``RecordError``, or,
    with ``on_error``, is passed to it and skipped (``raw`` holds the line, or its start). A UTF-8
    byte-order mark before the first line is skipped. Two kinds of damage end the file early, reported
    once as a ``RecordError`` on the line where they start: a damaged or truncated compressed file
    (the lines before the damage are kept; the reason gives the byte offset in the decompressed
    content), and a file that is one JSON document (a pretty-printed object or an array) rather than
    JSON Lines.
    """
    with open_binary_read(path) as f:
        lineno, offset, first = 0, 0, True
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except DAMAGE_ERRORS as e:
                err = RecordError(path, lineno + 1, damage_reason(e, offset))
                if on_error is None:
                    raise err from e
                on_error(err)
                return
            lineno += 1
            offset += len(raw)
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            try:
                line = _decode(path, lineno, raw, max_line_bytes)
                if first:
                    first = False
                    _check_json_lines(path, lineno, line)
                yield lineno, line, _parse(path, lineno, line)
            except RecordError as err:
                if on_error is None:
                    raise
                on_error(err)
                if err.reason.startswith(NOT_JSON_LINES):
                    return


NOT_JSON_LINES = "not JSON Lines"


def _check_json_lines(path, lineno: int, line: str) -> None:
    """Raise when the first line shows that the file is one JSON document, not one object per line:
    a line that opens an array, or a lone "{" (an object written over several lines). A first line
    that is merely broken is quarantined like any other."""
    head = line.strip()
    if head.startswith("[") or head == "{":
        kind = "a JSON array" if head.startswith("[") else "pretty-printed JSON"
        raise RecordError(path, lineno, f"{NOT_JSON_LINES}: the file is {kind} (JSON Lines holds one JSON "
                          "object per line); the file was not read further. Convert it, e.g. "
                          f"jq -c '.[]' {Path(path).name} > {Path(path).stem}.jsonl", line[:200])


def _decode(path, lineno: int, raw: bytes, max_line_bytes: int | None) -> str:
    if max_line_bytes is not None and len(raw) > max_line_bytes:
        raise RecordError(path, lineno, f"line longer than {max_line_bytes} bytes", raw[:200])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(path, lineno, f"invalid UTF-8 at byte {e.start}", raw) from None


def _parse(path, lineno: int, line: str) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError(path, lineno, f"bad JSON: {e.msg} at column {e.colno}", line) from None
    if not isinstance(rec, dict):
        raise RecordError(path, lineno, f"record is a JSON {type(rec).__name__}, not an object", line)
    return rec


def jsonl_records(path: str | Path, on_error: Callable[[RecordError], None] | None = None
                  ) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSON Lines file; see ``jsonl_lines``."""
    for lineno, _, rec in jsonl_lines(path, on_error=on_error):
        yield lineno, rec


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """The records of a JSON Lines file (hare's own files: a malformed line raises ``RecordError``)."""
    for _, _, rec in jsonl_lines(path):
        yield rec


def read_rows(path: str | Path) -> Iterator[dict]:
    """Rows of a JSON Lines, JSON (a list of rows, or {"data": [...]}), Parquet or CSV file.

    A file that cannot be read to its end (damaged, truncated, not UTF-8, not the format its name
    says) raises ``RecordError`` naming the file and the row reached."""
    path = Path(path)
    n = 0
    try:
        for row in _rows(path):
            n += 1
            yield row
    except RecordError:
        raise
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError, *DAMAGE_ERRORS, *_arrow_errors()) as e:
        raise RecordError(path, n + 1, f"cannot be read ({type(e).__name__}: {e})") from e


def _arrow_errors() -> tuple[type[BaseException], ...]:
    try:
        import pyarrow

        return (pyarrow.ArrowException,)
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return ()


def _rows(path: Path) -> Iterator[dict]:
    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
            yield from batch.to_pylist()
    elif kind == "csv":
        with open_text_read(path) as f:
            yield from csv.DictReader(f)
    elif _uncompressed_name(path)[0].endswith(".json"):
        with open_text_read(path) as f:
            text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # JSON Lines under a .json name
            yield from read_jsonl(path)
            return
        if isinstance(data, dict):  # {"data": [rows]}, or a single row
            data = data["data"] if isinstance(data.get("data"), list) else [data]
        for i, row in enumerate(data if isinstance(data, list) else [data]):
            if not isinstance(row, dict):
                raise RecordError(path, i + 1, f"row is a JSON {type(row).__name__}, not an object")
            yield row
    else:
        yield from read_jsonl(path)


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
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside ``folder`` (``.NAME.tmp``); if the block succeeds it replaces
    ``folder``, otherwise it is removed. A killed run leaves only that hidden folder, which the next
    call clears, never a half-written ``folder``."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files that ``atomic_path`` left under ``folder`` when its process was
    killed mid-write (no ``finally`` runs under SIGKILL); returns how many. They are never outputs,
    and a resumed step would otherwise leave them beside its real files."""
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing through a temp file renamed into place on success.

    Compression follows the extension (.gz, .zst, .bz2). Text modes use UTF-8.
    """
    text = "b" not in mode
    with atomic_path(path) as tmp:
        comp = compression(path)
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


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_open(path) as f:
        f.write(text)


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


def cut_torn_tail(path: str | Path) -> bool:
    """Cut off a last line without its newline (the line an append-only log was writing when its
    process died), so that the next record appended starts on a line of its own; True when one was
    cut. The logs that append one JSON line per finished item (the teacher's request cache, the
    audit's rewrite cache) open through this."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        pos, tail = size, b""
        while pos > 0 and b"\n" not in tail:  # read back from the end to the last newline
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
        end = pos + tail.rfind(b"\n") + 1  # 0 when the file holds no newline at all
        if end == size:
            return False
        f.truncate(end)
    return True


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


# Fingerprints: a file up to FULL_HASH_BYTES is hashed whole (benchmark files, recipes, tokenizers:
# small, and where one changed character matters); a larger one (raw corpus files) by its size, its
# modification time and SAMPLE_BLOCKS blocks of SAMPLE_BYTES spread over it, first and last
# included, so that deciding whether steps can be reused reads about 1 MB of it, not all of it.
FULL_HASH_BYTES = 8 << 20
SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 64 << 10


def sampled_digest(path: str | Path, size: int | None = None) -> str:
    """sha256 of ``SAMPLE_BLOCKS`` evenly spaced blocks of a file (the first and the last included)."""
    size = Path(path).stat().st_size if size is None else size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        last = max(0, size - SAMPLE_BYTES)
        for k in range(SAMPLE_BLOCKS):
            f.seek(last * k // (SAMPLE_BLOCKS - 1))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def file_fingerprint(path: str | Path) -> list:
    """[path, size, content hash] for a small file, [path, size, mtime in ns, sampled-block hash] for
    a large one: a change of size, time or any sampled block invalidates the steps that read it."""
    st = Path(path).stat()
    if st.st_size <= FULL_HASH_BYTES:
        return [str(path), st.st_size, sha256_file(path)]
    return [str(path), st.st_size, st.st_mtime_ns, sampled_digest(path, st.st_size)]


def fingerprint_path(path: str | Path) -> dict:
    """Fingerprint of an input file or folder (``file_fingerprint`` of each of its files)."""
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    entries = [file_fingerprint(q) for q in files]
    return {"path": str(p), "files": len(files), "hash": fingerprint_obj(entries)}
