"""Byte ranges of big uncompressed JSON Lines files, so that the workers share the reading of one file.

A file larger than ``corpus.split_file_bytes`` is cut into about equal byte ranges, each starting at a
line start (a cut moves forward to the next line break). The main process finds the cuts and counts
the lines before each one, once; every range then knows the number of its first line, so document
ids (``<source>/<file>:<line>``) and quarantine entries name the same lines as when the file is read
whole, and the ranges read one after the other give exactly the file's documents, in order (as
datatrove's readers split a file by byte offsets into shards). Compressed files are read whole: a
compressed stream cannot be entered in the middle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from hare.core.documents import Document
from hare.core.io import RecordError, _decode, _parse, compression
from hare.corpus.read import Quarantine, jsonl_documents
from hare.corpus.config import SourceConfig

_COUNT_CHUNK = 1 << 24  # bytes read at a time while counting the lines before a cut


class JsonlRange(SourceConfig):
    """One file of a jsonl source, from byte ``start`` (a line start, line ``first_line``) to ``end``."""

    start: int
    end: int
    first_line: int


def split_part(part: SourceConfig, max_bytes: int) -> list[SourceConfig]:
    """``part`` (one file of a source) as byte ranges of about ``max_bytes``, or ``[part]`` when it is
    not an uncompressed JSON Lines file larger than that (or ``max_bytes`` is 0)."""
    if not max_bytes or part.kind != "jsonl" or part.limit or compression(part.path):
        return [part]
    size = os.path.getsize(part.path)
    if size <= max_bytes:
        return [part]
    n = -(-size // max_bytes)
    cuts = [0]
    with open(part.path, "rb") as f:
        for k in range(1, n):
            pos = max(k * size // n, cuts[-1] + 1)
            f.seek(pos - 1)
            f.readline()  # to the end of the line that holds byte pos - 1: the next line starts here
            cut = f.tell()
            if cut >= size:
                break
            if cut > cuts[-1]:
                cuts.append(cut)
        cuts.append(size)
        first_lines = [1]
        f.seek(0)
        pos, newlines = 0, 0
        for cut in cuts[1:-1]:
            while pos < cut:
                chunk = f.read(min(_COUNT_CHUNK, cut - pos))
                newlines += chunk.count(b"\n")
                pos += len(chunk)
            first_lines.append(newlines + 1)
    fields = part.model_dump()
    out = [JsonlRange(**fields, start=a, end=b, first_line=line) for a, b, line in zip(cuts, cuts[1:], first_lines)]
    for r in out:
        r._id_root = part._id_root  # ids name the file below the source's folder, as when read whole
    return out


def range_lines(r: JsonlRange, max_line_bytes: int | None, on_error) -> Iterator[tuple[int, str, dict]]:
    """(line number, line, record) of the non-blank lines of a range, as ``hare.core.io.jsonl_lines``
    gives them for the whole file."""
    path = Path(r.path)
    with open(path, "rb") as f:
        f.seek(r.start)
        pos, lineno = r.start, r.first_line - 1
        while pos < r.end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            lineno += 1
            if not raw.strip():
                continue
            try:
                line = _decode(path, lineno, raw, max_line_bytes)
                yield lineno, line, _parse(path, lineno, line)
            except RecordError as err:
                on_error(err)


def read_range(r: JsonlRange, q: Quarantine, max_line_bytes: int = 50_000_000) -> Iterator[Document]:
    """The documents of one range; malformed lines go to ``q`` as when the file is read whole."""
    lines = range_lines(r, max_line_bytes, on_error=lambda e: q.add_error(r.name, e))
    return jsonl_documents(r, Path(r.path), lines, q)


def part_from_json(text: str) -> SourceConfig:
    """A part serialized with ``model_dump_json`` (a ``JsonlRange`` or a plain source), read back."""
    rng = JsonlRange.model_validate_json(text) if '"first_line"' in text else None
    return rng if rng is not None else SourceConfig.model_validate_json(text)
