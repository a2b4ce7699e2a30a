"""The study's task items: multiple-choice items every arm is scored on during training.

Two kinds, both written as ``hare.model.choices`` items (``data/tasks.jsonl``):

- ``heldout-ending`` (always): for each held-out document no arm saw, its last line or sentence of 4
  to 40 words, with the text before it as context, among three endings of other held-out documents
  of the nearest length (LAMBADA's idea, Paperno et al. 2016, with the choice among whole endings of
  HellaSwag and the story cloze test). It gives the default study, which has no benchmark files, a
  task metric drawn from the same distribution as its held-out documents.
- benchmark items, with ``--benchmarks-dir``, in the cloze formulation (OLMES): the question (and for
  HellaSwag the context) as context, each answer text as a continuation. Per benchmark,
  ``task_items`` items with choices, chosen by a seeded hash of their ids, are scored; no arm trains
  on them: they are never planted, and documents of the input that hold any of their 13-grams are
  removed before the arms are made (every arm is decontaminated against them). The items the noise
  plants are drawn from the rest and scored as ``<benchmark>-planted``: a separate, labelled
  measurement of what leakage inflates.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Iterable

from hare.core.evalsets.base import Item
from hare.model.choices import ChoiceItem

ENDING_TASK = "heldout-ending"
MIN_WORDS, MAX_WORDS = 4, 40  # an ending's words
MIN_CONTEXT, MAX_CONTEXT = 200, 600  # characters of context before it
CONTAMINATION_N = 13  # the n of the n-grams that remove a scored item's copies from the input (GPT-3's 13)
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?](?=\s)|$)", re.M)


def seeded_key(seed: int, *parts: str) -> str:
    """A stable hash of the seed and ``parts``: a seeded order that does not depend on input order."""
    return hashlib.sha1(":".join([str(seed), *parts]).encode()).hexdigest()


def ending_of(text: str) -> tuple[int, str] | None:
    """(offset, text) of the document's last line or sentence of MIN_WORDS..MAX_WORDS words with at
    least MIN_CONTEXT characters before it; None when it has none."""
    best = None
    for m in _SENTENCE.finditer(text):
        seg = m.group(0)
        stripped = seg.strip()
        start = m.start() + (len(seg) - len(seg.lstrip()))
        if stripped and MIN_WORDS <= len(stripped.split()) <= MAX_WORDS and start >= MIN_CONTEXT:
            best = (start, stripped)
    return best


def ending_items(docs: Iterable[dict], seed: int, choices: int = 4) -> list[ChoiceItem]:
    """One ``heldout-ending`` item per document (``{"id", "text"}``) that has an ending; distractors
    are the endings of other documents nearest in length (ties broken by a seeded hash)."""
    found = []
    for d in docs:
        e = ending_of(d["text"])
        if e is None:
            continue
        start, ending = e
        context = d["text"][max(0, start - MAX_CONTEXT):start]
        cut = context.find(" ") if start > MAX_CONTEXT else -1
        context = context[cut + 1:] if cut >= 0 else context
        sep = context[len(context.rstrip()):]  # the whitespace before the ending goes with every choice
        found.append((d["id"], context.rstrip(), sep, ending))
    out = []
    for doc_id, context, sep, ending in found:
        others = sorted({e for i, _, _, e in found if i != doc_id and e != ending},
                        key=lambda e: (abs(len(e) - len(ending)), seeded_key(seed, doc_id, e)))[:choices - 1]
        if len(others) < choices - 1:
            continue
        opts = [ending, *others]
        random.Random(seeded_key(seed, "order", doc_id)).shuffle(opts)
        out.append(ChoiceItem(ENDING_TASK, doc_id, context, [sep + o for o in opts], opts.index(ending)))
    return out


def cloze_item(item: Item, task: str) -> ChoiceItem:
    """A benchmark item in the cloze formulation: the answer texts as continuations of the question."""
    context = item.question.rstrip() if item.benchmark == "hellaswag" else \
        f"Question: {item.question.strip()}\nAnswer:"
    return ChoiceItem(task, f"{item.split}/{item.id}", context, [" " + c.strip() for c in item.choices],
                      int(item.answer))


def has_choices(item: Item) -> bool:
    return len(item.choices) >= 2 and isinstance(item.answer, int) and 0 <= item.answer < len(item.choices) \
        and all(c.strip() for c in item.choices)


def split_benchmark_items(items: dict[str, list[Item]], seed: int, task_items: int,
                          planted: int) -> tuple[list[Item], list[Item]]:
    """(scored, planted): per benchmark the first ``task_items`` items with choices by a seeded hash
    of their ids; then ``planted`` items of every benchmark's rest, by the same hash."""
    scored, rest = [], []
    for name, its in sorted(items.items()):
        order = sorted(its, key=lambda it: seeded_key(seed, name, it.split, it.id))
        mine = [it for it in order if has_choices(it)][:task_items]
        taken = {id(it) for it in mine}
        scored += mine
        rest += [it for it in order if id(it) not in taken]
    rest.sort(key=lambda it: seeded_key(seed, "plant", it.benchmark, it.split, it.id))
    return scored, rest[:planted]


def task_items(heldout: list[dict], scored: list[Item], planted: list[Item], seed: int) -> list[ChoiceItem]:
    """Every task item of a study: held-out endings, scored benchmark items, planted ones (labelled)."""
    return ending_items(heldout, seed) + [cloze_item(it, it.benchmark) for it in scored] + \
        [cloze_item(it, f"{it.benchmark}-planted") for it in planted if has_choices(it)]


def contaminated(docs: list[dict], items: list[Item]) -> set[str]:
    """Ids of the documents holding a 13-gram of any of ``items`` (an item shorter than that whole)."""
    if not items:
        return set()
    from hare.core.ngrams import EvalText, NgramIndex

    index = NgramIndex(CONTAMINATION_N, 8)
    for it in items:
        index.add(EvalText(it.benchmark, f"{it.split}/{it.id}", it.text()))
    index.finalize()
    return {d["id"] for d in docs if len(index.lookup_text(d["text"])[0])}
