"""MMLU (Hendrycks et al. 2021): the original release's per-subject CSVs,
``mmlu/{dev,val,test}/<subject>_<split>.csv`` (no header: question, four choices, answer letter), CSVs
with a header, or ``cais/mmlu`` in the hub cache (a folder per subject, or every subject in ``all/``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from hare.core.evalsets.base import Benchmark, Item, answer_index, find_files, map_rows, missing, split_of
from hare.core.io import RecordError, open_text_read

HUB = ("cais/mmlu", "")
EXPECTED = "mmlu/{dev,val,test}/<subject>_<split>.csv"


def from_row(name: str, split: str, i: int, row: dict, subject: str = "") -> Item:
    if "choices" in row:  # HF layout
        choices = list(row["choices"])
        subject = row.get("subject") or subject
    else:
        choices = [row[f"choice{k}"] for k in range(4)]
    return Item(name, split, f"{subject}/{split}/{i}", row["question"], choices, answer_index(row["answer"]),
                {"subject": subject})


def _files(folder: Path | None) -> Iterator[tuple[Path, str, str, bool]]:
    """(file, split, subject, has_header) for MMLU's per-subject CSVs or HF Parquet shards."""
    files = find_files(folder, "mmlu", "*", HUB)
    if any(p.parent.name == "all" for p in files):  # the hub copy has every subject in all/ as well
        files = [p for p in files if p.parent.name == "all"]
    files = [p for p in files if "auxiliary_train" not in str(p)]
    for p in files:
        if p.suffix == ".csv":
            subject, _, split = p.stem.rpartition("_")
            with open_text_read(p) as f:
                header = f.readline().startswith("question,")
            yield p, {"val": "validation"}.get(split, split), subject, header
        else:
            yield p, split_of(p.name), p.parent.name, True


def items(folder: Path | None) -> Iterator[Item]:
    found = False
    for path, split, subject, header in _files(folder):
        found = True
        if path.suffix == ".csv" and not header:  # the original release: no header, answer letter last
            with open_text_read(path) as f:
                rows = list(csv.reader(f))
            keys = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
            for i, r in enumerate(rows):
                if len(r) < 6:
                    raise RecordError(path, i + 1, f"has {len(r)} fields; expected question, 4 choices, answer",
                                      message=f"{path}: row {i + 1} has {len(r)} fields; expected question, "
                                              "4 choices, answer")
                yield from_row("mmlu", split, i, dict(zip(keys, r)), subject)
        else:
            yield from map_rows(path, lambda i, row: from_row("mmlu", split, i, row, subject))
    if not found:
        raise missing(folder, EXPECTED, HUB)


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``mmlu_<subject>`` tasks."""
    return {"question": it.question, "subject": it.meta.get("subject", ""), "choices": it.choices,
            "answer": it.answer}


MMLU = Benchmark("mmlu", items, task_row)
