"""Benchmark registry: load the Open LLM Leaderboard benchmarks from local files in their usual layouts.

Each loader yields ``Item`` objects (question, choices, answer index, split). The expected layout
under a benchmark folder:

  arc/ARC-Easy-{train,validation,test}.jsonl, arc/ARC-Challenge-*.jsonl   (HF allenai/ai2_arc rows)
  hellaswag/*.jsonl                       (ctx, endings, label; split from the file name)
  mmlu/{dev,val,test}/<subject>_<split>.csv (question, 4 choices, answer; with or without header)
  gsm8k/{train,test}.jsonl                (question, answer with "#### <number>")
  truthfulqa/TruthfulQA.csv               (Question, Best Answer, Correct/Incorrect Answers)
  winogrande/*.jsonl                      (sentence, option1, option2, answer "1"/"2")
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from hare.io import open_text_read

log = logging.getLogger("hare.evals.benchmarks")


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


def _jsonl(path: Path) -> Iterator[dict]:
    with open_text_read(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _split_of(name: str) -> str:
    low = name.lower()
    for key, split in (("train", "train"), ("val", "validation"), ("dev", "validation"), ("test", "test")):
        if key in low:
            return split
    return "test"


def _arc(folder: Path, subset: str) -> Iterator[Item]:
    files = sorted((folder / "arc").glob(f"ARC-{subset}-*.jsonl"))
    if not files:
        raise BenchmarkMissing(f"{folder / 'arc'}/ARC-{subset}-{{train,validation,test}}.jsonl")
    for path in files:
        split = path.stem.split("-")[-1]
        for row in _jsonl(path):
            labels = list(row["choices"]["label"])
            answer = labels.index(row["answerKey"]) if row["answerKey"] in labels else None
            yield Item(f"arc_{subset.lower()}", split, row["id"], row["question"], list(row["choices"]["text"]),
                       answer)


def _hellaswag(folder: Path) -> Iterator[Item]:
    files = sorted((folder / "hellaswag").glob("*.jsonl"))
    if not files:
        raise BenchmarkMissing(f"{folder / 'hellaswag'}/hellaswag_val.jsonl (ctx, endings, label)")
    for path in files:
        split = _split_of(path.name)
        for i, row in enumerate(_jsonl(path)):
            label = row.get("label")
            answer = int(label) if label not in (None, "") else None
            yield Item("hellaswag", split, str(row.get("ind", i)), row["ctx"], list(row["endings"]), answer,
                       {"activity_label": row.get("activity_label", "")})


def _mmlu(folder: Path) -> Iterator[Item]:
    files = sorted((folder / "mmlu").glob("*/*.csv"))
    if not files:
        raise BenchmarkMissing(f"{folder / 'mmlu'}/{{dev,val,test}}/<subject>_<split>.csv")
    for path in files:
        subject, _, split = path.stem.rpartition("_")
        with open(path, encoding="utf-8", newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if i == 0 and row and row[0] == "question":
                    continue
                if len(row) < 6:
                    continue
                ans = row[5].strip()
                answer = "ABCD".index(ans) if ans in ("A", "B", "C", "D") else int(ans)
                yield Item("mmlu", {"val": "validation"}.get(split, split),
                           f"{subject}/{split}/{i}", row[0], row[1:5], answer, {"subject": subject})


def _gsm8k(folder: Path) -> Iterator[Item]:
    files = sorted((folder / "gsm8k").glob("*.jsonl"))
    if not files:
        raise BenchmarkMissing(f"{folder / 'gsm8k'}/{{train,test}}.jsonl")
    for path in files:
        split = _split_of(path.name)
        for i, row in enumerate(_jsonl(path)):
            yield Item("gsm8k", split, f"{split}/{i}", row["question"], [], row["answer"])


def _truthfulqa(folder: Path) -> Iterator[Item]:
    path = folder / "truthfulqa" / "TruthfulQA.csv"
    if not path.exists():
        raise BenchmarkMissing(str(path))
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            correct = [a.strip() for a in row["Correct Answers"].split(";") if a.strip()]
            incorrect = [a.strip() for a in row["Incorrect Answers"].split(";") if a.strip()]
            yield Item("truthfulqa", "validation", str(i), row["Question"], correct + incorrect,
                       row["Best Answer"], {"correct": correct, "incorrect": incorrect})


def _winogrande(folder: Path) -> Iterator[Item]:
    files = sorted((folder / "winogrande").glob("*.jsonl"))
    if not files:
        raise BenchmarkMissing(f"{folder / 'winogrande'}/{{train_xl,dev}}.jsonl (sentence, option1, option2, answer)")
    for path in files:
        split = _split_of(path.name)
        for i, row in enumerate(_jsonl(path)):
            ans = str(row.get("answer", "")).strip()
            yield Item("winogrande", split, row.get("qID", f"{split}/{i}"), row["sentence"],
                       [row["option1"], row["option2"]], int(ans) - 1 if ans in ("1", "2") else None)


LOADERS: dict[str, Callable[[Path], Iterator[Item]]] = {
    "arc_easy": lambda d: _arc(d, "Easy"),
    "arc_challenge": lambda d: _arc(d, "Challenge"),
    "hellaswag": _hellaswag,
    "mmlu": _mmlu,
    "gsm8k": _gsm8k,
    "truthfulqa": _truthfulqa,
    "winogrande": _winogrande,
}


def load_benchmark(name: str, folder: str | Path) -> list[Item]:
    """Every item of every split of ``name`` under ``folder``; raises BenchmarkMissing naming the path."""
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(LOADERS)}")
    return list(LOADERS[name](Path(folder)))
