"""ARC, the AI2 Reasoning Challenge (Clark et al. 2018): ARC-Easy and ARC-Challenge.

Files: ``arc/ARC-{Easy,Challenge}-{train,validation,test}.jsonl`` (the Hugging Face row layout:
question, choices {text, label}, answerKey), or ``allenai/ai2_arc`` in the hub cache.
"""

from __future__ import annotations

from hare.core.evalsets.base import Benchmark, Item, answer_index, row_files


def from_row(name: str, split: str, i: int, row: dict) -> Item:
    choices = row["choices"]
    labels = [str(x) for x in choices["label"]]
    return Item(name, split, str(row.get("id", f"{split}/{i}")), row["question"], list(choices["text"]),
                answer_index(row.get("answerKey"), labels))


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``arc_easy``/``arc_challenge`` tasks. The prompt shows only the choice texts
    and the target is an index, so labels A, B, C, ... by position score exactly as the original ones
    (some ARC items use 1-4)."""
    labels = [chr(ord("A") + i) for i in range(len(it.choices))]
    return {"id": it.id, "question": it.question, "choices": {"text": it.choices, "label": labels},
            "answerKey": labels[it.answer]}


EASY = Benchmark("arc_easy", row_files("arc_easy", "arc", "*ARC-Easy*", ("allenai/ai2_arc", "ARC-Easy"),
                                       "arc/ARC-Easy-{train,validation,test}.jsonl", from_row), task_row)
CHALLENGE = Benchmark("arc_challenge", row_files("arc_challenge", "arc", "*ARC-Challenge*",
                                                 ("allenai/ai2_arc", "ARC-Challenge"),
                                                 "arc/ARC-Challenge-{train,validation,test}.jsonl", from_row), task_row)
