"""Benchmark registry: the Open LLM Leaderboard benchmarks from local files in their usual layouts.

Each loader yields ``Item`` objects (question, choices, answer, split). Files are looked up under a
benchmark folder, in either the original release layout or the Hugging Face row layout (JSONL,
JSON, Parquet or CSV), and then in the local Hugging Face hub cache (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) where a dataset downloaded earlier keeps its Parquet files:

  benchmark    under <folder>/                                   hub cache (datasets--org--name)
  arc_easy     arc/ARC-Easy-{train,validation,test}.jsonl         allenai/ai2_arc ARC-Easy/*.parquet
  arc_challenge arc/ARC-Challenge-*.jsonl                         allenai/ai2_arc ARC-Challenge/
  hellaswag    hellaswag/*.{jsonl,parquet} (ctx or ctx_a/ctx_b)   Rowan/hellaswag
  mmlu         mmlu/{dev,val,test}/<subject>_<split>.csv           cais/mmlu <subject>/ or all/
  gsm8k        gsm8k/{train,test}.jsonl                            openai/gsm8k main/
  truthfulqa   truthfulqa/TruthfulQA.csv (or HF generation rows)  truthfulqa/truthful_qa generation/
  winogrande   winogrande/*.jsonl (sentence, option1/2, answer)   allenai/winogrande winogrande_xl/

The split of a file comes from its name (train, val/validation/dev, test). A user adds a benchmark
of their own with ``CustomBenchmark`` (a file and its field names) in the recipe.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hare.io import open_text_read

log = logging.getLogger("hare.evals.benchmarks")

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".jsonl.zst")


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


# --------------------------------------------------------------------------- reading rows


def read_rows(path: Path) -> Iterator[dict]:
    """Rows of a JSONL, JSON (a list, or {"data": [...]}), Parquet or CSV file."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
            yield from batch.to_pylist()
    elif name.endswith(".csv"):
        with open(path, encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)
    elif name.endswith(".json"):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        yield from (data.get("data", []) if isinstance(data, dict) else data)
    else:
        with open_text_read(path) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{lineno}: bad JSON ({e.msg} at column {e.colno})") from None


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
    return sorted(p for p in folder.rglob(pattern) if p.is_file() and p.name.endswith(DATA_SUFFIXES))


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


def _missing(folder: Path | None, expected: str, hub: tuple[str, str] | None) -> BenchmarkMissing:
    where = f"{Path(folder) / expected}" if folder is not None else expected
    if hub:
        where += f" (or the hub cache copy of {hub[0]})"
    return BenchmarkMissing(where)


# --------------------------------------------------------------------------- one mapper per benchmark


def _answer_index(value: Any, labels: list[str] | None = None) -> int | None:
    if value is None or value == "":
        return None
    if labels and str(value) in labels:
        return labels.index(str(value))
    s = str(value).strip()
    if s in ("A", "B", "C", "D", "E"):
        return "ABCDE".index(s)
    return int(s)


def _arc_row(name: str, split: str, i: int, row: dict) -> Item:
    choices = row["choices"]
    labels = [str(x) for x in choices["label"]]
    return Item(name, split, str(row.get("id", f"{split}/{i}")), row["question"], list(choices["text"]),
                _answer_index(row.get("answerKey"), labels))


def _hellaswag_row(name: str, split: str, i: int, row: dict) -> Item:
    if "ctx_a" in row:  # HF layout: activity_label, ctx_a, ctx_b kept for lm-eval's own preprocessing
        ctx = f"{row.get('activity_label', '')}: {row['ctx_a']} {row.get('ctx_b', '')}".strip()
    else:
        ctx = row["ctx"]
    meta = {k: row[k] for k in ("activity_label", "ctx_a", "ctx_b", "source_id") if k in row}
    return Item(name, split, str(row.get("ind", f"{split}/{i}")), ctx, list(row["endings"]),
                _answer_index(row.get("label")), meta)


def _mmlu_row(name: str, split: str, i: int, row: dict, subject: str = "") -> Item:
    if "choices" in row:  # HF layout
        choices = list(row["choices"])
        subject = row.get("subject") or subject
    else:
        choices = [row[f"choice{k}"] for k in range(4)]
    return Item(name, split, f"{subject}/{split}/{i}", row["question"], choices, _answer_index(row["answer"]),
                {"subject": subject})


def _gsm8k_row(name: str, split: str, i: int, row: dict) -> Item:
    return Item(name, split, f"{split}/{i}", row["question"], [], row["answer"])


def _truthfulqa_row(name: str, split: str, i: int, row: dict) -> Item:
    def answers(v: Any) -> list[str]:
        if isinstance(v, str):
            return [a.strip() for a in v.split(";") if a.strip()]
        return [str(a).strip() for a in v or [] if str(a).strip()]

    if "Question" in row:  # the original CSV
        q, best = row["Question"], row["Best Answer"]
        correct, incorrect = answers(row["Correct Answers"]), answers(row["Incorrect Answers"])
    elif "mc2_targets" in row:  # HF multiple_choice layout
        q = row["question"]
        t = row["mc2_targets"]
        correct = [c for c, lab in zip(t["choices"], t["labels"]) if lab]
        incorrect = [c for c, lab in zip(t["choices"], t["labels"]) if not lab]
        best = row["mc1_targets"]["choices"][row["mc1_targets"]["labels"].index(1)]
    else:  # HF generation layout
        q, best = row["question"], row["best_answer"]
        correct, incorrect = answers(row["correct_answers"]), answers(row["incorrect_answers"])
    return Item(name, "validation", str(i), q, correct + incorrect, best,
                {"correct": correct, "incorrect": incorrect, "category": row.get("Category", row.get("category", ""))})


def _winogrande_row(name: str, split: str, i: int, row: dict) -> Item:
    split = "validation" if split == "dev" else split  # Winogrande's dev set is its validation split
    return Item(name, split, str(row.get("qID", f"{split}/{i}")), row["sentence"], [row["option1"], row["option2"]],
                (_answer_index(row.get("answer")) - 1) if str(row.get("answer", "")).strip() in ("1", "2") else None)


def _map_rows(path: Path, mapper: Callable[[int, dict], Item]) -> Iterator[Item]:
    """``mapper`` over the rows of ``path``; a row without a field the layout needs names file, row and field."""
    for i, row in enumerate(read_rows(path)):
        try:
            yield mapper(i, row)
        except KeyError as e:
            raise ValueError(f"{path}: row {i + 1} has no field {e} (fields: {', '.join(map(str, row))})") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: row {i + 1}: {e}") from None


def _mmlu_files(folder: Path | None) -> Iterator[tuple[Path, str, str, bool]]:
    """(file, split, subject, has_header) for MMLU's per-subject CSVs or HF Parquet shards."""
    files = find_files(folder, "mmlu", "*", ("cais/mmlu", ""))
    if any(p.parent.name == "all" for p in files):  # the hub copy has every subject in all/ as well
        files = [p for p in files if p.parent.name == "all"]
    files = [p for p in files if "auxiliary_train" not in str(p)]
    for p in files:
        if p.suffix == ".csv":
            subject, _, split = p.stem.rpartition("_")
            with open(p, encoding="utf-8") as f:
                header = f.readline().startswith("question,")
            yield p, {"val": "validation"}.get(split, split), subject, header
        else:
            yield p, split_of(p.name), p.parent.name, True


def _mmlu(folder: Path | None) -> Iterator[Item]:
    found = False
    for path, split, subject, header in _mmlu_files(folder):
        found = True
        if path.suffix == ".csv" and not header:  # the original release: no header, answer letter last
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
            for i, r in enumerate(rows):
                if len(r) < 6:
                    raise ValueError(f"{path}: row {i + 1} has {len(r)} fields; expected question, 4 choices, answer")
                keys = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
                yield _mmlu_row("mmlu", split, i, dict(zip(keys, r)), subject)
        else:
            yield from _map_rows(path, lambda i, row: _mmlu_row("mmlu", split, i, row, subject))
    if not found:
        raise _missing(folder, "mmlu/{dev,val,test}/<subject>_<split>.csv", ("cais/mmlu", ""))


def _generic(name: str, local: str, local_glob: str, hub: tuple[str, str] | None, expected: str,
             mapper: Callable[[str, str, int, dict], Item]) -> Callable[[Path | None], Iterator[Item]]:
    def load(folder: Path | None) -> Iterator[Item]:
        files = find_files(folder, local, local_glob, hub)
        if not files:
            raise _missing(folder, expected, hub)
        for path in files:
            split = split_of(path.name)
            yield from _map_rows(path, lambda i, row: mapper(name, split, i, row))

    return load


LOADERS: dict[str, Callable[[Path | None], Iterator[Item]]] = {
    "arc_easy": _generic("arc_easy", "arc", "*ARC-Easy*", ("allenai/ai2_arc", "ARC-Easy"),
                         "arc/ARC-Easy-{train,validation,test}.jsonl", _arc_row),
    "arc_challenge": _generic("arc_challenge", "arc", "*ARC-Challenge*", ("allenai/ai2_arc", "ARC-Challenge"),
                              "arc/ARC-Challenge-{train,validation,test}.jsonl", _arc_row),
    "hellaswag": _generic("hellaswag", "hellaswag", "*", ("Rowan/hellaswag", ""),
                          "hellaswag/hellaswag_val.jsonl (ctx, endings, label)", _hellaswag_row),
    "mmlu": _mmlu,
    "gsm8k": _generic("gsm8k", "gsm8k", "*", ("openai/gsm8k", "main"), "gsm8k/{train,test}.jsonl", _gsm8k_row),
    "truthfulqa": _generic("truthfulqa", "truthfulqa", "*", ("truthfulqa/truthful_qa", "generation"),
                           "truthfulqa/TruthfulQA.csv", _truthfulqa_row),
    "winogrande": _generic("winogrande", "winogrande", "*", ("allenai/winogrande", "winogrande_xl"),
                           "winogrande/{train_xl,dev}.jsonl (sentence, option1, option2, answer)", _winogrande_row),
}


@dataclass
class CustomBenchmark:
    """A user's own benchmark: one file (JSONL/JSON/Parquet/CSV) and the names of its fields."""

    name: str
    path: str
    question_field: str = "question"
    choices_field: str | None = None
    answer_field: str | None = "answer"
    split: str = "test"


def load_custom(spec: CustomBenchmark) -> list[Item]:
    path = Path(spec.path)
    if not path.exists():
        raise BenchmarkMissing(str(path))
    items = []
    for i, row in enumerate(read_rows(path)):
        for f in (spec.question_field, spec.choices_field, spec.answer_field):
            if f and f not in row:
                raise ValueError(f"{path}: row {i + 1} has no field '{f}' (fields: {', '.join(row)})")
        choices = list(row[spec.choices_field]) if spec.choices_field else []
        ans = row[spec.answer_field] if spec.answer_field else None
        if choices and isinstance(ans, (int, str)) and str(ans).isdigit() and int(ans) < len(choices):
            ans = int(ans)
        items.append(Item(spec.name, spec.split, f"{spec.split}/{i}", str(row[spec.question_field]),
                          [str(c) for c in choices], ans))
    return items


def load_benchmark(name: str, folder: str | Path | None) -> list[Item]:
    """Every item of every split of ``name``; raises BenchmarkMissing naming the expected path."""
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(LOADERS)}")
    return list(LOADERS[name](Path(folder) if folder is not None else None))
