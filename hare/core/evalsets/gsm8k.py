"""GSM8K (Cobbe et al. 2021): ``gsm8k/{train,test}.jsonl`` (question, answer with its "#### n" line), or
``openai/gsm8k`` (main) in the hub cache."""

from __future__ import annotations

from hare.core.evalsets.base import Benchmark, Item, row_files


def from_row(name: str, split: str, i: int, row: dict) -> Item:
    return Item(name, split, f"{split}/{i}", row["question"], [], row["answer"])


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``gsm8k`` task."""
    return {"question": it.question, "answer": it.answer_text}


GSM8K = Benchmark("gsm8k", row_files("gsm8k", "gsm8k", "*", ("openai/gsm8k", "main"), "gsm8k/{train,test}.jsonl",
                                     from_row), task_row)
