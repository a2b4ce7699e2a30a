"""HellaSwag (Zellers et al. 2019): ``hellaswag/*.{jsonl,parquet}``, either the Hugging Face layout
(activity_label, ctx_a, ctx_b, endings, label) or one joined ``ctx``; or ``Rowan/hellaswag`` in the
hub cache."""

from __future__ import annotations

from hare.core.evalsets.base import Benchmark, Item, answer_index, row_files

JOINED_CTX_NOTE = ("HellaSwag rows with one joined ctx (no ctx_a/ctx_b) keep ctx_b uncapitalised, unlike "
                   "lm-eval's query (\"... on a roof. he\" for \"... on a roof. He\")")


def from_row(name: str, split: str, i: int, row: dict) -> Item:
    if "ctx_a" in row:  # HF layout: activity_label, ctx_a, ctx_b kept for lm-eval's own preprocessing
        ctx = f"{row.get('activity_label', '')}: {row['ctx_a']} {row.get('ctx_b', '')}".strip()
    else:
        ctx = row["ctx"]
    meta = {k: row[k] for k in ("activity_label", "ctx_a", "ctx_b", "source_id") if k in row}
    return Item(name, split, str(row.get("ind", f"{split}/{i}")), ctx, list(row["endings"]),
                answer_index(row.get("label")), meta)


def task_row(it: Item) -> dict:
    """The row of lm-eval's ``hellaswag`` task."""
    m = it.meta
    if "ctx_a" in m:  # Hugging Face layout: lm-eval's own query (ctx_b capitalised)
        label, ctx_a, ctx_b = m.get("activity_label", ""), m["ctx_a"], m.get("ctx_b", "")
    else:
        # Joined layout ("activity_label: ctx_a ctx_b" in one ctx, as the derived files have): the
        # label is the text before the first ": " and ctx_b cannot be told apart, so it is not
        # capitalised as lm-eval does (JOINED_CTX_NOTE).
        label, sep, rest = it.question.partition(": ")
        label, ctx_a, ctx_b = (label, rest, "") if sep else ("", it.question, "")
    return {"ind": it.id, "activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b,
            "ctx": f"{ctx_a} {ctx_b}".strip(), "endings": it.choices, "label": str(it.answer)}


HELLASWAG = Benchmark("hellaswag", row_files("hellaswag", "hellaswag", "*", ("Rowan/hellaswag", ""),
                                             "hellaswag/hellaswag_val.jsonl (ctx, endings, label)", from_row),
                      task_row)
