"""Readers: turn one recipe source into a stream of Documents, quarantining malformed records.

Every reader yields ``Document`` objects and reports malformed input through a ``Quarantine``
(file, line, field, reason) instead of raising or dropping it, so that for every source
read = yielded + quarantined.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import re
import sys
from pathlib import Path
from typing import Iterator

from hare.core.documents import Document
from hare.core.io import (DAMAGE_ERRORS, FORMATS, DataError, RecordError, atomic_open, expand_paths, jsonl_lines, open_binary_read)
from hare.corpus import pydoc_render
from hare.corpus.config import SourceConfig

log = logging.getLogger("hare.corpus.read")


class Quarantine:
    """Collects malformed records with where they came from and why.

    With ``path``, the records are streamed to that JSON Lines file (written atomically by
    ``close``) and only their counts are kept in memory; without, they are kept in ``records``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict] = []
        self.counts: dict[str, int] = {}
        self._file = contextlib.ExitStack()
        self._out = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, source: str, file: str, line: int | None, reason: str, raw: str | bytes = "") -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        rec = {"source": source, "file": file, "line": line, "reason": reason, "raw": raw[:2000]}
        if self.path is None:
            self.records.append(rec)
        else:
            if self._out is None:
                self._out = self._file.enter_context(atomic_open(self.path))
            self._out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.counts[source] = self.counts.get(source, 0) + 1
        log.warning("quarantined %s:%s (%s)", file, line, reason)

    def add_error(self, source: str, err: RecordError) -> None:
        self.add(source, err.path, err.line, err.reason, err.raw)

    def close(self) -> None:
        """Put the streamed file in place (an empty one when nothing was quarantined)."""
        if self.path is not None and self._out is None:
            self._out = self._file.enter_context(atomic_open(self.path))
        self._file.close()


# Source kinds that read files; each is also the name of its record format (``hare.core.io.FORMATS``).
FILE_KINDS = ("jsonl", "parquet", "text")


def read_jsonl_source(src: SourceConfig, q: Quarantine, max_line_bytes: int = 50_000_000) -> Iterator[Document]:
    """JSON lines, one document per line; bad lines go to quarantine with file, line and reason."""
    for path in expand_paths(src.path, ["jsonl"]):
        yield from jsonl_documents(src, path, jsonl_lines(path, max_line_bytes,
                                                          on_error=lambda e: q.add_error(src.name, e)), q)


def jsonl_documents(src: SourceConfig, path: Path, lines, q: Quarantine) -> Iterator[Document]:
    """Documents of ``(line number, line, record)`` triples of one file (``jsonl_lines``, or a byte
    range of the file: ``hare.corpus.ranges``); records without a text string are quarantined."""
    for lineno, line, rec in lines:
        if src.text_field not in rec:
            q.add(src.name, str(path), lineno, f"field '{src.text_field}' is missing", line)
            continue
        text = rec[src.text_field]
        if not isinstance(text, str):
            q.add(src.name, str(path), lineno, f"field '{src.text_field}' is "
                  f"{'null' if text is None else 'a ' + type(text).__name__}, not a string", line)
            continue
        yield Document(text, _record_id(src, rec, path, lineno), src.name)


def id_root(src: SourceConfig) -> Path:
    """The folder a file source's document ids are relative to: the source's folder, the folder of
    a single file, or the fixed part of a glob pattern."""
    if src._id_root is not None:
        return Path(src._id_root)
    p = Path(src.path).expanduser()
    if p.is_dir():
        return p
    if p.is_file():
        return p.parent
    fixed = []
    for part in p.parts:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def file_id(src: SourceConfig, path: Path) -> str:
    """A file's name in document ids: its path below ``id_root``, so that files of the same name in
    different subfolders give different ids (a file directly in the root is named by its name)."""
    try:
        return path.relative_to(id_root(src)).as_posix()
    except ValueError:
        return path.name


def _record_id(src: SourceConfig, rec: dict, path: Path, lineno: int) -> str:
    if src.id_field and rec.get(src.id_field) is not None:
        return f"{src.name}/{rec[src.id_field]}"
    return f"{src.name}/{file_id(src, path)}:{lineno}"


def read_parquet_source(src: SourceConfig, q: Quarantine) -> Iterator[Document]:
    """Parquet files read in record batches (bounded memory); null or non-string text is quarantined,
    and so is a damaged file from the row where reading failed."""
    import pyarrow
    import pyarrow.parquet as pq

    for path in expand_paths(src.path, ["parquet"]):
        row = 0
        try:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            if src.text_field not in names:
                raise DataError(f"{path}: no column '{src.text_field}' (columns: {', '.join(names)}); "
                                f"set text_field of source '{src.name}'")
            cols = [src.text_field] + ([src.id_field] if src.id_field else [])
            for batch in pf.iter_batches(batch_size=1024, columns=cols):
                data = batch.to_pydict()
                for i, text in enumerate(data[src.text_field]):
                    row += 1
                    if not isinstance(text, str):
                        q.add(src.name, str(path), row, f"column '{src.text_field}' is "
                              f"{'null' if text is None else type(text).__name__}, not a string")
                        continue
                    rid = data[src.id_field][i] if src.id_field else None
                    doc_id = f"{src.name}/{rid}" if rid is not None else f"{src.name}/{file_id(src, path)}:{row}"
                    yield Document(text, doc_id, src.name)
        except (pyarrow.ArrowException, *DAMAGE_ERRORS) as e:
            q.add(src.name, str(path), row + 1, f"not a readable Parquet file from row {row + 1} "
                  f"({type(e).__name__}: {e})")


def read_text_source(src: SourceConfig, q: Quarantine) -> Iterator[Document]:
    """A folder (or glob) of .txt files, one document per file; undecodable or damaged files are
    quarantined whole (a document is one file: a part of it is not the document)."""
    for path in expand_paths(src.path, ["text"]):
        try:
            with open_binary_read(path) as f:
                raw = f.read()
        except DAMAGE_ERRORS as e:
            q.add(src.name, str(path), None, f"file damaged or truncated; the document is not kept "
                  f"({type(e).__name__}: {e})")
            continue
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            q.add(src.name, str(path), None, f"invalid UTF-8 at byte {e.start}", raw[:200])
            continue
        yield Document(text, f"{src.name}/{file_id(src, path)}", src.name)


def read_hf_source(src: SourceConfig, q: Quarantine) -> Iterator[Document]:
    """A Hugging Face dataset: a folder written by ``save_to_disk``, or a name in the local cache.

    Arrow data is memory-mapped and read in batches, so memory stays bounded. A name is only
    downloaded from the hub when the source sets ``allow_hub`` (hare runs offline otherwise).
    """
    import datasets

    path = Path(src.path).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if src.split not in ds:
                raise ValueError(f"{path}: no split '{src.split}' (splits: {', '.join(ds)})")
            ds = ds[src.split]
        where = str(path)
    else:
        from hare.core.hub import hub_access

        try:
            with hub_access(src.allow_hub):
                ds = datasets.load_dataset(src.path, src.config_name, split=src.split)
        except Exception as e:  # noqa: BLE001 - say where we looked and how to allow the hub
            hint = "" if src.allow_hub else " (offline: only the local cache is read; set allow_hub: true to download)"
            raise DataError(f"source {src.name}: cannot load dataset '{src.path}'{hint}: {e}") from e
        where = src.path
    if src.text_field not in ds.column_names:
        raise ValueError(f"{where}: no column '{src.text_field}' (columns: {', '.join(ds.column_names)})")
    cols = [src.text_field] + ([src.id_field] if src.id_field else [])
    row = 0
    for batch in ds.select_columns(cols).iter(batch_size=1024):
        for i, text in enumerate(batch[src.text_field]):
            row += 1
            if not isinstance(text, str):
                q.add(src.name, where, row, f"column '{src.text_field}' is "
                      f"{'null' if text is None else type(text).__name__}, not a string")
                continue
            rid = batch[src.id_field][i] if src.id_field else None
            yield Document(text, f"{src.name}/{rid}" if rid is not None else f"{src.name}/{src.split}:{row}", src.name)


# Modules whose import has side effects (a browser, a window, printed text) or that only exist as
# test suites and platform stubs; their documentation is not worth the risk.
PYDOC_SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "ensurepip",
    "pydoc_data", "msvcrt", "winreg", "winsound", "nt", "_winapi", "xxlimited", "xxsubtype", "__main__",
    "sre_compile", "sre_constants", "sre_parse", "distutils", "nturl2path", "msilib", "_msi", "ntpath",
}


def pydoc_modules() -> list[str]:
    """Public standard-library modules and their public submodules, sorted."""
    import pkgutil

    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in PYDOC_SKIP)
    out = []
    for name in names:
        out.append(name)
        spec = None
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            for info in pkgutil.iter_modules(spec.submodule_search_locations):
                if not info.name.startswith("_") and "test" not in info.name:
                    out.append(f"{name}.{info.name}")
    return out


SECTION_HEADS = ("NAME", "DESCRIPTION", "CLASSES", "FUNCTIONS", "DATA", "FILE", "MODULE REFERENCE",
                 "PACKAGE CONTENTS", "SUBMODULES", "VERSION", "AUTHOR", "CREDITS")


def split_pydoc(module: str, text: str) -> list[tuple[str, str]]:
    """Split a module's pydoc page into documents: its description, one per class, one for its functions.

    pydoc indents every entry of CLASSES and FUNCTIONS by four spaces under its heading and starts
    each entry at exactly that indent ("class X(...)", "name(args)"); continuation lines are deeper.
    """
    sections: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line in SECTION_HEADS:
            cur = line
            sections[cur] = []
        elif cur is not None:
            sections[cur].append(line)
    docs: list[tuple[str, str]] = []
    desc = "\n".join(l[4:] if l.startswith("    ") else l for l in sections.get("DESCRIPTION", []))
    if desc.strip():
        docs.append((module, f"{module}\n\n{desc.strip()}\n"))
    for head in ("CLASSES", "FUNCTIONS"):
        entries: list[tuple[str, str]] = []
        entry: list[str] = []
        name = None
        for line in sections.get(head, []) + ["    <end>"]:
            body = line[4:] if line.startswith("    ") else line
            starts = line.startswith("    ") and not line.startswith("     ") and line.strip()
            # CLASSES opens with an inheritance tree at the same indent: entries start with "class".
            is_entry = "class " in body.split("(")[0] if head == "CLASSES" else "(" in body
            if starts and (is_entry or body == "<end>"):
                if name and entry:
                    block = "\n".join(_drop_inherited([_strip_gutter(l) for l in entry])).strip()
                    if block.startswith("class "):
                        block = f"class {module}.{block[6:]}"
                    elif block:
                        block = f"{module}.{block}"
                    if block:
                        entries.append((f"{module}.{name}", block + "\n"))
                entry = [body]
                name = body.split("(")[0].split("class ")[-1].split(" ")[0].strip() or None
            elif starts:
                name, entry = None, []
            elif name is not None:
                entry.append(body)
        if head == "CLASSES":
            docs.extend(entries)
        elif entries:
            # Most functions have a few lines of documentation: one document holds them all.
            docs.append((f"{module}#functions", f"Functions of {module}\n\n" + "\n".join(b for _, b in entries)))
    return docs


def read_pydoc_source(src: SourceConfig, q: Quarantine, processes: int | None = None) -> Iterator[Document]:
    """The Python standard library's documentation, rendered by pydoc in worker processes.

    Real English prose that every Python installation has: no download and no project-written text.
    Each module gives its description and one document per public class and function.
    """
    from hare.core.progress import progress

    modules = pydoc_modules()
    seen: dict[str, int] = {}
    if src.limit:
        modules = modules[: max(1, src.limit // 10)]
    # One fresh worker per module: what a module's page shows depends on what else was imported
    # before it (pyexpat's ExpatError moves to xml.parsers.expat once that is imported), so sharing
    # workers would make the documents depend on how the modules fell to the workers. Nor may the
    # workers inherit the state of this process: forked from it, the pages showed what it had
    # imported (builtins.object's count of subclasses, pyarrow's tuple subclasses, torch's patch of
    # inspect.getfile) and its logging handlers (the default of logging.shutdown), so a run under a
    # test runner or after other work read other documents than a plain ``hare run``. The workers are
    # forked from a fresh interpreter that runs only the renderer (``hare/corpus/pydoc_render.py``).
    rendered = _render_in_fresh_interpreter(modules, processes or max(1, mp.cpu_count()), src.render_timeout_s)
    for name, text, err in progress(rendered, desc=f"render pydoc ({src.name})", total=len(modules), unit="module"):
        if err is not None and err.startswith(pydoc_render.TIMEOUT_PREFIX):
            q.add(src.name, f"pydoc:{name}", None, err[len(pydoc_render.TIMEOUT_PREFIX):] + " and skipped")
            continue
        if err is not None:
            log.info("pydoc: %s not documented (%s)", name, err)
            continue
        for doc_id, body in split_pydoc(name, text):
            # A name can be documented twice in one module (an alias): ids stay unique.
            seen[doc_id] = seen.get(doc_id, 0) + 1
            if seen[doc_id] > 1:
                doc_id = f"{doc_id}#{seen[doc_id]}"
            yield Document(body, f"{src.name}/{doc_id}", src.name, {"module": name})


# What the renderer may take, beyond one module's bound, to write its next line (its start included).
_RENDER_START_S = 60.0


def _render_in_fresh_interpreter(modules: list[str], processes: int,
                                 timeout: float) -> Iterator[tuple[str, str | None, str | None]]:
    """(name, text, error) per module, in order, from ``pydoc_render.py`` run as an isolated
    interpreter with an empty environment; a module not rendered within ``timeout`` seconds comes
    back with an error starting ``pydoc_render.TIMEOUT_PREFIX``.

    The renderer bounds every module, so it writes a line at least every ``timeout`` seconds; a
    renderer that does not is killed (with every process it started) and reported."""
    import selectors
    import signal
    import subprocess
    import tempfile

    script = Path(pydoc_render.__file__)
    silence = timeout + _RENDER_START_S
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as names:
        names.write(json.dumps(modules).encode())
        names.seek(0)
        # A session of its own: on any exit the renderer and its forked renderers are killed together.
        proc = subprocess.Popen([sys.executable, "-I", str(script), str(processes), repr(float(timeout))],
                                stdin=names, stdout=subprocess.PIPE, stderr=errors, env={}, start_new_session=True)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                fd, pending, received = proc.stdout.fileno(), b"", 0
                while True:
                    if not sel.select(silence):
                        raise RuntimeError(
                            f"rendering the pydoc source stopped: no module came back within {silence:g} s "
                            f"after {received} of {len(modules)} modules (the next: "
                            f"{modules[received] if received < len(modules) else 'none'}); the renderer was killed")
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        name, text, err = json.loads(line)
                        received += 1
                        yield name, text, err
            if proc.wait() != 0 or received != len(modules):
                errors.seek(0)
                tail = errors.read().decode("utf-8", "replace").strip().splitlines()[-1:]
                raise RuntimeError(f"rendering the pydoc source failed (exit {proc.returncode}, {received} of "
                                   f"{len(modules)} modules): {' '.join(tail)}")
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL) if hasattr(os, "killpg") else proc.kill()
            proc.wait()
            proc.stdout.close()


_INHERITED = re.compile(r"^(Methods|Data descriptors|Data and other attributes|Class methods|Static methods|"
                        r"Readonly properties) inherited from ")


def _drop_inherited(lines: list[str]) -> list[str]:
    """Drop the "... inherited from X:" sections and the dashed rules between sections.

    They repeat the base class's documentation in every subclass: boilerplate, not new text.
    """
    out, skipping = [], False
    for line in lines:
        if _INHERITED.match(line):
            skipping = True
            continue
        if line.startswith("-----"):
            skipping = False
            continue
        if not skipping:
            out.append(line)
    return out


def _strip_gutter(line: str) -> str:
    """pydoc draws a " |  " gutter down each class body; the text reads better without it."""
    if line.startswith(" |  "):
        return line[4:]
    return "" if line.rstrip() == " |" else line


READERS = {
    "jsonl": read_jsonl_source,
    "parquet": read_parquet_source,
    "text": read_text_source,
    "pydoc": read_pydoc_source,
    "hf": read_hf_source,
}


def source_files(src: SourceConfig) -> list[Path]:
    """The files of a file source; a folder or pattern holding files, none of them in the source's
    format, is an error that says what it does hold (rather than a source read silently as empty)."""
    files = expand_paths(src.path, [src.kind])
    if not files:
        other = expand_paths(src.path)
        if other:
            suffixes: dict[str, int] = {}
            for f in other:
                suffixes[f.suffix or f.name] = suffixes.get(f.suffix or f.name, 0) + 1
            held = ", ".join(f"{n} {s}" for s, n in sorted(suffixes.items(), key=lambda kv: -kv[1])[:5])
            raise DataError(f"source '{src.name}': {src.path} holds no {src.kind} files "
                            f"({'/'.join(FORMATS[src.kind])}, optionally compressed) but {held}; "
                            "is its kind right?")
    return files


def source_parts(src: SourceConfig) -> list[SourceConfig]:
    """The source as parts that can be read independently and give, one after the other, what the
    whole source gives: one per file for file sources (a part keeps the source's ``id_root``, so ids
    do not change), else (and with ``limit``, which counts across files) the source itself."""
    if src.kind not in FILE_KINDS:
        return [src]
    files = source_files(src)
    if src.limit:
        return [src]
    parts = []
    for f in files:
        part = src.model_copy(update={"path": str(f)})
        part._id_root = str(id_root(src))
        parts.append(part)
    return parts


def read_source(src: SourceConfig, q: Quarantine, max_line_bytes: int = 50_000_000) -> Iterator[Document]:
    """Documents of one source, at most ``src.limit``."""
    n = 0
    stream = (read_jsonl_source(src, q, max_line_bytes) if src.kind == "jsonl" else READERS[src.kind](src, q))
    for doc in stream:
        yield doc
        n += 1
        if src.limit and n >= src.limit:
            return
