"""Python hooks of hare's lm-evaluation-harness tasks (the ``!function hooks.<name>`` entries).

Each one reproduces lm-evaluation-harness's own hook for the same task, named in its docstring.
This file imports nothing from hare: the eval step copies it next to the task YAMLs as
``hooks.py``, where lm-eval's YAML loader finds ``!function`` modules in every version, so a
task folder is self-contained.
"""

from __future__ import annotations

import re

import numpy as np


def _hellaswag_preprocess(text: str) -> str:
    text = text.strip()
    # Brackets are artifacts of the WikiHow part of HellaSwag (lm-eval's comment, same rule)
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_doc(doc: dict) -> dict:
    """query/choices/gold of one HellaSwag row, as lm-eval's ``hellaswag/utils.py:process_docs``.

    lm-eval builds the query as ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()``. A row
    without an activity label (never the case in the published data) gets no leading ": ".
    """
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    label = doc["activity_label"]
    return {
        "query": _hellaswag_preprocess(label + ": " + ctx if label else ctx),
        "choices": [_hellaswag_preprocess(e) for e in doc["endings"]],
        "gold": int(doc["label"]),
    }


def hellaswag_process_docs(dataset):
    return dataset.map(hellaswag_doc)


def winogrande_doc_to_text(doc: dict) -> int:
    """Index of the correct option: Winogrande is scored by partial evaluation (lm-eval's
    ``winogrande/preprocess_winogrande.py``): each option fills the blank to make one context, and the
    model scores the same continuation (the rest of the sentence) after each."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_doc_to_target(doc: dict) -> str:
    idx = doc["sentence"].index("_") + 1
    return doc["sentence"][idx:].strip()


def winogrande_doc_to_choice(doc: dict) -> list[str]:
    idx = doc["sentence"].index("_")
    return [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]


def truthfulqa_process_results_mc2(doc: dict, results) -> dict:
    """MC2: the normalised probability mass on the true answers (lm-eval's
    ``truthfulqa/utils.py:process_results_mc2``).

    lm-eval computes ``exp(ll) / sum(exp(ll))``; subtracting the largest log-likelihood first gives
    the same number without underflowing to 0/0 when every answer is very unlikely (a small model).
    """
    ll, _ = zip(*results)
    ll = np.array(ll, dtype=np.float64)
    probs = np.exp(ll - ll.max())
    probs_norm = probs / np.sum(probs)
    labels = np.array(doc["mc2_targets"]["labels"])
    return {"acc": float(np.sum(probs_norm[labels == 1]))}
