"""Winogrande (Sakaguchi et al. 2019): ``winogrande/*.jsonl`` (sentence with one "_", option1, option2,
answer "1"/"2"), or ``allenai/winogrande`` (winogrande_xl) in the hub cache."""

from __future__ import annotations

from hare.core.evalsets.base import Benchmark, Item, answer_index, row_files


def from_row(name: str, split: str, i: int, row: dict) -> Item:
    split = "validation" if split == "dev" else split  # Winogrande's dev set is its validation split
    return Item(name, split, str(row.get("qID", f"{split}/{i}")), row["sentence"], [row["option1"], row["option2"]],
                (answer_index(row.get("answer")) - 1) if str(row.get("answer", "")).strip() in ("1", "2") else None)


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``winogrande`` task."""
    return {"qID": it.id, "sentence": it.question, "option1": it.choices[0], "option2": it.choices[1],
            "answer": str(it.answer + 1)}


WINOGRANDE = Benchmark("winogrande", row_files("winogrande", "winogrande", "*", ("allenai/winogrande", "winogrande_xl"),
                                               "winogrande/{train_xl,dev}.jsonl (sentence, option1, option2, answer)",
                                               from_row), task_row)
