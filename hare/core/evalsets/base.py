"""What every benchmark module shares: the ``Item`` type, the ``Benchmark`` entry, and finding files
under a benchmark folder or in the local Hugging Face hub cache (never the hub itself)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hare.core.io import RecordError, file_format, read_rows

BENCHMARK_FORMATS = ("jsonl", "parquet", "csv")


@dataclass
class Item:
    benchmark: str
    split: str
    id: str
    question: str
    choices: list[str] = field(default_factory=list)
    answer: int | str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def answer_text(self) -> str:
        if isinstance(self.answer, int) and 0 <= self.answer < len(self.choices):
            return self.choices[self.answer]
        return "" if self.answer is None else str(self.answer)

    def text(self) -> str:
        """All the text of the item (question, every choice, answer): what must not leak into training."""
        parts = [self.question, *self.choices]
        if not isinstance(self.answer, int):
            parts.append(self.answer_text)
        return "\n".join(p for p in parts if p)


class BenchmarkMissing(FileNotFoundError):
    """No file of a benchmark was found; the message names the expected paths."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its items come from, and the row lm-eval's task for it reads."""

    name: str
    items: Callable[[Path | None], Iterator[Item]]  # every item of every split found; BenchmarkMissing if none
    task_row: Callable[[Item], dict]  # the Hugging Face row lm-evaluation-harness's own task reads

    def load(self, folder: str | Path | None) -> list[Item]:
        return list(self.items(Path(folder) if folder is not None else None))


def split_of(name: str) -> str:
    """The split a file holds, from its name (HF shards like 'test-00000-of-00001' included)."""
    low = Path(name).name.lower()
    for key, split in (("train", "train"), ("validation", "validation"), ("val", "validation"),
                       ("dev", "dev"), ("test", "test")):
        if key in low:
            return split
    return "test"


def hub_cache_dirs(repo_id: str) -> list[Path]:
    """Snapshot folders of a dataset in the local Hugging Face hub cache (never downloads)."""
    root = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub")
    base = Path(root) / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    return sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []


def _data_files(folder: Path, pattern: str = "*") -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(pattern) if p.is_file() and file_format(p) in BENCHMARK_FORMATS)


def find_files(folder: Path | None, local: str, local_glob: str, hub: tuple[str, str] | None) -> list[Path]:
    """Files of a benchmark: ``<folder>/<local>/<local_glob>`` first, else ``<snapshot>/<subdir>/`` in the hub cache."""
    if folder is not None:
        files = _data_files(Path(folder) / local, local_glob)
        if files:
            return files
    if hub is not None:
        repo, sub = hub
        for snap in reversed(hub_cache_dirs(repo)):
            files = _data_files(snap / sub if sub else snap)
            if files:
                return files
    return []


def missing(folder: Path | None, expected: str, hub: tuple[str, str] | None) -> BenchmarkMissing:
    where = f"{Path(folder) / expected}" if folder is not None else expected
    if hub:
        where += f" (or the hub cache copy of {hub[0]})"
    return BenchmarkMissing(where)


def answer_index(value: Any, labels: list[str] | None = None) -> int | None:
    if value is None or value == "":
        return None
    if labels and str(value) in labels:
        return labels.index(str(value))
    s = str(value).strip()
    if s in ("A", "B", "C", "D", "E"):
        return "ABCDE".index(s)
    return int(s)


def map_rows(path: Path, mapper: Callable[[int, dict], Item]) -> Iterator[Item]:
    """``mapper`` over the rows of ``path``; a row without a field the layout needs names file, row and field."""
    for i, row in enumerate(read_rows(path)):
        try:
            yield mapper(i, row)
        except KeyError as e:
            why = f"has no field {e} (fields: {', '.join(map(str, row))})"
            raise RecordError(path, i + 1, why, message=f"{path}: row {i + 1} {why}") from None
        except (TypeError, ValueError) as e:
            raise RecordError(path, i + 1, str(e), message=f"{path}: row {i + 1}: {e}") from None


def row_files(name: str, local: str, local_glob: str, hub: tuple[str, str] | None, expected: str,
              mapper: Callable[[str, str, int, dict], Item]) -> Callable[[Path | None], Iterator[Item]]:
    """Items of a benchmark stored as row files (one split per file, the split in the file's name)."""
    def items(folder: Path | None) -> Iterator[Item]:
        files = find_files(folder, local, local_glob, hub)
        if not files:
            raise missing(folder, expected, hub)
        for path in files:
            split = split_of(path.name)
            yield from map_rows(path, lambda i, row: mapper(name, split, i, row))

    return items
