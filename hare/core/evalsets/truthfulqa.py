"""TruthfulQA (Lin et al. 2022): ``truthfulqa/TruthfulQA.csv`` (the public release), the Hugging Face
generation or multiple_choice rows, or ``truthfulqa/truthful_qa`` (generation) in the hub cache."""

from __future__ import annotations

from typing import Any

from hare.core.evalsets.base import Benchmark, Item, row_files

NOTE = ("TruthfulQA mc1/mc2 targets are built from the registry's correct and incorrect answers "
        "(with only the public TruthfulQA.csv: mc1 = Best Answer against the Incorrect Answers, "
        "mc2 = Correct Answers against Incorrect Answers, each ending in a period), not read from "
        "the official mc_task.json")


def _answers(v: Any) -> list[str]:
    if isinstance(v, str):
        return [a.strip() for a in v.split(";") if a.strip()]
    return [str(a).strip() for a in v or [] if str(a).strip()]


def from_row(name: str, split: str, i: int, row: dict) -> Item:
    if "Question" in row:  # the original CSV
        q, best = row["Question"], row["Best Answer"]
        correct, incorrect = _answers(row["Correct Answers"]), _answers(row["Incorrect Answers"])
    elif "mc2_targets" in row:  # HF multiple_choice layout
        q = row["question"]
        t = row["mc2_targets"]
        correct = [c for c, lab in zip(t["choices"], t["labels"]) if lab]
        incorrect = [c for c, lab in zip(t["choices"], t["labels"]) if not lab]
        best = row["mc1_targets"]["choices"][row["mc1_targets"]["labels"].index(1)]
    else:  # HF generation layout
        q, best = row["question"], row["best_answer"]
        correct, incorrect = _answers(row["correct_answers"]), _answers(row["incorrect_answers"])
    return Item(name, "validation", str(i), q, correct + incorrect, best,
                {"correct": correct, "incorrect": incorrect, "category": row.get("Category", row.get("category", ""))})


def _period(answer: str) -> str:
    # lm-eval's truthfulqa/utils.py adds a final period to every answer; the official mc targets end in one
    answer = answer.strip()
    return answer if answer.endswith(".") else answer + "."


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``truthfulqa_mc1``/``truthfulqa_mc2`` tasks (see ``NOTE``)."""
    correct = [_period(a) for a in it.meta.get("correct", [])]
    incorrect = [_period(a) for a in it.meta.get("incorrect", [])]
    mc1 = [_period(it.answer_text), *incorrect]
    return {"question": it.question.strip(),
            "mc1_targets": {"choices": mc1, "labels": [1] + [0] * len(incorrect)},
            "mc2_targets": {"choices": correct + incorrect, "labels": [1] * len(correct) + [0] * len(incorrect)}}


TRUTHFULQA = Benchmark("truthfulqa", row_files("truthfulqa", "truthfulqa", "*", ("truthfulqa/truthful_qa", "generation"),
                                               "truthfulqa/TruthfulQA.csv", from_row), task_row)
